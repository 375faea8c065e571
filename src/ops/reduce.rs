//! ReduceMean, ReduceMax, ReduceMin, ReduceSum: axes as attribute (older opsets) or input,
//! keepdims, noop_with_empty_axes.

use super::{InInfo, OutInfo, for_each_offset, input, norm_axis};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Data, Tensor, strides};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Mean,
    Max,
    Min,
    Sum,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub attr_axes: Option<Vec<i64>>,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    pub fn parse(op: &str, a: &Attrs, opset: i64) -> OpResult<Reduce> {
        let kind = match op {
            "ReduceMean" => ReduceKind::Mean,
            "ReduceMax" => ReduceKind::Max,
            "ReduceMin" => ReduceKind::Min,
            "ReduceSum" => ReduceKind::Sum,
            _ => op_bail!("not a reduction: {op}"),
        };
        let _ = opset;
        Ok(Reduce {
            kind,
            attr_axes: a.ints("axes")?,
            keepdims: a.int("keepdims", 1)? != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
        })
    }

    /// Which axes are reduced (sorted, unique); empty with noop means identity.
    pub fn axes(&self, ins: &[Option<InInfo>]) -> OpResult<Vec<usize>> {
        let x = ins.first().copied().flatten().ok_or("missing input 0")?;
        let r = x.shape.len();
        let given: Option<Vec<i64>> = match ins.get(1).copied().flatten() {
            Some(i) => match i.value {
                Some(t) => Some(t.to_i64_vec()),
                None => op_bail!("axes (input 1) must be known when the graph is prepared"),
            },
            None => self.attr_axes.clone(),
        };
        let mut axes = match given {
            Some(v) if !v.is_empty() => {
                let mut out = Vec::new();
                for a in v {
                    out.push(norm_axis(a, r, "axis")?);
                }
                out
            }
            _ => {
                if self.noop_with_empty_axes {
                    vec![]
                } else {
                    (0..r).collect()
                }
            }
        };
        axes.sort();
        axes.dedup();
        Ok(axes)
    }

    pub fn out_shape(&self, shape: &[usize], axes: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, &d) in shape.iter().enumerate() {
            if axes.contains(&i) {
                if self.keepdims {
                    out.push(1);
                }
            } else {
                out.push(d);
            }
        }
        out
    }

    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = ins.first().copied().flatten().ok_or("missing input 0")?;
        let axes = self.axes(ins)?;
        Ok((x.dtype, self.out_shape(x.shape, &axes)))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        let axes = self.axes(&infos)?;
        let out_shape = self.out_shape(&x.shape, &axes);
        if axes.is_empty() {
            return Ok(x.clone());
        }
        // kept shape (reduced axes = 1) for indexing the accumulators
        let kept: Vec<usize> =
            x.shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        let n_out: usize = kept.iter().product();
        let ks = strides(&kept);
        let dst_strides: Vec<usize> = (0..x.rank()).map(|i| if axes.contains(&i) { 0 } else { ks[i] }).collect();
        let src_strides = strides(&x.shape);
        let init = match self.kind {
            ReduceKind::Max => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
            _ => 0.0,
        };
        let mut acc = vec![init; n_out];
        for_each_offset(&x.shape, [&src_strides, &dst_strides], |[s, d]| {
            let v = x.get_f64(s);
            let a = &mut acc[d];
            match self.kind {
                ReduceKind::Max => {
                    if v > *a || v.is_nan() {
                        *a = v
                    }
                }
                ReduceKind::Min => {
                    if v < *a || v.is_nan() {
                        *a = v
                    }
                }
                _ => *a += v,
            }
        });
        if self.kind == ReduceKind::Mean {
            let cnt: usize = axes.iter().map(|&a| x.shape[a]).product();
            acc.iter_mut().for_each(|a| *a /= cnt as f64);
        }
        let data = if x.dtype.is_float() {
            Data::F32(acc.into_iter().map(|v| v as f32).collect())
        } else {
            Data::I64(acc.into_iter().map(|v| v as i64).collect())
        };
        Ok(Tensor::with_dtype(x.dtype, out_shape, data))
    }
}
