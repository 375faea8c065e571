#!/usr/bin/env python3
"""Per-layer comparison of `unet-gpu bench` runs of one network, input and precision.

    python3 scripts/layer_diff.py engine.jsonl > layers.md

For each (network, input, precision) with a default run (no option changed) that has per-layer
times, every other run of it with per-layer times gets a table: each layer's kernel and time in
both, and their ratio. Then, per layer, the fastest of all those runs: what choosing per layer
(as autotuning does) could reach, against the default's profiled total. Profiled times carry a
timestamp around every dispatch, so their sums run a few percent above the plain GPU time.
"""
import json, sys
from bench_table import key, variant


def layers(e):
    return {l['node']: l for l in e.get('layers') or []}


def main(path):
    eng = [json.loads(l) for l in open(path) if l.startswith('{')]
    groups = {}
    for e in eng:
        if 'error' in e or not e.get('layers'):
            continue
        groups.setdefault((key(e), e.get('precision')), []).append(e)
    for (k, prec), runs in sorted(groups.items()):
        base, h, b = k
        title = f"base {base} {b}x3x{h}x{h} {prec}"
        default = next((e for e in runs if variant(e) == ''), None)
        if default is None:
            continue
        d = layers(default)
        order = [l['node'] for l in default['layers']]
        others = [e for e in runs if e is not default]
        for e in others:
            o = layers(e)
            name = variant(e).lstrip(', ')
            print(f"## {title}: default vs {name}\n")
            print(f"| layer | output | default kernel | ms | {name} kernel | ms | ratio |")
            print('|---|---|---|---|---|---|---|')
            for n in order:
                a, c = d[n], o.get(n)
                if c is None:
                    print(f"| {n} | {a['out']} | {a['kernel']} | {a['ms']:.3f} | (absent) | | |")
                    continue
                ratio = c['ms'] / a['ms'] if a['ms'] > 0 else float('nan')
                mark = ' faster' if ratio < 0.95 else (' slower' if ratio > 1.05 else '')
                print(f"| {n} | {a['out']} | {a['kernel']} | {a['ms']:.3f} | {c['kernel']} | {c['ms']:.3f} | {ratio:.2f}{mark} |")
            ta, tc = default.get('profiled_gpu_ms'), e.get('profiled_gpu_ms')
            if ta and tc:
                print(f"| profiled total | | | {ta:.3f} | | {tc:.3f} | {tc / ta:.2f} |")
            print(f"\nGPU time (median, not profiled): default {default['gpu_ms_median']:.3f} ms, "
                  f"{name} {e['gpu_ms_median']:.3f} ms\n")
        if not others:
            continue
        print(f"## {title}: the fastest run of each layer\n")
        print('| layer | output | fastest in | kernel | ms | default ms |')
        print('|---|---|---|---|---|---|')
        best_sum = 0.0
        for n in order:
            cands = [(layers(e)[n]['ms'], variant(e).lstrip(', ') or 'default', layers(e)[n]['kernel'])
                     for e in runs if n in layers(e)]
            ms, who, kern = min(cands)
            best_sum += ms
            print(f"| {n} | {d[n]['out']} | {who} | {kern} | {ms:.3f} | {d[n]['ms']:.3f} |")
        total = sum(l['ms'] for l in default['layers'])
        print(f"\nSum of the fastest: {best_sum:.3f} ms against the default's {total:.3f} "
              f"({best_sum / total:.2f}x), per-layer profiled times.\n")


if __name__ == '__main__':
    main(sys.argv[1])
