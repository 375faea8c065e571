//! Resize (opset 10-19: nearest with every nearest_mode, linear with or without antialias;
//! half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric,
//! tf_half_pixel_for_nn; scales or sizes, axes, keep_aspect_ratio_policy) and the older Upsample.
//!
//! Both the CPU reference and the GPU kernel work from the same per-axis tap tables
//! ([`ResizePlan`]): for every output coordinate of a resized axis, the source indices and their
//! weights. Interpolation is separable, so N-D resizing is one 1-D pass per resized axis.

use super::{InInfo, OutInfo, float_input, input, norm_axis};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Data, Tensor, checked_numel, fmt_shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Nearest,
    Linear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: Mode,
    pub coord: Coord,
    pub nearest: NearestMode,
    pub antialias: bool,
    pub exclude_outside: bool,
    pub axes: Option<Vec<i64>>,
    pub policy: AspectPolicy,
    /// Input index of `scales` (1 for Resize-10 and Upsample-9, 2 from Resize-11 on).
    pub scales_input: usize,
    /// Upsample-7 takes scales as an attribute.
    pub scales_attr: Option<Vec<f32>>,
}

/// Tap table of one resized axis.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisTaps {
    pub axis: usize,
    pub input: usize,
    pub output: usize,
    /// Taps per output coordinate.
    pub taps: usize,
    /// `output * taps` source indices (clamped into the input) and weights.
    pub index: Vec<u32>,
    pub weight: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResizePlan {
    pub out_shape: Vec<usize>,
    pub axes: Vec<AxisTaps>,
}

impl Resize {
    pub fn parse(a: &Attrs, opset: i64, upsample: bool) -> OpResult<Resize> {
        let mode = match a.string("mode", "nearest")?.as_str() {
            "nearest" => Mode::Nearest,
            "linear" | "bilinear" => Mode::Linear,
            "cubic" => op_bail!("mode='cubic' is not supported (nearest and linear are)"),
            other => op_bail!("mode='{other}' is not supported (nearest and linear are)"),
        };
        if upsample || opset < 11 {
            // Upsample and Resize-10: asymmetric coordinates, floor for nearest.
            let scales_attr = if upsample && opset < 9 {
                Some(a.floats("scales")?.ok_or("attribute 'scales' is required for Upsample before opset 9")?)
            } else {
                None
            };
            return Ok(Resize {
                mode,
                coord: Coord::Asymmetric,
                nearest: NearestMode::Floor,
                antialias: false,
                exclude_outside: false,
                axes: None,
                policy: AspectPolicy::Stretch,
                scales_input: 1,
                scales_attr,
            });
        }
        let coord = match a.string("coordinate_transformation_mode", "half_pixel")?.as_str() {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
            other => op_bail!("coordinate_transformation_mode='{other}' is not supported"),
        };
        let nearest = match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => op_bail!("nearest_mode='{other}' is not supported"),
        };
        let policy = match a.string("keep_aspect_ratio_policy", "stretch")?.as_str() {
            "stretch" => AspectPolicy::Stretch,
            "not_larger" => AspectPolicy::NotLarger,
            "not_smaller" => AspectPolicy::NotSmaller,
            other => op_bail!("keep_aspect_ratio_policy='{other}' is not supported"),
        };
        let antialias = a.int("antialias", 0)? != 0;
        if antialias && mode == Mode::Nearest {
            op_bail!("antialias=1 is not defined for mode='nearest'");
        }
        Ok(Resize {
            mode,
            coord,
            nearest,
            antialias,
            exclude_outside: a.int("exclude_outside", 0)? != 0,
            axes: a.ints("axes")?,
            policy,
            scales_input: 2,
            scales_attr: None,
        })
    }

    /// Work out the output shape and the tap tables from the input shape and the constant
    /// scales / sizes inputs.
    pub fn plan(&self, ins: &[Option<InInfo>]) -> OpResult<ResizePlan> {
        let x = float_input(ins, 0)?;
        let r = x.shape.len();
        let get = |k: usize, what: &str| -> OpResult<Option<Vec<f64>>> {
            match ins.get(k).copied().flatten() {
                None => Ok(None),
                Some(i) => match i.value {
                    None => op_bail!("{what} (input {k}) must be known when the graph is prepared"),
                    Some(t) if t.is_empty() => Ok(None),
                    Some(t) => Ok(Some((0..t.len()).map(|j| t.get_f64(j)).collect())),
                },
            }
        };
        let scales = match &self.scales_attr {
            Some(s) => Some(s.iter().map(|&v| v as f64).collect()),
            None => get(self.scales_input, "scales")?,
        };
        let sizes = if self.scales_input == 2 { get(3, "sizes")? } else { None };
        let axes: Vec<usize> = match &self.axes {
            None => (0..r).collect(),
            Some(a) => {
                let mut v = Vec::new();
                for &ax in a {
                    let n = norm_axis(ax, r, "axis")?;
                    if v.contains(&n) {
                        op_bail!("axes {a:?} repeat an axis");
                    }
                    v.push(n);
                }
                v
            }
        };
        let mut scale = vec![1f64; r];
        let mut out: Vec<usize> = x.shape.to_vec();
        match (scales, sizes) {
            (Some(_), Some(_)) => op_bail!("only one of scales and sizes may be given"),
            (None, None) => op_bail!("one of scales and sizes must be given"),
            (Some(s), None) => {
                if s.len() != axes.len() {
                    op_bail!("scales has {} values for {} axes of input {}", s.len(), axes.len(), fmt_shape(x.shape));
                }
                for (k, &ax) in axes.iter().enumerate() {
                    if !(s[k] > 0.0) || !s[k].is_finite() {
                        op_bail!("scale {} on axis {ax} must be positive", s[k]);
                    }
                    scale[ax] = s[k];
                    out[ax] = (s[k] * x.shape[ax] as f64).floor() as usize;
                }
            }
            (None, Some(sz)) => {
                if sz.len() != axes.len() {
                    op_bail!("sizes has {} values for {} axes of input {}", sz.len(), axes.len(), fmt_shape(x.shape));
                }
                for (k, &ax) in axes.iter().enumerate() {
                    if sz[k] < 0.0 {
                        op_bail!("size {} on axis {ax} is negative", sz[k]);
                    }
                    if x.shape[ax] == 0 {
                        op_bail!("cannot resize an empty axis {ax}");
                    }
                    scale[ax] = sz[k] / x.shape[ax] as f64;
                    out[ax] = sz[k] as usize;
                }
                if self.policy != AspectPolicy::Stretch {
                    let it = axes.iter().map(|&a| scale[a]);
                    let s = if self.policy == AspectPolicy::NotLarger {
                        it.fold(f64::INFINITY, f64::min)
                    } else {
                        it.fold(0.0, f64::max)
                    };
                    for &ax in &axes {
                        scale[ax] = s;
                        out[ax] = (s * x.shape[ax] as f64 + 0.5) as usize;
                    }
                }
            }
        }
        checked_numel(&out)?;
        let mut tables = Vec::new();
        for &ax in &axes {
            if out[ax] == x.shape[ax] && scale[ax] == 1.0 {
                continue;
            }
            if out[ax] == 0 {
                op_bail!("output size on axis {ax} is 0");
            }
            tables.push(self.axis_taps(ax, x.shape[ax], out[ax], scale[ax]));
        }
        Ok(ResizePlan { out_shape: out, axes: tables })
    }

    /// Source coordinate of output coordinate `o`.
    fn source(&self, o: usize, input: usize, output: usize, scale: f64) -> f64 {
        let o = o as f64;
        let out_f = scale * input as f64;
        match self.coord {
            Coord::HalfPixel => (o + 0.5) / scale - 0.5,
            Coord::HalfPixelSymmetric => {
                let adjustment = output as f64 / out_f;
                let center = input as f64 / 2.0;
                let offset = center * (1.0 - adjustment);
                offset + (o + 0.5) / scale - 0.5
            }
            Coord::PytorchHalfPixel => {
                if output > 1 {
                    (o + 0.5) / scale - 0.5
                } else {
                    -0.5
                }
            }
            Coord::AlignCorners => {
                if output == 1 {
                    0.0
                } else {
                    o * (input as f64 - 1.0) / (output as f64 - 1.0)
                }
            }
            Coord::Asymmetric => o / scale,
            Coord::TfHalfPixelForNn => (o + 0.5) / scale,
        }
    }

    fn axis_taps(&self, axis: usize, input: usize, output: usize, scale: f64) -> AxisTaps {
        let last = input as i64 - 1;
        let clamp = |i: i64| i.clamp(0, last) as u32;
        let mut per: Vec<Vec<(u32, f64)>> = Vec::with_capacity(output);
        for o in 0..output {
            let s = self.source(o, input, output, scale);
            let taps: Vec<(u32, f64)> = match self.mode {
                Mode::Nearest => {
                    let f = s.floor();
                    let frac = s - f;
                    let i = if frac == 0.0 {
                        f
                    } else {
                        match self.nearest {
                            NearestMode::RoundPreferFloor => {
                                if frac <= 0.5 {
                                    f
                                } else {
                                    f + 1.0
                                }
                            }
                            NearestMode::RoundPreferCeil => {
                                if frac < 0.5 {
                                    f
                                } else {
                                    f + 1.0
                                }
                            }
                            NearestMode::Floor => f,
                            NearestMode::Ceil => f + 1.0,
                        }
                    };
                    vec![(clamp(i as i64), 1.0)]
                }
                Mode::Linear if !self.antialias || scale >= 1.0 => {
                    let f = s.floor();
                    let frac = s - f;
                    let i0 = f as i64;
                    let mut t = vec![(clamp(i0), 1.0 - frac), (clamp(i0 + 1), frac)];
                    if self.exclude_outside {
                        for (k, tap) in t.iter_mut().enumerate() {
                            let i = i0 + k as i64;
                            if i < 0 || i > last {
                                tap.1 = 0.0;
                            }
                        }
                    }
                    t
                }
                Mode::Linear => {
                    // antialiased downscaling: a triangle filter stretched by 1/scale
                    let support = 1.0 / scale;
                    let lo = (s - support).floor() as i64;
                    let hi = (s + support).ceil() as i64;
                    let mut t = Vec::new();
                    for i in lo..=hi {
                        let w = (1.0 - ((i as f64 - s) * scale).abs()).max(0.0);
                        if w > 0.0 && !(self.exclude_outside && (i < 0 || i > last)) {
                            t.push((clamp(i), w));
                        }
                    }
                    t
                }
            };
            // normalise (antialias, exclude_outside)
            let sum: f64 = taps.iter().map(|t| t.1).sum();
            let taps = if sum > 0.0 && (sum - 1.0).abs() > 1e-12 {
                taps.into_iter().map(|(i, w)| (i, w / sum)).collect()
            } else {
                taps
            };
            per.push(taps);
        }
        let taps = per.iter().map(|t| t.len()).max().unwrap_or(1).max(1);
        let mut index = Vec::with_capacity(output * taps);
        let mut weight = Vec::with_capacity(output * taps);
        for t in per {
            for k in 0..taps {
                let (i, w) = t.get(k).copied().unwrap_or((t.first().map(|x| x.0).unwrap_or(0), 0.0));
                index.push(i);
                weight.push(w as f32);
            }
        }
        AxisTaps { axis, input, output, taps, index, weight }
    }

    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = float_input(ins, 0)?;
        Ok((x.dtype, self.plan(ins)?.out_shape))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        let plan = self.plan(&infos)?;
        let mut shape = x.shape.clone();
        let mut data: Vec<f64> = x.as_f32()?.iter().map(|&v| v as f64).collect();
        for t in &plan.axes {
            let outer: usize = shape[..t.axis].iter().product();
            let inner: usize = shape[t.axis + 1..].iter().product();
            let mut next = vec![0f64; outer * t.output * inner];
            for o in 0..outer {
                let src = &data[o * t.input * inner..][..t.input * inner];
                let dst = &mut next[o * t.output * inner..][..t.output * inner];
                for j in 0..t.output {
                    let d = &mut dst[j * inner..][..inner];
                    for k in 0..t.taps {
                        let w = t.weight[j * t.taps + k] as f64;
                        if w == 0.0 {
                            continue;
                        }
                        let s = &src[t.index[j * t.taps + k] as usize * inner..][..inner];
                        for (a, &b) in d.iter_mut().zip(s) {
                            *a += w * b;
                        }
                    }
                }
            }
            shape[t.axis] = t.output;
            data = next;
        }
        Ok(Tensor::with_dtype(x.dtype, plan.out_shape, Data::F32(data.into_iter().map(|v| v as f32).collect())))
    }
}
