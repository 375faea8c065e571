//! Ops that compute or change shapes: Reshape, Flatten, Squeeze, Unsqueeze, Slice, Gather, Shape,
//! ConstantOfShape, Range, Expand, Tile, Split. On the GPU the pure reshapes are free (the buffer
//! is reused) and Slice/Expand/Gather/Tile are strided copies; in exported U-Nets most of them
//! act on shapes and are folded to constants when the graph is prepared.

use super::{InInfo, Op, OutInfo, broadcast_shapes, broadcast_strides, for_each_offset, input, norm_axis};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{DType, Data, Tensor, checked_numel, fmt_shape, numel, strides};

/// The constant value of input `k`.
pub fn const_input<'a>(ins: &'a [Option<InInfo<'a>>], k: usize, what: &str) -> OpResult<Option<&'a Tensor>> {
    match ins.get(k).copied().flatten() {
        None => Ok(None),
        Some(i) => match i.value {
            Some(t) => Ok(Some(t)),
            None => op_bail!("{what} (input {k}) must be known when the graph is prepared"),
        },
    }
}

/// A shape given as a 1-D integer input, every entry >= 0.
pub fn shape_from_input(ins: &[Option<InInfo>], k: usize, what: &str) -> OpResult<Vec<usize>> {
    let t = const_input(ins, k, what)?.ok_or_else(|| format!("input '{what}' is required"))?;
    let v = t.to_i64_vec();
    let mut out = Vec::with_capacity(v.len());
    for d in v {
        if d < 0 {
            op_bail!("{what} {:?} has a negative dimension", t.to_i64_vec());
        }
        out.push(d as usize);
    }
    checked_numel(&out)?;
    Ok(out)
}

fn x0<'a>(ins: &'a [Option<InInfo<'a>>]) -> OpResult<InInfo<'a>> {
    ins.first().copied().flatten().ok_or_else(|| "missing input 0".to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reshape {
    pub allowzero: bool,
}

impl Reshape {
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = x0(ins)?;
        let t = const_input(ins, 1, "shape")?.ok_or("input 'shape' is required")?;
        let spec = t.to_i64_vec();
        let total = numel(x.shape);
        let mut out = Vec::with_capacity(spec.len());
        let mut infer_at = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                -1 => {
                    if infer_at.replace(i).is_some() {
                        op_bail!("shape {spec:?} has more than one -1");
                    }
                    out.push(1);
                }
                0 if !self.allowzero => {
                    if i >= x.shape.len() {
                        op_bail!("shape {spec:?} copies dimension {i} (0) that input {} lacks", fmt_shape(x.shape));
                    }
                    out.push(x.shape[i]);
                }
                d if d < 0 => op_bail!("shape {spec:?} has an invalid entry {d}"),
                d => out.push(d as usize),
            }
        }
        if let Some(i) = infer_at {
            let known: usize = out.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, &d)| d).product();
            if known == 0 || !total.is_multiple_of(known) {
                op_bail!("cannot reshape input {} ({total} elements) to {spec:?}", fmt_shape(x.shape));
            }
            out[i] = total / known;
        }
        if numel(&out) != total {
            op_bail!("cannot reshape input {} ({total} elements) to {spec:?}", fmt_shape(x.shape));
        }
        Ok((x.dtype, out))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub axis: i64,
}

impl Flatten {
    pub fn infer(&self, x: InInfo) -> OpResult<OutInfo> {
        let r = x.shape.len() as i64;
        let a = if self.axis < 0 { self.axis + r } else { self.axis };
        if a < 0 || a > r {
            op_bail!("axis {} is out of range for rank {r}", self.axis);
        }
        let a = a as usize;
        Ok((x.dtype, vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()]))
    }
}

fn axes_from(attr: &Option<Vec<i64>>, ins: &[Option<InInfo>]) -> OpResult<Option<Vec<i64>>> {
    Ok(match const_input(ins, 1, "axes")? {
        Some(t) => Some(t.to_i64_vec()),
        None => attr.clone(),
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Squeeze {
    pub axes: Option<Vec<i64>>,
}

impl Squeeze {
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = x0(ins)?;
        let r = x.shape.len();
        let axes = match axes_from(&self.axes, ins)? {
            None => (0..r).filter(|&i| x.shape[i] == 1).collect::<Vec<_>>(),
            Some(v) => {
                let mut out = Vec::new();
                for a in v {
                    let a = norm_axis(a, r, "axis")?;
                    if x.shape[a] != 1 {
                        op_bail!("cannot squeeze axis {a} of size {} in {}", x.shape[a], fmt_shape(x.shape));
                    }
                    out.push(a);
                }
                out
            }
        };
        let out = (0..r).filter(|i| !axes.contains(i)).map(|i| x.shape[i]).collect();
        Ok((x.dtype, out))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unsqueeze {
    pub axes: Option<Vec<i64>>,
}

impl Unsqueeze {
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = x0(ins)?;
        let v = axes_from(&self.axes, ins)?.ok_or("axes are required")?;
        let r = x.shape.len() + v.len();
        let mut axes = Vec::new();
        for a in &v {
            let a = norm_axis(*a, r, "axis")?;
            if axes.contains(&a) {
                op_bail!("axes {v:?} repeat an axis");
            }
            axes.push(a);
        }
        let mut out = Vec::with_capacity(r);
        let mut it = x.shape.iter();
        for i in 0..r {
            out.push(if axes.contains(&i) { 1 } else { *it.next().unwrap() });
        }
        Ok((x.dtype, out))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// Opset < 10: starts/ends/axes attributes.
    pub attr: Option<(Vec<i64>, Vec<i64>, Option<Vec<i64>>)>,
}

/// One sliced axis: start, step and count of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceAxis {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

impl Slice {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<Slice> {
        Ok(Slice {
            attr: if opset < 10 {
                Some((
                    a.ints("starts")?.ok_or("attribute 'starts' is required")?,
                    a.ints("ends")?.ok_or("attribute 'ends' is required")?,
                    a.ints("axes")?,
                ))
            } else {
                None
            },
        })
    }

    /// Per input axis: (start, step, length) of the slice.
    pub fn resolve(&self, ins: &[Option<InInfo>]) -> OpResult<Vec<SliceAxis>> {
        let x = x0(ins)?;
        let r = x.shape.len();
        let (starts, ends, axes, steps) = match &self.attr {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                const_input(ins, 1, "starts")?.ok_or("input 'starts' is required")?.to_i64_vec(),
                const_input(ins, 2, "ends")?.ok_or("input 'ends' is required")?.to_i64_vec(),
                const_input(ins, 3, "axes")?.map(|t| t.to_i64_vec()),
                const_input(ins, 4, "steps")?.map(|t| t.to_i64_vec()),
            ),
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            op_bail!("starts, ends, axes and steps must have the same length");
        }
        let mut out: Vec<SliceAxis> = x.shape.iter().map(|&d| SliceAxis { start: 0, step: 1, len: d }).collect();
        let mut seen = vec![false; r];
        for k in 0..starts.len() {
            let a = norm_axis(axes[k], r, "axis")?;
            if seen[a] {
                op_bail!("axis {a} is sliced twice");
            }
            seen[a] = true;
            let dim = x.shape[a] as i64;
            let step = steps[k];
            if step == 0 {
                op_bail!("step 0 on axis {a}");
            }
            let mut s = starts[k];
            let mut e = ends[k];
            if s < 0 {
                s = s.saturating_add(dim);
            }
            if e < 0 {
                e = e.saturating_add(dim);
            }
            let len = if step > 0 {
                s = s.clamp(0, dim);
                e = e.clamp(0, dim);
                if e > s { (e - s + step - 1) / step } else { 0 }
            } else {
                s = s.clamp(0, (dim - 1).max(0));
                e = e.clamp(-1, dim - 1);
                if s > e && dim > 0 { (s - e + (-step) - 1) / (-step) } else { 0 }
            };
            out[a] = SliceAxis { start: s, step, len: len as usize };
        }
        Ok(out)
    }

    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = x0(ins)?;
        Ok((x.dtype, self.resolve(ins)?.iter().map(|a| a.len).collect()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    pub axis: i64,
}

impl Gather {
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = x0(ins)?;
        let idx = ins.get(1).copied().flatten().ok_or("missing input 1 (indices)")?;
        if idx.dtype.is_float() {
            op_bail!("indices must be integers, got {}", idx.dtype.name());
        }
        let a = norm_axis(self.axis, x.shape.len(), "axis")?;
        let mut out = x.shape[..a].to_vec();
        out.extend_from_slice(idx.shape);
        out.extend_from_slice(&x.shape[a + 1..]);
        Ok((x.dtype, out))
    }
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let idx = input(ins, 1)?;
        let (_, shape) = self.infer(&[Some(InInfo::of(x)), Some(InInfo::of(idx))])?;
        let a = norm_axis(self.axis, x.rank(), "axis")?;
        let dim = x.shape[a] as i64;
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a + 1..].iter().product();
        let mut ids = Vec::with_capacity(idx.len());
        for &i in idx.as_i64()? {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                op_bail!("index {i} is out of range for axis {a} of size {dim}");
            }
            ids.push(j as usize);
        }
        let mut flat = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for &j in &ids {
                for k in 0..inner {
                    flat.push((o * dim as usize + j) * inner + k);
                }
            }
        }
        Ok(x.gather_flat(shape, flat.into_iter()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeOp {
    pub start: i64,
    pub end: Option<i64>,
}

impl ShapeOp {
    pub fn range(&self, r: usize) -> std::ops::Range<usize> {
        let clampi = |v: i64| -> usize {
            let v = if v < 0 { v + r as i64 } else { v };
            v.clamp(0, r as i64) as usize
        };
        let s = clampi(self.start);
        let e = clampi(self.end.unwrap_or(r as i64));
        s..e.max(s)
    }
}

pub fn range_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let get = |k: usize, what: &str| -> OpResult<(DType, f64)> {
        let t = const_input(ins, k, what)?.ok_or_else(|| format!("input '{what}' is required"))?;
        if t.len() != 1 {
            op_bail!("{what} must be a scalar");
        }
        Ok((t.dtype, t.get_f64(0)))
    };
    let (dt, start) = get(0, "start")?;
    let (_, limit) = get(1, "limit")?;
    let (_, delta) = get(2, "delta")?;
    if delta == 0.0 {
        op_bail!("delta is 0");
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n > 1e9 {
        op_bail!("range of {n} elements is too large");
    }
    Ok((dt, vec![n as usize]))
}

pub fn expand_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let x = x0(ins)?;
    let s = const_input(ins, 1, "shape")?.ok_or("input 'shape' is required")?.to_i64_vec();
    if s.iter().any(|&d| d < 0) {
        op_bail!("shape {s:?} has a negative dimension");
    }
    let s: Vec<usize> = s.into_iter().map(|d| d as usize).collect();
    let out = broadcast_shapes(x.shape, &s)?;
    checked_numel(&out)?;
    Ok((x.dtype, out))
}

pub fn tile_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let x = x0(ins)?;
    let rep = const_input(ins, 1, "repeats")?.ok_or("input 'repeats' is required")?.to_i64_vec();
    if rep.len() != x.shape.len() || rep.iter().any(|&r| r < 0) {
        op_bail!("repeats {rep:?} do not fit input {}", fmt_shape(x.shape));
    }
    let out: Vec<usize> = x.shape.iter().zip(&rep).map(|(&d, &r)| d * r as usize).collect();
    checked_numel(&out)?;
    Ok((x.dtype, out))
}

/// CPU evaluation of the ops whose output is a rearrangement of the input (or, for Range and
/// ConstantOfShape, generated from constants), given the inferred output type and shape.
pub fn eval_reshaping(op: &Op, ins: &[Option<&Tensor>], dt: DType, shape: Vec<usize>) -> OpResult<Tensor> {
    match op {
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => {
            Ok(input(ins, 0)?.clone().reshaped(shape))
        }
        Op::Expand => {
            let x = input(ins, 0)?;
            let st = broadcast_strides(&x.shape, &shape);
            let mut idx = Vec::with_capacity(numel(&shape));
            for_each_offset(&shape, [&st], |[i]| idx.push(i));
            Ok(x.gather_flat(shape, idx.into_iter()))
        }
        Op::Tile => {
            let x = input(ins, 0)?;
            let xs = strides(&x.shape);
            let r = x.rank();
            let mut idx = Vec::with_capacity(numel(&shape));
            let mut pos = vec![0usize; r];
            for _ in 0..numel(&shape) {
                idx.push((0..r).map(|d| (pos[d] % x.shape[d]) * xs[d]).sum());
                for d in (0..r).rev() {
                    pos[d] += 1;
                    if pos[d] < shape[d] {
                        break;
                    }
                    pos[d] = 0;
                }
            }
            Ok(x.gather_flat(shape, idx.into_iter()))
        }
        Op::Slice(s) => {
            let x = input(ins, 0)?;
            let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
            let axes = s.resolve(&infos)?;
            let xs = strides(&x.shape);
            let r = x.rank();
            let base: i64 = (0..r).map(|d| axes[d].start * xs[d] as i64).sum();
            let mut idx = Vec::with_capacity(numel(&shape));
            let mut pos = vec![0usize; r];
            for _ in 0..numel(&shape) {
                let off: i64 = base + (0..r).map(|d| pos[d] as i64 * axes[d].step * xs[d] as i64).sum::<i64>();
                idx.push(off as usize);
                for d in (0..r).rev() {
                    pos[d] += 1;
                    if pos[d] < shape[d] {
                        break;
                    }
                    pos[d] = 0;
                }
            }
            Ok(x.gather_flat(shape, idx.into_iter()))
        }
        Op::Range => {
            let start = input(ins, 0)?.get_f64(0);
            let delta = input(ins, 2)?.get_f64(0);
            let n = shape[0];
            let data = if dt.is_float() {
                Data::F32((0..n).map(|i| (start + i as f64 * delta) as f32).collect())
            } else {
                Data::I64((0..n).map(|i| start as i64 + i as i64 * delta as i64).collect())
            };
            Ok(Tensor::with_dtype(dt, shape, data))
        }
        Op::ConstantOfShape(v) => Ok(v.same_kind_filled(shape, v.get_f64(0)).cast(v.dtype)),
        _ => op_bail!("internal: {op:?} is not a reshaping op"),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub axis: i64,
    pub attr_split: Option<Vec<i64>>,
    pub outputs: usize,
}

impl Split {
    pub fn parse(a: &Attrs, n_out: usize) -> OpResult<Split> {
        Ok(Split { axis: a.int("axis", 0)?, attr_split: a.ints("split")?, outputs: n_out })
    }
    pub fn sizes(&self, ins: &[Option<InInfo>]) -> OpResult<(usize, Vec<usize>)> {
        let x = x0(ins)?;
        let a = norm_axis(self.axis, x.shape.len(), "axis")?;
        let dim = x.shape[a];
        let split = match const_input(ins, 1, "split")? {
            Some(t) => Some(t.to_i64_vec()),
            None => self.attr_split.clone(),
        };
        let sizes: Vec<usize> = match split {
            Some(s) => {
                if s.len() != self.outputs || s.iter().any(|&v| v < 0) || s.iter().sum::<i64>() != dim as i64 {
                    op_bail!("split {s:?} does not divide axis {a} of size {dim} into {} outputs", self.outputs);
                }
                s.into_iter().map(|v| v as usize).collect()
            }
            None => {
                let n = self.outputs.max(1);
                let chunk = dim.div_ceil(n);
                (0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
            }
        };
        Ok((a, sizes))
    }
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<Vec<OutInfo>> {
        let x = x0(ins)?;
        let (a, sizes) = self.sizes(ins)?;
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut sh = x.shape.to_vec();
                sh[a] = s;
                (x.dtype, sh)
            })
            .collect())
    }
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = input(ins, 0)?;
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        let (a, sizes) = self.sizes(&infos)?;
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a + 1..].iter().product();
        let dim = x.shape[a];
        let mut off = 0;
        let mut outs = Vec::new();
        for s in sizes {
            let mut sh = x.shape.clone();
            sh[a] = s;
            let idx = (0..outer).flat_map(move |o| (0..s * inner).map(move |k| (o * dim + off) * inner + k));
            outs.push(x.gather_flat(sh, idx));
            off += s;
        }
        Ok(outs)
    }
}
