"""Issue 31's measurement: 32 networks of 64-256-256-10 on the bundled
digits (batch 200, Adam, EPOCHS epochs each) trained as members of one run
against 32 lone fits, beside PyTorch training the same 32 networks with
torch.func.stack_module_state + vmap, in one run, round by round.

    cargo build --release -p retroprop-cli
    /work/venv/bin/python dev/members_bench.py --epochs 20 --rounds 3 --devices cpu,gpu

Each line printed is one JSON object: the case, its wall time in seconds
(the program's whole process, start-up included, so lone fits pay 32
start-ups; `train_s` is what the program reports for its steps alone), and
at the end the medians and their ratios. `gpu` is lavapipe on a machine
without a GPU. Needs torch in the running Python for the vmap case (left
out with a line on stderr otherwise).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "target", "release", "retroprop")
ARCH = "64,256,256,10"
TIMING = re.compile(r"steps in ([0-9.]+) s")


def program(args):
    """Runs the program, returning (wall seconds, seconds of steps)."""
    start = time.perf_counter()
    out = subprocess.run([PROGRAM, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr}")
    steps = TIMING.search(out.stdout + out.stderr)
    return wall, float(steps.group(1)) if steps else float("nan")


def common(device, epochs):
    return ["train", "--arch", ARCH, "--batch-size", "200", "--optimizer", "adam", "--epochs", str(epochs),
            "--device", device, "--val-split", "0.2", "--quiet"]


def members_run(device, epochs, k):
    return program(common(device, epochs) + ["--members", str(k)])


def lone_fits(device, epochs, k):
    wall = steps = 0.0
    for seed in range(k):
        w, s = program(common(device, epochs) + ["--seed", str(seed)])
        wall += w
        steps += s
    return wall, steps


def torch_vmap(epochs, k):
    """The same 32 networks in PyTorch, every step one vmapped call."""
    import numpy as np
    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap
    from sklearn.datasets import load_digits

    torch.set_num_threads(os.cpu_count())
    x, y = load_digits(return_X_y=True)
    n = int(len(x) * 0.8)
    xt = torch.tensor(x[:n], dtype=torch.float32)
    yt = torch.tensor(y[:n])
    sizes = [int(s) for s in ARCH.split(",")]

    def make(seed):
        torch.manual_seed(seed)
        layers = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])

    models = [make(s) for s in range(k)]
    params, buffers = stack_module_state(models)
    base = make(0).to("meta")

    def loss_of(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return torch.nn.functional.cross_entropy(out, yb)

    step = vmap(grad_and_value(loss_of), in_dims=(0, 0, None, None))
    leaves = list(params.values())
    for leaf in leaves:
        leaf.requires_grad_(False)
    opt = torch.optim.Adam(leaves, lr=1e-3)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, n, 200):
            idx = order[i:i + 200]
            grads, _ = step(params, buffers, xt[idx], yt[idx])
            for leaf, name in zip(leaves, params):
                leaf.grad = grads[name]
            opt.step()
    return time.perf_counter() - start, float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--members", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", default="cpu,gpu")
    ap.add_argument("--gpu-epochs", type=int, default=None, help="epochs on the gpu (default --epochs)")
    args = ap.parse_args()
    if not os.path.exists(PROGRAM):
        sys.exit("build the program first: cargo build --release -p retroprop-cli")
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("no torch in this Python: the vmap case is left out (pip install torch)", file=sys.stderr)
    times = {}
    for r in range(args.rounds):
        cases = []
        for device in args.devices.split(","):
            epochs = args.gpu_epochs if device == "gpu" and args.gpu_epochs else args.epochs
            cases.append((f"{device} members", lambda d=device, e=epochs: members_run(d, e, args.members)))
            cases.append((f"{device} lone fits", lambda d=device, e=epochs: lone_fits(d, e, args.members)))
        if have_torch:
            cases.append(("torch vmap cpu", lambda: torch_vmap(args.epochs, args.members)))
        for name, run in cases:
            wall, steps = run()
            times.setdefault(name, []).append((wall, steps))
            print(json.dumps({"round": r + 1, "case": name, "wall_s": round(wall, 3), "train_s": round(steps, 3),
                              "load": open("/proc/loadavg").read().split()[0]}), flush=True)
    medians = {name: statistics.median(w for w, _ in runs) for name, runs in times.items()}
    summary = {"medians_s": {k: round(v, 3) for k, v in medians.items()}}
    for device in args.devices.split(","):
        if f"{device} members" in medians:
            summary[f"{device}: lone fits / members"] = round(medians[f"{device} lone fits"] / medians[f"{device} members"], 2)
    if have_torch and "cpu members" in medians:
        summary["torch vmap / cpu members"] = round(medians["torch vmap cpu"] / medians["cpu members"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
