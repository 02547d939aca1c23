"""A file of members against PyTorch and ONNX Runtime.

Trains `retroprop train --members 3` (classification, standardised) and
`--lr 1e-2,3e-2 --members 2` on a regression, then checks, for each file of
members:

- `retroprop predict` (the ensemble) against the mean of the members'
  probabilities (outputs) computed by torch from the file's tensors;
- `retroprop evaluate` against torch's NLLLoss of the log of the mean
  probabilities (MSELoss of the mean outputs);
- `retroprop export --onnx` run by ONNX Runtime against the same.

Prints OK / NOT OK per check with the largest difference; exits 1 on any
NOT OK. Run from the repository root after `cargo build --release`:

    /work/venv/bin/python dev/members_onnx.py
"""

import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime
import torch
from safetensors.numpy import load_file
from safetensors import safe_open

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXE = ROOT / "target" / "release" / "retroprop"
failed = []


def run(*args):
    out = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"retroprop {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def check(what, got, want, tolerance):
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    ok = diff <= tolerance
    print(f"{'OK' if ok else 'NOT OK'}  {what}: largest difference {diff:.2e} (tolerance {tolerance:.0e})")
    if not ok:
        failed.append(what)


def members_outputs(path, x):
    """Each member's outputs for x, by torch, from the file's tensors and metadata."""
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    count = int(meta["retroprop.members"])
    activations = meta["retroprop.activations"].split(",")
    x = torch.tensor(x, dtype=torch.float64)
    if "retroprop.mean" in meta:
        mean = torch.tensor([float(v) for v in meta["retroprop.mean"].split(",")], dtype=torch.float64)
        std = torch.tensor([float(v) for v in meta["retroprop.std"].split(",")], dtype=torch.float64)
        x = (x - mean) / std
    outputs = []
    for m in range(count):
        a = x
        for i, activation in enumerate(activations):
            w = torch.tensor(tensors[f"members.{m}.layers.{i}.weight"], dtype=torch.float64)
            b = torch.tensor(tensors[f"members.{m}.layers.{i}.bias"], dtype=torch.float64)
            a = a @ w.T + b
            a = {"identity": lambda t: t, "tanh": torch.tanh, "relu": torch.relu}[activation](a)
        outputs.append(a)
    return outputs, meta["retroprop.loss"]


def csv_numbers(text, skip_first_column):
    rows = [line.split(",") for line in text.strip().splitlines()[1:]]
    return np.array([[float(v) for v in (r[1:] if skip_first_column else r)] for r in rows])


def check_file(name, model, data, x, targets):
    outputs, loss = members_outputs(model, x)
    if loss == "cross_entropy":
        mean = torch.stack([torch.softmax(o, dim=1) for o in outputs]).mean(0)
        reference = torch.nn.functional.nll_loss(torch.log(mean), torch.tensor(targets)).item()
    else:
        mean = torch.stack(outputs).mean(0)
        reference = torch.nn.functional.mse_loss(mean, torch.tensor(targets, dtype=torch.float64)).item()
    predicted = csv_numbers(run("predict", "--model", model, "--data", data, "--device", "cpu"),
                            loss == "cross_entropy")
    check(f"{name}: predict against torch", predicted, mean.numpy(), 1e-6)
    line = run("evaluate", "--model", model, "--data", data, "--device", "cpu")
    evaluated = float(line.split(") ")[1].split(",")[0].split()[0])
    check(f"{name}: evaluate against torch ({line.strip()})", evaluated, reference, 2e-6)
    onnx = pathlib.Path(model).with_suffix(".onnx")
    run("export", "--model", model, "--onnx", onnx)
    session = onnxruntime.InferenceSession(str(onnx))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})
    check(f"{name}: ONNX Runtime against torch", got, mean.numpy(), 1e-5)


def main():
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        x = rng.uniform(-1, 1, (200, 3)).astype(np.float32) * [1, 5, 0.2] + [0, 2, -1]
        x = x.astype(np.float32)
        labels = (x[:, 0] + x[:, 2] > -1).astype(int) + (x[:, 1] > 2.5).astype(int)
        classes = tmp / "classes.csv"
        classes.write_text("".join(f"{a},{b},{c},{l}\n" for (a, b, c), l in zip(x, labels)))
        model = tmp / "classes.safetensors"
        run("train", "--data", classes, "--arch", "3,16,3", "--activations", "tanh", "--members", "3",
            "--standardize", "--epochs", "5", "--device", "cpu", "-q", "--save", model)
        check_file("3 seeds, cross-entropy", model, classes, x, labels)

        y = (np.sin(x[:, 0]) + 0.1 * x[:, 1]).astype(np.float32)
        values = tmp / "values.csv"
        values.write_text("".join(f"{a},{b},{c},{t}\n" for (a, b, c), t in zip(x, y)))
        model = tmp / "values.safetensors"
        run("train", "--data", values, "--loss", "mse", "--arch", "3,16,1", "--activations", "relu",
            "--lr", "1e-2,3e-2", "--members", "2", "--epochs", "5", "--device", "cpu", "-q",
            "--save-all", model)
        check_file("2 candidates × 2 seeds, mse", model, values, x, y[:, None])
    if failed:
        sys.exit(f"NOT OK: {', '.join(failed)}")


if __name__ == "__main__":
    main()
