# Sourced by the dev/device_*.sh scripts on a lent GPU machine: logs to
# $OUT/$1 (and the terminal), installs the Vulkan loader's packages carried
# in .gl/, points the loader at NVIDIA's driver, and says which GPU and
# adapters the run has.
set -u
exec > >(tee "${OUT:-/tmp}/$1") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export XDG_RUNTIME_DIR=/tmp
nvidia-smi -L
./.dev/retroprop devices
