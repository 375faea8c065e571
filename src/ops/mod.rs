//! Ops: one file per family, each holding the attributes parsed from the node, the shape rule,
//! and the CPU reference. The GPU dispatch of each op lives in `gpu::kernels`, keyed by the same
//! types.

pub mod concat;
pub mod conv;
pub mod conv_transpose;
pub mod elementwise;
pub mod layout;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod shape_ops;
pub mod softmax;

use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{DType, Tensor, fmt_shape};

/// What shape inference knows of an input: its type and shape, and its value when constant.
#[derive(Clone, Copy, Debug)]
pub struct InInfo<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub value: Option<&'a Tensor>,
}

impl<'a> InInfo<'a> {
    pub fn of(t: &'a Tensor) -> Self {
        InInfo { dtype: t.dtype, shape: &t.shape, value: Some(t) }
    }
}

pub type OutInfo = (DType, Vec<usize>);

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(conv::Conv),
    ConvTranspose(conv_transpose::ConvTranspose),
    Pool(pool::Pool),
    GlobalPool(pool::GlobalPool),
    Unary(elementwise::Unary),
    Binary(elementwise::Binary),
    Variadic(elementwise::Variadic),
    /// `legacy_channel`: PRelu before opset 7 broadcasts a 1-D slope over the channel axis.
    PRelu {
        legacy_channel: bool,
    },
    Where,
    BatchNorm(norm::BatchNorm),
    InstanceNorm(norm::InstanceNorm),
    Resize(resize::Resize),
    Pad(pad::Pad),
    DepthToSpace(layout::DepthToSpace),
    Transpose(layout::Transpose),
    Softmax(softmax::Softmax),
    Reduce(reduce::Reduce),
    Concat(concat::Concat),
    Reshape(shape_ops::Reshape),
    Flatten(shape_ops::Flatten),
    Squeeze(shape_ops::Squeeze),
    Unsqueeze(shape_ops::Unsqueeze),
    Slice(shape_ops::Slice),
    Gather(shape_ops::Gather),
    Shape(shape_ops::ShapeOp),
    Size,
    Cast(DType),
    ConstantOfShape(Tensor),
    Range,
    Expand,
    Tile,
    Split(shape_ops::Split),
    /// Identity, and Dropout in inference (removed by `prepare`).
    Identity,
}

/// Ops this engine knows, for `info` and error messages.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Clip",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Mish",
    "Swish",
    "Erf",
    "Gelu",
    "Abs",
    "Neg",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Not",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Where",
    "BatchNormalization",
    "InstanceNormalization",
    "Resize",
    "Upsample",
    "Pad",
    "DepthToSpace",
    "Transpose",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "Concat",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Gather",
    "Shape",
    "Size",
    "Cast",
    "Constant",
    "ConstantOfShape",
    "Range",
    "Expand",
    "Tile",
    "Split",
    "Identity",
    "Dropout",
];

/// The value of a `Constant` node.
pub fn constant_value(a: &Attrs) -> OpResult<Tensor> {
    if let Some(t) = a.tensor("value")? {
        return Ok((*t).clone());
    }
    if let Some(v) = a.float_opt("value_float")? {
        return Ok(Tensor::scalar_f32(v));
    }
    if let Some(v) = a.floats("value_floats")? {
        return Ok(Tensor::f32(vec![v.len()], v));
    }
    if let Some(v) = a.int_opt("value_int")? {
        return Ok(Tensor::i64(vec![], vec![v]));
    }
    if let Some(v) = a.ints("value_ints")? {
        return Ok(Tensor::i64(vec![v.len()], v));
    }
    if a.has("sparse_value") {
        op_bail!("sparse constant values are not supported");
    }
    if a.has("value_string") || a.has("value_strings") {
        op_bail!("string constants are not supported");
    }
    op_bail!("Constant node has no value attribute")
}

impl Op {
    /// Parse a node's op type and attributes. `n_in` / `n_out` are the counts of the node's
    /// inputs and outputs as written in the file (omitted optional ones included).
    pub fn parse(op_type: &str, a: &Attrs, opset: i64, n_in: usize, n_out: usize) -> OpResult<Op> {
        use elementwise::*;
        let _ = n_out;
        let need_inputs = |lo: usize, hi: usize| -> OpResult<()> {
            if n_in < lo || n_in > hi {
                if lo == hi {
                    op_bail!("expects {lo} inputs, got {n_in}");
                }
                op_bail!("expects {lo} to {hi} inputs, got {n_in}");
            }
            Ok(())
        };
        Ok(match op_type {
            "Conv" => {
                need_inputs(2, 3)?;
                Op::Conv(conv::Conv::parse(a)?)
            }
            "ConvTranspose" => {
                need_inputs(2, 3)?;
                Op::ConvTranspose(conv_transpose::ConvTranspose::parse(a)?)
            }
            "MaxPool" | "AveragePool" => {
                need_inputs(1, 1)?;
                Op::Pool(pool::Pool::parse(op_type, a)?)
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                need_inputs(1, 1)?;
                Op::GlobalPool(pool::GlobalPool { max: op_type == "GlobalMaxPool" })
            }
            "PRelu" => {
                need_inputs(2, 2)?;
                Op::PRelu { legacy_channel: opset < 7 }
            }
            "Where" => {
                need_inputs(3, 3)?;
                Op::Where
            }
            "Clip" => {
                need_inputs(1, 3)?;
                Op::Unary(Unary {
                    kind: UnaryKind::Clip {
                        min: a.float("min", f32::NEG_INFINITY)?,
                        max: a.float("max", f32::INFINITY)?,
                    },
                })
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual"
            | "And" | "Or" => {
                need_inputs(2, 2)?;
                if a.int("broadcast", 1)? == 0 && opset < 7 {
                    op_bail!("broadcast=0 (opset < 7) is not supported");
                }
                Op::Binary(Binary::parse(op_type)?)
            }
            "Max" | "Min" | "Sum" | "Mean" => {
                need_inputs(1, usize::MAX)?;
                Op::Variadic(Variadic::parse(op_type)?)
            }
            "BatchNormalization" => {
                need_inputs(5, 5)?;
                Op::BatchNorm(norm::BatchNorm::parse(a, opset)?)
            }
            "InstanceNormalization" => {
                need_inputs(3, 3)?;
                Op::InstanceNorm(norm::InstanceNorm { epsilon: a.float("epsilon", 1e-5)? })
            }
            "Resize" => {
                need_inputs(1, 4)?;
                Op::Resize(resize::Resize::parse(a, opset, false)?)
            }
            "Upsample" => {
                need_inputs(1, 2)?;
                Op::Resize(resize::Resize::parse(a, opset, true)?)
            }
            "Pad" => {
                need_inputs(1, 4)?;
                Op::Pad(pad::Pad::parse(a, opset)?)
            }
            "DepthToSpace" => {
                need_inputs(1, 1)?;
                Op::DepthToSpace(layout::DepthToSpace::parse(a)?)
            }
            "Transpose" => {
                need_inputs(1, 1)?;
                Op::Transpose(layout::Transpose { perm: a.ints("perm")? })
            }
            "Softmax" | "LogSoftmax" => {
                need_inputs(1, 1)?;
                Op::Softmax(softmax::Softmax::parse(a, opset, op_type == "LogSoftmax")?)
            }
            "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSum" => {
                need_inputs(1, 2)?;
                Op::Reduce(reduce::Reduce::parse(op_type, a, opset)?)
            }
            "Concat" => {
                need_inputs(1, usize::MAX)?;
                let axis = a.int_opt("axis")?.ok_or("attribute 'axis' is required")?;
                Op::Concat(concat::Concat { axis })
            }
            "Reshape" => {
                if opset < 5 {
                    op_bail!("Reshape-1 (shape as attribute) is not supported; re-export with opset >= 5");
                }
                need_inputs(2, 2)?;
                Op::Reshape(shape_ops::Reshape { allowzero: a.int("allowzero", 0)? != 0 })
            }
            "Flatten" => {
                need_inputs(1, 1)?;
                Op::Flatten(shape_ops::Flatten { axis: a.int("axis", 1)? })
            }
            "Squeeze" => {
                need_inputs(1, 2)?;
                Op::Squeeze(shape_ops::Squeeze { axes: a.ints("axes")? })
            }
            "Unsqueeze" => {
                need_inputs(1, 2)?;
                Op::Unsqueeze(shape_ops::Unsqueeze { axes: a.ints("axes")? })
            }
            "Slice" => {
                need_inputs(1, 5)?;
                Op::Slice(shape_ops::Slice::parse(a, opset)?)
            }
            "Gather" => {
                need_inputs(2, 2)?;
                Op::Gather(shape_ops::Gather { axis: a.int("axis", 0)? })
            }
            "Shape" => {
                need_inputs(1, 1)?;
                Op::Shape(shape_ops::ShapeOp { start: a.int("start", 0)?, end: a.int_opt("end")? })
            }
            "Size" => {
                need_inputs(1, 1)?;
                Op::Size
            }
            "Cast" => {
                need_inputs(1, 1)?;
                let to = a.int_opt("to")?.ok_or("attribute 'to' is required")?;
                let dt = DType::from_onnx(to as i32).ok_or_else(|| {
                    format!("cast to {} is not supported", crate::onnx::proto::data_type::name(to as i32))
                })?;
                Op::Cast(dt)
            }
            "ConstantOfShape" => {
                need_inputs(1, 1)?;
                let v = match a.tensor("value")? {
                    Some(t) => {
                        if t.len() != 1 {
                            op_bail!("attribute 'value' must hold one element, has {}", t.len());
                        }
                        (*t).clone()
                    }
                    None => Tensor::f32(vec![1], vec![0.0]),
                };
                Op::ConstantOfShape(v)
            }
            "Range" => {
                need_inputs(3, 3)?;
                Op::Range
            }
            "Expand" => {
                need_inputs(2, 2)?;
                Op::Expand
            }
            "Tile" => {
                need_inputs(2, 2)?;
                Op::Tile
            }
            "Split" => {
                need_inputs(1, 2)?;
                Op::Split(shape_ops::Split::parse(a, n_out)?)
            }
            "Identity" => {
                need_inputs(1, 1)?;
                Op::Identity
            }
            "Dropout" => {
                need_inputs(1, 3)?;
                if a.int("is_test", 1)? == 0 && opset < 7 {
                    op_bail!("training-mode Dropout is not supported");
                }
                Op::Identity
            }
            _ => {
                if let Some(kind) = UnaryKind::parse(op_type, a, opset)? {
                    need_inputs(1, 1)?;
                    Op::Unary(Unary { kind })
                } else {
                    op_bail!("op '{op_type}' is not supported (supported: {})", SUPPORTED_OPS.join(", "));
                }
            }
        })
    }

    /// Inputs whose values must be known when the graph is prepared (shapes, sizes, axes, pads):
    /// after constant folding they are constants, or the model cannot run.
    pub fn static_inputs(&self) -> &'static [usize] {
        match self {
            Op::Reshape(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Expand | Op::Tile | Op::Split(_) => &[1],
            Op::Reduce(_) => &[1],
            Op::Resize(_) => &[1, 2, 3],
            Op::Pad(_) => &[1, 2, 3],
            Op::Slice(_) => &[1, 2, 3, 4],
            Op::ConstantOfShape(_) => &[0],
            Op::Range => &[0, 1, 2],
            Op::Unary(elementwise::Unary { kind: elementwise::UnaryKind::Clip { .. } }) => &[1, 2],
            _ => &[],
        }
    }

    /// Output types and shapes from the inputs' (and constant inputs' values).
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<Vec<OutInfo>> {
        let x = || first(ins);
        Ok(match self {
            Op::Conv(c) => vec![c.infer(ins)?],
            Op::ConvTranspose(c) => vec![c.infer(ins)?],
            Op::Pool(p) => vec![p.infer(float_input(ins, 0)?)?],
            Op::GlobalPool(_) => {
                let x = float_input(ins, 0)?;
                if x.shape.len() < 3 {
                    op_bail!("expects an N x C x spatial input, got {}", fmt_shape(x.shape));
                }
                let mut s = x.shape.to_vec();
                for d in s.iter_mut().skip(2) {
                    *d = 1;
                }
                vec![(x.dtype, s)]
            }
            Op::Unary(u) => vec![u.infer(ins)?],
            Op::Binary(b) => vec![b.infer(ins)?],
            Op::Variadic(_) => vec![elementwise::variadic_infer(ins)?],
            Op::PRelu { legacy_channel } => vec![elementwise::prelu_infer(ins, *legacy_channel)?],
            Op::Where => vec![elementwise::where_infer(ins)?],
            Op::BatchNorm(_) => vec![norm::batchnorm_infer(ins)?],
            Op::InstanceNorm(_) => vec![norm::instancenorm_infer(ins)?],
            Op::Resize(r) => vec![r.infer(ins)?],
            Op::Pad(p) => vec![p.infer(ins)?],
            Op::DepthToSpace(d) => vec![d.infer(float_or_any(x()?))?],
            Op::Transpose(t) => vec![t.infer(x()?)?],
            Op::Softmax(s) => vec![s.infer(float_input(ins, 0)?)?],
            Op::Reduce(r) => vec![r.infer(ins)?],
            Op::Concat(c) => vec![c.infer(ins)?],
            Op::Reshape(r) => vec![r.infer(ins)?],
            Op::Flatten(f) => vec![f.infer(x()?)?],
            Op::Squeeze(s) => vec![s.infer(ins)?],
            Op::Unsqueeze(u) => vec![u.infer(ins)?],
            Op::Slice(s) => vec![s.infer(ins)?],
            Op::Gather(g) => vec![g.infer(ins)?],
            Op::Shape(s) => vec![(DType::I64, vec![s.range(x()?.shape.len()).len()])],
            Op::Size => vec![(DType::I64, vec![])],
            Op::Cast(to) => vec![(*to, x()?.shape.to_vec())],
            Op::ConstantOfShape(v) => {
                vec![(v.dtype, shape_ops::shape_from_input(ins, 0, "shape")?)]
            }
            Op::Range => vec![shape_ops::range_infer(ins)?],
            Op::Expand => vec![shape_ops::expand_infer(ins)?],
            Op::Tile => vec![shape_ops::tile_infer(ins)?],
            Op::Split(s) => s.infer(ins)?,
            Op::Identity => vec![(x()?.dtype, x()?.shape.to_vec())],
        })
    }

    /// Run the op on the CPU (the reference every GPU kernel is tested against).
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = || -> OpResult<&Tensor> { ins.first().copied().flatten().ok_or_else(|| "missing input 0".to_string()) };
        Ok(match self {
            Op::Conv(c) => vec![c.eval(ins)?],
            Op::ConvTranspose(c) => vec![c.eval(ins)?],
            Op::Pool(p) => vec![p.eval(x()?)?],
            Op::GlobalPool(g) => vec![g.eval(x()?)?],
            Op::Unary(u) => vec![u.eval(ins)?],
            Op::Binary(b) => vec![b.eval(ins)?],
            Op::Variadic(v) => vec![v.eval(ins)?],
            Op::PRelu { legacy_channel } => vec![elementwise::prelu_eval(ins, *legacy_channel)?],
            Op::Where => vec![elementwise::where_eval(ins)?],
            Op::BatchNorm(b) => vec![b.eval(ins)?],
            Op::InstanceNorm(n) => vec![n.eval(ins)?],
            Op::Resize(r) => vec![r.eval(ins)?],
            Op::Pad(p) => vec![p.eval(ins)?],
            Op::DepthToSpace(d) => vec![d.eval(x()?)?],
            Op::Transpose(t) => vec![t.eval(x()?)?],
            Op::Softmax(s) => vec![s.eval(x()?)?],
            Op::Reduce(r) => vec![r.eval(ins)?],
            Op::Concat(c) => vec![c.eval(ins)?],
            Op::Reshape(_)
            | Op::Flatten(_)
            | Op::Squeeze(_)
            | Op::Unsqueeze(_)
            | Op::Expand
            | Op::Slice(_)
            | Op::Tile
            | Op::Range
            | Op::ConstantOfShape(_) => {
                let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
                let (dt, shape) = self.infer(&infos)?.remove(0);
                vec![shape_ops::eval_reshaping(self, ins, dt, shape)?]
            }
            Op::Gather(g) => vec![g.eval(ins)?],
            Op::Shape(s) => {
                let r = s.range(x()?.rank());
                let v: Vec<i64> = x()?.shape[r].iter().map(|&d| d as i64).collect();
                vec![Tensor::i64(vec![v.len()], v)]
            }
            Op::Size => vec![Tensor::i64(vec![], vec![x()?.len() as i64])],
            Op::Cast(to) => vec![x()?.cast(*to)],
            Op::Split(s) => s.eval(ins)?,
            Op::Identity => vec![x()?.clone()],
        })
    }

    /// Floating-point operations per run for the given input and output shapes (multiply-adds
    /// count two), used by statistics and the benchmark.
    pub fn flops(&self, in_shapes: &[Option<&[usize]>], out_shape: &[usize]) -> u64 {
        let out: u64 = out_shape.iter().product::<usize>() as u64;
        match self {
            Op::Conv(_) => {
                let w = in_shapes.get(1).copied().flatten().unwrap_or(&[]);
                let k: u64 = w.iter().skip(1).product::<usize>() as u64;
                2 * out * k
            }
            Op::ConvTranspose(c) => {
                let x = in_shapes.first().copied().flatten().unwrap_or(&[]);
                let w = in_shapes.get(1).copied().flatten().unwrap_or(&[]);
                let xin: u64 = x.iter().product::<usize>() as u64;
                let per: u64 = w.iter().skip(1).product::<usize>() as u64;
                let _ = c;
                2 * xin * per
            }
            _ => out,
        }
    }
}

fn first<'a>(ins: &'a [Option<InInfo<'a>>]) -> OpResult<InInfo<'a>> {
    ins.first().copied().flatten().ok_or_else(|| "missing input 0".to_string())
}

fn float_or_any(i: InInfo) -> InInfo {
    i
}

/// Input `k`, required and of a float type.
pub fn float_input<'a>(ins: &'a [Option<InInfo<'a>>], k: usize) -> OpResult<InInfo<'a>> {
    let i = ins.get(k).copied().flatten().ok_or_else(|| format!("missing required input {k}"))?;
    if !i.dtype.is_float() {
        op_bail!("input {k} must be a float tensor, got {}", i.dtype.name());
    }
    Ok(i)
}

/// Input `k` as a tensor, required.
pub fn input<'a>(ins: &[Option<&'a Tensor>], k: usize) -> OpResult<&'a Tensor> {
    ins.get(k).copied().flatten().ok_or_else(|| format!("missing required input {k}"))
}

/// Normalise a possibly negative axis for a tensor of rank `rank`.
pub fn norm_axis(axis: i64, rank: usize, what: &str) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        op_bail!("{what} {axis} is out of range for rank {rank}");
    }
    Ok(a as usize)
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            op_bail!("shapes {} and {} cannot be broadcast together", fmt_shape(a), fmt_shape(b));
        };
    }
    Ok(out)
}

/// Strides that read a tensor of shape `src` as if broadcast to `dst` (0 on broadcast axes).
pub fn broadcast_strides(src: &[usize], dst: &[usize]) -> Vec<usize> {
    let s = crate::tensor::strides(src);
    let off = dst.len() - src.len();
    (0..dst.len()).map(|i| if i < off || src[i - off] == 1 { 0 } else { s[i - off] }).collect()
}

/// Visit every multi-index of `shape` in row-major order, passing the flat offsets given by
/// each stride set. Used by broadcasting and strided copies.
pub fn for_each_offset<const K: usize>(shape: &[usize], strides: [&[usize]; K], mut f: impl FnMut([usize; K])) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let r = shape.len();
    let mut idx = vec![0usize; r];
    let mut off = [0usize; K];
    for _ in 0..n {
        f(off);
        // increment the odometer
        let mut d = r;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            for k in 0..K {
                off[k] += strides[k][d];
            }
            if idx[d] < shape[d] {
                break;
            }
            for k in 0..K {
                off[k] -= strides[k][d] * shape[d];
            }
            idx[d] = 0;
        }
    }
}

/// Split `out` into chunks of `chunk` elements and fill them in parallel on all cores.
pub fn par_chunks<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if chunk == 0 || out.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let n_chunks = out.len().div_ceil(chunk);
    if threads <= 1 || n_chunks <= 1 || out.len() < 4096 {
        for (i, c) in out.chunks_mut(chunk).enumerate() {
            f(i, c);
        }
        return;
    }
    let per = n_chunks.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, group) in out.chunks_mut(per * chunk).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, c) in group.chunks_mut(chunk).enumerate() {
                    f(t * per + i, c);
                }
            });
        }
    });
}
