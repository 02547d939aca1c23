#!/usr/bin/env bash
# One epoch streamed from a Parquet file larger than the memory it may
# use, against the same rows held in memory, and under mpirun -np 2:
# wall time, samples/s and each process's peak resident memory
# (/usr/bin/time's maximum RSS). docs/performance.md and docs/scaling.md,
# "Streaming from a file larger than memory".
#
#   dev/stream_measure.sh [ROWS] [HELD_ROWS] [GROUP_ROWS]
#
# ROWS rows (default 16 500 000: 4.3 GB) of 64 float32 features and an
# int64 class of 10 are written by pyarrow (Snappy, row groups of
# GROUP_ROWS, default 8192) to a scratch folder, which is removed at the
# end; HELD_ROWS (default 4 194 304) are the first rows of the same
# table in a file of their own, small enough to train held in memory and
# streamed alike, and again in pyarrow's default row groups (2^20 rows,
# larger than a chunk). HOLD_BIG=1 also trains the ROWS rows held in
# memory (about 5 GB at the default). ROUNDS (default 2) is how many
# times each comparison runs, interleaved; MPI=0 leaves out the mpirun
# runs. Each run trains 64-256-256-10 with Adam at batch 1024
# on the CPU for one epoch, in the default shuffle window (2^20 rows in
# chunks of 8192). Needs the program built (`cargo build --release`;
# with `--features mpi` for the mpirun runs, skipped without mpirun) and
# /work/venv's pyarrow (or PYTHON=...). SCRATCH=dir puts the files there;
# RETROPROP=path runs another build of the program.
set -euo pipefail
rows=${1:-16500000}
held_rows=${2:-4194304}
group=${3:-8192}
root=$(cd "$(dirname "$0")/.." && pwd)
exe=${RETROPROP:-$root/target/release/retroprop}
python=${PYTHON:-/work/venv/bin/python}
dir=$(mktemp -d "${SCRATCH:-${TMPDIR:-/tmp}}/stream-measure.XXXXXX")
trap 'rm -rf "$dir"' EXIT

"$python" - "$dir" "$rows" "$held_rows" "$group" <<'PY'
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
out, n, held, group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
features = 64
rng = np.random.default_rng(0)
w = rng.normal(size=(features, 10)).astype(np.float32)
schema = pa.schema([(f"x{i}", pa.float32()) for i in range(features)] + [("label", pa.int64())])
big = pq.ParquetWriter(f"{out}/big.parquet", schema)
small = pq.ParquetWriter(f"{out}/small.parquet", schema)
# The same rows in pyarrow's default row groups (2^20 rows).
grouped = pq.ParquetWriter(f"{out}/small-groups.parquet", schema)
# Written a block of rows at a time: the generator holds one block.
block = 1 << 20
for start in range(0, n, block):
    m = min(block, n - start)
    x = rng.normal(size=(m, features)).astype(np.float32)
    label = np.argmax(x @ w + rng.normal(scale=2.0, size=(m, 10)), axis=1).astype(np.int64)
    table = pa.table([pa.array(x[:, i]) for i in range(features)] + [pa.array(label)], schema=schema)
    big.write_table(table, row_group_size=group)
    if start < held:
        small.write_table(table.slice(0, min(m, held - start)), row_group_size=group)
        grouped.write_table(table.slice(0, min(m, held - start)))
big.close()
small.close()
grouped.close()
PY
ls -l "$dir"
df -h "$dir" | tail -1

# One epoch of FILE (then extra flags): the wall time (reading, the
# epoch, and the summary's pass over the rows for the training accuracy),
# the CPU time of all the process's threads (user + system: what reading
# adds, whatever else the machine runs), the epoch's steps alone (the
# summary's "steps in S s") and their samples/s, and the peak resident
# memory.
epoch() {
  local name=$1 file=$2 n=$3
  shift 3
  local log="$dir/$name.time"
  /usr/bin/time -f "%e %U %S %M" -o "$log" "$exe" train --data "$file" --arch 64,256,256,10 \
    --optimizer adam --lr 0.001 --batch-size 1024 --epochs 1 --device cpu --quiet \
    --save "$dir/$name.safetensors" "$@" >"$dir/$name.out"
  read -r wall user system peak_kb <"$log"
  steps=$(sed -n 's/.* steps in \([0-9.]*\) s .*/\1/p' "$dir/$name.out")
  awk -v name="$name" -v n="$n" -v wall="$wall" -v user="$user" -v sys="$system" \
    -v steps="$steps" -v kb="$peak_kb" 'BEGIN {
    printf "%-22s %8d rows  wall %6.1f s  cpu %6.1f s  steps %6.1f s  %6.0f samples/s  peak %5.0f MB\n",
      name, n, wall, user + sys, steps, n / steps, kb / 1024 }'
}

rounds=${ROUNDS:-2}
echo "--- the same $held_rows rows: held, then streamed ($rounds rounds, interleaved)"
for round in $(seq "$rounds"); do
  epoch "held-$round" "$dir/small.parquet" "$held_rows"
  epoch "streamed-small-$round" "$dir/small.parquet" "$held_rows" --stream
  cmp "$dir/held-$round.safetensors" "$dir/streamed-small-$round.safetensors"
done
echo "held and streamed saved the same model bytes"

echo "--- the same rows in row groups of 2^20 rows (a chunk reads a part of a group)"
epoch streamed-small-groups "$dir/small-groups.parquet" "$held_rows" --stream
cmp "$dir/held-1.safetensors" "$dir/streamed-small-groups.safetensors"

echo "--- $rows rows ($(du -h "$dir/big.parquet" | cut -f1)) streamed${HOLD_BIG:+, and held}"
for round in $(seq "$rounds"); do
  epoch "streamed-big-$round" "$dir/big.parquet" "$rows" --stream
  if [ "${HOLD_BIG:-0}" = 1 ]; then
    epoch "held-big-$round" "$dir/big.parquet" "$rows"
    cmp "$dir/held-big-$round.safetensors" "$dir/streamed-big-$round.safetensors"
    echo "held and streamed saved the same model bytes"
  fi
done

echo "--- evaluate --stream, a part of 8192 rows at a time: what a process holds besides"
for file in small big; do
  /usr/bin/time -f "$file.parquet: %e s wall, peak %M KB" "$exe" evaluate \
    --model "$dir/streamed-small-1.safetensors" --data "$dir/$file.parquet" --device cpu \
    --stream
done

if [ "${MPI:-1}" = 1 ] && command -v mpirun >/dev/null; then
  # Each rank on one thread, and one process on one thread beside them.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  echo "--- one process, one thread, the $rows rows streamed"
  RAYON_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 epoch one-thread-big "$dir/big.parquet" "$rows" --stream
  echo "--- mpirun -np 2 (the program built with --features mpi), one thread a rank"
  /usr/bin/time -f "mpirun -np 2: %e s wall" mpirun --oversubscribe -np 2 \
    -x RAYON_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
    sh -c '/usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$dir/rank" "$exe" train \
    --data "$dir/big.parquet" --arch 64,256,256,10 --optimizer adam --lr 0.001 \
    --batch-size 1024 --epochs 1 --device cpu --quiet --save "$dir/mpi.safetensors" \
    --stream >"$dir/mpi.out"
  cat "$dir/mpi.out"
  for rank in 0 1; do
    echo "rank $rank peak $(($(cat "$dir/rank.$rank") / 1024)) MB"
  done
fi
