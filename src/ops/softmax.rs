//! Softmax and LogSoftmax (opset < 13: the input is coerced to 2-D at `axis`; from 13 on, along
//! one axis).

use super::{InInfo, OutInfo, norm_axis};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::tensor::{Data, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    pub axis: i64,
    /// Opset < 13 semantics: normalise over all axes from `axis` on.
    pub coerce_2d: bool,
    pub log: bool,
}

impl Softmax {
    pub fn parse(a: &Attrs, opset: i64, log: bool) -> OpResult<Softmax> {
        let coerce_2d = opset < 13;
        Ok(Softmax { axis: a.int("axis", if coerce_2d { 1 } else { -1 })?, coerce_2d, log })
    }
    /// (outer, axis length, inner) of the reduction for a given shape.
    pub fn split(&self, shape: &[usize]) -> OpResult<(usize, usize, usize)> {
        let r = shape.len();
        if r == 0 {
            return Ok((1, 1, 1));
        }
        let a = norm_axis(self.axis, r, "axis")?;
        let outer: usize = shape[..a].iter().product();
        if self.coerce_2d {
            Ok((outer, shape[a..].iter().product(), 1))
        } else {
            Ok((outer, shape[a], shape[a + 1..].iter().product()))
        }
    }
    pub fn infer(&self, x: InInfo) -> OpResult<OutInfo> {
        self.split(x.shape)?;
        Ok((x.dtype, x.shape.to_vec()))
    }
    pub fn eval(&self, x: &Tensor) -> OpResult<Tensor> {
        let (outer, n, inner) = self.split(&x.shape)?;
        let v = x.as_f32()?;
        let mut out = vec![0f32; v.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| o * n * inner + k * inner + i;
                let m = (0..n).map(|k| v[at(k)] as f64).fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = (0..n).map(|k| (v[at(k)] as f64 - m).exp()).sum();
                for k in 0..n {
                    let e = v[at(k)] as f64 - m;
                    out[at(k)] = if self.log { (e - s.ln()) as f32 } else { (e.exp() / s) as f32 };
                }
            }
        }
        Ok(Tensor::with_dtype(x.dtype, x.shape.clone(), Data::F32(out)))
    }
}
