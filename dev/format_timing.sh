#!/usr/bin/env bash
# Times reading one table as CSV, Parquet and .npz: `retroprop train
# --steps 1` on each (its wall time is nearly all reading; the program
# reads a file twice when no --loss is given), and checks the three
# models are the same bytes. docs/performance.md, "Reading data files".
#   dev/format_timing.sh [ROWS] [FEATURES]
set -euo pipefail
rows=${1:-200000}
features=${2:-32}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-/work/venv/bin/python}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$python" - "$dir" "$rows" "$features" <<'PY'
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
out, n, f = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.normal(size=(n, f))
y = rng.integers(0, 10, n)
cols = {f"c{i}": x[:, i] for i in range(f)}
cols["label"] = y
pq.write_table(pa.table(cols), f"{out}/t.parquet")
np.savez(f"{out}/t.npz", x=x, y=y)
with open(f"{out}/t.csv", "w") as fh:
    fh.write(",".join(cols) + "\n")
    for i in range(n):
        fh.write(",".join(repr(float(v)) for v in x[i]) + f",{y[i]}\n")
PY
ls -l "$dir"
for round in 1 2 3; do
  for file in t.csv t.parquet t.npz; do
    /usr/bin/time -f "$file: %e s wall, %M KB peak" "$root/target/release/retroprop" train \
      --data "$dir/$file" --steps 1 --device cpu --quiet --save "$dir/$file.safetensors" >/dev/null
  done
done
cmp "$dir/t.csv.safetensors" "$dir/t.parquet.safetensors"
cmp "$dir/t.csv.safetensors" "$dir/t.npz.safetensors"
echo "the three models are the same bytes"
