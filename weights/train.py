#!/usr/bin/env python3
"""Train the embedded colourisation U-Net (and its no-skip twin) and export both to ONNX.

What it trains
--------------
A small classic U-Net that maps a grayscale photo to a colour photo:

* input  ``luma`` [1, 1, H, W]: luminance Y = 0.299 R + 0.587 G + 0.114 B of the sRGB
  values in [0, 1] (no gamma decoding), H and W multiples of 8 (= 2**DEPTH);
* output ``rgb``  [1, 3, H, W]: sRGB in [0, 1], produced directly by a final 1x1 conv and a
  Sigmoid. The input luminance is NOT re-used at inference, so detail that the network
  loses is visible in the output.

Architecture (DEPTH = 3, BASE = 20): per level two 3x3 conv (no bias) + BatchNorm + ReLU,
channels 20 / 40 / 80 and a 160-channel bottleneck, 2x2 max-pool down, 2x2 stride-2
ConvTranspose2d up, ``torch.cat([skip, up], 1)`` before the decoder convs, final 1x1 conv +
Sigmoid. ``--no-skips`` builds the identical network except that the decoder convs take
only the upsampled tensor (no concat, so their first conv has half the input channels).
Both variants are trained with exactly the same budget: steps, batch, crop sizes, data
order, augmentation, learning-rate schedule and seed.

Loss: L1 on RGB + 0.5 * L1 on the horizontal/vertical finite differences of RGB (same for
both variants).

Data: the 16 photos in /work/shared/training-images (see MANIFEST.csv there and
weights/MODEL_CARD.md). The 4 photos in HOLDOUT are never used for training; they are
only used by weights/evaluate.py (and, for the export check, by this script after training).
Photos with a longer side > 1024 px are downscaled 2x once at load time (LANCZOS) and kept
in memory as float32. Every step draws BATCH random crops of one random size in
{96, 104, ..., 160} px: random photo (uniform), random scale (log-uniform, so that the
whole photo would have a longer side between 384 and ~1024 px), random position, random
horizontal flip; the crop is resampled bilinearly with antialiasing.

How to run (from the repository root)
-------------------------------------
    nice -n 19 /opt/venv/bin/python weights/train.py              # with skips
    nice -n 19 /opt/venv/bin/python weights/train.py --no-skips   # without skips
    nice -n 19 /opt/venv/bin/python weights/evaluate.py           # metrics -> weights/eval_python.json

Checkpoints (model + optimizer + RNG state, every 250 steps) go to --ckpt-dir
(default /tmp/colorize_ckpt, outside the repository); an interrupted run resumes from
the latest checkpoint automatically. After training the model is exported
(torch.onnx.export, TorchScript exporter, opset 17, dynamic H/W, eval mode) to
weights/colorize.onnx resp. weights/colorize_noskip.onnx and checked against PyTorch with
onnxruntime on a held-out photo. ``--export-only`` re-exports from the final checkpoint.

Determinism: everything is seeded (torch + a numpy Generator for the data); on CPU with
the same thread count (2) and the same library versions the run is repeatable.

Time it took here (2 shared CPU cores, torch 2.15.0+cu132 wheel running on the CPU, nice 19, another job compiling
on the same cores part of the time): 1500 steps x batch 16 per model; with skips 1436 s
(24 min, ~0.96 s/step), without skips 1797 s (30 min; the no-skip net is slightly cheaper,
the difference is CPU contention). Export + onnxruntime check: a few seconds each.
"""

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = "/work/shared/training-images"

# Never used for training (a mix of content: portrait, still life, animal, landscape).
HOLDOUT = [
    "astronaut.jpg",
    "coffee.jpg",
    "chelsea.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
]

DEPTH = 3
BASE = 20
MULTIPLE = 2 ** DEPTH
SEED = 20240611
STEPS = 1500
BATCH = 16
CROP_SIZES = list(range(96, 161, 8))
LR = 2e-3
WARMUP = 100
MIN_LR = 1e-5
GRAD_WEIGHT = 0.5
CKPT_EVERY = 250


def luma(rgb):
    """rgb: tensor [..., 3, H, W] in [0, 1] -> [..., 1, H, W]."""
    r, g, b = rgb[..., 0:1, :, :], rgb[..., 1:2, :, :], rgb[..., 2:3, :, :]
    return 0.299 * r + 0.587 * g + 0.114 * b


# ----------------------------------------------------------------------------- model

def double_conv(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, depth=DEPTH, base=BASE, skips=True):
        super().__init__()
        self.skips = skips
        ch = [base * 2 ** i for i in range(depth + 1)]
        self.enc = nn.ModuleList(double_conv(1 if i == 0 else ch[i - 1], ch[i]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(ch[depth - 1], ch[depth])
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth))
        self.dec = nn.ModuleList(double_conv(ch[i] * (2 if skips else 1), ch[i]) for i in range(depth))
        self.head = nn.Conv2d(ch[0], 3, 1)

    def forward(self, x):
        feats = []
        for enc in self.enc:
            x = enc(x)
            feats.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i in reversed(range(len(self.enc))):
            x = self.up[i](x)
            if self.skips:
                x = torch.cat([feats[i], x], 1)
            x = self.dec[i](x)
        return torch.sigmoid(self.head(x))


# ----------------------------------------------------------------------------- data

def load_manifest():
    with open(os.path.join(DATA_DIR, "MANIFEST.csv"), newline="") as f:
        return list(csv.DictReader(f))


def load_training_images():
    names = sorted(r["file"] for r in load_manifest() if r["file"] not in HOLDOUT)
    assert len(names) == 12, names
    imgs = []
    for n in names:
        im = Image.open(os.path.join(DATA_DIR, n)).convert("RGB")
        w, h = im.size
        if max(w, h) > 1024:
            im = im.resize((round(w / 2), round(h / 2)), Image.LANCZOS)
        imgs.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous())
    return names, imgs


def sample_batch(rng, imgs, batch):
    s = int(rng.choice(CROP_SIZES))
    out = torch.empty(batch, 3, s, s)
    for b in range(batch):
        img = imgs[int(rng.integers(len(imgs)))]
        _, h, w = img.shape
        long_side = max(h, w)
        # f = source pixels per output pixel; whole photo would have a longer side of
        # long_side / f in [384, min(1024, 1.15 * long_side)].
        f_min = long_side / min(1024.0, 1.15 * long_side)
        f_max = long_side / 384.0
        f_max = min(f_max, min(h, w) / s)  # the crop must fit
        f_min = min(f_min, f_max)
        f = math.exp(rng.uniform(math.log(f_min), math.log(f_max)))
        cs = min(int(round(s * f)), h, w)
        y0 = int(rng.integers(h - cs + 1))
        x0 = int(rng.integers(w - cs + 1))
        crop = img[:, y0:y0 + cs, x0:x0 + cs].unsqueeze(0)
        if cs != s:
            crop = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        if rng.random() < 0.5:
            crop = crop.flip(3)
        out[b] = crop[0].clamp(0, 1)
    return out


# ----------------------------------------------------------------------------- training

def lr_at(step):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, STEPS - WARMUP)
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * t))


def loss_fn(pred, target):
    l1 = (pred - target).abs().mean()
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]
    grad = (dx(pred) - dx(target)).abs().mean() + (dy(pred) - dy(target)).abs().mean()
    return l1 + GRAD_WEIGHT * grad, l1


def save_ckpt(path, step, model, opt, rng, losses, elapsed):
    tmp = path + ".tmp"
    torch.save({
        "step": step,
        "elapsed": elapsed,
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "losses": losses,
    }, tmp)
    os.replace(tmp, path)


def train(args, tag, skips, device):
    os.makedirs(args.ckpt_dir, exist_ok=True)
    ckpt_path = os.path.join(args.ckpt_dir, f"{tag}_latest.pt")
    final_path = os.path.join(args.ckpt_dir, f"{tag}_final.pt")

    torch.manual_seed(SEED)
    model = UNet(skips=skips).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    rng = np.random.default_rng(SEED)  # data stream: identical for both variants
    step0, losses, elapsed0 = 0, [], 0.0

    if os.path.exists(final_path) and not args.retrain:
        ck = torch.load(final_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        print(f"[{tag}] final checkpoint exists ({final_path}), skipping training", flush=True)
        return model, ck
    if os.path.exists(ckpt_path) and not args.retrain:
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        step0, losses = ck["step"], ck["losses"]
        elapsed0 = ck.get("elapsed", 0.0)
        print(f"[{tag}] resumed at step {step0}", flush=True)

    names, imgs = load_training_images()
    print(f"[{tag}] training on {len(names)} photos: {names}", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"[{tag}] parameters: {nparams}", flush=True)

    model.train()
    t0 = time.time()
    run_l1 = None
    for step in range(step0, args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        target = sample_batch(rng, imgs, BATCH).to(device).contiguous(memory_format=torch.channels_last)
        x = luma(target)
        pred = model(x)
        loss, l1 = loss_fn(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run_l1 = l1.item() if run_l1 is None else 0.98 * run_l1 + 0.02 * l1.item()
        losses.append((step, loss.item(), l1.item()))
        if (step + 1) % 50 == 0 or step == step0:
            el = elapsed0 + time.time() - t0
            print(f"[{tag}] step {step + 1}/{args.steps} loss {loss.item():.4f} l1(ema) {run_l1:.4f} "
                  f"lr {lr_at(step):.2e} {el:.0f}s ({el / (step + 1):.2f} s/step)", flush=True)
        if (step + 1) % CKPT_EVERY == 0 or step + 1 == args.steps:
            save_ckpt(ckpt_path, step + 1, model, opt, rng, losses, elapsed0 + time.time() - t0)
    elapsed = elapsed0 + time.time() - t0
    ck = {"model": model.state_dict(), "steps": args.steps, "elapsed": elapsed, "losses": losses,
          "params": nparams, "skips": skips}
    torch.save(ck, final_path)
    print(f"[{tag}] done: {args.steps} steps in {elapsed:.0f}s", flush=True)
    return model, ck


# ----------------------------------------------------------------------------- export

def load_holdout_luma(name):
    im = Image.open(os.path.join(HERE, "holdout", name)).convert("RGB")
    rgb = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    h, w = rgb.shape[2:]
    rgb = rgb[:, :, : h // MULTIPLE * MULTIPLE, : w // MULTIPLE * MULTIPLE]
    return luma(rgb).contiguous()


def export(model, out_path):
    import onnx
    import onnxruntime as ort

    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    dummy = torch.rand(1, 1, 64, 96)
    torch.onnx.export(
        model, (dummy,), out_path,
        dynamo=False, opset_version=17,
        input_names=["luma"], output_names=["rgb"],
        dynamic_axes={"luma": {2: "H", 3: "W"}, "rgb": {2: "H", 3: "W"}},
    )
    m = onnx.load(out_path)
    onnx.checker.check_model(m)
    hist = {}
    for n in m.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    allowed = {"Conv", "ConvTranspose", "Concat", "Relu", "Sigmoid", "MaxPool", "BatchNormalization",
               "Shape", "Gather", "Unsqueeze", "Constant", "Reshape"}
    assert set(hist) <= allowed, hist
    ext = [t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert not ext, ext

    sess = ort.InferenceSession(out_path, providers=["CPUExecutionProvider"])
    x = load_holdout_luma("picosdeeuropa_by_Aitzol_Berasategi.jpg")  # 384 x 512
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(["rgb"], {"luma": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    info = {"file": os.path.basename(out_path), "bytes": os.path.getsize(out_path), "ops": hist,
            "opset": m.opset_import[0].version, "check_input": list(x.shape),
            "max_abs_diff_vs_pytorch": diff}
    print(json.dumps(info), flush=True)
    assert diff < 1e-4, diff
    return info


def main():
    global STEPS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-skips", action="store_true", help="train the variant without skip connections")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--ckpt-dir", default="/tmp/colorize_ckpt")
    ap.add_argument("--retrain", action="store_true", help="ignore existing checkpoints")
    ap.add_argument("--export-only", action="store_true", help="export from the final checkpoint")
    args = ap.parse_args()

    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    skips = not args.no_skips
    tag = "skip" if skips else "noskip"
    STEPS = args.steps

    if args.export_only:
        ck = torch.load(os.path.join(args.ckpt_dir, f"{tag}_final.pt"), map_location="cpu", weights_only=False)
        model = UNet(skips=skips)
        model.load_state_dict(ck["model"])
    else:
        model, ck = train(args, tag, skips, device)

    out = os.path.join(HERE, "colorize.onnx" if skips else "colorize_noskip.onnx")
    info = export(model, out)
    info.update({"params": sum(p.numel() for p in model.parameters()), "steps": ck.get("steps"),
                 "train_seconds": round(ck.get("elapsed", 0.0)), "device": device,
                 "torch": torch.__version__})
    with open(os.path.join(args.ckpt_dir, f"{tag}_export.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
