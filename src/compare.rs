//! The skip-connection experiment, measured: `unet-gpu compare` colourises the luminance of
//! colour photos with several models (and the first one with its skips ablated) and scores each
//! result against the photo itself.
//!
//! Metrics (images in [0, 1], the model output as floats before 8-bit rounding):
//! - PSNR over the three RGB channels, peak 1;
//! - SSIM with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1,
//!   computed on each RGB channel and averaged (the mean of the SSIM map excludes the 5-pixel
//!   border, borders reflected for the filtering), as scikit-image's `gaussian_weights=True`;
//! - fine detail: the high-frequency band of an image is the image minus its Gaussian blur
//!   (sigma 2); HF-PSNR is the PSNR of the output's band against the ground truth's band, and the
//!   HF energy ratio is sum(band_out^2) / sum(band_gt^2) (1 = as much detail as the photo,
//!   below 1 = blurrier).

use crate::error::{Error, Result};
use crate::imageio::Picture;
use crate::infer::{DeviceChoice, Engine, InferOptions};
use crate::presets::Preset;
use crate::skips::SkipSelection;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    pub psnr: f64,
    pub ssim: f64,
    pub hf_psnr: f64,
    pub hf_ratio: f64,
}

impl Metrics {
    fn to_json(self) -> serde_json::Value {
        serde_json::json!({"psnr": self.psnr, "ssim": self.ssim, "hf_psnr": self.hf_psnr, "hf_ratio": self.hf_ratio})
    }
    fn mean(ms: &[Metrics]) -> Metrics {
        let n = ms.len().max(1) as f64;
        Metrics {
            psnr: ms.iter().map(|m| m.psnr).sum::<f64>() / n,
            ssim: ms.iter().map(|m| m.ssim).sum::<f64>() / n,
            hf_psnr: ms.iter().map(|m| m.hf_psnr).sum::<f64>() / n,
            hf_ratio: ms.iter().map(|m| m.hf_ratio).sum::<f64>() / n,
        }
    }
}

fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 { f64::INFINITY } else { -10.0 * mse.log10() }
}

/// PSNR (peak 1) over all planes together.
pub fn psnr(a: &[&[f32]], b: &[&[f32]]) -> f64 {
    let mut se = 0f64;
    let mut n = 0usize;
    for (pa, pb) in a.iter().zip(b) {
        for (&x, &y) in pa.iter().zip(pb.iter()) {
            se += (x as f64 - y as f64).powi(2);
        }
        n += pa.len();
    }
    psnr_from_mse(se / n.max(1) as f64)
}

fn gaussian_kernel(sigma: f64, radius: usize) -> Vec<f64> {
    let k: Vec<f64> =
        (0..=2 * radius).map(|i| (-((i as f64 - radius as f64).powi(2)) / (2.0 * sigma * sigma)).exp()).collect();
    let s: f64 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Separable Gaussian filter with reflected borders.
pub fn gaussian_blur(p: &[f64], w: usize, h: usize, sigma: f64, radius: usize) -> Vec<f64> {
    let k = gaussian_kernel(sigma, radius);
    let r = radius as isize;
    let mut tmp = vec![0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let xx = crate::infer::reflect(x as isize + j as isize - r, w);
                s += kv * p[y * w + xx];
            }
            tmp[y * w + x] = s;
        }
    }
    let mut out = vec![0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let yy = crate::infer::reflect(y as isize + j as isize - r, h);
                s += kv * tmp[yy * w + x];
            }
            out[y * w + x] = s;
        }
    }
    out
}

/// SSIM of one plane (11x11 Gaussian window, sigma 1.5, data range 1).
pub fn ssim_plane(a: &[f32], b: &[f32], w: usize, h: usize) -> f64 {
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let prod = |x: &[f64], y: &[f64]| -> Vec<f64> { x.iter().zip(y).map(|(p, q)| p * q).collect() };
    let blur = |x: &[f64]| gaussian_blur(x, w, h, 1.5, 5);
    let (mu_a, mu_b) = (blur(&a64), blur(&b64));
    let (saa, sbb, sab) = (blur(&prod(&a64, &a64)), blur(&prod(&b64, &b64)), blur(&prod(&a64, &b64)));
    let pad = 5usize;
    let (y0, y1, x0, x1) = if w > 2 * pad && h > 2 * pad { (pad, h - pad, pad, w - pad) } else { (0, h, 0, w) };
    let mut sum = 0.0;
    let mut n = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            let i = y * w + x;
            let (ma, mb) = (mu_a[i], mu_b[i]);
            let va = saa[i] - ma * ma;
            let vb = sbb[i] - mb * mb;
            let cov = sab[i] - ma * mb;
            sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// High-frequency band of a plane: the plane minus its Gaussian blur (sigma 2).
pub fn high_band(p: &[f32], w: usize, h: usize) -> Vec<f64> {
    let v: Vec<f64> = p.iter().map(|&x| x as f64).collect();
    let b = gaussian_blur(&v, w, h, 2.0, 6);
    v.iter().zip(&b).map(|(x, y)| x - y).collect()
}

/// All metrics of an RGB output against the RGB ground truth.
pub fn metrics(out: [&[f32]; 3], gt: [&[f32]; 3], w: usize, h: usize) -> Metrics {
    let ssim = (0..3).map(|c| ssim_plane(out[c], gt[c], w, h)).sum::<f64>() / 3.0;
    let (mut se, mut eo, mut eg) = (0f64, 0f64, 0f64);
    for c in 0..3 {
        let (bo, bg) = (high_band(out[c], w, h), high_band(gt[c], w, h));
        for (o, g) in bo.iter().zip(&bg) {
            se += (o - g).powi(2);
            eo += o * o;
            eg += g * g;
        }
    }
    Metrics {
        psnr: psnr(&out, &gt),
        ssim,
        hf_psnr: psnr_from_mse(se / (3 * w * h).max(1) as f64),
        hf_ratio: if eg > 0.0 { eo / eg } else { f64::NAN },
    }
}

#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Models by shipped name or path; the first is also run with `ablate`.
    pub models: Vec<String>,
    pub ablate: Option<SkipSelection>,
    pub device: DeviceChoice,
    pub adapter: Option<String>,
    /// Side-by-side picture (PNG, or JPEG for a .jpg name).
    pub out: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// Height of each panel of the side-by-side picture.
    pub panel_height: usize,
    pub tile: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            models: vec!["colorize".into(), "noskip".into()],
            ablate: Some(SkipSelection::All),
            device: DeviceChoice::Auto,
            adapter: None,
            out: None,
            json: None,
            panel_height: 192,
            tile: 1024,
        }
    }
}

/// One row of the results: a model (or the ablated first model) and its scores per image.
#[derive(Clone, Debug)]
pub struct Row {
    pub label: String,
    pub per_image: Vec<Metrics>,
    pub mean: Metrics,
    pub seconds: f64,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub device: String,
    pub images: Vec<String>,
    pub rows: Vec<Row>,
}

impl Report {
    /// The Markdown table of the means over images.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("mean over {} image(s)\n\n", self.images.len()));
        s.push_str("| model | PSNR (dB) | SSIM | HF-PSNR (dB) | HF energy ratio |\n|---|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let m = r.mean;
            s.push_str(&format!(
                "| {} | {:.2} | {:.4} | {:.2} | {:.3} |\n",
                r.label, m.psnr, m.ssim, m.hf_psnr, m.hf_ratio
            ));
        }
        s
    }

    /// Per-image PSNR / HF-PSNR table.
    pub fn markdown_per_image(&self) -> String {
        let mut s = String::from("| image |");
        for r in &self.rows {
            s.push_str(&format!(" {} PSNR / HF-PSNR / HF ratio |", r.label));
        }
        s.push_str("\n|---|");
        for _ in &self.rows {
            s.push_str("---:|");
        }
        s.push('\n');
        for (i, name) in self.images.iter().enumerate() {
            s.push_str(&format!("| {name} |"));
            for r in &self.rows {
                let m = r.per_image[i];
                s.push_str(&format!(" {:.2} / {:.2} / {:.3} |", m.psnr, m.hf_psnr, m.hf_ratio));
            }
            s.push('\n');
        }
        s
    }

    /// What the command prints: the device, the table of means, the per-image table.
    pub fn text(&self) -> String {
        format!("device: {}\n\n{}\n{}", self.device, self.markdown(), self.markdown_per_image())
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "device": self.device,
            "images": self.images,
            "metrics": "psnr: RGB, peak 1; ssim: mean over RGB of 11x11 Gaussian (sigma 1.5) SSIM; hf_psnr: PSNR of (image - GaussianBlur(image, sigma 2)) vs the ground truth's; hf_ratio: high-frequency energy of the output / of the ground truth",
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "model": r.label,
                "mean": r.mean.to_json(),
                "per_image": r.per_image.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
                "seconds": r.seconds,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Run the experiment on colour photos.
pub fn compare(images: &[PathBuf], opts: &CompareOptions) -> Result<Report> {
    if images.is_empty() {
        return Err(Error::Data("compare needs at least one image".into()));
    }
    if opts.models.is_empty() {
        return Err(Error::Data("compare needs at least one model".into()));
    }
    for p in [&opts.out, &opts.json].into_iter().flatten() {
        crate::imageio::check_writable(p)?;
    }
    let pics: Vec<Picture> = images.iter().map(|p| crate::imageio::read(p)).collect::<Result<_>>()?;
    for (p, path) in pics.iter().zip(images) {
        if p.is_gray() {
            log::warn!("{} is a gray image: its ground truth has no colour", path.display());
        }
    }
    let ctx = crate::infer::open_device(opts.device, opts.adapter.as_deref())?;
    let preset = Preset::Colorize;
    let mut runs: Vec<(String, String, Option<SkipSelection>)> =
        opts.models.iter().map(|m| (m.clone(), m.clone(), None)).collect();
    if let Some(sel) = &opts.ablate {
        let first = &opts.models[0];
        runs.push((format!("{first}, skips ablated ({sel})"), first.clone(), Some(sel.clone())));
    }
    let mut rows = Vec::new();
    let mut outputs: Vec<Vec<Picture>> = Vec::new();
    for (label, spec, ablate) in runs {
        let (model, _) = crate::infer::load_model(&spec)?;
        let iopts = InferOptions { ablate, tile: opts.tile, progress: false, ..Default::default() };
        let mut engine = Engine::new(model, ctx.clone(), &preset, iopts)?;
        let t0 = std::time::Instant::now();
        let mut per = Vec::new();
        let mut outs = Vec::new();
        for pic in &pics {
            let (out, _) = crate::infer::infer_picture(&mut engine, &preset, pic)?;
            per.push(metrics([&out.planes[0], &out.planes[1], &out.planes[2]], pic.rgb(), pic.width, pic.height));
            outs.push(out);
        }
        let seconds = t0.elapsed().as_secs_f64();
        rows.push(Row { label, mean: Metrics::mean(&per), per_image: per, seconds });
        outputs.push(outs);
    }
    let device = match &ctx {
        Some(c) => c.describe(),
        None => "CPU reference".into(),
    };
    let report = Report {
        device,
        images: images
            .iter()
            .map(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
            .collect(),
        rows,
    };
    if let Some(path) = &opts.out {
        let pic = side_by_side(&pics, &outputs, opts.panel_height.max(16));
        crate::imageio::write(path, &pic, false)?;
    }
    if let Some(path) = &opts.json {
        crate::io_util::write_atomic(path, format!("{:#}\n", report.to_json()).as_bytes())?;
    }
    Ok(report)
}

/// The window (x, y, w, h), a quarter of the image's width and height, with the most
/// high-frequency energy in the ground truth.
fn detail_window(pic: &Picture) -> (usize, usize, usize, usize) {
    let (w, h) = (pic.width, pic.height);
    let (cw, ch) = ((w / 4).max(1), (h / 4).max(1));
    let band = high_band(&pic.luma(), w, h);
    // integral image of the band energy
    let mut ii = vec![0f64; (w + 1) * (h + 1)];
    for y in 0..h {
        for x in 0..w {
            ii[(y + 1) * (w + 1) + x + 1] =
                band[y * w + x].powi(2) + ii[y * (w + 1) + x + 1] + ii[(y + 1) * (w + 1) + x] - ii[y * (w + 1) + x];
        }
    }
    let sum = |x: usize, y: usize| {
        ii[(y + ch) * (w + 1) + x + cw] - ii[y * (w + 1) + x + cw] - ii[(y + ch) * (w + 1) + x] + ii[y * (w + 1) + x]
    };
    let (sx, sy) = ((cw / 4).max(1), (ch / 4).max(1));
    let mut best = (0, 0, f64::NEG_INFINITY);
    let mut y = 0;
    while y + ch <= h {
        let mut x = 0;
        while x + cw <= w {
            let s = sum(x, y);
            if s > best.2 {
                best = (x, y, s);
            }
            x += sx;
        }
        y += sy;
    }
    (best.0, best.1, cw, ch)
}

fn rgb_planes(p: &Picture) -> Vec<Vec<f32>> {
    p.rgb().iter().map(|c| c.to_vec()).collect()
}

fn crop_planes(planes: &[Vec<f32>], w: usize, (x0, y0, cw, ch): (usize, usize, usize, usize)) -> Vec<Vec<f32>> {
    planes
        .iter()
        .map(|p| (y0..y0 + ch).flat_map(|y| p[y * w + x0..y * w + x0 + cw].iter().copied()).collect())
        .collect()
}

/// Nearest-neighbour enlargement (for the zoomed crops: the pixels stay visible).
fn enlarge_nearest(planes: &[Vec<f32>], w: usize, h: usize, nw: usize, nh: usize) -> Vec<Vec<f32>> {
    planes
        .iter()
        .map(|p| {
            let mut o = Vec::with_capacity(nw * nh);
            for y in 0..nh {
                let sy = (y * h / nh).min(h - 1);
                for x in 0..nw {
                    o.push(p[sy * w + (x * w / nw).min(w - 1)]);
                }
            }
            o
        })
        .collect()
}

/// The side-by-side picture: per photo two rows, the whole images (input luminance, ground
/// truth, each model's output) and below them the most detailed quarter enlarged; a red frame
/// marks that quarter on the ground truth.
pub fn side_by_side(pics: &[Picture], outputs: &[Vec<Picture>], panel_h: usize) -> Picture {
    let gap = 4usize;
    let ncols = 2 + outputs.len();
    // panel widths per photo (height panel_h), canvas width = widest row
    let widths: Vec<usize> = pics.iter().map(|p| (p.width * panel_h).div_ceil(p.height).max(1)).collect();
    let cw = widths.iter().map(|w| ncols * w + (ncols - 1) * gap).max().unwrap_or(1);
    let chh = pics.len() * (2 * panel_h + gap) + (pics.len().saturating_sub(1)) * gap * 3;
    let mut canvas = vec![vec![1f32; cw * chh]; 3];
    let mut blit = |planes: &[Vec<f32>], pw: usize, ph: usize, ox: usize, oy: usize| {
        for (c, plane) in canvas.iter_mut().enumerate() {
            for y in 0..ph {
                for x in 0..pw {
                    plane[(oy + y) * cw + ox + x] = plane_get(planes, c, y * pw + x).clamp(0.0, 1.0);
                }
            }
        }
    };
    let mut oy = 0;
    for (i, pic) in pics.iter().enumerate() {
        let (w, h) = (pic.width, pic.height);
        let pw = widths[i];
        let win = detail_window(pic);
        let luma = pic.luma();
        let mut cols: Vec<Vec<Vec<f32>>> = vec![vec![luma.clone(), luma.clone(), luma], rgb_planes(pic)];
        for o in outputs {
            cols.push(rgb_planes(&o[i]));
        }
        for (j, planes) in cols.iter().enumerate() {
            let ox = j * (pw + gap);
            let mut full = crate::imageio::resize_planes(planes, w, h, pw, panel_h);
            if j == 1 {
                // red frame (2 px) around the zoomed window on the ground truth
                let (fx0, fy0) = (win.0 * pw / w, win.1 * panel_h / h);
                let (fx1, fy1) =
                    (((win.0 + win.2) * pw / w).min(pw - 1), ((win.1 + win.3) * panel_h / h).min(panel_h - 1));
                for (c, plane) in full.iter_mut().enumerate() {
                    let v = if c == 0 { 1.0 } else { 0.0 };
                    for t in 0..2 {
                        let (x0, y0) = ((fx0 + t).min(fx1), (fy0 + t).min(fy1));
                        let (x1, y1) = (fx1.saturating_sub(t).max(x0), fy1.saturating_sub(t).max(y0));
                        for x in x0..=x1 {
                            plane[y0 * pw + x] = v;
                            plane[y1 * pw + x] = v;
                        }
                        for y in y0..=y1 {
                            plane[y * pw + x0] = v;
                            plane[y * pw + x1] = v;
                        }
                    }
                }
            }
            blit(&full, pw, panel_h, ox, oy);
            let zoom = enlarge_nearest(&crop_planes(planes, w, win), win.2, win.3, pw, panel_h);
            blit(&zoom, pw, panel_h, ox, oy + panel_h + gap);
        }
        oy += 2 * panel_h + gap + 3 * gap;
    }
    Picture::new(cw, chh, canvas)
}

fn plane_get(planes: &[Vec<f32>], c: usize, i: usize) -> f32 {
    planes.get(c).or_else(|| planes.first()).map(|p| p[i]).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texture(w: usize, h: usize, seed: u32) -> Vec<f32> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                0.5 + 0.25 * (x * 0.9 + seed as f32).sin() * (y * 0.7).cos() + 0.1 * ((x * 0.13 + y * 0.05).sin())
            })
            .collect()
    }

    #[test]
    fn identical_images_score_perfectly() {
        let (w, h) = (40, 30);
        let p = texture(w, h, 1);
        let m = metrics([&p, &p, &p], [&p, &p, &p], w, h);
        assert!(m.psnr.is_infinite() && m.hf_psnr.is_infinite());
        assert!((m.ssim - 1.0).abs() < 1e-9, "{}", m.ssim);
        assert!((m.hf_ratio - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_a_constant_offset() {
        let a = vec![0.5f32; 100];
        let b = vec![0.6f32; 100];
        // MSE 0.01 -> 20 dB
        assert!((psnr(&[&a], &[&b]) - 20.0).abs() < 1e-4);
    }

    #[test]
    fn blur_loses_detail_and_the_measures_see_it() {
        let (w, h) = (64, 48);
        let gt = texture(w, h, 2);
        let g64: Vec<f64> = gt.iter().map(|&v| v as f64).collect();
        let blurred: Vec<f32> = gaussian_blur(&g64, w, h, 1.5, 5).into_iter().map(|v| v as f32).collect();
        let sharp_noise: Vec<f32> =
            gt.iter().enumerate().map(|(i, v)| v + if i % 2 == 0 { 0.01 } else { -0.01 }).collect();
        let mb = metrics([&blurred, &blurred, &blurred], [&gt, &gt, &gt], w, h);
        let mn = metrics([&sharp_noise, &sharp_noise, &sharp_noise], [&gt, &gt, &gt], w, h);
        assert!(mb.hf_ratio < 0.5, "blur keeps {} of the detail energy", mb.hf_ratio);
        assert!(mb.ssim < mn.ssim && mb.ssim < 0.99);
        assert!(mn.hf_psnr > mb.hf_psnr);
        // a constant image: no structure
        let flat = vec![0.5f32; w * h];
        let mf = metrics([&flat, &flat, &flat], [&gt, &gt, &gt], w, h);
        assert!(mf.hf_ratio < 1e-12 && mf.ssim < mb.ssim);
    }

    #[test]
    fn ssim_matches_the_closed_form_for_a_scaled_constant() {
        // two constants a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
        let (w, h) = (20, 20);
        let (a, b) = (0.4f32, 0.6f32);
        let c1 = 0.0001f64;
        let want = (2.0 * 0.4 * 0.6 + c1) / (0.16 + 0.36 + c1);
        let got = ssim_plane(&vec![a; w * h], &vec![b; w * h], w, h);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
