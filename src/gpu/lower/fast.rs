//! Lowering of the convs that run on the generated fast kernels: the weights laid out for the
//! chosen kernel, the parameters, the extents every index stays within (the kernels are built
//! unchecked), and the split-K reduction.

use super::pick::{FastTile, Gemm, halo_tile, pick, rows_cfg, wants_thin, widen_epilogue};
use super::{Dispatch, Epilogue, Lx, act_overrides, err, input, output};
use crate::error::Result;
use crate::gpu::convgen::{BMode, COOP_BK, CoopCfg};
use crate::gpu::halo::HALO_TC;
use crate::gpu::plan::{BufRef, View};
use crate::gpu::thin::ThinCfg;
use crate::gpu::{Precision, Shader};
use crate::graph::Node;

/// Weights as the fast kernels read them: [K][M padded to 4], encoded for the precision.
fn weight_matrix(prec: Precision, k: usize, m: usize, at: impl Fn(usize, usize) -> f32) -> Vec<u8> {
    let m4 = m.div_ceil(4) * 4;
    let mut v = vec![0f32; k * m4];
    for kk in 0..k {
        for mm in 0..m {
            v[kk * m4 + mm] = at(kk, mm);
        }
    }
    prec.encode(&v)
}

/// Weights for the cooperative-matrix kernels: f16 [M][K padded to 4] (row-major A).
fn weight_matrix_mk(k: usize, m: usize, at: impl Fn(usize, usize) -> f32) -> Vec<u8> {
    let k4 = k.div_ceil(4) * 4;
    let mut v = vec![0f32; m * k4];
    for mm in 0..m {
        for kk in 0..k {
            v[mm * k4 + kk] = at(kk, mm);
        }
    }
    Precision::F16.encode(&v)
}

/// What the two fast-conv lowerings hand to [`fast_dispatch`].
struct FastConv<'a> {
    kind: &'static str,
    cfg: FastTile,
    /// K slices (split-K when > 1; `cfg` is then a split kernel).
    slices: usize,
    x: View,
    y: View,
    /// Channels of the output (the GEMM's rows, or a transposed conv's rows over its taps).
    y_channels: usize,
    bias: Option<View>,
    /// The k -> (offset, dy, dx) table of a gather, or Unbound.
    ktab: BufRef,
    /// GEMM sizes: K (reduction), M (output channels), columns (pixels of one image and tap).
    k: usize,
    m: usize,
    cols: usize,
    /// Workgroup grid depth: images x taps.
    z: usize,
    epi: Epilogue,
    flops: u64,
    /// Elements of the input one image spans.
    x_extent: u64,
    /// Weight (k, m).
    weight: &'a dyn Fn(usize, usize) -> f32,
    /// The geometry-specific parameters (8..=22 of convgen's table), already filled in.
    params: Vec<u32>,
}

/// Lay out the weights for the chosen kernel, fill in the shared parameters, prove the extents
/// and push the dispatch of a fast conv.
fn fast_dispatch(lx: &mut Lx, k: usize, n: &Node, f: FastConv) -> Result<()> {
    let (m, kk) = (f.m, f.k);
    let cfg = widen_epilogue(&lx.opts, f.cfg);
    if f.z as u64 > lx.max_groups as u64 {
        return Err(err(n, format!("batch {} exceeds the device's workgroup grid limit", f.z)));
    }
    // the weight layout follows the kernel actually chosen
    let coop = matches!(cfg, FastTile::Coop(_) | FastTile::Halo(_));
    let (wbytes, w_row4, w_vec4) = if coop {
        (weight_matrix_mk(kk, m, f.weight), kk.div_ceil(4), m * kk.div_ceil(4))
    } else {
        (weight_matrix(lx.opts.precision, kk, m, f.weight), m.div_ceil(4), kk * m.div_ceil(4))
    };
    let wbuf = lx.aux(wbytes);
    // a split transposed conv's reduction scatters: output plane, output width, input width,
    // strides (= the kernel)
    let scatter_geom = [f.params[17], f.params[20], f.params[8], f.params[18], f.params[19]];
    let mut params = f.params;
    params[0] = kk as u32;
    params[1] = m as u32;
    params[2] = f.cols as u32;
    params[3] = w_row4 as u32;
    params[4] = f.x.offset as u32;
    params[5] = f.x.batch_stride as u32;
    params[6] = f.y.offset as u32;
    params[7] = f.y.batch_stride as u32;
    // pixel tiles: runs of BN pixels, or a halo kernel's tiles of BN / 16 rows x 16 columns
    // (params 10 and 11: the output's width and height)
    let pix_tiles = match cfg {
        FastTile::Halo(h) => {
            let tx = (params[10] as usize).div_ceil(HALO_TC as usize);
            params[12] = tx as u32;
            tx * (params[11] as usize).div_ceil(h.rows() as usize)
        }
        _ => f.cols.div_ceil(cfg.bn() as usize),
    };
    params[15] = pix_tiles as u32;
    params[16] = m.div_ceil(cfg.bm() as usize) as u32;
    params[23] = w_vec4 as u32;
    let tiles = (m.div_ceil(cfg.bm() as usize) * pix_tiles) as u64;
    let [gx, gy, _] = lx.grid_groups(tiles);
    // the input may be another slice of the concat buffer this conv writes into
    let x_in_y = f.x.buf == f.y.buf;
    let split = f.slices > 1;
    let len = params.len().max(29);
    params.resize(len, 0);
    params[24..26].copy_from_slice(&f.epi.res_params());
    if split {
        // K slices in K tiles, or in a halo kernel's channel blocks (param 18: channels)
        let units = match cfg {
            FastTile::Halo(h) => params[18] as usize / h.cb as usize,
            _ => kk.div_ceil(cfg.bk() as usize),
        };
        params[26] = units.div_ceil(f.slices) as u32;
        params[27] = f.slices as u32;
    }
    let (mut ov, rbuf) = f.epi.bind(&f.y);
    if split {
        // the GEMM writes raw partial sums; the reduction runs the epilogue
        ov = act_overrides(None);
        ov.push(("HAS_RES", 0.0));
    }
    ov.push(("HAS_BIAS", (f.bias.is_some() && !split) as u32 as f64));
    ov.push(("X_IN_Y", x_in_y as u32 as f64));
    let ktab = if cfg.b() == BMode::Gather { f.ktab } else { BufRef::Unbound };
    let part = (split as u64) * (f.slices * f.z * m * f.cols) as u64 * 4;
    let mut bindings = vec![
        if x_in_y { BufRef::Dummy } else { f.x.buf },
        wbuf,
        // a split kernel has no epilogue: no bias or residual bindings
        if split { BufRef::Unbound } else { f.bias.map(|b| b.buf).unwrap_or(BufRef::Dummy) },
        ktab,
        // a packed (or runs-of-rows) split kernel neither reads its input from Y nor writes Y
        if split && matches!(cfg.b(), BMode::Packed | BMode::Rows) { BufRef::Unbound } else { f.y.buf },
        if split { BufRef::Unbound } else { rbuf },
    ];
    if split {
        bindings.push(BufRef::Scratch);
        lx.out.scratch_bytes = lx.out.scratch_bytes.max(part);
    }
    // every index the kernel forms stays inside these extents (see convgen): prove it on the host
    let eb = lx.opts.precision.bytes();
    let batches = f.z as u64;
    let x_need = f.x.offset + (batches - 1) * f.x.batch_stride + f.x_extent;
    let y_need = f.y.offset + (batches - 1) * f.y.batch_stride + f.y_channels as u64 * params[17] as u64;
    let w_eb = if coop { 2 } else { eb };
    if cfg.b() == BMode::Rows {
        // the last vec4 the runs of rows may read (the lowering checked the input's 4-alignment)
        params[28] = (x_need / 4).saturating_sub(1) as u32;
    }
    // a packed operand is counted in vec4
    let x_eb = if cfg.b() == BMode::Packed { 4 * eb } else { eb };
    let mut min_bytes = vec![
        x_need * x_eb,
        w_vec4 as u64 * 4 * w_eb,
        if f.bias.is_some() && !split { f.y_channels as u64 * 4 } else { 0 },
        kk as u64 * 16,
        y_need * eb,
        0,
        part,
    ];
    min_bytes.truncate(bindings.len());
    if x_in_y {
        min_bytes[4] = min_bytes[4].max(min_bytes[0]);
        min_bytes[0] = 0;
    }
    // the residual is read at the output's in-image offsets (by the reduction when split), from
    // its own binding or from the output's buffer
    let r_need = f
        .epi
        .residual
        .map(|r| (r.offset + (batches - 1) * r.batch_stride + f.y_channels as u64 * params[17] as u64) * eb);
    if let Some(r_need) = r_need.filter(|_| !split) {
        if rbuf == BufRef::Dummy {
            min_bytes[4] = min_bytes[4].max(r_need);
        } else {
            min_bytes[5] = r_need;
        }
    }
    let z = f.z * f.slices;
    if z as u64 > lx.max_groups as u64 {
        return Err(err(n, format!("batch x K slices = {z} exceeds the device's workgroup grid limit")));
    }
    lx.push(Dispatch {
        shader: cfg.shader(),
        entry: "main",
        overrides: ov,
        params,
        bindings,
        groups: [gx, gy, z as u32],
        node: k,
        kind: f.kind.to_string(),
        concat_copy: false,
        flops: f.flops,
        min_bytes,
    });
    if split {
        // the reduction: sum of the slices, bias, activation, residual, activation after it
        let total = (batches as usize * m * f.cols) as u64;
        let mut params = vec![
            total as u32,
            (m * f.cols) as u32,
            f.cols as u32,
            f.slices as u32,
            f.y.offset as u32,
            f.y.batch_stride as u32,
            f.epi.res_params()[0],
            f.epi.res_params()[1],
        ];
        let (mut ov, rbuf) = f.epi.bind(&f.y);
        ov.push(("HAS_BIAS", f.bias.is_some() as u32 as f64));
        if cfg.scatter() {
            params.extend(scatter_geom);
            ov.push(("SCATTER", 1.0));
        }
        // its extents, as the GEMM's (it is built unchecked): every slice's partial sums, a bias
        // per output channel, the residual and the output views
        let mut min_bytes = vec![part, if f.bias.is_some() { f.y_channels as u64 * 4 } else { 0 }, 0, y_need * eb];
        match r_need {
            Some(r) if rbuf == BufRef::Dummy => min_bytes[3] = min_bytes[3].max(r),
            Some(r) => min_bytes[2] = r,
            None => {}
        }
        lx.push(Dispatch {
            shader: Shader::SplitK,
            entry: "main",
            overrides: ov,
            params,
            bindings: vec![BufRef::Scratch, f.bias.map(|b| b.buf).unwrap_or(BufRef::Dummy), rbuf, f.y.buf],
            groups: lx.grid_groups(total.div_ceil(256)),
            node: k,
            kind: f.kind.to_string(),
            concat_copy: false,
            flops: 0,
            min_bytes,
        });
    }
    Ok(())
}

/// The geometry parameters of a conv that reads its input pixel by pixel (convgen's 8 to 14
/// and 17: input width and height, output width, strides, pads, output plane), the others 0.
fn gather_params(g: &crate::ops::conv::ConvGeom) -> Vec<u32> {
    let mut p = vec![0u32; 24];
    p[8] = g.x.input as u32;
    p[9] = g.y.input as u32;
    p[10] = g.x.output as u32;
    p[11] = g.y.stride as u32;
    p[12] = g.x.stride as u32;
    p[13] = g.y.pad_begin as i32 as u32;
    p[14] = g.x.pad_begin as i32 as u32;
    p[17] = (g.y.output * g.x.output) as u32;
    p
}

/// Where the `Rows` loader reads a GEMM's columns (see convgen's `ROWS_PARAMS`): channels per
/// tap, kernel width, dilations (y, x), input (width, height), output row length, pads (top,
/// left).
struct RowsGeom {
    cin: usize,
    kw: usize,
    dil: (usize, usize),
    input: (usize, usize),
    out_row: usize,
    pad: (usize, usize),
}

impl RowsGeom {
    /// A direct GEMM's columns (1x1 conv, transposed conv): `k` channels of `pixels` pixels,
    /// read as one row, with a 1x1 kernel and no pads.
    fn direct(k: usize, pixels: usize) -> RowsGeom {
        RowsGeom { cin: k, kw: 1, dil: (0, 0), input: (pixels, 1), out_row: pixels, pad: (0, 0) }
    }
    fn fill(&self, params: &mut Vec<u32>) {
        if params.len() < crate::gpu::convgen::ROWS_PARAMS {
            params.resize(crate::gpu::convgen::ROWS_PARAMS, 0);
        }
        params[29..38].copy_from_slice(&[
            self.cin as u32,
            self.kw as u32,
            self.dil.0 as u32,
            self.dil.1 as u32,
            self.input.0 as u32,
            self.input.1 as u32,
            self.out_row as u32,
            self.pad.0 as u32,
            self.pad.1 as u32,
        ]);
    }
}

/// Switch a tensor-core tile to the `Rows` loader where that variant is valid and fits (the
/// caller has checked the conv and its views: `Gemm::rows`); whether it did. With row quads
/// on and `cin` (channels per tap) a multiple of the K tile, the loader takes quads of 4
/// pixels where that tile is valid.
fn rows_fit(lx: &Lx, cfg: &mut FastTile, cin: usize) -> bool {
    let FastTile::Coop(c) = *cfg else { return false };
    let Some(r) = rows_cfg(lx, &c) else { return false };
    let q = CoopCfg { quads: true, ..r };
    *cfg = FastTile::Coop(if lx.opts.row_quads && cin.is_multiple_of(COOP_BK as usize) && q.valid() { q } else { r });
    true
}

/// Whether row loads are on and the input view allows them: 4-element aligned (offset and
/// image stride) and not in the output's buffer (the vector binding cannot alias it).
fn rows_view_ok(lx: &Lx, x: &View, y: &View) -> bool {
    lx.opts.row_loads && x.offset.is_multiple_of(4) && x.batch_stride.is_multiple_of(4) && x.buf != y.buf
}

/// Conv with constant weights and one group: the generated register-blocked kernel.
pub(super) fn fast_conv(lx: &mut Lx, k: usize, n: &Node, c: &crate::ops::conv::Conv) -> Result<bool> {
    if !lx.opts.fast_conv || c.group != 1 {
        return Ok(false);
    }
    let (x, w, y) = (input(n, 0)?, input(n, 1)?, output(n)?);
    let Some(wt) = lx.p.graph.consts.get(&w).cloned() else { return Ok(false) };
    let g = c.geom(lx.shape(x), lx.shape(w)).map_err(|m| err(n, m))?;
    let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
    let bias = n.input(2).map(|b| lx.bias(n, b)).transpose()?;
    let (kh, kw) = (g.y.kernel, g.x.kernel);
    let kk = g.c * kh * kw;
    let m = g.m;
    let wd = wt.as_f32().map_err(|e| err(n, e))?;
    let npix = g.y.output * g.x.output;
    let direct = kh == 1
        && kw == 1
        && g.y.stride == 1
        && g.x.stride == 1
        && g.y.pad_begin == 0
        && g.x.pad_begin == 0
        && g.y.output == g.y.input
        && g.x.output == g.x.input;
    let mode = if direct { BMode::Direct } else { BMode::Gather };
    // K can be ordered tap-major when whole K tiles share a tap
    let taps_cin = (!direct && lx.opts.tap_major).then_some(g.c);
    // the operand a measured choice names, or the options'
    let tuned = lx.tuned.get(lx.node).copied().flatten();
    let (want_packed, want_halo) = match tuned {
        Some(t) => (t.im2col, t.halo),
        None => (lx.opts.im2col, lx.opts.halo),
    };
    let khw = kh * kw;
    // a tensor-core gather may read its operand packed by an im2col pass instead
    let kp = kk.next_multiple_of(COOP_BK as usize);
    let packed_bytes = (g.n * npix * kp * 2) as u64;
    let packs = !direct && want_packed && packed_bytes <= lx.opts.max_binding;
    // a stride-1 tensor-core gather whose output rows are whole runs of 16 pixels and whose
    // input is 4-element aligned (rows, planes, view) loads those runs as vectors (K tap-major,
    // whatever the channel count); so does a 1x1 conv's direct GEMM, its pixels one long row
    let rows_shape = if direct {
        npix.is_multiple_of(4)
    } else {
        lx.opts.tap_major
            && g.y.stride == 1
            && g.x.stride == 1
            && g.x.output.is_multiple_of(16)
            && g.x.input.is_multiple_of(4)
    };
    let rows = rows_shape && !packs && rows_view_ok(lx, &xv, &yv);
    let gemm = Gemm { m, cols: npix, z: g.n, k: kk, b: mode, scatter: false, cin: taps_cin, rows };
    // few output channels or a short K: the thin direct kernel (K in the ONNX order), and none
    // of the tensor-core variants below
    let thin = wants_thin(lx, m, kk);
    let halo_conv = g.y.stride == 1 && g.x.stride == 1 && g.y.dilation == g.x.dilation;
    // with halo tiles asked for, a conv with taps that can have them gets them, whatever the cost
    // model (fitted without halo tiles) says of the tensor cores for it: base 16's 16-channel
    // 512x512 convs would otherwise stay on FMA tiles (autotuning measures both)
    let halo_first = want_halo && halo_conv && kh * kw > 1 && g.c.is_multiple_of(16);
    let (mut cfg, mut slices) =
        if thin { (FastTile::Thin(ThinCfg::for_channels(m, false)), 1) } else { pick(lx, &gemm, halo_first) };
    if let FastTile::Coop(c) = cfg
        && matches!(c.b, BMode::Gather | BMode::Taps)
        && packs
    {
        cfg = FastTile::Coop(CoopCfg { b: BMode::Packed, ..c });
    }
    if let FastTile::Coop(c) = cfg
        && want_halo
        && c.b != BMode::Packed
        && halo_conv
        && let Some((h, s)) = halo_tile(lx, &c, g.c, kh, kw, g.y.dilation, slices)
    {
        cfg = FastTile::Halo(h);
        slices = s;
    }
    let rows_geom = match cfg {
        FastTile::Coop(c) if c.b == BMode::Direct && rows_shape => Some(RowsGeom::direct(g.c, npix)),
        FastTile::Coop(c) if matches!(c.b, BMode::Taps | BMode::Gather) && rows_shape => Some(RowsGeom {
            cin: g.c,
            kw,
            dil: (g.y.dilation, g.x.dilation),
            input: (g.x.input, g.y.input),
            out_row: g.x.output,
            pad: (g.y.pad_begin, g.x.pad_begin),
        }),
        _ => None,
    };
    let rows_geom = rows_geom.filter(|_| rows && rows_fit(lx, &mut cfg, g.c));
    if cfg.b() == BMode::Packed {
        let blocks = npix.div_ceil(64);
        let params = vec![
            g.c as u32,
            g.y.input as u32,
            g.x.input as u32,
            g.x.output as u32,
            npix as u32,
            g.y.stride as u32,
            g.x.stride as u32,
            g.y.pad_begin as i32 as u32,
            g.x.pad_begin as i32 as u32,
            kh as u32,
            kw as u32,
            g.y.dilation as u32,
            g.x.dilation as u32,
            xv.offset as u32,
            xv.batch_stride as u32,
            kk as u32,
            (kp / 4) as u32,
            blocks as u32,
            (kp / 32) as u32,
        ];
        if g.n as u64 > lx.max_groups as u64 {
            return Err(err(n, format!("batch {} exceeds the device's workgroup grid limit", g.n)));
        }
        let [gx, gy, _] = lx.grid_groups((blocks * kp / 32) as u64);
        lx.out.im2col_bytes = lx.out.im2col_bytes.max(packed_bytes);
        lx.push(Dispatch {
            shader: Shader::Im2col,
            entry: "main",
            overrides: vec![],
            params,
            bindings: vec![xv.buf, BufRef::Im2col],
            groups: [gx, gy, g.n as u32],
            node: k,
            kind: "Conv".into(),
            concat_copy: false,
            flops: 0,
            min_bytes: vec![],
        });
        let wd = &wd;
        let f = FastConv {
            kind: "Conv",
            cfg,
            slices,
            // in vec4 of the packed rows
            x: View { buf: BufRef::Im2col, offset: 0, batch_stride: (npix * kp / 4) as u64 },
            y: yv,
            bias,
            ktab: BufRef::Unbound,
            y_channels: m,
            k: kp,
            m,
            cols: npix,
            z: g.n,
            epi: Epilogue::of(lx, n, &n.op)?,
            flops: 2 * (g.n * m * npix * kk) as u64,
            x_extent: (npix * kp / 4) as u64,
            // rows past K are zero in the packed operand and in the weights
            weight: &move |kq: usize, mq: usize| if kq < kk { wd[mq * kk + kq] } else { 0.0 },
            params: {
                let mut p = vec![0u32; 24];
                p[17] = npix as u32;
                p
            },
        };
        fast_dispatch(lx, k, n, f)?;
        return Ok(true);
    }
    let ktab = if cfg.b() == BMode::Gather {
        let (ih, iw) = (g.y.input, g.x.input);
        let mut t: Vec<i32> = Vec::with_capacity(kk * 4);
        for q in 0..kk {
            let (ic, r) = (q / khw, q % khw);
            let (dy, dx) = ((r / kw * g.y.dilation) as i32, (r % kw * g.x.dilation) as i32);
            t.extend_from_slice(&[(ic * ih * iw) as i32 + dy * iw as i32 + dx, dy, dx, 0]);
        }
        lx.aux(bytemuck::cast_slice(&t).to_vec())
    } else {
        BufRef::Unbound
    };
    let mut params = gather_params(&g);
    if let FastTile::Halo(_) = cfg {
        // stride 1: param 11 is the output height (12, the tiles along x, is set at dispatch)
        params[11] = g.y.output as u32;
    }
    let tap_major = matches!(cfg.b(), BMode::Taps | BMode::Rows);
    if tap_major || thin {
        params[18] = g.c as u32;
        params[19] = kw as u32;
        params[20] = g.y.dilation as u32;
        params[21] = g.x.dilation as u32;
    }
    if thin {
        params[22] = kh as u32;
    }
    if let Some(r) = &rows_geom {
        r.fill(&mut params);
    }
    // W [M, C, KH, KW]: row k = (c, tap), or (tap, c) when tap-major
    let (cin, wd) = (g.c, &wd);
    let weight = move |kq: usize, mq: usize| {
        let k = if tap_major { (kq % cin) * khw + kq / cin } else { kq };
        wd[mq * kk + k]
    };
    let f = FastConv {
        kind: "Conv",
        cfg,
        slices,
        x: xv,
        y: yv,
        bias,
        ktab,
        y_channels: m,
        k: kk,
        m,
        cols: npix,
        z: g.n,
        epi: Epilogue::of(lx, n, &n.op)?,
        flops: 2 * (g.n * m * npix * kk) as u64,
        x_extent: (g.c * g.y.input * g.x.input) as u64,
        weight: &weight,
        params,
    };
    fast_dispatch(lx, k, n, f)?;
    Ok(true)
}

/// ConvTranspose whose stride equals its kernel (no padding, dilation or output padding): every
/// output pixel gets exactly one tap, so each tap is a plain GEMM scattered to its positions.
pub(super) fn fast_conv_transpose(
    lx: &mut Lx,
    k: usize,
    n: &Node,
    c: &crate::ops::conv_transpose::ConvTranspose,
) -> Result<bool> {
    if !lx.opts.fast_conv || c.group != 1 {
        return Ok(false);
    }
    let (x, w, y) = (input(n, 0)?, input(n, 1)?, output(n)?);
    let Some(wt) = lx.p.graph.consts.get(&w).cloned() else { return Ok(false) };
    let g = c.geom(lx.shape(x), lx.shape(w)).map_err(|m| err(n, m))?;
    let axes = [g.y, g.x];
    if !axes
        .iter()
        .all(|a| a.stride == a.kernel && a.dilation == 1 && a.pad_begin == 0 && a.output == a.input * a.stride)
    {
        return Ok(false);
    }
    let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
    let bias = n.input(2).map(|b| lx.bias(n, b)).transpose()?;
    let (kh, kw) = (g.y.kernel, g.x.kernel);
    let taps = kh * kw;
    let (cin, m) = (g.c, g.m);
    let wd = wt.as_f32().map_err(|e| err(n, e))?;
    let npix_in = g.y.input * g.x.input;
    // one GEMM for all taps: row (output channel, tap), so that each input pixel is loaded once
    let rows = npix_in.is_multiple_of(4) && rows_view_ok(lx, &xv, &yv);
    let gemm = Gemm { m: taps * m, cols: npix_in, z: g.n, k: cin, b: BMode::Direct, scatter: true, cin: None, rows };
    let (mut cfg, slices) = if wants_thin(lx, taps * m, cin) {
        (FastTile::Thin(ThinCfg::for_channels(taps * m, true)), 1)
    } else {
        pick(lx, &gemm, false)
    };
    // on the tensor cores, the input pixels read as runs of rows where they are 4-aligned
    let rows = rows && rows_fit(lx, &mut cfg, cin);
    let mut params = vec![0u32; 24];
    params[8] = g.x.input as u32;
    params[9] = g.y.input as u32;
    if let FastTile::Thin(_) = cfg {
        // the thin kernel reads the columns as a 1x1 conv's output pixels: rows of IW, stride 1
        params[10] = g.x.input as u32;
        params[11] = 1;
        params[12] = 1;
    }
    params[17] = (g.y.output * g.x.output) as u32;
    params[18] = g.y.stride as u32;
    params[19] = g.x.stride as u32;
    params[20] = g.x.output as u32;
    params[21] = kw as u32;
    params[22] = taps as u32;
    if rows {
        RowsGeom::direct(cin, npix_in).fill(&mut params);
    }
    let f = FastConv {
        kind: "ConvTranspose",
        cfg,
        slices,
        x: xv,
        y: yv,
        y_channels: m,
        bias,
        ktab: BufRef::Unbound,
        k: cin,
        m: taps * m,
        cols: npix_in,
        z: g.n,
        epi: Epilogue::of(lx, n, &n.op)?,
        flops: 2 * (g.n * cin * npix_in * m * taps) as u64,
        x_extent: (cin * npix_in) as u64,
        // W [C, M, KH, KW]: row k = input channel, column (output channel, tap)
        weight: &|kq, mq| wd[kq * m * taps + mq],
        params,
    };
    fast_dispatch(lx, k, n, f)?;
    Ok(true)
}
