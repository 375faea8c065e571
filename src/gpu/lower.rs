//! Lowering: each node of a prepared graph becomes kernel dispatches with their parameters,
//! buffers and grid. Shapes are fixed, so everything here is computed once at load.

use super::convgen::{BMode, COOP_BK, COOP_TILES, ConvCfg, CoopCfg, TILES};
use super::halo::{HALO_TC, HALO_TILES, HaloCfg};
use super::plan::{BufRef, MemPlan, View, is_alias};
use super::thin::ThinCfg;
use super::{Precision, Shader};
use crate::error::{Error, Result};
use crate::graph::prepare::Prepared;
use crate::graph::{Node, ValueId};
use crate::ops::elementwise::{BinaryKind, UnaryKind, VariadicKind};
use crate::ops::reduce::ReduceKind;
use crate::ops::{InInfo, Op, norm_axis};
use crate::tensor::{DType, numel, strides};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Dispatch {
    pub shader: Shader,
    pub entry: &'static str,
    pub overrides: Vec<(&'static str, f64)>,
    /// Up to 64 words of parameters (`P` in common.wgsl).
    pub params: Vec<u32>,
    /// Storage buffers bound at 1, 2, ... (the last one is written).
    pub bindings: Vec<BufRef>,
    pub groups: [u32; 3],
    /// Index of the node in the prepared graph.
    pub node: usize,
    /// Op kind for statistics ("Conv", "Concat copy", ...).
    pub kind: String,
    pub concat_copy: bool,
    pub flops: u64,
    /// For kernels built without runtime bounds checks: the bytes each binding must hold for
    /// every index the kernel can compute from its parameters (checked on the host; empty for
    /// checked kernels).
    pub min_bytes: Vec<u64>,
}

#[derive(Default, Debug)]
pub struct Lowered {
    pub dispatches: Vec<Dispatch>,
    /// Bytes of the f32 scratch buffer the split-K convs share (`BufRef::Scratch`; 0: none).
    pub scratch_bytes: u64,
    /// Bytes of the im2col buffer the packed tensor-core convs share (`BufRef::Im2col`).
    pub im2col_bytes: u64,
    /// Contents of auxiliary buffers (tables), by `BufRef::Aux` index.
    pub aux: Vec<Vec<u8>>,
    /// Constants the dispatches read.
    pub consts: BTreeSet<ValueId>,
}

/// Activation id and its two parameters, as `act()` in common.wgsl numbers them.
pub fn act_code(k: Option<UnaryKind>) -> (u32, f32, f32) {
    use UnaryKind::*;
    let big = f32::MAX;
    match k {
        None => (0, 0.0, 0.0),
        Some(k) => match k {
            Relu => (1, 0.0, 0.0),
            LeakyRelu { alpha } => (2, alpha, 0.0),
            Sigmoid => (3, 0.0, 0.0),
            HardSigmoid { alpha, beta } => (4, alpha, beta),
            HardSwish => (5, 0.0, 0.0),
            Tanh => (6, 0.0, 0.0),
            Clip { min, max } => (7, min.max(-big), max.min(big)),
            Elu { alpha } => (8, alpha, 0.0),
            Selu { alpha, gamma } => (9, alpha, gamma),
            Celu { alpha } => (10, alpha, 0.0),
            Softplus => (11, 0.0, 0.0),
            Softsign => (12, 0.0, 0.0),
            Mish => (13, 0.0, 0.0),
            Swish { alpha } => (14, alpha, 0.0),
            Erf => (15, 0.0, 0.0),
            Gelu { tanh: false } => (16, 0.0, 0.0),
            Gelu { tanh: true } => (17, 0.0, 0.0),
            Abs => (18, 0.0, 0.0),
            Neg => (19, 0.0, 0.0),
            Exp => (20, 0.0, 0.0),
            Log => (21, 0.0, 0.0),
            Sqrt => (22, 0.0, 0.0),
            Reciprocal => (23, 0.0, 0.0),
            Floor => (24, 0.0, 0.0),
            Ceil => (25, 0.0, 0.0),
            Round => (26, 0.0, 0.0),
            Sign => (27, 0.0, 0.0),
            Not => (28, 0.0, 0.0),
        },
    }
}

fn act_overrides(k: Option<UnaryKind>) -> Vec<(&'static str, f64)> {
    let (id, a, b) = act_code(k);
    vec![("ACT", id as f64), ("ACT_A", a as f64), ("ACT_B", b as f64)]
}

/// What a conv's epilogue does after the GEMM (the bias has its own binding): the activation,
/// a fused residual Add and the activation after that.
#[derive(Clone, Copy)]
struct Epilogue {
    act: Option<UnaryKind>,
    residual: Option<View>,
    post_act: Option<UnaryKind>,
}

impl Epilogue {
    fn of(lx: &mut Lx, n: &Node, op: &Op) -> Result<Epilogue> {
        Ok(match op {
            Op::Conv(c) if c.residual => {
                let r = lx.view(n, input(n, 3)?)?;
                Epilogue { act: c.act, residual: Some(r), post_act: c.post_act }
            }
            Op::Conv(c) => Epilogue { act: c.act, residual: None, post_act: None },
            Op::ConvTranspose(c) => Epilogue { act: c.act, residual: None, post_act: None },
            _ => Epilogue { act: None, residual: None, post_act: None },
        })
    }

    /// The pipeline overrides and the residual's binding for a conv writing `y` (a residual in
    /// another slice of `y`'s buffer is read through `Y`).
    fn bind(&self, y: &View) -> (Vec<(&'static str, f64)>, BufRef) {
        let mut ov = act_overrides(self.act);
        let (id, a, b) = act_code(self.post_act);
        ov.extend([("POST_ACT", id as f64), ("POST_A", a as f64), ("POST_B", b as f64)]);
        ov.push(("HAS_RES", self.residual.is_some() as u32 as f64));
        let r_in_y = self.residual.is_some_and(|r| r.buf == y.buf);
        ov.push(("R_IN_Y", r_in_y as u32 as f64));
        let rb = match self.residual {
            Some(r) if !r_in_y => r.buf,
            _ => BufRef::Dummy,
        };
        (ov, rb)
    }

    /// Residual (offset, batch stride) for the parameter block.
    fn res_params(&self) -> [u32; 2] {
        self.residual.map(|r| [r.offset as u32, r.batch_stride as u32]).unwrap_or([0, 0])
    }
}

const ROUND_F16: u32 = 29;
const SCALE: u32 = 30;

/// Choices the lowering makes.
#[derive(Clone, Copy, Debug)]
pub struct LowerOpts {
    pub precision: Precision,
    /// Use the generated register-blocked conv kernels where they apply (constant weights, one
    /// group); the generic tiled kernel otherwise.
    pub fast_conv: bool,
    /// The device's workgroup-memory limit in bytes.
    pub max_shared: u32,
    /// With f16 storage, run the fast convs on cooperative matrices (tensor cores), or on their
    /// scalar emulation (to test the tiling where the hardware lacks them).
    pub coop: CoopMode,
    /// Use this (BM, BN) tile for every fast conv instead of choosing (tests of each tile shape).
    pub force_tile: Option<(u32, u32)>,
    /// Split the K loop of convs with too few tiles to fill the GPU over more workgroups
    /// (split-K), when the cost model says it pays.
    pub split_k: bool,
    /// Split every fast conv (that can be) into this many K slices (tests).
    pub force_split: Option<u32>,
    /// Tensor-core gathers read an im2col-packed operand (see `shaders/im2col.wgsl`).
    pub im2col: bool,
    /// Stride-1 tensor-core convs whose input channels are a multiple of 16 read a halo tile
    /// staged once per channel block for all taps (see `gpu/halo.rs`).
    pub halo: bool,
    /// Order K tap-major where whole K tiles can share a tap (off: always the tap table).
    pub tap_major: bool,
    /// Tensor-core epilogues stage as many accumulator fragments per round as the workgroup
    /// memory left by the tile allows (off: one per round, two barriers per fragment).
    pub wide_epilogue: bool,
    /// Convs of at most [`THIN_MAX_M`] output channels, or of at most [`THIN_MAX_K`] K rows and
    /// [`THIN_SHORT_K_MAX_M`] output channels, run on the thin direct kernel (`gpu/thin.rs`) instead of a GEMM tile (unless a measured choice or a
    /// forced tile says otherwise).
    pub thin: bool,
    /// Halo tiles stage A for all taps of a channel block at once where it fits (see
    /// [`HaloCfg::resident`]); off: A streams one tap at a time.
    pub halo_resident: bool,
    /// The largest storage binding in bytes (bounds the split-K scratch buffer).
    pub max_binding: u64,
}

impl LowerOpts {
    /// The GPU the cost model was fitted on, for planning without it: an H100/H200-class
    /// profile (48 KiB of workgroup memory, 2 GiB bindings, 16x16x16 cooperative matrices in
    /// f16), every other option at its default.
    pub fn h200_class(precision: Precision) -> LowerOpts {
        LowerOpts {
            precision,
            fast_conv: true,
            max_shared: 49152,
            coop: if precision == Precision::F16 { CoopMode::Native } else { CoopMode::Off },
            force_tile: None,
            split_k: true,
            force_split: None,
            im2col: false,
            halo: false,
            tap_major: true,
            wide_epilogue: true,
            thin: true,
            halo_resident: true,
            max_binding: 2047 << 20,
        }
    }
}

/// A fast conv's kernel fixed by measurement (autotuning) instead of the cost model: tensor
/// cores or not, the (BM, BN) tile and the K slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileChoice {
    pub coop: bool,
    pub bm: u32,
    pub bn: u32,
    pub slices: usize,
    /// Tensor cores on an im2col-packed operand.
    pub im2col: bool,
    /// Tensor cores on a halo tile.
    pub halo: bool,
    /// The thin direct kernel (`bm`: its output channels per invocation).
    pub thin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoopMode {
    Off,
    Native,
    Emulate,
}

struct Lx<'a> {
    p: &'a Prepared,
    plan: &'a MemPlan,
    max_groups: u32,
    opts: LowerOpts,
    /// Measured kernel choices by node index (empty: the cost model decides).
    tuned: &'a [Option<TileChoice>],
    /// The node being lowered.
    node: usize,
    out: Lowered,
}

fn err(n: &Node, msg: impl Into<String>) -> Error {
    Error::node(&n.name, &n.op_type, msg)
}

/// `shape` left-padded with 1s to 6 dimensions.
fn pad6(shape: &[usize]) -> [u32; 6] {
    let mut s = [1u32; 6];
    let off = 6 - shape.len();
    for (i, &d) in shape.iter().enumerate() {
        s[off + i] = d as u32;
    }
    s
}

impl<'a> Lx<'a> {
    fn view(&mut self, n: &Node, v: ValueId) -> Result<View> {
        if let Some(view) = self.plan.views[v] {
            return Ok(view);
        }
        if let Some(t) = self.p.graph.consts.get(&v) {
            if !t.dtype.is_float() && !matches!(t.dtype, DType::Bool) {
                return Err(err(
                    n,
                    format!("integer tensor '{}' cannot be read by a GPU kernel", self.p.graph.name(v)),
                ));
            }
            self.out.consts.insert(v);
            let bs = if t.shape.is_empty() { 1 } else { t.shape[1..].iter().product::<usize>() as u64 };
            return Ok(View { buf: BufRef::Const(v), offset: 0, batch_stride: bs });
        }
        Err(err(n, format!("internal: value '{}' has no GPU storage", self.p.graph.name(v))))
    }

    fn shape(&self, v: ValueId) -> &'a [usize] {
        self.p.shape(v)
    }

    /// Strides of `v` (dimension 0 stepping by its batch stride) as it broadcasts to `out`,
    /// padded to 6 dimensions.
    fn bstrides(&self, v: ValueId, view: &View, out: &[usize]) -> [u32; 6] {
        let s = self.shape(v);
        let mut st = strides(s);
        if !st.is_empty() {
            st[0] = view.batch_stride as usize;
        }
        let mut r = [0u32; 6];
        let off = 6 - out.len();
        let so = out.len() - s.len();
        for i in 0..s.len() {
            r[off + so + i] = if s[i] == 1 { 0 } else { st[i] as u32 };
        }
        r
    }

    /// Output strides of `v` (natural, dimension 0 by its batch stride), padded to 6.
    fn ostrides(&self, v: ValueId, view: &View) -> [u32; 6] {
        let s = self.shape(v);
        self.bstrides_exact(s, view)
    }

    fn bstrides_exact(&self, s: &[usize], view: &View) -> [u32; 6] {
        let mut st = strides(s);
        if !st.is_empty() {
            st[0] = view.batch_stride as usize;
        }
        let mut r = [0u32; 6];
        let off = 6 - s.len();
        for i in 0..s.len() {
            r[off + i] = st[i] as u32;
        }
        r
    }

    /// A flat grid of 256-wide workgroups covering `n` invocations.
    fn grid(&self, n: u64) -> [u32; 3] {
        self.grid_groups(n.div_ceil(256).max(1))
    }

    /// `groups` workgroups laid out as x (at most the device limit) by y.
    fn grid_groups(&self, groups: u64) -> [u32; 3] {
        let m = self.max_groups as u64;
        [groups.min(m) as u32, groups.div_ceil(m) as u32, 1]
    }

    fn check_rank(&self, n: &Node, s: &[usize]) -> Result<()> {
        if s.len() > 6 {
            return Err(err(n, format!("rank {} tensors are not supported on the GPU (at most 6)", s.len())));
        }
        Ok(())
    }

    fn push(&mut self, d: Dispatch) {
        self.out.dispatches.push(d);
    }

    fn aux(&mut self, bytes: Vec<u8>) -> BufRef {
        self.out.aux.push(bytes);
        BufRef::Aux(self.out.aux.len() - 1)
    }
}

/// Parameter block of the elementwise kernel.
fn ew_params(total: u64, out: [u32; 6], y: &View, ys: [u32; 6], ins: &[(u64, [u32; 6])]) -> Vec<u32> {
    let mut p = vec![0u32; 36];
    p[0] = total as u32;
    p[1..7].copy_from_slice(&out);
    p[7] = y.offset as u32;
    p[8..14].copy_from_slice(&ys);
    for (k, (off, st)) in ins.iter().enumerate() {
        p[14 + 7 * k] = *off as u32;
        p[15 + 7 * k..21 + 7 * k].copy_from_slice(st);
    }
    p
}

pub fn lower(
    p: &Prepared,
    plan: &MemPlan,
    max_groups: u32,
    opts: LowerOpts,
    tuned: &[Option<TileChoice>],
) -> Result<Lowered> {
    let mut lx = Lx { p, plan, max_groups, opts, tuned, node: 0, out: Lowered::default() };
    for (k, n) in p.graph.nodes.iter().enumerate() {
        lx.node = k;
        lower_node(&mut lx, k, n)?;
    }
    Ok(lx.out)
}

fn input(n: &Node, i: usize) -> Result<ValueId> {
    n.input(i).ok_or_else(|| err(n, format!("missing input {i}")))
}

fn output(n: &Node) -> Result<ValueId> {
    n.output(0).ok_or_else(|| err(n, "has no output"))
}

fn lower_node(lx: &mut Lx, k: usize, n: &Node) -> Result<()> {
    if is_alias(&n.op) {
        return Ok(());
    }
    for v in n.outputs.iter().flatten() {
        if lx.p.types[*v].is_some() && !lx.p.dtype(*v).is_float() {
            return Err(err(
                n,
                format!(
                    "produces a {} tensor at run time; the GPU executor handles float tensors only",
                    lx.p.dtype(*v).name()
                ),
            ));
        }
        lx.check_rank(n, lx.shape(*v))?;
    }
    let base = |shader, entry, kind: &str| Dispatch {
        shader,
        entry,
        overrides: vec![],
        params: vec![],
        bindings: vec![],
        groups: [1, 1, 1],
        node: k,
        kind: kind.to_string(),
        concat_copy: false,
        flops: 0,
        min_bytes: vec![],
    };
    match &n.op {
        Op::Conv(c) if fast_conv(lx, k, n, c)? => {}
        Op::ConvTranspose(c) if fast_conv_transpose(lx, k, n, c)? => {}
        Op::Conv(c) => {
            let (x, w) = (input(n, 0)?, input(n, 1)?);
            let g = c.geom(lx.shape(x), lx.shape(w)).map_err(|m| err(n, m))?;
            let ax =
                |a: &crate::ops::conv::Axis| (a.input, a.output, a.kernel, a.stride, a.dilation, a.pad_begin as i64);
            let s = ConvShape::new(g.n, g.c, g.m, g.group, [ax(&g.y), ax(&g.x)]);
            let flops = 2 * (g.n * g.m * g.y.output * g.x.output * g.c_per_group() * g.y.kernel * g.x.kernel) as u64;
            let e = Epilogue::of(lx, n, &n.op)?;
            generic_conv(lx, k, n, &s, e, false, flops)?;
        }
        Op::ConvTranspose(c) => {
            let (x, w) = (input(n, 0)?, input(n, 1)?);
            let g = c.geom(lx.shape(x), lx.shape(w)).map_err(|m| err(n, m))?;
            let ax = |a: &crate::ops::conv_transpose::TAxis| {
                (a.input, a.output, a.kernel, a.stride, a.dilation, a.pad_begin as i64)
            };
            let s = ConvShape::new(g.n, g.c, g.m, g.group, [ax(&g.y), ax(&g.x)]);
            let flops = 2 * (g.n * g.c * g.y.input * g.x.input * g.m_per_group() * g.y.kernel * g.x.kernel) as u64;
            let e = Epilogue::of(lx, n, &n.op)?;
            generic_conv(lx, k, n, &s, e, true, flops)?;
        }
        Op::Unary(u) => {
            let ins: Vec<Option<&crate::tensor::Tensor>> =
                n.inputs.iter().map(|v| v.and_then(|v| lx.p.graph.consts.get(&v)).map(|t| t.as_ref())).collect();
            let kind = u.resolved(&ins).map_err(|m| err(n, m))?;
            elementwise(lx, n, k, 0, act_overrides(Some(kind)), &[input(n, 0)?], false, &n.op_type)?;
        }
        Op::Cast(to) => {
            let x = input(n, 0)?;
            if !lx.p.dtype(x).is_float() || !to.is_float() {
                return Err(err(n, "casts between integer and float tensors at run time are not supported on the GPU"));
            }
            let ov = if matches!(to, DType::F16 | DType::BF16) {
                vec![("ACT", ROUND_F16 as f64), ("ACT_A", 0.0), ("ACT_B", 0.0)]
            } else {
                act_overrides(None)
            };
            if *to == DType::BF16 {
                return Err(err(n, "cast to bfloat16 is not supported on the GPU"));
            }
            elementwise(lx, n, k, 0, ov, &[x], false, "Cast")?;
        }
        Op::Binary(b) => {
            let code = match b.kind {
                BinaryKind::Add => 1,
                BinaryKind::Sub => 2,
                BinaryKind::Mul => 3,
                BinaryKind::Div => 4,
                BinaryKind::Pow => 5,
                BinaryKind::Max => 6,
                BinaryKind::Min => 7,
                _ => return Err(err(n, "comparison results (bool tensors) at run time are not supported on the GPU")),
            };
            elementwise(lx, n, k, code, act_overrides(None), &[input(n, 0)?, input(n, 1)?], false, &n.op_type)?;
        }
        Op::PRelu { legacy_channel } => {
            let (x, s) = (input(n, 0)?, input(n, 1)?);
            let ss = crate::ops::elementwise::prelu_slope_shape(lx.shape(x), lx.shape(s), *legacy_channel);
            elementwise_shaped(lx, n, k, 8, act_overrides(None), &[(x, None), (s, Some(ss))], false, "PRelu")?;
        }
        Op::Where => {
            elementwise(lx, n, k, 9, act_overrides(None), &[input(n, 0)?, input(n, 1)?, input(n, 2)?], false, "Where")?;
        }
        Op::Variadic(v) => {
            let ins: Vec<ValueId> = n.inputs.iter().flatten().copied().collect();
            let code = match v.kind {
                VariadicKind::Max => 6,
                VariadicKind::Min => 7,
                _ => 1,
            };
            if ins.len() == 1 {
                elementwise(lx, n, k, 0, act_overrides(None), &ins, false, &n.op_type)?;
            } else {
                elementwise(lx, n, k, code, act_overrides(None), &ins[..2], false, &n.op_type)?;
                for &extra in &ins[2..] {
                    // Y = Y op extra: operand a is Y itself
                    elementwise(lx, n, k, code, act_overrides(None), &[extra, extra], true, &n.op_type)?;
                }
            }
            if v.kind == VariadicKind::Mean && ins.len() > 1 {
                let ov = vec![("ACT", SCALE as f64), ("ACT_A", 1.0 / ins.len() as f64), ("ACT_B", 0.0)];
                elementwise(lx, n, k, 0, ov, &[ins[0]], true, &n.op_type)?;
            }
        }
        Op::Pool(pool) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let g = pool.geom(lx.shape(x)).map_err(|m| err(n, m))?;
            let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
            let total = (g.n * g.c * g.y.output * g.x.output) as u64;
            // a U-Net's 2x2 stride-2 max-pool (floor or ceil mode): the loop-free unchecked kernel
            let two = |a: &crate::ops::conv::Axis| {
                a.kernel == 2
                    && a.stride == 2
                    && a.dilation == 1
                    && a.pad_begin == 0
                    && a.pad_end == 0
                    && (a.output == a.input / 2 || a.output == a.input.div_ceil(2))
            };
            let fast = pool.max && two(&g.y) && two(&g.x) && g.y.output > 0 && g.x.output > 0;
            let mut d = base(if fast { Shader::Pool2x2 } else { Shader::Pool }, "main", &n.op_type);
            if fast {
                // every index the kernel forms is below these (it reads only inside each plane)
                let (eb, batches) = (lx.opts.precision.bytes(), g.n as u64);
                d.min_bytes = vec![
                    (xv.offset + (batches - 1) * xv.batch_stride + (g.c * g.y.input * g.x.input) as u64) * eb,
                    (yv.offset + (batches - 1) * yv.batch_stride + (g.c * g.y.output * g.x.output) as u64) * eb,
                ];
            } else {
                d.overrides =
                    vec![("MAX", pool.max as u32 as f64), ("COUNT_PAD", pool.count_include_pad as u32 as f64)];
            }
            d.params = vec![
                total as u32,
                g.c as u32,
                g.y.input as u32,
                g.x.input as u32,
                g.y.output as u32,
                g.x.output as u32,
                g.y.kernel as u32,
                g.x.kernel as u32,
                g.y.stride as u32,
                g.x.stride as u32,
                g.y.pad_begin as u32,
                g.x.pad_begin as u32,
                g.y.dilation as u32,
                g.x.dilation as u32,
                g.y.pad_end as u32,
                g.x.pad_end as u32,
                xv.offset as u32,
                xv.batch_stride as u32,
                yv.offset as u32,
                yv.batch_stride as u32,
            ];
            d.bindings = vec![xv.buf, yv.buf];
            d.groups = lx.grid(total);
            lx.push(d);
        }
        Op::GlobalPool(gp) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let axes: Vec<usize> = (2..lx.shape(x).len()).collect();
            reduce(lx, n, k, x, y, &axes, if gp.max { ReduceKind::Max } else { ReduceKind::Mean })?;
        }
        Op::Reduce(r) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let infos = const_infos(lx.p, n);
            let axes = r.axes(&infos).map_err(|m| err(n, m))?;
            if axes.is_empty() {
                elementwise(lx, n, k, 0, act_overrides(None), &[x], false, &n.op_type)?;
            } else {
                reduce(lx, n, k, x, y, &axes, r.kind)?;
            }
        }
        Op::BatchNorm(bn) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let s = lx.shape(x);
            let (c, plane) = (s[1], s[2..].iter().product::<usize>());
            let xv = lx.view(n, x)?;
            let yv = lx.view(n, y)?;
            let mut binds = vec![xv.buf];
            for i in 1..5 {
                binds.push(lx.view(n, input(n, i)?)?.buf);
            }
            binds.push(yv.buf);
            let total = numel(s) as u64;
            let mut d = base(Shader::Norm, "batch", "BatchNormalization");
            d.params = vec![
                total as u32,
                c as u32,
                plane as u32,
                xv.offset as u32,
                xv.batch_stride as u32,
                yv.offset as u32,
                yv.batch_stride as u32,
                bn.epsilon.to_bits(),
            ];
            d.bindings = binds;
            d.groups = lx.grid(total);
            lx.push(d);
        }
        Op::InstanceNorm(inorm) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let s = lx.shape(x);
            let (c, plane) = (s[1], s[2..].iter().product::<usize>());
            let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
            let (sv, bv) = (lx.view(n, input(n, 1)?)?, lx.view(n, input(n, 2)?)?);
            let mut d = base(Shader::Norm, "instance", "InstanceNormalization");
            d.params = vec![
                c as u32,
                plane as u32,
                xv.offset as u32,
                xv.batch_stride as u32,
                yv.offset as u32,
                yv.batch_stride as u32,
                inorm.epsilon.to_bits(),
            ];
            d.bindings = vec![xv.buf, sv.buf, bv.buf, BufRef::Unbound, BufRef::Unbound, yv.buf];
            d.groups = lx.grid_groups((s[0] * c) as u64);
            lx.push(d);
        }
        Op::Softmax(sm) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let (outer, len, inner) = sm.split(lx.shape(x)).map_err(|m| err(n, m))?;
            let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
            let s = lx.shape(x);
            let pb = if s.is_empty() { 1 } else { s[1..].iter().product::<usize>() };
            let rows = (outer * inner) as u64;
            let mut d = base(Shader::Softmax, "main", &n.op_type);
            d.overrides = vec![("LOG", sm.log as u32 as f64)];
            d.params = vec![
                rows as u32,
                len as u32,
                inner as u32,
                xv.offset as u32,
                xv.batch_stride as u32,
                yv.offset as u32,
                yv.batch_stride as u32,
                pb.max(1) as u32,
            ];
            d.bindings = vec![xv.buf, yv.buf];
            d.groups = lx.grid(rows);
            lx.push(d);
        }
        Op::Resize(r) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let infos = const_infos(lx.p, n);
            let plan = r.plan(&infos).map_err(|m| err(n, m))?;
            let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
            let out = &plan.out_shape;
            let rank = out.len();
            let off = 6 - rank;
            let mut table: Vec<u32> = Vec::new();
            let mut toff = [u32::MAX; 6];
            let mut taps = [1u32; 6];
            for t in &plan.axes {
                toff[off + t.axis] = table.len() as u32;
                taps[off + t.axis] = t.taps as u32;
                for (i, w) in t.index.iter().zip(&t.weight) {
                    table.push(*i);
                    table.push(w.to_bits());
                }
            }
            if table.is_empty() {
                table.push(0);
            }
            let tb = lx.aux(bytemuck::cast_slice(&table).to_vec());
            let total = numel(out) as u64;
            let mut params = vec![0u32; 33];
            params[0] = total as u32;
            params[1..7].copy_from_slice(&pad6(out));
            params[7] = yv.offset as u32;
            params[8..14].copy_from_slice(&lx.bstrides_exact(out, &yv));
            params[14] = xv.offset as u32;
            params[15..21].copy_from_slice(&lx.bstrides_exact(lx.shape(x), &xv));
            params[21..27].copy_from_slice(&toff);
            params[27..33].copy_from_slice(&taps);
            let mut d = base(Shader::Resize, "main", &n.op_type);
            d.params = params;
            d.bindings = vec![xv.buf, tb, yv.buf];
            d.groups = lx.grid(total);
            lx.push(d);
        }
        Op::Pad(pad) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let infos = const_infos(lx.p, n);
            let spec = pad.spec(&infos).map_err(|m| err(n, m))?;
            let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
            let xs = lx.shape(x);
            let off = 6 - xs.len();
            let total = numel(&spec.out_shape) as u64;
            let mut params = vec![0u32; 34];
            params[0] = total as u32;
            params[1..7].copy_from_slice(&pad6(&spec.out_shape));
            params[7] = yv.offset as u32;
            params[8..14].copy_from_slice(&lx.bstrides_exact(&spec.out_shape, &yv));
            params[14] = xv.offset as u32;
            params[15..21].copy_from_slice(&lx.bstrides_exact(xs, &xv));
            params[21..27].copy_from_slice(&pad6(xs));
            for (i, (b, _)) in spec.pads.iter().enumerate() {
                params[27 + off + i] = *b as i32 as u32;
            }
            params[33] = (spec.value as f32).to_bits();
            let mode = match pad.mode {
                crate::ops::pad::PadMode::Constant => 0,
                crate::ops::pad::PadMode::Reflect => 1,
                crate::ops::pad::PadMode::Edge => 2,
                crate::ops::pad::PadMode::Wrap => 3,
            };
            if numel(xs) == 0 && mode != 0 {
                return Err(err(n, "cannot pad an empty tensor in this mode"));
            }
            let mut d = base(Shader::Pad, "main", "Pad");
            d.overrides = vec![("MODE", mode as f64)];
            d.params = params;
            d.bindings = vec![xv.buf, yv.buf];
            d.groups = lx.grid(total);
            lx.push(d);
        }
        Op::Transpose(t) => {
            let x = input(n, 0)?;
            let perm = t.resolved_perm(lx.shape(x).len()).map_err(|m| err(n, m))?;
            permuted_copy(lx, n, k, lx.shape(x), &perm, "Transpose")?;
        }
        Op::DepthToSpace(dts) => {
            let (view6, perm, _) = dts.view_perm(lx.shape(input(n, 0)?)).map_err(|m| err(n, m))?;
            permuted_copy(lx, n, k, &view6, &perm, "DepthToSpace")?;
        }
        Op::Slice(s) => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let infos = const_infos(lx.p, n);
            let axes = s.resolve(&infos).map_err(|m| err(n, m))?;
            let xv = lx.view(n, x)?;
            let st = vstrides(lx.shape(x), xv.batch_stride);
            let x_off: i64 = xv.offset as i64 + axes.iter().zip(&st).map(|(a, s)| a.start * s).sum::<i64>();
            let src: Vec<i64> = axes.iter().zip(&st).map(|(a, s)| a.step * s).collect();
            let ys = lx.shape(y).to_vec();
            let (yb, y_off, yst) = copy_target(lx, n, y, &ys)?;
            let c = CopySpec {
                shape: &ys,
                x: xv.buf,
                x_off,
                x_strides: &src,
                modulo: None,
                table: None,
                y: yb,
                y_off,
                y_strides: &yst,
            };
            push_copy(lx, n, k, c, "Slice", false)?;
        }
        Op::Expand | Op::Tile => {
            let (x, y) = (input(n, 0)?, output(n)?);
            let xv = lx.view(n, x)?;
            let ys = lx.shape(y).to_vec();
            let xs = lx.shape(x);
            let st = vstrides(xs, xv.batch_stride);
            let so = ys.len() - xs.len();
            let mut src = vec![0i64; ys.len()];
            let mut modulo = vec![0u32; ys.len()];
            for i in 0..xs.len() {
                if matches!(n.op, Op::Tile) {
                    src[so + i] = st[i];
                    modulo[so + i] = xs[i] as u32;
                } else {
                    src[so + i] = if xs[i] == 1 { 0 } else { st[i] };
                }
            }
            let (yb, y_off, yst) = copy_target(lx, n, y, &ys)?;
            let c = CopySpec {
                shape: &ys,
                x: xv.buf,
                x_off: xv.offset as i64,
                x_strides: &src,
                modulo: Some(&modulo),
                table: None,
                y: yb,
                y_off,
                y_strides: &yst,
            };
            push_copy(lx, n, k, c, &n.op_type, false)?;
        }
        Op::Gather(gt) => {
            let (x, idx, y) = (input(n, 0)?, input(n, 1)?, output(n)?);
            let Some(it) = lx.p.graph.consts.get(&idx).cloned() else {
                return Err(err(n, "Gather indices that are computed at run time are not supported on the GPU"));
            };
            let xs = lx.shape(x).to_vec();
            let a = norm_axis(gt.axis, xs.len(), "axis").map_err(|m| err(n, m))?;
            let dim = xs[a] as i64;
            let mut table = Vec::with_capacity(it.len());
            for &i in it.as_i64().map_err(|m| err(n, m))? {
                let j = if i < 0 { i + dim } else { i };
                if j < 0 || j >= dim {
                    return Err(err(n, format!("index {i} is out of range for axis {a} of size {dim}")));
                }
                table.push(j as i32);
            }
            let xv = lx.view(n, x)?;
            let st = vstrides(&xs, xv.batch_stride);
            // the output seen with the indices flattened into one axis
            let mut oshape = xs.clone();
            oshape[a] = table.len();
            if table.is_empty() {
                table.push(0);
            }
            let tb = lx.aux(bytemuck::cast_slice(&table).to_vec());
            let (yb, y_off, yst) = copy_target(lx, n, y, &oshape)?;
            let c = CopySpec {
                shape: &oshape,
                x: xv.buf,
                x_off: xv.offset as i64,
                x_strides: &st,
                modulo: None,
                table: Some((a, tb)),
                y: yb,
                y_off,
                y_strides: &yst,
            };
            push_copy(lx, n, k, c, "Gather", false)?;
        }
        Op::Split(s) => {
            let x = input(n, 0)?;
            let infos = const_infos(lx.p, n);
            let (a, sizes) = s.sizes(&infos).map_err(|m| err(n, m))?;
            let xv = lx.view(n, x)?;
            let st = vstrides(lx.shape(x), xv.batch_stride);
            let mut start = 0i64;
            for (j, sz) in sizes.iter().enumerate() {
                if let Some(y) = n.output(j) {
                    let ys = lx.shape(y).to_vec();
                    let (yb, y_off, yst) = copy_target(lx, n, y, &ys)?;
                    let x_off = xv.offset as i64 + start * st[a];
                    let c = CopySpec {
                        shape: &ys,
                        x: xv.buf,
                        x_off,
                        x_strides: &st,
                        modulo: None,
                        table: None,
                        y: yb,
                        y_off,
                        y_strides: &yst,
                    };
                    push_copy(lx, n, k, c, "Split", false)?;
                }
                start += *sz as i64;
            }
        }
        Op::Concat(c) => {
            let y = output(n)?;
            let ys = lx.shape(y).to_vec();
            let a = norm_axis(c.axis, ys.len(), "axis").map_err(|m| err(n, m))?;
            let yv = lx.view(n, y)?;
            let yst = vstrides(&ys, yv.batch_stride);
            let mut pos = 0i64;
            for u in n.inputs.iter().flatten() {
                let us = lx.shape(*u).to_vec();
                if !lx.plan.in_place.contains(u) && numel(&us) > 0 {
                    let uv = lx.view(n, *u)?;
                    let ust = vstrides(&us, uv.batch_stride);
                    let y_off = yv.offset as i64 + pos * yst[a];
                    let c = CopySpec {
                        shape: &us,
                        x: uv.buf,
                        x_off: uv.offset as i64,
                        x_strides: &ust,
                        modulo: None,
                        table: None,
                        y: yv.buf,
                        y_off,
                        y_strides: &yst,
                    };
                    push_copy(lx, n, k, c, "Concat copy", true)?;
                }
                pos += us[a] as i64;
            }
        }
        Op::Identity | Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => {}
        Op::Shape(_) | Op::Size | Op::ConstantOfShape(_) | Op::Range => {
            return Err(err(n, "shape computations that depend on run-time data are not supported on the GPU"));
        }
    }
    Ok(())
}

/// The numbers the generic conv kernel needs, from a conv or transposed conv geometry
/// ([y, x] pairs; `pad` is the begin padding, negative for some transposed convs).
struct ConvShape {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    inp: [usize; 2],
    out: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [i64; 2],
}

impl ConvShape {
    /// From per-axis (input, output, kernel, stride, dilation, begin padding), y then x.
    fn new(n: usize, c: usize, m: usize, group: usize, a: [(usize, usize, usize, usize, usize, i64); 2]) -> ConvShape {
        ConvShape {
            n,
            c,
            m,
            group,
            inp: [a[0].0, a[1].0],
            out: [a[0].1, a[1].1],
            kernel: [a[0].2, a[1].2],
            stride: [a[0].3, a[1].3],
            dilation: [a[0].4, a[1].4],
            pad: [a[0].5, a[1].5],
        }
    }
}

/// A conv or transposed conv on the generic tiled kernel (shaders/conv.wgsl): any group count,
/// weights constant or fed at run time.
fn generic_conv(
    lx: &mut Lx,
    k: usize,
    n: &Node,
    s: &ConvShape,
    epi: Epilogue,
    transposed: bool,
    flops: u64,
) -> Result<()> {
    let (x, w, y) = (input(n, 0)?, input(n, 1)?, output(n)?);
    let (xv, wv, yv) = (lx.view(n, x)?, lx.view(n, w)?, lx.view(n, y)?);
    let bias = n.input(2).map(|b| lx.view(n, b)).transpose()?;
    let (cg, mg) = (s.c / s.group, s.m / s.group);
    let params = vec![
        s.c as u32,
        s.inp[0] as u32,
        s.inp[1] as u32,
        s.m as u32,
        s.out[0] as u32,
        s.out[1] as u32,
        s.kernel[0] as u32,
        s.kernel[1] as u32,
        s.stride[0] as u32,
        s.stride[1] as u32,
        s.pad[0] as i32 as u32,
        s.pad[1] as i32 as u32,
        s.dilation[0] as u32,
        s.dilation[1] as u32,
        cg as u32,
        mg as u32,
        (cg * s.kernel[0] * s.kernel[1]) as u32,
        xv.offset as u32,
        xv.batch_stride as u32,
        yv.offset as u32,
        yv.batch_stride as u32,
        s.group as u32,
        epi.res_params()[0],
        epi.res_params()[1],
    ];
    let (mut ov, rbuf) = epi.bind(&yv);
    ov.push(("TRANSPOSED", transposed as u32 as f64));
    ov.push(("HAS_BIAS", bias.is_some() as u32 as f64));
    // the input may be another slice of the concat buffer this conv writes into
    let x_in_y = xv.buf == yv.buf;
    ov.push(("X_IN_Y", x_in_y as u32 as f64));
    let xb = if x_in_y { BufRef::Dummy } else { xv.buf };
    lx.push(Dispatch {
        shader: Shader::Conv,
        entry: "main",
        overrides: ov,
        params,
        bindings: vec![xb, wv.buf, bias.map(|b| b.buf).unwrap_or(BufRef::Dummy), yv.buf, rbuf],
        groups: conv_grid(lx, s.out[0] * s.out[1], mg, s.n * s.group)?,
        node: k,
        kind: n.op_type.clone(),
        concat_copy: false,
        flops,
        min_bytes: vec![],
    });
    Ok(())
}

/// Copy input 0, seen with shape `view` (its own, or a finer view of the same elements),
/// into output 0 with the axes permuted: output axis i is view axis `perm[i]`.
fn permuted_copy(lx: &mut Lx, n: &Node, k: usize, view: &[usize], perm: &[usize], kind: &str) -> Result<()> {
    let (x, y) = (input(n, 0)?, output(n)?);
    let xv = lx.view(n, x)?;
    let st = vstrides(view, xv.batch_stride);
    let src: Vec<i64> = perm.iter().map(|&p| st[p]).collect();
    let shape: Vec<usize> = perm.iter().map(|&p| view[p]).collect();
    let (yb, y_off, yst) = copy_target(lx, n, y, &shape)?;
    let c = CopySpec {
        shape: &shape,
        x: xv.buf,
        x_off: xv.offset as i64,
        x_strides: &src,
        modulo: None,
        table: None,
        y: yb,
        y_off,
        y_strides: &yst,
    };
    push_copy(lx, n, k, c, kind, false)
}

/// Input infos with constant values, for ops that read parameters from constant inputs.
fn const_infos<'a>(p: &'a Prepared, n: &Node) -> Vec<Option<InInfo<'a>>> {
    n.inputs
        .iter()
        .map(|v| {
            v.map(|v| InInfo {
                dtype: p.dtype(v),
                shape: p.shape(v),
                value: p.graph.consts.get(&v).map(|t| t.as_ref()),
            })
        })
        .collect()
}

fn conv_grid(lx: &Lx, npix: usize, mg: usize, z: usize) -> Result<[u32; 3]> {
    let tiles = (npix.div_ceil(64) * mg.div_ceil(64)) as u64;
    if z as u64 > lx.max_groups as u64 {
        return Err(Error::Gpu(format!("batch x groups = {z} exceeds the device's workgroup grid limit")));
    }
    let [x, y, _] = lx.grid_groups(tiles);
    Ok([x, y, z as u32])
}

#[allow(clippy::too_many_arguments)]
fn elementwise(
    lx: &mut Lx,
    n: &Node,
    k: usize,
    op: u32,
    mut ov: Vec<(&'static str, f64)>,
    ins: &[ValueId],
    accum: bool,
    kind: &str,
) -> Result<()> {
    let shaped: Vec<(ValueId, Option<Vec<usize>>)> = ins.iter().map(|&v| (v, None)).collect();
    ov.push(("OP", op as f64));
    elementwise_shaped(lx, n, k, op, ov, &shaped, accum, kind)
}

#[allow(clippy::too_many_arguments)]
fn elementwise_shaped(
    lx: &mut Lx,
    n: &Node,
    k: usize,
    op: u32,
    mut ov: Vec<(&'static str, f64)>,
    ins: &[(ValueId, Option<Vec<usize>>)],
    accum: bool,
    kind: &str,
) -> Result<()> {
    if !ov.iter().any(|(name, _)| *name == "OP") {
        ov.push(("OP", op as f64));
    }
    ov.push(("ACCUM", accum as u32 as f64));
    let y = output(n)?;
    let yv = lx.view(n, y)?;
    let out = lx.shape(y).to_vec();
    let total = numel(&out) as u64;
    let mut operands = Vec::new();
    let mut binds = Vec::new();
    for (v, shape_override) in ins {
        let view = lx.view(n, *v)?;
        let st = match shape_override {
            None => lx.bstrides(*v, &view, &out),
            Some(s) => {
                // a reshaped operand (legacy PRelu slope): contiguous strides of the given shape
                let nat = strides(s);
                let mut r = [0u32; 6];
                let off = 6 - out.len();
                let so = out.len() - s.len();
                for i in 0..s.len() {
                    r[off + so + i] = if s[i] == 1 { 0 } else { nat[i] as u32 };
                }
                r
            }
        };
        operands.push((view.offset, st));
        binds.push(view.buf);
    }
    while binds.len() < 3 {
        binds.push(BufRef::Dummy);
    }
    if accum {
        binds[0] = BufRef::Dummy;
    }
    binds.push(yv.buf);
    let mut d = Dispatch {
        shader: Shader::Elementwise,
        entry: "main",
        overrides: ov,
        params: ew_params(total, pad6(&out), &yv, lx.ostrides(y, &yv), &operands),
        bindings: binds,
        groups: lx.grid(total),
        node: k,
        kind: kind.to_string(),
        concat_copy: false,
        flops: total,
        min_bytes: vec![],
    };
    if accum {
        // operand a is read from Y at the output position
        d.params[14] = 0;
    }
    lx.push(d);
    Ok(())
}

fn reduce(lx: &mut Lx, n: &Node, k: usize, x: ValueId, y: ValueId, axes: &[usize], kind: ReduceKind) -> Result<()> {
    let xs = lx.shape(x).to_vec();
    let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
    let kept: Vec<usize> = xs.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
    let red: Vec<usize> = xs.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { d } else { 1 }).collect();
    // output strides over the kept shape: the real output has the same element order
    let ys = lx.shape(y);
    let mut yst_real = strides(ys);
    if !yst_real.is_empty() {
        yst_real[0] = yv.batch_stride as usize;
    }
    let mut yst = vec![0usize; xs.len()];
    if ys.len() == xs.len() {
        yst = yst_real.clone();
    } else {
        // keepdims = 0: map the kept axes onto the output's axes
        let mut j = 0;
        for i in 0..xs.len() {
            if !axes.contains(&i) {
                yst[i] = yst_real[j];
                j += 1;
            }
        }
    }
    let mut xst = strides(&xs);
    if !xst.is_empty() {
        xst[0] = xv.batch_stride as usize;
    }
    let n_out = numel(&kept) as u64;
    let n_red = numel(&red) as u64;
    let mut params = vec![0u32; 29];
    params[0] = n_out as u32;
    params[1..7].copy_from_slice(&pad6(&kept));
    params[7] = yv.offset as u32;
    let off = 6 - xs.len();
    for i in 0..xs.len() {
        params[8 + off + i] = yst[i] as u32;
        params[15 + off + i] = xst[i] as u32;
    }
    params[14] = xv.offset as u32;
    params[21..27].copy_from_slice(&pad6(&red));
    params[27] = n_red as u32;
    params[28] = (if kind == ReduceKind::Mean { 1.0 / n_red.max(1) as f32 } else { 1.0f32 }).to_bits();
    let code = match kind {
        ReduceKind::Max => 1,
        ReduceKind::Min => 2,
        _ => 0,
    };
    let wg = n_red >= 256;
    let d = Dispatch {
        shader: Shader::Reduce,
        entry: if wg { "reduce_wg" } else { "reduce_thread" },
        overrides: vec![("KIND", code as f64)],
        params,
        bindings: vec![xv.buf, yv.buf],
        groups: if wg { lx.grid_groups(n_out) } else { lx.grid(n_out) },
        node: k,
        kind: n.op_type.clone(),
        concat_copy: false,
        flops: n_red * n_out,
        min_bytes: vec![],
    };
    lx.push(d);
    Ok(())
}

/// Row-major strides of `shape` in elements, dimension 0 stepping by `batch_stride` (a view).
fn vstrides(shape: &[usize], batch_stride: u64) -> Vec<i64> {
    let mut st: Vec<i64> = strides(shape).iter().map(|&v| v as i64).collect();
    if let Some(s0) = st.first_mut() {
        *s0 = batch_stride as i64;
    }
    st
}

/// One strided copy (shaders/copy.wgsl): element c of the index space `shape` is read at
/// `x_off + sum_d map_d(c_d) * x_strides[d]` (map: identity, modulo, or a table on one axis) and
/// written at `y_off + sum_d c_d * y_strides[d]`.
struct CopySpec<'a> {
    shape: &'a [usize],
    x: BufRef,
    x_off: i64,
    x_strides: &'a [i64],
    modulo: Option<&'a [u32]>,
    table: Option<(usize, BufRef)>,
    y: BufRef,
    y_off: i64,
    y_strides: &'a [i64],
}

/// The output side of a copy that writes all of `y`, seen with shape `oshape` (the same element
/// order as y's own shape): its buffer, offset and strides.
fn copy_target(lx: &mut Lx, n: &Node, y: ValueId, oshape: &[usize]) -> Result<(BufRef, i64, Vec<i64>)> {
    let yv = lx.view(n, y)?;
    let ys = lx.shape(y);
    let natural = ys.get(1..).map(|r| r.iter().product::<usize>()).unwrap_or(1) as u64;
    if oshape.first() == ys.first() {
        Ok((yv.buf, yv.offset as i64, vstrides(oshape, yv.batch_stride)))
    } else if yv.batch_stride == natural || ys.first().is_none_or(|&b| b <= 1) {
        Ok((yv.buf, yv.offset as i64, vstrides(oshape, strides(oshape).first().copied().unwrap_or(1) as u64)))
    } else {
        Err(err(n, "internal: strided output view with a reshaped copy"))
    }
}

fn push_copy(lx: &mut Lx, n: &Node, k: usize, c: CopySpec, kind: &str, concat: bool) -> Result<()> {
    lx.check_rank(n, c.shape)?;
    let r = c.shape.len();
    let off = 6 - r;
    let total = numel(c.shape) as u64;
    if total == 0 {
        return Ok(());
    }
    let mut params = vec![0u32; 29];
    params[0] = total as u32;
    params[1..7].copy_from_slice(&pad6(c.shape));
    params[7] = c.y_off as u32;
    params[14] = c.x_off as i32 as u32;
    for i in 0..r {
        params[8 + off + i] = c.y_strides[i] as u32;
        params[15 + off + i] = c.x_strides[i] as i32 as u32;
        params[21 + off + i] = c.modulo.map(|m| m[i]).unwrap_or(0);
    }
    params[27] = 6;
    let mut tb = BufRef::Dummy;
    if let Some((axis, b)) = c.table {
        params[27] = (off + axis) as u32;
        tb = b;
    }
    lx.push(Dispatch {
        shader: Shader::Copy,
        entry: "main",
        overrides: vec![],
        params,
        bindings: vec![c.x, tb, c.y],
        groups: lx.grid(total),
        node: k,
        kind: kind.to_string(),
        concat_copy: concat,
        flops: 0,
        min_bytes: vec![],
    });
    Ok(())
}

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
/// conv's direct GEMM, `cin` for a gather whose K may be ordered tap-major.
#[derive(Clone, Copy, Debug)]
struct Gemm {
    m: usize,
    cols: usize,
    z: usize,
    k: usize,
    b: BMode,
    scatter: bool,
    cin: Option<usize>,
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
fn tap_major(b: BMode, cin: Option<usize>, bk: u32) -> BMode {
    match cin {
        Some(c) if b == BMode::Gather && c.is_multiple_of(bk as usize) => BMode::Taps,
        _ => b,
    }
}

/// Up to `s` K slices of whole K tiles, none empty.
fn whole_slices(ktiles: usize, s: usize) -> usize {
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

/// A tile for the fast conv kernel: register-blocked, or on cooperative matrices.
#[derive(Clone, Copy, Debug)]
enum FastTile {
    Fma(ConvCfg),
    Coop(CoopCfg),
    Halo(HaloCfg),
    Thin(ThinCfg),
}

impl FastTile {
    fn bm(&self) -> u32 {
        match self {
            FastTile::Fma(c) => c.bm,
            FastTile::Coop(c) => c.bm,
            FastTile::Halo(c) => c.bm,
            FastTile::Thin(c) => c.co,
        }
    }
    fn bn(&self) -> u32 {
        match self {
            FastTile::Fma(c) => c.bn,
            FastTile::Coop(c) => c.bn,
            FastTile::Halo(c) => c.bn,
            FastTile::Thin(c) => c.bn(),
        }
    }
    fn b(&self) -> BMode {
        match self {
            FastTile::Fma(c) => c.b,
            FastTile::Coop(c) => c.b,
            // K is ordered tap-major, with no tap table
            FastTile::Halo(_) => BMode::Taps,
            // read per pixel straight from the input, with no table
            FastTile::Thin(_) => BMode::Direct,
        }
    }
    fn bk(&self) -> u32 {
        match self {
            FastTile::Fma(c) => c.bk,
            FastTile::Coop(_) => COOP_BK,
            FastTile::Halo(c) => c.cb,
            FastTile::Thin(_) => 1,
        }
    }
    /// A transposed conv's one GEMM, scattered to the output by the epilogue (or, split, by the
    /// reduction).
    fn scatter(&self) -> bool {
        match self {
            FastTile::Fma(c) => c.scatter,
            FastTile::Coop(c) => c.scatter,
            FastTile::Thin(c) => c.scatter,
            FastTile::Halo(_) => false,
        }
    }
    fn shader(&self) -> Shader {
        match self {
            FastTile::Fma(c) => Shader::FastConv(*c),
            FastTile::Coop(c) => Shader::CoopConv(*c),
            FastTile::Halo(c) => Shader::HaloConv(*c),
            FastTile::Thin(c) => Shader::ThinConv(*c),
        }
    }
}

fn use_coop(lx: &Lx) -> bool {
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
        let c = CoopCfg { bm, bn, wm, wn, b: cb, scatter, emulate, split, epi: 1 };
        (c.valid() && c.shared_bytes() <= lx.opts.max_shared).then_some((FastTile::Coop(c), t.slices))
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
fn pick(lx: &Lx, g: &Gemm, tensor_cores: bool) -> (FastTile, usize) {
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
        let c = CoopCfg { bm, bn, wm, wn, b: cb, scatter, emulate, split: false, epi: 1 };
        if c.shared_bytes() > lx.opts.max_shared || lx.opts.force_tile.is_some_and(|t| t != (bm, bn)) {
            continue;
        }
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
    params.resize(28, 0);
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
        // a packed split kernel neither reads its input from Y nor writes Y
        if split && cfg.b() == BMode::Packed { BufRef::Unbound } else { f.y.buf },
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
    // a packed operand is counted in vec4
    let x_eb = if cfg.b() == BMode::Packed { 4 * eb } else { eb };
    let mut min_bytes = vec![
        x_need * x_eb,
        w_vec4 as u64 * 4 * w_eb,
        if f.bias.is_some() && !split { f.y_channels as u64 * eb } else { 0 },
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
        let mut min_bytes = vec![part, if f.bias.is_some() { f.y_channels as u64 * eb } else { 0 }, 0, y_need * eb];
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
fn wants_thin(lx: &Lx, m: usize, k: usize) -> bool {
    match lx.tuned.get(lx.node).copied().flatten() {
        Some(t) => t.thin,
        None => {
            lx.opts.thin
                && lx.opts.force_tile.is_none()
                && lx.opts.force_split.is_none()
                && (m <= THIN_MAX_M || (k <= THIN_MAX_K && m <= THIN_SHORT_K_MAX_M))
        }
    }
}

/// A tensor-core tile with the widest epilogue the workgroup memory allows (the most fragments
/// per round that divide the subgroup's fragments and fit `max_shared`: fewer barriers, more
/// stores in flight); other tiles, and every tile with the option off, as they are.
fn widen_epilogue(o: &LowerOpts, t: FastTile) -> FastTile {
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
fn halo_tile(
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

/// Conv with constant weights and one group: the generated register-blocked kernel.
fn fast_conv(lx: &mut Lx, k: usize, n: &Node, c: &crate::ops::conv::Conv) -> Result<bool> {
    if !lx.opts.fast_conv || c.group != 1 {
        return Ok(false);
    }
    let (x, w, y) = (input(n, 0)?, input(n, 1)?, output(n)?);
    let Some(wt) = lx.p.graph.consts.get(&w).cloned() else { return Ok(false) };
    let g = c.geom(lx.shape(x), lx.shape(w)).map_err(|m| err(n, m))?;
    let (xv, yv) = (lx.view(n, x)?, lx.view(n, y)?);
    let bias = n.input(2).map(|b| lx.view(n, b)).transpose()?;
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
    let gemm = Gemm { m, cols: npix, z: g.n, k: kk, b: mode, scatter: false, cin: taps_cin };
    // the operand a measured choice names, or the options'
    let tuned = lx.tuned.get(lx.node).copied().flatten();
    let (want_packed, want_halo) = match tuned {
        Some(t) => (t.im2col, t.halo),
        None => (lx.opts.im2col, lx.opts.halo),
    };
    if wants_thin(lx, m, kk) {
        let mut params = gather_params(&g);
        params[18] = g.c as u32;
        params[19] = kw as u32;
        params[20] = g.y.dilation as u32;
        params[21] = g.x.dilation as u32;
        params[22] = kh as u32;
        let wd = &wd;
        let f = FastConv {
            kind: "Conv",
            cfg: FastTile::Thin(ThinCfg::for_channels(m, false)),
            slices: 1,
            x: xv,
            y: yv,
            bias,
            ktab: BufRef::Unbound,
            y_channels: m,
            k: kk,
            m,
            cols: npix,
            z: g.n,
            epi: Epilogue::of(lx, n, &n.op)?,
            flops: 2 * (g.n * m * npix * kk) as u64,
            x_extent: (g.c * g.y.input * g.x.input) as u64,
            // K in the ONNX order (input channel, ky, kx)
            weight: &move |kq: usize, mq: usize| wd[mq * kk + kq],
            params,
        };
        fast_dispatch(lx, k, n, f)?;
        return Ok(true);
    }
    let halo_conv = g.y.stride == 1 && g.x.stride == 1 && g.y.dilation == g.x.dilation;
    // with halo tiles asked for, a conv with taps that can have them gets them, whatever the cost
    // model (fitted without halo tiles) says of the tensor cores for it: base 16's 16-channel
    // 512x512 convs would otherwise stay on FMA tiles (autotuning measures both)
    let halo_first = want_halo && halo_conv && kh * kw > 1 && g.c.is_multiple_of(16);
    let (mut cfg, mut slices) = pick(lx, &gemm, halo_first);
    let khw = kh * kw;
    // a tensor-core gather may read its operand packed by an im2col pass instead
    let kp = kk.next_multiple_of(COOP_BK as usize);
    let packed_bytes = (g.n * npix * kp * 2) as u64;
    if let FastTile::Coop(c) = cfg
        && matches!(c.b, BMode::Gather | BMode::Taps)
        && want_packed
        && packed_bytes <= lx.opts.max_binding
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
    let tap_major = cfg.b() == BMode::Taps;
    if tap_major {
        params[18] = g.c as u32;
        params[19] = kw as u32;
        params[20] = g.y.dilation as u32;
        params[21] = g.x.dilation as u32;
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
fn fast_conv_transpose(lx: &mut Lx, k: usize, n: &Node, c: &crate::ops::conv_transpose::ConvTranspose) -> Result<bool> {
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
    let bias = n.input(2).map(|b| lx.view(n, b)).transpose()?;
    let (kh, kw) = (g.y.kernel, g.x.kernel);
    let taps = kh * kw;
    let (cin, m) = (g.c, g.m);
    let wd = wt.as_f32().map_err(|e| err(n, e))?;
    let npix_in = g.y.input * g.x.input;
    // one GEMM for all taps: row (output channel, tap), so that each input pixel is loaded once
    let gemm = Gemm { m: taps * m, cols: npix_in, z: g.n, k: cin, b: BMode::Direct, scatter: true, cin: None };
    let (cfg, slices) = if wants_thin(lx, taps * m, cin) {
        (FastTile::Thin(ThinCfg::for_channels(taps * m, true)), 1)
    } else {
        pick(lx, &gemm, false)
    };
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
