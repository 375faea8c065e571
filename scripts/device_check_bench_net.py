#!/usr/bin/env python3
"""Check the benchmark network itself on this card: the classic U-Net exported by
torch_unet_baseline.py, run by unet-gpu on the GPU in f32 and f16 (default tiles, tensor cores
where present; f16 with the im2col-packed operand, f16 with the halo-tile kernels) and on the CPU reference, at 1x3xSxS.

    python3 scripts/device_check_bench_net.py path/to/unet-gpu model.onnx [S [OPTION...]] >> check.jsonl

(OPTIONs go to the f16 runs: device-bench.sh's dry run gives `--coop emulate`.)
"""
import json, os, subprocess, sys, tempfile
import numpy as np

B, model = sys.argv[1], sys.argv[2]
S = int(sys.argv[3]) if len(sys.argv) > 3 else 256
F16 = ['--precision', 'f16'] + sys.argv[4:]
tmp = tempfile.mkdtemp()
x = np.random.default_rng(0).standard_normal((1, 3, S, S)).astype(np.float32)
np.save(os.path.join(tmp, 'x.npy'), x)
outs = {}
# (autotuned models are checked by `unet-gpu bench` itself, against the generic kernels)
RUNS = [('cpu', ['--device', 'cpu']), ('f32', []), ('f16', F16), ('f16-im2col', F16 + ['--im2col']),
        ('f16-halo', F16 + ['--halo'])]
for name, args in RUNS:
    y = os.path.join(tmp, name + '.npy')
    p = subprocess.run([B, 'run', model, '--input', os.path.join(tmp, 'x.npy'), '--output', y] + args,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        print(json.dumps(dict(case=os.path.basename(model), run=name, ok=False, error=p.stderr[-400:])))
        continue
    outs[name] = np.load(y).astype(np.float64)
ref = outs.get('cpu')
for name, tol in [('f32', 1e-4), ('f16', 1e-2), ('f16-im2col', 1e-2), ('f16-halo', 1e-2)]:
    if ref is None or name not in outs:
        continue
    e = float(np.linalg.norm(outs[name] - ref) / np.linalg.norm(ref))
    print(json.dumps(dict(case=os.path.basename(model), size=S, precision=name, rel_l2_vs_cpu=e, ok=e <= tol)), flush=True)
