//! Conv (1-D and 2-D; any kernel, strides, pads, auto_pad, dilations, groups incl. depthwise,
//! optional bias), with an optional fused activation in the epilogue.

use super::elementwise::Activation;
use super::{InInfo, OutInfo, float_input, input, par_chunks};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Tensor, checked_numel, fmt_shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn parse(a: &Attrs) -> OpResult<AutoPad> {
        Ok(match a.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => op_bail!("attribute auto_pad='{other}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"),
        })
    }
}

/// Spatial attributes shared by Conv and the pools.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub auto_pad: AutoPad,
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
}

impl Window {
    pub fn parse(a: &Attrs) -> OpResult<Window> {
        let w = Window {
            auto_pad: AutoPad::parse(a)?,
            kernel_shape: a.usizes("kernel_shape")?,
            strides: a.usizes("strides")?,
            dilations: a.usizes("dilations")?,
            pads: a.usizes("pads")?,
        };
        for (name, v) in [("strides", &w.strides), ("dilations", &w.dilations), ("kernel_shape", &w.kernel_shape)] {
            if let Some(v) = v
                && v.contains(&0)
            {
                op_bail!("attribute {name}={v:?} contains 0");
            }
        }
        Ok(w)
    }

    /// Resolve per-axis (stride, dilation, pad_begin, pad_end, out) for spatial input sizes and
    /// kernel sizes. `ceil` is the pools' ceil_mode.
    pub fn resolve(&self, input: &[usize], kernel: &[usize], ceil: bool) -> OpResult<Vec<Axis>> {
        let r = input.len();
        let get = |v: &Option<Vec<usize>>, name: &str| -> OpResult<Vec<usize>> {
            match v {
                None => Ok(vec![1; r]),
                Some(v) if v.len() == r => Ok(v.clone()),
                Some(v) => {
                    op_bail!("attribute {name}={v:?} should have {r} values for {r} spatial axes")
                }
            }
        };
        let strides = get(&self.strides, "strides")?;
        let dil = get(&self.dilations, "dilations")?;
        if let Some(k) = &self.kernel_shape
            && k.as_slice() != kernel
        {
            op_bail!("attribute kernel_shape={k:?} does not match the weight's kernel {kernel:?}");
        }
        let pads = match &self.pads {
            None => vec![0; 2 * r],
            Some(p) if p.len() == 2 * r => p.clone(),
            Some(p) => op_bail!("attribute pads={p:?} should have {} values", 2 * r),
        };
        let mut out = Vec::with_capacity(r);
        for i in 0..r {
            let (s, d, k, n) = (strides[i], dil[i], kernel[i], input[i]);
            let ek = (k - 1) * d + 1;
            let (pb, pe, o) = match self.auto_pad {
                AutoPad::NotSet => {
                    let (pb, pe) = (pads[i], pads[i + r]);
                    let span = n + pb + pe;
                    if span < ek {
                        op_bail!(
                            "kernel extent {ek} (kernel {k}, dilation {d}) is larger than the padded input {span} on spatial axis {i}"
                        );
                    }
                    let mut o = if ceil { (span - ek).div_ceil(s) + 1 } else { (span - ek) / s + 1 };
                    // the last window must start inside the input or the left padding
                    if ceil && (o - 1) * s >= n + pb {
                        o -= 1;
                    }
                    (pb, pe, o)
                }
                AutoPad::Valid => {
                    if n < ek {
                        op_bail!("kernel extent {ek} is larger than the input {n} on spatial axis {i}");
                    }
                    let o = if ceil { (n - ek).div_ceil(s) + 1 } else { (n - ek) / s + 1 };
                    (0, 0, o)
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = n.div_ceil(s);
                    let total = ((o - 1) * s + ek).saturating_sub(n);
                    let small = total / 2;
                    if self.auto_pad == AutoPad::SameUpper {
                        (small, total - small, o)
                    } else {
                        (total - small, small, o)
                    }
                }
            };
            if o == 0 {
                op_bail!("output size is 0 on spatial axis {i}");
            }
            out.push(Axis { stride: s, dilation: d, kernel: k, pad_begin: pb, pad_end: pe, input: n, output: o });
        }
        Ok(out)
    }
}

/// One spatial axis of a sliding window, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    pub stride: usize,
    pub dilation: usize,
    pub kernel: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub input: usize,
    pub output: usize,
}

impl Axis {
    /// A unit axis (for 1-D ops treated as 2-D with H = 1).
    pub fn unit() -> Axis {
        Axis { stride: 1, dilation: 1, kernel: 1, pad_begin: 0, pad_end: 0, input: 1, output: 1 }
    }
    /// Input coordinate of output `o` and kernel tap `k` (may be outside the input).
    #[inline]
    pub fn src(&self, o: usize, k: usize) -> isize {
        (o * self.stride + k * self.dilation) as isize - self.pad_begin as isize
    }
    /// Range of outputs `o` for which tap `k` lands inside the input.
    pub fn valid_range(&self, k: usize) -> (usize, usize) {
        let off = k * self.dilation;
        // need pad_begin <= o*s + off < input + pad_begin
        let lo = if self.pad_begin > off { (self.pad_begin - off).div_ceil(self.stride) } else { 0 };
        let lim = self.input + self.pad_begin; // o*s + off < lim
        let hi = if lim > off { (lim - off - 1) / self.stride + 1 } else { 0 };
        (lo.min(self.output), hi.min(self.output).max(lo.min(self.output)))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub window: Window,
    pub group: usize,
    /// Activation fused into the epilogue by the graph passes (not part of ONNX Conv).
    pub act: Activation,
    /// Residual Add fused by the graph passes: the node's input 3 (same shape as the output) is
    /// added after `act`, then `post_act` is applied: `post_act(act(conv + bias) + input3)`.
    pub residual: bool,
    pub post_act: Activation,
}

/// A convolution's resolved geometry; 1-D convs are 2-D with `h = kh = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
    pub y: Axis,
    pub x: Axis,
    /// Spatial rank of the ONNX tensors (1 or 2).
    pub rank: usize,
}

impl ConvGeom {
    pub fn out_shape(&self) -> Vec<usize> {
        if self.rank == 1 {
            vec![self.n, self.m, self.x.output]
        } else {
            vec![self.n, self.m, self.y.output, self.x.output]
        }
    }
    pub fn c_per_group(&self) -> usize {
        self.c / self.group
    }
    pub fn m_per_group(&self) -> usize {
        self.m / self.group
    }
}

impl Conv {
    pub fn parse(a: &Attrs) -> OpResult<Conv> {
        let group = a.int("group", 1)?;
        if group < 1 {
            op_bail!("attribute group={group} must be >= 1");
        }
        Ok(Conv { window: Window::parse(a)?, group: group as usize, act: None, residual: false, post_act: None })
    }

    pub fn geom(&self, x: &[usize], w: &[usize]) -> OpResult<ConvGeom> {
        if !(x.len() == 3 || x.len() == 4) {
            op_bail!("only 1-D and 2-D convolutions are supported; input has shape {}", fmt_shape(x));
        }
        if w.len() != x.len() {
            op_bail!("weight shape {} does not fit input shape {}", fmt_shape(w), fmt_shape(x));
        }
        let (n, c, m) = (x[0], x[1], w[0]);
        let g = self.group;
        if c % g != 0 || m % g != 0 {
            op_bail!("group={g} does not divide input channels {c} and output channels {m}");
        }
        if w[1] != c / g {
            op_bail!(
                "weight shape {} expects {} input channels per group, but the input {} has {c} channels and group={g}",
                fmt_shape(w),
                w[1],
                fmt_shape(x)
            );
        }
        let axes = self.window.resolve(&x[2..], &w[2..], false)?;
        let (y, xa) = if axes.len() == 1 { (Axis::unit(), axes[0]) } else { (axes[0], axes[1]) };
        let geom = ConvGeom { n, c, m, group: g, y, x: xa, rank: x.len() - 2 };
        checked_numel(&geom.out_shape())?;
        Ok(geom)
    }

    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = float_input(ins, 0)?;
        let w = float_input(ins, 1)?;
        let g = self.geom(x.shape, w.shape)?;
        if let Some(b) = ins.get(2).copied().flatten()
            && b.shape != [g.m]
        {
            op_bail!("bias shape {} should be [{}]", fmt_shape(b.shape), g.m);
        }
        if self.residual {
            let r = float_input(ins, 3)?;
            if r.shape != g.out_shape().as_slice() {
                op_bail!(
                    "fused residual shape {} should equal the output shape {}",
                    fmt_shape(r.shape),
                    fmt_shape(&g.out_shape())
                );
            }
        }
        Ok((x.dtype, g.out_shape()))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let w = input(ins, 1)?;
        let bias = ins.get(2).copied().flatten();
        let res = if self.residual { Some(input(ins, 3)?) } else { None };
        let (dt, shape) =
            self.infer(&[Some(InInfo::of(x)), Some(InInfo::of(w)), bias.map(InInfo::of), res.map(InInfo::of)])?;
        let g = self.geom(&x.shape, &w.shape)?;
        let mut out = conv2d_ref(&g, x.as_f32()?, w.as_f32()?, bias.map(|b| b.as_f32()).transpose()?, self.act);
        if let Some(r) = res {
            // the same rounding as the unfused Add: the conv's f32 output plus the residual
            for (o, &r) in out.iter_mut().zip(r.as_f32()?.iter()) {
                let v = *o as f64 + r as f64;
                *o = match self.post_act {
                    Some(k) => k.apply(v as f32 as f64) as f32,
                    None => v as f32,
                };
            }
        }
        Ok(Tensor::with_dtype(dt, shape, crate::tensor::Data::F32(out)))
    }
}

/// The reference convolution: f64 accumulation, one output plane per task.
pub fn conv2d_ref(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation) -> Vec<f32> {
    let (oh, ow) = (g.y.output, g.x.output);
    let (ih, iw) = (g.y.input, g.x.input);
    let (cg, mg) = (g.c_per_group(), g.m_per_group());
    let (kh, kw) = (g.y.kernel, g.x.kernel);
    let mut out = vec![0f32; g.n * g.m * oh * ow];
    let xr: Vec<(usize, usize)> = (0..kw).map(|k| g.x.valid_range(k)).collect();
    par_chunks(&mut out, oh * ow, |plane, dst| {
        let (b, oc) = (plane / g.m, plane % g.m);
        let grp = oc / mg;
        let mut acc = vec![bias.map(|b| b[oc] as f64).unwrap_or(0.0); oh * ow];
        for icg in 0..cg {
            let ic = grp * cg + icg;
            let xplane = &x[(b * g.c + ic) * ih * iw..][..ih * iw];
            let wbase = (oc * cg + icg) * kh * kw;
            for ky in 0..kh {
                let (ylo, yhi) = g.y.valid_range(ky);
                for kx in 0..kw {
                    let wv = w[wbase + ky * kw + kx] as f64;
                    if wv == 0.0 {
                        continue;
                    }
                    let (xlo, xhi) = xr[kx];
                    for oy in ylo..yhi {
                        let iy = g.y.src(oy, ky) as usize;
                        let row = &xplane[iy * iw..][..iw];
                        let arow = &mut acc[oy * ow..][..ow];
                        let ix0 = g.x.src(xlo, kx);
                        if g.x.stride == 1 {
                            let ix0 = ix0 as usize;
                            for (a, &v) in arow[xlo..xhi].iter_mut().zip(&row[ix0..ix0 + (xhi - xlo)]) {
                                *a += wv * v as f64;
                            }
                        } else {
                            for ox in xlo..xhi {
                                let ix = g.x.src(ox, kx) as usize;
                                arow[ox] += wv * row[ix] as f64;
                            }
                        }
                    }
                }
            }
        }
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = match act {
                Some(k) => k.apply(a) as f32,
                None => a as f32,
            };
        }
    });
    out
}
