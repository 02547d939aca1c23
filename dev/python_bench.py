"""Measures the Python package (docs/performance.md, "From Python").

    python dev/python_bench.py sklearn [--devices cpu,gpu,auto] [--rounds 3]
            [--before DIR] [--sets digits,breast_cancer,synthetic,iris,wine,moons]
            [--hidden 256,256] [--sklearn-blas-threads N]
            [--synthetic-rows 100000] [--synthetic-iter N] [--seeds 0,1,2]
        fit time and test accuracy of retroprop.MLPClassifier beside
        scikit-learn's MLPClassifier, the same data, architecture (--hidden,
        (256, 256) by default) and settings: digits, breast cancer,
        make_classification (and iris, wine, make_moons 5000 × 2, noise
        0.2); device auto is the estimator's default;
        each fit in a fresh process, the fitters interleaved round by
        round, medians. --before DIR: also time the retroprop package
        unpacked in DIR (an earlier build's wheel), for before/after.
        --seeds: the random_states to fit at (0 by default), each fitter
        at each; a fit's epochs follow its initialisation, so one seed
        can give one fitter many more than the other (breast cancer at
        (256, 256), state 0: 89 epochs against scikit-learn's 75; over
        states 0-9 the means are 78.9 and 81.5). The table gives the
        median over every fit, and the median time an epoch.
    python dev/python_bench.py overhead [--rounds 5] [--epochs 3]
        Trainer.fit in Python against Trainer::fit in Rust
        (examples/fit_timing.rs) on the standard work at batch 1024,
        interleaved rounds, the median of each.

Needs the package (pip install ./python), scikit-learn, and for
`overhead` cargo (it runs the example).
"""

import argparse
import contextlib
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


def load_set(name, synthetic_rows):
    """One of the comparison's data sets, split 75/25 (stratified) and
    scaled by a StandardScaler fitted on the training rows."""
    from sklearn.datasets import (load_breast_cancer, load_digits, load_iris, load_wine, make_classification,
                                  make_moons)
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        x, y = load_digits(return_X_y=True)
    elif name == "breast_cancer":
        x, y = load_breast_cancer(return_X_y=True)
    elif name == "iris":
        x, y = load_iris(return_X_y=True)
    elif name == "wine":
        x, y = load_wine(return_X_y=True)
    elif name == "moons":
        x, y = make_moons(n_samples=5000, noise=0.2, random_state=0)
    else:
        x, y = make_classification(n_samples=synthetic_rows, n_features=100, n_informative=50,
                                   n_classes=10, random_state=0)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(xtr)
    return scaler.transform(xtr), scaler.transform(xte), ytr, yte


def fit_once(args):
    """One fit in this process (a fresh one per fit, for every library
    alike), printed as JSON: seconds, epochs, accuracy, device."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    xtr, xte, ytr, yte = load_set(args.data, args.synthetic_rows)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    settings = dict(hidden_layer_sizes=hidden, max_iter=args.max_iter, random_state=args.random_state)
    limits = contextlib.nullcontext()
    if args.library == "sklearn":
        from sklearn.neural_network import MLPClassifier

        model = MLPClassifier(**settings)
        if args.sklearn_blas_threads:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(args.sklearn_blas_threads, user_api="blas")
    else:
        import retroprop

        model = retroprop.MLPClassifier(device=args.library, **settings)
    with limits:
        cpu = time.process_time()
        start = time.perf_counter()
        model.fit(xtr, ytr)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    device = getattr(model, "device_", "")
    print(json.dumps(dict(seconds=seconds, cpu_seconds=cpu, epochs=model.n_iter_,
                          accuracy=model.score(xte, yte), device=device)))


def sklearn_comparison(args):
    """Each fit in a fresh process, the libraries interleaved round by
    round; the median of each."""
    sets = args.sets.split(",")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = [("scikit-learn", "sklearn", None)]
    for device in args.devices.split(","):
        if args.before:
            runs.append((f"retroprop {device}, before", device, args.before))
        runs.append((f"retroprop {device}", device, None))
    print(f"hidden_layer_sizes ({args.hidden}), max_iter {args.max_iter} ({args.synthetic_iter or args.max_iter} "
          f"for the synthetic set), random_state {args.seeds}, everything else scikit-learn's defaults (adam, lr 1e-3, "
          "batch min(200, n), alpha 1e-4, tol 1e-4, n_iter_no_change 10); 25 % held out, stratified; "
          f"StandardScaler fitted on the training rows; {args.rounds} rounds, each fit in a fresh process")
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    results = {}
    for data in sets:
        max_iter = args.synthetic_iter if data == "synthetic" and args.synthetic_iter else args.max_iter
        for r, seed in ((r, seed) for r in range(args.rounds) for seed in seeds):
            for label, library, path in runs:
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")])
                command = [sys.executable, os.path.abspath(__file__), "fit-once", data, library,
                           "--max-iter", str(max_iter), "--synthetic-rows", str(args.synthetic_rows),
                           "--hidden", args.hidden, "--random-state", str(seed),
                           "--sklearn-blas-threads", str(args.sklearn_blas_threads)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{label} on {data} failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault((data, label), []).append(result)
                print(f"round {r + 1} state {seed} {data:14} {label:26} {result['seconds']:8.3f} s "
                      f"(CPU {result['cpu_seconds']:8.3f} s) {result['epochs']:4d} epochs "
                      f"accuracy {result['accuracy']:.4f} {result['device']}", flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    print()
    print("| data | fit by | fit s (median) | min | CPU s (median) | epochs | ms an epoch (median) | accuracy | "
          "scikit-learn ÷ this: fit | an epoch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for data in sets:
        theirs = results[(data, "scikit-learn")]
        reference = statistics.median(r["seconds"] for r in theirs)
        reference_epoch = statistics.median(r["seconds"] / r["epochs"] for r in theirs)
        for label, _, _ in runs:
            rs = results[(data, label)]
            median = statistics.median(r["seconds"] for r in rs)
            epoch = statistics.median(r["seconds"] / r["epochs"] for r in rs)
            if len(seeds) == 1:
                epochs = "/".join(sorted({str(r["epochs"]) for r in rs}))
                accuracy = "/".join(sorted({f"{r['accuracy']:.4f}" for r in rs}))
            else:
                epochs = f"{statistics.mean(r['epochs'] for r in rs):.1f} (mean)"
                accuracy = f"{statistics.mean(r['accuracy'] for r in rs):.4f} (mean)"
            ratio = "" if label == "scikit-learn" else f"{reference / median:.1f}×"
            ratio_epoch = "" if label == "scikit-learn" else f"{reference_epoch / epoch:.1f}×"
            cpu = statistics.median(r["cpu_seconds"] for r in rs)
            print(f"| {data} | {label} | {median:.3f} | {min(r['seconds'] for r in rs):.3f} | {cpu:.3f} | {epochs} | "
                  f"{epoch * 1e3:.2f} | {accuracy} | {ratio} | {ratio_epoch} |")


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
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--sets", default="digits,breast_cancer,synthetic")
    s.add_argument("--hidden", default="256,256", help="hidden_layer_sizes, comma-separated")
    s.add_argument("--sklearn-blas-threads", type=int, default=0,
                   help="limit scikit-learn's BLAS to this many threads (threadpoolctl; 0: its default)")
    s.add_argument("--before", help="a directory holding another build of the retroprop package")
    s.add_argument("--seeds", default="0", help="random_states to fit at, comma-separated")
    f = sub.add_parser("fit-once")
    f.add_argument("data", choices=["digits", "breast_cancer", "synthetic", "iris", "wine", "moons"])
    f.add_argument("library", help="sklearn, or retroprop's device (cpu, gpu, auto)")
    f.add_argument("--hidden", default="256,256")
    f.add_argument("--max-iter", type=int, default=200)
    f.add_argument("--synthetic-rows", type=int, default=100000)
    f.add_argument("--sklearn-blas-threads", type=int, default=0)
    f.add_argument("--random-state", type=int, default=0)
    o = sub.add_parser("overhead")
    o.add_argument("--rounds", type=int, default=5)
    o.add_argument("--epochs", type=int, default=3)
    o.add_argument("--device", default="cpu")
    args = parser.parse_args()
    {"sklearn": sklearn_comparison, "fit-once": fit_once, "overhead": overhead}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
