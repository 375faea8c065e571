#!/usr/bin/env bash
# Run the tensor-core tiles that need 48 KiB of workgroup memory (the H200's limit; 128x128,
# and 128x64 with the gather) on Mesa lavapipe, through their scalar emulation.
#
# lavapipe reports 32 KiB (maxComputeSharedMemorySize), so wgpu refuses those kernels and the
# engine falls back to smaller tiles there. llvmpipe itself allocates whatever workgroup memory
# a shader declares (it reallocates its per-thread block to the shader's size at each
# dispatch), so the only obstacle is the reported limit. This script builds the tests against a
# copy of the locked wgpu-hal whose Vulkan backend reports at least 48 KiB, in a target folder
# of its own (target/lavapipe-48k), and runs:
#   - gpu_kernels' ignored test `tensor_core_tiles_needing_48k` (every loader on those tiles);
#   - with ALL=1, also the whole gpu_kernels and gpu_models suites under the 48 KiB limit, so
#     that the cost model picks the tiles it picks on the H200 (its f16 choices then reach the
#     emulation);
#   - with BIN=1, nothing: it builds the unet-gpu binary instead
#     (target/lavapipe-48k/release/unet-gpu), which with `--coop emulate` runs the H200's kernel
#     choices; `UNET_GPU_BIN=target/lavapipe-48k/release/unet-gpu DRY=1 QUICK=1
#     scripts/device-bench.sh OUT` runs a device run's every step that way.
# Nothing in the repository changes (Cargo.lock, which the patch rewrites, is restored on
# exit). Tens of minutes with an empty Mesa shader cache; not part of .ci/run.
#
# Usage: scripts/lavapipe-48k.sh            (ALL=1 ...: the whole suites; BIN=1 ...: the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export CARGO_TARGET_DIR="$PWD/target/lavapipe-48k"
mkdir -p "$CARGO_TARGET_DIR"
cp Cargo.lock "$CARGO_TARGET_DIR/Cargo.lock.orig"
trap 'cp "$CARGO_TARGET_DIR/Cargo.lock.orig" Cargo.lock' EXIT

# the locked wgpu-hal's sources from cargo's registry, patched once and kept in the target
# folder with their timestamps (later runs do not rebuild wgpu)
version="$(sed -n '/^name = "wgpu-hal"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)"
patched="$CARGO_TARGET_DIR/wgpu-hal-$version"
line='max_compute_workgroup_storage_size: limits.max_compute_shared_memory_size,'
if [ ! -d "$patched" ]; then
    registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
    hal="$(ls -d "$registry"/*/"wgpu-hal-$version" 2>/dev/null | head -1 || true)"
    if [ -z "$hal" ]; then
        cargo fetch --locked
        hal="$(ls -d "$registry"/*/"wgpu-hal-$version" | head -1)"
    fi
    if [ "$(grep -c -F "$line" "$hal/src/vulkan/adapter.rs")" != 1 ]; then
        echo "lavapipe-48k: expected one line '$line' in $hal/src/vulkan/adapter.rs (wgpu-hal changed?)" >&2
        exit 1
    fi
    rm -rf "$patched.tmp"
    cp -a "$hal" "$patched.tmp"
    sed -i "s/$line/max_compute_workgroup_storage_size: limits.max_compute_shared_memory_size.max(49152),/" \
        "$patched.tmp/src/vulkan/adapter.rs"
    mv "$patched.tmp" "$patched"
fi

patch=(--config "patch.crates-io.wgpu-hal.path=\"$patched\"")
if [ "${BIN:-0}" = 1 ]; then
    cargo build --release "${patch[@]}" --bin unet-gpu
    echo "$CARGO_TARGET_DIR/release/unet-gpu"
    exit 0
fi
cargo test --release "${patch[@]}" --test gpu_kernels -- --ignored tensor_core_tiles_needing_48k
if [ "${ALL:-0}" = 1 ]; then
    cargo test --release "${patch[@]}" --no-fail-fast --test gpu_kernels --test gpu_models
fi
