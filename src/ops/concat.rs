//! Concat along one axis (any type; empty inputs allowed).

use super::{InInfo, OutInfo, norm_axis};
use crate::error::OpResult;
use crate::op_bail;
use crate::tensor::{Data, Tensor, fmt_shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    pub axis: i64,
}

impl Concat {
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let all: Vec<InInfo> = ins.iter().flatten().copied().collect();
        let first = all.first().ok_or("needs at least one input")?;
        let r = first.shape.len();
        let axis = norm_axis(self.axis, r, "axis")?;
        let mut out = first.shape.to_vec();
        out[axis] = 0;
        for i in &all {
            if i.shape.len() != r || i.shape.iter().enumerate().any(|(k, &d)| k != axis && d != first.shape[k]) {
                op_bail!(
                    "inputs {} and {} cannot be concatenated on axis {axis}",
                    fmt_shape(first.shape),
                    fmt_shape(i.shape)
                );
            }
            if i.dtype.is_float() != first.dtype.is_float() {
                op_bail!("input types differ: {} and {}", first.dtype.name(), i.dtype.name());
            }
            out[axis] += i.shape[axis];
        }
        Ok((first.dtype, out))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        let (dt, shape) = self.infer(&infos)?;
        let all: Vec<&Tensor> = ins.iter().flatten().copied().collect();
        let axis = norm_axis(self.axis, shape.len(), "axis")?;
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let data = match &all[0].data {
            Data::F32(_) => {
                let mut out = Vec::with_capacity(crate::tensor::numel(&shape));
                for o in 0..outer {
                    for t in &all {
                        let blk = t.shape[axis] * inner;
                        out.extend_from_slice(&t.as_f32()?[o * blk..][..blk]);
                    }
                }
                Data::F32(out)
            }
            Data::I64(_) => {
                let mut out = Vec::with_capacity(crate::tensor::numel(&shape));
                for o in 0..outer {
                    for t in &all {
                        let blk = t.shape[axis] * inner;
                        out.extend_from_slice(&t.as_i64()?[o * blk..][..blk]);
                    }
                }
                Data::I64(out)
            }
        };
        Ok(Tensor::with_dtype(dt, shape, data))
    }
}
