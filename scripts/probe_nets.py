#!/usr/bin/env python3
"""Single-conv networks and per-layer cuDNN times: where the engine's conv kernels stand, shape by shape.

  python3 probe_nets.py --export DIR [--small]
                                         write DIR/<name>.onnx for each probe shape (one conv + ReLU, FP32
                                         weights, seed 0, opset 17, the input size fixed; --small: the
                                         shapes shrunk for a dry run on lavapipe)
  python3 probe_nets.py --time [--iters N] [--nets 64 16]
                                         time in PyTorch/cuDNN, one JSON line per shape, every probe shape
                                         and every conv and transposed conv of the classic U-Net (base 64
                                         and 16, 512x512, batch 1; the shapes of torch_unet_baseline.py)
                                         in strict FP32, FP16 NCHW and FP16 channels-last

The probe shapes are large enough to fill the GPU for many waves, so that the engine's kernels are measured
apart from the small layers' wave and launch effects:
  gemm4096  1x1 conv, 4096 -> 4096 channels at 64x64: the GEMM probe's N=4096 matrix product (M=N=K=4096)
  conv512   3x3 conv, 512 -> 512 at 128x128 (K = 4608)
  conv64    3x3 conv, 64 -> 64 at 1024x1024 (K = 576: a 64-row GEMM, the U-Net's widest layers' shape)
  occ132, occ264, occ396
            1x1 conv, 2048 -> 128 at 128x132, 128x264, 128x396: one, two, three 128x128 workgroups per
            multiprocessor of an H100/H200 (132 of them), to tell how many share one at a time
Each time is the median of CUDA-event intervals around one layer call (so a small layer's time includes its
launch, as the U-Net's per-layer times in cuDNN do not: compare the large layers).
"""
import argparse, json, os
import torch, torch.nn as nn

# name, input channels, output channels, kernel, input height, width
PROBES = [
    ('gemm4096', 4096, 4096, 1, 64, 64),
    ('conv512', 512, 512, 3, 128, 128),
    ('conv64', 64, 64, 3, 1024, 1024),
    # occupancy: 128 output channels and 132, 264 or 396 runs of 128 pixels, K = 2048: on
    # 128x128 tiles without K splits, one, two or three workgroups for each of an H100's or
    # H200's 132 multiprocessors. Equal times for 132 and 264 mean two workgroups share a
    # multiprocessor at no cost to either; twice the time, that one already fills it (or that
    # only one fits: compare its TFLOP/s with the GEMM probe's)
    ('occ132', 2048, 128, 1, 128, 132),
    ('occ264', 2048, 128, 1, 128, 264),
    ('occ396', 2048, 128, 1, 128, 396),
]
# the same names at shapes small enough for a software Vulkan driver (device-bench.sh DRY=1,
# which checks the script, not the speed): fewer channels and pixels, the same kernel sizes
PROBES_SMALL = [
    ('gemm4096', 256, 256, 1, 16, 16),
    ('conv512', 128, 128, 3, 16, 16),
    ('conv64', 64, 64, 3, 32, 32),
    ('occ132', 64, 128, 1, 16, 13),
    ('occ264', 64, 128, 1, 16, 26),
    ('occ396', 64, 128, 1, 16, 39),
]


class ConvRelu(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x):
        return torch.relu(self.conv(x))


def unet_layers(base, size=512, depth=4, cin=3, cout=3):
    """(name, kind, cin, cout, k, input size) of each conv of the classic U-Net, as the engine names them."""
    ch = [base * 2**i for i in range(depth + 1)]
    out = []
    h = size
    for i in range(depth):
        out.append((f'/enc.{i}/enc.{i}.0/Conv', 'conv', cin if i == 0 else ch[i - 1], ch[i], 3, h))
        out.append((f'/enc.{i}/enc.{i}.2/Conv', 'conv', ch[i], ch[i], 3, h))
        h //= 2
    out.append(('/mid/mid.0/Conv', 'conv', ch[depth - 1], ch[depth], 3, h))
    out.append(('/mid/mid.2/Conv', 'conv', ch[depth], ch[depth], 3, h))
    for j, i in enumerate(reversed(range(depth))):
        out.append((f'/up.{j}/ConvTranspose', 'convT', ch[i + 1], ch[i], 2, h))
        h *= 2
        out.append((f'/dec.{j}/dec.{j}.0/Conv', 'conv', 2 * ch[i], ch[i], 3, h))
        out.append((f'/dec.{j}/dec.{j}.2/Conv', 'conv', ch[i], ch[i], 3, h))
    out.append(('/head/Conv', 'conv', ch[0], cout, 1, size))
    return out


def layer(kind, cin, cout, k):
    if kind == 'convT':
        return nn.ConvTranspose2d(cin, cout, k, stride=k)
    if cout <= 4:  # the head has no ReLU
        return nn.Conv2d(cin, cout, k, padding=k // 2)
    return ConvRelu(cin, cout, k)


def gflop(kind, cin, cout, k, hw):
    """GFLOP of a layer on an input of `hw` = (height, width); a transposed conv: one tap per
    output pixel, its output k times the input's size."""
    hh, ww = hw
    px = hh * ww * k * k if kind == 'convT' else hh * ww
    taps = 1 if kind == 'convT' else k * k
    return 2 * px * cin * cout * taps / 1e9


def bench(m, x, iters):
    with torch.no_grad():
        for _ in range(5):
            m(x)
        torch.cuda.synchronize()
        ts = []
        for _ in range(iters):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            m(x)
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def time_all(iters, bases=(64, 16)):
    dev = 'cuda'
    print(json.dumps(dict(torch=torch.__version__, device=torch.cuda.get_device_name(0))), flush=True)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    shapes = [('probe', n, 'conv', ci, co, k, (h, w)) for n, ci, co, k, h, w in PROBES]
    for base in bases:
        shapes += [(f'unet{base}', n, kind, ci, co, k, (h, h)) for n, kind, ci, co, k, h in unet_layers(base)]
    for net, name, kind, ci, co, k, hw in shapes:
        torch.manual_seed(0)
        m = layer(kind, ci, co, k).eval().to(dev)
        x = torch.randn(1, ci, *hw, device=dev)
        g = gflop(kind, ci, co, k, hw)
        row = dict(net=net, node=name, kind=kind, cin=ci, cout=co, k=k, size=list(hw), gflop=round(g, 4))
        row['fp32_ms'] = bench(m, x, iters)
        mh, xh = m.half(), x.half()
        row['fp16_ms'] = bench(mh, xh, iters)
        mc, xc = mh.to(memory_format=torch.channels_last), xh.to(memory_format=torch.channels_last)
        row['fp16_cl_ms'] = bench(mc, xc, iters)
        for key in ('fp32', 'fp16', 'fp16_cl'):
            row[key + '_tflops'] = round(g / row[key + '_ms'], 2)
        print(json.dumps(row), flush=True)
        del m, mh, mc, x, xh, xc
        torch.cuda.empty_cache()


def export(d, small=False):
    os.makedirs(d, exist_ok=True)
    for name, ci, co, k, h, w in PROBES_SMALL if small else PROBES:
        torch.manual_seed(0)
        m = ConvRelu(ci, co, k).eval()
        x = torch.randn(1, ci, h, w)
        path = os.path.join(d, name + '.onnx')
        torch.onnx.export(m, x, path, opset_version=17, dynamo=False, input_names=['input'],
                          output_names=['output'])
        print('wrote', path, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--export', metavar='DIR')
    ap.add_argument('--small', action='store_true',
                    help='with --export: small shapes under the same names, for a dry run on a software driver')
    ap.add_argument('--time', action='store_true')
    ap.add_argument('--iters', type=int, default=30)
    ap.add_argument('--nets', type=int, nargs='+', default=[64, 16], metavar='BASE',
                    help='the U-Net bases whose layers --time times (default: 64 16)')
    a = ap.parse_args()
    if a.export:
        export(a.export, a.small)
    if a.time:
        time_all(a.iters, a.nets)
    if not a.export and not a.time:
        ap.error('give --export DIR and/or --time')


if __name__ == '__main__':
    main()
