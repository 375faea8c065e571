//! Generated WGSL for the fast convolution kernels: implicit GEMM with a register-blocked
//! micro-kernel, written out in full (named vec4 accumulators, no private arrays) so the driver
//! compiler keeps the tile in registers.
//!
//! C[m, n] = sum_k A[k, m] * B[k, n] for one image:
//! - m: output channel, or (output channel, tap) of a transposed conv; A is the weight matrix,
//!   pre-transposed at load to [K][M padded to 4];
//! - n: output pixel (`Gather`: B[k, n] is read from the input through a per-layer table that
//!   turns k = (input channel, ky, kx) into an offset and a (dy, dx) for the bounds check;
//!   `Taps`: k = (tap, input channel) with the channels a multiple of BK, so a K slice has one
//!   tap, one bounds check and no table), or input pixel (`Direct`: 1x1 stride-1 convs and a
//!   transposed conv whose stride equals its kernel, all of its taps in one GEMM, where B is the
//!   input itself); the tensor-core kernels also read B as runs of 16 pixels of one input row
//!   (`Rows`, for the stride-1 gathers and the direct GEMMs) or from an im2col pass (`Packed`);
//! - the epilogue adds the bias, applies the fused activation, adds a fused residual, applies
//!   the activation after it and writes straight into the output view (`Scatter`: row m's tap
//!   picks the strided position of a transposed conv's output); with split-K each workgroup
//!   multiplies one K slice and writes raw f32 partial sums in GEMM order, and
//!   shaders/splitk.wgsl runs the epilogue (and a transposed conv's scatter).
//!
//! A workgroup computes a BM x BN tile; BK-deep slices of A and B are staged through
//! double-buffered workgroup memory with one barrier per slice, the next slice prefetched into
//! registers while the current one is multiplied. Each invocation owns TM x TN outputs in rows
//! and columns strided by the invocation grid, so its vec4 reads of workgroup memory are
//! conflict-free.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BMode {
    Gather,
    Direct,
    /// Tensor-core kernels only: a gather whose K is ordered tap-major (k = tap * C + c) with C
    /// a multiple of the K tile, so a K tile lies within one tap: one bounds check per tile and
    /// no table.
    Taps,
    /// Tensor-core kernels only: B was written out by shaders/im2col.wgsl as [pixel][K padded
    /// to the K tile], read as 16-byte vectors.
    Packed,
    /// Tensor-core kernels only: a gather with K ordered tap-major (any channel count) for a
    /// stride-1 conv whose output rows are whole runs of 16 pixels and whose input rows, planes
    /// and views are 4-element aligned, or a direct GEMM (1x1 conv, transposed conv) whose
    /// pixels, one long row, are. B is staged row-major (K rows of the tile's pixels, as the
    /// GEMM probe stages it) and each invocation loads a run of 16 output pixels of one input
    /// channel and tap: the run's input is contiguous, so five vec4 loads and a shift by the
    /// run's start mod 4 replace sixteen single-f16 loads (and the tap table). Its geometry
    /// parameters are [`ROWS_PARAMS`].
    Rows,
}

impl BMode {
    fn label(self) -> &'static str {
        match self {
            BMode::Gather => "gather",
            BMode::Direct => "direct",
            BMode::Taps => "taps",
            BMode::Packed => "packed",
            BMode::Rows => "rows",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvCfg {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
    pub b: BMode,
    pub scatter: bool,
    /// Split-K: the workgroup grid's z is (image, K slice); each slice writes its raw partial
    /// sums to `Part` and a reduction kernel (shaders/splitk.wgsl) runs the epilogue.
    pub split: bool,
}

impl ConvCfg {
    pub fn threads(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }
    /// Workgroup memory in bytes.
    pub fn shared_bytes(&self) -> u32 {
        let a = 2 * self.bk * (self.bm / 4 + 1) * 16;
        let b = 2 * self.bk * (self.bn / 4) * 16;
        a + b
    }
    pub fn valid(&self) -> bool {
        let t = self.threads();
        // a scatter (transposed conv) is a direct GEMM; split, it writes its partial sums
        // unscattered like any other split GEMM, and the reduction scatters them
        (!self.scatter || self.b == BMode::Direct)
            && !matches!(self.b, BMode::Packed | BMode::Rows)
            && self.tm.is_multiple_of(4)
            && self.tn.is_multiple_of(4)
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && t <= 256
            && t.is_multiple_of(self.bn)
            // the A tile's vec4 are spread over the invocations (the last round may be partial)
            && ((self.bk * self.bm / 4).is_multiple_of(t) || t.is_multiple_of(self.bk * self.bm / 4))
            && (self.bk * self.bn).is_multiple_of(t)
    }
    pub fn name(&self) -> String {
        format!(
            "conv_{}x{}x{}_t{}x{}_{}{}{}",
            self.bm,
            self.bn,
            self.bk,
            self.tm,
            self.tn,
            self.b.label(),
            if self.scatter { "_scatter" } else { "" },
            if self.split { "_splitk" } else { "" }
        )
    }
}

/// The tile shapes the engine picks from, with their relative throughput per output: (BM, BN,
/// BK, TM, TN, efficiency). The efficiencies, with the cost model's other constants
/// (`lower::pick::tile_time`), are a least-squares fit to every kernel shape x split-K factor that
/// autotuning timed per conv of the base-64 and base-16 benchmark networks on an H200 (run 6,
/// 2026-11-27, `docs/device-runs/2026-11-27-h200-run6`; rms error of the fit 22 %). On other
/// GPUs they are a starting point; `--autotune` measures.
pub const TILES: [(u32, u32, u32, u32, u32, f64); 8] = [
    (128, 128, 8, 8, 8, 1.0),
    (64, 256, 8, 8, 8, 0.91),
    (64, 128, 16, 4, 8, 0.73),
    (32, 128, 16, 4, 8, 0.74),
    (64, 64, 16, 4, 4, 0.80),
    (32, 64, 16, 4, 4, 0.74),
    (32, 256, 8, 4, 8, 0.73),
    (16, 256, 8, 4, 4, 0.53),
];

/// The `Rows` loader's parameters, after the shared ones (0-27): 28 the last vec4 of the input
/// it may read, 29 channels per tap (K for a direct GEMM), 30 kernel width, 31 / 32 dilations,
/// 33 / 34 input width and height, 35 output row length (pixels), 36 / 37 top and left pads
/// (i32). A direct GEMM (1x1 conv, transposed conv) reads its columns as one row of all its
/// pixels: 1x1 kernel, no pads, width = columns, height 1.
pub const ROWS_PARAMS: usize = 38;

// Parameters (P):
// 0 K, 1 M, 2 npix (columns n: output pixels, or input pixels when scattering), 3 M padded / 4,
// 4 x_off, 5 x_bs, 6 y_off, 7 y_bs, 8 IW, 9 IH, 10 OW (gather: output width for n -> (oy, ox)),
// 11 SH, 12 SW, 13 PH (i32), 14 PW (i32), 15 column tiles, 16 row tiles, 17 output plane size,
// 18 scatter stride y, 19 scatter stride x, 20 output width (scatter), 21 kernel width (scatter),
// 22 taps (scatter: rows are channel * 22 + tap), 23 weight elements (vec4),
// 24 residual offset, 25 residual batch stride,
// 26 K tiles per slice (split-K), 27 slices (split-K)

pub fn generate(c: &ConvCfg) -> String {
    assert!(c.valid(), "invalid conv tile {c:?}");
    let threads = c.threads();
    let txn = c.bn / c.tn;
    let tyn = c.bm / c.tm;
    let a_stride = c.bm / 4 + 1;
    let b_stride = c.bn / 4;
    let a_buf = c.bk * a_stride;
    let b_buf = c.bk * b_stride;
    let a_count = c.bk * c.bm / 4;
    let la = a_count.div_ceil(threads);
    // with fewer A vec4 than invocations, only the first `a_count` load one
    let a_guard = if a_count < threads { format!("li < {a_count}u") } else { "true".to_string() };
    let lb = c.bk * c.bn / threads;
    let rstep = threads / c.bn;
    let gather = c.b != BMode::Direct;
    let mut s = String::new();
    header(&mut s, &c.name(), c.b, c.split, c.bk, "f32");
    let _ = write!(
        s,
        r#"var<workgroup> As: array<vec4<f32>, {as_len}>;
var<workgroup> Bs: array<vec4<f32>, {bs_len}>;

@compute @workgroup_size({threads}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {{
    let p_tiles = pu(15u);
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= p_tiles * pu(16u)) {{
        return;
    }}
    let n0 = (tile % p_tiles) * {bn}u;
    let m0 = (tile / p_tiles) * {bm}u;
    let K = pu(0u);
    let M = pu(1u);
    let npix = pu(2u);
    let M4 = pu(3u);
    let tx = li % {txn}u;
    let ty = li / {txn}u;
"#,
        as_len = 2 * a_buf,
        bs_len = 2 * b_buf,
        bm = c.bm,
        bn = c.bn,
    );
    b_setup(&mut s, c.split, gather, c.bn);
    // A loader coordinates
    for j in 0..la {
        let _ = write!(
            s,
            "    let ae{j} = li + {off}u;\n    let ak{j} = ae{j} / {q}u;\n    let am{j} = ae{j} % {q}u;\n",
            off = j * threads,
            q = c.bm / 4
        );
    }
    for j in 0..la {
        let _ = writeln!(s, "    var pa{j} = vec4<f32>(0.0);");
    }
    for j in 0..lb {
        let _ = writeln!(s, "    var pb{j} = 0.0;");
    }
    if c.b == BMode::Taps {
        // 18 input channels, 19 kernel width, 20 / 21 dilations
        s.push_str("    let CIN = pu(18u);\n    let KWT = pu(19u);\n    let HW = u32(IH * IW);\n");
        s.push_str(TAPS_SETUP);
    }
    for r in 0..c.tm {
        for h in 0..c.tn / 4 {
            let _ = writeln!(s, "    var acc{r}_{h} = vec4<f32>(0.0);");
        }
    }
    let load = |s: &mut String, k0: &str| {
        for j in 0..la {
            let _ = write!(
                s,
                "        {{ let k = {k0} + ak{j}; let mq = m0 / 4u + am{j};\n          if ({a_guard} && k < K && mq < M4) {{ pa{j} = vec4<f32>(WT[k * M4 + mq]); }} else {{ pa{j} = vec4<f32>(0.0); }} }}\n"
            );
        }
        if c.b == BMode::Taps {
            // one tap per K tile: one bounds check, then channel planes HW apart
            let _ = write!(
                s,
                "        {{ let dy = i32(tky * pu(20u));\n          let dx = i32(tkx * pu(21u));\n          let iy = iy0 + dy;\n          let ix = ix0 + dx;\n          if (p_ok && iy >= 0 && ix >= 0 && iy < IH && ix < IW) {{\n            let base = u32(pix + dy * IW + dx) + (tch + kb) * HW;\n"
            );
            for j in 0..lb {
                let _ = writeln!(s, "            pb{j} = xload(base + {}u * HW);", j * rstep);
            }
            s.push_str("          } else {\n");
            for j in 0..lb {
                let _ = writeln!(s, "            pb{j} = 0.0;");
            }
            s.push_str("          }\n");
            s.push_str(TAPS_STEP);
            s.push_str("        }\n");
        } else {
            for j in 0..lb {
                b_load(s, k0, j, j * rstep, gather, "0.0");
            }
        }
    };
    let store = |s: &mut String, abase: &str, bbase: &str| {
        for j in 0..la {
            let _ = writeln!(s, "        if ({a_guard}) {{ As[{abase} + ak{j} * {a_stride}u + am{j}] = pa{j}; }}");
        }
        for j in 0..lb {
            let _ =
                writeln!(s, "        Bs[{bbase} + (kb + {}u) * {b_stride}u + nb / 4u][nb % 4u] = pb{j};", j * rstep);
        }
    };
    s.push_str("    {\n");
    load(&mut s, "kt0 * KTILE");
    store(&mut s, "0u", "0u");
    s.push_str("    }\n    workgroupBarrier();\n");
    let _ = write!(
        s,
        "    for (var t = kt0; t < kt1; t++) {{\n        let abase = ((t - kt0) & 1u) * {a_buf}u;\n        let bbase = ((t - kt0) & 1u) * {b_buf}u;\n        let more = t + 1u < kt1;\n        if (more) {{\n"
    );
    load(&mut s, &format!("(t + 1u) * {}u", c.bk));
    s.push_str("        }\n");
    for k in 0..c.bk {
        for g in 0..c.tm / 4 {
            let _ = writeln!(s, "        let a{k}_{g} = As[abase + {}u + ty];", k * a_stride + g * tyn);
        }
        for h in 0..c.tn / 4 {
            let _ = writeln!(s, "        let b{k}_{h} = Bs[bbase + {}u + tx];", k * b_stride + h * txn);
        }
        for g in 0..c.tm / 4 {
            for (i, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                let r = g * 4 + i as u32;
                for h in 0..c.tn / 4 {
                    let _ = writeln!(s, "        acc{r}_{h} = fma(vec4<f32>(a{k}_{g}.{comp}), b{k}_{h}, acc{r}_{h});");
                }
            }
        }
    }
    s.push_str("        if (more) {\n");
    store(&mut s, &format!("{a_buf}u - abase"), &format!("{b_buf}u - bbase"));
    s.push_str("        }\n        workgroupBarrier();\n    }\n");
    // epilogue
    if c.split {
        // raw partial sums of this K slice: Part[(slice-major z) * M + m][n]
        for g in 0..c.tm / 4 {
            for i in 0..4 {
                let r = g * 4 + i;
                let _ = write!(s, "    {{ let m = m0 + ({}u + ty) * 4u + {i}u;\n      if (m < M) {{\n", g * tyn);
                for h in 0..c.tn / 4 {
                    for (cc, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                        let _ = writeln!(
                            s,
                            "        {{ let n = n0 + ({}u + tx) * 4u + {cc}u; if (n < npix) {{ Part[(wg.z * M + m) * npix + n] = acc{r}_{h}.{comp}; }} }}",
                            h * txn
                        );
                    }
                }
                s.push_str("      } }\n");
            }
        }
        s.push_str("}\n");
        return s;
    }
    s.push_str("    let yb = pu(6u) + batch * pu(7u);\n    let rb = batch * pu(25u);\n    let plane = pu(17u);\n");
    if c.scatter {
        // each column's place in the output (its input pixel's tap (0, 0)), once for all rows
        s.push_str(SCATTER_GEOMETRY);
        for h in 0..c.tn / 4 {
            for cc in 0..4 {
                let _ = writeln!(
                    s,
                    "    let sn{h}_{cc} = n0 + ({}u + tx) * 4u + {cc}u;\n    let sc{h}_{cc} = (sn{h}_{cc} / IWs) * SHs * OWs + (sn{h}_{cc} % IWs) * SWs;",
                    h * txn
                );
            }
        }
    }
    for g in 0..c.tm / 4 {
        for i in 0..4 {
            let r = g * 4 + i;
            let _ = write!(
                s,
                "    {{ let m = m0 + ({}u + ty) * 4u + {i}u;\n      if (m < M) {{\n{}        var bias = 0.0;\n        if (HAS_BIAS) {{ bias = f32(Bias[co]); }}\n",
                g * tyn,
                scatter_row(c.scatter, "        ")
            );
            for h in 0..c.tn / 4 {
                for (cc, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                    let _ = write!(
                        s,
                        "        {{ let n = n0 + ({}u + tx) * 4u + {cc}u;\n          if (n < npix) {{ ",
                        h * txn
                    );
                    if c.scatter {
                        let _ = write!(s, "let o = rbase + sc{h}_{cc}; ");
                    } else {
                        s.push_str("let o = m * plane + n; ");
                    }
                    let _ = write!(s, "Y[yb + o] = ST(post_act(act(acc{r}_{h}.{comp} + bias) + rload(rb + o)));");
                    s.push_str(" } }\n");
                }
            }
            s.push_str("      } }\n");
        }
    }
    s.push_str("}\n");
    s
}

/// A convolution on the tensor cores: f16 x f16 -> f32 cooperative matrices (16x16x16), A and B
/// staged through double-buffered workgroup memory, both k-contiguous (A by output channel, B by
/// pixel: each invocation loads a run of K values of one pixel and stores them as vec4; B
/// fragments are loaded column-major). `emulate` replaces the cooperative-matrix
/// operations by scalar code with the same index arithmetic (each of a subgroup's 32 lanes owns
/// 8 of a tile's 256 elements), so the tiling can be verified on adapters without them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoopCfg {
    pub bm: u32,
    pub bn: u32,
    /// Rows and columns of the workgroup tile one subgroup computes.
    pub wm: u32,
    pub wn: u32,
    pub b: BMode,
    pub scatter: bool,
    pub emulate: bool,
    /// Split-K, as for [`ConvCfg::split`].
    pub split: bool,
    /// Accumulator fragments each subgroup stages per epilogue round (see `coop_epilogue`).
    pub epi: u32,
    /// With `Rows`, for a conv whose channels (K, for a direct GEMM) are a multiple of the K
    /// tile: each invocation loads quads of 4 output pixels instead of runs of 16, consecutive
    /// invocations consecutive quads of one K row (the generator's `quads_load`).
    pub quads: bool,
}

pub const COOP_BK: u32 = 32;
/// Padding (in halves) of each staged row: rows stay 16-byte aligned and 8 consecutive rows of
/// 80 bytes start in distinct 16-byte bank groups. The GEMM probe's fastest tensor-core kernel
/// (169 TFLOP/s on the H200, `../shared/reference`) staged scalar f16 arrays with this padding;
/// the same kernel on vec4<f16> arrays reached 148. (These kernels used vec4 arrays with 4 halves
/// of padding, 72-byte rows, until 2026-11-27's fourth session; not yet timed since.)
pub(super) const COOP_PAD: u32 = 8;

/// (BM, BN, WM, WN, efficiency), fitted with [`TILES`] and on the same scale (the 128x128
/// register-blocked tile = 1). An efficiency of 0 marks a tile not yet timed on hardware: the
/// cost model leaves it out, autotuning times it (and a measured choice may name it).
///
/// 64x128 and 128x64 (2026-11-27, eighth session, not yet timed) give each of four subgroups
/// the 128x128 tile's 64x32 (eight fragments, four A and two B fragment loads per 16-deep K
/// step) in half its invocations: the question is whether a workgroup of 128 invocations packs
/// the register file better (two 128x128 workgroups per multiprocessor need at most 128
/// registers per invocation) at the cost of staging 1.5x the operand bytes per product.
/// (64x128 was 32x64 per subgroup until then, fitted at 1.44, and never the model's choice for
/// the benchmark networks.)
pub const COOP_TILES: [(u32, u32, u32, u32, f64); 6] = [
    (128, 128, 64, 32, 2.88),
    (64, 128, 64, 32, 0.0),
    (128, 64, 64, 32, 0.0),
    (64, 64, 32, 32, 2.16),
    (32, 128, 32, 32, 1.07),
    (16, 128, 16, 32, 0.62),
];

impl CoopCfg {
    pub fn warps(&self) -> u32 {
        (self.bm / self.wm) * (self.bn / self.wn)
    }
    pub fn threads(&self) -> u32 {
        32 * self.warps()
    }
    pub fn shared_bytes(&self) -> u32 {
        let a = 2 * self.bm * (COOP_BK + COOP_PAD) * 2;
        let b = 2 * self.b_tile() * 2;
        let c = self.warps() * self.epi * 256 * 4;
        a + b + c
    }
    /// Halves of one staged B tile: BN columns of BK (+ padding) K values, or for `Rows` BK
    /// rows of BN (+ padding) pixels.
    pub fn b_tile(&self) -> u32 {
        if self.b == BMode::Rows { COOP_BK * (self.bn + COOP_PAD) } else { self.bn * (COOP_BK + COOP_PAD) }
    }
    /// Pixels per run of the `Rows` loader: 16, or 4 with `quads`.
    pub fn run_len(&self) -> u32 {
        if self.quads { 4 } else { 16 }
    }
    /// Runs of pixels each invocation loads per K tile (`Rows`).
    pub fn row_runs(&self) -> u32 {
        self.bn / self.run_len() * COOP_BK / self.threads()
    }
    /// Accumulator fragments per subgroup.
    pub fn frags(&self) -> u32 {
        (self.wm / 16) * (self.wn / 16)
    }
    pub fn valid(&self) -> bool {
        let t = self.threads();
        // a scatter (transposed conv) is a direct GEMM (split: see `ConvCfg::valid`), its
        // columns loaded one f16 at a time or as runs of rows
        (!self.scatter || matches!(self.b, BMode::Direct | BMode::Rows))
            && self.wm.is_multiple_of(16)
            && self.wn.is_multiple_of(16)
            && self.bm.is_multiple_of(self.wm)
            && self.bn.is_multiple_of(self.wn)
            && self.epi >= 1
            && self.frags().is_multiple_of(self.epi)
            && t <= 256
            && t.is_multiple_of(self.bn)
            && (self.bm * COOP_BK / 4).is_multiple_of(t)
            && (COOP_BK * self.bn).is_multiple_of(t)
            // each invocation stages whole vec4 of one column's K values
            && (COOP_BK / (t / self.bn)).is_multiple_of(4)
            // a packed operand is staged 8 invocations per pixel, in whole passes over the tile
            && (self.b != BMode::Packed || (COOP_BK / 4 * self.bn).is_multiple_of(t))
            // runs of 16 pixels: whole runs per invocation
            && (self.b != BMode::Rows || ((self.bn / 16 * COOP_BK).is_multiple_of(t) && self.bn.is_multiple_of(16)))
            // quads: a row of quads no longer than the invocations, so that an invocation's
            // quads share their pixels (and K rows t / (BN / 4) apart share their tap)
            && (!self.quads || (self.b == BMode::Rows && t.is_multiple_of(self.bn / 4)))
    }
    pub fn name(&self) -> String {
        format!(
            "coop_{}x{}_w{}x{}_{}{}{}{}{}{}",
            self.bm,
            self.bn,
            self.wm,
            self.wn,
            self.b.label(),
            if self.quads { "_q4" } else { "" },
            if self.scatter { "_scatter" } else { "" },
            if self.split { "_splitk" } else { "" },
            epi_label(self.epi),
            if self.emulate { "_emulated" } else { "" }
        )
    }
}

// Parameters: as for `generate`, except 3 = K padded / 4 (the weights are [taps][M][K padded to
// 4] so that A tiles load as vec4 along k) and 23 = vec4 of weights.

pub fn generate_coop(c: &CoopCfg) -> String {
    assert!(c.valid(), "invalid coop tile {c:?}");
    let threads = c.threads();
    let bk = COOP_BK;
    let rows = c.b == BMode::Rows;
    let a_row = bk + COOP_PAD; // halves per staged A row (m)
    // halves per staged B column (n): B is staged k-contiguous; or per staged B row (k) with
    // `Rows`, pixel-contiguous
    let b_row = if rows { c.bn + COOP_PAD } else { bk + COOP_PAD };
    let a_buf = c.bm * a_row;
    let b_buf = c.b_tile();
    let la = c.bm * bk / 4 / threads;
    // each invocation stages `kq` consecutive K values of one column, as `nq` vec4; with `Rows`,
    // `row_runs` runs of 16 pixels of one K row, as 4 vec4 each
    let kq = bk / (threads / c.bn);
    let nq = if rows && c.quads {
        c.row_runs()
    } else if rows {
        4 * c.row_runs()
    } else {
        kq / 4
    };
    let wgn = c.bn / c.wn; // subgroups along n
    let fm = c.wm / 16;
    let fn_ = c.wn / 16;
    let gather = c.b == BMode::Gather || c.b == BMode::Taps;
    let emu = c.emulate;
    let mut s = String::new();
    header(&mut s, &c.name(), c.b, c.split, bk, "f16");
    coop_shared(&mut s, (2 * a_buf, 2 * b_buf, c.warps() * c.epi * 256), emu, (a_row, b_row), rows);
    let _ = write!(
        s,
        r#"
@compute @workgroup_size({threads}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {{
    let p_tiles = pu(15u);
    // no early return: cooperative-matrix operations need uniform control flow; a workgroup
    // past the last tile computes tile 0 again and writes nothing
    let t_raw = wg.x + wg.y * nwg.x;
    let t_ok = t_raw < p_tiles * pu(16u);
    let tile = select(0u, t_raw, t_ok);
    let n0 = (tile % p_tiles) * {bn}u;
    let m0 = (tile / p_tiles) * {bm}u;
    let K = pu(0u);
    let M = pu(1u);
    let npix = pu(2u);
    let K4 = pu(3u);
    let warp = li / 32u;
    let lane = li % 32u;
    let wm0 = (warp / {wgn}u) * {wm}u;
    let wn0 = (warp % {wgn}u) * {wn}u;
"#,
        bn = c.bn,
        bm = c.bm,
        wm = c.wm,
        wn = c.wn,
    );
    b_setup(&mut s, c.split, gather, c.bn);
    if c.b == BMode::Packed {
        // a packed operand row (one pixel's K tile) is 8 contiguous vec4: 8 invocations load one
        // row, so a subgroup reads 4 rows of 64 bytes instead of 32 rows 8 bytes at a time
        let _ = writeln!(s, "    let pk = li % {q}u;\n    let pn = li / {q}u;", q = bk / 4);
    }
    for j in 0..la {
        let _ = write!(
            s,
            "    let ae{j} = li + {off}u;\n    let am{j} = ae{j} / {q}u;\n    let ak{j} = ae{j} % {q}u;\n",
            off = j * threads,
            q = bk / 4
        );
    }
    for j in 0..la {
        let _ = writeln!(s, "    var pa{j} = vec4<f16>(0.0);");
    }
    for q in 0..nq {
        let _ = writeln!(s, "    var pb{q} = vec4<f16>(0.0);");
    }
    if c.b == BMode::Taps {
        // 18 input channels, 19 kernel width, 20 / 21 dilations
        s.push_str("    let CIN = pu(18u);\n    let KWT = pu(19u);\n    let HW = u32(IH * IW);\n");
        s.push_str(TAPS_SETUP);
    }
    if rows && c.quads {
        quads_setup(&mut s, c);
    } else if rows {
        rows_setup(&mut s, c);
    }
    coop_accumulators(&mut s, fm, fn_, emu);
    let load = |s: &mut String, k0: &str| {
        for j in 0..la {
            let _ = write!(
                s,
                "        {{ let m = m0 + am{j}; let kq = {k0} / 4u + ak{j};\n          if (m < M && kq < K4) {{ pa{j} = vec4<f16>(WT[m * K4 + kq]); }} else {{ pa{j} = vec4<f16>(0.0); }} }}\n"
            );
        }
        if rows && c.quads {
            quads_load(s, k0, c.row_runs(), quad_step(c));
        } else if rows {
            rows_load(s, k0, c.row_runs());
        } else {
            coop_b_load(s, k0, c.b, kq, nq, threads);
        }
    };
    let store = |s: &mut String, abase: &str, bbase: &str| {
        for j in 0..la {
            store4(s, "As", &format!("{abase} + am{j} * {a_row}u + ak{j} * 4u"), &format!("pa{j}"));
        }
        for q in 0..nq {
            if rows && c.quads {
                // quad q of the invocation: K row rk0 + q * (its K rows' step), pixels rc0 * 4 ..
                store4(
                    s,
                    "Bs",
                    &format!("{bbase} + (rk0 + {}u) * {b_row}u + rc0 * 4u", q * quad_step(c)),
                    &format!("pb{q}"),
                );
            } else if rows {
                // run q / 4 of the invocation: K row rk, pixels rc * 16 .. + 16
                let (run, r) = (q / 4, q % 4);
                store4(
                    s,
                    "Bs",
                    &format!("{bbase} + rk{run} * {b_row}u + rc{run} * 16u + {}u", 4 * r),
                    &format!("pb{q}"),
                );
            } else if c.b == BMode::Packed {
                let n = packed_pixel(q, threads);
                store4(s, "Bs", &format!("{bbase} + (pn + {n}u) * {b_row}u + pk * 4u"), &format!("pb{q}"));
            } else {
                store4(s, "Bs", &format!("{bbase} + nb * {b_row}u + (kb * {nq}u + {q}u) * 4u"), &format!("pb{q}"));
            }
        }
    };
    s.push_str("    {\n");
    load(&mut s, "kt0 * KTILE");
    store(&mut s, "0u", "0u");
    s.push_str("    }\n    workgroupBarrier();\n");
    let _ = write!(
        s,
        "    for (var t = kt0; t < kt1; t++) {{\n        let abase = ((t - kt0) & 1u) * {a_buf}u;\n        let bbase = ((t - kt0) & 1u) * {b_buf}u;\n        let more = t + 1u < kt1;\n        if (more) {{\n"
    );
    load(&mut s, &format!("(t + 1u) * {bk}u"));
    s.push_str("        }\n");
    for ks in 0..bk / 16 {
        // B is staged column-major: its columns (n) are k-contiguous; with `Rows`, row-major
        let b_at = move |j: u32| {
            if rows {
                format!("bbase + {}u + wn0 + {}u", ks * 16 * b_row, j * 16)
            } else {
                format!("bbase + (wn0 + {}u) * {b_row}u + {}u", j * 16, ks * 16)
            }
        };
        coop_k_step(
            &mut s,
            ks,
            (fm, fn_),
            emu,
            (&|i| format!("abase + (wm0 + {}u) * {a_row}u + {}u", i * 16, ks * 16), a_row),
            (&b_at, b_row),
            rows,
        );
    }
    s.push_str("        if (more) {\n");
    store(&mut s, &format!("{a_buf}u - abase"), &format!("{b_buf}u - bbase"));
    s.push_str("        }\n        workgroupBarrier();\n    }\n");
    // epilogue: the accumulators go through the subgroup's 16x16 f32 scratch, `epi` at a time
    let _ = writeln!(
        s,
        "    let yb = pu(6u) + batch * pu(7u);\n    let rb = batch * pu(25u);\n    let plane = pu(17u);\n    let cs = warp * {}u;",
        256 * c.epi
    );
    if c.scatter && !c.split {
        s.push_str(SCATTER_GEOMETRY);
        s.push_str("    let KHs = TAPS / KWs;\n");
    }
    coop_epilogue(&mut s, (fm, fn_), c.epi, emu, &|s, i, j| {
        if c.scatter && !c.split {
            // a lane's column n is the same for its 8 elements (idx % 16 = lane % 16), so its
            // place in the output is computed once; its rows m advance by 2 (idx / 16 = 2e +
            // lane / 16), (output channel, ky, kx) counted along without dividing. With the
            // taps of a channel in consecutive rows, the two rows one store covers (kx = 0 and 1
            // of a 2x2 kernel) fill one contiguous run of output pixels.
            let _ = write!(
                s,
                r#"    let n = n0 + wn0 + {j16}u + lane % 16u;
    let n_ok = t_ok && n < npix;
    let cb = (n / IWs) * SHs * OWs + (n % IWs) * SWs;
    var m = m0 + wm0 + {i16}u + lane / 16u;
    var co = m / TAPS;
    var ky = (m % TAPS) / KWs;
    var kx = (m % TAPS) % KWs;
    for (var e = 0u; e < 8u; e++) {{
        if (n_ok && m < M) {{
            var bias = 0.0;
            if (HAS_BIAS) {{ bias = f32(Bias[co]); }}
            let v = act(Cs[cso + e * 32u + lane] + bias);
            let o = co * plane + ky * OWs + kx + cb;
            Y[yb + o] = ST(post_act(v + rload(rb + o)));
        }}
        m += 2u;
{step}{step}    }}
"#,
                j16 = j * 16,
                i16 = i * 16,
                step = SCATTER_STEP,
            );
            return;
        }
        let _ = write!(
            s,
            "    for (var e = 0u; e < 8u; e++) {{\n        let idx = e * 32u + lane;\n        let m = m0 + wm0 + {}u + idx / 16u;\n        let n = n0 + wn0 + {}u + idx % 16u;\n        if (t_ok && m < M && n < npix) {{\n",
            i * 16,
            j * 16
        );
        if !c.split {
            s.push_str("            var bias = 0.0;\n            if (HAS_BIAS) { bias = f32(Bias[m]); }\n            let v = act(Cs[cso + idx] + bias);\n");
        }
        if c.split {
            s.push_str("            Part[(wg.z * M + m) * npix + n] = Cs[cso + idx];\n");
        } else {
            s.push_str(
                "            let o = m * plane + n;\n            Y[yb + o] = ST(post_act(v + rload(rb + o)));\n",
            );
        }
        s.push_str("        }\n    }\n");
    });
    s.push_str("}\n");
    s
}

/// The tensor-core kernels' workgroup arrays (staged A and B in f16, the epilogue's f32
/// scratch, of `lens` elements) and, for the emulation, its multiply-add over rows of A and
/// columns of B `rows` halves apart (rows of B with `b_row_major`).
pub(super) fn coop_shared(s: &mut String, lens: (u32, u32, u32), emu: bool, rows: (u32, u32), b_row_major: bool) {
    let _ = write!(
        s,
        "var<workgroup> As: array<f16, {}>;\nvar<workgroup> Bs: array<f16, {}>;\nvar<workgroup> Cs: array<f32, {}>;\n",
        lens.0, lens.1, lens.2
    );
    if emu {
        emu_mma(s, rows.0, rows.1, b_row_major);
    }
}

/// The tensor-core kernels' accumulators `acc{i}_{j}` (`fm` x `fn_` 16x16 tiles per subgroup),
/// zero: cooperative matrices, or each lane's 8 elements in the emulation.
pub(super) fn coop_accumulators(s: &mut String, fm: u32, fn_: u32, emu: bool) {
    for i in 0..fm {
        for j in 0..fn_ {
            if emu {
                let _ = writeln!(s, "    var acc{i}_{j}: array<f32, 8>;");
            } else {
                let _ = writeln!(s, "    var acc{i}_{j} = coop_mat16x16<f32, C>();");
            }
        }
    }
}

/// Where fragment `i` (or `j`) of a staged operand starts (an index expression) and the
/// operand's row (A) or column (B) stride in halves.
pub(super) type FragAt<'a> = (&'a dyn Fn(u32) -> String, u32);

/// One 16-deep step `ks` of a tensor-core K tile: load the subgroup's A fragments (row-major,
/// from `As`) and B fragments (column-major from `Bs`, or row-major with `b_row_major`) and
/// multiply-add them into `acc{i}_{j}`.
pub(super) fn coop_k_step(
    s: &mut String,
    ks: u32,
    (fm, fn_): (u32, u32),
    emu: bool,
    a: FragAt,
    b: FragAt,
    b_row_major: bool,
) {
    for i in 0..fm {
        let off = (a.0)(i);
        if emu {
            let _ = writeln!(s, "        let fa{ks}_{i} = {off};");
        } else {
            let _ = writeln!(s, "        let fa{ks}_{i} = coopLoadT<coop_mat16x16<f16, A>>(&As[{off}], {}u);", a.1);
        }
    }
    for j in 0..fn_ {
        let off = (b.0)(j);
        if emu {
            let _ = writeln!(s, "        let fb{ks}_{j} = {off};");
        } else {
            let load = if b_row_major { "coopLoadT" } else { "coopLoad" };
            let _ = writeln!(s, "        let fb{ks}_{j} = {load}<coop_mat16x16<f16, B>>(&Bs[{off}], {}u);", b.1);
        }
    }
    for i in 0..fm {
        for j in 0..fn_ {
            if emu {
                let _ = writeln!(s, "        acc{i}_{j} = emu_mma(acc{i}_{j}, fa{ks}_{i}, fb{ks}_{j}, lane);");
            } else {
                let _ = writeln!(s, "        acc{i}_{j} = coopMultiplyAdd(fa{ks}_{i}, fb{ks}_{j}, acc{i}_{j});");
            }
        }
    }
}

/// Accumulator `acc{i}_{j}` into slot `slot` of the subgroup's f32 scratch (16x16 each, from
/// `Cs[cs]`), row-major.
fn coop_to_scratch(s: &mut String, i: u32, j: u32, slot: u32, emu: bool) {
    let at = slot * 256;
    if emu {
        let _ = writeln!(s, "    for (var e = 0u; e < 8u; e++) {{ Cs[cs + {at}u + lane * 8u + e] = acc{i}_{j}[e]; }}");
    } else {
        // the offset is bound to a `let` first (naga 30 coopStoreT lowering issue)
        let _ = writeln!(s, "    {{ let co = cs + {at}u; let cv = acc{i}_{j}; coopStoreT(cv, &Cs[co], 16u); }}");
    }
}

/// The tensor-core kernels' epilogue: the subgroup's `fm` x `fn_` accumulators leave through its
/// scratch `Cs[cs..]` of `epi` 16x16 slots, `epi` fragments per round: store them, one barrier
/// (the lanes then read elements other lanes stored), then `body(i, j)` for each, which reads
/// fragment (i, j) as `Cs[cso + idx]` (idx = row * 16 + column). A barrier before each later
/// round keeps its stores behind the previous round's reads; none after the last round. With
/// one slot that is two barriers per fragment; with all of them in the scratch, one in all.
pub(super) fn coop_epilogue(
    s: &mut String,
    (fm, fn_): (u32, u32),
    epi: u32,
    emu: bool,
    body: &dyn Fn(&mut String, u32, u32),
) {
    let frags: Vec<(u32, u32)> = (0..fm).flat_map(|i| (0..fn_).map(move |j| (i, j))).collect();
    for (round, group) in frags.chunks(epi as usize).enumerate() {
        if round > 0 {
            s.push_str("    workgroupBarrier();\n");
        }
        for (slot, &(i, j)) in group.iter().enumerate() {
            coop_to_scratch(s, i, j, slot as u32, emu);
        }
        s.push_str("    workgroupBarrier();\n");
        for (slot, &(i, j)) in group.iter().enumerate() {
            let _ = writeln!(s, "    {{ let cso = cs + {}u;", slot * 256);
            body(s, i, j);
            s.push_str("    }\n");
        }
    }
}

/// Kernel-name suffix for an epilogue of `epi` fragments per round (none for one).
pub(super) fn epi_label(epi: u32) -> String {
    if epi > 1 { format!("_e{epi}") } else { String::new() }
}

/// A vec4<f16> register `v` into four consecutive halves of the workgroup array `arr` from
/// index `at` (the staging arrays are scalar: see [`COOP_PAD`]).
pub(super) fn store4(s: &mut String, arr: &str, at: &str, v: &str) {
    let _ = writeln!(
        s,
        "        {{ let i = {at}; {arr}[i] = {v}.x; {arr}[i + 1u] = {v}.y; {arr}[i + 2u] = {v}.z; {arr}[i + 3u] = {v}.w; }}"
    );
}

/// The tensor-core kernels' scalar stand-in for a 16x16x16 multiply-add (`emulate`): each of a
/// subgroup's 32 lanes owns 8 of the tile's 256 accumulators, A is read from `As` by rows
/// `a_row` halves apart, B from `Bs` by columns `b_row` halves apart (by rows with
/// `b_row_major`).
fn emu_mma(s: &mut String, a_row: u32, b_row: u32, b_row_major: bool) {
    let (b_at, b_kind) =
        if b_row_major { (format!("kk * {b_row}u + cc"), "row") } else { (format!("cc * {b_row}u + kk"), "column") };
    let _ = write!(
        s,
        r#"
// acc += A(16x16 at offset a, row stride {a_row}) * B(16x16 at offset b, {b_kind} stride {b_row}),
// the lane's 8 elements
fn emu_mma(acc: array<f32, 8>, a: u32, b: u32, lane: u32) -> array<f32, 8> {{
    // 16 and 8 as loop bounds the shader compiler cannot see (parameter 0 is never 0xffffffff):
    // with constant bounds lavapipe unrolls both loops at every call, one per fragment pair and
    // K step, and took 5-30 s to compile an emulated kernel. The indices are masked, so the
    // accesses stay in bounds whatever the bound.
    let n16 = select(16u, pu(0u), pu(0u) == 0xffffffffu);
    let n8 = n16 / 2u;
    var o = acc;
    for (var e = 0u; e < n8; e++) {{
        let ee = e & 7u;
        let idx = lane * 8u + ee;
        let r = idx / 16u;
        let cc = idx % 16u;
        var sum = 0.0;
        for (var k = 0u; k < n16; k++) {{
            let kk = k & 15u;
            let av = As[a + r * {a_row}u + kk];
            let bv = Bs[b + {b_at}];
            sum += f32(av) * f32(bv);
        }}
        o[ee] += sum;
    }}
    return o;
}}
"#
    );
}

/// The register-blocked epilogue's row: the output channel `co` of GEMM row `m`, and for a
/// transposed conv (whose rows are (output channel, tap), `TAPS` taps per channel) where the
/// row's tap (ky, kx) starts in the output (`rbase`; a column adds its pixel's place).
fn scatter_row(scatter: bool, indent: &str) -> String {
    if scatter {
        format!(
            "{indent}let co = m / TAPS;\n{indent}let rbase = co * plane + ((m % TAPS) / KWs) * OWs + (m % TAPS) % KWs;\n"
        )
    } else {
        format!("{indent}let co = m;\n")
    }
}

/// Tap-major K tiles (`BMode::Taps`: the channels a multiple of the K tile, so a tile lies
/// within one tap): the tap (row `tky`, column `tkx`) and first channel `tch` of the K tile the
/// workgroup loads first; [`TAPS_STEP`] moves them one K tile on after each load, so the loads
/// must follow the K tiles in order.
const TAPS_SETUP: &str = "    var tch = (kt0 * KTILE) % CIN;\n    let ttap = (kt0 * KTILE) / CIN;\n    var tky = ttap / KWT;\n    var tkx = ttap % KWT;\n";
const TAPS_STEP: &str = "          tch += KTILE;\n          if (tch >= CIN) { tch = 0u; tkx += 1u; if (tkx == KWT) { tkx = 0u; tky += 1u; } }\n";

/// A scatter epilogue's geometry (parameters as numbered for `generate`): the input pixels'
/// row length, the taps per output channel and the kernel width, the strides, the output's
/// row length.
const SCATTER_GEOMETRY: &str = "    let IWs = max(pu(8u), 1u);\n    let TAPS = pu(22u);\n    let KWs = pu(21u);\n    let SHs = pu(18u);\n    let SWs = pu(19u);\n    let OWs = pu(20u);\n";

/// One step along a scatter's GEMM rows, (output channel, ky, kx) counted in the order the rows
/// run (tap-minor), with `KHs` = taps / kernel width.
const SCATTER_STEP: &str =
    "        kx += 1u;\n        if (kx == KWs) { kx = 0u; ky += 1u; if (ky == KHs) { ky = 0u; co += 1u; } }\n";

/// Shared by both generators: the batch of the workgroup, and the B loader's coordinates: each invocation loads one column `p` (an output pixel, or an input
/// pixel for a direct GEMM) at rows `kb + j * rstep`.
fn b_setup(s: &mut String, split: bool, gather: bool, bn: u32) {
    if split {
        s.push_str("    let batch = wg.z / pu(27u);\n");
    } else {
        s.push_str("    let batch = wg.z;\n");
    }
    // the K tiles this workgroup multiplies: all, or its slice
    if split {
        s.push_str("    let kt_all = (pu(0u) + KTILE - 1u) / KTILE;\n    let kt0 = (wg.z % pu(27u)) * pu(26u);\n    let kt1 = min(kt_all, kt0 + pu(26u));\n");
    } else {
        s.push_str("    let kt0 = 0u;\n    let kt1 = (pu(0u) + KTILE - 1u) / KTILE;\n");
    }
    let _ = write!(
        s,
        "    let nb = li % {bn}u;\n    let kb = li / {bn}u;\n    let p = n0 + nb;\n    let p_ok = p < npix;\n    let xb = pu(4u) + batch * pu(5u);\n"
    );
    if gather {
        s.push_str(
            "    let OW = max(pu(10u), 1u);\n    let iy0 = i32((p / OW) * pu(11u)) - pi(13u);\n    let ix0 = i32((p % OW) * pu(12u)) - pi(14u);\n    let IW = i32(pu(8u));\n    let IH = i32(pu(9u));\n    let pix = i32(xb) + iy0 * IW + ix0;\n",
        );
    }
}

/// Shared by both generators: load B element `pb{j}` for row `k0 + kb + row` of the K loop,
/// through the (offset, dy, dx) table with a bounds check (gather) or straight from the input.
fn b_load(s: &mut String, k0: &str, j: u32, row: u32, gather: bool, zero: &str) {
    let _ = write!(s, "        {{ let k = {k0} + kb + {row}u; pb{j} = {zero};\n          if (p_ok && k < K) {{\n");
    if gather {
        let _ = write!(
            s,
            "            let kt = KT[k];\n            let iy = iy0 + kt.y;\n            let ix = ix0 + kt.z;\n            if (iy >= 0 && ix >= 0 && iy < IH && ix < IW) {{ pb{j} = xload(u32(pix + kt.x)); }}\n"
        );
    } else {
        let _ = writeln!(s, "            pb{j} = xload(xb + k * npix + p);");
    }
    s.push_str("          } }\n");
}

/// Shared by both generators: the overrides, the bindings (the input, or the packed operand;
/// weights, bias, tap table for a gather, output, residual, split-K partial sums), the K tile,
/// and the input and residual loaders; `load` is the type `xload` returns.
pub(super) fn header(s: &mut String, name: &str, b: BMode, split: bool, bk: u32, load: &str) {
    let _ = write!(
        s,
        r#"
// generated: {name}
override X_IN_Y: bool = false;
override HAS_BIAS: bool = false;
override HAS_RES: bool = false;
override R_IN_Y: bool = false;

{xdecl}
@group(0) @binding(2) var<storage, read> WT: array<vec4<ST>>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
{ktab}@group(0) @binding(5) var<storage, read_write> Y: array<ST>;
@group(0) @binding(6) var<storage, read> R: array<ST>;
{part}
const KTILE: u32 = {bk}u;

// the fused residual at output index i (relative to the image's base), or 0
fn rload(i: u32) -> f32 {{
    if (!HAS_RES) {{
        return 0.0;
    }}
    if (R_IN_Y) {{
        return f32(Y[pu(24u) + i]);
    }}
    return f32(R[pu(24u) + i]);
}}
"#,
        xdecl = if matches!(b, BMode::Packed | BMode::Rows) {
            "@group(0) @binding(1) var<storage, read> XP: array<vec4<ST>>;"
        } else {
            "@group(0) @binding(1) var<storage, read> X: array<ST>;"
        },
        ktab = if b == BMode::Gather { "@group(0) @binding(4) var<storage, read> KT: array<vec4<i32>>;\n" } else { "" },
        part = if split { "@group(0) @binding(7) var<storage, read_write> Part: array<f32>;\n" } else { "" },
    );
    // a packed operand (or runs of rows) is read as vectors, never through xload
    if !matches!(b, BMode::Packed | BMode::Rows) {
        let _ = write!(
            s,
            "\nfn xload(i: u32) -> {load} {{\n    if (X_IN_Y) {{\n        return {load}(Y[i]);\n    }}\n    return {load}(X[i]);\n}}\n"
        );
    }
}

/// The input geometry both `Rows` loaders (runs of 16, quads) read from their parameters
/// ([`ROWS_PARAMS`]).
const ROWS_GEOMETRY: &str = "    let VMAX = i32(pu(28u));\n    let CIN = pu(29u);\n    let KWT = pu(30u);\n    let RIW = i32(pu(33u));\n    let RIH = i32(pu(34u));\n    let OW = max(pu(35u), 1u);\n    let HW = pu(33u) * pu(34u);\n";

/// The `Rows` loader's per-invocation setup: its runs (K row `rk{r}`, run `rc{r}` of 16 pixels,
/// whose first pixel's input row and column before the tap's offset are `roy{r}` / `rox{r}`),
/// the channel and tap of each run's K row in the first K tile (`rch{r}`, `rky{r}`, `rkx{r}`:
/// the only divisions; the loads count them along) and the input geometry, from parameters
/// of its own ([`ROWS_PARAMS`]).
fn rows_setup(s: &mut String, c: &CoopCfg) {
    s.push_str(ROWS_GEOMETRY);
    let runs_per_row = c.bn / 16;
    for r in 0..c.row_runs() {
        let _ = write!(
            s,
            "    let ru{r} = li + {off}u;\n    let rk{r} = ru{r} / {runs_per_row}u;\n    let rc{r} = ru{r} % {runs_per_row}u;\n    let rp{r} = n0 + rc{r} * 16u;\n    let rok{r} = rp{r} < npix;\n    let roy{r} = i32(rp{r} / OW) - pi(36u);\n    let rox{r} = i32(rp{r} % OW) - pi(37u);\n",
            off = r * c.threads()
        );
        // the run's K row in the first K tile the workgroup loads, as (channel, tap row, tap
        // column); each load moves it one K tile on (`rows_load`)
        let _ = write!(
            s,
            "    var rch{r} = (kt0 * KTILE + rk{r}) % CIN;\n    let rtap{r} = (kt0 * KTILE + rk{r}) / CIN;\n    var rky{r} = rtap{r} / KWT;\n    var rkx{r} = rtap{r} % KWT;\n"
        );
    }
}

/// The `Rows` loader: for the K tile from `k0` (K tap-major: k = tap * C + channel), each of
/// the invocation's `runs` runs of 16 output pixels, at K row `k0 + rk{r}`, reads its input run
/// (contiguous: stride 1, one output row) as the five vec4 that cover it, shifted by the run's
/// start mod 4, into `pb{4r} .. pb{4r + 3}`; zero outside the image and past K. The vec4
/// indices are clamped into the input's extent (the clamped ones only ever feed masked
/// columns). A K tile within one tap (channels a multiple of 32) has one shift for the whole
/// workgroup; one that spans taps, one per tap. Each call moves the runs' (channel, tap) one K
/// tile on, so the calls must follow the K tiles in order (the prologue's, then one per
/// iteration that loads).
fn rows_load(s: &mut String, k0: &str, runs: u32) {
    let _ = writeln!(s, "        {{ let kk = {k0};");
    for r in 0..runs {
        let _ = write!(
            s,
            r#"          {{ let k = kk + rk{r};
            let iy = roy{r} + i32(rky{r} * pu(31u));
            let ix = rox{r} + i32(rkx{r} * pu(32u));
            let ok = rok{r} && k < pu(0u) && iy >= 0 && iy < RIH;
            let e0 = i32(xb + rch{r} * HW) + iy * RIW + ix;
            let sh = u32(e0 & 3);
            let v0 = (e0 - i32(sh)) >> 2u;
            let a0 = XP[u32(clamp(v0, 0, VMAX))];
            let a1 = XP[u32(clamp(v0 + 1, 0, VMAX))];
            let a2 = XP[u32(clamp(v0 + 2, 0, VMAX))];
            let a3 = XP[u32(clamp(v0 + 3, 0, VMAX))];
            let a4 = XP[u32(clamp(v0 + 4, 0, VMAX))];
            var r0 = a0;
            var r1 = a1;
            var r2 = a2;
            var r3 = a3;
            switch sh {{
              case 1u: {{ r0 = vec4<f16>(a0.yzw, a1.x); r1 = vec4<f16>(a1.yzw, a2.x); r2 = vec4<f16>(a2.yzw, a3.x); r3 = vec4<f16>(a3.yzw, a4.x); }}
              case 2u: {{ r0 = vec4<f16>(a0.zw, a1.xy); r1 = vec4<f16>(a1.zw, a2.xy); r2 = vec4<f16>(a2.zw, a3.xy); r3 = vec4<f16>(a3.zw, a4.xy); }}
              case 3u: {{ r0 = vec4<f16>(a0.w, a1.xyz); r1 = vec4<f16>(a1.w, a2.xyz); r2 = vec4<f16>(a2.w, a3.xyz); r3 = vec4<f16>(a3.w, a4.xyz); }}
              default: {{}}
            }}
            if (!ok) {{
              r0 = vec4<f16>(0.0); r1 = r0; r2 = r0; r3 = r0;
            }} else if (ix < 0 || ix + 16 > RIW) {{
              // the image's left or right edge: columns outside it are zero
              let j = vec4<i32>(0, 1, 2, 3) + ix;
              let z = vec4<f16>(0.0);
              let w = vec4<i32>(RIW);
              r0 = select(z, r0, (j >= vec4<i32>(0)) & (j < w));
              r1 = select(z, r1, (j + 4 >= vec4<i32>(0)) & (j + 4 < w));
              r2 = select(z, r2, (j + 8 >= vec4<i32>(0)) & (j + 8 < w));
              r3 = select(z, r3, (j + 12 >= vec4<i32>(0)) & (j + 12 < w));
            }}
            pb{q0} = r0; pb{q1} = r1; pb{q2} = r2; pb{q3} = r3;
            // on to the next K tile: KTILE channels on, taps wrapping (one step unless the
            // channels are fewer than KTILE)
            rch{r} += KTILE;
            while (rch{r} >= CIN) {{
              rch{r} -= CIN;
              rkx{r} += 1u;
              if (rkx{r} == KWT) {{ rkx{r} = 0u; rky{r} += 1u; }}
            }}
          }}
"#,
            q0 = 4 * r,
            q1 = 4 * r + 1,
            q2 = 4 * r + 2,
            q3 = 4 * r + 3,
        );
    }
    s.push_str("        }\n");
}

/// K rows between an invocation's quads (`CoopCfg::quads`): a row of quads takes BN / 4
/// invocations, so the invocations hold that many rows at a time.
fn quad_step(c: &CoopCfg) -> u32 {
    c.threads() / (c.bn / 4)
}

/// The quads loader's setup: the invocation's quad of 4 output pixels (`rc0`, the same in
/// every K row it loads) and first K row `rk0`, the quad's first pixel's input row and column
/// before the tap's offset (`roy0` / `rox0`), and the first K tile's channel and tap of K row
/// `rk0` (`rch0`, `rky0`, `rkx0`). With channels a multiple of the K tile a K tile lies within
/// one tap, so the invocation's other K rows are channels `rch0 + q * step` of the same tap.
fn quads_setup(s: &mut String, c: &CoopCfg) {
    s.push_str(ROWS_GEOMETRY);
    let per_row = c.bn / 4;
    let _ = write!(
        s,
        "    let rk0 = li / {per_row}u;\n    let rc0 = li % {per_row}u;\n    let rp0 = n0 + rc0 * 4u;\n    let rok0 = rp0 < npix;\n    let roy0 = i32(rp0 / OW) - pi(36u);\n    let rox0 = i32(rp0 % OW) - pi(37u);\n    var rch0 = (kt0 * KTILE + rk0) % CIN;\n    let rtap0 = (kt0 * KTILE + rk0) / CIN;\n    var rky0 = rtap0 / KWT;\n    var rkx0 = rtap0 % KWT;\n"
    );
}

/// The quads loader (`CoopCfg::quads`): for the K tile from `k0`, each of the invocation's
/// `quads` K rows (`rk0 + q * step`) reads its quad of 4 input pixels (contiguous: stride 1,
/// one output row) as the vec4 that holds its first pixel and, unless the quad is 4-aligned,
/// the next one, shifted by the quad's start mod 4, into `pb{q}`; zero outside the image and
/// past K. Consecutive invocations read consecutive quads of one K row, as the GEMM probe's
/// loader does: a subgroup's load covers whole 32-byte sectors. One tap for the whole K tile
/// (channels a multiple of it), so the rows, the shift (the same for the whole workgroup) and
/// the edge mask are found once per tile; each call moves the tap one K tile on.
fn quads_load(s: &mut String, k0: &str, quads: u32, step: u32) {
    let _ = write!(
        s,
        r#"        {{ let kk = {k0};
          let iy = roy0 + i32(rky0 * pu(31u));
          let ix = rox0 + i32(rkx0 * pu(32u));
          let ok = rok0 && kk + rk0 < pu(0u) && iy >= 0 && iy < RIH;
          let e0 = i32(xb + rch0 * HW) + iy * RIW + ix;
          let sh = u32(e0 & 3);
          let v0 = (e0 - i32(sh)) >> 2u;
          let qhw = i32(HW / 4u) * {step};
          // the image's left or right edge: columns outside it are zero
          let j = vec4<i32>(0, 1, 2, 3) + ix;
          let inside = ok && ix >= 0 && ix + 4 <= RIW;
          let keep = vec4<bool>(ok) & (j >= vec4<i32>(0)) & (j < vec4<i32>(RIW));
"#
    );
    for q in 0..quads {
        let _ = write!(
            s,
            r#"          {{ let v = v0 + {q} * qhw;
            let a0 = XP[u32(clamp(v, 0, VMAX))];
            var r = a0;
            if (sh != 0u) {{
              let a1 = XP[u32(clamp(v + 1, 0, VMAX))];
              switch sh {{
                case 1u: {{ r = vec4<f16>(a0.yzw, a1.x); }}
                case 2u: {{ r = vec4<f16>(a0.zw, a1.xy); }}
                default: {{ r = vec4<f16>(a0.w, a1.xyz); }}
              }}
            }}
            if (!inside) {{ r = select(vec4<f16>(0.0), r, keep); }}
            pb{q} = r;
          }}
"#
        );
    }
    // on to the next K tile: KTILE channels on, at most one wrap to the next tap (the
    // channels are a multiple of KTILE)
    s.push_str(
        "          rch0 += KTILE;
          if (rch0 >= CIN) {
            rch0 -= CIN;
            rkx0 += 1u;
            if (rkx0 == KWT) { rkx0 = 0u; rky0 += 1u; }
          }
        }
",
    );
}

/// The first pixel (relative to invocation row `pn`) of pass `q` over a packed operand tile:
/// eight invocations load one pixel's K tile, so a pass covers `threads / 8` pixels.
fn packed_pixel(q: u32, threads: u32) -> u32 {
    q * threads / (COOP_BK / 4)
}

/// The tensor-core kernels' B loader: `pb{q}` (q < nq) get the K values `k0 + kb * kq + 4q ..+4`
/// of column `p`, zero outside the input (and past K); for a packed operand, vec4 `pk` of the K
/// tile of pixel `pn + q * threads / 8`.
fn coop_b_load(s: &mut String, k0: &str, b: BMode, kq: u32, nq: u32, threads: u32) {
    // the invocation's first K row, for the loaders that index K per element (a tap-major
    // loader keeps its tile's tap, a packed one reads the tile from `k0`)
    if matches!(b, BMode::Gather | BMode::Direct) {
        let _ = writeln!(s, "        {{ let kk = {k0} + kb * {kq}u;");
    } else {
        s.push_str("        {\n");
    }
    match b {
        BMode::Taps => {
            // one tap per K tile: one bounds check, then channel planes HW apart
            let _ = write!(
                s,
                "          let dy = i32(tky * pu(20u));\n          let dx = i32(tkx * pu(21u));\n          let iy = iy0 + dy;\n          let ix = ix0 + dx;\n          if (p_ok && iy >= 0 && ix >= 0 && iy < IH && ix < IW) {{\n            let base = u32(pix + dy * IW + dx) + (tch + kb * {kq}u) * HW;\n"
            );
            for q in 0..nq {
                let e: Vec<String> = (0..4).map(|i| format!("xload(base + {}u * HW)", 4 * q + i)).collect();
                let _ = writeln!(s, "            pb{q} = vec4<f16>({});", e.join(", "));
            }
            s.push_str("          } else {\n");
            for q in 0..nq {
                let _ = writeln!(s, "            pb{q} = vec4<f16>(0.0);");
            }
            s.push_str("          }\n");
            s.push_str(TAPS_STEP);
        }
        BMode::Gather => {
            for q in 0..nq {
                let _ = writeln!(s, "          pb{q} = vec4<f16>(0.0);");
                for i in 0..4 {
                    let _ = write!(
                        s,
                        "          {{ let k = kk + {}u; if (p_ok && k < K) {{ let kt = KT[k]; let iy = iy0 + kt.y; let ix = ix0 + kt.z;\n            if (iy >= 0 && ix >= 0 && iy < IH && ix < IW) {{ pb{q}[{i}] = xload(u32(pix + kt.x)); }} }} }}\n",
                        4 * q + i
                    );
                }
            }
        }
        BMode::Packed => {
            // param 3: K padded / 4 (the packed row length in vec4), xb: the image's first vec4;
            // invocation (pn, pk) loads vec4 pk of the K tile of pixels pn, pn + threads / 8, ...
            for q in 0..nq {
                let n = packed_pixel(q, threads);
                let _ = writeln!(
                    s,
                    "          {{ let n = n0 + pn + {n}u; pb{q} = vec4<f16>(0.0);\n            if (n < npix) {{ pb{q} = vec4<f16>(XP[xb + n * pu(3u) + {k0} / 4u + pk]); }} }}"
                );
            }
        }
        BMode::Direct => {
            for q in 0..nq {
                let _ = writeln!(s, "          pb{q} = vec4<f16>(0.0);");
                for i in 0..4 {
                    let _ = writeln!(
                        s,
                        "          {{ let k = kk + {}u; if (p_ok && k < K) {{ pb{q}[{i}] = xload(xb + k * npix + p); }} }}",
                        4 * q + i
                    );
                }
            }
        }
        BMode::Rows => unreachable!("runs of rows load through rows_load"),
    }
    s.push_str("        }\n");
}
