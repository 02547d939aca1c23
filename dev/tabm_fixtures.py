#!/usr/bin/env python3
"""Regenerates tests/fixtures/tabm.safetensors: whole TabM networks of the
`tabm` package (`tabm.TabM.make`, each architecture, dropout 0) in
float64 from its own initialisation, trained as the package's README
trains them: the loss over `y_pred.flatten(0, 1)` against each row's
target repeated for the k members, `torch.optim.AdamW(lr=2e-3,
weight_decay=3e-4)`. Kept: the initial `state_dict`, the inputs and
targets, the first step's loss and every parameter's gradient, the
parameters after three steps, and the ensemble's prediction then (the
mean of the members' softmax probabilities, or of their outputs).
tests/tabm.rs trains retroprop's TabM (src/model/tabm.rs,
src/cpu/sequence.rs) from the same parameters.

    /work/venv/bin/python dev/tabm_fixtures.py
"""
import warnings
from pathlib import Path

import rtdl_num_embeddings
import tabm
import torch
from safetensors.torch import save_file

warnings.simplefilter("ignore")
torch.set_default_dtype(torch.float64)
out = {}


def case(name, arch, rows, inputs, outputs, k, blocks, width, task, seed, embeddings=None):
    torch.manual_seed(seed)
    extra = {} if embeddings is None else {"num_embeddings": embeddings(inputs)}
    model = tabm.TabM.make(n_num_features=inputs, d_out=outputs, k=k, n_blocks=blocks,
                           d_block=width, dropout=0.0, arch_type=arch, **extra)
    with torch.no_grad():
        # Every member's scalings and biases apart, so that each term shows.
        for pname, p in model.named_parameters():
            if pname.endswith((".r", ".s", "affine.weight")):
                p.mul_(torch.rand_like(p) + 0.5)
            if pname.endswith(".bias") and p.ndim == 2:
                p.add_(0.1 * torch.randn_like(p))
    for key, value in model.state_dict().items():
        out[f"{name}.init.{key}"] = value.detach().clone().contiguous()
    x = torch.randn(rows, inputs)
    if task == "classes":
        y = torch.randint(0, outputs, (rows,))
        loss_fn = torch.nn.functional.cross_entropy
        out[f"{name}.y"] = y.to(torch.float64)
    else:
        # Targets retroprop holds as float32: rounded to it here too.
        y = torch.randn(rows, outputs).float().double()
        loss_fn = torch.nn.functional.mse_loss
        out[f"{name}.y"] = y
    out[f"{name}.x"] = x
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=3e-4)
    model.train()
    for step in range(3):
        optimizer.zero_grad()
        y_pred = model(x)  # (rows, k, outputs)
        if task == "classes":
            loss = loss_fn(y_pred.flatten(0, 1), y.repeat_interleave(k))
        else:
            loss = loss_fn(y_pred.flatten(0, 1), y.repeat_interleave(k, dim=0))
        loss.backward()
        if step == 0:
            out[f"{name}.loss"] = loss.detach().reshape(1)
            for pname, p in model.named_parameters():
                out[f"{name}.grad.{pname}"] = p.grad.detach().clone().contiguous()
        optimizer.step()
    for key, value in model.state_dict().items():
        out[f"{name}.after.{key}"] = value.detach().clone().contiguous()
    model.eval()
    with torch.no_grad():
        y_pred = model(x)
        if task == "classes":
            prediction = y_pred.softmax(-1).mean(1)
        else:
            prediction = y_pred.mean(1)
    out[f"{name}.prediction"] = prediction.contiguous()


case("tabm", "tabm", rows=12, inputs=5, outputs=3, k=4, blocks=2, width=16, task="classes", seed=0)
case("mini", "tabm-mini", rows=9, inputs=6, outputs=4, k=3, blocks=3, width=8, task="classes", seed=1)
case("packed", "tabm-packed", rows=10, inputs=4, outputs=2, k=5, blocks=2, width=12, task="values", seed=2)
case("tabm_regression", "tabm", rows=16, inputs=7, outputs=1, k=8, blocks=1, width=32, task="values", seed=3)

# rtdl_num_embeddings' periodic embeddings before the members: PLR (the
# frequencies at σ 0.3, so that the cosines and sines vary) and PLR-lite.
case("plr", "tabm", rows=10, inputs=3, outputs=3, k=4, blocks=2, width=16, task="classes", seed=4,
     embeddings=lambda n: rtdl_num_embeddings.PeriodicEmbeddings(n, 8, n_frequencies=5, frequency_init_scale=0.3, lite=False))
case("plr_lite_mini", "tabm-mini", rows=11, inputs=4, outputs=1, k=3, blocks=2, width=8, task="values", seed=5,
     embeddings=lambda n: rtdl_num_embeddings.PeriodicEmbeddings(n, 6, n_frequencies=4, frequency_init_scale=0.2,
                                                                 lite=True))

path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tabm.safetensors"
save_file(out, str(path), metadata={"made_by": "dev/tabm_fixtures.py", "tabm": tabm.__version__})
print(f"wrote {len(out)} tensors to {path}")
