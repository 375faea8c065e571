//! ConvTranspose (1-D and 2-D; strides, pads, output_padding, output_shape, dilations, group,
//! auto_pad), with an optional fused activation.

use super::conv::AutoPad;
use super::elementwise::Activation;
use super::{InInfo, OutInfo, float_input, input, par_chunks};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Data, Tensor, checked_numel, fmt_shape};

#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    pub auto_pad: AutoPad,
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub output_padding: Option<Vec<usize>>,
    pub output_shape: Option<Vec<usize>>,
    pub group: usize,
    pub act: Activation,
}

/// One spatial axis of a transposed convolution: output `o` receives input `i` through tap `k`
/// when `o = i * stride + k * dilation - pad_begin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TAxis {
    pub stride: usize,
    pub dilation: usize,
    pub kernel: usize,
    pub pad_begin: isize,
    pub input: usize,
    pub output: usize,
}

impl TAxis {
    fn unit() -> TAxis {
        TAxis { stride: 1, dilation: 1, kernel: 1, pad_begin: 0, input: 1, output: 1 }
    }
    #[inline]
    pub fn dst(&self, i: usize, k: usize) -> isize {
        (i * self.stride + k * self.dilation) as isize - self.pad_begin
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTransposeGeom {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
    pub y: TAxis,
    pub x: TAxis,
    pub rank: usize,
}

impl ConvTransposeGeom {
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

impl ConvTranspose {
    pub fn parse(a: &Attrs) -> OpResult<ConvTranspose> {
        let group = a.int("group", 1)?;
        if group < 1 {
            op_bail!("attribute group={group} must be >= 1");
        }
        let c = ConvTranspose {
            auto_pad: AutoPad::parse(a)?,
            kernel_shape: a.usizes("kernel_shape")?,
            strides: a.usizes("strides")?,
            dilations: a.usizes("dilations")?,
            pads: a.usizes("pads")?,
            output_padding: a.usizes("output_padding")?,
            output_shape: a.usizes("output_shape")?,
            group: group as usize,
            act: None,
        };
        for (name, v) in [("strides", &c.strides), ("dilations", &c.dilations)] {
            if let Some(v) = v
                && v.contains(&0)
            {
                op_bail!("attribute {name}={v:?} contains 0");
            }
        }
        Ok(c)
    }

    pub fn geom(&self, x: &[usize], w: &[usize]) -> OpResult<ConvTransposeGeom> {
        if !(x.len() == 3 || x.len() == 4) {
            op_bail!("only 1-D and 2-D transposed convolutions are supported; input has shape {}", fmt_shape(x));
        }
        if w.len() != x.len() {
            op_bail!("weight shape {} does not fit input shape {}", fmt_shape(w), fmt_shape(x));
        }
        let g = self.group;
        let (n, c) = (x[0], x[1]);
        if w[0] != c {
            op_bail!(
                "weight shape {} expects {} input channels, the input {} has {c}",
                fmt_shape(w),
                w[0],
                fmt_shape(x)
            );
        }
        if c % g != 0 {
            op_bail!("group={g} does not divide the {c} input channels");
        }
        let m = w[1] * g;
        let r = x.len() - 2;
        let list = |v: &Option<Vec<usize>>, name: &str, default: usize| -> OpResult<Vec<usize>> {
            match v {
                None => Ok(vec![default; r]),
                Some(v) if v.len() == r => Ok(v.clone()),
                Some(v) => op_bail!("attribute {name}={v:?} should have {r} values"),
            }
        };
        let strides = list(&self.strides, "strides", 1)?;
        let dil = list(&self.dilations, "dilations", 1)?;
        let opad = list(&self.output_padding, "output_padding", 0)?;
        let kernel = &w[2..];
        if let Some(k) = &self.kernel_shape
            && k.as_slice() != kernel
        {
            op_bail!("attribute kernel_shape={k:?} does not match the weight's kernel {kernel:?}");
        }
        let out_shape = match &self.output_shape {
            None => None,
            Some(o) if o.len() == r => Some(o.clone()),
            Some(o) if o.len() == r + 2 => Some(o[2..].to_vec()),
            Some(o) => op_bail!("attribute output_shape={o:?} should have {r} values"),
        };
        let pads: Option<Vec<usize>> = match &self.pads {
            None => None,
            Some(p) if p.len() == 2 * r => Some(p.clone()),
            Some(p) => op_bail!("attribute pads={p:?} should have {} values", 2 * r),
        };
        let same = matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
        let mut axes = Vec::with_capacity(r);
        for i in 0..r {
            let (s, d, k, inp) = (strides[i], dil[i], kernel[i], x[2 + i]);
            if opad[i] >= s.max(d) {
                op_bail!("output_padding {} must be smaller than the stride or dilation on axis {i}", opad[i]);
            }
            let full = (s * (inp.max(1) - 1) + opad[i] + (k - 1) * d + 1) as isize;
            let (pb, out) = if let (Some(p), false) = (&pads, self.auto_pad == AutoPad::Valid) {
                let pe = p[i + r] as isize;
                let out = match &out_shape {
                    Some(o) => o[i] as isize,
                    None => full - p[i] as isize - pe,
                };
                (p[i] as isize, out)
            } else if out_shape.is_some() || same {
                let out = match &out_shape {
                    Some(o) => o[i] as isize,
                    None => (inp * s) as isize,
                };
                let total = full - out;
                let half = total.div_euclid(2);
                let pb = if self.auto_pad == AutoPad::SameUpper { half } else { total - half };
                (pb, out)
            } else {
                (0, full)
            };
            if out <= 0 {
                op_bail!("output size {out} on spatial axis {i} is not positive");
            }
            axes.push(TAxis { stride: s, dilation: d, kernel: k, pad_begin: pb, input: inp, output: out as usize });
        }
        let (y, xa) = if r == 1 { (TAxis::unit(), axes[0]) } else { (axes[0], axes[1]) };
        let geom = ConvTransposeGeom { n, c, m, group: g, y, x: xa, rank: r };
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
        Ok((x.dtype, g.out_shape()))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let w = input(ins, 1)?;
        let bias = ins.get(2).copied().flatten();
        let (dt, shape) = self.infer(&[Some(InInfo::of(x)), Some(InInfo::of(w)), bias.map(InInfo::of)])?;
        let g = self.geom(&x.shape, &w.shape)?;
        let out = conv_transpose_ref(&g, x.as_f32()?, w.as_f32()?, bias.map(|b| b.as_f32()).transpose()?, self.act);
        Ok(Tensor::with_dtype(dt, shape, Data::F32(out)))
    }
}

/// The reference transposed convolution: f64 accumulation, one output plane per task.
pub fn conv_transpose_ref(
    g: &ConvTransposeGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let (oh, ow) = (g.y.output, g.x.output);
    let (ih, iw) = (g.y.input, g.x.input);
    let (cg, mg) = (g.c_per_group(), g.m_per_group());
    let (kh, kw) = (g.y.kernel, g.x.kernel);
    let mut out = vec![0f32; g.n * g.m * oh * ow];
    par_chunks(&mut out, oh * ow, |plane, dst| {
        let (b, oc) = (plane / g.m, plane % g.m);
        let (grp, ocl) = (oc / mg, oc % mg);
        let mut acc = vec![bias.map(|b| b[oc] as f64).unwrap_or(0.0); oh * ow];
        for icg in 0..cg {
            let ic = grp * cg + icg;
            let xplane = &x[(b * g.c + ic) * ih * iw..][..ih * iw];
            let wbase = (ic * mg + ocl) * kh * kw;
            for ky in 0..kh {
                for kx in 0..kw {
                    let wv = w[wbase + ky * kw + kx] as f64;
                    if wv == 0.0 {
                        continue;
                    }
                    for iy in 0..ih {
                        let oy = g.y.dst(iy, ky);
                        if oy < 0 || oy >= oh as isize {
                            continue;
                        }
                        let arow = &mut acc[oy as usize * ow..][..ow];
                        let xrow = &xplane[iy * iw..][..iw];
                        for (ix, &v) in xrow.iter().enumerate() {
                            let ox = g.x.dst(ix, kx);
                            if ox >= 0 && ox < ow as isize {
                                arow[ox as usize] += wv * v as f64;
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
