//! Layout ops that move elements: Transpose and DepthToSpace (DCR and CRD). Both are a
//! permutation of a (reshaped) tensor's axes, which is also how the GPU runs them.

use super::{InInfo, OutInfo, for_each_offset};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Tensor, fmt_shape, strides};

/// Permute the axes of `t` viewed with shape `view` (same element count): output axis `i` is
/// input axis `perm[i]`. Returns the output shape and the per-output-axis input strides.
pub fn permute_strides(view: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let st = strides(view);
    (perm.iter().map(|&p| view[p]).collect(), perm.iter().map(|&p| st[p]).collect())
}

pub fn permute(t: &Tensor, view: &[usize], perm: &[usize], out_shape: Vec<usize>) -> Tensor {
    let (oshape, ist) = permute_strides(view, perm);
    let mut idx = Vec::with_capacity(t.len());
    for_each_offset(&oshape, [&ist], |[i]| idx.push(i));
    t.gather_flat(out_shape, idx.into_iter())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    pub perm: Option<Vec<i64>>,
}

impl Transpose {
    pub fn resolved_perm(&self, rank: usize) -> OpResult<Vec<usize>> {
        match &self.perm {
            None => Ok((0..rank).rev().collect()),
            Some(p) => {
                if p.len() != rank {
                    op_bail!("perm {p:?} has {} entries for a rank-{rank} input", p.len());
                }
                let mut seen = vec![false; rank];
                let mut out = Vec::with_capacity(rank);
                for &a in p {
                    let a = super::norm_axis(a, rank, "perm entry")?;
                    if seen[a] {
                        op_bail!("perm {p:?} is not a permutation");
                    }
                    seen[a] = true;
                    out.push(a);
                }
                Ok(out)
            }
        }
    }
    pub fn infer(&self, x: InInfo) -> OpResult<OutInfo> {
        let p = self.resolved_perm(x.shape.len())?;
        Ok((x.dtype, p.iter().map(|&i| x.shape[i]).collect()))
    }
    pub fn eval(&self, x: &Tensor) -> OpResult<Tensor> {
        let p = self.resolved_perm(x.rank())?;
        let out: Vec<usize> = p.iter().map(|&i| x.shape[i]).collect();
        Ok(permute(x, &x.shape, &p, out))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthToSpace {
    pub block: usize,
    pub crd: bool,
}

impl DepthToSpace {
    pub fn parse(a: &Attrs) -> OpResult<DepthToSpace> {
        let b = a.int_opt("blocksize")?.ok_or("attribute 'blocksize' is required")?;
        if b < 1 {
            op_bail!("blocksize={b} must be >= 1");
        }
        let crd = match a.string("mode", "DCR")?.as_str() {
            "DCR" => false,
            "CRD" => true,
            other => op_bail!("mode='{other}' is not DCR or CRD"),
        };
        Ok(DepthToSpace { block: b as usize, crd })
    }
    /// The 6-D view of the input and the permutation that produce the output.
    pub fn view_perm(&self, x: &[usize]) -> OpResult<(Vec<usize>, [usize; 6], Vec<usize>)> {
        if x.len() != 4 {
            op_bail!("expects a 4-D input, got {}", fmt_shape(x));
        }
        let b = self.block;
        let (n, c, h, w) = (x[0], x[1], x[2], x[3]);
        if c % (b * b) != 0 {
            op_bail!("channels {c} are not divisible by blocksize^2 = {}", b * b);
        }
        let co = c / (b * b);
        let out = vec![n, co, h * b, w * b];
        Ok(if self.crd {
            (vec![n, co, b, b, h, w], [0, 1, 4, 2, 5, 3], out)
        } else {
            (vec![n, b, b, co, h, w], [0, 3, 4, 1, 5, 2], out)
        })
    }
    pub fn infer(&self, x: InInfo) -> OpResult<OutInfo> {
        Ok((x.dtype, self.view_perm(x.shape)?.2))
    }
    pub fn eval(&self, x: &Tensor) -> OpResult<Tensor> {
        let (view, perm, out) = self.view_perm(&x.shape)?;
        Ok(permute(x, &view, &perm, out))
    }
}
