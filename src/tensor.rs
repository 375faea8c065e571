//! Host tensors: a shape, a logical element type and the values. Floating-point types (f32, f16,
//! bf16, f64) are held as f32, integer and boolean types as i64; the logical type is kept so
//! that `Cast` and the output files say what the model says.

use crate::error::OpResult;
use crate::op_bail;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl DType {
    pub fn from_onnx(t: i32) -> Option<DType> {
        use crate::onnx::proto::data_type as d;
        Some(match t {
            d::FLOAT => DType::F32,
            d::FLOAT16 => DType::F16,
            d::BFLOAT16 => DType::BF16,
            d::DOUBLE => DType::F64,
            d::INT64 => DType::I64,
            d::INT32 => DType::I32,
            d::INT16 => DType::I16,
            d::INT8 => DType::I8,
            d::UINT8 => DType::U8,
            d::UINT16 => DType::U16,
            d::UINT32 => DType::U32,
            d::UINT64 => DType::U64,
            d::BOOL => DType::Bool,
            _ => return None,
        })
    }
    pub fn to_onnx(self) -> i32 {
        use crate::onnx::proto::data_type as d;
        match self {
            DType::F32 => d::FLOAT,
            DType::F16 => d::FLOAT16,
            DType::BF16 => d::BFLOAT16,
            DType::F64 => d::DOUBLE,
            DType::I64 => d::INT64,
            DType::I32 => d::INT32,
            DType::I16 => d::INT16,
            DType::I8 => d::INT8,
            DType::U8 => d::UINT8,
            DType::U16 => d::UINT16,
            DType::U32 => d::UINT32,
            DType::U64 => d::UINT64,
            DType::Bool => d::BOOL,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
        }
    }
    /// Bytes per element of the logical type (used for size limits and statistics).
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
    /// Wrap an integer into this integer type's range (what a C cast does).
    pub fn wrap_int(self, v: i64) -> i64 {
        match self {
            DType::I32 => v as i32 as i64,
            DType::I16 => v as i16 as i64,
            DType::I8 => v as i8 as i64,
            DType::U8 => v as u8 as i64,
            DType::U16 => v as u16 as i64,
            DType::U32 => v as u32 as i64,
            DType::Bool => (v != 0) as i64,
            _ => v,
        }
    }
    /// Round a value to what this float type can hold.
    pub fn round_float(self, v: f32) -> f32 {
        match self {
            DType::F16 => half::f16::from_f32(v).to_f32(),
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            _ => v,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Largest tensor the engine will allocate, in bytes (default 4 GiB; `UNET_GPU_MAX_TENSOR_BYTES`
/// overrides it). Shapes past it are refused with an error instead of aborting on allocation.
pub fn max_tensor_bytes() -> u64 {
    std::env::var("UNET_GPU_MAX_TENSOR_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(4u64 << 30)
}

/// Number of elements of a shape, refusing overflow and sizes past [`max_tensor_bytes`].
pub fn checked_numel(shape: &[usize]) -> OpResult<usize> {
    let mut n: u64 = 1;
    for &d in shape {
        n = match n.checked_mul(d as u64) {
            Some(v) => v,
            None => op_bail!("shape {} overflows", fmt_shape(shape)),
        };
    }
    if n.saturating_mul(4) > max_tensor_bytes() {
        op_bail!(
            "shape {} has {} elements, over the limit of {} bytes per tensor (set UNET_GPU_MAX_TENSOR_BYTES to raise it)",
            fmt_shape(shape),
            n,
            max_tensor_bytes()
        );
    }
    Ok(n as usize)
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// `n` pseudo-random values in [-1, 1) from a xorshift generator whose state is `seed` (inputs
/// for timing and self-checks: deterministic, no dependency).
pub fn pseudo_random(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(numel(&shape), data.len());
        Tensor { dtype: DType::F32, shape, data: Data::F32(data) }
    }
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Tensor {
        debug_assert_eq!(numel(&shape), data.len());
        Tensor { dtype: DType::I64, shape, data: Data::I64(data) }
    }
    /// A tensor of the given logical type; floats are rounded to it, integers wrapped.
    pub fn with_dtype(dtype: DType, shape: Vec<usize>, data: Data) -> Tensor {
        let data = match data {
            Data::F32(v) if dtype.is_float() => Data::F32(if matches!(dtype, DType::F16 | DType::BF16) {
                v.into_iter().map(|x| dtype.round_float(x)).collect()
            } else {
                v
            }),
            Data::I64(v) if !dtype.is_float() => Data::I64(v.into_iter().map(|x| dtype.wrap_int(x)).collect()),
            Data::F32(v) => Data::I64(v.into_iter().map(|x| dtype.wrap_int(float_to_int(x))).collect()),
            Data::I64(v) => Data::F32(v.into_iter().map(|x| dtype.round_float(x as f32)).collect()),
        };
        Tensor { dtype, shape, data }
    }
    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::f32(vec![], vec![v])
    }
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn as_f32(&self) -> OpResult<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            Data::I64(_) => Err(format!("expected a float tensor, got {}", self.dtype.name())),
        }
    }
    pub fn as_i64(&self) -> OpResult<&[i64]> {
        match &self.data {
            Data::I64(v) => Ok(v),
            Data::F32(_) => Err(format!("expected an integer tensor, got {}", self.dtype.name())),
        }
    }
    /// Values as i64 whatever the type (floats truncated): for shape-like inputs.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::I64(v) => v.clone(),
            Data::F32(v) => v.iter().map(|&x| float_to_int(x)).collect(),
        }
    }
    /// Values as f32 whatever the type.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// Values as f64 whatever the type.
    pub fn get_f64(&self, i: usize) -> f64 {
        match &self.data {
            Data::F32(v) => v[i] as f64,
            Data::I64(v) => v[i] as f64,
        }
    }
    pub fn reshaped(mut self, shape: Vec<usize>) -> Tensor {
        debug_assert_eq!(numel(&shape), self.len());
        self.shape = shape;
        self
    }
    /// Convert to another logical type, as ONNX `Cast` does.
    pub fn cast(&self, to: DType) -> Tensor {
        Tensor::with_dtype(to, self.shape.clone(), self.data.clone())
    }
    /// Gather elements by flat index into a new tensor of the same type.
    pub fn gather_flat(&self, shape: Vec<usize>, idx: impl Iterator<Item = usize>) -> Tensor {
        let data = match &self.data {
            Data::F32(v) => Data::F32(idx.map(|i| v[i]).collect()),
            Data::I64(v) => Data::I64(idx.map(|i| v[i]).collect()),
        };
        Tensor { dtype: self.dtype, shape, data }
    }
    /// An empty tensor of the same type holding `n` copies of `fill` (0 for integers when the
    /// fill is a float).
    pub fn same_kind_filled(&self, shape: Vec<usize>, fill: f64) -> Tensor {
        let n = numel(&shape);
        let data = match &self.data {
            Data::F32(_) => Data::F32(vec![fill as f32; n]),
            Data::I64(_) => Data::I64(vec![fill as i64; n]),
        };
        Tensor { dtype: self.dtype, shape, data }
    }
}

/// Float to integer as a C cast does (truncation toward zero, saturating, NaN to 0).
pub fn float_to_int(x: f32) -> i64 {
    x as i64
}
