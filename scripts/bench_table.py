#!/usr/bin/env python3
"""One comparison table from the JSON lines of `unet-gpu bench` and `torch_unet_baseline.py`.

    python3 scripts/bench_table.py engine.jsonl torch.jsonl > table.md
"""
import json, re, sys


def key(e):
    """(base, input size, batch) of a bench line."""
    m = re.search(r'unet(\d+)', e.get('model', ''))
    dims = [int(x) for x in re.findall(r'\d+', e['input'])]
    return (int(m.group(1)) if m else 0, dims[2], dims[0])


def order(e):
    return (key(e), e.get('precision', ''), e.get('split_k') is False, e.get('tap_major') is False, bool(e.get('im2col')),
            bool(e.get('halo')), e.get('wide_epilogue') is False, e.get('thin') is False, bool(e.get('thin_all')),
            e.get('halo_resident') is False, e.get('row_loads') is False, bool(e.get('autotune')))


def variant(e):
    """The options a bench line ran with, as text (empty for the defaults)."""
    v = ''
    if e.get('precision') == 'f16' and e.get('tensor_cores') is False:
        v += ' (scalar)'
    if e.get('split_k') is False:
        v += ', split-K off'
    if e.get('im2col'):
        v += ', im2col'
    if e.get('halo'):
        v += ', halo tiles' + (' (A streamed)' if e.get('halo_resident') is False else '')
    if e.get('wide_epilogue') is False:
        v += ', epilogue 1 fragment/round'
    if e.get('thin') is False:
        v += ', thin kernel off'
    if e.get('thin_all'):
        v += ', thin kernel for every conv'
    if e.get('tap_major') is False:
        v += ', tap-major off'
    if e.get('row_loads') is False:
        v += ', row loads off'
    if e.get('row_quads'):
        v += ', row quads'
    if e.get('force_tile'):
        v += f", tile {e['force_tile']}"
    if e.get('force_slices'):
        v += f", {e['force_slices']} K slices"
    if e.get('autotune'):
        v += ', autotuned'
    if e.get('batch_chunks', 1) > 1:
        v += f", {e['batch_chunks']} batch chunks"
    return v


def main(engine, torch):
    eng = [json.loads(l) for l in open(engine) if l.startswith('{')]
    tor = [json.loads(l) for l in open(torch) if l.startswith('{')]
    info = next((t for t in tor if 'device' in t), {})
    rows = {}
    for t in tor:
        if 'base' in t:
            rows[(t['base'], t['H'], t['B'])] = t
    print(f"card: {info.get('device', '?')}; torch {info.get('torch', '?')}\n")
    print('| net | input | precision | unet-gpu GPU ms (median / min) | TFLOP/s | cuDNN ms (same precision) | ratio (ours / cuDNN) | cuDNN FP16 channels-last ms |')
    print('|---|---|---|---|---|---|---|---|')
    for e in sorted(eng, key=order):
        base, h, b = key(e)
        t = rows.get((base, h, b), {})
        prec = e.get('precision')
        ref = t.get('fp32_ms') if prec == 'f32' else t.get('fp16_ms')
        prec += variant(e)
        ref = round(ref, 3) if ref else ref
        if 'error' in e:
            print(f"| base {base} | {b}x{h}x{h} | {prec} | refused: {e['error'][:80]} | | {ref} | | {t.get('fp16_cl_ms')} |")
            continue
        ours = e.get('gpu_ms_median') or e.get('wall_ms_median')
        if e.get('check_ok') is False:
            prec += f", WRONG RESULT (rel-L2 {e.get('check_rel_l2_vs_generic'):.1e} vs the generic kernels)"
        ratio = f"{ours / ref:.2f}" if ref else ''
        print(f"| base {base} | {b}x{h}x{h} | {prec} | {ours:.2f} / {e.get('gpu_ms_min') or 0:.2f} | {e['tflops']:.1f} | {ref} | {ratio} | {t.get('fp16_cl_ms') and round(t['fp16_cl_ms'], 3)} |")


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
