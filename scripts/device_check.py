#!/usr/bin/env python3
"""Correctness of unet-gpu on the machine it runs on: every PyTorch fixture (both input sizes)
and u2netp (all 7 outputs), in f32 (rel-L2 <= 1e-4 against onnxruntime) and f16 (<= 1e-2).

    python3 scripts/device_check.py path/to/unet-gpu OUTDIR

Writes OUTDIR/check.json and prints one line per case. Needs numpy."""
import json, os, subprocess, sys, tempfile, time
import numpy as np

B, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fix = os.path.join(root, 'tests', 'fixtures')
cases = []
for name in sorted(os.listdir(fix)):
    d = os.path.join(fix, name)
    if not os.path.isdir(d):
        continue
    for s in ['', '_b']:
        if os.path.exists(os.path.join(d, f'input{s}.npy')):
            cases.append((f'{name}{s}', os.path.join(d, 'model.onnx'), os.path.join(d, f'input{s}.npy'),
                          [os.path.join(d, f'output{s}.npy')]))
u = os.path.join(root, 'tests', 'data', 'u2netp')
outs = sorted(os.listdir(os.path.join(u, 'all_outputs')))
cases.append(('u2netp', os.path.join(u, 'model.onnx'), os.path.join(u, 'input.npy'),
              [os.path.join(u, 'all_outputs', o) for o in outs]))

def rel(a, b):
    a = a.astype(np.float64); b = b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))

results = []
tmp = tempfile.mkdtemp()
# f16 runs three times: on the tensor cores where the adapter has them (coop auto), the same with
# the halo-tile kernels (--halo), and on the scalar kernels
for prec, coop, tol, extra in [('f32', 'auto', 1e-4, []), ('f16', 'auto', 1e-2, []), ('f16', 'auto', 1e-2, ['--halo']),
                               ('f16', 'off', 1e-2, [])]:
    for name, model, x, refs in cases:
        tag = f'{name}_{prec}_{coop}' + ''.join(extra)
        od = os.path.join(tmp, tag)
        st = os.path.join(tmp, tag + '.json')
        t = time.time()
        p = subprocess.run([B, 'run', model, '--input', x, '--all-outputs', od, '--precision', prec, '--coop', coop,
                            '--stats', st] + extra, capture_output=True, text=True, timeout=300)
        r = dict(case=name, precision=prec, coop=coop, options=' '.join(extra), seconds=round(time.time() - t, 2))
        if p.returncode != 0:
            r.update(ok=False, error=p.stderr.strip()[-600:])
        else:
            got = sorted(os.listdir(od))
            errs = [rel(np.load(os.path.join(od, g)), np.load(ref)) for g, ref in zip(got, refs)]
            stats = json.load(open(st))
            r.update(ok=bool(len(got) == len(refs) and max(errs) <= tol), rel_l2=max(errs), tol=tol,
                     gpu_ms=stats.get('gpu_ms'), dispatches=stats.get('dispatches'),
                     concat_copies=stats.get('concat_copies'), uploads=stats.get('uploads'),
                     readbacks=stats.get('readbacks'))
        results.append(r)
        print(json.dumps(r), flush=True)
json.dump(results, open(os.path.join(OUT, 'check.json'), 'w'), indent=1)
bad = [r for r in results if not r['ok']]
print(f'{len(results) - len(bad)} of {len(results)} cases match', flush=True)
