"""Residual networks from Python: ``Trainer(blocks=, norm=,
block_multiplier=)`` and the estimators' ``blocks``, the network the
program's ``--blocks`` builds (the library's ``Blocks``)."""

import numpy as np
import pytest
import retroprop
from retroprop.sklearn import MLPClassifier, MLPRegressor


def _data(rows=192, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)).astype(np.int64)
    return x, y


def test_blocks_shape_the_network_as_the_program_does():
    x, y = _data()
    t = retroprop.Trainer([6, 8, 3], "relu", "cross_entropy", blocks=3, norm="layer", block_multiplier=1.5,
                          epochs=1, device="cpu")
    t.fit(x, y)
    # Input linear, three blocks of 8 -> 12 -> 8, the head's linear.
    assert t.model().sizes == [6, 8, 12, 8, 12, 8, 12, 8, 3]


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_a_deep_residual_network_learns_where_the_plain_one_of_its_depth_does_not(norm):
    x, y = _data()
    settings = dict(loss="cross_entropy", batch_size=32, epochs=25, device="cpu", lr=1e-3, seed=1)
    deep = retroprop.Trainer([6, 16, 3], blocks=30, norm=norm, **settings)
    plain = retroprop.Trainer([6] + [16] * 61 + [3], **settings)
    first, last = (deep.fit(x, y)["epochs"][i]["train_loss"] for i in (0, -1))
    assert last < 0.6 * first, (norm, first, last)
    assert plain.fit(x, y)["epochs"][-1]["train_loss"] > 0.9 * np.log(3)


def test_bad_blocks_settings_name_the_setting():
    with pytest.raises(ValueError, match="norm group: expected batch, layer or none"):
        retroprop.Trainer([6, 8, 3], blocks=2, norm="group")
    with pytest.raises(ValueError, match="give blocks too"):
        retroprop.Trainer([6, 8, 3], norm="layer")
    with pytest.raises(ValueError, match="one hidden size"):
        retroprop.Trainer([6, 8, 8, 3], blocks=2)
    with pytest.raises(ValueError, match="block_multiplier"):
        retroprop.Trainer([6, 8, 3], blocks=2, block_multiplier=0.01)
    x, y = _data()
    with pytest.raises(ValueError, match="hidden_layer_sizes of one size"):
        MLPClassifier(hidden_layer_sizes=(8, 8), blocks=2).fit(x, y)
    with pytest.raises(ValueError, match="blocks must be an int >= 0"):
        MLPClassifier(blocks=-1).fit(x, y)


def test_estimators_with_layer_norm_blocks_fit_predict_and_expose_every_dense_layer():
    x, y = _data(rows=300)
    clf = MLPClassifier(hidden_layer_sizes=(16,), blocks=4, norm="layer", max_iter=40, random_state=0,
                        device="cpu").fit(x, y)
    assert clf.n_layers_ == 2 * 4 + 3
    assert [c.shape for c in clf.coefs_[:3]] == [(6, 16), (16, 32), (32, 16)]
    assert clf.score(x, y) > 0.8
    reg = MLPRegressor(hidden_layer_sizes=(16,), blocks=2, norm="none", max_iter=40, random_state=0,
                       device="cpu").fit(x, x[:, 0] * x[:, 1])
    assert reg.score(x, x[:, 0] * x[:, 1]) > 0.5
    # A warm start continues the same residual network.
    again = MLPClassifier(hidden_layer_sizes=(16,), blocks=4, norm="layer", max_iter=1, random_state=0,
                          device="cpu", warm_start=True)
    again.fit(x, y)
    before = [c.copy() for c in again.coefs_]
    again.fit(x, y)
    assert any(not np.array_equal(a, b) for a, b in zip(before, again.coefs_))
