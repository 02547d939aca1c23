#!/usr/bin/env bash
# One run on a lent GPU machine (see docs/performance.md): parity tests, the
# PyTorch step-for-step comparison and the benchmark, with binaries built
# on the development machine and carried in .dev/ (nothing to build there).
set -u
exec > >(tee "${OUT:-/tmp}/device_log.txt") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L
./.dev/retroprop devices
echo "== kernel parity"
timeout 150 ./.dev/gpu_kernels --test-threads 4 2>&1 | grep -E "^test |test result|NOT OK"
echo "== training parity"
timeout 150 ./.dev/gpu_training --nocapture --test-threads 4 2>&1 | grep -E "^test |test result|max parameter|NOT OK"
echo "== PyTorch step for step"
timeout 120 python3 dev/torch_parity.py ./.dev/retroprop cpu gpu
echo "== bench"
timeout 150 ./.dev/retroprop bench --devices gpu,cpu --batch 64,1024 --steps 30
timeout 150 ./.dev/retroprop bench --devices gpu --batch 1024 --steps 30 --full
