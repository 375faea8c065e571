//! The GPU executor: a prepared graph runs as one submission of WGSL compute dispatches.
//!
//! - `device`: adapter choice, device creation, error scopes, readback.
//! - `plan`: where every tensor lives: activation buffers reused by lifetime, Concat inputs
//!   written straight into their slice of the concatenated buffer, reshapes as aliases.
//! - `lower`: each node becomes kernel dispatches (pipeline, parameters, buffers, grid).
//! - `exec`: buffers, pipelines and bind groups built once; per inference one upload of each
//!   input, one submission, one readback.

pub mod convgen;
pub mod device;
pub mod exec;
pub mod f16split;
pub mod halo;
pub mod lower;
pub mod plan;
pub mod thin;

pub use device::{GpuContext, list_adapters};
pub use exec::{GpuModel, RunStats};

/// Storage precision of activations and weights on the GPU (arithmetic is f32 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
    /// The WGSL that opens every module: the storage type `ST`.
    pub fn prelude(self) -> &'static str {
        match self {
            Precision::F32 => "alias ST = f32;\n",
            Precision::F16 => "enable f16;\nalias ST = f16;\n",
        }
    }
    /// Host values in this storage format.
    pub fn encode(self, v: &[f32]) -> Vec<u8> {
        match self {
            Precision::F32 => bytemuck::cast_slice(v).to_vec(),
            Precision::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        }
    }
    /// Encode into `out` (exactly `v.len()` elements long).
    pub fn encode_into(self, v: &[f32], out: &mut [u8]) {
        match self {
            Precision::F32 => out.copy_from_slice(bytemuck::cast_slice(v)),
            Precision::F16 => {
                for (o, &x) in out.chunks_exact_mut(2).zip(v) {
                    o.copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
                }
            }
        }
    }
    pub fn decode(self, b: &[u8]) -> Vec<f32> {
        match self {
            Precision::F32 => bytemuck::pod_collect_to_vec(b),
            Precision::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(format!("precision '{s}' is not f32 or f16")),
        }
    }
}

/// The WGSL kernel families (files under `shaders/`, or generated), each prefixed with the
/// precision prelude and `common.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Conv,
    Elementwise,
    Copy,
    Pad,
    Pool,
    /// MaxPool 2x2 stride 2 without padding: one output per invocation, unchecked.
    Pool2x2,
    /// The same, four outputs of a row per invocation as vec4 (rows a multiple of 8 wide).
    Pool2x2Quads,
    Reduce,
    Norm,
    Softmax,
    Resize,
    /// The epilogue of a split-K convolution.
    SplitK,
    /// A conv's GEMM operand written out once (for the packed tensor-core kernels).
    Im2col,
    /// A generated register-blocked implicit-GEMM convolution.
    FastConv(convgen::ConvCfg),
    /// A generated implicit-GEMM convolution on cooperative matrices (f16 only).
    CoopConv(convgen::CoopCfg),
    /// A stride-1 convolution on cooperative matrices reading a halo tile (f16 only).
    HaloConv(halo::HaloCfg),
    /// A generated direct convolution for few output channels or a short K.
    ThinConv(thin::ThinCfg),
}

pub const COMMON_WGSL: &str = include_str!("../../shaders/common.wgsl");

impl Shader {
    pub const ALL: [Shader; 13] = [
        Shader::Conv,
        Shader::Elementwise,
        Shader::Copy,
        Shader::Pad,
        Shader::Pool,
        Shader::Pool2x2,
        Shader::Pool2x2Quads,
        Shader::Reduce,
        Shader::Norm,
        Shader::Softmax,
        Shader::Resize,
        Shader::SplitK,
        Shader::Im2col,
    ];

    pub fn file(self) -> &'static str {
        match self {
            Shader::FastConv(_) => "generated conv",
            Shader::CoopConv(_) => "generated coop conv",
            Shader::HaloConv(_) => "generated halo conv",
            Shader::ThinConv(_) => "generated thin conv",
            Shader::Conv => "conv.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Copy => "copy.wgsl",
            Shader::Pad => "pad.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Pool2x2 => "pool2x2.wgsl",
            Shader::Pool2x2Quads => "pool2x2v4.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Norm => "norm.wgsl",
            Shader::Softmax => "softmax.wgsl",
            Shader::Resize => "resize.wgsl",
            Shader::SplitK => "splitk.wgsl",
            Shader::Im2col => "im2col.wgsl",
        }
    }

    /// A generated kernel's name (its tile and modes), or the WGSL file's.
    pub fn kernel_name(self) -> String {
        match self {
            Shader::FastConv(c) => c.name(),
            Shader::CoopConv(c) => c.name(),
            Shader::HaloConv(c) => c.name(),
            Shader::ThinConv(c) => c.name(),
            s => s.file().to_string(),
        }
    }

    /// Whether the kernel runs on cooperative matrices (or their emulation).
    pub fn tensor_cores(self) -> bool {
        matches!(self, Shader::CoopConv(_) | Shader::HaloConv(_))
    }

    fn body(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            Shader::FastConv(c) => return std::borrow::Cow::Owned(convgen::generate(&c)),
            Shader::CoopConv(c) => return std::borrow::Cow::Owned(convgen::generate_coop(&c)),
            Shader::HaloConv(c) => return std::borrow::Cow::Owned(halo::generate(&c)),
            Shader::ThinConv(c) => return std::borrow::Cow::Owned(thin::generate(&c)),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Copy => include_str!("../../shaders/copy.wgsl"),
            Shader::Pad => include_str!("../../shaders/pad.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Pool2x2 => include_str!("../../shaders/pool2x2.wgsl"),
            Shader::Pool2x2Quads => include_str!("../../shaders/pool2x2v4.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Norm => include_str!("../../shaders/norm.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Shader::Resize => include_str!("../../shaders/resize.wgsl"),
            Shader::SplitK => include_str!("../../shaders/splitk.wgsl"),
            Shader::Im2col => include_str!("../../shaders/im2col.wgsl"),
        })
    }

    /// The full WGSL source of this kernel family for a storage precision.
    pub fn source(self, p: Precision) -> String {
        let prelude = match self {
            Shader::CoopConv(convgen::CoopCfg { emulate: false, .. })
            | Shader::HaloConv(halo::HaloCfg { emulate: false, .. }) => {
                "enable f16;\nenable wgpu_cooperative_matrix;\nalias ST = f16;\n"
            }
            Shader::CoopConv(_) | Shader::HaloConv(_) => Precision::F16.prelude(),
            _ => p.prelude(),
        };
        format!("{prelude}{COMMON_WGSL}\n{}", self.body())
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
        for p in [Precision::F32, Precision::F16] {
            for s in Shader::ALL {
                let m = validate_wgsl(&s.source(p)).unwrap_or_else(|e| panic!("{} {p:?}: {e}", s.file()));
                for e in s.entries() {
                    assert!(m.entry_points.iter().any(|ep| ep.name == *e), "{}: no entry point {e}", s.file());
                }
            }
        }
    }

    #[test]
    fn every_generated_conv_validates_with_naga() {
        use convgen::{BMode, ConvCfg, TILES};
        for p in [Precision::F32, Precision::F16] {
            for (bm, bn, bk, tm, tn, _) in TILES {
                for (b, scatter, split) in [
                    (BMode::Gather, false, false),
                    (BMode::Direct, false, false),
                    (BMode::Direct, true, false),
                    (BMode::Gather, false, true),
                    (BMode::Direct, false, true),
                    (BMode::Taps, false, false),
                    (BMode::Taps, false, true),
                ] {
                    let c = ConvCfg { bm, bn, bk, tm, tn, b, scatter, split };
                    assert!(c.valid(), "{c:?}");
                    assert!(c.shared_bytes() <= 32768, "{c:?} needs {} bytes of workgroup memory", c.shared_bytes());
                    validate_wgsl(&Shader::FastConv(c).source(p)).unwrap_or_else(|e| panic!("{} {p:?}: {e}", c.name()));
                }
            }
        }
        for (bm, bn, wm, wn, _) in convgen::COOP_TILES {
            for (b, scatter, split) in [
                (BMode::Gather, false, false),
                (BMode::Direct, false, false),
                (BMode::Direct, true, false),
                (BMode::Gather, false, true),
                (BMode::Taps, false, false),
                (BMode::Taps, false, true),
                (BMode::Direct, false, true),
                (BMode::Packed, false, false),
                (BMode::Packed, false, true),
                (BMode::Rows, false, false),
                (BMode::Rows, false, true),
            ] {
                for emulate in [false, true] {
                    // every epilogue width: one fragment per round up to all of a subgroup's
                    let frags = (wm / 16) * (wn / 16);
                    for epi in (1..=frags).filter(|e| frags.is_multiple_of(*e)) {
                        let c = convgen::CoopCfg { bm, bn, wm, wn, b, scatter, emulate, split, epi, quads: false };
                        assert!(c.valid(), "{c:?}");
                        if epi == 1 {
                            assert!(c.shared_bytes() <= 49152, "{c:?} needs {} bytes", c.shared_bytes());
                        }
                        // with runs of rows, also as quads (every tile has a valid quad loader)
                        let q = convgen::CoopCfg { quads: true, ..c };
                        assert_eq!(q.valid(), b == BMode::Rows, "{q:?}");
                        for c in [c, q].into_iter().filter(|c| c.valid()) {
                            let m = validate_wgsl(&Shader::CoopConv(c).source(Precision::F16))
                                .unwrap_or_else(|e| panic!("{}: {e}", c.name()));
                            // and lower to SPIR-V as wgpu's Vulkan backend will
                            spirv(&m, &c.name());
                        }
                    }
                }
            }
        }
        for (bm, bn, wm, wn) in halo::HALO_TILES {
            for cb in [16, 32] {
                for (kh, kw, dil) in [(3, 3, 1), (1, 1, 1), (3, 3, 2), (5, 1, 1)] {
                    for (emulate, split, epi, resident) in [
                        (false, false, 1, false),
                        (false, true, 1, false),
                        (true, false, 1, false),
                        (true, true, 1, false),
                        (false, false, 2, false),
                        (true, true, 2, false),
                        (false, false, 1, true),
                        (false, true, 2, true),
                        (true, true, 1, true),
                    ] {
                        let c = halo::HaloCfg { bm, bn, wm, wn, cb, kh, kw, dil, emulate, split, epi, resident };
                        assert!(c.valid(), "{c:?}");
                        if (kh, dil, epi, resident) == (3, 1, 1, false) {
                            assert!(c.shared_bytes() <= 49152, "{c:?} needs {} bytes", c.shared_bytes());
                        }
                        let m = validate_wgsl(&Shader::HaloConv(c).source(Precision::F16))
                            .unwrap_or_else(|e| panic!("{}: {e}", c.name()));
                        spirv(&m, &c.name());
                    }
                }
            }
        }
    }

    #[test]
    fn every_thin_conv_validates_with_naga() {
        for p in [Precision::F32, Precision::F16] {
            for co in [4, 8, 12, 16] {
                for scatter in [false, true] {
                    let c = thin::ThinCfg { co, scatter };
                    assert!(c.valid());
                    let m = validate_wgsl(&Shader::ThinConv(c).source(p))
                        .unwrap_or_else(|e| panic!("{} {p:?}: {e}", c.name()));
                    spirv(&m, &c.name());
                }
            }
        }
        assert_eq!([1, 3, 4, 5, 9, 16, 64].map(|m| thin::ThinCfg::for_channels(m, false).co), [4, 4, 4, 8, 12, 16, 16]);
    }

    /// Lower a validated module to SPIR-V as wgpu's Vulkan backend will.
    fn spirv(m: &naga::Module, name: &str) {
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
        let info = v.validate(m).unwrap();
        let pc = naga::back::PipelineConstants::default();
        let (m, info) = naga::back::pipeline_constants::process_overrides(
            m,
            &info,
            Some((naga::ShaderStage::Compute, "main")),
            &pc,
        )
        .unwrap();
        let opts = naga::back::spv::Options::default();
        naga::back::spv::write_vec(&m, &info, &opts, None).unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
    }
}
