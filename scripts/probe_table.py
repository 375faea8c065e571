#!/usr/bin/env python3
"""The engine's convs against cuDNN and the GEMM probe, shape by shape, from one device run.

    python3 scripts/probe_table.py OUTDIR > OUTDIR/probes.md

Reads what scripts/device-bench.sh wrote in OUTDIR: probes.jsonl (`unet-gpu bench` on the probe
shapes of scripts/probe_nets.py), gemm-probe.txt (the GEMM probe's kernels, N=4096, when its binary
was carried), torch_layers.jsonl (cuDNN per shape: `probe_nets.py --time`) and engine.jsonl (the
default runs' per-layer times). Prints
  1. each probe shape: the engine's kernel and TFLOP/s (cost model; autotuned, with the five
     fastest kernels autotuning timed), cuDNN FP16 NCHW / channels-last / FP32, and the probe;
  2. every autotuning candidate rejected (results that differ from the generic kernels, or a
     failure), from the probe runs and the networks' runs;
  3. each layer of the U-Nets in f16 (the default run, batch 1, 512x512): the engine's time
     against cuDNN FP16 NCHW and channels-last for the same layer shape, sorted by time lost,
     with each layer's floor (its bytes at the H200's bandwidth or its FLOPs at the probe's rate).
"""
import json, os, re, sys
from bench_table import variant


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    out = []
    for l in open(path):
        l = l.strip()
        if l.startswith('{'):
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
    return out


def tflops(gflop, ms):
    return gflop / ms if ms and ms > 0 else float('nan')


def probes(d):
    runs = read_jsonl(os.path.join(d, 'probes.jsonl'))
    torch = {t['node']: t for t in read_jsonl(os.path.join(d, 'torch_layers.jsonl')) if t.get('net') == 'probe'}
    if not runs:
        return
    print('## Probe shapes (one conv + ReLU each, batch 1)\n')
    print('| shape | GFLOP | engine | kernel | ms | TFLOP/s | cuDNN FP16 / CL / FP32 TFLOP/s |')
    print('|---|---|---|---|---|---|---|')
    tops = []
    for r in runs:
        res = r.get('result') or {}
        name = r['probe']
        t = torch.get(name, {})
        ct = '/'.join(f"{t.get(k, float('nan')):.1f}" for k in ('fp16_tflops', 'fp16_cl_tflops', 'fp32_tflops')) if t else ''
        args = r.get('args', '').replace('--autotune', 'autotuned').replace('--', '').strip()
        how = r['precision'] + (', ' + args if args else '')
        if 'error' in res or 'gpu_ms_median' not in res:
            print(f"| {name} | | {how} | error: {str(res.get('error', res))[:120]} | | | {ct} |")
            continue
        layers = res.get('layers') or []
        conv = max(layers, key=lambda l: l.get('ms', 0)) if layers else {}
        kernel = conv.get('kernel', '?')
        if len(layers) > 1:
            kernel += f" (+{len(layers) - 1} dispatches)"
        ms = res['gpu_ms_median']
        print(f"| {name} | {res['gflop']:.4g} | {how} | {kernel} | {ms:.3f} | {tflops(res['gflop'], ms):.1f} | {ct} |")
        tune = res.get('autotune') or {}
        for l in tune.get('layers', []):
            best = sorted(l.get('all_ms', {}).items(), key=lambda kv: kv[1])[:5]
            tops.append((name, res['gflop'], best))
    print()
    occ = {r['probe']: (r.get('result') or {}).get('gpu_ms_median') for r in runs if r['probe'].startswith('occ')}
    if occ.get('occ132'):
        print('Occupancy (128x128 tensor-core tile, no K split; 132, 264, 396 workgroups on 132 '
              'multiprocessors): time against one workgroup each: ' +
              ', '.join(f"{n[3:]} workgroups {ms / occ['occ132']:.2f}x" for n, ms in occ.items() if ms) + '\n')
    for name, g, best in tops:
        print(f"Autotuning on {name}, the five fastest: " +
              ', '.join(f"{k} {ms:.3f} ms ({tflops(g, ms):.0f} TFLOP/s)" for k, ms in best) + '\n')
    gp = os.path.join(d, 'gemm-probe.txt')
    if os.path.exists(gp):
        print('GEMM probe on the same card (N=4096, 137.4 GFLOP; `gemm4096` is the same product):\n')
        for l in open(gp):
            m = re.match(r'RESULT kernel=(\S+) N=(\d+) ms=(\S+) tflops=(\S+) verify=(\S+)', l)
            if m:
                print(f"- {m.group(1)}: {m.group(3)} ms, {m.group(4)} TFLOP/s ({m.group(5)})")
        print()


# what a layer cannot go below on an H200: its f16 bytes (input, weights, output, each once) at
# the card's 4.8 TB/s, or its FLOPs at the GEMM probe's 169 TFLOP/s, whichever is longer
H200_BYTES_PER_S = 4.8e12
PROBE_FLOPS = 169e12


def floor_ms(t):
    h, w = t['size']
    k, ci, co = t['k'], t['cin'], t['cout']
    oh, ow = (h * k, w * k) if t['kind'] == 'convT' else (h, w)
    nbytes = 2 * (ci * h * w + co * oh * ow + ci * co * k * k)
    return 1e3 * max(nbytes / H200_BYTES_PER_S, t['gflop'] * 1e9 / PROBE_FLOPS)


def layers(d):
    eng = read_jsonl(os.path.join(d, 'engine.jsonl'))
    torch = read_jsonl(os.path.join(d, 'torch_layers.jsonl'))
    for base in (64, 16):
        tl = {t['node']: t for t in torch if t.get('net') == f'unet{base}'}
        run = next((e for e in eng if 'error' not in e and e.get('precision') == 'f16' and e.get('layers')
                    and f'unet{base}' in str(e.get('model', '')) and e.get('input') == '[1, 3, 512, 512]'
                    and variant(e) == ''), None)
        if run is None or not tl:
            continue
        print(f'## Base {base}, 1x3x512x512, f16: each layer against cuDNN on its own shape\n')
        print('cuDNN times are single-layer calls (launch included); the engine\'s are profiled dispatches '
              'of one submission. "lost" is the engine\'s time minus cuDNN FP16 NCHW\'s.\n')
        print('| layer | output | engine kernel | ms | TFLOP/s | cuDNN FP16 ms | CL ms | ours / FP16 | lost ms | floor ms |')
        print('|---|---|---|---|---|---|---|---|---|---|')
        rows = []
        for l in run['layers']:
            t = tl.get(l['node'])
            if t is None:
                continue
            rows.append((l['ms'] - t['fp16_ms'], l, t))
        for lost, l, t in sorted(rows, key=lambda r: -r[0]):
            print(f"| {l['node']} | {l['out']} | {l['kernel']} | {l['ms']:.3f} | {l.get('tflops') or 0:.1f} | "
                  f"{t['fp16_ms']:.3f} | {t['fp16_cl_ms']:.3f} | {l['ms'] / t['fp16_ms']:.2f} | {lost:+.3f} | "
                  f"{floor_ms(t):.3f} |")
        ours = sum(r[1]['ms'] for r in rows)
        theirs = sum(r[2]['fp16_ms'] for r in rows)
        cl = sum(r[2]['fp16_cl_ms'] for r in rows)
        floor = sum(floor_ms(r[2]) for r in rows)
        print(f"| convs, summed | | | {ours:.3f} | | {theirs:.3f} | {cl:.3f} | {ours / theirs:.2f} | {ours - theirs:+.3f} | "
              f"{floor:.3f} |\n")


def rejected(d):
    """Autotuning candidates that differed from the generic kernels or failed, in any run."""
    runs = [(r['probe'], r.get('result') or {}) for r in read_jsonl(os.path.join(d, 'probes.jsonl'))]
    runs += [(os.path.basename(str(e.get('model', '?'))) + ' ' + str(e.get('precision')), e)
             for e in read_jsonl(os.path.join(d, 'engine.jsonl'))]
    out = []
    for name, res in runs:
        for r in (res.get('autotune') or {}).get('rejected', []):
            out.append(f"- {name}: {r.get('candidate')}: " +
                       (f"rel-L2 {r['rel_l2_vs_generic']:.3g} against the generic kernels" if 'rel_l2_vs_generic' in r
                        else str(r.get('error', r))[:200]))
    if out:
        print('## Autotuning candidates rejected (wrong results or failures on this card)\n')
        print('\n'.join(out) + '\n')


def main(d):
    probes(d)
    rejected(d)
    layers(d)


if __name__ == '__main__':
    main(sys.argv[1])
