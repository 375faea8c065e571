//! unet-gpu: run ONNX-exported U-Nets on the GPU through wgpu and hand-written WGSL kernels,
//! with a CPU reference executor that every kernel is tested against.
//!
//! ```text
//! ONNX bytes -> onnx   decode, constants, topological order -> graph IR
//!            -> graph  prepare: shapes for the actual input, constant folding, BN folding, fusion
//!            -> gpu    lowering to kernels, memory plan, one submission per inference
//!            -> cpu    the reference executor
//! ```
//!
//! A model is loaded once, prepared for an input size, and built for the GPU once; each run is
//! then one upload, one submission and one readback. This example is also in the README and runs
//! as a test (it needs a GPU adapter; without one, Mesa's lavapipe):
//!
//! ```
//! use unet_gpu::gpu::exec::GpuOptions;
//! use unet_gpu::gpu::{GpuContext, GpuModel};
//! use unet_gpu::skips::{self, SkipSelection};
//! use unet_gpu::{Model, Tensor};
//!
//! # fn main() -> unet_gpu::Result<()> {
//! let model = Model::load("tests/fixtures/classic_unet/model.onnx".as_ref())?;
//! // shapes, constant folding, BatchNorm folding and fusion, for this input size
//! let prepared = model.prepare(&[vec![1, 3, 48, 40]])?;
//! let x = Tensor::f32(vec![1, 3, 48, 40], (0..3 * 48 * 40).map(|i| (i % 17) as f32 / 17.0).collect());
//!
//! // pipelines, buffers and bind groups are built here, once
//! let ctx = GpuContext::new(None)?; // the first adapter, or the one UNET_GPU_ADAPTER names
//! let gpu = GpuModel::new(ctx.clone(), &prepared)?;
//! let y = gpu.run(std::slice::from_ref(&x))?;
//! assert_eq!(y[0].shape, [1, 2, 48, 40]);
//!
//! // the CPU reference runs the same prepared graph
//! let want = unet_gpu::cpu::run(&prepared, std::slice::from_ref(&x))?;
//! let rel_l2 = |a: &Tensor, b: &Tensor| {
//!     let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
//!     let d: f64 = a.iter().zip(b).map(|(p, q)| (p - q) as f64 * (p - q) as f64).sum();
//!     (d / b.iter().map(|q| *q as f64 * *q as f64).sum::<f64>()).sqrt()
//! };
//! assert!(rel_l2(&y[0], &want[0]) <= 1e-4);
//!
//! // f16 storage, f32 arithmetic (tensor cores where the adapter has them)
//! let half = GpuModel::with_options(ctx.clone(), &prepared, GpuOptions::f16())?.run(std::slice::from_ref(&x))?;
//! assert!(rel_l2(&half[0], &want[0]) <= 1e-2);
//!
//! // the same network with its skip connections fed zeros
//! let structure = skips::analyze(&prepared);
//! assert_eq!(structure.levels(), [0, 1, 2]);
//! let mut ablated = prepared.clone();
//! skips::ablate(&mut ablated, &SkipSelection::All.select(&structure)?);
//! let without = GpuModel::new(ctx, &ablated)?.run(&[x])?;
//! assert!(rel_l2(&without[0], &want[0]) > 1e-2);
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod compare;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod imageio;
pub mod infer;
pub mod io_util;
pub mod model;
pub mod npy;
pub mod onnx;
pub mod ops;
pub mod presets;
pub mod skips;
pub mod tensor;
pub mod tune;

pub use error::{Error, Result};
pub use model::Model;
pub use tensor::Tensor;
