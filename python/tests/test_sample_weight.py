"""Sample weights: each batch's loss is Σ wᵢ lᵢ / Σ wᵢ, as PyTorch's
reduction="none" followed by (w * l).sum() / w.sum(), checked against
torch in float64 from the same parameters; the estimators take them."""

import numpy as np
import pytest

import retroprop
from conftest import need


def _torch_run(torch, sizes, activation, loss, params, x, y, w, lr, batch, epochs):
    """SGD in float64 over the rows in order, each batch's loss weighted."""
    layers = [torch.nn.Linear(a, b).double() for a, b in zip(sizes, sizes[1:])]
    at = 0
    with torch.no_grad():
        for layer in layers:
            n = layer.weight.numel()
            layer.weight.copy_(torch.tensor(params[at:at + n], dtype=torch.float64).view_as(layer.weight))
            at += n
            m = layer.bias.numel()
            layer.bias.copy_(torch.tensor(params[at:at + m], dtype=torch.float64))
            at += m
    act = {"tanh": torch.tanh, "relu": torch.relu}[activation]
    opt = torch.optim.SGD([p for l in layers for p in l.parameters()], lr=lr)
    xt, wt = torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)
    yt = torch.tensor(y)
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            xb, yb, wb = xt[start:start + batch], yt[start:start + batch], wt[start:start + batch]
            h = xb
            for i, layer in enumerate(layers):
                h = layer(h)
                if i + 1 < len(layers):
                    h = act(h)
            if loss == "cross_entropy":
                per_row = torch.nn.functional.cross_entropy(h, yb.long(), reduction="none")
            elif loss == "mse":
                per_row = ((h - yb.double()) ** 2).mean(dim=1)
            else:
                per_row = torch.nn.functional.binary_cross_entropy_with_logits(
                    h, yb.double(), reduction="none").mean(dim=1)
            value = (wb * per_row).sum() / wb.sum()
            opt.zero_grad()
            value.backward()
            opt.step()
    return {f"layers.{i}.{k}": v.detach().numpy() for i, l in enumerate(layers) for k, v in
            (("weight", l.weight), ("bias", l.bias))}


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce_with_logits"])
def test_weighted_steps_are_torchs_reduction_none_then_weighted_mean(loss):
    torch = need("torch")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(70, 5)).astype(np.float32)
    if loss == "cross_entropy":
        y, outputs = rng.integers(0, 3, 70), 3
    elif loss == "mse":
        y, outputs = rng.normal(size=(70, 2)).astype(np.float32), 2
    else:
        y, outputs = (rng.random((70, 2)) > 0.5).astype(np.float32), 2
    w = rng.uniform(0.0, 3.0, 70).astype(np.float32)
    w[::7] = 0.0
    sizes = [5, 8, outputs]
    mlp = retroprop.Trainer(sizes, "tanh", loss, device="cpu", seed=1)
    params = np.concatenate([v.ravel() for k, v in sorted(mlp.model().state_dict().items(),
                                                         key=lambda kv: (int(kv[0].split(".")[1]), kv[0].endswith("bias")))])
    ours = retroprop.Trainer(sizes, "tanh", loss, "sgd", lr=0.1, batch_size=16, shuffle=False, epochs=3,
                             device="cpu", params=params)
    ours.fit(x, y, sample_weight=w)
    theirs = _torch_run(torch, sizes, "tanh", loss, params.astype(np.float64), x, y, w, 0.1, 16, 3)
    for name, value in theirs.items():
        np.testing.assert_allclose(ours.model().state_dict()[name], value, rtol=2e-5, atol=2e-6, err_msg=name)
    # Weights change the result: the unweighted run ends elsewhere.
    plain = retroprop.Trainer(sizes, "tanh", loss, "sgd", lr=0.1, batch_size=16, shuffle=False, epochs=3,
                              device="cpu", params=params)
    plain.fit(x, y)
    assert not np.allclose(plain.model().state_dict()["layers.0.weight"], theirs["layers.0.weight"], atol=1e-4)


def test_a_weighted_validation_loss_and_the_history_are_weighted_means():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.normal(size=(40, 1)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 40).astype(np.float32)
    t = retroprop.Trainer([3, 4, 1], "relu", "mse", lr=1e-30, batch_size="full", epochs=1, device="cpu")
    history = t.fit(x, y, validation=(x, y, w), sample_weight=w)
    out = t.predict(x).astype(np.float64)
    expected = float(np.sum(w * ((out - y) ** 2).mean(axis=1)) / np.sum(w.astype(np.float64)))
    assert history["epochs"][0]["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert history["epochs"][0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_bad_weights_are_refused_by_name():
    x = np.zeros((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    t = retroprop.Trainer([2, 3, 2], "relu", "cross_entropy", device="cpu")
    with pytest.raises(ValueError, match="one weight per row"):
        t.fit(x, y, sample_weight=[1.0, 1.0])
    with pytest.raises(ValueError, match="row 2"):
        t.fit(x, y, sample_weight=[1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="every sample weight is 0"):
        t.fit(x, y, sample_weight=np.zeros(4))
    with pytest.raises(ValueError, match="CPU backend only"):
        retroprop.Trainer([2, 3, 2], "relu", "cross_entropy", device="gpu").fit(x, y, sample_weight=np.ones(4))


def test_the_estimators_take_sample_weight_and_integer_weights_repeat_rows():
    need("sklearn")
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    counts = np.tile([1, 2, 3], 50)
    settings = dict(hidden_layer_sizes=(8,), batch_size=1000, max_iter=30, random_state=0, device="cpu",
                    shuffle=False, alpha=0.0)
    weighted = retroprop.MLPClassifier(**settings).fit(x, y, sample_weight=counts)
    repeated = retroprop.MLPClassifier(**settings).fit(np.repeat(x, counts, axis=0), np.repeat(y, counts))
    np.testing.assert_allclose(weighted.predict_proba(x), repeated.predict_proba(x), atol=1e-4)
    regressor = retroprop.MLPRegressor(**settings).fit(x[:, :3], x[:, 3], sample_weight=counts)
    assert np.isfinite(regressor.loss_curve_).all()


@pytest.mark.parametrize("estimator", ["MLPClassifier", "MLPRegressor"])
def test_integer_weights_with_alpha_equal_repeated_rows_as_scikit_learns_check(estimator):
    """scikit-learn's check_sample_weight_equivalence_on_dense_data, at
    float32's tolerance: its data, zero weights among them, the default
    alpha (the L2 term divides by the batch's weight, not its rows) and
    one batch of every row."""
    need("sklearn")
    from sklearn.utils import shuffle

    rng = np.random.RandomState(42)
    x = rng.rand(15, 30)
    y = rng.randint(0, 3, size=15)
    sw = rng.randint(0, 5, size=15)
    x_repeated, y_repeated = x.repeat(sw, axis=0), y.repeat(sw)
    x_weighted, y_weighted, sw = shuffle(x, y, sw, random_state=0)
    cls = getattr(retroprop, estimator)
    repeated = cls(max_iter=100, random_state=0, device="cpu").fit(x_repeated, y_repeated)
    weighted = cls(max_iter=100, random_state=0, device="cpu").fit(x_weighted, y_weighted, sample_weight=sw)
    method = "predict_proba" if estimator == "MLPClassifier" else "predict"
    np.testing.assert_allclose(getattr(weighted, method)(x), getattr(repeated, method)(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-5)
