//! unet-gpu: run ONNX-exported U-Nets on the GPU through wgpu and hand-written WGSL kernels,
//! with a CPU reference executor that every kernel is tested against.
//!
//! ```text
//! ONNX bytes -> onnx   decode, constants, topological order -> graph IR
//!            -> graph  prepare: shapes for the actual input, constant folding, BN folding, fusion
//!            -> cpu    the reference executor
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
