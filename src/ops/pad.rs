//! Pad: constant, reflect, edge and wrap modes; pads as attribute (opset < 11) or input, with
//! optional constant_value and axes inputs; negative pads crop.

use super::{InInfo, OutInfo, input, norm_axis};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Data, Tensor, checked_numel, fmt_shape, numel, strides};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub mode: PadMode,
    /// Pads and value given as attributes (opset < 11).
    pub attr_pads: Option<Vec<i64>>,
    pub attr_value: f32,
}

/// Resolved padding: per axis (begin, end), possibly negative, and the fill value.
#[derive(Clone, Debug, PartialEq)]
pub struct PadSpec {
    pub pads: Vec<(i64, i64)>,
    pub value: f64,
    pub out_shape: Vec<usize>,
}

impl Pad {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<Pad> {
        let mode = match a.string("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            other => op_bail!("mode='{other}' is not supported (constant, reflect, edge, wrap)"),
        };
        let attr_pads = if opset < 11 {
            Some(a.ints("pads")?.or(a.ints("paddings")?).ok_or("attribute 'pads' is required")?)
        } else {
            None
        };
        Ok(Pad { mode, attr_pads, attr_value: a.float("value", 0.0)? })
    }

    pub fn spec(&self, ins: &[Option<InInfo>]) -> OpResult<PadSpec> {
        let x = ins.first().copied().flatten().ok_or("missing input 0")?;
        let r = x.shape.len();
        let konst = |k: usize, what: &str| -> OpResult<Option<&Tensor>> {
            match ins.get(k).copied().flatten() {
                None => Ok(None),
                Some(i) => match i.value {
                    Some(t) => Ok(Some(t)),
                    None => op_bail!("{what} (input {k}) must be known when the graph is prepared"),
                },
            }
        };
        let (raw, value) = match &self.attr_pads {
            Some(p) => (p.clone(), self.attr_value as f64),
            None => {
                let p = konst(1, "pads")?.ok_or("input 'pads' is required")?.to_i64_vec();
                let v = match konst(2, "constant_value")? {
                    Some(t) if !t.is_empty() => t.get_f64(0),
                    _ => 0.0,
                };
                (p, v)
            }
        };
        let axes: Vec<usize> = match konst(3, "axes")? {
            Some(t) => {
                let mut v = Vec::new();
                for a in t.to_i64_vec() {
                    v.push(norm_axis(a, r, "axis")?);
                }
                v
            }
            None => (0..r).collect(),
        };
        if raw.len() != 2 * axes.len() {
            op_bail!("pads has {} values, expected {} for input {}", raw.len(), 2 * axes.len(), fmt_shape(x.shape));
        }
        let mut pads = vec![(0i64, 0i64); r];
        for (k, &ax) in axes.iter().enumerate() {
            pads[ax] = (raw[k], raw[k + axes.len()]);
        }
        let mut out_shape = Vec::with_capacity(r);
        for (i, &(b, e)) in pads.iter().enumerate() {
            let n = x.shape[i] as i64 + b + e;
            if n < 0 {
                op_bail!("pads {raw:?} crop axis {i} of input {} below zero", fmt_shape(x.shape));
            }
            if self.mode != PadMode::Constant && x.shape[i] == 0 && (b > 0 || e > 0) {
                op_bail!("cannot pad an empty axis {i} in this mode");
            }
            out_shape.push(n as usize);
        }
        checked_numel(&out_shape)?;
        Ok(PadSpec { pads, value, out_shape })
    }

    /// Source index along one axis for output coordinate `o` (None: the fill value).
    pub fn source(&self, o: usize, begin: i64, n: usize) -> Option<usize> {
        let j = o as i64 - begin;
        let n = n as i64;
        if (0..n).contains(&j) {
            return Some(j as usize);
        }
        Some(match self.mode {
            PadMode::Constant => return None,
            PadMode::Edge => j.clamp(0, n - 1) as usize,
            PadMode::Wrap => j.rem_euclid(n) as usize,
            PadMode::Reflect => {
                if n == 1 {
                    0
                } else {
                    let period = 2 * (n - 1);
                    let m = j.rem_euclid(period);
                    (if m >= n { period - m } else { m }) as usize
                }
            }
        })
    }

    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = ins.first().copied().flatten().ok_or("missing input 0")?;
        Ok((x.dtype, self.spec(ins)?.out_shape))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        let spec = self.spec(&infos)?;
        let r = x.rank();
        let maps: Vec<Vec<Option<usize>>> = (0..r)
            .map(|i| (0..spec.out_shape[i]).map(|o| self.source(o, spec.pads[i].0, x.shape[i])).collect())
            .collect();
        let st = strides(&x.shape);
        let n = numel(&spec.out_shape);
        let mut src: Vec<Option<usize>> = Vec::with_capacity(n);
        let mut idx = vec![0usize; r];
        for _ in 0..n {
            let mut off = Some(0usize);
            for d in 0..r {
                off = match (off, maps[d][idx[d]]) {
                    (Some(o), Some(s)) => Some(o + s * st[d]),
                    _ => None,
                };
            }
            src.push(off);
            for d in (0..r).rev() {
                idx[d] += 1;
                if idx[d] < spec.out_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        let data = match &x.data {
            Data::F32(v) => Data::F32(src.iter().map(|s| s.map(|i| v[i]).unwrap_or(spec.value as f32)).collect()),
            Data::I64(v) => Data::I64(src.iter().map(|s| s.map(|i| v[i]).unwrap_or(spec.value as i64)).collect()),
        };
        Ok(Tensor::with_dtype(x.dtype, spec.out_shape, data))
    }
}
