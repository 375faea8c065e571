//! Generated WGSL for a stride-1 convolution on the tensor cores whose B operand is a halo
//! tile: the input patch an output tile needs for every tap, staged once per block of input
//! channels and shared by all of the kernel's taps.
//!
//! The other tensor-core kernels (convgen's `Taps` mode) gather B from the NCHW input for every
//! K tile, so a 3x3 conv reads each input value nine times, one f16 per load. Here a workgroup
//! computes BM output channels x an output tile of TR rows x 16 columns; for each block of CB
//! input channels it loads the (TR + (KH-1)·d) x (16 + (KW-1)·d) patch into workgroup memory,
//! pixel-major with the CB channels contiguous (B's columns are k-contiguous, as in convgen's
//! staging), and then multiplies the KH·KW taps against it: for tap (ky, kx), the B fragment of
//! 16 output pixels of one tile row is 16 consecutive patch pixels starting (ky·d, kx·d) away,
//! loaded column-major at the same row stride. Only A (the weights, K ordered tap-major as
//! k = tap·C + c) streams per step. The patch of the next channel block is loaded into
//! registers during the first tap of the current one and stored after the last, between two
//! barriers; A is double-buffered as in convgen.
//!
//! Global loads per step for a 128x128 tile: A 4 vec4 per invocation as before; B on average
//! 0.6 vec4 of four f16 (the patch of 180 pixels x 32 channels over 256 invocations, once per
//! 9 taps) instead of 16 single f16.
//!
//! With `resident`, A for all taps of a channel block is staged beside the patch (the tiles of
//! up to 64 output channels have room for it), both loaded into registers during the previous
//! block and stored between two barriers: a block's taps then run back to back, with no
//! barrier and no global load between them (two barriers per block instead of one per tap).
//! On layers whose workgroups are too few to hide a K step's load latency behind other
//! workgroups (the deep, small layers; base 16 throughout) that latency is paid once per
//! block instead of once per tap.

use super::convgen::{COOP_PAD, coop_accumulators, coop_epilogue, coop_k_step, coop_shared, epi_label, header, store4};
use std::fmt::Write as _;

/// Output tile width (pixels); a subgroup's 16-pixel fragment is one run of a tile row.
pub const HALO_TC: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HaloCfg {
    /// Output channels of the tile.
    pub bm: u32,
    /// Output pixels of the tile: (BN / 16) rows of 16.
    pub bn: u32,
    /// Rows and columns (pixels) of the tile one subgroup computes.
    pub wm: u32,
    pub wn: u32,
    /// Input channels per staged patch (16 or 32; divides the conv's input channels).
    pub cb: u32,
    pub kh: u32,
    pub kw: u32,
    /// Dilation (both axes).
    pub dil: u32,
    pub emulate: bool,
    /// Split-K over channel blocks, as for `ConvCfg::split`.
    pub split: bool,
    /// Accumulator fragments each subgroup stages per epilogue round, as for `CoopCfg::epi`.
    pub epi: u32,
    /// A (the weights) for all taps of a channel block is staged with its patch, once per
    /// block: the block's taps then run with no barrier or global load between them. Otherwise
    /// A streams one tap at a time, double-buffered, with a barrier per tap.
    pub resident: bool,
}

/// (BM, BN, WM, WN): tensor-core tiles of convgen's `COOP_TILES` with a halo variant, which a
/// measured choice (autotuning) names by the same (BM, BN). Their subgroup tiles are their own:
/// 64x128 kept its 32x64 subgroups here when the plain kernel's became 64x32; 128x64 has none.
pub const HALO_TILES: [(u32, u32, u32, u32); 5] =
    [(128, 128, 64, 32), (64, 128, 32, 64), (64, 64, 32, 32), (32, 128, 32, 32), (16, 128, 16, 32)];

impl HaloCfg {
    pub fn warps(&self) -> u32 {
        (self.bm / self.wm) * (self.bn / self.wn)
    }
    pub fn threads(&self) -> u32 {
        32 * self.warps()
    }
    pub fn rows(&self) -> u32 {
        self.bn / HALO_TC
    }
    /// Patch rows and columns.
    pub fn patch(&self) -> (u32, u32) {
        (self.rows() + (self.kh - 1) * self.dil, HALO_TC + (self.kw - 1) * self.dil)
    }
    /// Halves per staged row (one output channel of A, one patch pixel of B).
    fn row(&self) -> u32 {
        self.cb + COOP_PAD
    }
    pub fn shared_bytes(&self) -> u32 {
        let (ph, pw) = self.patch();
        let a = self.a_rows() * self.row() * 2;
        let b = ph * pw * self.row() * 2;
        a + b + self.warps() * self.epi * 256 * 4
    }
    /// Accumulator fragments per subgroup.
    pub fn frags(&self) -> u32 {
        (self.wm / 16) * (self.wn / 16)
    }
    /// Staged rows of A: every tap's BM rows (resident), or two buffers of one tap's.
    fn a_rows(&self) -> u32 {
        if self.resident { self.kh * self.kw * self.bm } else { 2 * self.bm }
    }
    pub fn valid(&self) -> bool {
        let t = self.threads();
        let a_vec4 = self.bm * self.cb / 4;
        (self.cb == 16 || self.cb == 32)
            && self.wm.is_multiple_of(16)
            && self.wn.is_multiple_of(16)
            && self.bm.is_multiple_of(self.wm)
            && self.bn.is_multiple_of(self.wn)
            && self.bn.is_multiple_of(HALO_TC)
            && self.epi >= 1
            && self.frags().is_multiple_of(self.epi)
            && t <= 256
            && (a_vec4.is_multiple_of(t) || t.is_multiple_of(a_vec4))
            && self.kh >= 1
            && self.kw >= 1
            && self.dil >= 1
    }
    pub fn name(&self) -> String {
        format!(
            "halo_{}x{}_w{}x{}_c{}_k{}x{}{}{}{}{}{}",
            self.bm,
            self.bn,
            self.wm,
            self.wn,
            self.cb,
            self.kh,
            self.kw,
            if self.dil > 1 { format!("_d{}", self.dil) } else { String::new() },
            if self.resident { "_res" } else { "" },
            if self.split { "_splitk" } else { "" },
            epi_label(self.epi),
            if self.emulate { "_emulated" } else { "" }
        )
    }
}

// Parameters (P), numbered as convgen's where they mean the same:
// 0 K (taps x C), 1 M, 2 npix (output pixels), 3 K / 4 (a weight row in vec4), 4 x_off, 5 x_bs,
// 6 y_off, 7 y_bs, 8 IW, 9 IH, 10 OW, 11 OH, 12 pixel tiles along x, 13 PH (i32), 14 PW (i32), 15 pixel tiles,
// 16 channel tiles, 17 output plane size, 18 C, 24 residual offset,
// 25 residual batch stride, 26 channel blocks per slice (split-K), 27 slices (split-K)

pub fn generate(c: &HaloCfg) -> String {
    assert!(c.valid(), "invalid halo tile {c:?}");
    let threads = c.threads();
    let row = c.row();
    let (ph, pw) = c.patch();
    let pp = ph * pw;
    let cq = c.cb / 4;
    let taps = c.kh * c.kw;
    let a_buf = c.bm * row;
    let a_count = c.bm * cq;
    let la = a_count.div_ceil(threads);
    let a_guard = if a_count < threads { format!("li < {a_count}u") } else { "true".to_string() };
    let lp = (pp * cq).div_ceil(threads);
    let wgn = c.bn / c.wn;
    let fm = c.wm / 16;
    let fn_ = c.wn / 16;
    let emu = c.emulate;
    let mut s = String::new();
    header(&mut s, &c.name(), super::convgen::BMode::Taps, c.split, c.cb, "f16");
    coop_shared(&mut s, (c.a_rows() * row, pp * row, c.warps() * c.epi * 256), emu, (row, row), false);
    let _ = write!(
        s,
        r#"
@compute @workgroup_size({threads}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {{
    let p_tiles = pu(15u);
    // no early return: cooperative-matrix operations need uniform control flow
    let t_raw = wg.x + wg.y * nwg.x;
    let t_ok = t_raw < p_tiles * pu(16u);
    let tile = select(0u, t_raw, t_ok);
    let pt = tile % p_tiles;
    let m0 = (tile / p_tiles) * {bm}u;
    let oy0 = (pt / pu(12u)) * {tr}u;
    let ox0 = (pt % pu(12u)) * {tc}u;
    let M = pu(1u);
    let npix = pu(2u);
    let K4 = pu(3u);
    let IW = i32(pu(8u));
    let IH = i32(pu(9u));
    let OW = pu(10u);
    let OH = pu(11u);
    let CIN = pu(18u);
    let HW = pu(8u) * pu(9u);
    let warp = li / 32u;
    let lane = li % 32u;
    let wm0 = (warp / {wgn}u) * {wm}u;
    let wn0 = (warp % {wgn}u) * {wn}u;
"#,
        bm = c.bm,
        tr = c.rows(),
        tc = HALO_TC,
        wm = c.wm,
        wn = c.wn,
    );
    // batch and the channel blocks of this workgroup
    if c.split {
        s.push_str("    let batch = wg.z / pu(27u);\n    let cb0 = (wg.z % pu(27u)) * pu(26u);\n");
        let _ = writeln!(s, "    let cb1 = min(CIN / {}u, cb0 + pu(26u));", c.cb);
    } else {
        let _ = writeln!(s, "    let batch = wg.z;\n    let cb0 = 0u;\n    let cb1 = CIN / {}u;", c.cb);
    }
    s.push_str("    let xb = pu(4u) + batch * pu(5u);\n");
    // patch loader: item i = quad * PP + pixel; its input offset (-1 outside the input) and its
    // slot in Bs, fixed for the whole K loop
    let _ = writeln!(s, "    let iy0 = i32(oy0) - pi(13u);\n    let ix0 = i32(ox0) - pi(14u);");
    for j in 0..lp {
        let _ = write!(
            s,
            "    var po{j} = -1;\n    var ps{j} = 0u;\n    let pq{j} = (li + {off}u) / {pp}u;\n    {{ let i = li + {off}u; let px = i % {pp}u; let q = i / {pp}u;\n      let iy = iy0 + i32(px / {pw}u); let ix = ix0 + i32(px % {pw}u);\n      ps{j} = select(0u, px * {row}u + q * 4u, i < {total}u);\n      if (i < {total}u && iy >= 0 && ix >= 0 && iy < IH && ix < IW) {{ po{j} = i32(xb) + iy * IW + ix; }} }}\n",
            off = j * threads,
            total = pp * cq,
        );
        let _ = writeln!(s, "    var pb{j} = vec4<f16>(0.0);");
    }
    for j in (0..la).filter(|_| !c.resident) {
        let _ = write!(
            s,
            "    let ae{j} = li + {off}u;\n    let am{j} = ae{j} / {cq}u;\n    let ak{j} = ae{j} % {cq}u;\n    var pa{j} = vec4<f16>(0.0);\n",
            off = j * threads,
        );
    }
    // the first patch pixel of each B fragment (tap (0, 0))
    for j in 0..fn_ {
        let _ = writeln!(
            s,
            "    let fp{j} = ((wn0 + {o}u) / {tc}u) * {pw}u + (wn0 + {o}u) % {tc}u;",
            o = j * 16,
            tc = HALO_TC
        );
    }
    coop_accumulators(&mut s, fm, fn_, emu);
    // loaders: the patch of channel block `blk` into pb (four channel planes per vec4), A of
    // step `st` (tap st % TAPS of channel block st / TAPS) into pa
    let load_patch = |s: &mut String, blk: &str| {
        for j in 0..lp {
            let _ = write!(
                s,
                "        {{ pb{j} = vec4<f16>(0.0);\n          if (po{j} >= 0) {{ let o = u32(po{j}) + ({blk} * {cb}u + pq{j} * 4u) * HW;\n            pb{j} = vec4<f16>(xload(o), xload(o + HW), xload(o + 2u * HW), xload(o + 3u * HW)); }} }}\n",
                cb = c.cb
            );
        }
    };
    let store_patch = |s: &mut String| {
        for j in 0..lp {
            let _ = writeln!(s, "        if (li + {}u < {}u) {{", j * threads, pp * cq);
            store4(s, "Bs", &format!("ps{j}"), &format!("pb{j}"));
            s.push_str("        }\n");
        }
    };
    let load_a = |s: &mut String, st: &str| {
        let _ = writeln!(s, "        {{ let kq = (({st}) % {taps}u * CIN + ({st}) / {taps}u * {}u) / 4u;", c.cb);
        for j in 0..la {
            let _ = writeln!(
                s,
                "          {{ let m = m0 + am{j}; if ({a_guard} && m < M) {{ pa{j} = vec4<f16>(WT[m * K4 + kq + ak{j}]); }} else {{ pa{j} = vec4<f16>(0.0); }} }}"
            );
        }
        s.push_str("        }\n");
    };
    let store_a = |s: &mut String, base: &str| {
        for j in 0..la {
            let _ = writeln!(s, "        if ({a_guard}) {{");
            store4(s, "As", &format!("{base} + am{j} * {row}u + ak{j} * 4u"), &format!("pa{j}"));
            s.push_str("        }\n");
        }
    };
    // one tap of the current channel block: its offset in the patch, then the multiply-adds of
    // its K step (`abase`: where the tap's A starts in As)
    let tap_steps = |s: &mut String| {
        let _ = writeln!(
            s,
            "        let toff = (tap / {kw}u) * {dy}u + (tap % {kw}u) * {dx}u;",
            kw = c.kw,
            dy = c.dil * pw,
            dx = c.dil
        );
        for ks in 0..c.cb / 16 {
            coop_k_step(
                s,
                ks,
                (fm, fn_),
                emu,
                (&|i| format!("abase + (wm0 + {}u) * {row}u + {}u", i * 16, ks * 16), row),
                (&|j| format!("(fp{j} + toff) * {row}u + {}u", ks * 16), row),
                false,
            );
        }
    };
    if c.resident {
        // A of all taps of channel block `blk`: item e = (tap, row, vec4), staged at
        // As[(tap * BM + row) * ROW + 4 * vec4]
        let ra = c.bm * taps * cq;
        let lr = ra.div_ceil(threads);
        for j in 0..lr {
            let _ = write!(
                s,
                "    let re{j} = li + {off}u;\n    let rt{j} = re{j} / {bq}u;\n    let rm{j} = (re{j} % {bq}u) / {cq}u;\n    let rk{j} = re{j} % {cq}u;\n    var ra{j} = vec4<f16>(0.0);\n",
                off = j * threads,
                bq = c.bm * cq,
            );
        }
        let load_res = |s: &mut String, blk: &str| {
            for j in 0..lr {
                let _ = writeln!(
                    s,
                    "        {{ let m = m0 + rm{j}; if (re{j} < {ra}u && m < M) {{ ra{j} = vec4<f16>(WT[m * K4 + (rt{j} * CIN + {blk} * {cb}u) / 4u + rk{j}]); }} else {{ ra{j} = vec4<f16>(0.0); }} }}",
                    cb = c.cb
                );
            }
        };
        let store_res = |s: &mut String| {
            for j in 0..lr {
                let _ = writeln!(s, "        if (re{j} < {ra}u) {{");
                store4(
                    s,
                    "As",
                    &format!("(rt{j} * {bm}u + rm{j}) * {row}u + rk{j} * 4u", bm = c.bm),
                    &format!("ra{j}"),
                );
                s.push_str("        }\n");
            }
        };
        s.push_str("    {\n");
        load_patch(&mut s, "cb0");
        store_patch(&mut s);
        load_res(&mut s, "cb0");
        store_res(&mut s);
        s.push_str("    }\n    workgroupBarrier();\n");
        s.push_str(
            "    for (var blk = cb0; blk < cb1; blk++) {\n        let more = blk + 1u < cb1;\n        if (more) {\n",
        );
        load_patch(&mut s, "(blk + 1u)");
        load_res(&mut s, "(blk + 1u)");
        let _ = writeln!(
            s,
            "        }}\n        for (var tap = 0u; tap < {taps}u; tap++) {{\n        let abase = tap * {bm}u * {row}u;",
            bm = c.bm,
        );
        tap_steps(&mut s);
        // the next block replaces this one's patch and A once every subgroup is done with them
        s.push_str("        }\n        if (more) {\n        workgroupBarrier();\n");
        store_patch(&mut s);
        store_res(&mut s);
        s.push_str("        workgroupBarrier();\n        }\n    }\n");
    } else {
        let _ = write!(s, "    let s0 = cb0 * {taps}u;\n    let s1 = cb1 * {taps}u;\n    {{\n");
        load_patch(&mut s, "cb0");
        store_patch(&mut s);
        load_a(&mut s, "s0");
        store_a(&mut s, "0u");
        s.push_str("    }\n    workgroupBarrier();\n");
        let _ = write!(
            s,
            "    for (var st = s0; st < s1; st++) {{\n        let tap = st % {taps}u;\n        let blk = st / {taps}u;\n        let abase = ((st - s0) & 1u) * {a_buf}u;\n        let more = st + 1u < s1;\n        if (more) {{\n"
        );
        load_a(&mut s, "st + 1u");
        s.push_str("        }\n        if (tap == 0u && blk + 1u < cb1) {\n");
        load_patch(&mut s, "(blk + 1u)");
        s.push_str("        }\n");
        tap_steps(&mut s);
        s.push_str("        if (more) {\n");
        store_a(&mut s, &format!("{a_buf}u - abase"));
        let _ = writeln!(s, "        }}\n        if (tap == {}u && more) {{\n        workgroupBarrier();", taps - 1);
        store_patch(&mut s);
        s.push_str("        }\n        workgroupBarrier();\n    }\n");
    }
    // epilogue, as in convgen's tensor-core kernels, with the tile's pixels 16 to a row
    let _ = writeln!(
        s,
        "    let yb = pu(6u) + batch * pu(7u);\n    let rb = batch * pu(25u);\n    let plane = pu(17u);\n    let cs = warp * {}u;",
        256 * c.epi
    );
    coop_epilogue(&mut s, (fm, fn_), c.epi, emu, &|s, i, j| {
        let _ = write!(
            s,
            "    for (var e = 0u; e < 8u; e++) {{\n        let idx = e * 32u + lane;\n        let m = m0 + wm0 + {}u + idx / 16u;\n        let nl = wn0 + {}u + idx % 16u;\n        let oy = oy0 + nl / {tc}u;\n        let ox = ox0 + nl % {tc}u;\n        if (t_ok && m < M && oy < OH && ox < OW) {{\n            let n = oy * OW + ox;\n",
            i * 16,
            j * 16,
            tc = HALO_TC
        );
        if c.split {
            s.push_str("            Part[(wg.z * M + m) * npix + n] = Cs[cso + idx];\n");
        } else {
            s.push_str(
                "            var bias = 0.0;\n            if (HAS_BIAS) { bias = f32(Bias[m]); }\n            let v = act(Cs[cso + idx] + bias);\n            let o = m * plane + n;\n            Y[yb + o] = ST(post_act(v + rload(rb + o)));\n",
            );
        }
        s.push_str("        }\n    }\n");
    });
    s.push_str("}\n");
    s
}
