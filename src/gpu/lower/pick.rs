//! The kernel for each fast conv: the cost model (waves of workgroups at each tile's fitted
//! throughput, plus the split-K reduction) over the register-blocked and tensor-core tiles and
//! their K splits, a measured choice where autotuning made one, and the special kernels (thin,
//! halo tiles) where they apply.

use super::{CoopMode, LowerOpts, Lx, TileChoice};
use crate::gpu::Precision;
use crate::gpu::Shader;
use crate::gpu::convgen::{BMode, COOP_BK, COOP_TILES, ConvCfg, CoopCfg, TILES};
use crate::gpu::halo::{HALO_TILES, HaloCfg};
use crate::gpu::thin::ThinCfg;

/// Workgroups that run at once when estimating waves (wgpu does not report the multiprocessor
/// count: 132 multiprocessors of an H100/H200 holding two of these workgroups each; the choice
/// is not sensitive to it on smaller GPUs).
const SMS: usize = 264;

/// The cost model's constants, fitted with the tile efficiencies of `convgen::TILES` and
/// `convgen::COOP_TILES` to run 6's autotuning measurements on an H200 (2026-11-27, every tile x
/// split-K factor timed per conv of the two benchmark networks; see `TILES`).
///
/// Rate of one workgroup slot on the 128x128 FMA tile when every slot is busy (FLOP/s). Only
/// ratios of [`tile_time`] matter for choices, except against the fixed and reduction costs.
const SLOT_RATE: f64 = 121e9;

/// Which kernel family a tile belongs to: they differ in fixed cost per workgroup (prologue and
/// epilogue; the tensor-core epilogue goes through workgroup memory) and in how much faster a
/// workgroup runs when it has a multiprocessor to itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Fma,
    Coop,
}

impl Family {
    /// Seconds per workgroup besides its K loop.
    fn fixed(self) -> f64 {
        match self {
            Family::Fma => 2.4e-6,
            Family::Coop => 6.6e-6,
        }
    }
    /// Speed-up of a last wave that leaves every multiprocessor at most one workgroup.
    fn alone(self) -> f64 {
        match self {
            Family::Fma => 1.40,
            Family::Coop => 1.46,
        }
    }
}

/// Memory bandwidth (bytes/s) and fixed cost (s) of the split-K reduction dispatch.
const REDUCE_BW: f64 = 1.95e12;
const REDUCE_FIXED: f64 = 7.3e-6;

/// The implicit GEMM a fast conv runs: `m` rows (output channels), `cols` columns (pixels),
/// `k` deep, over `z` images (or taps), with its B operand mode; `scatter` for a transposed
/// conv's direct GEMM, `cin` for a gather whose K may be ordered tap-major; `rows` where a
/// tensor-core tile will load B with the `Rows` loader if it is valid and fits (geometry, view
/// alignment and options allow it), so that a tile is priced by that loader's workgroup memory.
#[derive(Clone, Copy, Debug)]
pub(super) struct Gemm {
    pub(super) m: usize,
    pub(super) cols: usize,
    pub(super) z: usize,
    pub(super) k: usize,
    pub(super) b: BMode,
    pub(super) scatter: bool,
    pub(super) cin: Option<usize>,
    pub(super) rows: bool,
}

/// Estimated time (seconds) of a conv on a tile in `slices` K slices: waves of workgroups, each
/// doing its fixed work and its tile's share of the K loop at the tile's measured relative
/// throughput (padding rows and columns count as work), plus the split-K reduction.
fn tile_time(fam: Family, g: &Gemm, (bm, bn, bk): (u32, u32, u32), eff: f64, slices: usize) -> f64 {
    let Gemm { m, cols, z, k, .. } = *g;
    let wgs = m.div_ceil(bm as usize) * cols.div_ceil(bn as usize) * z * slices;
    let k_slice = (k.div_ceil(bk as usize).div_ceil(slices) * bk as usize) as f64;
    let t_wg = fam.fixed() + 2.0 * (bm * bn) as f64 * k_slice / (SLOT_RATE * eff);
    let (full, rest) = (wgs / SMS, wgs % SMS);
    let mut t = full as f64 * t_wg;
    if rest > 0 {
        t += if rest <= SMS / 2 { t_wg / fam.alone() } else { t_wg };
    }
    if slices > 1 {
        t += REDUCE_FIXED + ((slices + 1) * m * cols * z * 4) as f64 / REDUCE_BW;
    }
    t
}

/// A gather's K ordered tap-major when whole K tiles of depth `bk` share a tap (`cin`: the
/// input channels of a conv that may be).
pub(super) fn tap_major(b: BMode, cin: Option<usize>, bk: u32) -> BMode {
    match cin {
        Some(c) if b == BMode::Gather && c.is_multiple_of(bk as usize) => BMode::Taps,
        _ => b,
    }
}

/// Up to `s` K slices of whole K tiles, none empty.
pub(super) fn whole_slices(ktiles: usize, s: usize) -> usize {
    ktiles.div_ceil(ktiles.div_ceil(s.max(1)))
}

/// Whether the partial sums of `s` slices fit the split-K scratch binding.
fn split_fits(lx: &Lx, g: &Gemm, s: usize) -> bool {
    (s * g.m * g.cols * g.z * 4) as u64 <= lx.opts.max_binding
}

/// The K slices worth using for a GEMM with `k` rows on tiles of depth `bk`: each slice keeps at
/// least four K tiles, the scratch buffer stays within the binding limit; `[1]` when split-K
/// is off.
fn slice_options(lx: &Lx, g: &Gemm, bk: u32) -> Vec<usize> {
    let ktiles = g.k.div_ceil(bk as usize);
    let fits = |s: usize| split_fits(lx, g, s);
    if let Some(f) = lx.opts.force_split {
        let s = whole_slices(ktiles, f as usize);
        return vec![if fits(s) { s } else { 1 }];
    }
    if !lx.opts.split_k {
        return vec![1];
    }
    [1, 2, 3, 4, 6, 8].into_iter().filter(|&s| s == 1 || (ktiles >= 4 * s && fits(s))).collect()
}

/// The cheapest register-blocked tile and K split by [`tile_time`] within the workgroup-memory
/// limit.
fn pick_tile(lx: &Lx, g: &Gemm) -> (ConvCfg, usize) {
    let Gemm { b, scatter, cin, .. } = *g;
    let mut best: Option<(f64, ConvCfg, usize)> = None;
    for &(bm, bn, bk, tm, tn, eff) in &TILES {
        let c = ConvCfg { bm, bn, bk, tm, tn, b: tap_major(b, cin, bk), scatter, split: false };
        if c.shared_bytes() > lx.opts.max_shared || lx.opts.force_tile.is_some_and(|t| t != (bm, bn)) {
            continue;
        }
        for s in slice_options(lx, g, bk) {
            let cost = tile_time(Family::Fma, g, (bm, bn, bk), eff, s);
            if best.is_none_or(|(bc, _, _)| cost < bc) {
                best = Some((cost, ConvCfg { split: s > 1, ..c }, s));
            }
        }
    }
    best.map(|b| (b.1, b.2)).unwrap_or((ConvCfg { bm: 32, bn: 64, bk: 16, tm: 4, tn: 4, b, scatter, split: false }, 1))
}

/// A tile for the fast conv kernel: register-blocked, or on cooperative matrices.
#[derive(Clone, Copy, Debug)]
pub(super) enum FastTile {
    Fma(ConvCfg),
    Coop(CoopCfg),
    Halo(HaloCfg),
    Thin(ThinCfg),
}

impl FastTile {
    pub(super) fn bm(&self) -> u32 {
        match self {
            FastTile::Fma(c) => c.bm,
            FastTile::Coop(c) => c.bm,
            FastTile::Halo(c) => c.bm,
            FastTile::Thin(c) => c.co,
        }
    }
    pub(super) fn bn(&self) -> u32 {
        match self {
            FastTile::Fma(c) => c.bn,
            FastTile::Coop(c) => c.bn,
            FastTile::Halo(c) => c.bn,
            FastTile::Thin(c) => c.bn(),
        }
    }
    pub(super) fn b(&self) -> BMode {
        match self {
            FastTile::Fma(c) => c.b,
            FastTile::Coop(c) => c.b,
            // K is ordered tap-major, with no tap table
            FastTile::Halo(_) => BMode::Taps,
            // read per pixel straight from the input, with no table
            FastTile::Thin(_) => BMode::Direct,
        }
    }
    pub(super) fn bk(&self) -> u32 {
        match self {
            FastTile::Fma(c) => c.bk,
            FastTile::Coop(_) => COOP_BK,
            FastTile::Halo(c) => c.cb,
            FastTile::Thin(_) => 1,
        }
    }
    /// A transposed conv's one GEMM, scattered to the output by the epilogue (or, split, by the
    /// reduction).
    pub(super) fn scatter(&self) -> bool {
        match self {
            FastTile::Fma(c) => c.scatter,
            FastTile::Coop(c) => c.scatter,
            FastTile::Thin(c) => c.scatter,
            FastTile::Halo(_) => false,
        }
    }
    pub(super) fn shader(&self) -> Shader {
        match self {
            FastTile::Fma(c) => Shader::FastConv(*c),
            FastTile::Coop(c) => Shader::CoopConv(*c),
            FastTile::Halo(c) => Shader::HaloConv(*c),
            FastTile::Thin(c) => Shader::ThinConv(*c),
        }
    }
}

/// Tensor-core tile `c` with the `Rows` loader (B staged as K rows of pixels), where that
/// variant is valid and fits the workgroup memory.
pub(super) fn rows_cfg(lx: &Lx, c: &CoopCfg) -> Option<CoopCfg> {
    let r = CoopCfg { b: BMode::Rows, ..*c };
    (r.valid() && r.shared_bytes() <= lx.opts.max_shared).then_some(r)
}

/// Whether tensor-core tile `c` fits the workgroup memory with the B loader it will get: the
/// `Rows` loader (smaller B: no column padding per K value) where the GEMM allows it and that
/// variant is valid, else `c`'s own.
pub(super) fn coop_fits(lx: &Lx, g: &Gemm, c: &CoopCfg) -> bool {
    c.shared_bytes() <= lx.opts.max_shared || (g.rows && rows_cfg(lx, c).is_some())
}

pub(super) fn use_coop(lx: &Lx) -> bool {
    lx.opts.precision == Precision::F16 && lx.opts.coop != CoopMode::Off
}

/// The kernel a measured choice names, if it is valid here (else the cost model decides).
fn tuned_tile(lx: &Lx, t: TileChoice, g: &Gemm) -> Option<(FastTile, usize)> {
    let Gemm { b, scatter, cin, .. } = *g;
    if t.thin {
        return None; // (taken before the GEMM tiles, in fast_conv)
    }
    let split = t.slices > 1;
    let ok_slices = |bk: u32| {
        t.slices == 1 || (whole_slices(g.k.div_ceil(bk as usize), t.slices) == t.slices && split_fits(lx, g, t.slices))
    };
    if t.coop {
        if !use_coop(lx) || !ok_slices(COOP_BK) {
            return None;
        }
        let cb = tap_major(b, cin, COOP_BK);
        let (bm, bn) = (t.bm, t.bn);
        let &(_, _, wm, wn, _) = COOP_TILES.iter().find(|c| (c.0, c.1) == (bm, bn))?;
        let emulate = lx.opts.coop == CoopMode::Emulate;
        let c = CoopCfg { bm, bn, wm, wn, b: cb, scatter, emulate, split, epi: 1, quads: false };
        (c.valid() && coop_fits(lx, g, &c)).then_some((FastTile::Coop(c), t.slices))
    } else {
        let &(bm, bn, bk, tm, tn, _) = TILES.iter().find(|c| (c.0, c.1) == (t.bm, t.bn))?;
        if !ok_slices(bk) {
            return None;
        }
        let c = ConvCfg { bm, bn, bk, tm, tn, b: tap_major(b, cin, bk), scatter, split };
        (c.valid() && c.shared_bytes() <= lx.opts.max_shared).then_some((FastTile::Fma(c), t.slices))
    }
}

/// The fast kernel for a GEMM, and its number of K slices. `tensor_cores`: with cooperative
/// matrices, take the cheapest tensor-core tile even where the cost model would put the GEMM on
/// an FMA tile (a halo-tile conv, whose cost the model has not been fitted to, see `fast_conv`).
pub(super) fn pick(lx: &Lx, g: &Gemm, tensor_cores: bool) -> (FastTile, usize) {
    if let Some(t) = lx.tuned.get(lx.node).copied().flatten()
        && let Some(choice) = tuned_tile(lx, t, g)
    {
        return choice;
    }
    let Gemm { b, scatter, cin, .. } = *g;
    if !use_coop(lx) {
        let (c, s) = pick_tile(lx, g);
        return (FastTile::Fma(c), s);
    }
    let emulate = lx.opts.coop == CoopMode::Emulate;
    let cb = tap_major(b, cin, COOP_BK);
    let mut best: Option<(f64, CoopCfg, usize)> = None;
    for &(bm, bn, wm, wn, eff) in &COOP_TILES {
        let c = CoopCfg { bm, bn, wm, wn, b: cb, scatter, emulate, split: false, epi: 1, quads: false };
        if !coop_fits(lx, g, &c) || lx.opts.force_tile.is_some_and(|t| t != (bm, bn)) {
            continue;
        }
        // a tile not yet timed on hardware runs only where it is forced or measured
        let eff = if eff > 0.0 {
            eff
        } else if lx.opts.force_tile.is_some() {
            1.0
        } else {
            continue;
        };
        for s in slice_options(lx, g, COOP_BK) {
            let cost = tile_time(Family::Coop, g, (bm, bn, COOP_BK), eff, s);
            if best.is_none_or(|(bc, _, _)| cost < bc) {
                best = Some((cost, CoopCfg { split: s > 1, ..c }, s));
            }
        }
    }
    let (fc, fs) = pick_tile(lx, g);
    match best {
        // on real tensor cores the cost model weighs both kinds, on the one fitted scale: the
        // thin layers of few pixels or few channels can be faster on an FMA tile; ties go to
        // the tensor cores. The emulation (tests) and forced tiles always take the tensor-core
        // kernel.
        Some((cc, c, s)) => {
            let ft = lx.opts.coop == CoopMode::Native && lx.opts.force_tile.is_none() && !tensor_cores;
            let fma_cost = tile_time(Family::Fma, g, (fc.bm, fc.bn, fc.bk), tile_eff(&fc), fs);
            if ft && fma_cost < cc { (FastTile::Fma(fc), fs) } else { (FastTile::Coop(c), s) }
        }
        None => (FastTile::Fma(fc), fs),
    }
}

/// The fitted efficiency of a register-blocked tile.
fn tile_eff(c: &ConvCfg) -> f64 {
    TILES.iter().find(|t| (t.0, t.1) == (c.bm, c.bn)).map(|t| t.5).unwrap_or(0.2)
}

/// Convs with at most this many output channels run on the thin direct kernel (a U-Net's head:
/// 1 to 4 classes or colours; on a GEMM tile it fills 3 of 16 or more rows).
pub const THIN_MAX_M: usize = 4;
/// Convs with at most this many K rows (input channels x taps) and at most
/// [`THIN_SHORT_K_MAX_M`] output channels run on the thin direct kernel (the first conv of an
/// RGB network: 27; a GEMM tile's staging costs more than its arithmetic there; with more
/// output channels each input value would be read once per 16 of them, a GEMM tile reads it
/// once per 64 or 128).
pub const THIN_MAX_K: usize = 32;
pub const THIN_SHORT_K_MAX_M: usize = 64;

/// Whether a GEMM of `m` rows and `k` deep runs on the thin direct kernel: few rows or a short
/// K, where no measured choice or forced tile says otherwise.
pub(super) fn wants_thin(lx: &Lx, m: usize, k: usize) -> bool {
    match lx.tuned.get(lx.node).copied().flatten() {
        Some(t) => t.thin,
        None => {
            lx.opts.thin
                && lx.opts.force_tile.is_none()
                && lx.opts.force_split.is_none()
                && (lx.opts.thin_all || m <= THIN_MAX_M || (k <= THIN_MAX_K && m <= THIN_SHORT_K_MAX_M))
        }
    }
}

/// A tensor-core tile with the widest epilogue the workgroup memory allows (the most fragments
/// per round that divide the subgroup's fragments and fit `max_shared`: fewer barriers, more
/// stores in flight); other tiles, and every tile with the option off, as they are.
pub(super) fn widen_epilogue(o: &LowerOpts, t: FastTile) -> FastTile {
    if !o.wide_epilogue {
        return t;
    }
    let widest = |frags: u32, fits: &dyn Fn(u32) -> bool| {
        (1..=frags).rev().find(|&e| frags.is_multiple_of(e) && fits(e)).unwrap_or(1)
    };
    match t {
        FastTile::Coop(c) => {
            let epi = widest(c.frags(), &|epi| CoopCfg { epi, ..c }.shared_bytes() <= o.max_shared);
            FastTile::Coop(CoopCfg { epi, ..c })
        }
        FastTile::Halo(h) => {
            let epi = widest(h.frags(), &|epi| HaloCfg { epi, ..h }.shared_bytes() <= o.max_shared);
            FastTile::Halo(HaloCfg { epi, ..h })
        }
        FastTile::Fma(_) | FastTile::Thin(_) => t,
    }
}

/// The halo-tile variant of a tensor-core tile, for a stride-1 conv of `cin` input channels
/// (a multiple of 16), a `kh` x `kw` kernel and dilation `dil`, and its K slices (split-K
/// slices whole channel blocks): None where it does not apply or fit. With
/// `LowerOpts::halo_resident`, the first that fits of A resident for all taps with channel
/// blocks of 32, then of 16 (a smaller A); else A streamed per tap, blocks of 32, then 16.
pub(super) fn halo_tile(
    lx: &Lx,
    c: &CoopCfg,
    cin: usize,
    kh: usize,
    kw: usize,
    dil: usize,
    slices: usize,
) -> Option<(HaloCfg, usize)> {
    let &(bm, bn, wm, wn) = HALO_TILES.iter().find(|t| (t.0, t.1) == (c.bm, c.bn))?;
    let resident: &[bool] = if lx.opts.halo_resident { &[true, false] } else { &[false] };
    resident.iter().flat_map(|&r| [(r, 32u32), (r, 16)]).find_map(|(resident, cb)| {
        if !cin.is_multiple_of(cb as usize) {
            return None;
        }
        let s = whole_slices(cin / cb as usize, slices);
        let h = HaloCfg {
            bm,
            bn,
            wm,
            wn,
            cb,
            kh: kh as u32,
            kw: kw as u32,
            dil: dil as u32,
            emulate: c.emulate,
            split: s > 1,
            epi: 1,
            resident,
        };
        (h.valid() && h.shared_bytes() <= lx.opts.max_shared).then_some((h, s))
    })
}
