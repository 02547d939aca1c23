"""A resumed run through the package is the run it continues, decided by
the library's rule the program uses too: a setting left out takes the
checkpoint's value, a difference its state cannot carry is refused by
name with both values, a steering change warns and is recorded."""

import re
import warnings

import numpy as np
import pytest

import retroprop
from conftest import need, run, write_csv

SETTINGS = dict(sizes=[4, 16, 3], activations="tanh", loss="cross_entropy", optimizer="sgd", lr=0.05,
                momentum=0.9, batch_size=16, seed=5, dropout=0.1, lr_schedule="step:2:0.5", device="cpu")


def _cut_at(epoch, x, y, path, epochs=6):
    first = retroprop.Trainer(**SETTINGS, epochs=epochs)
    first.fit(x, y, checkpoint=path, callback=lambda r: first.stop() if r["epoch"] == epoch else None)
    return first


def test_a_resume_naming_nothing_is_the_saved_run(blobs, tmp_path):
    x, y = blobs
    whole = retroprop.Trainer(**SETTINGS, epochs=6)
    whole.fit(x, y)
    _cut_at(2, x, y, tmp_path / "c.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = retroprop.Trainer([4, 16, 3], epochs=6, resume=tmp_path / "c.safetensors")
    assert resumed.resume_changes == [] and resumed.loss == "cross_entropy"
    resumed.fit(x, y)
    for name, value in whole.model().state_dict().items():
        np.testing.assert_array_equal(resumed.model().state_dict()[name], value, err_msg=name)


def test_a_steering_change_warns_and_is_recorded_in_the_files(blobs, tmp_path):
    safetensors = need("safetensors")
    x, y = blobs
    _cut_at(2, x, y, tmp_path / "c.safetensors")
    with pytest.warns(UserWarning) as caught:
        resumed = retroprop.Trainer([4, 16, 3], seed=9, lr=0.01, batch_size=8, epochs=4,
                                    resume=tmp_path / "c.safetensors")
    said = sorted(str(w.message) for w in caught)
    assert said == ["resumed with batch_size changed: 16 -> 8", "resumed with lr changed: 0.05 -> 0.01",
                    "resumed with seed changed: 5 -> 9"], said
    assert sorted(resumed.resume_changes) == [("batch_size", "16", "8"), ("lr", "0.05", "0.01"), ("seed", "5", "9")]
    resumed.fit(x, y, checkpoint=tmp_path / "next.safetensors")
    resumed.model().save(tmp_path / "m.safetensors")
    with safetensors.safe_open(str(tmp_path / "next.safetensors"), "np") as f:
        noted = f.metadata()["retroprop.changed_on_resume"]
    assert noted == "at step 30: lr 0.05 -> 0.01, batch_size 16 -> 8, seed 5 -> 9", noted


def test_what_the_state_cannot_carry_is_refused_naming_each_with_both_values(blobs, tmp_path):
    x, y = blobs
    _cut_at(2, x, y, tmp_path / "c.safetensors")
    with pytest.raises(ValueError) as refused:
        retroprop.Trainer([4, 16, 3], activations="relu", momentum=0.0, standardize=True,
                          resume=tmp_path / "c.safetensors")
    message = str(refused.value)
    for part in ["activations tanh,identity, not relu,identity", "momentum 0.9, not 0",
                 "standardize false, not true"]:
        assert part in message, message
    with pytest.raises(ValueError, match=re.escape("sizes 4,16,3, not 4,17,3")):
        retroprop.Trainer([4, 17, 3], resume=tmp_path / "c.safetensors")


def _flag(setting):
    return {"sizes": "--arch", "shuffle": "shuffle (--no-shuffle)",
            "early_stopping": "--early-stopping/--min-delta"}.get(setting, "--" + setting.replace("_", "-"))


@pytest.mark.parametrize("change", [
    dict(python=dict(seed=3, lr=0.02), flags=["--seed", "3", "--lr", "0.02"]),
    dict(python=dict(batch_size=10, clip_grad_norm=1.0), flags=["--batch-size", "10", "--clip-grad-norm", "1"]),
    dict(python=dict(activations="sigmoid", momentum=0.0), flags=["--activations", "sigmoid", "--momentum", "0"]),
    dict(python=dict(loss="mse"), flags=["--loss", "mse"]),
])
def test_the_program_and_the_package_answer_a_resume_alike(change, blobs, tmp_path):
    x, y = blobs
    data = write_csv(tmp_path / "blobs.csv", x, y)
    checkpoint = tmp_path / "c.safetensors"
    run("train", "--data", data, "--arch", "4,16,3", "--activations", "tanh", "--optimizer", "sgd",
        "--lr", "0.05", "--momentum", "0.9", "--batch-size", "16", "--seed", "5", "--epochs", "2",
        "--device", "cpu", "--quiet", "--checkpoint", checkpoint)
    program = run("train", "--data", data, "--epochs", "3", "--device", "cpu", "--quiet", "--resume", checkpoint,
                  *change["flags"], ok=False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            retroprop.Trainer([4, 16, 3], epochs=3, device="cpu", resume=checkpoint, **change["python"])
        package_error = None
    except ValueError as e:
        package_error, caught = str(e), []
    if program.returncode == 0:
        assert package_error is None, package_error
        steering = sorted(line for line in program.stderr.splitlines() if line.startswith("resumed with"))
        warned = sorted(re.sub(r"^resumed with (\S+)", lambda m: "resumed with " + _flag(m.group(1)), str(w.message))
                        for w in caught)
        assert warned == steering and steering, (warned, program.stderr)
    else:
        assert package_error is not None, f"the program refused, the package took it: {program.stderr}"
        named = re.findall(r"with (--[a-z-]+) (\S+), not (\S+?)(?:;| \()", program.stderr)
        assert named, program.stderr
        for flag, before, after in named:
            setting = flag[2:].replace("-", "_")
            assert f"{setting} {before}, not {after}" in package_error, (package_error, program.stderr)
