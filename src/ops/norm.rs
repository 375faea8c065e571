//! BatchNormalization (inference) and InstanceNormalization.

use super::{InInfo, OutInfo, float_input, input, par_chunks};
use crate::error::OpResult;
use crate::graph::Attrs;
use crate::op_bail;
use crate::tensor::{Data, Tensor, fmt_shape};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    pub epsilon: f32,
}

impl BatchNorm {
    pub fn parse(a: &Attrs, opset: i64) -> OpResult<BatchNorm> {
        if a.int("training_mode", 0)? != 0 {
            op_bail!("training_mode=1 is not supported (inference only)");
        }
        if opset < 9 && a.int("spatial", 1)? == 0 {
            op_bail!("spatial=0 is not supported");
        }
        Ok(BatchNorm { epsilon: a.float("epsilon", 1e-5)? })
    }

    /// Per-channel (scale, shift) so that y = x * scale + shift.
    pub fn affine(&self, ins: &[Option<&Tensor>]) -> OpResult<(Vec<f64>, Vec<f64>)> {
        let (s, b, m, v) =
            (input(ins, 1)?.as_f32()?, input(ins, 2)?.as_f32()?, input(ins, 3)?.as_f32()?, input(ins, 4)?.as_f32()?);
        let c = s.len();
        if b.len() != c || m.len() != c || v.len() != c {
            op_bail!("scale, B, mean and var must all have the channel count {c}");
        }
        let mut scale = Vec::with_capacity(c);
        let mut shift = Vec::with_capacity(c);
        for i in 0..c {
            let k = s[i] as f64 / (v[i] as f64 + self.epsilon as f64).sqrt();
            scale.push(k);
            shift.push(b[i] as f64 - m[i] as f64 * k);
        }
        Ok((scale, shift))
    }

    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        batchnorm_infer(&infos)?;
        let (scale, shift) = self.affine(ins)?;
        let c = x.shape[1];
        let plane: usize = x.shape[2..].iter().product();
        let v = x.as_f32()?;
        let mut out = vec![0f32; v.len()];
        if plane > 0 {
            par_chunks(&mut out, plane, |p, dst| {
                let ch = p % c;
                for (d, &a) in dst.iter_mut().zip(&v[p * plane..][..plane]) {
                    *d = (a as f64 * scale[ch] + shift[ch]) as f32;
                }
            });
        }
        Ok(Tensor::with_dtype(x.dtype, x.shape.clone(), Data::F32(out)))
    }
}

fn per_channel_check(x: InInfo, ins: &[Option<InInfo>], names: &[(usize, &str)]) -> OpResult<()> {
    if x.shape.len() < 2 {
        op_bail!("input must have at least 2 dimensions (N, C), got {}", fmt_shape(x.shape));
    }
    let c = x.shape[1];
    for &(k, name) in names {
        let t = float_input(ins, k)?;
        if t.shape != [c] {
            op_bail!("{name} has shape {}, expected [{c}] for input {}", fmt_shape(t.shape), fmt_shape(x.shape));
        }
    }
    Ok(())
}

pub fn batchnorm_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let x = float_input(ins, 0)?;
    per_channel_check(x, ins, &[(1, "scale"), (2, "B"), (3, "mean"), (4, "var")])?;
    Ok((x.dtype, x.shape.to_vec()))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceNorm {
    pub epsilon: f32,
}

pub fn instancenorm_infer(ins: &[Option<InInfo>]) -> OpResult<OutInfo> {
    let x = float_input(ins, 0)?;
    per_channel_check(x, ins, &[(1, "scale"), (2, "B")])?;
    if x.shape.len() < 3 {
        op_bail!("input must have spatial dimensions, got {}", fmt_shape(x.shape));
    }
    Ok((x.dtype, x.shape.to_vec()))
}

impl InstanceNorm {
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
        let x = input(ins, 0)?;
        let infos: Vec<Option<InInfo>> = ins.iter().map(|t| t.map(InInfo::of)).collect();
        instancenorm_infer(&infos)?;
        let (s, b) = (input(ins, 1)?.as_f32()?, input(ins, 2)?.as_f32()?);
        let c = x.shape[1];
        let plane: usize = x.shape[2..].iter().product();
        let v = x.as_f32()?;
        let mut out = vec![0f32; v.len()];
        let eps = self.epsilon as f64;
        if plane > 0 {
            par_chunks(&mut out, plane, |p, dst| {
                let ch = p % c;
                let src = &v[p * plane..][..plane];
                let mean = src.iter().map(|&a| a as f64).sum::<f64>() / plane as f64;
                let var = src.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / plane as f64;
                let k = s[ch] as f64 / (var + eps).sqrt();
                for (d, &a) in dst.iter_mut().zip(src) {
                    *d = ((a as f64 - mean) * k + b[ch] as f64) as f32;
                }
            });
        }
        Ok(Tensor::with_dtype(x.dtype, x.shape.clone(), Data::F32(out)))
    }
}
