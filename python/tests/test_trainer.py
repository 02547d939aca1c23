"""The torch-like API: every optimizer and setting by torch's names, the
state dict, checkpoints and resume, callbacks, the stop flag, inputs."""

import numpy as np
import pytest

import retroprop
from retroprop._core import as_rows
from conftest import need

OPTIMIZERS = {
    "sgd": dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-4),
    "adam": dict(lr=0.01, betas=(0.9, 0.99), eps=1e-7, amsgrad=True),
    "adamw": dict(lr=0.01, weight_decay=0.01),
    "rmsprop": dict(lr=0.005, alpha=0.9, momentum=0.5, centered=True),
    "adagrad": dict(lr=0.1, lr_decay=1e-3, initial_accumulator_value=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_trains_with_torch_option_names(name, blobs):
    x, y = blobs
    trainer = retroprop.Trainer(
        [4, 16, 3], "tanh", "cross_entropy", name, epochs=15, device="cpu", **OPTIMIZERS[name]
    )
    history = trainer.fit(x, y)
    losses = history.train_loss
    assert losses[-1] < 0.6 * losses[0], f"{name}: loss went from {losses[0]} to {losses[-1]}"
    _, accuracy = trainer.evaluate(x, y)
    assert accuracy > 0.85, f"{name}: accuracy {accuracy}"


def test_optimizer_defaults_are_torchs():
    adam = retroprop.optimizer_defaults("adam")
    assert list(adam) == ["lr", "betas", "eps", "weight_decay", "amsgrad"]
    assert float(adam["lr"]) == 1e-3 and float(adam["eps"]) == 1e-8 and adam["amsgrad"] == "false"
    assert [float(b) for b in adam["betas"].strip("()").replace(",", "/").split("/")] == [0.9, 0.999]
    assert float(retroprop.optimizer_defaults("sgd")["lr"]) == 1e-3
    assert float(retroprop.optimizer_defaults("rmsprop")["alpha"]) == 0.99
    assert float(retroprop.optimizer_defaults("adagrad")["lr"]) == 1e-2


def test_schedules_clipping_dropout_and_early_stopping(blobs):
    x, y = blobs
    trainer = retroprop.Trainer(
        [4, 32, 3], "relu", "cross_entropy", "sgd", lr=0.1, momentum=0.9,
        epochs=40, lr_schedule="step:5:0.5", clip_grad_norm=1.0, clip_grad_value=0.5,
        dropout=0.1, early_stopping=3, min_delta=1e-3, device="cpu", standardize=True,
    )
    history = trainer.fit(x[:200], y[:200], validation=(x[200:], y[200:]))
    lrs = [e["lr"] for e in history["epochs"]]
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05), lrs
    assert history["stopped_early"], "40 epochs with patience 3 should stop early"
    assert history["best_epoch"] is not None
    assert all(e["val_loss"] is not None and e["val_accuracy"] is not None for e in history["epochs"])


def test_callback_receives_each_epochs_metrics_and_verbose_prints(blobs, capsys):
    x, y = blobs
    seen = []
    trainer = retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", epochs=3, device="cpu")
    trainer.fit(x, y, callback=seen.append, verbose=True)
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    assert set(seen[0]) >= {"epoch", "step", "train_loss", "val_loss", "lr", "seconds"}
    assert seen[-1]["step"] == 3 * 8, "240 rows in batches of 32 is 8 steps an epoch"
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 3, loss = " in out, out


def test_stop_from_a_callback_keeps_the_steps_taken(blobs):
    x, y = blobs
    trainer = retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", epochs=50, device="cpu")
    history = trainer.fit(x, y, callback=lambda r: trainer.stop() if r["epoch"] == 2 else None)
    assert history["interrupted"]
    assert trainer.steps == 16, f"stopped after epoch 2 of 8 steps, took {trainer.steps}"


def test_a_callback_that_raises_stops_training_and_raises(blobs):
    x, y = blobs
    trainer = retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", epochs=50, device="cpu")

    def fail(record):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        trainer.fit(x, y, callback=fail)
    assert trainer.steps == 8, f"one epoch, then stop: took {trainer.steps} steps"


def test_checkpoint_and_resume_end_like_an_uninterrupted_run(blobs, tmp_path):
    x, y = blobs
    settings = dict(sizes=[4, 16, 3], activations="relu", loss="cross_entropy", optimizer="adam",
                    lr=0.01, epochs=6, device="cpu", seed=3)
    whole = retroprop.Trainer(**settings)
    whole.fit(x, y)
    expected = whole.model().state_dict()

    first = retroprop.Trainer(**settings)
    path = tmp_path / "run.safetensors"
    first.fit(x, y, checkpoint=path, callback=lambda r: first.stop() if r["epoch"] == 3 else None)
    resumed = retroprop.Trainer(**settings, resume=path)
    assert resumed.steps == 24
    resumed.fit(x, y)
    got = resumed.model().state_dict()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=f"{name} differs after resume")


def test_resume_with_another_optimizer_is_refused(blobs, tmp_path):
    x, y = blobs
    t = retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", "adam", epochs=1, device="cpu")
    t.fit(x, y)
    t.save_checkpoint(tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="written with optimizer adam, not sgd"):
        retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", "sgd", resume=tmp_path / "c.safetensors")


def test_state_dict_uses_the_model_files_names_and_torch_layout(blobs, tmp_path):
    x, y = blobs
    t = retroprop.Trainer([4, 16, 8, 3], "relu", "cross_entropy", epochs=1, device="cpu")
    t.fit(x, y)
    model = t.model()
    state = model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {
        "layers.0.weight": (16, 4), "layers.0.bias": (16,),
        "layers.1.weight": (8, 16), "layers.1.bias": (8,),
        "layers.2.weight": (3, 8), "layers.2.bias": (3,),
    }
    assert all(v.dtype == np.float32 for v in state.values())
    # The forward pass with those names and layouts is the model's.
    a = x[:5]
    for i in range(3):
        a = a @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
        if i < 2:
            a = np.maximum(a, 0)
    np.testing.assert_allclose(model.predict(x[:5]), a, rtol=1e-4, atol=1e-5)
    # The file `retroprop train --save` writes, and back.
    model.save(tmp_path / "m.safetensors")
    again = retroprop.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.state_dict()["layers.2.bias"], state["layers.2.bias"])


def test_torch_loads_the_state_dict_unchanged(blobs):
    torch = need("torch")
    x, y = blobs
    t = retroprop.Trainer([4, 16, 3], "tanh", "cross_entropy", epochs=2, device="cpu")
    t.fit(x, y)
    model = t.model()

    class Mlp(torch.nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

        def forward(self, v):
            for i, layer in enumerate(self.layers):
                v = layer(v)
                if i < len(self.layers) - 1:
                    v = torch.tanh(v)
            return v

    net = Mlp(model.sizes)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    with torch.no_grad():
        out = net(torch.from_numpy(x[:10])).numpy()
    np.testing.assert_allclose(out, model.predict(x[:10]), rtol=1e-4, atol=1e-5)


def test_float32_c_contiguous_input_is_not_copied_and_pandas_is_accepted(blobs):
    pandas = need("pandas")
    x, y = blobs
    assert as_rows(x) is x, "a float32 C-contiguous array must pass through as it is"
    assert as_rows(np.asfortranarray(x)) is not x
    frame = pandas.DataFrame(x.astype(np.float64), columns=list("abcd"))
    t = retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", epochs=2, device="cpu")
    t.fit(frame, pandas.Series(y))
    assert t.predict(frame).shape == (240, 3)


def test_regression_and_bce_losses(blobs):
    x, _ = blobs
    target = (x[:, :1] - 0.5 * x[:, 1:2]).astype(np.float32)
    t = retroprop.Trainer([4, 16, 1], "gelu", "mse", lr=0.01, epochs=30, device="cpu")
    history = t.fit(x, target)
    assert history.train_loss[-1] < 0.05, history.train_loss[-5:]
    labels = (x[:, :2] > 0).astype(np.float32)
    t = retroprop.Trainer([4, 16, 2], "leaky_relu:0.1", "bce_with_logits", lr=0.01, epochs=20, device="cpu")
    t.fit(x, labels)
    p = t.model().predict(x, probabilities=True)
    assert ((p > 0.5) == (labels > 0.5)).mean() > 0.9


def _metadata(model_bytes):
    """The `__metadata__` of a safetensors file's header."""
    import json
    import struct

    (length,) = struct.unpack("<Q", model_bytes[:8])
    return json.loads(model_bytes[8 : 8 + length])["__metadata__"]


def test_an_unknown_precision_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="unknown precision `bf16`"):
        retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", device="cpu", precision="bf16")


def test_mixed_precision_is_refused_on_the_cpu_naming_the_flag():
    with pytest.raises(ValueError, match="--precision mixed needs a GPU with shader-f16"):
        retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", device="cpu", precision="mixed")


def test_mixed_precision_trains_on_the_gpu_and_the_model_names_it(blobs):
    # Lavapipe offers shader-f16 (Mesa 22.3 and later).
    x, y = blobs
    mixed = retroprop.Trainer([4, 16, 3], "tanh", "cross_entropy", epochs=15, device="gpu",
                              precision="mixed")
    history = mixed.fit(x, y)
    assert history.train_loss[-1] < 0.6 * history.train_loss[0]
    assert _metadata(mixed.model().to_bytes())["retroprop.precision"] == "mixed"
    plain = retroprop.Trainer([4, 16, 3], "tanh", "cross_entropy", epochs=1, device="gpu")
    plain.fit(x, y)
    assert _metadata(plain.model().to_bytes())["retroprop.precision"] == "f32"
