#!/usr/bin/env bash
# Split-K, the bias gradient in the weight gradient's product, and the vec4
# double-buffered workgroup-memory kernel (shared-vec4) on a lent GPU, in
# one go (about 6 minutes on an H200): the parity tests with them, then the
# standard work and the wide network at batch 64 to 4096 with the default
# choice beside split-K and the vec4 kernel, then the plain kernels over
# the standard work's shapes. Binaries built on the development machine
# and carried in .dev/ (nothing to build there):
#   cargo build --release --workspace --all-targets --examples
#   mkdir -p .dev && cp target/release/retroprop target/release/examples/matmul_shapes .dev/
#   for t in gpu_kernels split_k gpu_training backend_seam; do
#     cp $(ls -t target/release/deps/$t-* | grep -v '\.d$' | head -1) .dev/$t; done
# and the program as it was before them (main at 1839ac5) as .dev/retroprop-before:
#   git worktree add /tmp/before 1839ac5 && (cd /tmp/before && cargo build --release -p retroprop-cli)
#   cp /tmp/before/target/release/retroprop .dev/retroprop-before
# The Vulkan loader's packages in .gl/ (as dev/device_check.sh).
# What to read: split-K pays where `+split` rows beat the default at batch
# 64 and 256 (products of 16 to 64 tiles for 132 SMs); if they do, make
# it the hardware default in MatmulChoice::default_for (src/gpu/tiling.rs)
# with the measured MIN_K, and record the rows in docs/performance.md.
. dev/device_env.sh device_splitk.txt
echo "== parity: every kernel, split or not (split_k forces split-K itself)"
for t in gpu_kernels split_k gpu_training backend_seam; do
  echo "-- $t"
  timeout 120 ./.dev/$t --test-threads 4 2>&1 | grep -E "^test |test result|NOT OK|FAILED"
done
echo "== parity of training with split-K and the vec4 kernel as the choice"
for m in shared-by-shape+split shared-vec4+split:132:64; do
  echo "-- RETROPROP_MATMUL=$m"
  RETROPROP_MATMUL=$m timeout 60 ./.dev/gpu_training --test-threads 4 2>&1 | grep -E "test result|NOT OK|FAILED"
done
echo "== bench (20 timed steps; two rounds, interleaved)"
for round in 1 2; do
  for arch in 784,1024,1024,10 784,4096,4096,10; do
    batches=64,256,1024,4096; [ $arch = 784,4096,4096,10 ] && batches=64,256,1024
    if [ -x ./.dev/retroprop-before ]; then
      echo "-- round $round, $arch, before (1839ac5), default"
      unset RETROPROP_MATMUL
      timeout 60 ./.dev/retroprop-before bench --devices gpu --arch $arch --batch $batches --steps 20 | grep gpu:
    fi
    for m in default shared-by-shape+split shared-by-shape+split:132:128 shared-by-shape+split:264:64 \
             shared-vec4 shared-vec4+split shared-vec4:16x16x8x8x8; do
      echo "-- round $round, $arch, RETROPROP_MATMUL=$m"
      if [ $m = default ]; then unset RETROPROP_MATMUL; else export RETROPROP_MATMUL=$m; fi
      timeout 60 ./.dev/retroprop bench --devices gpu --arch $arch --batch $batches --steps 20 | grep gpu:
    done
  done
done
unset RETROPROP_MATMUL
echo "== plain kernels over the standard work's shapes (GFLOP/s; no split-K here)"
for t in shared shared-vec4 shared-vec4:16x16x8x8x8 shared-vec4:16x16x8x8x16 shared-vec4:16x8x8x8x8; do
  echo "-- $t"
  RETROPROP_MATMUL=$t timeout 40 ./.dev/matmul_shapes
done
