//! Reading and writing NumPy `.npy` files (format versions 1-3, little-endian float32; float64
//! and float16 inputs are converted to float32 on read).

use crate::error::{Error, Result};
use crate::tensor::{Tensor, checked_numel};
use std::path::Path;

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: not a usable .npy file: {msg}", path.display()))
}

/// Parse the .npy bytes (path only used in messages).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(path, format!("format version {v} is not supported"))),
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| bad(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(path, "header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = &header[i + key.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad(path, "header has no 'descr'"))?;
    let descr = descr.trim_start_matches(['\'', '"']);
    let descr: String = descr.chars().take_while(|&c| c != '\'' && c != '"').collect();
    let fortran = field("fortran_order").ok_or_else(|| bad(path, "header has no 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(bad(path, "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)"));
    }
    let shape_s = field("shape").ok_or_else(|| bad(path, "header has no 'shape'"))?;
    let shape_s = shape_s.strip_prefix('(').ok_or_else(|| bad(path, "bad shape"))?;
    let shape_s = &shape_s[..shape_s.find(')').ok_or_else(|| bad(path, "bad shape"))?];
    let mut shape = Vec::new();
    for part in shape_s.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        shape.push(p.parse::<usize>().map_err(|_| bad(path, format!("bad dimension '{p}' in shape")))?);
    }
    let n = checked_numel(&shape).map_err(|m| bad(path, m))?;
    let data = &bytes[start + hlen..];
    let (es, conv): (usize, fn(&[u8]) -> f32) = match descr.as_str() {
        "<f4" | "=f4" | "f4" => (4, |c| f32::from_le_bytes(c.try_into().unwrap())),
        "<f8" | "=f8" | "f8" => (8, |c| f64::from_le_bytes(c.try_into().unwrap()) as f32),
        "<f2" | "=f2" | "f2" => (2, |c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32()),
        other => {
            return Err(bad(path, format!("dtype '{other}' is not supported (expected float32 '<f4')")));
        }
    };
    if data.len() < n * es {
        return Err(bad(path, format!("shape {shape:?} needs {} bytes of data, the file has {}", n * es, data.len())));
    }
    let v: Vec<f32> = data[..n * es].chunks_exact(es).map(conv).collect();
    Ok(Tensor::f32(shape, v))
}

pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// The .npy bytes of a float32 tensor (integer tensors are written as int64).
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let shape = if t.shape.len() == 1 { format!("({},)", shape[0]) } else { format!("({})", shape.join(", ")) };
    let descr = if t.dtype.is_float() { "<f4" } else { "<i8" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &t.data {
        crate::tensor::Data::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        crate::tensor::Data::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

/// Write atomically: to a temporary file beside the target, then rename, so a failure leaves
/// no partial output.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    crate::io_util::write_atomic(path, &to_bytes(t))
}
