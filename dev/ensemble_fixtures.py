#!/usr/bin/env python3
"""Regenerates tests/fixtures/ensemble.safetensors: the `tabm` package's
LinearBatchEnsemble followed by an activation, in float64, forward and
backward (the gradients of the input, weight, r, s and bias) from seeded
inputs and its own initialisation (random-signs r and s, as TabM's
blocks). tests/ensemble.rs runs src/cpu/ensemble.rs on the same inputs.
The package's layout is (rows, k, width); the fixture keeps it, and the
test moves the members first as retroprop lays them out.

    /work/venv/bin/python dev/ensemble_fixtures.py
"""
from pathlib import Path

import tabm
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
out = {}


def case(name, rows, k, inputs, outputs, activation):
    layer = tabm.LinearBatchEnsemble(inputs, outputs, k=k, scaling_init="random-signs")
    with torch.no_grad():
        # Scalings and bias away from ±1 and 0, so every term shows.
        layer.r.mul_(torch.rand(k, inputs) + 0.5)
        layer.s.mul_(torch.rand(k, outputs) + 0.5)
        layer.bias.uniform_(-0.3, 0.3)
    x = torch.randn(rows, k, inputs, requires_grad=True)
    z = layer(x)
    a = activation(z)
    da = torch.randn_like(a)
    a.backward(da)
    for tensor, value in [("x", x), ("a", a), ("da", da), ("dx", x.grad),
                          ("weight", layer.weight), ("r", layer.r), ("s", layer.s), ("bias", layer.bias),
                          ("dweight", layer.weight.grad), ("dr", layer.r.grad), ("ds", layer.s.grad),
                          ("dbias", layer.bias.grad)]:
        out[f"{name}.{tensor}"] = value.detach().clone().contiguous()


case("relu", rows=6, k=4, inputs=5, outputs=7, activation=torch.relu)
case("identity", rows=3, k=2, inputs=9, outputs=4, activation=lambda z: z)
case("tanh_wide", rows=5, k=8, inputs=33, outputs=64, activation=torch.tanh)

path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ensemble.safetensors"
save_file(out, str(path), metadata={"made_by": "dev/ensemble_fixtures.py", "tabm": tabm.__version__})
print(f"wrote {len(out)} tensors to {path}")
