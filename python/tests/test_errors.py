"""Bad input raises ValueError or TypeError with the program's message;
no GPU is a RuntimeError that says how to get one; a panic is a
RuntimeError, never a crash."""

import os
import subprocess
import sys

import numpy as np
import pytest

import retroprop
from conftest import run, write_csv


def test_a_bad_option_is_a_value_error_with_the_programs_message(tmp_path, blobs):
    x, y = blobs
    with pytest.raises(ValueError) as python:
        retroprop.Trainer([4, 3], "relu", "cross_entropy", "adam", lr=-1)
    data = write_csv(tmp_path / "d.csv", x, y)
    program = run("train", "--data", data, "--arch", "4,3", "--lr", "-1", ok=False)
    assert program.returncode != 0
    assert str(python.value) in program.stderr, f"python: {python.value}\nprogram: {program.stderr}"
    with pytest.raises(ValueError, match="momentum"):
        retroprop.Trainer([4, 3], "relu", "cross_entropy", "adam", momentum=0.9)
    with pytest.raises(ValueError, match="unknown loss `hinge`"):
        retroprop.Trainer([4, 3], "relu", "hinge")
    with pytest.raises(ValueError, match="swish"):
        retroprop.Trainer([4, 3], "swish")
    with pytest.raises(ValueError, match="lr_schedule|schedule"):
        retroprop.Trainer([4, 3], lr_schedule="cosine:x")


def test_bad_data_names_the_row_and_column(blobs, tmp_path):
    x, y = blobs
    x = x.copy()
    x[5, 2] = np.nan
    t = retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", device="cpu")
    with pytest.raises(ValueError, match=r"row 5, column 2 is not finite \(NaN\)"):
        t.fit(x, y)
    labels = y.copy()
    labels[9] = 7
    with pytest.raises(ValueError) as python:
        t.fit(blobs[0], labels)
    assert "class label 7 at row 9 is out of range" in str(python.value)
    data = write_csv(tmp_path / "d.csv", blobs[0], labels)
    program = run("train", "--data", data, "--arch", "4,8,3", "--loss", "cross_entropy", ok=False)
    assert str(python.value) in program.stderr, f"python: {python.value}\nprogram: {program.stderr}"
    with pytest.raises(ValueError, match="features of the training data"):
        t.fit(blobs[0][:, :3], y)
    with pytest.raises(TypeError, match="class indices must be integers"):
        t.fit(blobs[0], np.array(["a"] * len(y)))
    with pytest.raises(ValueError, match="2-D"):
        t.fit(blobs[0][:, 0], y)


def test_a_bad_model_file_names_the_file_as_the_program_does(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError) as python:
        retroprop.load(path)
    assert str(path) in str(python.value)
    program = run("predict", "--model", path, "--data", path, ok=False)
    assert str(python.value) in program.stderr, f"python: {python.value}\nprogram: {program.stderr}"
    with pytest.raises(FileNotFoundError):
        retroprop.load(tmp_path / "missing.safetensors")


def test_no_gpu_is_a_runtime_error_that_says_how_to_get_one():
    script = "import retroprop\ntry:\n    retroprop.Trainer([2, 2], device='gpu')\nexcept RuntimeError as e:\n    print(e)\n"
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent/icd.json", WGPU_BACKEND="vulkan")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "no GPU adapter found" in out.stdout and "apt-get install mesa-vulkan-drivers" in out.stdout, out


@pytest.mark.parametrize("on_worker_thread", [False, True])
def test_a_rust_panic_becomes_a_runtime_error(on_worker_thread):
    with pytest.raises(RuntimeError, match="internal error in retroprop .* a test panic"):
        retroprop._retroprop.panic_for_test(on_worker_thread)
