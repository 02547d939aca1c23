#!/usr/bin/env bash
# One run on a lent GPU machine (see docs/performance.md): the GPU parity
# tests, the backend seam's tests, the benchmark, and a sweep of the shared
# matmul's tilings over the standard work's shapes (the data for choosing a
# tiling per shape), with binaries built on the development machine and
# carried in .dev/ (nothing to build there):
#   cargo build --release --workspace --all-targets --examples
#   mkdir -p .dev && cp target/release/retroprop target/release/examples/matmul_shapes .dev/
#   for t in gpu_kernels gpu_training backend_seam; do
#     cp $(ls -t target/release/deps/$t-* | grep -v '\.d$' | head -1) .dev/$t; done
. dev/device_env.sh device_log.txt
echo "== kernel parity"
timeout 100 ./.dev/gpu_kernels --test-threads 4 2>&1 | grep -E "^test |test result|NOT OK"
echo "== training parity"
timeout 100 ./.dev/gpu_training --nocapture --test-threads 4 2>&1 | grep -E "^test |test result|max parameter|NOT OK"
echo "== backend seam"
timeout 60 ./.dev/backend_seam --test-threads 4 2>&1 | grep -E "^test |test result|NOT OK"
echo "== bench: the default choice (shared-by-shape), then each tiling alone and other thresholds"
timeout 60 ./.dev/retroprop bench --devices gpu --batch 64,256,1024 --steps 30
for m in shared shared:16x16x8x8x16 shared-by-shape:32 shared-by-shape:64 shared-by-shape:256; do
  echo "-- RETROPROP_MATMUL=$m"
  RETROPROP_MATMUL=$m timeout 60 ./.dev/retroprop bench --devices gpu --batch 64,256,1024 --steps 30
done
echo "== tiling sweep over the standard work's shapes (RETROPROP_MATMUL=shared:WGxxWGyxRMxRNxTK)"
for t in 16x16x4x4x16 16x16x8x8x16 16x16x8x8x8 16x8x8x8x8 16x16x8x4x8 8x8x4x4x16; do
  echo "-- shared:$t"
  RETROPROP_MATMUL=shared:$t timeout 40 ./.dev/matmul_shapes
done
