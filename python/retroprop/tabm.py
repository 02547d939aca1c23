"""TabM (Gorishniy et al., ICLR 2025; the ``tabm`` package) as
scikit-learn estimators: ``TabMClassifier`` and ``TabMRegressor``, k MLPs
trained at once as one network, with the ``tabm`` package's defaults and
parameter names beside scikit-learn's."""

import numpy as np

from .sklearn import MLPClassifier, MLPRegressor

_ARCHS = ("tabm", "tabm-mini", "tabm-packed")

_DOC = """
    TabM is ``k`` MLPs of ``n_blocks`` hidden layers of ``d_block`` units
    (each ``Linear → activation → Dropout(dropout)``) trained at once, as
    one network whose activations hold every member's rows; training
    minimises the mean of the members' losses, prediction is the mean of
    their probabilities (classifier) or outputs (regressor). ``arch_type``
    as the package's:

    - ``"tabm"`` (default): every hidden layer a BatchEnsemble layer, one
      weight shared by the members and each member's input scaling ``r``,
      output scaling ``s`` and bias (the first ``r`` starts at random
      signs, the rest at ones);
    - ``"tabm-mini"``: one per-member scaling of the input before a shared
      MLP;
    - ``"tabm-packed"``: k independent MLPs.

    The output layer is each member's own (``[k, d_block, outputs]``).
    Forward pass, gradients and AdamW steps equal the ``tabm`` package's
    in float64 from the same parameters (tests/tabm.rs), and
    ``model_.state_dict()`` loads with ``strict=True`` into
    ``tabm.TabM.make(n_num_features=n_features_in_, d_out=…, k=k,
    n_blocks=n_blocks, d_block=d_block, arch_type=arch_type)``.

    Parameters (the package's names): ``k`` (32), ``n_blocks`` (3),
    ``d_block`` (512), ``dropout`` (0.1), ``arch_type``,
    ``num_embeddings`` (None; ``"periodic"``: ``rtdl_num_embeddings``'
    ``PeriodicEmbeddings(n_features, 24)``, PLR, before the members and
    shared by them, the first scaling then starting at N(0, 1) a feature,
    as the package; ``"periodic-lite"``: PLR-lite; the state dict holds it
    as ``num_module.*``; piecewise-linear embeddings are not built into
    TabM yet), ``activation`` (``"relu"``); scikit-learn's: ``max_iter`` (epochs, 100),
    ``batch_size`` (256), ``learning_rate_init`` (AdamW's lr, 2e-3),
    ``weight_decay`` (AdamW's, 3e-4), ``early_stopping`` (True: stops
    after ``n_iter_no_change`` (16) epochs without a lower loss of the
    ensemble on the held-out ``validation_fraction`` (0.1) and keeps the
    best epoch's parameters), ``tol`` (0), ``random_state``, ``verbose``;
    and ``device`` (``auto``: a hardware GPU when there is one, else the
    CPU; ``gpu`` any wgpu adapter: every member in each dispatch, equal to
    the CPU within the GPU tests' tolerance; numerical embeddings train
    on the CPU only, so far).

    Inputs are used as given: scale numeric features first (the package's
    examples use a quantile transform), as for any MLP.

    >>> from sklearn.datasets import load_iris
    >>> from retroprop import TabMClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = TabMClassifier(k=4, n_blocks=1, d_block=32, max_iter=30, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
"""


class _TabM:
    """What TabM's estimators share: their settings as the MLP
    estimators' machinery reads them."""

    # The MLP estimators' settings TabM fixes: AdamW at a constant rate.
    solver = "adamw"
    alpha = 0.0
    learning_rate = "constant"
    beta_1 = 0.9
    beta_2 = 0.999
    epsilon = 1e-8
    momentum = 0.9
    nesterovs_momentum = True
    shuffle = True
    warm_start = False
    init = "torch"
    lr_schedule = "constant"
    clip_grad_norm = None
    clip_grad_value = None
    standardize = False
    blocks = 0
    norm = "batch"
    block_multiplier = 2.0

    def __init__(self, *, k=32, n_blocks=3, d_block=512, dropout=0.1, arch_type="tabm", num_embeddings=None,
                 activation="relu", max_iter=100, batch_size=256, learning_rate_init=2e-3, weight_decay=3e-4,
                 early_stopping=True, validation_fraction=0.1, n_iter_no_change=16, tol=0.0,
                 random_state=None, verbose=False, device="auto"):
        self.k = k
        self.n_blocks = n_blocks
        self.d_block = d_block
        self.dropout = dropout
        self.arch_type = arch_type
        self.num_embeddings = num_embeddings
        self.activation = activation
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    @property
    def hidden_layer_sizes(self):
        """Each member's hidden layers: ``n_blocks`` of ``d_block``."""
        return (self.d_block,) * self.n_blocks

    def _check_params(self):
        for name in ("k", "n_blocks", "d_block"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.arch_type not in _ARCHS:
            raise ValueError(f"arch_type must be one of {', '.join(_ARCHS)}, got {self.arch_type!r}.")
        if self.num_embeddings not in (None, "periodic", "periodic-lite"):
            raise ValueError(
                f"num_embeddings must be None, 'periodic' or 'periodic-lite', got {self.num_embeddings!r}."
            )
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        return super()._check_params()

    def _trainer_settings(self, sizes, loss, batch_rows, batch_weight, seed, epochs, early):
        settings = super()._trainer_settings(sizes, loss, batch_rows, batch_weight, seed, epochs, early)
        encoder = getattr(self, "_encoder", None)
        cardinalities = list(encoder.cardinalities) if encoder is not None else []
        if cardinalities and self.num_embeddings is not None:
            raise ValueError(
                "num_embeddings with categorical columns is not built yet: the embedding would take the "
                "one-hot columns too (the tabm package embeds the numeric ones only)"
            )
        # The first scaling's chunks, as the package's: a numeric feature
        # each, a categorical feature's one-hot block each.
        chunks = [1] * (sizes[0] - sum(cardinalities)) + cardinalities if cardinalities else None
        settings.update(
            chunks=chunks,
            k=int(self.k),
            arch_type=str(self.arch_type),
            num_embeddings=self.num_embeddings,
            blocks=None,
            norm=None,
            block_multiplier=None,
            dropout=float(self.dropout) if self.dropout else None,
        )
        return settings

    def _set_model(self, model):
        from ._core import Model

        self._model = Model(model)
        self.n_layers_ = int(self.n_blocks) + 2
        self.out_activation_ = self._out_activation()


class TabMClassifier(_TabM, MLPClassifier):
    __doc__ = (
        """TabM classifier trained by retroprop: cross-entropy over the
    classes (two outputs for two classes, as the package's examples),
    ``predict_proba`` the mean of the members' probabilities. Labels of
    any type (``classes_``); multilabel targets train with binary
    cross-entropy, the mean of the members' sigmoids.
    """
        + _DOC
    )

    def _encode(self, y, keep_classes):
        classes, values = super()._encode(y, keep_classes)
        if self._kind == "binary":
            # Two classes are two outputs under cross-entropy, as the
            # package's examples train them.
            self._kind = "multiclass"
            return np.ascontiguousarray(values.ravel(), dtype=np.uint32), None
        return classes, values

    def _n_outputs(self, targets):
        if self._kind == "multiclass":
            return max(len(self.classes_), 2)
        return targets[1].shape[1]

    def predict(self, X):
        p = self._outputs(X)
        if self._kind == "multilabel":
            return (p > 0.5).astype(int)
        index = np.argmax(p, axis=1)
        if len(self.classes_) == 1:
            index[:] = 0
        return self.classes_[index]

    def predict_proba(self, X):
        p = self._outputs(X).astype(np.float64)
        return p[:, : len(self.classes_)] if self._kind == "multiclass" else p


class TabMRegressor(_TabM, MLPRegressor):
    __doc__ = (
        """TabM regressor trained by retroprop: mean squared error (the
    package's ``mse_loss``), ``predict`` the mean of the members'
    outputs.
    """
        + _DOC.replace("TabMClassifier", "TabMRegressor")
        .replace("load_iris", "load_diabetes")
        .replace("predict_proba(X[:2]).shape\n    (2, 3)", "predict(X[:2]).shape\n    (2,)")
    )

    def _loss_name(self):
        return "mse"
