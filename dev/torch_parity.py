#!/usr/bin/env python3
"""retroprop against PyTorch, step for step.

Trains the same network from the same initial parameters on the same data,
in file order, with the same optimizer, for each optimizer configuration and
loss: once with torch.optim, once with `retroprop train` on each device, and
prints the largest relative difference of any parameter.

    python3 dev/torch_parity.py target/release/retroprop cpu gpu
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

torch.set_default_dtype(torch.float32)
STEPS, BATCH, SIZES = 30, 10, [5, 16, 3]

OPTIMIZERS = [
    ("sgd", dict(lr=0.05), ["--lr", "0.05"]),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
     ["--lr", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001"]),
    ("sgd", dict(lr=0.05, momentum=0.8, dampening=0.2), ["--lr", "0.05", "--momentum", "0.8", "--dampening", "0.2"]),
    ("adam", dict(lr=3e-3), ["--lr", "0.003"]),
    ("adam", dict(lr=3e-3, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True),
     ["--lr", "0.003", "--betas", "0.8,0.99", "--weight-decay", "0.01", "--amsgrad"]),
    ("adamw", dict(lr=3e-3, weight_decay=0.1), ["--lr", "0.003", "--weight-decay", "0.1"]),
    ("rmsprop", dict(lr=1e-3), ["--lr", "0.001"]),
    ("rmsprop", dict(lr=1e-3, alpha=0.9, momentum=0.5, centered=True, weight_decay=1e-2),
     ["--lr", "0.001", "--alpha", "0.9", "--momentum", "0.5", "--centered", "--weight-decay", "0.01"]),
    ("adagrad", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
     ["--lr", "0.05", "--lr-decay", "0.01", "--initial-accumulator", "0.1"]),
]
TORCH_OPT = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
             "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}


class Mlp(torch.nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.tanh(x)
        return x


def data(loss, rng):
    x = rng.uniform(-1, 1, size=(95, SIZES[0])).astype(np.float32)  # 95 rows: a partial last batch
    if loss == "cross_entropy":
        y = ((x[:, 0] + 1) * 1.5).clip(0, 2.999).astype(np.int64)
    elif loss == "bce_with_logits":
        y = (x[:, :3] > 0).astype(np.float32)
    else:
        y = (x[:, :3] * x[:, 1:2]).astype(np.float32)
    return x, y


def torch_run(init, x, y, loss, name, kwargs):
    model = Mlp(SIZES)
    model.load_state_dict(init)
    opt = TORCH_OPT[name](model.parameters(), **kwargs)
    fn = {"mse": torch.nn.MSELoss(), "half_mse": lambda o, t: 0.5 * torch.nn.functional.mse_loss(o, t),
          "cross_entropy": torch.nn.CrossEntropyLoss(), "bce_with_logits": torch.nn.BCEWithLogitsLoss()}[loss]
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    step = 0
    while step < STEPS:
        for start in range(0, len(x), BATCH):
            if step == STEPS:
                break
            opt.zero_grad()
            fn(model(xs[start:start + BATCH]), ys[start:start + BATCH]).backward()
            opt.step()
            step += 1
    return {k: v.detach() for k, v in model.state_dict().items()}


def main():
    binary, devices = sys.argv[1], sys.argv[2:] or ["cpu"]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for loss in ["mse", "half_mse", "cross_entropy", "bce_with_logits"]:
            rng = np.random.default_rng(0)
            x, y = data(loss, rng)
            csv = tmp / f"{loss}.csv"
            targets = 1 if y.ndim == 1 else y.shape[1]
            np.savetxt(csv, np.column_stack([x, y.reshape(len(x), -1)]), delimiter=",", fmt="%.9g")
            torch.manual_seed(0)
            init = {k: v.contiguous() for k, v in Mlp(SIZES).state_dict().items()}
            init_path = tmp / "init.safetensors"
            save_file(init, str(init_path))
            for name, kwargs, flags in OPTIMIZERS:
                expected = torch_run(init, x, y, loss, name, kwargs)
                for device in devices:
                    out = tmp / "out.safetensors"
                    subprocess.run([binary, "train", "--data", str(csv), "--targets", str(targets), "--loss", loss,
                                    "--arch", ",".join(map(str, SIZES)), "--activations", "tanh",
                                    "--init", str(init_path), "--no-shuffle", "--batch-size", str(BATCH),
                                    "--steps", str(STEPS), "--optimizer", name, *flags, "--device", device,
                                    "--quiet", "--save", str(out)], check=True, stdout=subprocess.DEVNULL)
                    got = load_file(str(out))
                    err = max(((got[k] - expected[k]).abs() / torch.maximum(
                        torch.maximum(got[k].abs(), expected[k].abs()), torch.tensor(1e-2))).max().item()
                        for k in expected)
                    worst = max(worst, err)
                    print(f"{loss:16} {name:8} {str(kwargs):70} {device:4} max relative error {err:.2e}"
                          f" {'OK' if err < 1e-4 else 'NOT OK'}", flush=True)
    print(f"worst: {worst:.2e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
