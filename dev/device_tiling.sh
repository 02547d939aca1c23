#!/usr/bin/env bash
# The per-shape tiling on a lent GPU: the parity tests, then the standard
# work and a wide network with the default choice (shared-by-shape) beside
# each tiling alone. Binaries built here and carried in .dev/ (see
# dev/device_check.sh for how), the Vulkan loader's packages in .gl/.
set -u
exec > >(tee "${OUT:-/tmp}/device_tiling.txt") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export XDG_RUNTIME_DIR=/tmp
for t in gpu_kernels gpu_training backend_seam; do
  echo "== $t"
  timeout 100 ./.dev/$t --test-threads 4 2>&1 | grep -E "test result|NOT OK|FAILED"
done
./.dev/retroprop devices
for arch in 784,1024,1024,10 784,4096,4096,10; do
  for m in default shared shared:16x16x8x8x16; do
    echo "-- $arch, RETROPROP_MATMUL=$m"
    if [ $m = default ]; then unset RETROPROP_MATMUL; else export RETROPROP_MATMUL=$m; fi
    batches=64,256,1024,4096; [ $arch = 784,4096,4096,10 ] && batches=256,1024,4096
    timeout 90 ./.dev/retroprop bench --devices gpu --arch $arch --batch $batches --steps 20 | grep gpu:
  done
done
unset RETROPROP_MATMUL
