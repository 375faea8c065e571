//! Pre- and post-processing presets of `unet-gpu infer`:
//!
//! - `colorize` (the shipped models): the network gets the luminance
//!   Y = 0.299 R + 0.587 G + 0.114 B of the sRGB values in [0, 1] as its single channel and
//!   returns RGB in [0, 1]; the input's alpha is kept.
//! - `mask` (u2netp-style salient-object models, as rembg runs them): RGB divided by the image's
//!   maximum, then normalised with the ImageNet mean (0.485, 0.456, 0.406) and standard deviation
//!   (0.229, 0.224, 0.225); the first output channel is min-max normalised to [0, 1] and written
//!   as a gray PNG, or with `--apply-mask` as the input with that mask as its alpha.
//! - `raw`: channel c of the network input is `(v * scale - mean[c]) / std[c]` with v the image
//!   value in [0, 1] (defaults: scale 1, mean 0, std 1; one value applies to every channel); the
//!   model's channel count picks the image channels: 1 = luminance, 3 = RGB, 4 = RGBA. The
//!   output is clamped to [0, 1] and written as gray (1 channel), RGB (3) or RGBA (4); with
//!   another count its first channel is written as gray.

use crate::error::{Error, Result};
use crate::imageio::Picture;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Clone, Debug, PartialEq)]
pub enum Preset {
    Colorize,
    Mask {
        /// Write the input with the mask as alpha instead of the gray mask.
        apply: bool,
    },
    Raw(RawParams),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawParams {
    /// One value for every channel, or one per channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub scale: f32,
}

impl Default for RawParams {
    fn default() -> Self {
        RawParams { mean: vec![0.0], std: vec![1.0], scale: 1.0 }
    }
}

/// Parse a comma-separated list of numbers (`--mean 0.5,0.5,0.5`).
pub fn parse_floats(s: &str, what: &str) -> Result<Vec<f32>> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            p.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                Error::Data(format!("{what}: '{p}' is not a number (expected a list such as 0.5,0.5,0.5)"))
            })
        })
        .collect()
}

fn per_channel(v: &[f32], c: usize, what: &str) -> Result<Vec<f32>> {
    match v.len() {
        1 => Ok(vec![v[0]; c]),
        n if n == c => Ok(v.to_vec()),
        n => Err(Error::Data(format!("{what} has {n} values, the model input has {c} channels (give 1 or {c})"))),
    }
}

impl Preset {
    pub fn name(&self) -> &'static str {
        match self {
            Preset::Colorize => "colorize",
            Preset::Mask { .. } => "mask",
            Preset::Raw(_) => "raw",
        }
    }

    /// Number of input channels the preset feeds, given the model's declared channel count.
    pub fn input_channels(&self, model_c: Option<usize>) -> Result<usize> {
        let want = match self {
            Preset::Colorize => Some(1),
            Preset::Mask { .. } => Some(3),
            Preset::Raw(_) => None,
        };
        match (want, model_c) {
            (Some(w), Some(m)) if w != m => Err(Error::Data(format!(
                "the {} preset feeds {w} channel(s) but the model's input has {m}; choose another --preset (raw feeds the model's own channel count)",
                self.name()
            ))),
            (Some(w), _) => Ok(w),
            (None, Some(m)) if matches!(m, 1 | 3 | 4) => Ok(m),
            (None, Some(m)) => Err(Error::Data(format!(
                "the raw preset feeds 1 (luminance), 3 (RGB) or 4 (RGBA) channels; the model's input has {m}"
            ))),
            (None, None) => Ok(3),
        }
    }

    /// The network input planes (`c` of them) for a picture.
    pub fn preprocess(&self, pic: &Picture, c: usize) -> Result<Vec<Vec<f32>>> {
        Ok(match self {
            Preset::Colorize => vec![pic.luma()],
            Preset::Mask { .. } => {
                let rgb = pic.rgb();
                let mx = rgb.iter().flat_map(|p| p.iter()).fold(0f32, |a, &b| a.max(b));
                let mx = if mx > 0.0 { mx } else { 1.0 };
                (0..3)
                    .map(|k| rgb[k].iter().map(|&v| (v / mx - IMAGENET_MEAN[k]) / IMAGENET_STD[k]).collect())
                    .collect()
            }
            Preset::Raw(r) => {
                let mean = per_channel(&r.mean, c, "--mean")?;
                let std = per_channel(&r.std, c, "--std")?;
                if let Some(z) = std.iter().find(|&&s| s == 0.0) {
                    return Err(Error::Data(format!("--std has a zero value ({z})")));
                }
                let src: Vec<Vec<f32>> = match c {
                    1 => vec![pic.luma()],
                    3 => pic.rgb().iter().map(|p| p.to_vec()).collect(),
                    4 => {
                        let mut v: Vec<Vec<f32>> = pic.rgb().iter().map(|p| p.to_vec()).collect();
                        v.push(pic.alpha().map(|a| a.to_vec()).unwrap_or_else(|| vec![1.0; pic.pixels()]));
                        v
                    }
                    _ => return Err(Error::Data(format!("the raw preset cannot feed {c} channels"))),
                };
                src.into_iter()
                    .enumerate()
                    .map(|(k, p)| p.into_iter().map(|v| (v * r.scale - mean[k]) / std[k]).collect())
                    .collect()
            }
        })
    }

    /// Turn the network's output planes (any resolution) into values in [0, 1], the planes to
    /// write: colorize 3 (RGB), mask 1, raw 1, 3 or 4.
    pub fn postprocess(&self, out: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let clamp = |p: Vec<f32>| -> Vec<f32> {
            p.into_iter().map(|v| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }).collect()
        };
        match self {
            Preset::Colorize => {
                if out.len() < 3 {
                    return Err(Error::Data(format!(
                        "the colorize preset needs 3 output channels (RGB) but the model gives {}; choose another --preset",
                        out.len()
                    )));
                }
                Ok(out.into_iter().take(3).map(clamp).collect())
            }
            Preset::Mask { .. } => {
                let m = out.into_iter().next().ok_or_else(|| Error::Data("the model gave no output channel".into()))?;
                let (lo, hi) = m
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                let range = hi - lo;
                Ok(vec![
                    m.into_iter()
                        .map(|v| if range > 0.0 && v.is_finite() { ((v - lo) / range).clamp(0.0, 1.0) } else { 0.0 })
                        .collect(),
                ])
            }
            Preset::Raw(_) => {
                let n = out.len();
                let keep = if matches!(n, 1 | 3 | 4) {
                    n
                } else {
                    log::warn!("the model gives {n} output channels; writing the first as a gray picture");
                    1
                };
                Ok(out.into_iter().take(keep).map(clamp).collect())
            }
        }
    }

    /// The picture to write, from post-processed planes at the input picture's size.
    pub fn compose(&self, planes: Vec<Vec<f32>>, input: &Picture) -> Picture {
        let (w, h) = (input.width, input.height);
        let mut planes = planes;
        match self {
            Preset::Mask { apply: true } => {
                let mask = planes.pop().unwrap_or_default();
                let alpha: Vec<f32> = match input.alpha() {
                    Some(a) => mask.iter().zip(a).map(|(m, a)| m * a).collect(),
                    None => mask,
                };
                let mut p: Vec<Vec<f32>> = input.rgb().iter().map(|c| c.to_vec()).collect();
                if input.is_gray() {
                    p.truncate(1);
                }
                p.push(alpha);
                Picture::new(w, h, p)
            }
            Preset::Mask { apply: false } => Picture::new(w, h, planes),
            Preset::Colorize | Preset::Raw(_) => {
                if matches!(planes.len(), 1 | 3)
                    && let Some(a) = input.alpha()
                {
                    planes.push(a.to_vec());
                }
                Picture::new(w, h, planes)
            }
        }
    }
}
