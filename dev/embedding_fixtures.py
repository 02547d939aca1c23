#!/usr/bin/env python3
"""Regenerates tests/fixtures/embeddings.safetensors: the
`rtdl_num_embeddings` package's numerical feature embeddings in float64
(PiecewiseLinearEmbeddings version B with and without ReLU, PeriodicEmbeddings
as PLR, PL and PLR-lite), each from the package's own initialisation on a few
columns of scikit-learn's bundled diabetes data: the input, the output, the
loss's gradient of the output, every parameter's gradient of the loss
((y - target)²).mean(), and the parameters after one torch.optim.AdamW step
(lr 2e-3, weight_decay 3e-4). Also compute_bins of the whole diabetes data
at several n_bins, and the moments of the package's initialisation of large
modules. tests/embeddings.rs runs src/embedding.rs and
src/cpu/embedding.rs on the same values.

compute_bins runs under torch's default dtype, float32: its quantile levels
are torch.linspace in the default dtype, so they are float32 values even for
a float64 X (src/embedding.rs reproduces them).

    /work/venv/bin/python dev/embedding_fixtures.py
"""
import warnings
from pathlib import Path

import rtdl_num_embeddings as rne
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_diabetes

warnings.simplefilter("ignore")  # the package warns of features with one bin
DATA = torch.tensor(load_diabetes().data, dtype=torch.float64)
out = {}
meta = {"made_by": "dev/embedding_fixtures.py", "rtdl_num_embeddings": rne.__version__}


def bins_of(x, n_bins):
    """compute_bins as a user runs it: torch's default dtype float32."""
    torch.set_default_dtype(torch.float32)
    try:
        return rne.compute_bins(x, n_bins=n_bins)
    finally:
        torch.set_default_dtype(torch.float64)


def put(name, value):
    out[name] = value.detach().clone().to(torch.float64).contiguous()


def case(name, module, x, extra=None):
    """Forward, backward and one AdamW step of `module` on `x`."""
    meta[f"{name}.state_dict"] = ",".join(module.state_dict().keys())
    for key, value in module.state_dict().items():
        put(f"{name}.{key}", value)
    put(f"{name}.x", x)
    y = module(x).flatten(1, -1)  # as TabM lays the embeddings out
    y.retain_grad()
    target = torch.randn_like(y)
    loss = ((y - target) ** 2).mean()
    loss.backward()
    put(f"{name}.y", y)
    put(f"{name}.target", target)
    put(f"{name}.dy", y.grad)
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-3, weight_decay=3e-4)
    for key, p in module.named_parameters():
        put(f"{name}.grad.{key}", p.grad)
    optimizer.step()
    for key, p in module.named_parameters():
        put(f"{name}.step.{key}", p)
    for key, value in (extra or {}).items():
        put(f"{name}.{key}", value)


torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

# Age, sex (two values: one bin), bmi and s4 (few distinct values): the bins
# of the first 400 rows; the input is the other rows and some beyond every
# edge, so the first and last bins' unclamped sides show.
columns = [0, 1, 2, 7]
train, held_out = DATA[:400, columns], DATA[400:, columns]
bins = bins_of(train, 8)
assert sorted({len(b) for b in bins}) != [9], "bins of one length only"
assert any(len(b) == 2 for b in bins), "no feature with one bin"
x_ple = torch.cat([held_out[:16], 1.5 * held_out[16:20], -1.5 * held_out[20:24]])
for i, b in enumerate(bins):
    put(f"ple_bins.{i}", b)
for name, activation in [("ple", False), ("ple_relu", True)]:
    m = rne.PiecewiseLinearEmbeddings(bins, 5, activation=activation, version="B")
    put(f"{name}.init.linear.weight", m.linear.weight)
    # Version B starts the piecewise-linear part at zero (so ReLU's
    # gradient is zero at init); a random start makes every term show.
    with torch.no_grad():
        m.linear.weight.uniform_(-0.5, 0.5)
    case(name, m, x_ple)

x_std = (DATA[:24, columns] - DATA[:, columns].mean(0)) / DATA[:, columns].std(0)
case("plr", rne.PeriodicEmbeddings(4, 6, n_frequencies=5, frequency_init_scale=0.5, lite=False), x_std)
case("pl", rne.PeriodicEmbeddings(4, 3, n_frequencies=7, frequency_init_scale=0.2, activation=False, lite=False), x_std)
case("plr_lite", rne.PeriodicEmbeddings(4, 6, n_frequencies=5, frequency_init_scale=2.0, lite=True), x_std)

# compute_bins of all ten columns (sex has two values, s4 few), at edge
# counts where quantile ranks fall on whole numbers (441 = 9 · 49 rows).
put("bins.x", DATA)
for n_bins in [2, 7, 8, 48, 49, 147, 441]:
    for i, b in enumerate(bins_of(DATA, n_bins)):
        put(f"bins{n_bins}.{i}", b)
# A float32 copy of the data, binned in float32.
for i, b in enumerate(bins_of(DATA.to(torch.float32), 48)):
    put(f"bins48_f32.{i}", b)

# The package's initialisation of large modules: each parameter's mean,
# standard deviation and largest magnitude.
big = {
    "ple": rne.PiecewiseLinearEmbeddings(bins_of(DATA, 48), 256, activation=False, version="B"),
    "plr": rne.PeriodicEmbeddings(64, 32, n_frequencies=48, frequency_init_scale=0.3, lite=False),
    "plr_lite": rne.PeriodicEmbeddings(64, 32, n_frequencies=48, frequency_init_scale=0.3, lite=True),
}
for name, m in big.items():
    for key, p in m.named_parameters():
        p = p.detach().flatten()
        put(f"init_stats.{name}.{key}", torch.stack([p.mean(), p.std(), p.abs().max()]))

path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "embeddings.safetensors"
save_file(out, str(path), metadata=meta)
print(f"wrote {len(out)} tensors to {path}")
