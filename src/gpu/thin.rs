//! Generated WGSL for thin convolutions: few output channels (a U-Net's 1x1 head: 1 to 4
//! classes or colours) or a short K (the first conv: 3 input channels x 3x3 taps = 27). An
//! implicit GEMM wastes most of its tile on these: the head fills 3 of a tile's 16 or more
//! rows, and a K of 27 leaves too little work per staged K slice to pay for the barriers. Here
//! each invocation computes `THIN_PX` consecutive output pixels (in flattened order) for `co`
//! output channels straight from the inputs: no workgroup memory, no barriers. Per tap it
//! checks each pixel's bounds once; per input channel it loads one value per pixel (zero
//! outside the image) and the `co` weights as vec4 (one address for the whole workgroup), and
//! multiply-adds them into `co / 4` x `THIN_PX` vec4 accumulators (four channels each), four
//! channels per round so that sixteen loads are in flight. The epilogue is the other fast kernels' (bias,
//! activation, residual, the output view), as are the weights' layout ([K][M padded to 4],
//! K in the ONNX order: input channel, ky, kx) and the parameter numbering.
//!
//! `scatter`: a transposed conv whose stride equals its kernel, as convgen's one GEMM for all
//! taps (rows: output channel x tap, K: input channels, columns: input pixels, read like a 1x1
//! conv's). Each invocation then computes `co` of those rows for 4 input pixels and writes each
//! result at its tap's place in the output (base 16's last upsampling: 16 channels x 4 taps
//! from 32 input channels, K = 32).

use super::convgen::{BMode, header};
use std::fmt::Write as _;

/// Output pixels per invocation.
pub const THIN_PX: u32 = 4;
/// Invocations per workgroup.
pub const THIN_THREADS: u32 = 64;
/// Input channels per round of the channel loop.
const THIN_UNROLL: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThinCfg {
    /// Output channels (GEMM rows) per invocation (and per workgroup): 4, 8, 12 or 16.
    pub co: u32,
    /// A transposed conv's GEMM, scattered to the output (see the module's text).
    pub scatter: bool,
}

impl ThinCfg {
    /// The tile for a GEMM of `m` rows: all of them up to 16, in blocks of 16 past.
    pub fn for_channels(m: usize, scatter: bool) -> ThinCfg {
        ThinCfg { co: (m.next_multiple_of(4) as u32).min(16), scatter }
    }
    /// Output pixels per workgroup.
    pub fn bn(&self) -> u32 {
        THIN_PX * THIN_THREADS
    }
    pub fn valid(&self) -> bool {
        matches!(self.co, 4 | 8 | 12 | 16)
    }
    pub fn name(&self) -> String {
        format!("thin_{}x{}{}", self.co, self.bn(), if self.scatter { "_scatter" } else { "" })
    }
}

// Parameters (P), numbered as convgen's: 0 K, 1 M, 2 npix, 3 M padded / 4 (a weight row in
// vec4), 4 x_off, 5 x_bs, 6 y_off, 7 y_bs, 8 IW, 9 IH, 10 OW, 11 SH, 12 SW, 13 PH (i32),
// 14 PW (i32), 15 pixel tiles, 16 channel tiles, 17 output plane size, 18 C, 19 KW, 20 DH,
// 21 DW, 22 KH, 23 weight vec4, 24 residual offset, 25 residual batch stride. Scattering, as
// convgen's: 8 IW, 9 IH, 10 IW (the columns' row length), 11 / 12 1, 13 / 14 0, 18 SH, 19 SW,
// 20 output width, 21 KW (= SW), 22 taps; C is K and the kernel 1x1.

pub fn generate(c: &ThinCfg) -> String {
    assert!(c.valid(), "invalid thin tile {c:?}");
    let quads = c.co / 4;
    let mut s = String::new();
    header(&mut s, &c.name(), BMode::Direct, false, 1, "f32");
    let _ = write!(
        s,
        r#"
@compute @workgroup_size({threads}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {{
    let p_tiles = pu(15u);
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= p_tiles * pu(16u)) {{
        return;
    }}
    let nb = (tile % p_tiles) * {bn}u + li * {px}u;
    let m0 = (tile / p_tiles) * {co}u;
    let batch = wg.z;
    let M = pu(1u);
    let npix = pu(2u);
    let M4 = pu(3u);
    let xb = pu(4u) + batch * pu(5u);
    let IW = i32(pu(8u));
    let IH = i32(pu(9u));
    let OW = pu(10u);
    let HW = pu(8u) * pu(9u);
    let wq = m0 / 4u;
"#,
        threads = THIN_THREADS,
        bn = c.bn(),
        px = THIN_PX,
        co = c.co,
    );
    // channels, kernel width, dilations, kernel height: a scatter's columns read as a 1x1 conv's
    let (cin, kw, dh, dw, kh) = if c.scatter {
        ("pu(0u)", "1u", "1u", "1u", "1u")
    } else {
        ("pu(18u)", "pu(19u)", "pu(20u)", "pu(21u)", "pu(22u)")
    };
    let _ = writeln!(
        s,
        "    let C = {cin};\n    let KW = {kw};\n    let DH = {dh};\n    let DW = {dw};\n    let KH = {kh};"
    );
    // each pixel's place: in the output (ok past the last), and its first input row and column
    for i in 0..THIN_PX {
        let _ = write!(
            s,
            "    let n{i} = nb + {i}u;\n    let ok{i} = n{i} < npix;\n    let iy{i} = i32((n{i} / OW) * pu(11u)) - pi(13u);\n    let ix{i} = i32((n{i} % OW) * pu(12u)) - pi(14u);\n"
        );
    }
    for q in 0..quads {
        // a block past the last channels reads no weights (uniform across the workgroup)
        let _ = writeln!(s, "    let wok{q} = wq + {q}u < M4;");
        for i in 0..THIN_PX {
            let _ = writeln!(s, "    var a{q}_{i} = vec4<f32>(0.0);");
        }
    }
    // taps outside, channels inside: a tap's bounds checks and offsets are computed once for all
    // channels, and the channel loop is unrolled by THIN_UNROLL so that THIN_UNROLL x THIN_PX
    // independent loads are in flight (the head: 4 x 4 loads and 16 multiply-adds per round)
    let _ = writeln!(s, "    let KHW = KH * KW;\n    let C4 = C - C % {THIN_UNROLL}u;");
    s.push_str(
        "    for (var ky = 0u; ky < KH; ky++) {\n        let dy = i32(ky * DH);\n        for (var kx = 0u; kx < KW; kx++) {\n            let dx = i32(kx * DW);\n            let tap = ky * KW + kx;\n",
    );
    for i in 0..THIN_PX {
        let _ = write!(
            s,
            "            let iy{i}t = iy{i} + dy;\n            let ix{i}t = ix{i} + dx;\n            let in{i} = ok{i} && iy{i}t >= 0 && ix{i}t >= 0 && iy{i}t < IH && ix{i}t < IW;\n            let off{i} = select(0u, xb + u32(iy{i}t * IW + ix{i}t), in{i});\n"
        );
    }
    // one round: channels c + 0 .. c + u - 1
    let round = |s: &mut String, u: u32| {
        for j in 0..u {
            for i in 0..THIN_PX {
                let _ = writeln!(
                    s,
                    "                var x{j}_{i} = 0.0;\n                if (in{i}) {{ x{j}_{i} = xload(off{i} + (c + {j}u) * HW); }}"
                );
            }
        }
        for j in 0..u {
            let _ = writeln!(s, "                let k{j} = (c + {j}u) * KHW + tap;");
            for q in 0..quads {
                let _ = writeln!(
                    s,
                    "                var w{j}_{q} = vec4<f32>(0.0);\n                if (wok{q}) {{ w{j}_{q} = vec4<f32>(WT[k{j} * M4 + wq + {q}u]); }}"
                );
                for i in 0..THIN_PX {
                    let _ = writeln!(s, "                a{q}_{i} = fma(w{j}_{q}, vec4<f32>(x{j}_{i}), a{q}_{i});");
                }
            }
        }
    };
    let _ = writeln!(s, "            for (var c = 0u; c < C4; c += {THIN_UNROLL}u) {{");
    round(&mut s, THIN_UNROLL);
    s.push_str("            }\n            for (var c = C4; c < C; c++) {\n");
    round(&mut s, 1);
    s.push_str("            }\n        }\n    }\n");
    s.push_str("    let yb = pu(6u) + batch * pu(7u);\n    let rb = batch * pu(25u);\n    let plane = pu(17u);\n");
    if c.scatter {
        // each pixel's first output row and column (its tap (0, 0))
        s.push_str("    let TAPS = pu(22u);\n    let OWs = pu(20u);\n");
        for i in 0..THIN_PX {
            let _ = writeln!(s, "    let o{i} = (n{i} / OW) * pu(18u) * OWs + (n{i} % OW) * pu(19u);");
        }
    }
    for q in 0..quads {
        for (e, comp) in ["x", "y", "z", "w"].iter().enumerate() {
            let _ = writeln!(s, "    {{ let m = m0 + {}u;\n      if (m < M) {{", q * 4 + e as u32);
            if c.scatter {
                s.push_str("        let co = m / TAPS;\n        let tap = co * plane + ((m % TAPS) / pu(21u)) * OWs + (m % TAPS) % pu(21u);\n");
            } else {
                s.push_str("        let co = m;\n");
            }
            s.push_str("        var bias = 0.0;\n        if (HAS_BIAS) { bias = f32(Bias[co]); }\n");
            for i in 0..THIN_PX {
                let at = if c.scatter { format!("tap + o{i}") } else { format!("m * plane + n{i}") };
                let _ = writeln!(
                    s,
                    "        if (ok{i}) {{ let o = {at}; Y[yb + o] = ST(post_act(act(a{q}_{i}.{comp} + bias) + rload(rb + o))); }}"
                );
            }
            s.push_str("      }\n    }\n");
        }
    }
    s.push_str("}\n");
    s
}
