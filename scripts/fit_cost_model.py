#!/usr/bin/env python3
"""Fit the conv cost model's constants (src/gpu/lower/pick.rs `tile_time`, the efficiencies in
src/gpu/convgen.rs TILES and COOP_TILES) to autotuning measurements.

    python3 scripts/fit_cost_model.py docs/device-runs/2026-11-27-h200-run6/engine.jsonl [...]

Input: `unet-gpu bench --autotune` JSON lines. Each layer's GEMM (rows, columns, images, K) is
the report's `gemm` where it has one (reports since 2026-11-27's sixth session, any network);
older reports are of the benchmark networks exported by scripts/torch_unet_baseline.py, whose
geometry is read from node names and output shapes (their transposed convs ran one GEMM per
tap). Every timed (tile, split-K factor) of every conv is a data point; the fit minimises the
squared log error of the model's time. Halo tiles (`coop halo`), where timed, get efficiencies
of their own on the tensor-core tiles' fixed costs (the engine does not weigh them yet:
`--halo` takes them wherever they apply). It prints the constants and, per network and
precision, the measured time of the kernels the fitted model would pick against the fastest
measured ones, and for the layers the thin direct kernel ran, its time against the fastest GEMM
tile's. Needs numpy and scipy (not a dependency of the crate).

The tensor-core tile 64x128 had 32x64 subgroups until 2026-11-27's eighth session and 64x32 since:
fit reports from either side of that change, not both, for it (128x64 is new then).
"""
import json, math, re, sys
from collections import defaultdict

import numpy as np
from scipy.optimize import minimize

SMS = 264  # workgroup slots (src/gpu/lower/pick.rs SMS)
FMA_BK = {(128, 128): 8, (64, 256): 8, (64, 128): 16, (32, 128): 16, (64, 64): 16, (32, 64): 16,
          (32, 256): 8, (16, 256): 8}
COOP_BK = 32


def geometry(node, out, base):
    """(rows m, columns, z, depth k) of the implicit GEMM of one conv of the classic U-Net."""
    c, h, w = out[1], out[2], out[3]
    if 'ConvTranspose' in node:  # 2x2 stride 2: a direct GEMM per tap over the input pixels
        return c, (h // 2) * (w // 2), 4, 2 * c
    if 'head' in node:  # 1x1
        return c, h * w, 1, base
    if 'enc.0.0' in node:
        cin = 3
    elif node.endswith('.0/Conv') and 'dec' in node:
        cin = 2 * c  # the skip concat
    elif node.endswith('.0/Conv'):
        cin = c // 2
    else:
        cin = c
    return c, h * w, 1, cin * 9


def points(paths):
    """The timed GEMM kernels, and the thin kernel's times by layer."""
    pts, thin = [], {}
    for path in paths:
        for line in open(path):
            if not line.startswith('{'):
                continue
            d = json.loads(line)
            a = d.get('autotune')
            if not a or 'layers' not in a:
                continue
            net = re.sub(r'\.onnx$', '', d['model'].rsplit('/', 1)[-1])
            base = 64 if 'unet64' in d['model'] else 16
            for layer in a['layers']:
                if layer.get('gemm'):
                    m_, cols, z, k = layer['gemm']
                    g = (m_, cols, z, k)
                else:
                    g = geometry(layer['node'], json.loads(layer['out']), base)
                key = (net, d['precision'], layer['node'])
                for label, ms in layer['all_ms'].items():
                    if label.startswith('thin ') and ms > 0:
                        thin[key] = ms * 1e-3
                        continue
                    m = re.match(r'(fma|coop|coop im2col|coop halo) (\d+)x(\d+)(?: split (\d+))?$', label)
                    if not m or m.group(1) == 'coop im2col' or ms <= 0:
                        continue
                    pts.append(dict(key=key, kind=m.group(1), bm=int(m.group(2)), bn=int(m.group(3)),
                                    s=int(m.group(4) or 1), g=g, t=ms * 1e-3))
    return pts, thin


FMA_NAMES = ['fma%dx%d' % t for t in FMA_BK if t != (128, 128)]
FIXED_NAMES = ['fixed_fma', 'fixed_coop', 'alone_fma', 'alone_coop', 'reduce_fixed', 'reduce_bw']
FIXED_X0 = [2e-6, 5e-6, 1.4, 1.5, 5e-6, 2e12]


def model(P, p):
    kind, bm, bn, s = p['kind'], p['bm'], p['bn'], p['s']
    m, cols, z, k = p['g']
    if kind == 'fma':
        bk = FMA_BK[(bm, bn)]
        eff = 1.0 if (bm, bn) == (128, 128) else P['fma%dx%d' % (bm, bn)]
        fixed, alone = P['fixed_fma'], P['alone_fma']
    else:
        # a halo tile's K runs in channel blocks of all taps; counted in K tiles of 32 as a gather's
        name = ('halo%dx%d' if kind == 'coop halo' else 'coop%dx%d') % (bm, bn)
        bk, eff, fixed, alone = COOP_BK, P[name], P['fixed_coop'], P['alone_coop']
    wgs = math.ceil(m / bm) * math.ceil(cols / bn) * z * s
    k_slice = math.ceil(math.ceil(k / bk) / s) * bk
    t_wg = fixed + 2 * bm * bn * k_slice / (P['slot'] * eff)
    full, rest = divmod(wgs, SMS)
    t = full * t_wg
    if rest:
        t += t_wg / alone if rest <= SMS // 2 else t_wg
    if s > 1:
        t += P['reduce_fixed'] + (s + 1) * m * cols * z * 4 / P['reduce_bw']
    return t


def main():
    pts, thin = points(sys.argv[1:])
    if not pts:
        sys.exit('no autotune reports in the input')
    # the tensor-core and halo tiles that were timed (a tile the engine has but no report timed
    # keeps efficiency 0 in COOP_TILES: the engine's cost model leaves it out)
    coop = sorted({(p['bm'], p['bn']) for p in pts if p['kind'] == 'coop'}, reverse=True)
    halo = sorted({(p['bm'], p['bn']) for p in pts if p['kind'] == 'coop halo'}, reverse=True)
    names = ['slot'] + FMA_NAMES + ['coop%dx%d' % t for t in coop] + FIXED_NAMES + ['halo%dx%d' % t for t in halo]
    x0 = np.log([121e9] + [0.8] * len(FMA_NAMES) + [2.0] * len(coop) + FIXED_X0 + [2.0] * len(halo))

    def unpack(x):
        return dict(zip(names, np.exp(x)))

    def loss(x):
        P = unpack(x)
        return sum((math.log(model(P, p)) - math.log(p['t'])) ** 2 for p in pts) / len(pts)

    r = minimize(loss, x0, method='Nelder-Mead', options=dict(maxiter=20000, maxfev=20000, adaptive=True))
    r = minimize(loss, r.x, method='Powell', options=dict(maxiter=20000))
    P = unpack(r.x)
    print(f'{len(pts)} timed kernels; rms log error {math.sqrt(r.fun):.3f}')
    for k in names:
        print(f'  {k:<13} {P[k]:.4g}')
    by_conv = defaultdict(list)
    for p in pts:
        by_conv[p['key']].append(p)
    totals = defaultdict(lambda: [0.0, 0.0])
    for key, ps in sorted(by_conv.items()):
        best = min(ps, key=lambda p: p['t'])
        pick = min(ps, key=lambda p: model(P, p))
        totals[key[:2]][0] += best['t']
        totals[key[:2]][1] += pick['t']
        if pick['t'] > 1.08 * best['t']:
            print(f"  {key}: model picks {pick['kind']} {pick['bm']}x{pick['bn']} split {pick['s']} "
                  f"({pick['t'] * 1e3:.3f} ms), fastest {best['kind']} {best['bm']}x{best['bn']} split {best['s']} "
                  f"({best['t'] * 1e3:.3f} ms)")
    for (net, prec), (b, pk) in sorted(totals.items()):
        print(f'{net} {prec}: fastest measured kernels {b * 1e3:.3f} ms, the model\'s picks {pk * 1e3:.3f} ms')
    for key, t in sorted(thin.items()):
        ps = by_conv.get(key, [])
        if ps:
            best = min(ps, key=lambda p: p['t'])
            print(f"  thin kernel {key}: {t * 1e3:.3f} ms, fastest GEMM tile {best['kind']} {best['bm']}x{best['bn']} "
                  f"split {best['s']} {best['t'] * 1e3:.3f} ms")


if __name__ == '__main__':
    main()
