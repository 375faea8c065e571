#!/usr/bin/env bash
# On a lent GPU machine with nothing installed (the development tool's `device` runs), from the
# repository root: unpack the GL/EGL dispatch libraries carried in .gl/ (fetch them on the
# development machine with `cd .gl && apt-get download libegl1 libgl1 libgles2 libglvnd0 libglx0
# libopengl0`), point the Vulkan loader at the NVIDIA driver, and run scripts/device-bench.sh
# with the release binary carried in .devbin/ (`cargo build --release && mkdir -p .devbin &&
# cp target/release/unet-gpu .devbin/ && strip .devbin/unet-gpu`; carry [".gl", ".devbin"]), and
# the GEMM probe's binary beside it where it was built (`cd ../shared/reference/gemm-probe &&
# cargo build --release`, then copy target/release/gemm-probe to .devbin/ and strip it).
# Usage: QUICK=1 bash scripts/device-run.sh OUTDIR   (LIMIT: seconds for the whole bench, 540)
set -u
OUT=${1:?usage: device-run.sh OUTDIR}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
N=/usr/local/nvidia/share
if [ -f $N/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=$N/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=$N/glvnd/egl_vendor.d/10_nvidia.json
fi
export PYTHONUNBUFFERED=1 UNET_GPU_BIN=${UNET_GPU_BIN:-.devbin/unet-gpu}
timeout "${LIMIT:-540}" bash scripts/device-bench.sh "$OUT" 2>&1 | tee "$OUT/log.txt"
# a run cut short at LIMIT still gets its table from what it measured
if [ -s "$OUT/engine.jsonl" ] && [ -s "$OUT/torch.jsonl" ]; then
  python3 scripts/bench_table.py "$OUT/engine.jsonl" "$OUT/torch.jsonl" > "$OUT/table.md" 2>/dev/null || true
fi
if [ -s "$OUT/engine.jsonl" ]; then
  python3 scripts/layer_diff.py "$OUT/engine.jsonl" > "$OUT/layers.md" 2>/dev/null || true
fi
if [ -s "$OUT/probes.jsonl" ] || [ -s "$OUT/torch_layers.jsonl" ]; then
  python3 scripts/probe_table.py "$OUT" > "$OUT/probes.md" 2>/dev/null || true
fi
