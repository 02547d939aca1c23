"""retroprop.GridSearchCV and RandomizedSearchCV give the cv_results_ of
scikit-learn's searches around retroprop's estimators, split score by
split score to the last digit, while training the candidates × folds of
an architecture as the members of one run: with tol's stopping reached,
early stopping, unequal folds, a Pipeline, multimetric scoring and
refit, a randomized search, a regressor, a fold without some class, and
pairs that cannot be members beside those that are."""

import warnings

import numpy as np
import pytest
from conftest import need

sklearn = need("sklearn")
from scipy.stats import loguniform  # noqa: E402
from sklearn import model_selection  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import retroprop  # noqa: E402
from retroprop import search  # noqa: E402

TIMES = ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")


@pytest.fixture
def runs(monkeypatch):
    """The runs of members the searches make: each one's member count."""
    made = []
    train = search._Batch._run

    def counted(self, group, rows):
        done = train(self, group, rows)
        made.append(len(group) if done else 0)
        return done

    monkeypatch.setattr(search._Batch, "_run", counted)
    return made


def digits(rows=500):
    x, y = load_digits(return_X_y=True)
    return (x[:rows] / 16.0).astype(np.float64), y[:rows]


def both(make, x, y, **fit):
    """scikit-learn's search and retroprop's, each made by ``make(kind)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = make(model_selection).fit(x, y, **fit)
        ours = make(retroprop).fit(x, y, **fit)
    return theirs, ours


def assert_same_results(theirs, ours):
    """Every cv_results_ entry but the times equal (NaN equal to NaN), and
    the best candidate and its refit alike."""
    assert sorted(theirs.cv_results_) == sorted(ours.cv_results_), "cv_results_ keys differ"
    for key, value in theirs.cv_results_.items():
        if key in TIMES:
            continue
        if key == "params":
            assert value == ours.cv_results_[key]
            continue
        mine = ours.cv_results_[key]
        if np.ma.isMaskedArray(value):
            assert list(value) == list(mine), f"{key}: {list(value)} against {list(mine)}"
        else:
            np.testing.assert_array_equal(mine, value, err_msg=key)
    for attribute in ("best_index_", "best_params_", "best_score_", "n_splits_", "multimetric_"):
        if hasattr(theirs, attribute):
            assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


def classifier(**settings):
    base = dict(hidden_layer_sizes=(16,), max_iter=60, random_state=0, device="cpu")
    return retroprop.MLPClassifier(**{**base, **settings})


def test_a_grid_with_tol_stopping_gives_scikit_learns_split_scores(runs):
    x, y = digits()
    est = classifier(max_iter=200, tol=1e-3, n_iter_no_change=3)
    grid = {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4, 1e-1]}
    theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=3, return_train_score=True), x, y)
    assert_same_results(theirs, ours)
    np.testing.assert_array_equal(ours.best_estimator_.predict_proba(x), theirs.best_estimator_.predict_proba(x))
    assert runs == [12], f"one run of every candidate × fold: {runs}"
    # The grid reaches tol's stopping for some fits and max_iter for none.
    lone = clone(est).set_params(learning_rate_init=1e-2).fit(x, y)
    assert lone.n_iter_ < 200, "the test wants fits that stop by tol"


def test_early_stopping_splits_each_fold_as_its_lone_fit(runs):
    x, y = digits(400)
    est = classifier(early_stopping=True, validation_fraction=0.2, n_iter_no_change=4, max_iter=100)
    grid = {"learning_rate_init": [3e-3, 3e-2], "beta_1": [0.8, 0.9]}
    theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=4), x, y)
    assert_same_results(theirs, ours)
    assert runs == [16]


def test_unequal_folds_and_a_fold_without_a_class(runs):
    x, y = digits(300)
    # KFold on 301 rows: folds of 101, 100, 100 rows.
    x, y = np.vstack([x, x[:1]]), np.concatenate([y, y[:1]])
    est = classifier(max_iter=30)
    grid = {"learning_rate_init": [1e-3, 1e-2]}
    theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=model_selection.KFold(3)), x, y)
    assert_same_results(theirs, ours)
    # Class 9 only in the last third: that fold's training rows lack it, and
    # its lone fit has 9 outputs, a run of its own.
    y_missing = y.copy()
    y_missing[y_missing == 9] = 8
    y_missing[250:260] = 9
    theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=model_selection.KFold(3)), x, y_missing)
    assert_same_results(theirs, ours)
    assert sorted(runs[1:]) == [2, 4], f"the fold without class 9 is a run of its own: {runs}"


def test_a_pipeline_with_a_scaler_is_fitted_per_fold(runs):
    x, y = digits(400)
    x = x * np.linspace(1, 50, x.shape[1])
    pipe = make_pipeline(StandardScaler(), classifier(max_iter=40))
    grid = {"mlpclassifier__learning_rate_init": [1e-3, 1e-2], "mlpclassifier__alpha": [1e-4, 1e-2],
            "standardscaler__with_mean": [True, False]}
    theirs, ours = both(lambda kind: kind.GridSearchCV(pipe, grid, cv=3), x, y)
    assert_same_results(theirs, ours)
    np.testing.assert_array_equal(ours.best_estimator_.predict_proba(x), theirs.best_estimator_.predict_proba(x))
    assert sorted(runs) == [4] * 6, f"a run a fold and scaler setting: {runs}"


def test_multimetric_scoring_refit_by_name_and_train_scores(runs):
    x, y = digits(300)
    est = classifier(max_iter=25)
    grid = {"learning_rate_init": [1e-3, 1e-2], "batch_size": [32, 64]}
    scoring = {"accuracy": "accuracy", "nll": "neg_log_loss", "f1": "f1_macro"}
    theirs, ours = both(
        lambda kind: kind.GridSearchCV(est, grid, cv=3, scoring=scoring, refit="nll", return_train_score=True), x, y
    )
    assert_same_results(theirs, ours)
    assert sorted(runs) == [6, 6], f"a run a batch size: {runs}"


def test_a_randomized_search_draws_and_scores_as_scikit_learns(runs):
    x, y = digits(300)
    est = classifier(max_iter=25)
    space = {"learning_rate_init": loguniform(1e-4, 1e-1), "alpha": loguniform(1e-5, 1e-1),
             "hidden_layer_sizes": [(8,), (16,)]}
    theirs, ours = both(
        lambda kind: kind.RandomizedSearchCV(est, space, n_iter=6, cv=3, random_state=4), x, y
    )
    assert_same_results(theirs, ours)
    assert sum(runs) == 18 and len(runs) == 2, f"a run an architecture: {runs}"


def test_a_regressor_with_a_diverging_candidate_gets_the_error_score(runs):
    x, y = make_regression(n_samples=240, n_features=6, noise=5.0, random_state=1)
    est = retroprop.MLPRegressor((12,), solver="sgd", max_iter=20, random_state=3, device="cpu")
    grid = {"learning_rate_init": [1e-3, 1e6]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)
        theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=3, error_score=np.nan), x, y)
    assert np.isnan(theirs.cv_results_["split0_test_score"][1]), "the test wants a candidate that diverges"
    assert_same_results(theirs, ours)
    assert runs == [6]


def test_pairs_that_cannot_be_members_are_fit_as_scikit_learn_fits_them(runs):
    x, y = make_classification(n_samples=240, n_features=8, n_informative=5, random_state=2)
    est = classifier(max_iter=15)
    grid = [{"learning_rate_init": [1e-3, 1e-2]}, {"standardize": [True]}, {"learning_rate": ["adaptive"]}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.FitFailedWarning)
        warnings.simplefilter("ignore", UserWarning)
        theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=3, n_jobs=2), x, y)
    assert np.isnan(theirs.cv_results_["mean_test_score"][3]), "learning_rate='adaptive' fails to fit"
    assert_same_results(theirs, ours)
    assert runs == [6], f"only the first grid's pairs are members: {runs}"


def test_the_lone_fits_warnings_come_from_each_members_fit():
    x, y = digits(200)
    est = classifier(max_iter=3)
    with pytest.warns(ConvergenceWarning) as caught:
        retroprop.GridSearchCV(est, {"learning_rate_init": [1e-3, 1e-2]}, cv=2, refit=False).fit(x, y)
    assert sum(isinstance(w.message, ConvergenceWarning) for w in caught) == 4, "one a member's fit"


def test_any_other_estimator_is_scikit_learns_search_unchanged():
    from sklearn.linear_model import LogisticRegression

    x, y = digits(200)
    grid = {"C": [0.1, 1.0]}
    theirs, ours = both(lambda kind: kind.GridSearchCV(LogisticRegression(max_iter=50), grid, cv=2), x, y)
    assert_same_results(theirs, ours)


def test_a_gpu_search_trains_its_members_on_the_gpu_as_their_lone_gpu_fits(runs):
    """device="gpu" (lavapipe here): the members' run is on the GPU and
    each split's score is that of scikit-learn's search around the GPU
    estimator, within the CPU-vs-GPU tolerance: at most one row of a
    split scored otherwise."""
    x, y = digits(200)
    est = classifier(max_iter=10, device="gpu")
    grid = {"learning_rate_init": [1e-3, 1e-2]}
    theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=2), x, y)
    assert runs == [4], f"one run of every candidate × fold: {runs}"
    assert ours.best_estimator_.device_.startswith("gpu"), ours.best_estimator_.device_
    for k in range(2):
        key = f"split{k}_test_score"
        np.testing.assert_allclose(ours.cv_results_[key], theirs.cv_results_[key], atol=1.5 / 100, err_msg=key)


def test_sample_weight_weighs_each_members_rows_as_its_lone_fit(runs):
    """search.fit(X, y, sample_weight=w): each member trains on its fold's
    weights (alpha's decay over its batch's weight, early stopping's
    split of them), with scikit-learn's search's split scores."""
    x, y = digits(240)
    w = np.random.default_rng(3).integers(0, 4, len(y)).astype(np.float64)
    grid = {"learning_rate_init": [3e-3, 3e-2], "alpha": [1e-4, 1e-1]}
    for est in (classifier(max_iter=20), classifier(max_iter=20, early_stopping=True, n_iter_no_change=3)):
        runs.clear()
        theirs, ours = both(lambda kind: kind.GridSearchCV(est, grid, cv=3), x, y, sample_weight=w)
        assert_same_results(theirs, ours)
        assert runs == [12], f"one run of every candidate × fold: {runs}"
    unweighted = retroprop.GridSearchCV(classifier(max_iter=20, early_stopping=True, n_iter_no_change=3), grid,
                                        cv=3).fit(x, y)
    assert not np.array_equal(unweighted.cv_results_["split0_test_score"], ours.cv_results_["split0_test_score"]), (
        "the test wants weights that change the scores"
    )
