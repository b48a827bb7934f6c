#!/usr/bin/env bash
# The WebGPU EP on a lent GPU machine (issue #23): one command, under 8 minutes. It installs the carried
# plugin wheel, brings Debian's Vulkan loader when the machine has none, points Vulkan at NVIDIA's
# driver, and runs benchmarks/webgpu_latency.py (WebGPU at batch 1, 8, 32 after 100 warm-up runs, the CPU
# EP on all cores side by side, node placement, adapter, agreement on the 16 sample images). Results go
# to $OUT/webgpu/ (copy them into benchmarks/results/webgpu-<gpu>-<date>/).
#
# Prepare once, here (both folders are git-ignored):
#   mkdir -p .whl .gl
#   pip download --no-deps -d .whl onnxruntime-ep-webgpu==0.4.0
#   (cd .gl && apt-get download libvulkan1)
# Then: device run with carry [".whl", ".gl"] and the command: bash benchmarks/webgpu_device.sh
# Dry run on a machine without a GPU (SwiftShader, small counts):
#   WEBGPU_DEVICE=software WEBGPU_ARGS="--batches 1,2 --warmup 1 --runs 2 --images 4" \
#     VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json PYTHON=.venv-runtime/bin/python \
#     bash benchmarks/webgpu_device.sh   (PYTHON: an interpreter with onnxruntime >= 1.24.4)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT/webgpu"
log="$OUT/webgpu/webgpu_device.log"
exec > >(tee "$log") 2>&1
echo "== $(date -u +%FT%TZ) $(uname -m); $(nproc) cores; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
site=$(mktemp -d)
"${PYTHON:=python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/onnxruntime_ep_webgpu-*.whl
export PYTHONPATH="$site:$PWD/runtime:$PWD/benchmarks"
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    echo "== no Vulkan loader: unpacking the carried libvulkan1"
    for f in .gl/libvulkan1_*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    icd=$(find /usr/local/nvidia /usr/share/vulkan /etc/vulkan /usr/lib/x86_64-linux-gnu -name nvidia_icd.json 2>/dev/null | head -1 || true)
    if [ -n "$icd" ]; then export VK_DRIVER_FILES="$icd"; echo "== VK_DRIVER_FILES=$icd"; fi
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
"$PYTHON" -c "import onnxruntime as o; print('== onnxruntime', o.__version__)"
# shellcheck disable=SC2086
PYTHONUNBUFFERED=1 timeout 420 "$PYTHON" benchmarks/webgpu_latency.py --device "${WEBGPU_DEVICE:-gpu}" \
    --json "$OUT/webgpu/webgpu_latency.json" ${WEBGPU_ARGS:-}
echo "== done: $OUT/webgpu"
