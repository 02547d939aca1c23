"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` with
scikit-learn's parameter names, meanings and defaults where retroprop has
the feature, plus ``device`` and retroprop's extras. Where a meaning
differs from scikit-learn's, the class docstring says how."""

import math
import pickle
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array, check_random_state, check_X_y
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from . import _retroprop
from ._core import Model, as_rows, print_epoch
from ._tabular import TabularEncoder, has_categorical_columns

_ACTIVATIONS = {"logistic": "sigmoid"}

_DIFFERENCES = """
    Where the meaning differs from scikit-learn's:

    - ``solver``: ``adam`` and ``sgd`` as scikit-learn's (``sgd`` with
      ``momentum`` and ``nesterovs_momentum``, which equal torch's SGD at a
      constant learning rate), and retroprop's ``adamw``, ``rmsprop``,
      ``adagrad`` with torch's defaults; ``lbfgs`` is not available
      (``ValueError``).
    - ``alpha`` (L2) becomes the optimizer's ``weight_decay`` as
      ``alpha / batch_size`` (plus ``weight_decay``). For ``sgd``,
      ``adam``, ``rmsprop`` and ``adagrad`` torch adds it to the gradient,
      which gives scikit-learn's gradient ``mean grad + alpha W /
      batch_size``, but as torch's weight decay it also decays the biases.
      For ``adamw`` it is torch's decoupled decay instead, ``θ ← θ − lr ·
      (alpha / batch_size + weight_decay) · θ`` before each Adam step,
      not an L2 term in the gradient (and not AdamW's own default of 0.01:
      with the defaults it is ``0.0001 / batch_size``). ``loss_curve_`` (and with it ``tol`` and
      ``n_iter_no_change``, ``best_loss_``) is scikit-learn's: each epoch
      the mean data loss plus each step's L2 term ``alpha/2 ‖θ‖² /
      batch_size`` weighted by its rows, that is ``alpha/2 Σ_steps ‖θ‖² /
      n_samples``, with the parameters before each step's update; ``θ``
      holds the biases too, as the decay does (scikit-learn's term has the
      weights only).
    - ``learning_rate``: ``constant`` only; ``lr_schedule`` takes
      retroprop's schedules (``step``, ``exponential``, ``cosine``,
      ``warmup``, ``plateau``), stepped per epoch.
    - ``early_stopping`` stops on the validation *loss* (not the score)
      after ``n_iter_no_change`` epochs without a decrease of more than
      ``tol``, and keeps the best epoch's parameters; the held-out
      ``validation_fraction`` is stratified for classifiers.
      ``validation_scores_`` holds the validation accuracy (classifier) or
      the negative validation loss (regressor) of each epoch.
    - ``init`` (default ``sklearn``: scikit-learn's own initialisation,
      weights and biases uniform in ±√(6/(fan_in + fan_out)), 2 instead
      of 6 for ``logistic``, drawn from retroprop's generator) also takes
      retroprop's others: ``torch`` (uniform in ±1/√fan_in, as
      ``torch.nn.Linear``), ``xavier_uniform`` (scaled by the activation's
      gain, biases at zero), ``xavier_normal``, ``kaiming_uniform``,
      ``kaiming_normal``.
    - ``partial_fit`` keeps the optimizer state between calls in one
      process; after pickling it starts a fresh optimizer from the pickled
      parameters.
    - ``coefs_`` and ``intercepts_`` are copies of the trained parameters:
      changing them does not change predictions.
    - Training is in float32 (scikit-learn's in the input's float64), and
      ``random_state`` seeds retroprop's own generators (initialisation,
      shuffles, the validation split through scikit-learn's), so the same
      seed does not give scikit-learn's numbers.
    - ``n_iter_`` counts ``partial_fit`` calls too (one epoch each).
    - ``sample_weight``: each batch's loss is ``Σ wᵢ lᵢ / Σ wᵢ`` as
      scikit-learn's, but ``loss_curve_`` is the epoch's weighted mean
      (scikit-learn averages the batches' weighted means by their rows),
      ``alpha``'s decay is divided by a batch's weight as scikit-learn's
      L2 term is (taken as its rows times the mean weight: exactly the
      total weight when one batch holds every row), and ``validation_scores_`` count rows
      unweighted. The CPU backend only, for now.

    - ``X`` as a pandas DataFrame with ``category``, ``object`` or string
      columns takes them as categorical features, one-hot encoded after
      the numeric columns in column order (``pandas.get_dummies``'s
      matrix; categories: a ``category`` dtype's own, else the sorted
      distinct values; ``categorical_features_``, ``categories_``); an
      unseen category at predict time, or a missing value in such a
      column, is a ``ValueError`` naming row, column and value.

    retroprop's own parameters: ``blocks`` (0: the plain network of
    ``hidden_layer_sizes``; N: the residual network of "Revisiting Deep
    Learning Models for Tabular Data" at the width of its one hidden size,
    N blocks ``x + Dropout(Linear(Dropout(Act(Linear(Norm(x))))))``, see
    ``retroprop.Trainer``), ``norm`` (the blocks' ``batch``, ``layer`` or
    ``none``), ``block_multiplier`` (a block's hidden width ÷ its width),
    ``device`` (``auto``: a hardware GPU when
    there is one, else the CPU; ``cpu``; ``gpu``: any wgpu adapter),
    ``init``, ``lr_schedule``, ``clip_grad_norm``, ``clip_grad_value``,
    ``dropout`` (after every hidden layer), ``weight_decay`` (added to the
    one ``alpha`` gives), ``standardize`` (scale inputs by the training
    rows' mean and deviation, kept with the model).
"""


class _BaseMLP(BaseEstimator):
    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        device="auto",
        init="sklearn",
        lr_schedule="constant",
        clip_grad_norm=None,
        clip_grad_value=None,
        dropout=None,
        weight_decay=0.0,
        standardize=False,
        blocks=0,
        norm="batch",
        block_multiplier=2.0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.init = init
        self.lr_schedule = lr_schedule
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.standardize = standardize
        self.blocks = blocks
        self.norm = norm
        self.block_multiplier = block_multiplier

    # -- settings ---------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if np.isscalar(sizes):
            sizes = [sizes]
        sizes = list(sizes)
        if any(int(s) != s or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        return [int(s) for s in sizes]

    def _check_params(self):
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not available: lbfgs is not available in retroprop (use adam or sgd)")
        # The library's optimizer parser decides which names exist.
        _retroprop.optimizer_defaults(str(self.solver))
        if self.learning_rate != "constant":
            raise ValueError(
                f"learning_rate={self.learning_rate!r} is not available; retroprop has "
                "learning_rate='constant' and schedules in lr_schedule (e.g. 'plateau:0.2:2')"
            )
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}.")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}.")
        if self.n_iter_no_change < 1:
            raise ValueError(f"n_iter_no_change must be >= 1, got {self.n_iter_no_change}.")
        if not isinstance(self.blocks, (int, np.integer)) or self.blocks < 0:
            raise ValueError(f"blocks must be an int >= 0, got {self.blocks!r}.")
        if self.blocks > 0 and len(self._hidden_sizes()) != 1:
            raise ValueError(
                f"blocks={self.blocks} needs hidden_layer_sizes of one size, the blocks' width, "
                f"got {self.hidden_layer_sizes}."
            )
        if self.tol < 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}.")
        if self.batch_size != "auto" and (
            not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        _retroprop.check_setting("device", str(self.device))
        _retroprop.check_setting("lr_schedule", str(self.lr_schedule))
        _retroprop.check_setting("init", str(self.init))
        return _retroprop.check_setting("activation", _ACTIVATIONS.get(self.activation, str(self.activation)))

    def _batch_rows(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return min(int(self.batch_size), n_samples)

    def _optimizer(self, batch_weight):
        decay = self.alpha / batch_weight + self.weight_decay
        options = [("lr", repr(float(self.learning_rate_init))), ("weight_decay", repr(float(decay)))]
        if self.solver == "sgd":
            options += [("momentum", repr(float(self.momentum))), ("nesterov", "true" if self.nesterovs_momentum and self.momentum > 0 else "false")]
        elif self.solver in ("adam", "adamw"):
            options += [("betas", f"{float(self.beta_1)!r}/{float(self.beta_2)!r}"), ("eps", repr(float(self.epsilon)))]
        return options

    # -- training ---------------------------------------------------------

    def _trainer_settings(self, sizes, loss, batch_rows, batch_weight, seed, epochs, early):
        """The native trainer's settings for a fit, by the library's names
        (the keyword arguments of ``NativeTrainer``, a ``RunArgs`` dict of
        ``NativeMembers``): what a lone fit trains with, and what each
        member of ``retroprop.GridSearchCV``'s runs trains with."""
        hidden = _ACTIVATIONS.get(self.activation, str(self.activation))
        return dict(
            sizes=sizes,
            activations=",".join([hidden] * (len(sizes) - 2) + ["identity"]),
            loss=loss,
            optimizer=self.solver,
            optimizer_options=self._optimizer(batch_weight),
            batch_size=batch_rows,
            epochs=epochs,
            max_steps=None,
            shuffle=bool(self.shuffle),
            seed=seed,
            init=str(self.init),
            device=str(self.device),
            lr_schedule=str(self.lr_schedule),
            clip_grad_norm=None if self.clip_grad_norm is None else float(self.clip_grad_norm),
            clip_grad_value=None if self.clip_grad_value is None else float(self.clip_grad_value),
            dropout=None if self.dropout is None else float(self.dropout),
            early_stopping=int(self.n_iter_no_change) if early else None,
            min_delta=float(self.tol),
            # Every step's parameter norm, for the L2 term of loss_curve_.
            norms_every=1 if self.alpha > 0 else None,
            standardize=None,
            blocks=int(self.blocks),
            norm=str(self.norm),
            block_multiplier=float(self.block_multiplier),
        )

    def _native_trainer(self, settings, params, standardization):
        return _retroprop.NativeTrainer(**settings, standardization=standardization, params=params, resume=None)

    def _plan(self, shape, targets, incremental):
        """What a fit of rows of ``shape`` ``(rows, features)`` with
        encoded targets trains: the seed drawn from ``random_state``, the
        layer sizes, the warm start's parameters, and with
        ``early_stopping`` the held-out rows (drawn after the seed,
        stratified for a classifier)."""
        n_samples, n_features = shape
        plan = _FitPlan()
        plan.batch_rows = self._batch_rows(n_samples)
        rng = check_random_state(self.random_state)
        plan.seed = int(rng.randint(np.iinfo(np.int32).max))
        plan.sizes = [n_features, *self._hidden_sizes(), self._n_outputs(targets)]
        plan.loss = self._loss_name()
        plan.warm = (self.warm_start or incremental) and hasattr(self, "_model")
        if plan.warm and self._model.sizes != self._dense_sizes(plan.sizes):
            raise ValueError(
                f"warm start: the fitted network has layer sizes {self._model.sizes}, "
                f"but these data and settings need {self._dense_sizes(plan.sizes)}"
            )
        if plan.warm:
            plan.params = self._model._native.flat_parameters.copy()
            plan.standardization = self._model._native.standardization
        plan.early = bool(self.early_stopping) and not incremental
        plan.rows = n_samples
        if plan.early:
            stratify = targets[0] if (targets[0] is not None and self._stratify_ok(targets[0])) else None
            idx = np.arange(n_samples)
            plan.train_idx, plan.val_idx = train_test_split(
                idx, test_size=self.validation_fraction, random_state=rng, stratify=stratify
            )
            plan.rows = len(plan.train_idx)
            plan.batch_rows = self._batch_rows(plan.rows)
        # Unweighted rows weigh 1 each (_run sets a weighted fit's).
        plan.total_weight = float(plan.rows)
        plan.batch_weight = float(plan.batch_rows)
        return plan

    def _weigh(self, plan, sample_weight):
        """A weighted fit's total weight and batch weight into ``plan``,
        ``sample_weight`` the weights of the rows it trains on (None:
        unweighted, as ``_plan`` left them)."""
        # scikit-learn divides a batch's L2 term by the batch's weight,
        # its rows when unweighted; a batch weighs its rows times the
        # mean weight, exactly the total when one batch holds every row.
        if sample_weight is not None:
            total_weight = float(np.sum(sample_weight, dtype=np.float64))
            if total_weight > 0:  # weights all 0: the library refuses them, naming why
                plan.total_weight = total_weight
                plan.batch_weight = plan.batch_rows * total_weight / plan.rows

    def _start_curves(self, plan):
        """The fitted curves a fit starts from: kept by a warm start, else new."""
        if not plan.warm or not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
            self.best_loss_ = np.inf
            self._no_improvement_count = 0
            self.t_ = 0
            self.n_iter_ = 0
        if plan.early:
            self.validation_scores_ = []
            self.best_validation_score_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _take_epoch(self, record, plan, incremental):
        """An epoch's record into the fitted curves, as scikit-learn keeps
        them; returns whether ``tol`` and ``n_iter_no_change`` say the fit
        has converged (the trainer is then stopped before its next step)."""
        self.n_iter_ += 1
        self.t_ += plan.rows
        # scikit-learn's loss: each batch's data loss plus
        # alpha/2 ‖θ‖² / batch weight, averaged over the epoch's weight.
        norms = record.get("weight_norms")
        if norms is None:
            norms = [n["weight_norm"] for n in record["layer_norms"]]
        squares = sum(w ** 2 for w in norms)
        penalty = 0.5 * self.alpha * squares / plan.total_weight
        self.loss_curve_.append(record["train_loss"] + penalty)
        if self.verbose:
            print_epoch(dict(record, train_loss=self.loss_curve_[-1]))
        if plan.early:
            score = record["val_accuracy"] if self._is_classifier() else -record["val_loss"]
            self.validation_scores_.append(score)
        elif not incremental:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
            if self._no_improvement_count > self.n_iter_no_change:
                if self.verbose:
                    print(
                        f"Training loss did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs. Stopping."
                    )
                return True
        return False

    def _end_fit(self, plan, model, stopped_early, converged, device_name, incremental):
        """The fitted attributes from what the fit trained (a native model)."""
        self._set_model(model)
        if incremental:
            if self.loss_curve_[-1:] and self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
        if plan.early:
            self.best_loss_ = None
            if self.validation_scores_:
                self.best_validation_score_ = max(self.validation_scores_)
            converged = stopped_early
        if not incremental and not converged and self.n_iter_ >= self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
            )
        self.device_ = device_name

    def _run(self, X, targets, incremental, sample_weight=None):
        """Trains on ``X`` (float32) and encoded targets, each row weighing
        ``sample_weight`` in the loss; sets the fitted attributes."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
        plan = self._plan(X.shape, targets, incremental)
        validation = validation_weight = None
        if plan.early:
            train_idx, val_idx = plan.train_idx, plan.val_idx
            validation = (X[val_idx], *(t[val_idx] if t is not None else None for t in targets))
            validation_weight = None if sample_weight is None else sample_weight[val_idx]
            X = X[train_idx]
            targets = tuple(t[train_idx] if t is not None else None for t in targets)
            sample_weight = None if sample_weight is None else sample_weight[train_idx]
        self._weigh(plan, sample_weight)
        if incremental:
            trainer = getattr(self, "_partial_trainer", None)
            if trainer is None or not plan.warm:
                settings = self._trainer_settings(
                    plan.sizes, plan.loss, plan.batch_rows, plan.batch_weight, plan.seed, 1, False
                )
                trainer = self._native_trainer(settings, plan.params, plan.standardization)
                self._partial_trainer = trainer
        else:
            self._partial_trainer = None
            settings = self._trainer_settings(
                plan.sizes, plan.loss, plan.batch_rows, plan.batch_weight, plan.seed, int(self.max_iter), plan.early
            )
            trainer = self._native_trainer(settings, plan.params, plan.standardization)
        self._start_curves(plan)
        converged = [False]

        def on_epoch(record):
            if self._take_epoch(record, plan, incremental):
                converged[0] = True
                trainer.stop()

        stand = bool(self.standardize) and plan.standardization is None
        xv = cv = vv = None
        if validation is not None:
            xv, cv, vv = validation
        try:
            history = trainer.fit(
                as_rows(X),
                targets[0],
                targets[1],
                xv,
                cv,
                vv,
                stand,
                on_epoch,
                None,
                1,
                sample_weight=None if sample_weight is None else np.ascontiguousarray(sample_weight),
                sample_weight_val=None if validation_weight is None else np.ascontiguousarray(validation_weight),
            )
        except KeyboardInterrupt:
            # Ctrl-C keeps the steps taken: the model reflects them.
            self._set_model(trainer.model())
            raise
        self._end_fit(plan, trainer.model(), history["stopped_early"], converged[0], trainer.device_name, incremental)
        return self

    def _dense_sizes(self, sizes):
        """The sizes of the dense layers a fit of plain ``sizes`` trains:
        those, or with ``blocks`` the residual network's (input, then each
        block's hidden width and width, then the outputs)."""
        if not self.blocks:
            return sizes
        width = sizes[1]
        hidden = int(math.floor(width * float(self.block_multiplier) + 0.5))
        return [sizes[0], width, *[hidden, width] * int(self.blocks), sizes[-1]]

    def _set_model(self, model):
        self._model = Model(model)
        layers = self._model._native.dense_layers()
        self.coefs_ = [weight.T.copy() for weight, _ in layers]
        self.intercepts_ = [bias.copy() for _, bias in layers]
        self.n_layers_ = len(layers) + 1
        self.n_outputs_ = self.coefs_[-1].shape[1]
        self.out_activation_ = self._out_activation()

    def _outputs(self, X):
        check_is_fitted(self, "_model")
        encoder = getattr(self, "_encoder", None)
        if encoder is None:
            X = validate_data(self, X, reset=False, dtype=np.float32, order="C")
        else:
            X = check_array(encoder.transform(X), dtype=np.float32, order="C")
        return self._model.predict(X, device=self._predict_device(), probabilities=True)

    def _validate_inputs(self, X, y, reset, encode_anew, **options):
        """``validate_data(self, X, y, reset=reset, **options)``; a
        DataFrame with categorical columns (``category``, ``object``,
        string) one-hot encoded first (``_tabular.TabularEncoder``: fitted
        anew when ``encode_anew``, else the fitted one's categories), with
        ``n_features_in_`` and ``feature_names_in_`` the DataFrame's own
        columns. Sets ``categorical_features_`` and ``categories_`` when
        encoding anew."""
        if encode_anew:
            self.__dict__.pop("_encoder", None)
            if has_categorical_columns(X):
                encoder = TabularEncoder().fit(X)
                self._encoder = encoder
                self.categorical_features_ = np.asarray(encoder.categorical_columns, dtype=object)
                self.categories_ = list(encoder.categories)
            else:
                self.categorical_features_ = np.asarray([], dtype=object)
                self.categories_ = []
        encoder = getattr(self, "_encoder", None)
        if encoder is None:
            return validate_data(self, X, y, reset=reset, **options)
        X_encoded, y = check_X_y(encoder.transform(X), y, **options)
        if encode_anew:
            self.n_features_in_ = len(encoder.columns)
            self.feature_names_in_ = np.asarray(encoder.columns, dtype=object)
        return X_encoded, y

    def _predict_device(self):
        return getattr(self, "device_", "cpu").split(":")[0] if self.device == "auto" else self.device

    @property
    def model_(self):
        """The trained ``retroprop.Model`` (state dict, ONNX, model file)."""
        check_is_fitted(self, "_model")
        return self._model

    def to_onnx(self, path=None, probabilities=True):
        """Writes the trained network as ONNX (``Model.to_onnx``) to
        ``path``, or returns its bytes. With ``probabilities`` (the
        default) its output is ``predict_proba``'s for a classifier,
        ``[rows, classes]``: for two classes both columns, ``[1 - p, p]``;
        without, the logits (one column for two classes). A regressor's is
        ``predict``'s, ``[rows, targets]``."""
        both = getattr(self, "_kind", None) == "binary"
        return self.model_.to_onnx(path, probabilities=probabilities, both_classes=both)

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_partial_trainer", None)
        if "_model" in state:
            state["_model"] = state["_model"].to_bytes()
        return state

    def __setstate__(self, state):
        state = dict(state)
        if "_model" in state:
            state["_model"] = Model.from_bytes(state["_model"])
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class _FitPlan:
    """What a fit trains (``_BaseMLP._plan``): ``seed``, ``sizes``,
    ``loss``, ``batch_rows``, ``warm`` with ``params`` and
    ``standardization``, ``early`` with ``train_idx`` and ``val_idx``
    (positions in the fit's rows), ``rows``, the rows it trains on, and
    ``total_weight`` and ``batch_weight``, their weight and a batch's
    (``alpha``'s L2 term divides by them as scikit-learn's does)."""

    params = None
    standardization = None
    train_idx = None
    val_idx = None


def _column(y):
    """A column vector as 1-D, with scikit-learn's DataConversionWarning."""
    if y.ndim == 2 and y.shape[1] == 1:
        return column_or_1d(y, warn=True)
    return y


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        """Multi-layer perceptron classifier trained by retroprop, with
    scikit-learn's ``MLPClassifier`` parameters and fitted attributes
    (``classes_`` of any label type, ``coefs_``, ``intercepts_``,
    ``n_iter_``, ``loss_curve_``, ``best_loss_``, ``t_``,
    ``n_features_in_``, ``feature_names_in_``, ``n_layers_``,
    ``n_outputs_``, ``out_activation_``).

    Two classes train one logistic output (binary cross-entropy with
    logits), more classes a softmax output (cross-entropy), a label
    indicator matrix one logistic output per label, as scikit-learn does.
    """
        + _DIFFERENCES
    )

    #: How ``fit`` validates its inputs (``validate_data``'s options).
    _INPUTS = dict(multi_output=True, dtype=np.float32, order="C")

    def _is_classifier(self):
        return True

    def _fit_targets(self, y):
        """A fresh fit's encoded targets from validated ``y`` (1-D where
        it was a column); sets ``classes_``."""
        check_classification_targets(y)
        return self._encode(y, keep_classes=False)

    def _loss_name(self):
        return "cross_entropy" if self._kind == "multiclass" else "bce_with_logits"

    def _out_activation(self):
        return "softmax" if self._kind == "multiclass" else "logistic"

    def _n_outputs(self, targets):
        if self._kind == "multiclass":
            return len(self.classes_)
        return targets[1].shape[1]

    @staticmethod
    def _stratify_ok(labels):
        counts = np.bincount(labels)
        return counts[counts > 0].min() >= 2

    def _encode(self, y, keep_classes):
        """``y`` as the native targets; sets ``classes_`` unless
        ``keep_classes`` (warm start, partial_fit after the first call)."""
        if type_of_target(y) == "multilabel-indicator":
            y = np.asarray(y)
            if not keep_classes:
                self.classes_ = np.arange(y.shape[1])
            self._kind = "multilabel"
            return None, np.ascontiguousarray(y, dtype=np.float32)
        y = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
        if keep_classes:
            unseen = np.setdiff1d(unique_labels(y), self.classes_)
            if unseen.size:
                raise ValueError(
                    f"`y` has classes not in `self.classes_` (got {list(unseen)}, "
                    f"expected among {list(self.classes_)})"
                )
        else:
            self.classes_ = unique_labels(y)
        index = np.searchsorted(self.classes_, y)
        if len(self.classes_) > 2:
            self._kind = "multiclass"
            return np.ascontiguousarray(index, dtype=np.uint32), None
        self._kind = "binary"
        return None, np.ascontiguousarray((index == 1).reshape(-1, 1), dtype=np.float32)

    def fit(self, X, y, sample_weight=None):
        """Fits the model to ``X`` and labels ``y`` for up to ``max_iter``
        epochs (fewer when ``tol`` or ``early_stopping`` ends it);
        ``sample_weight`` weighs each row's loss (the CPU only, for now)."""
        self._check_params()
        keep = self.warm_start and hasattr(self, "_model")
        X, y = self._validate_inputs(X, y, True, not keep, **self._INPUTS)
        y = _column(y)
        check_classification_targets(y)
        if keep and set(unique_labels(y)) != set(self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {self.classes_}, `y` has {unique_labels(y)}"
            )
        if not keep:
            self.__dict__.pop("_model", None)
        targets = self._encode(y, keep_classes=keep)
        return self._run(X, targets, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``X``, ``y``; ``classes`` (every label of every
        call) is required on the first call."""
        self._check_params()
        first = not hasattr(self, "_model")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        X, y = self._validate_inputs(X, y, first, first, multi_output=True, dtype=np.float32, order="C")
        y = _column(y)
        check_classification_targets(y)
        if first and type_of_target(y) != "multilabel-indicator":
            self.classes_ = unique_labels(classes)
        elif first:
            self.classes_ = np.arange(np.asarray(y).shape[1])
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(
                f"`classes={list(classes)}` is not the same as on the first call to partial_fit, "
                f"which was {list(self.classes_)}"
            )
        targets = self._encode(y, keep_classes=True)
        return self._run(X, targets, incremental=True, sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities ``[rows, classes]`` (for labels: one
        probability per label)."""
        p = self._outputs(X)
        if self._kind == "binary":
            p = p.ravel().astype(np.float64)
            return np.column_stack([1.0 - p, p])
        return p.astype(np.float64)

    def predict_log_proba(self, X):
        """The logarithm of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each row (labels: those over 0.5)."""
        p = self._outputs(X)
        if self._kind == "multilabel":
            return (p > 0.5).astype(int)
        if self._kind == "binary":
            index = (p.ravel() > 0.5).astype(int)
            if len(self.classes_) == 1:
                index[:] = 0
        else:
            index = np.argmax(p, axis=1)
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        """Multi-layer perceptron regressor trained by retroprop, with
    scikit-learn's ``MLPRegressor`` parameters and fitted attributes. The
    loss is scikit-learn's squared error, ½ mean (y − ŷ)² (retroprop's
    ``half_mse``); the output layer is identity.
    """
        + _DIFFERENCES
    )

    #: How ``fit`` validates its inputs (``validate_data``'s options).
    _INPUTS = dict(multi_output=True, y_numeric=True, dtype=np.float32, order="C")

    def _is_classifier(self):
        return False

    def _fit_targets(self, y):
        """A fit's targets from validated ``y`` (1-D where it was a
        column): float32 ``[rows, targets]``."""
        self._y_1d = y.ndim == 1
        return None, np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)

    def _loss_name(self):
        return "half_mse"

    def _out_activation(self):
        return "identity"

    def _n_outputs(self, targets):
        return targets[1].shape[1]

    @staticmethod
    def _stratify_ok(labels):
        return False

    def fit(self, X, y, sample_weight=None):
        """Fits the model to ``X`` and targets ``y`` for up to ``max_iter``
        epochs (fewer when ``tol`` or ``early_stopping`` ends it);
        ``sample_weight`` weighs each row's loss (the CPU only, for now)."""
        self._check_params()
        keep = self.warm_start and hasattr(self, "_model")
        X, y = self._validate_inputs(X, y, True, not keep, **self._INPUTS)
        y = _column(y)
        if not self.warm_start:
            self.__dict__.pop("_model", None)
        return self._run(X, self._fit_targets(y), incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X``, ``y``."""
        self._check_params()
        first = not hasattr(self, "_model")
        X, y = self._validate_inputs(
            X, y, first, first, multi_output=True, y_numeric=True, dtype=np.float32, order="C"
        )
        y = _column(y)
        self._y_1d = y.ndim == 1
        values = np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)
        return self._run(X, (None, values), incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """The predicted targets, ``[rows]`` or ``[rows, targets]`` as ``y``
        was."""
        out = self._outputs(X).astype(np.float64)
        return out.ravel() if self._y_1d else out
