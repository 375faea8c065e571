//! Elementwise ops: activations and other unary maps, numpy-broadcast binary ops, variadic
//! Max/Min/Sum/Mean, PRelu and Where. Also the activation set that conv kernels fuse into their
//! epilogue.

use super::{InInfo, OutInfo, broadcast_shapes, broadcast_strides, float_input, for_each_offset, input};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{DType, Data, Tensor, fmt_shape};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    Clip {
        min: f32,
        max: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    Softplus,
    Softsign,
    Mish,
    /// x * sigmoid(alpha x); SiLU is alpha = 1.
    Swish {
        alpha: f32,
    },
    Erf,
    Gelu {
        tanh: bool,
    },
    Abs,
    Neg,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sign,
    Not,
}

impl UnaryKind {
    pub fn parse(op: &str, a: &Attrs, opset: i64) -> OpResult<Option<UnaryKind>> {
        use UnaryKind::*;
        let _ = opset;
        Ok(Some(match op {
            "Relu" => Relu,
            "LeakyRelu" => LeakyRelu { alpha: a.float("alpha", 0.01)? },
            "Sigmoid" => Sigmoid,
            "HardSigmoid" => HardSigmoid { alpha: a.float("alpha", 0.2)?, beta: a.float("beta", 0.5)? },
            "HardSwish" => HardSwish,
            "Tanh" => Tanh,
            "Elu" => Elu { alpha: a.float("alpha", 1.0)? },
            "Selu" => Selu { alpha: a.float("alpha", 1.673_263_2)?, gamma: a.float("gamma", 1.050_701)? },
            "Celu" => Celu { alpha: a.float("alpha", 1.0)? },
            "Softplus" => Softplus,
            "Softsign" => Softsign,
            "Mish" => Mish,
            "Swish" => Swish { alpha: a.float("alpha", 1.0)? },
            "Erf" => Erf,
            "Gelu" => {
                let approx = a.string("approximate", "none")?;
                match approx.as_str() {
                    "none" => Gelu { tanh: false },
                    "tanh" => Gelu { tanh: true },
                    other => {
                        op_bail!("attribute approximate='{other}' is not supported (none, tanh)")
                    }
                }
            }
            "Abs" => Abs,
            "Neg" => Neg,
            "Exp" => Exp,
            "Log" => Log,
            "Sqrt" => Sqrt,
            "Reciprocal" => Reciprocal,
            "Floor" => Floor,
            "Ceil" => Ceil,
            "Round" => Round,
            "Sign" => Sign,
            "Not" => Not,
            _ => return Ok(None),
        }))
    }

    /// The function itself, in f64 (the CPU reference evaluates in f64 and rounds once).
    pub fn apply(self, x: f64) -> f64 {
        use UnaryKind::*;
        match self {
            Relu => x.max(0.0),
            LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x
                }
            }
            Sigmoid => sigmoid(x),
            HardSigmoid { alpha, beta } => (alpha as f64 * x + beta as f64).clamp(0.0, 1.0),
            HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Tanh => x.tanh(),
            Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min as f64).min(max as f64)
                }
            }
            Elu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * (x.exp() - 1.0)
                }
            }
            Selu { alpha, gamma } => gamma as f64 * if x > 0.0 { x } else { alpha as f64 * (x.exp() - 1.0) },
            Celu { alpha } => {
                let a = alpha as f64;
                x.max(0.0) + (0.0f64).min(a * ((x / a).exp() - 1.0))
            }
            Softplus => softplus(x),
            Softsign => x / (1.0 + x.abs()),
            Mish => x * softplus(x).tanh(),
            Swish { alpha } => x * sigmoid(alpha as f64 * x),
            Erf => erf(x),
            Gelu { tanh: false } => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            Gelu { tanh: true } => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Abs => x.abs(),
            Neg => -x,
            Exp => x.exp(),
            Log => x.ln(),
            Sqrt => x.sqrt(),
            Reciprocal => 1.0 / x,
            Floor => x.floor(),
            Ceil => x.ceil(),
            Round => x.round_ties_even(),
            Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Not => (x == 0.0) as i32 as f64,
        }
    }

    /// Ops that also take integer inputs.
    fn int_ok(self) -> bool {
        use UnaryKind::*;
        matches!(self, Relu | Abs | Neg | Sign | Not | Clip { .. })
    }
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn softplus(x: f64) -> f64 {
    if x > 30.0 { x } else { x.exp().ln_1p() }
}

/// The error function (Abramowitz-Stegun would be too coarse for f32; this uses the
/// series / continued-fraction split with f64 arithmetic, accurate to ~1e-15).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = ax * ax;
        let mut term = ax;
        let mut sum = ax;
        let mut n = 0.0;
        // |x| < 2.5: the terms fall below 1e-17 of the sum within 60 steps
        for _ in 0..80 {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if ax > 6.0 {
        1.0
    } else {
        // erfc continued fraction (Lentz), good for x >= 2.5
        let tiny = 1e-300;
        let mut f = ax;
        let mut c = ax;
        let mut d = 0.0;
        let mut k = 1.0;
        for _ in 0..200 {
            let an = k / 2.0;
            d = ax + an * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = ax + an / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            let delta = c * d;
            f *= delta;
            k += 1.0;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt())
    };
    if x < 0.0 { -r } else { r }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
}

impl Unary {
    /// For Clip with min/max given as inputs, the effective kind.
    pub fn resolved(&self, ins: &[Option<&Tensor>]) -> OpResult<UnaryKind> {
        let mut k = self.kind;
        if let UnaryKind::Clip { min, max } = &mut k {
            for (i, slot) in [(1usize, min), (2usize, max)] {
                if let Some(t) = ins.get(i).copied().flatten() {
                    if t.len() != 1 {
                        op_bail!("Clip bound (input {i}) must be a scalar, has shape {}", fmt_shape(&t.shape));
                    }
                    *slot = t.get_f64(0) as f32;
                }
            }
        }
        Ok(k)
    }
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let x = ins.first().copied().flatten().ok_or("missing input 0")?;
        if !x.dtype.is_float() && !self.kind.int_ok() {
            op_bail!("input must be a float tensor, got {}", x.dtype.name());
        }
        Ok((x.dtype, x.shape.to_vec()))
    }
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let k = self.resolved(ins)?;
        Ok(match &x.data {
            Data::F32(v) => Tensor::with_dtype(
                x.dtype,
                x.shape.clone(),
                Data::F32(v.iter().map(|&a| k.apply(a as f64) as f32).collect()),
            ),
            Data::I64(v) => {
                if !k.int_ok() {
                    op_bail!("input must be a float tensor, got {}", x.dtype.name());
                }
                let f = |a: i64| -> i64 {
                    match k {
                        UnaryKind::Relu => a.max(0),
                        UnaryKind::Abs => a.abs(),
                        UnaryKind::Neg => -a,
                        UnaryKind::Sign => a.signum(),
                        UnaryKind::Not => (a == 0) as i64,
                        UnaryKind::Clip { min, max } => (a as f64).max(min as f64).min(max as f64) as i64,
                        _ => a,
                    }
                };
                Tensor::with_dtype(x.dtype, x.shape.clone(), Data::I64(v.iter().map(|&a| f(a)).collect()))
            }
        })
    }
}

/// Activation applied in a conv epilogue after bias (fusion target).
pub type Activation = Option<UnaryKind>;

/// Kinds a conv kernel can apply in its epilogue.
pub fn fusable_activation(k: UnaryKind) -> bool {
    use UnaryKind::*;
    matches!(
        k,
        Relu | LeakyRelu { .. }
            | Sigmoid
            | Tanh
            | Clip { .. }
            | Swish { .. }
            | HardSigmoid { .. }
            | HardSwish
            | Elu { .. }
            | Gelu { .. }
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binary {
    pub kind: BinaryKind,
}

impl BinaryKind {
    pub fn is_compare(self) -> bool {
        use BinaryKind::*;
        matches!(self, Equal | Less | Greater | LessOrEqual | GreaterOrEqual | And | Or)
    }
    pub fn apply_f(self, a: f64, b: f64) -> f64 {
        use BinaryKind::*;
        match self {
            Add => a + b,
            Sub => a - b,
            Mul => a * b,
            Div => a / b,
            Pow => a.powf(b),
            Max => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            Min => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            Equal => (a == b) as i32 as f64,
            Less => (a < b) as i32 as f64,
            Greater => (a > b) as i32 as f64,
            LessOrEqual => (a <= b) as i32 as f64,
            GreaterOrEqual => (a >= b) as i32 as f64,
            And => (a != 0.0 && b != 0.0) as i32 as f64,
            Or => (a != 0.0 || b != 0.0) as i32 as f64,
        }
    }
    pub fn apply_i(self, a: i64, b: i64) -> OpResult<i64> {
        use BinaryKind::*;
        Ok(match self {
            Add => a.wrapping_add(b),
            Sub => a.wrapping_sub(b),
            Mul => a.wrapping_mul(b),
            Div => {
                if b == 0 {
                    op_bail!("integer division by zero");
                }
                a.wrapping_div(b)
            }
            Pow => {
                if b < 0 {
                    0
                } else {
                    a.wrapping_pow(b.min(u32::MAX as i64) as u32)
                }
            }
            Max => a.max(b),
            Min => a.min(b),
            Equal => (a == b) as i64,
            Less => (a < b) as i64,
            Greater => (a > b) as i64,
            LessOrEqual => (a <= b) as i64,
            GreaterOrEqual => (a >= b) as i64,
            And => (a != 0 && b != 0) as i64,
            Or => (a != 0 || b != 0) as i64,
        })
    }
}

impl Binary {
    pub fn parse(op: &str) -> OpResult<Binary> {
        use BinaryKind::*;
        let kind = match op {
            "Add" => Add,
            "Sub" => Sub,
            "Mul" => Mul,
            "Div" => Div,
            "Pow" => Pow,
            "Equal" => Equal,
            "Less" => Less,
            "Greater" => Greater,
            "LessOrEqual" => LessOrEqual,
            "GreaterOrEqual" => GreaterOrEqual,
            "And" => And,
            "Or" => Or,
            _ => op_bail!("not a binary op: {op}"),
        };
        Ok(Binary { kind })
    }
    pub fn infer(&self, ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
        let a = ins.first().copied().flatten().ok_or("missing input 0")?;
        let b = ins.get(1).copied().flatten().ok_or("missing input 1")?;
        let shape = broadcast_shapes(a.shape, b.shape)?;
        let dt = if self.kind.is_compare() {
            DType::Bool
        } else if self.kind == BinaryKind::Pow {
            a.dtype
        } else {
            if a.dtype.is_float() != b.dtype.is_float() {
                op_bail!("input types differ: {} and {}", a.dtype.name(), b.dtype.name());
            }
            a.dtype
        };
        Ok((dt, shape))
    }
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        let (dt, shape) = self.infer(&[Some(InInfo::of(a)), Some(InInfo::of(b))])?;
        binary_broadcast(self.kind, a, b, dt, shape)
    }
}

/// Broadcast `a op b` to `shape`, computing in f64 for floats and i64 for integers.
pub fn binary_broadcast(k: BinaryKind, a: &Tensor, b: &Tensor, dt: DType, shape: Vec<usize>) -> OpResult<Tensor> {
    let sa = broadcast_strides(&a.shape, &shape);
    let sb = broadcast_strides(&b.shape, &shape);
    let n = crate::tensor::numel(&shape);
    let both_int = !a.dtype.is_float() && !b.dtype.is_float();
    if both_int {
        let (va, vb) = (a.as_i64()?, b.as_i64()?);
        let mut out = Vec::with_capacity(n);
        let mut err = None;
        for_each_offset(&shape, [&sa, &sb], |[i, j]| match k.apply_i(va[i], vb[j]) {
            Ok(v) => out.push(v),
            Err(e) => {
                err.get_or_insert(e);
                out.push(0)
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        return Ok(Tensor::with_dtype(dt, shape, Data::I64(out)));
    }
    let mut out = Vec::with_capacity(n);
    for_each_offset(&shape, [&sa, &sb], |[i, j]| out.push(k.apply_f(a.get_f64(i), b.get_f64(j))));
    let data = if dt.is_float() {
        Data::F32(out.into_iter().map(|v| v as f32).collect())
    } else {
        Data::I64(out.into_iter().map(|v| v as i64).collect())
    };
    Ok(Tensor::with_dtype(dt, shape, data))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariadicKind {
    Max,
    Min,
    Sum,
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variadic {
    pub kind: VariadicKind,
}

impl Variadic {
    pub fn parse(op: &str) -> OpResult<Variadic> {
        Ok(Variadic {
            kind: match op {
                "Max" => VariadicKind::Max,
                "Min" => VariadicKind::Min,
                "Sum" => VariadicKind::Sum,
                "Mean" => VariadicKind::Mean,
                _ => op_bail!("not a variadic op: {op}"),
            },
        })
    }
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let ts: Vec<&Tensor> = ins.iter().flatten().copied().collect();
        if ts.is_empty() {
            op_bail!("needs at least one input");
        }
        let bk = match self.kind {
            VariadicKind::Max => BinaryKind::Max,
            VariadicKind::Min => BinaryKind::Min,
            _ => BinaryKind::Add,
        };
        let mut acc = ts[0].clone();
        if ts.len() == 1 {
            return Ok(acc);
        }
        for t in &ts[1..] {
            let shape = broadcast_shapes(&acc.shape, &t.shape)?;
            acc = binary_broadcast(bk, &acc, t, acc.dtype, shape)?;
        }
        if self.kind == VariadicKind::Mean {
            let n = ts.len() as f32;
            if let Data::F32(v) = &mut acc.data {
                v.iter_mut().for_each(|x| *x /= n);
            }
        }
        Ok(acc)
    }
}

pub fn variadic_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let mut it = ins.iter().flatten();
    let first = it.next().ok_or("needs at least one input")?;
    let mut shape = first.shape.to_vec();
    for i in it {
        shape = broadcast_shapes(&shape, i.shape)?;
    }
    Ok((first.dtype, shape))
}

/// The slope's shape as it broadcasts against X: before opset 7 a 1-D slope of C values is per
/// channel (axis 1).
pub fn prelu_slope_shape(x: &[usize], s: &[usize], legacy_channel: bool) -> Vec<usize> {
    if legacy_channel && s.len() == 1 && x.len() >= 2 && s[0] == x[1] && s[0] != 1 {
        let mut v = vec![1; x.len() - 1];
        v[0] = s[0];
        v
    } else {
        s.to_vec()
    }
}

pub fn prelu_infer(ins: &[Option<InInfo>], legacy_channel: bool) -> OpResult<OutInfo> {
    let x = float_input(ins, 0)?;
    let s = float_input(ins, 1)?;
    let ss = prelu_slope_shape(x.shape, s.shape, legacy_channel);
    let out = broadcast_shapes(x.shape, &ss)?;
    if out != x.shape {
        op_bail!("slope shape {} does not broadcast to input shape {}", fmt_shape(s.shape), fmt_shape(x.shape));
    }
    Ok((x.dtype, out))
}

pub fn prelu_eval(ins: &[Option<&Tensor>], legacy_channel: bool) -> OpResult<Tensor> {
    let x = input(ins, 0)?;
    let s = input(ins, 1)?;
    let (dt, shape) = prelu_infer(&[Some(InInfo::of(x)), Some(InInfo::of(s))], legacy_channel)?;
    let sx = broadcast_strides(&x.shape, &shape);
    let ss = broadcast_strides(&prelu_slope_shape(&x.shape, &s.shape, legacy_channel), &shape);
    let (vx, vs) = (x.as_f32()?, s.as_f32()?);
    let mut out = Vec::with_capacity(vx.len());
    for_each_offset(&shape, [&sx, &ss], |[i, j]| {
        let v = vx[i];
        out.push(if v < 0.0 { v * vs[j] } else { v })
    });
    Ok(Tensor::with_dtype(dt, shape, Data::F32(out)))
}

pub fn where_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let c = ins.first().copied().flatten().ok_or("missing input 0")?;
    let x = ins.get(1).copied().flatten().ok_or("missing input 1")?;
    let y = ins.get(2).copied().flatten().ok_or("missing input 2")?;
    let s = broadcast_shapes(&broadcast_shapes(c.shape, x.shape)?, y.shape)?;
    Ok((x.dtype, s))
}

pub fn where_eval(ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
    let c = input(ins, 0)?;
    let x = input(ins, 1)?;
    let y = input(ins, 2)?;
    let (dt, shape) = where_infer(&[Some(InInfo::of(c)), Some(InInfo::of(x)), Some(InInfo::of(y))])?;
    let (sc, sx, sy) =
        (broadcast_strides(&c.shape, &shape), broadcast_strides(&x.shape, &shape), broadcast_strides(&y.shape, &shape));
    let mut idx = Vec::with_capacity(crate::tensor::numel(&shape));
    // pick from x or y; encode the choice with the flat index
    for_each_offset(&shape, [&sc, &sx, &sy], |[i, j, k]| {
        idx.push(if c.get_f64(i) != 0.0 { (true, j) } else { (false, k) })
    });
    let data = match (&x.data, &y.data) {
        (Data::F32(a), Data::F32(b)) => Data::F32(idx.iter().map(|&(t, i)| if t { a[i] } else { b[i] }).collect()),
        (Data::I64(a), Data::I64(b)) => Data::I64(idx.iter().map(|&(t, i)| if t { a[i] } else { b[i] }).collect()),
        _ => op_bail!("X and Y types differ: {} and {}", x.dtype.name(), y.dtype.name()),
    };
    Ok(Tensor::with_dtype(dt, shape, data))
}
