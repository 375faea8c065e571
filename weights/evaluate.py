#!/usr/bin/env python3
"""Evaluate weights/colorize.onnx and weights/colorize_noskip.onnx on the 4 held-out photos.

    nice -n 19 /opt/venv/bin/python weights/evaluate.py [--save-dir /tmp/colorize_eval]

Runs the shipped ONNX files with onnxruntime (CPU) on weights/holdout/*.jpg (the held-out
photos, longer side 512 px, JPEG q92; they were never used for training). Procedure, as in
the engine: decode the JPEG to sRGB in [0, 1], Y = 0.299 R + 0.587 G + 0.114 B, pad Y by
reflection (numpy 'reflect' = ONNX Pad mode=reflect, edge pixel not repeated) at the
bottom/right up to a multiple of 8, run, crop the output back to the original size, compare
with the decoded JPEG.

Metrics (all on [0, 1] data, peak 1):
* psnr_rgb        PSNR over all RGB values;
* ssim_y          SSIM of the luminance of prediction vs ground truth (11x11 Gaussian
                  window, sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' region);
* ssim_rgb        the same SSIM averaged over R, G, B;
* lap_energy_ratio  sum(lap(Y_pred)^2) / sum(lap(Y_gt)^2) with the 4-neighbour 3x3
                  Laplacian: 1.0 = as much fine detail as the ground truth, << 1 = blurry;
* hf_psnr_y       PSNR between the high-pass bands Y - G_2(Y) of prediction and ground truth
                  (G_2 = Gaussian blur, sigma 2): how well the fine detail itself is reproduced;
* hf_energy_ratio energy ratio of those high-pass bands.
"Gray" is the trivial baseline R = G = B = Y (the input itself): perfect detail, no colour.
Writes weights/eval_python.json.
"""

import argparse
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
HOLDOUT = [
    "astronaut.jpg",
    "coffee.jpg",
    "chelsea.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
]
MULTIPLE = 8
MODELS = {"skip": "colorize.onnx", "noskip": "colorize_noskip.onnx"}


def luma(rgb):  # [..., 3] -> [...]
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def gauss_kernel(sigma, radius):
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def filt_valid(img, k):
    """Separable 'valid' correlation of a 2-D array with the 1-D kernel k."""
    n = len(k)
    h, w = img.shape
    tmp = sum(k[i] * img[i:h - n + 1 + i, :] for i in range(n))
    return sum(k[i] * tmp[:, i:w - n + 1 + i] for i in range(n))


def filt_same(img, k):
    r = len(k) // 2
    return filt_valid(np.pad(img, r, mode="reflect"), k)


def ssim(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    k = gauss_kernel(1.5, 5)  # 11 taps
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = filt_valid(a, k), filt_valid(b, k)
    saa = filt_valid(a * a, k) - mu_a ** 2
    sbb = filt_valid(b * b, k) - mu_b ** 2
    sab = filt_valid(a * b, k) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(m.mean())


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(1.0 / mse))


def laplacian(y):
    return (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1])


def highpass(y):
    y = y.astype(np.float64)
    return y - filt_same(y, gauss_kernel(2.0, 6))


def metrics(pred, gt):
    yp, yg = luma(pred.astype(np.float64)), luma(gt.astype(np.float64))
    lp, lg = laplacian(yp), laplacian(yg)
    hp, hg = highpass(yp), highpass(yg)
    return {
        "psnr_rgb": round(psnr(pred, gt), 3),
        "ssim_y": round(ssim(yp, yg), 4),
        "ssim_rgb": round(float(np.mean([ssim(pred[..., c], gt[..., c]) for c in range(3)])), 4),
        "lap_energy_ratio": round(float((lp ** 2).sum() / (lg ** 2).sum()), 4),
        "hf_psnr_y": round(psnr(hp, hg), 3),
        "hf_energy_ratio": round(float((hp ** 2).sum() / (hg ** 2).sum()), 4),
    }


def run_model(sess, y):
    h, w = y.shape
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    yp = np.pad(y, ((0, ph), (0, pw)), mode="reflect")
    out = sess.run(["rgb"], {"luma": yp[None, None].astype(np.float32)})[0][0]
    return out[:, :h, :w].transpose(1, 2, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--save-dir", default=None, help="also write the predictions as PNG here")
    args = ap.parse_args()

    sessions = {k: ort.InferenceSession(os.path.join(HERE, f), providers=["CPUExecutionProvider"])
                for k, f in MODELS.items()}
    rows = {}
    for name in HOLDOUT:
        gt = np.asarray(Image.open(os.path.join(HERE, "holdout", name)).convert("RGB"), dtype=np.float32) / 255.0
        y = luma(gt).astype(np.float32)
        preds = {k: run_model(s, y) for k, s in sessions.items()}
        preds["gray"] = np.repeat(y[..., None], 3, axis=2)
        rows[name] = {"size": [gt.shape[1], gt.shape[0]], **{k: metrics(p, gt) for k, p in preds.items()}}
        if args.save_dir:
            os.makedirs(args.save_dir, exist_ok=True)
            stem = os.path.splitext(name)[0]
            for k, p in preds.items():
                Image.fromarray((np.clip(p, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
                    os.path.join(args.save_dir, f"{stem}_{k}.png"))
        print(name, json.dumps(rows[name]), flush=True)

    mean = {}
    for k in ["skip", "noskip", "gray"]:
        keys = rows[HOLDOUT[0]][k].keys()
        mean[k] = {m: round(float(np.mean([rows[n][k][m] for n in HOLDOUT])), 4) for m in keys}
    result = {
        "description": "Held-out evaluation of the shipped ONNX colourisation models (onnxruntime CPU). "
                       "Input: weights/holdout/*.jpg (longer side 512, JPEG q92), Y = 0.299R+0.587G+0.114B, "
                       "reflect-padded bottom/right to a multiple of 8, output cropped back. "
                       "'gray' = trivial baseline R=G=B=Y. See weights/evaluate.py for metric definitions.",
        "models": MODELS,
        "multiple": MULTIPLE,
        "pad_mode": "reflect (bottom/right)",
        "metrics": ["psnr_rgb", "ssim_y", "ssim_rgb", "lap_energy_ratio", "hf_psnr_y", "hf_energy_ratio"],
        "per_image": rows,
        "mean": mean,
    }
    with open(os.path.join(HERE, "eval_python.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("mean", json.dumps(mean, indent=1))


if __name__ == "__main__":
    main()
