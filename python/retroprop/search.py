"""``GridSearchCV`` and ``RandomizedSearchCV``: scikit-learn's searches,
with every candidate × fold whose estimator is a retroprop
``MLPClassifier`` or ``MLPRegressor`` (alone or last in a ``Pipeline``)
trained as a member of one run of the library's ``Members`` with the
others of its architecture, instead of one fit after another.

Each member trains exactly as ``clone(estimator).set_params(**params)
.fit(X[train], y[train])`` would (its seed drawn from ``random_state``,
``alpha``'s decay over its batch rows, its ``early_stopping`` split of the
fold's rows, ``tol`` and ``n_iter_no_change`` on its own ``loss_curve_``,
``max_iter``, its warnings), and is then scored by scikit-learn's own
``_fit_and_score`` as a fitted estimator, so ``cv_results_`` holds the
scores scikit-learn's search around retroprop's estimator gives, to the
last digit on the CPU.

How it hooks into scikit-learn: ``BaseSearchCV.fit`` calls
``_run_search(evaluate_candidates)``, and ``evaluate_candidates`` calls
``_fit_and_score`` for each candidate × split. ``_run_search`` here hands
scikit-learn an ``evaluate_candidates`` that records the splits (a ``cv``
that returns what the search's own ``cv`` splits) and, while it runs,
answers the search's ``_fit_and_score`` calls: the first one trains every
pair that can be a member, and each call then scores its pair's fitted
estimator through the real ``_fit_and_score`` (its ``fit`` replaced by
putting the trained state in place). Everything else (the bookkeeping of
``cv_results_``, ranks, ``best_*``, ``refit``, multimetric scoring,
``error_score``) is scikit-learn's.
"""

import contextlib
import functools
import threading
import time
import warnings
from itertools import product

import numpy as np
from sklearn import model_selection
from sklearn.base import clone
from sklearn.model_selection import _search
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_sample_weight, validate_data

from . import _retroprop
from ._core import as_rows
from .sklearn import _BaseMLP, _column

#: The optimizer options a member has of its own; the others (nesterov)
#: and a momentum of 0 or not are the run's.
_MEMBER_OPTIONS = ("lr", "weight_decay", "betas", "eps", "momentum")

#: The settings of ``_BaseMLP._trainer_settings`` a member has of its own.
_MEMBER_SETTINGS = ("seed", "optimizer_options", "dropout", "lr_schedule")

_REAL_FIT_AND_SCORE = _search._fit_and_score


def _final_mlp(estimator):
    """The retroprop estimator ``estimator`` is or ends with (a
    ``Pipeline``'s last step), else None."""
    if isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1] if estimator.steps else None
    return estimator if isinstance(estimator, _BaseMLP) else None


class _RecordedSplits:
    """The search's ``cv``, keeping the splits it gives: scikit-learn
    splits once per ``evaluate_candidates`` and fits each pair on them."""

    def __init__(self, cv):
        self.cv = cv
        self.splits = None

    def split(self, X, y=None, **params):
        self.splits = list(self.cv.split(X, y, **params))
        return self.splits

    def get_n_splits(self, *args, **kwargs):
        return self.cv.get_n_splits(*args, **kwargs)


class _Data:
    """Rows a run of members trains on: float32 inputs, validated targets,
    the attributes ``validate_data`` gives a fit, and (in a ``Pipeline``)
    the preprocessing steps fitted on the fold."""

    def __init__(self, x, y, checked, steps=None):
        self.x = x
        self.y = y
        self.inputs = {a: getattr(checked, a) for a in ("n_features_in_", "feature_names_in_") if hasattr(checked, a)}
        self.steps = steps
        # The whole y encoded by its own classes, once asked for.
        self.whole = None
        self._weights = None

    def weights(self, sample_weight):
        """``sample_weight`` (one a row of these rows) as a lone fit takes
        it, float32, checked once; None stays None."""
        if sample_weight is None:
            return None
        if self._weights is None:
            self._weights = _check_sample_weight(sample_weight, self.x, dtype=np.float32)
        return self._weights


class _Pair:
    """One candidate × split trained as a member: its estimator (fitted
    in place once the run ends), its plan, and what its lone fit would
    have warned or raised."""

    def __init__(self, candidate, split, estimator, mlp):
        self.candidate = candidate
        self.split = split
        self.estimator = estimator
        self.mlp = mlp
        self.plan = None
        self.member = None
        self.caught = []
        self.error = None
        self.converged = False
        self.fit_time = 0.0


def _install(estimator, pair, *args, **kwargs):
    """``estimator.fit`` for one call: the state the member's run left,
    the lone fit's warnings replayed, or the error it would have raised."""
    del estimator.__dict__["fit"]
    for caught in pair.caught:
        warnings.warn(caught.message, stacklevel=2)
    if pair.error is not None:
        raise RuntimeError(pair.error)
    estimator.__dict__.update(pair.estimator.__dict__)
    return estimator


class _Batch:
    """One ``evaluate_candidates`` call of a search: its candidates ×
    splits, those trained as members, and the results of the others
    computed ahead in parallel (with ``n_jobs``)."""

    def __init__(self, search, candidates, recorded, n_jobs):
        self.search = search
        self.candidates = candidates
        self.recorded = recorded
        self.n_jobs = n_jobs
        self.pairs = None
        self.ahead = {}
        self.sets = {}
        # The search's sample_weight, one a row of X (None: unweighted).
        self.weights = None

    # -- the search's calls ----------------------------------------------

    def fit_and_score(self, estimator, X, y, **kwargs):
        """What scikit-learn's ``_fit_and_score`` returns for this call's
        pair: a member's fitted estimator scored by it, or its own fit."""
        if self.pairs is None:
            self._train(estimator, X, y, kwargs)
        key = (kwargs["candidate_progress"][0], kwargs["split_progress"][0])
        if key in self.ahead:
            return self.ahead.pop(key)
        pair = self.pairs.get(key)
        if pair is None:
            return _REAL_FIT_AND_SCORE(estimator, X, y, **kwargs)
        estimator.fit = functools.partial(_install, estimator, pair)
        result = _REAL_FIT_AND_SCORE(estimator, X, y, **kwargs)
        if "fit_time" in result and pair.error is None:
            result["fit_time"] = pair.fit_time
        return result

    # -- training ----------------------------------------------------------

    def _train(self, estimator, X, y, kwargs):
        """Every pair that can be a member trained, grouped into runs; the
        rest computed ahead when ``n_jobs`` asks for parallel fits."""
        self.pairs = {}
        splits = self.recorded.splits
        pairs = list(product(enumerate(self.candidates), enumerate(splits)))
        fallback = []
        groups = {}
        data = {}
        fit_params = kwargs.get("fit_params") or {}
        if set(fit_params) <= {"sample_weight"}:
            self.weights = fit_params.get("sample_weight")
            for (c, params), (s, (train, _)) in pairs:
                pair = self._pair(estimator, X, y, c, params, s, np.asarray(train), data)
                if pair is None:
                    fallback.append((c, params, s))
                else:
                    groups.setdefault(pair.key, []).append(pair)
        else:
            fallback = [(c, params, s) for (c, params), (s, _) in pairs]
        for key, group in groups.items():
            if self._run(group, self.sets[key[0]]):
                for pair in group:
                    self.pairs[(pair.candidate, pair.split)] = pair
            else:
                fallback += [(p.candidate, self.candidates[p.candidate], p.split) for p in group]
        if fallback and self.n_jobs not in (None, 1):
            self._ahead(estimator, X, y, kwargs, fallback)

    def _pair(self, estimator, X, y, c, params, s, train, data):
        """Candidate ``c`` on split ``s`` ready to be a member (its data,
        plan and settings), or None where it cannot be one (then it is fit
        as scikit-learn fits it, which also raises what its fit raises)."""
        est = clone(estimator).set_params(**clone(params, safe=False))
        mlp = _final_mlp(est)
        if mlp is None or mlp.standardize or hasattr(mlp, "_model"):
            return None
        # Weights reach a Pipeline's steps by name, and a lone GPU fit
        # refuses them: those pairs are fit as scikit-learn fits them.
        if self.weights is not None and (isinstance(est, Pipeline) or mlp.device != "cpu"):
            return None
        pair = _Pair(c, s, est, mlp)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                mlp._check_params()
                rows = self._data(est, mlp, X, y, s, train, params, data)
                self._prepare(pair, rows, data)
            pair.caught = list(caught)
        except Exception:
            return None
        return pair

    def _data(self, est, mlp, X, y, s, train, params, data):
        """The key of the rows ``mlp`` trains on in ``data`` (validated
        once for every pair that shares them: the whole ``X`` for an
        estimator alone, the fold's preprocessed rows in a ``Pipeline``)
        and the positions of the pair's training rows there."""
        if isinstance(est, Pipeline):
            final = est.steps[-1][0]
            shared = sorted((k, repr(v)) for k, v in params.items() if k != final and not k.startswith(final + "__"))
            key = ("pipeline", s, tuple(shared))
            if key not in data:
                X_train, y_train = _safe_split(est, X, y, train)
                prep = est[:-1]
                Xt = prep.fit_transform(X_train, y_train)
                checked = clone(mlp)
                xv, yv = validate_data(checked, Xt, y_train, **mlp._INPUTS)
                data[key] = _Data(xv, yv, checked, prep.steps)
            rows = np.arange(len(train))
            est.steps = list(data[key].steps) + [est.steps[-1]]
        else:
            key = ("whole",)
            if key not in data:
                checked = clone(mlp)
                xv, yv = validate_data(checked, X, y, **mlp._INPUTS)
                data[key] = _Data(xv, yv, checked)
            rows = train
        for attribute, value in data[key].inputs.items():
            setattr(mlp, attribute, value)
        return key, rows

    def _prepare(self, pair, rows, data):
        """The pair's lone fit up to its training: its targets (the
        classes its fold's rows have), its plan (seed, early stopping's
        split) and settings, split into the run's and its own."""
        data_key, positions = rows
        shared = data[data_key]
        mlp = pair.mlp
        y = _column(shared.y[positions] if data_key[0] == "whole" else shared.y)
        targets = mlp._fit_targets(y)
        plan = mlp._plan((len(positions), shared.x.shape[1]), targets, False)
        weights = shared.weights(self.weights)
        if weights is not None:
            # The weights of the rows the lone fit trains on.
            mlp._weigh(plan, weights[positions][plan.train_idx] if plan.early else weights[positions])
        set_key, positions = self._rows(pair, data_key, shared, positions, targets, weights)
        if plan.early:
            own_rows, validation_rows = positions[plan.train_idx], positions[plan.val_idx]
        else:
            own_rows, validation_rows = positions, None
        settings = mlp._trainer_settings(
            plan.sizes, plan.loss, plan.batch_rows, plan.batch_weight, plan.seed, int(mlp.max_iter), plan.early
        )
        options = settings["optimizer_options"]
        pair.member = dict(
            seed=settings["seed"],
            options=[(n, v) for n, v in options if n in _MEMBER_OPTIONS],
            lr_schedule=settings["lr_schedule"],
            dropout=settings["dropout"],
            rows=np.ascontiguousarray(own_rows, dtype=np.uint32),
            validation_rows=None if validation_rows is None else np.ascontiguousarray(validation_rows, dtype=np.uint32),
        )
        run = {k: v for k, v in settings.items() if k not in _MEMBER_SETTINGS}
        if not plan.early:
            run["min_delta"] = None
        # The options that shape the optimizer's state are the run's.
        shape = tuple((n, v) for n, v in options if n not in _MEMBER_OPTIONS)
        shape += tuple((n, float(v) == 0.0) for n, v in options if n == "momentum")
        pair.key = (set_key, tuple(sorted((k, _frozen(v)) for k, v in run.items())), shape)
        run["optimizer_options"] = options
        pair.run = run
        pair.plan = plan

    def _rows(self, pair, data_key, shared, positions, targets, weights):
        """The data set the pair's run trains on, by its key in
        ``self.sets`` (inputs, encoded targets and the rows' ``weights``
        or None), and the positions of
        the pair's rows there: the whole ``X`` with the whole ``y``
        encoded by the fold's classes where they are every class of
        ``y``; else (a fold without some class, whose lone fit has fewer
        outputs) a copy of the fold's rows; in a ``Pipeline`` the fold's
        preprocessed rows."""
        if data_key[0] != "whole":
            set_key = (data_key,)
            self.sets.setdefault(set_key, (shared.x, targets, None))
            return set_key, positions
        if shared.whole is None:
            scratch = clone(pair.mlp)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shared.whole = (_classes_key(scratch, scratch._fit_targets(_column(shared.y))), scratch)
        (whole_key, whole_targets), _ = shared.whole
        if whole_key == _classes_key(pair.mlp, targets)[0]:
            set_key = (data_key, "whole")
            self.sets.setdefault(set_key, (shared.x, whole_targets, weights))
            return set_key, positions
        set_key = (data_key, "fold", pair.split)
        fold_weights = None if weights is None else np.ascontiguousarray(weights[positions])
        self.sets.setdefault(set_key, (np.ascontiguousarray(shared.x[positions]), targets, fold_weights))
        return set_key, np.arange(len(positions))

    def _run(self, group, rows):
        """Trains ``group`` (pairs of one architecture and run settings on
        the same rows) as the members of one run and fits each pair's
        estimator from its member; False where the run could not be made
        (its pairs are then fit one by one)."""
        start = time.perf_counter()
        run = dict(group[0].run)
        try:
            native = _retroprop.NativeMembers(run, [p.member for p in group])
        except (ValueError, RuntimeError):
            return False
        for pair in group:
            pair.mlp._start_curves(pair.plan)

        def on_epoch(records):
            for m, record in records:
                pair = group[m]
                if pair.mlp._take_epoch(record, pair.plan, False):
                    pair.converged = True
                    native.stop_member(m)

        x = as_rows(rows[0])
        classes, values = rows[1]
        weights = rows[2]
        early = group[0].plan.early
        try:
            history = native.fit(
                x,
                classes,
                values,
                x if early else None,
                classes if early else None,
                values if early else None,
                False,
                on_epoch,
                None,
                1,
                sample_weight=weights,
                sample_weight_val=weights if early else None,
                weight_norms_only=True,
            )
        except Exception:
            return False
        model = native.model()
        for m, pair in enumerate(group):
            if history["errors"][m] is not None:
                pair.error = history["errors"][m]
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pair.mlp._end_fit(
                    pair.plan,
                    model.member(m),
                    history["members"][m]["stopped_early"],
                    pair.converged,
                    native.device_name,
                    False,
                )
            pair.caught += list(caught)
        seconds = time.perf_counter() - start
        for pair in group:
            pair.fit_time = seconds / len(group)
        return True

    def _ahead(self, estimator, X, y, kwargs, fallback):
        """The pairs that are no member, fit and scored by scikit-learn's
        ``_fit_and_score`` in parallel (``n_jobs``), as its search would."""
        n_splits = len(self.recorded.splits)
        n_candidates = len(self.candidates)
        common = {k: v for k, v in kwargs.items() if k not in ("train", "test", "parameters", "split_progress",
                                                                 "candidate_progress", "callback_ctx")}
        out = Parallel(n_jobs=self.n_jobs, pre_dispatch=self.search.pre_dispatch)(
            delayed(_REAL_FIT_AND_SCORE)(
                clone(estimator),
                X,
                y,
                train=self.recorded.splits[s][0],
                test=self.recorded.splits[s][1],
                parameters=params,
                split_progress=(s, n_splits),
                candidate_progress=(c, n_candidates),
                callback_ctx=None,
                **common,
            )
            for c, params, s in fallback
        )
        for (c, _, s), result in zip(fallback, out):
            self.ahead[(c, s)] = result


def _classes_key(mlp, targets):
    """``((kind, classes), targets)``: what a fit's encoding of its
    targets depends on, beside the targets."""
    classes = tuple(np.asarray(getattr(mlp, "classes_", ())).tolist())
    return (getattr(mlp, "_kind", None), classes), targets


def _frozen(value):
    """``value`` hashable (lists as tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


# -- answering the search's _fit_and_score -------------------------------

_local = threading.local()
_lock = threading.Lock()
_serving_count = 0


def _dispatch(estimator, X, y, **kwargs):
    """scikit-learn's ``_fit_and_score`` while a search here runs: the
    calls of that search (its ``caller``) go to its batch on this thread,
    any other (another search's, a nested one's) to scikit-learn's."""
    batch = getattr(_local, "batch", None)
    if batch is None or kwargs.get("caller", batch.search) is not batch.search:
        return _REAL_FIT_AND_SCORE(estimator, X, y, **kwargs)
    return batch.fit_and_score(estimator, X, y, **kwargs)


@contextlib.contextmanager
def _serving(batch):
    """Answers the search's ``_fit_and_score`` calls with ``batch`` on this
    thread while the block runs."""
    global _serving_count
    with _lock:
        if _serving_count == 0:
            _search._fit_and_score = _dispatch
        _serving_count += 1
    before = getattr(_local, "batch", None)
    _local.batch = batch
    try:
        yield
    finally:
        _local.batch = before
        with _lock:
            _serving_count -= 1
            if _serving_count == 0:
                _search._fit_and_score = _REAL_FIT_AND_SCORE


class _MembersSearch:
    """What ``GridSearchCV`` and ``RandomizedSearchCV`` add to
    scikit-learn's: ``fit`` and ``_run_search``."""

    def fit(self, X, y=None, **params):
        """Runs fit with all sets of parameters, as scikit-learn's search
        does (``X``, ``y``, ``**params`` as there), training the
        candidates × folds whose estimator is a retroprop MLP as the
        members of runs (see the class docstring). Returns ``self``."""
        if _final_mlp(self.estimator) is None or set(params) - {"groups", "sample_weight"}:
            return super().fit(X, y, **params)
        n_jobs = self.n_jobs
        # The members' pairs are scored in this process; n_jobs is for the
        # others (see _Batch._ahead).
        self._members_n_jobs = n_jobs
        self.n_jobs = None
        try:
            return super().fit(X, y, **params)
        finally:
            self.n_jobs = n_jobs
            del self._members_n_jobs

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        if not hasattr(self, "_members_n_jobs"):
            return super()._run_search(evaluate_candidates, callback_ctx=callback_ctx)

        def evaluate_as_members(candidate_params, cv=None, more_results=None, callback_ctx=None):
            candidate_params = list(candidate_params)
            recorded = _RecordedSplits(cv or self._checked_cv_orig)
            batch = _Batch(self, candidate_params, recorded, self._members_n_jobs)
            with _serving(batch):
                return evaluate_candidates(
                    candidate_params, cv=recorded, more_results=more_results, callback_ctx=callback_ctx
                )

        return super()._run_search(evaluate_as_members, callback_ctx=callback_ctx)


_HOW = """
    retroprop's search: scikit-learn's ``{name}`` (the same constructor,
    attributes, ``cv_results_`` keys, scoring, ``refit``), with every
    candidate × fold whose estimator is a retroprop ``MLPClassifier`` or
    ``MLPRegressor`` (alone, or the last step of a ``Pipeline``) trained
    as a member of one run (``retroprop.Trainer(members=k)``'s engine)
    with every other of the same architecture, batch size, epochs and run
    settings on the same rows; other architectures and settings make
    further runs. Each member trains exactly as its lone fit,
    ``clone(estimator).set_params(**params).fit(X[train], y[train])``,
    does: the seed drawn from ``random_state``, ``alpha``'s weight decay
    over its batch rows, with ``early_stopping`` the validation split of
    the fold's rows, ``tol`` and ``n_iter_no_change`` on its own
    ``loss_curve_``, ``max_iter``, its ``ConvergenceWarning``. Then
    scikit-learn scores each member's fitted estimator as it scores a
    fit, so the split scores equal those of scikit-learn's ``{name}``
    around retroprop's estimator, to the last digit on the CPU.

    Where it differs from scikit-learn's:

    - ``fit(X, y, sample_weight=w)`` weighs each member's rows as its
      lone fit's (CPU estimators alone, not in a ``Pipeline``).
      Candidates × folds that cannot be members (another estimator,
      ``standardize=True``, other fit parameters, weights on a GPU or in
      a ``Pipeline``, a fit that raises before training) are fit as
      scikit-learn fits them,
      with ``n_jobs`` workers; the members' runs use every core
      themselves, in this process, whatever ``n_jobs`` says.
    - In a ``Pipeline`` the preprocessing steps are fitted once a fold
      for every candidate that gives them the same parameters, and shared
      by those candidates' fitted pipelines.
    - ``mean_fit_time`` of a member is its run's time divided by its
      members.

    Every candidate × fold of a grid as the members of one run, with
    scikit-learn's results::

        >>> import retroprop
        >>> from sklearn import model_selection
        >>> from sklearn.datasets import load_iris
        >>> x, y = load_iris(return_X_y=True)
        >>> est = retroprop.MLPClassifier((8,), max_iter=300, random_state=0, device="cpu")
        >>> grid = dict(learning_rate_init=[1e-2, 1e-1], alpha=[1e-4, 1e-2])
        >>> ours = retroprop.{name}(est, grid, cv=3{more}).fit(x, y)
        >>> theirs = model_selection.{name}(est, grid, cv=3{more}).fit(x, y)
        >>> splits = ["split0_test_score", "split1_test_score", "split2_test_score"]
        >>> all((ours.cv_results_[k] == theirs.cv_results_[k]).all() for k in splits)
        True
        >>> ours.best_params_ == theirs.best_params_, bool(ours.best_score_ == theirs.best_score_)
        (True, True)
        >>> bool((ours.best_estimator_.predict(x) == theirs.best_estimator_.predict(x)).all())
        True
"""


class GridSearchCV(_MembersSearch, model_selection.GridSearchCV):
    __doc__ = (
        """Exhaustive search over a parameter grid, scikit-learn's
    ``GridSearchCV`` with retroprop's estimators trained many at once.
    """
        + _HOW.format(name="GridSearchCV", more="")
        + "\n    scikit-learn's documentation follows.\n\n"
        + (model_selection.GridSearchCV.__doc__ or "")
    )


class RandomizedSearchCV(_MembersSearch, model_selection.RandomizedSearchCV):
    __doc__ = (
        """Randomized search over parameters, scikit-learn's
    ``RandomizedSearchCV`` with retroprop's estimators trained many at
    once.
    """
        + _HOW.format(name="RandomizedSearchCV", more=", n_iter=3, random_state=0")
        + "\n    scikit-learn's documentation follows.\n\n"
        + (model_selection.RandomizedSearchCV.__doc__ or "")
    )
