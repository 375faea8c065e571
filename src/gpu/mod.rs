//! The GPU executor: a prepared graph runs as one submission of WGSL compute dispatches.
//!
//! - `device`: adapter choice, device creation, error scopes, readback.
//! - `plan`: where every tensor lives: activation buffers reused by lifetime, Concat inputs
//!   written straight into their slice of the concatenated buffer, reshapes as aliases.
//! - `lower`: each node becomes kernel dispatches (pipeline, parameters, buffers, grid).
//! - `exec`: buffers, pipelines and bind groups built once; per inference one upload of each
//!   input, one submission, one readback.

pub mod device;
pub mod exec;
pub mod lower;
pub mod plan;

pub use device::{GpuContext, list_adapters};
pub use exec::{GpuModel, RunStats};

/// The WGSL kernel families (files under `shaders/`), each prefixed with `common.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Conv,
    Elementwise,
    Copy,
    Pad,
    Pool,
    Reduce,
    Norm,
    Softmax,
    Resize,
}

pub const COMMON_WGSL: &str = include_str!("../../shaders/common.wgsl");

impl Shader {
    pub const ALL: [Shader; 9] = [
        Shader::Conv,
        Shader::Elementwise,
        Shader::Copy,
        Shader::Pad,
        Shader::Pool,
        Shader::Reduce,
        Shader::Norm,
        Shader::Softmax,
        Shader::Resize,
    ];

    pub fn file(self) -> &'static str {
        match self {
            Shader::Conv => "conv.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Copy => "copy.wgsl",
            Shader::Pad => "pad.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Norm => "norm.wgsl",
            Shader::Softmax => "softmax.wgsl",
            Shader::Resize => "resize.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Copy => include_str!("../../shaders/copy.wgsl"),
            Shader::Pad => include_str!("../../shaders/pad.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Norm => include_str!("../../shaders/norm.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Shader::Resize => include_str!("../../shaders/resize.wgsl"),
        }
    }

    /// The full WGSL source of this kernel family.
    pub fn source(self) -> String {
        format!("{COMMON_WGSL}\n{}", self.body())
    }

    /// Entry points of the module.
    pub fn entries(self) -> &'static [&'static str] {
        match self {
            Shader::Reduce => &["reduce_thread", "reduce_wg"],
            Shader::Norm => &["instance", "batch"],
            _ => &["main"],
        }
    }
}

/// Validate a WGSL module with naga (no device needed): parse, then validate with every
/// capability wgpu could enable.
pub fn validate_wgsl(src: &str) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
    v.validate(&module).map_err(|e| e.emit_to_string(src))?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_validates_with_naga() {
        for s in Shader::ALL {
            let m = validate_wgsl(&s.source()).unwrap_or_else(|e| panic!("{}: {e}", s.file()));
            for e in s.entries() {
                assert!(m.entry_points.iter().any(|ep| ep.name == *e), "{}: no entry point {e}", s.file());
            }
        }
    }
}
