"""Measures the Python package (docs/performance.md, "From Python").

    python dev/python_bench.py sklearn [--devices cpu,gpu] [--synthetic-rows 100000]
        fit time and test accuracy of retroprop.MLPClassifier beside
        scikit-learn's MLPClassifier, one run, the same data, architecture
        (256, 256) and settings: digits, breast cancer, make_classification.
    python dev/python_bench.py overhead [--rounds 5] [--epochs 3]
        Trainer.fit in Python against Trainer::fit in Rust
        (examples/fit_timing.rs) on the standard work at batch 1024,
        interleaved rounds, the median of each.

Needs the package (pip install ./python), scikit-learn, and for
`overhead` cargo (it runs the example).
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np


def sklearn_comparison(args):
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.preprocessing import StandardScaler

    import retroprop

    warnings.simplefilter("ignore", ConvergenceWarning)
    sets = {
        "digits": load_digits(return_X_y=True),
        "breast_cancer": load_breast_cancer(return_X_y=True),
        f"make_classification {args.synthetic_rows} x 100": make_classification(
            n_samples=args.synthetic_rows, n_features=100, n_informative=50, n_classes=10,
            random_state=0),
    }
    settings = dict(hidden_layer_sizes=(256, 256), max_iter=args.max_iter, random_state=0)
    print(f"settings: {settings}, everything else scikit-learn's defaults (adam, lr 1e-3, "
          "batch min(200, n), tol 1e-4, n_iter_no_change 10); 25 % held out, stratified; "
          "StandardScaler fitted on the training rows")
    print(f"{'data':34} {'fit by':28} {'fit s':>8} {'epochs':>6} {'accuracy':>8}")
    for name, (x, y) in sets.items():
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        scaler = StandardScaler().fit(xtr)
        xtr, xte = scaler.transform(xtr), scaler.transform(xte)
        if name.startswith("make") and args.synthetic_iter:
            run_settings = dict(settings, max_iter=args.synthetic_iter)
        else:
            run_settings = settings
        models = [("scikit-learn", SkMLP(**run_settings))]
        for device in args.devices.split(","):
            models.append((f"retroprop {device}", retroprop.MLPClassifier(device=device, **run_settings)))
        for label, model in models:
            start = time.perf_counter()
            model.fit(xtr, ytr)
            seconds = time.perf_counter() - start
            accuracy = model.score(xte, yte)
            if label.startswith("retroprop"):
                label += f" ({model.device_.split(':')[1].split(',')[0].strip()})"
            print(f"{name:34} {label:28} {seconds:8.2f} {model.n_iter_:6d} {accuracy:8.4f}", flush=True)


def standard_work(rows=16384, seed=0):
    """The standard work's data: x uniform in [0, 1), labels the argmax of
    x·W for a fixed zero-mean-column W."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 784), dtype=np.float32)
    w = rng.normal(size=(784, 10)).astype(np.float32)
    w -= w.mean(axis=0)
    return x, np.argmax(x @ w, axis=1).astype(np.int64)


def write_safetensors(path, x, y):
    tensors = [("x", "F32", x), ("y", "I64", y)]
    header, offset = {}, 0
    for name, dtype, value in tensors:
        header[name] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, value in tensors:
            f.write(np.ascontiguousarray(value).tobytes())


def overhead(args):
    import retroprop

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--release", "--example", "fit_timing"], cwd=repo, check=True)
    binary = os.path.join(repo, "target", "release", "examples", "fit_timing")
    x, y = standard_work()
    sizes = [784, 1024, 1024, 10]
    rust, python = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "standard.safetensors")
        write_safetensors(path, x, y)
        for _ in range(args.rounds):
            out = subprocess.run([binary, path, ",".join(map(str, sizes)), str(args.epochs), "1024", args.device],
                                 capture_output=True, text=True, check=True).stdout.split()
            rust.append(float(out[0]))
            trainer = retroprop.Trainer(sizes, "relu", "cross_entropy", "adam", batch_size=1024,
                                        epochs=args.epochs, device=args.device)
            start = time.perf_counter()
            trainer.fit(x, y)
            python.append(time.perf_counter() - start)
            print(f"round: rust {rust[-1]:.3f} s, python {python[-1]:.3f} s", flush=True)
    r, p = statistics.median(rust), statistics.median(python)
    steps = args.epochs * 16
    print(f"standard work, batch 1024, {args.epochs} epochs ({steps} steps), {args.device}: "
          f"Rust Trainer::fit {r:.3f} s, Python Trainer.fit {p:.3f} s (medians of {args.rounds}), "
          f"overhead {100 * (p / r - 1):+.2f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sklearn")
    s.add_argument("--devices", default="cpu,gpu")
    s.add_argument("--max-iter", type=int, default=200)
    s.add_argument("--synthetic-rows", type=int, default=100000)
    s.add_argument("--synthetic-iter", type=int, default=0, help="max_iter for the synthetic set (default: --max-iter)")
    o = sub.add_parser("overhead")
    o.add_argument("--rounds", type=int, default=5)
    o.add_argument("--epochs", type=int, default=3)
    o.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sklearn_comparison(args) if args.what == "sklearn" else overhead(args)


if __name__ == "__main__":
    sys.exit(main())
