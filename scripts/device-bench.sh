#!/usr/bin/env bash
# Everything unet-gpu measures on a GPU machine, in one go, from the repository root:
#  1. the adapter; 2. correctness of every fixture and u2netp in f32 and f16 on this card;
#  3. `unet-gpu bench` and PyTorch/cuDNN (scripts/torch_unet_baseline.py: the same network,
#     exported by that script) at base 64 and 16, 512^2 and 1024^2, batch 1 and 8;
#  4. one comparison table (scripts/bench_table.py), and per layer, each f16 run against the
#     default kernels and the fastest run of each layer (scripts/layer_diff.py: layers.md).
# Usage: scripts/device-bench.sh [OUTDIR]   (UNET_GPU_BIN overrides the binary; GEMM_PROBE names
# the GEMM probe's binary, default .devbin/gemm-probe, built from ../shared/reference/gemm-probe:
# its kernels are timed beside the engine's where it is there). QUICK=1 runs only the base 64
# and 16 networks at 1x3x512x512 (cost model, halo tiles, narrow tensor-core epilogue, halo with
# A streamed, row loads off or as quads, thin kernel off or for every conv, autotuned), the probe shapes
# (scripts/probe_nets.py: engine with its own and forced tiles, GEMM probe and cuDNN per shape,
# probes.md), their check
# against the CPU reference, and then the fixtures and u2netp; QUICK=targets: only the four
# target configurations with the cost model's kernels (f16 also with --halo), the baseline, and
# the checks; GRID=1 with QUICK adds batch 8 and 1024^2 for both, as the full run, which also
# compares split-K off, tap-major off and im2col.
# DRY=1 (with any mode): the same steps on any Vulkan adapter, lavapipe included, to check this
# script, the binary's options and the table scripts before spending device time: the networks
# at 32x32 (64x64 for the 1024^2 rows), 2 iterations, the probe shapes made small, the
# tensor-core kernels through their scalar emulation (--coop emulate), and no PyTorch timing (it
# needs CUDA); the exports still need torch. Its times mean nothing. Of the autotuning it runs
# base 16 in f32 only. Slow all the same: each emulated kernel costs LLVM seconds to compile
# (2026-11-28, 2 cores, cold Mesa cache, beside the test suite: 5 min for the network checks,
# 19 for the target configurations, 50 for the A/B runs).
set -u
OUT=${1:-${OUT:-device-out}}
mkdir -p "$OUT"
B=${UNET_GPU_BIN:-target/release/unet-gpu}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
DRY=${DRY:-}
# a command's time limit in seconds: four times longer in a dry run (lavapipe is slow)
limit() { if [ -n "$DRY" ]; then echo $(( $1 * 4 )); else echo "$1"; fi; }
# the bench options a dry run adds or changes: --iters 2, and --coop emulate unless given
dry_args() {
  local out=() prev='' coop=''
  for a in "$@"; do
    if [ "$prev" = --iters ]; then a=2; fi
    [ "$a" = --coop ] && coop=1
    out+=("$a"); prev=$a
  done
  [ -z "$coop" ] && out+=(--coop emulate)
  echo "${out[@]}"
}
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$B" devices 2>&1
} | tee "$OUT/env.txt"

for base in 64 16; do
  python3 scripts/torch_unet_baseline.py --base $base --size 512 --export /tmp/unet$base.onnx >/dev/null 2>&1 || echo "export base $base failed"
done

: > "$OUT/engine.jsonl"
run_bench() {
  local base=$1 size=$2 batch=$3 prec=$4; shift 4
  local line
  if [ -n "$DRY" ]; then
    if [ "$size" = 512 ]; then size=32; else size=64; fi
    set -- $(dry_args "$@")
  fi
  line=$(timeout $(limit 180) "$B" bench /tmp/unet$base.onnx --size ${size}x$size --batch $batch --precision $prec "$@" 2>&1 | tail -1)
  if [[ "$line" != "{"* ]]; then
    line=$(python3 -c 'import json,sys; print(json.dumps(dict(model=sys.argv[1], input=sys.argv[2], precision=sys.argv[3], error=sys.argv[4])))' \
      "/tmp/unet$base.onnx" "[$batch, 3, $size, $size]" "$prec" "$line")
  fi
  echo "$line" >> "$OUT/engine.jsonl"
  echo "$line" | cut -c1-400
}

# one `unet-gpu bench` of a probe shape (scripts/probe_nets.py) into probes.jsonl:
# run_probe TIMEOUT NAME PRECISION [OPTIONS...]
run_probe() {
  local limit=$1 n=$2 prec=$3; shift 3
  local line
  [ -n "$DRY" ] && set -- $(dry_args --iters 2 "$@")
  line=$(timeout "$(limit $limit)" "$B" bench /tmp/probes/$n.onnx --iters 10 --precision $prec "$@" 2>&1 | tail -1)
  python3 -c 'import json,sys; n,p,a,l=sys.argv[1:5]
try: r=json.loads(l)
except Exception: r=dict(error=l)
print(json.dumps(dict(probe=n, precision=p, args=a, result=r)))' "$n" "$prec" "$*" "$line" >> "$OUT/probes.jsonl"
  tail -1 "$OUT/probes.jsonl" | cut -c1-300
}

stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
stamp "the benchmark networks against the CPU reference"
for base in 64 16; do
  timeout $(limit 120) python3 scripts/device_check_bench_net.py "$B" /tmp/unet$base.onnx ${DRY:+32 --coop emulate} | tee -a "$OUT/check_bench_net.jsonl"
done

stamp "unet-gpu bench: the target configurations"
run_bench 64 512 1 f32 --iters 20
run_bench 64 512 1 f16 --iters 20
run_bench 64 512 1 f16 --iters 20 --halo
run_bench 16 512 1 f16 --iters 30
run_bench 16 512 1 f16 --iters 30 --halo
run_bench 16 512 1 f32 --iters 30 --cpu-reference
# the baseline of the same run right after the targets, so that a run cut short has them both
stamp "PyTorch / cuDNN"
: > "$OUT/torch.jsonl"
if [ -n "${QUICK:-}" ] && [ -z "${GRID:-}" ]; then SIZES="512"; BATCHES="1"; else SIZES="512 1024"; BATCHES="1 8"; fi
[ -n "$DRY" ] && echo "(dry run: no PyTorch timing)" && BATCHES=''
[ -n "$BATCHES" ] && timeout $(limit 150) python3 scripts/torch_unet_baseline.py --base 64 --size $SIZES --batch $BATCHES --iters 20 2>&1 | grep '^{' | tee -a "$OUT/torch.jsonl" | cut -c1-300
[ -n "$BATCHES" ] && timeout $(limit 60) python3 scripts/torch_unet_baseline.py --base 16 --size $SIZES --batch $BATCHES --iters 20 2>&1 | grep '^{' | tee -a "$OUT/torch.jsonl" | cut -c1-300

if [ -z "${QUICK:-}" ]; then
  stamp "unet-gpu bench: split-K off, tap-major off, im2col, to compare in the same run"
  run_bench 64 512 1 f32 --iters 10 --no-layers --split-k off
  run_bench 64 512 1 f32 --iters 10 --no-layers --tap-major off
  run_bench 64 512 1 f16 --iters 10 --no-layers --split-k off
  run_bench 64 512 1 f16 --iters 10 --no-layers --tap-major off
  run_bench 64 512 1 f16 --iters 20 --im2col
  run_bench 16 512 1 f16 --iters 20 --no-layers --split-k off
  run_bench 16 512 1 f16 --iters 20 --no-layers --im2col
fi
if [ "${QUICK:-}" != targets ]; then
  # (with per-layer times from here on, for layers.md)
  # the tensor-core epilogue one fragment per round, as up to run 7 (default: as many as fit)
  run_bench 64 512 1 f16 --iters 20 --wide-epilogue off
  run_bench 16 512 1 f16 --iters 30 --wide-epilogue off
  # halo tiles streaming A tap by tap (default with --halo: all taps resident where they fit)
  run_bench 64 512 1 f16 --iters 20 --halo --halo-resident off
  # tensor-core gathers one f16 per load, as up to run 7 (default: runs of 16 pixels as vectors)
  run_bench 64 512 1 f16 --iters 20 --row-loads off
  run_bench 16 512 1 f16 --iters 30 --row-loads off
  # quads of 4 pixels per invocation where the channels are a multiple of 32, consecutive
  # invocations reading consecutive quads as the GEMM probe's B loader does (default: runs of 16)
  run_bench 64 512 1 f16 --iters 20 --row-loads quads
  run_bench 16 512 1 f16 --iters 30 --row-loads quads
  # the first conv, the head and short-K transposed convs on GEMM tiles, as up to run 7
  # (default: the thin kernel)
  run_bench 64 512 1 f16 --iters 20 --thin off
  run_bench 16 512 1 f16 --iters 30 --thin off
  # every conv on the thin kernel (default: the head and short-K convs only); base 16's
  # 16-channel 512^2 layers are the question
  run_bench 16 512 1 f16 --iters 30 --thin all
  run_bench 16 512 1 f32 --iters 30 --thin all
fi

stamp "correctness of the fixtures and u2netp on this card"
timeout $(limit 150) python3 scripts/device_check.py "$B" "$OUT" 2>&1 | grep -v '"ok": true' | tail -40

# after the baseline and the checks, so that a run cut short still has its comparison and
# its correctness
if [ "${QUICK:-}" != targets ]; then
  stamp "autotuned (every kernel shape timed per conv first, each checked against the generic kernels)"
  # (f32 base 64 is within its target: autotuned in full runs only)
  [ -z "${QUICK:-}" ] && run_bench 64 512 1 f32 --iters 20 --autotune --tune-cache "$OUT/tune-cache.json"
  # (a dry run autotunes base 16 in f32 only: every emulated tensor-core candidate would cost
  # lavapipe seconds of compiling)
  [ -z "$DRY" ] && run_bench 64 512 1 f16 --iters 20 --autotune --tune-cache "$OUT/tune-cache.json"
  [ -z "$DRY" ] && run_bench 16 512 1 f16 --iters 30 --autotune --tune-cache "$OUT/tune-cache.json"
  run_bench 16 512 1 f32 --iters 30 --autotune --tune-cache "$OUT/tune-cache.json" --no-layers
fi

# last in a QUICK run: the diagnostics (a run cut short loses these first)
# the probe shapes (scripts/probe_nets.py): one conv each, large enough to fill the GPU many
# times over, timed here, autotuned (every tile timed on them), against the GEMM probe's own
# kernels on the same card (when its binary was carried as $GEMM_PROBE, default
# .devbin/gemm-probe) and against cuDNN per shape (with every U-Net layer's shape)
if [ "${QUICK:-}" != targets ]; then
  stamp "probe shapes"
  timeout $(limit 60) python3 scripts/probe_nets.py --export /tmp/probes ${DRY:+--small} 2>&1 | tail -3
  : > "$OUT/probes.jsonl"
  # (the four-subgroup tiles 64x128 and 128x64, never timed, are forced here so that a run cut
  # short before the probes' autotuning still times them)
  for run in "gemm4096 f16" "gemm4096 f16 --row-loads quads" "gemm4096 f32" \
      "conv512 f16" "conv512 f16 --row-loads quads" "conv512 f16 --row-loads off" \
      "conv64 f16" "conv64 f16 --row-loads quads" "conv64 f16 --row-loads off" \
      "gemm4096 f16 --tile 64x128 --slices 1" "conv512 f16 --tile 64x128 --slices 1" \
      "conv512 f16 --tile 128x64 --slices 1" "conv64 f16 --tile 64x128 --slices 1" \
      "occ132 f16 --tile 128x128 --slices 1" \
      "occ264 f16 --tile 128x128 --slices 1" "occ396 f16 --tile 128x128 --slices 1"; do
    run_probe 60 $run
  done
  GP=${GEMM_PROBE:-.devbin/gemm-probe}
  if [ -x "$GP" ]; then
    timeout $(limit 60) "$GP" 4096 --runs 10 --no-coop-check --max-seconds 50 \
      --kernel coop_sms_128x128_w64x32_k32,coop_smv_64x64_w32x32_k32,f32_rb128x128_t8x8_k8 \
      > "$OUT/gemm-probe.txt" 2>&1
    grep '^RESULT' "$OUT/gemm-probe.txt"
  fi
  stamp "probe shapes autotuned (every tile timed on each)"
  if [ -z "$DRY" ]; then
    for n in gemm4096 conv512 conv64; do
      run_probe 90 $n f16 --autotune
    done
  fi
  stamp "cuDNN per probe shape and per U-Net layer"
  [ -z "$DRY" ] && timeout $(limit 120) python3 scripts/probe_nets.py --time --iters 30 ${QUICK:+--nets 64} 2>&1 | grep '^{' > "$OUT/torch_layers.jsonl"
  [ -f "$OUT/torch_layers.jsonl" ] && wc -l "$OUT/torch_layers.jsonl"
fi

if [ -n "${QUICK:-}" ] && [ -z "${GRID:-}" ]; then
  stamp "table"
  python3 scripts/bench_table.py "$OUT/engine.jsonl" "$OUT/torch.jsonl" | tee "$OUT/table.md"
  python3 scripts/layer_diff.py "$OUT/engine.jsonl" > "$OUT/layers.md"
  python3 scripts/probe_table.py "$OUT" > "$OUT/probes.md"
  exit 0
fi

stamp "unet-gpu bench: the rest of the grid"
if [ -z "${QUICK:-}" ]; then
  run_bench 64 512 1 f16 --iters 10 --coop off --no-layers
  run_bench 16 512 1 f32 --iters 10 --no-layers --split-k off
fi
# cheapest first, so that a run cut short at its time limit keeps the most rows
for base in 16 64; do
  for prec in f32 f16; do
    run_bench $base 512 8 $prec --iters 6 --no-layers
    run_bench $base 1024 1 $prec --iters 6 --no-layers
    run_bench $base 1024 8 $prec --iters 4 --no-layers
  done
done

stamp "table"
python3 scripts/bench_table.py "$OUT/engine.jsonl" "$OUT/torch.jsonl" | tee "$OUT/table.md"
python3 scripts/layer_diff.py "$OUT/engine.jsonl" > "$OUT/layers.md"
python3 scripts/probe_table.py "$OUT" > "$OUT/probes.md"
