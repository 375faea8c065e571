//! MaxPool and AveragePool (1-D and 2-D: pads, strides, dilations, ceil_mode,
//! count_include_pad, auto_pad), GlobalAveragePool and GlobalMaxPool.

use super::conv::{Axis, Window};
use super::{InInfo, OutInfo, par_chunks};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Data, Tensor, checked_numel, fmt_shape};

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub max: bool,
    pub window: Window,
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

/// Resolved pooling geometry (1-D pools have a unit `y` axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub n: usize,
    pub c: usize,
    pub y: Axis,
    pub x: Axis,
    pub rank: usize,
}

impl PoolGeom {
    pub fn out_shape(&self) -> Vec<usize> {
        if self.rank == 1 {
            vec![self.n, self.c, self.x.output]
        } else {
            vec![self.n, self.c, self.y.output, self.x.output]
        }
    }
}

impl Pool {
    pub fn parse(op: &str, a: &Attrs) -> OpResult<Pool> {
        let window = Window::parse(a)?;
        if window.kernel_shape.is_none() {
            op_bail!("attribute 'kernel_shape' is required");
        }
        if a.int("storage_order", 0)? != 0 {
            op_bail!("storage_order=1 is not supported");
        }
        Ok(Pool {
            max: op == "MaxPool",
            window,
            ceil_mode: a.int("ceil_mode", 0)? != 0,
            count_include_pad: a.int("count_include_pad", 0)? != 0,
        })
    }

    pub fn geom(&self, x: &[usize]) -> OpResult<PoolGeom> {
        if !(x.len() == 3 || x.len() == 4) {
            op_bail!("only 1-D and 2-D pooling is supported; input has shape {}", fmt_shape(x));
        }
        let kernel = self.window.kernel_shape.clone().unwrap();
        if kernel.len() != x.len() - 2 {
            op_bail!("kernel_shape {kernel:?} does not fit input shape {}", fmt_shape(x));
        }
        let axes = self.window.resolve(&x[2..], &kernel, self.ceil_mode)?;
        let (y, xa) = if axes.len() == 1 { (Axis::unit(), axes[0]) } else { (axes[0], axes[1]) };
        let g = PoolGeom { n: x[0], c: x[1], y, x: xa, rank: x.len() - 2 };
        checked_numel(&g.out_shape())?;
        Ok(g)
    }

    pub fn infer(&self, x: InInfo) -> OpResult<OutInfo> {
        Ok((x.dtype, self.geom(x.shape)?.out_shape()))
    }

    pub fn eval(&self, x: &Tensor) -> OpResult<Tensor> {
        let g = self.geom(&x.shape)?;
        let v = x.as_f32()?;
        let (oh, ow, ih, iw) = (g.y.output, g.x.output, g.y.input, g.x.input);
        let mut out = vec![0f32; g.n * g.c * oh * ow];
        par_chunks(&mut out, oh * ow, |plane, dst| {
            let src = &v[plane * ih * iw..][..ih * iw];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = f32::NEG_INFINITY;
                    let mut sum = 0f64;
                    let mut cnt = 0usize;
                    let mut cnt_pad = 0usize;
                    for ky in 0..g.y.kernel {
                        let iy = g.y.src(oy, ky);
                        // positions inside the explicitly padded input count for count_include_pad
                        let in_padded_y = iy >= -(g.y.pad_begin as isize) && iy < (ih + g.y.pad_end) as isize;
                        for kx in 0..g.x.kernel {
                            let ix = g.x.src(ox, kx);
                            let in_padded_x = ix >= -(g.x.pad_begin as isize) && ix < (iw + g.x.pad_end) as isize;
                            if in_padded_y && in_padded_x {
                                cnt_pad += 1;
                            }
                            if iy < 0 || iy >= ih as isize || ix < 0 || ix >= iw as isize {
                                continue;
                            }
                            let val = src[iy as usize * iw + ix as usize];
                            if val > best || val.is_nan() {
                                best = val;
                            }
                            sum += val as f64;
                            cnt += 1;
                        }
                    }
                    dst[oy * ow + ox] = if self.max {
                        best
                    } else {
                        let d = if self.count_include_pad { cnt_pad } else { cnt };
                        if d == 0 { 0.0 } else { (sum / d as f64) as f32 }
                    };
                }
            }
        });
        Ok(Tensor::with_dtype(x.dtype, g.out_shape(), Data::F32(out)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalPool {
    pub max: bool,
}

impl GlobalPool {
    pub fn eval(&self, x: &Tensor) -> OpResult<Tensor> {
        if x.rank() < 3 {
            op_bail!("expects an N x C x spatial input, got {}", fmt_shape(&x.shape));
        }
        let v = x.as_f32()?;
        let plane: usize = x.shape[2..].iter().product();
        let planes = x.shape[0] * x.shape[1];
        let mut out = Vec::with_capacity(planes);
        for p in 0..planes {
            let s = &v[p * plane..][..plane];
            out.push(if self.max {
                s.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a })
            } else {
                (s.iter().map(|&a| a as f64).sum::<f64>() / plane as f64) as f32
            });
        }
        let mut shape = x.shape.clone();
        shape.iter_mut().skip(2).for_each(|d| *d = 1);
        Ok(Tensor::with_dtype(x.dtype, shape, Data::F32(out)))
    }
}
