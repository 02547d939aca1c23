#!/usr/bin/env python3
"""Regenerates tests/fixtures/residual.safetensors: residual networks of
"Revisiting Deep Learning Models for Tabular Data" (rtdl's ResNet, by its
names: first_layer, blocks.{i}.normalization / linear_first /
linear_second, head.normalization / linear) trained by torch in float64
from torch's own initialisation: each step's loss and the parameters
after the last step, for AdamW and for SGD with momentum, with LayerNorm,
BatchNorm (its running statistics too) and without a normalisation, and an
evaluation-mode pass after training. tests/residual.rs trains retroprop's
`Mlp::residual` on the CPU from the same parameters and batches.

    /work/venv/bin/python dev/residual_fixtures.py
"""
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
nn = torch.nn


def normalization(norm, width):
    return {"layer": lambda: nn.LayerNorm(width), "batch": lambda: nn.BatchNorm1d(width),
            None: nn.Identity}[norm]()


class Block(nn.Module):
    def __init__(self, width, hidden, norm):
        super().__init__()
        self.normalization = normalization(norm, width)
        self.linear_first = nn.Linear(width, hidden)
        self.activation = nn.ReLU()
        self.linear_second = nn.Linear(hidden, width)

    def forward(self, x):
        return x + self.linear_second(self.activation(self.linear_first(self.normalization(x))))


class Head(nn.Module):
    def __init__(self, width, outputs, norm):
        super().__init__()
        self.normalization = normalization(norm, width)
        self.activation = nn.ReLU()
        self.linear = nn.Linear(width, outputs)

    def forward(self, x):
        return self.linear(self.activation(self.normalization(x)))


class ResNet(nn.Module):
    def __init__(self, inputs, width, hidden, blocks, outputs, norm):
        super().__init__()
        self.first_layer = nn.Linear(inputs, width)
        self.blocks = nn.Sequential(*[Block(width, hidden, norm) for _ in range(blocks)])
        self.head = Head(width, outputs, norm)

    def forward(self, x):
        return self.head(self.blocks(self.first_layer(x)))


out = {}


def case(name, norm, optimizer, steps=5, rows=12, inputs=6, width=8, hidden=16, blocks=3, outputs=3):
    torch.manual_seed(len(out))
    net = ResNet(inputs, width, hidden, blocks, outputs, norm)
    with torch.no_grad():
        # LayerNorm's γ, β away from 1, 0, so their gradients show.
        for module in net.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    for k, v in net.state_dict().items():
        out[f"{name}.start.{k}"] = v.clone()
    opt = optimizer(net.parameters())
    losses = []
    for step in range(steps):
        x = torch.randn(rows, inputs) * 2.0
        y = torch.randint(0, outputs, (rows,))
        out[f"{name}.x.{step}"] = x
        out[f"{name}.y.{step}"] = y.double()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out[f"{name}.losses"] = torch.tensor(losses)
    for k, v in net.state_dict().items():
        out[f"{name}.end.{k}"] = v.clone().double()
    # Evaluation mode: BatchNorm by its running statistics.
    net.eval()
    x = torch.randn(4, inputs)
    out[f"{name}.eval.x"] = x
    with torch.no_grad():
        out[f"{name}.eval.y"] = net(x)


case("layer_adamw", "layer", lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2))
case("layer_sgd", "layer", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
case("none_adamw", None, lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2))
case("batch_adamw", "batch", lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2))

path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "residual.safetensors"
save_file({k: v.contiguous() for k, v in out.items()}, str(path),
          metadata={"made_by": "dev/residual_fixtures.py", "torch": torch.__version__})
print(f"wrote {len(out)} tensors to {path}")
