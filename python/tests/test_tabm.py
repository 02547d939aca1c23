"""TabMClassifier and TabMRegressor: scikit-learn's estimator checks,
Pipeline and GridSearchCV, the fitted state dict loaded with strict=True
into the `tabm` package's `TabM.make` of the same settings and predicting
what the estimator predicts, the model file, the docstring's example, and
errors that name the setting."""

import doctest
import warnings

import numpy as np
import pytest

from conftest import need

sklearn = need("sklearn")
torch = need("torch")
tabm = need("tabm")
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import retroprop  # noqa: E402
from retroprop import TabMClassifier, TabMRegressor  # noqa: E402

from test_estimators import EXPECTED_FAILED_CHECKS  # noqa: E402

SMALL = dict(k=4, n_blocks=2, d_block=16, batch_size=64)


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


@pytest.mark.parametrize(
    "estimator",
    [TabMClassifier(**SMALL, max_iter=60, early_stopping=False), TabMRegressor(**SMALL, max_iter=150, early_stopping=False)],
    ids=lambda e: type(e).__name__,
)
def test_scikit_learns_estimator_checks(estimator):
    results = check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None)
    failed = [f"{r['check_name']}: {r['exception']}" for r in results if r["status"] == "failed"]
    assert not failed, "\n".join(failed)
    passed = [r for r in results if r["status"] == "passed"]
    assert len(passed) > 40, f"only {len(passed)} checks ran"


def test_pipeline_and_grid_search():
    x, y = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), TabMClassifier(**SMALL, max_iter=40, random_state=0))
    grid = GridSearchCV(pipe, {"tabmclassifier__arch_type": ["tabm", "tabm-mini"], "tabmclassifier__k": [2, 4]}, cv=3)
    grid.fit(x, y)
    assert grid.best_score_ > 0.85, grid.best_score_
    assert set(grid.best_params_) == {"tabmclassifier__arch_type", "tabmclassifier__k"}


def _torch_tabm(estimator, n_features, d_out, state):
    model = tabm.TabM.make(
        n_num_features=n_features,
        d_out=d_out,
        k=estimator.k,
        n_blocks=estimator.n_blocks,
        d_block=estimator.d_block,
        arch_type=estimator.arch_type,
    )
    model.load_state_dict({name: torch.from_numpy(np.asarray(v)) for name, v in state.items()}, strict=True)
    return model.eval()


@pytest.mark.parametrize("arch", ["tabm", "tabm-mini", "tabm-packed"])
def test_the_state_dict_loads_into_the_tabm_package_and_predicts_the_same(arch):
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    clf = TabMClassifier(**SMALL, arch_type=arch, max_iter=5, random_state=1).fit(x, y)
    model = _torch_tabm(clf, x.shape[1], 2, clf.model_.state_dict())
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).softmax(-1).mean(1).numpy()
    np.testing.assert_allclose(clf.predict_proba(x), theirs, atol=1e-5)
    assert clf.score(x, y) > 0.9


def test_a_regressor_predicts_the_mean_of_the_package_members_outputs():
    x, y = load_diabetes(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    reg = TabMRegressor(**SMALL, max_iter=30, random_state=0).fit(x, y)
    model = _torch_tabm(reg, x.shape[1], 1, reg.model_.state_dict())
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).mean(1).squeeze(-1).numpy()
    np.testing.assert_allclose(reg.predict(x), theirs, atol=1e-5)
    assert reg.score(x, y) > 0.4


def test_tabm_beats_chance_and_keeps_its_members_in_the_model_file(tmp_path):
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    xt, xv, yt, yv = train_test_split(x, y, random_state=0, stratify=y)
    clf = TabMClassifier(k=8, n_blocks=2, d_block=64, max_iter=40, random_state=0).fit(xt, yt)
    assert clf.score(xv, yv) > 0.93
    path = tmp_path / "tabm.safetensors"
    clf.model_.save(path)
    loaded = retroprop.load(path)
    np.testing.assert_allclose(
        loaded.predict(xv.astype(np.float32), probabilities=True), clf.predict_proba(xv), atol=1e-6
    )


def test_early_stopping_keeps_the_best_epoch():
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    clf = TabMClassifier(**SMALL, max_iter=200, n_iter_no_change=3, random_state=0).fit(x, y)
    assert clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_errors_name_the_setting():
    x, y = load_wine(return_X_y=True)
    with pytest.raises(ValueError, match="arch_type must be one of"):
        TabMClassifier(arch_type="tabm-big").fit(x, y)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        TabMClassifier(k=0).fit(x, y)
    with pytest.raises(ValueError, match="dropout must be in"):
        TabMClassifier(dropout=1.5).fit(x, y)
    clf = TabMClassifier(**SMALL, max_iter=2).fit(x, y)
    with pytest.raises(ValueError, match="has no plain dense layers"):
        clf.model_._native.dense_layers()


@pytest.mark.parametrize("arch", ["tabm", "tabm-mini", "tabm-packed"])
def test_trains_on_the_gpu_as_on_the_cpu(arch):
    """Each architecture trained on the GPU (Mesa's lavapipe where there is
    none) ends with the CPU's weights and predicts what it predicts: the
    same seeded run, dropout included, within the GPU's parity tolerance."""
    x, y = load_wine(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    fit = dict(SMALL, arch_type=arch, dropout=0.1, max_iter=3, random_state=0)
    gpu = TabMClassifier(**fit, device="gpu").fit(x, y)
    cpu = TabMClassifier(**fit, device="cpu").fit(x, y)
    for name, tensor in cpu.model_.state_dict().items():
        np.testing.assert_allclose(np.asarray(gpu.model_.state_dict()[name]), np.asarray(tensor), rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(gpu.predict_proba(x), cpu.predict_proba(x), rtol=1e-4, atol=1e-5)
    reg_y = load_wine().data[:, 0]
    gpu = TabMRegressor(**fit, device="gpu").fit(x, reg_y)
    cpu = TabMRegressor(**fit, device="cpu").fit(x, reg_y)
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["TabMClassifier", "TabMRegressor"])
def test_the_docstring_example_runs(name):
    obj = getattr(retroprop, name)
    test = doctest.DocTestParser().get_doctest(obj.__doc__, {}, f"retroprop.{name}", None, 0)
    assert test.examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0


@pytest.mark.parametrize("arch", ["tabm", "tabm-mini", "tabm-packed"])
def test_the_onnx_export_predicts_the_ensemble(arch):
    ort = need("onnxruntime")
    x, y = load_wine(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    clf = TabMClassifier(**SMALL, arch_type=arch, max_iter=5, random_state=2).fit(x, y)
    session = ort.InferenceSession(clf.to_onnx(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (theirs,) = session.run(None, {name: x})
    np.testing.assert_allclose(theirs, clf.predict_proba(x), atol=1e-5)
    reg = TabMRegressor(**SMALL, arch_type=arch, max_iter=5, random_state=2).fit(x, y.astype(np.float32))
    session = ort.InferenceSession(reg.to_onnx(), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {name: x})
    np.testing.assert_allclose(theirs.ravel(), reg.predict(x), atol=1e-4)


def test_the_readme_block_runs_and_the_package_predicts_what_the_estimator_does():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = re.findall(r"<!-- checked: python/tests/test_tabm.py -->\s*```python\n(.*?)```", readme, re.S)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    with torch.no_grad():
        theirs = namespace["p"].numpy()
    np.testing.assert_allclose(theirs, namespace["clf"].predict_proba(namespace["x"]), atol=1e-5)


@pytest.mark.parametrize("embedding", ["periodic", "periodic-lite"])
def test_periodic_embeddings_load_into_the_package_as_its_num_module(embedding):
    rtdl = need("rtdl_num_embeddings")
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    clf = TabMClassifier(**SMALL, num_embeddings=embedding, max_iter=5, random_state=0).fit(x, y)
    state = clf.model_.state_dict()
    assert "num_module.periodic.weight" in state
    model = tabm.TabM.make(
        n_num_features=x.shape[1], d_out=2, k=SMALL["k"], n_blocks=SMALL["n_blocks"], d_block=SMALL["d_block"],
        num_embeddings=rtdl.PeriodicEmbeddings(x.shape[1], 24, lite=embedding == "periodic-lite"),
    )
    model.load_state_dict({n: torch.from_numpy(np.asarray(v)) for n, v in state.items()}, strict=True)
    with torch.no_grad():
        theirs = model.eval()(torch.from_numpy(x)).softmax(-1).mean(1).numpy()
    np.testing.assert_allclose(clf.predict_proba(x), theirs, atol=1e-5)
    with pytest.raises(Exception, match="ONNX export of TabM with numerical embeddings"):
        clf.to_onnx()
    with pytest.raises(ValueError, match="num_embeddings must be None"):
        TabMClassifier(num_embeddings="piecewise").fit(x, y)
    with pytest.raises(Exception, match="with numerical embeddings trains on the CPU only"):
        TabMClassifier(**SMALL, num_embeddings=embedding, device="gpu", max_iter=1).fit(x, y)


def test_categorical_columns_are_the_packages_cat_cardinalities():
    pd = need("pandas")
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "size": rng.normal(size=n),
        "colour": rng.choice(["red", "green", "blue"], size=n),
        "grade": pd.Categorical(rng.choice(["a", "b"], size=n), categories=["b", "a"]),
    })
    y = ((frame["size"] > 0) ^ (frame["colour"] == "red")).astype(int).to_numpy()
    clf = TabMClassifier(**SMALL, max_iter=30, random_state=0).fit(frame, y)
    assert clf.score(frame, y) > 0.9
    model = tabm.TabM.make(n_num_features=1, cat_cardinalities=[3, 2], d_out=2, k=SMALL["k"],
                           n_blocks=SMALL["n_blocks"], d_block=SMALL["d_block"])
    state = clf.model_.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    # The package's codes: sorted strings for an object column, the
    # dtype's own order for a categorical one.
    colour = np.searchsorted(np.array(["blue", "green", "red"]), frame["colour"].to_numpy())
    codes = torch.from_numpy(np.column_stack([colour, frame["grade"].cat.codes.to_numpy()]).astype(np.int64))
    with torch.no_grad():
        x_num = torch.from_numpy(frame[["size"]].to_numpy(np.float32))
        theirs = model.eval()(x_num, codes).softmax(-1).mean(1).numpy()
    np.testing.assert_allclose(clf.predict_proba(frame), theirs, atol=1e-5)


def test_retroprops_search_trains_tabm_candidates_as_members_and_equals_scikit_learns():
    x, y = load_wine(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    est = TabMClassifier(k=2, n_blocks=1, d_block=8, max_iter=5, device="cpu", random_state=0)
    grid = {"learning_rate_init": [1e-3, 1e-2]}
    ours = retroprop.GridSearchCV(est, grid, cv=2).fit(x, y).cv_results_
    theirs = GridSearchCV(est, grid, cv=2).fit(x, y).cv_results_
    for split in ("split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(ours[split], theirs[split])
