"""The package against the native program: the same settings train the
same parameters and predict the same outputs, on both devices."""

import numpy as np
import pytest

import retroprop
from conftest import DEVICES, read_predictions, run, write_csv


@pytest.mark.parametrize("device", DEVICES)
def test_trainer_matches_retroprop_train_and_predict(device, blobs, tmp_path):
    x, y = blobs
    data = write_csv(tmp_path / "blobs.csv", x, y)
    saved = tmp_path / "program.safetensors"
    run("train", "--data", data, "--arch", "4,16,3", "--activations", "relu", "--optimizer", "adam",
        "--lr", "0.01", "--epochs", "4", "--batch-size", "32", "--seed", "3", "--standardize",
        "--device", device, "--quiet", "--save", saved)
    trainer = retroprop.Trainer([4, 16, 3], "relu", "cross_entropy", "adam", lr=0.01, epochs=4,
                                batch_size=32, seed=3, standardize=True, device=device)
    trainer.fit(x, y)
    ours = trainer.model()
    theirs = retroprop.load(saved)
    for name, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[name], value, err_msg=f"{device}: {name} differs from the program's")
    np.testing.assert_array_equal(ours.standardization[0], theirs.standardization[0])

    header, printed = read_predictions(run("predict", "--model", saved, "--data", data, "--device", device).stdout)
    assert header == ["class", "p0", "p1", "p2"]
    p = ours.predict(x, device=device, probabilities=True)
    np.testing.assert_array_equal(p, printed[:, 1:].astype(np.float32), err_msg=f"{device}: probabilities differ from retroprop predict")
    np.testing.assert_array_equal(np.argmax(trainer.predict(x), axis=1), printed[:, 0])


@pytest.mark.parametrize("device", DEVICES)
def test_estimator_trains_on_the_device_asked_for(device, blobs):
    from conftest import need

    need("sklearn")
    x, y = blobs
    m = retroprop.MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=0.01,
                                random_state=0, device=device).fit(x, y)
    assert m.device_.startswith(device), m.device_
    assert m.score(x, y) > 0.9
