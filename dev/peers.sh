#!/usr/bin/env bash
# The standard work beside the peers in one run, interleaved round by round
# (docs/performance.md; the peers' harnesses are in ../shared/peers): this
# build's `retroprop bench` on the CPU and the GPU (lavapipe here), PyTorch
# on the CPU with the machine's threads, Burn's wgpu and ndarray backends,
# and the machine's float32 GEMM peak (torch.mm 4096³). Each line of
# output is one JSON object; rounds are ROUNDS (default 3).
#
#   dev/peers.sh > /tmp/peers.jsonl
#
# Needs: target/release/retroprop (cargo build --release -p retroprop-cli),
# TORCH_PYTHON (a python with torch, default /tmp/torchvenv/bin/python),
# BURN (the burn_mlp binary, default /tmp/burn_target/release/burn_mlp,
# built as ../shared/peers/README.md says). A missing one is skipped with
# a line on stderr saying how to get it.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$root/../shared/peers}
py=${TORCH_PYTHON:-/tmp/torchvenv/bin/python}
burn=${BURN:-/tmp/burn_target/release/burn_mlp}
rounds=${ROUNDS:-3}
threads=$(nproc)
have_torch=1; "$py" -c 'import torch' 2>/dev/null || { have_torch=0; echo "no torch in $py: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install -r $peers/torch_ref/requirements.txt" >&2; }
have_burn=1; [ -x "$burn" ] || { have_burn=0; echo "no Burn harness at $burn: see $peers/README.md" >&2; }
for round in $(seq "$rounds"); do
  echo "{\"round\": $round, \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
  "$root/target/release/retroprop" bench --devices cpu,gpu --batch 64,1024 --steps "${STEPS:-20}" --json
  if [ $have_torch = 1 ]; then
    "$py" "$peers/torch_ref/bench.py" --threads "$threads" --batches 64 1024 --steps 30
    "$py" "$peers/torch_ref/peak_sgemm.py" torch --threads "$threads" 2>/dev/null | tail -1
  fi
  if [ $have_burn = 1 ]; then
    "$burn" wgpu 64 20; "$burn" wgpu 1024 5
    "$burn" ndarray 64 30; "$burn" ndarray 1024 5
  fi
done
