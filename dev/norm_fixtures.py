#!/usr/bin/env python3
"""Regenerates tests/fixtures/norms.safetensors: torch's LayerNorm and
BatchNorm1d in float64, forward and backward, and BatchNorm's running
statistics over two training batches then an evaluation pass, from seeded
inputs. tests/norms.rs runs the CPU kernels (src/cpu/norm.rs) on the same
inputs and compares.

    /work/venv/bin/python dev/norm_fixtures.py
"""
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
out = {}


def case(prefix, module, batches, evaluate):
    """Each training batch's input, upstream gradient, output and
    gradients (input, weight, bias), the running statistics after it when
    the module keeps them, and an evaluation pass's input and output."""
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
    out[f"{prefix}.weight"] = module.weight.detach().clone()
    out[f"{prefix}.bias"] = module.bias.detach().clone()
    module.train()
    for b, (x, dy) in enumerate(batches):
        x = x.clone().requires_grad_(True)
        module.zero_grad()
        y = module(x)
        y.backward(dy)
        out[f"{prefix}.{b}.x"] = x.detach()
        out[f"{prefix}.{b}.dy"] = dy
        out[f"{prefix}.{b}.y"] = y.detach()
        out[f"{prefix}.{b}.dx"] = x.grad.detach()
        out[f"{prefix}.{b}.dweight"] = module.weight.grad.detach().clone()
        out[f"{prefix}.{b}.dbias"] = module.bias.grad.detach().clone()
        if isinstance(module, torch.nn.BatchNorm1d):
            out[f"{prefix}.{b}.running_mean"] = module.running_mean.clone()
            out[f"{prefix}.{b}.running_var"] = module.running_var.clone()
    if evaluate is not None:
        module.eval()
        with torch.no_grad():
            out[f"{prefix}.eval.x"] = evaluate
            out[f"{prefix}.eval.y"] = module(evaluate)


rows, width = 7, 5
# Rows far from zero mean and unit variance, one nearly constant row.
x = torch.randn(rows, width) * 3.0 + 2.0
x[3] = 1.0 + 1e-3 * torch.randn(width)
case("layer_norm", torch.nn.LayerNorm(width, eps=1e-5), [(x, torch.randn(rows, width))], None)
wide = torch.randn(4, 300) * 0.1 - 5.0
case("layer_norm_wide", torch.nn.LayerNorm(300, eps=1e-6), [(wide, torch.randn(4, 300))], None)
bn = torch.nn.BatchNorm1d(width, eps=1e-5, momentum=0.1)
batches = [(torch.randn(9, width) * 2.0 + 1.0, torch.randn(9, width)),
           (torch.randn(6, width) - 3.0, torch.randn(6, width))]
case("batch_norm", bn, batches, torch.randn(3, width))
two = torch.nn.BatchNorm1d(3, eps=1e-3, momentum=0.5)
case("batch_norm_two_rows", two, [(torch.randn(2, 3), torch.randn(2, 3))], torch.randn(2, 3))

path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "norms.safetensors"
save_file({k: v.contiguous() for k, v in out.items()}, str(path),
          metadata={"made_by": "dev/norm_fixtures.py", "torch": torch.__version__})
print(f"wrote {len(out)} tensors to {path}")
