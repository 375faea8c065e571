//! Lowering: each node of a prepared graph becomes kernel dispatches with their parameters,
//! buffers and grid. Shapes are fixed, so everything here is computed once at load.

use super::plan::{BufRef, MemPlan, View, is_alias};
use super::{Precision, Shader};
use crate::error::{Error, Result};
use crate::graph::prepare::Prepared;
use crate::graph::{Node, ValueId};
use crate::ops::elementwise::{BinaryKind, UnaryKind, VariadicKind};
use crate::ops::reduce::ReduceKind;
use crate::ops::{InInfo, Op, norm_axis};
use crate::tensor::{DType, numel, strides};
use std::collections::BTreeSet;

mod fast;
mod pick;
use fast::{fast_conv, fast_conv_transpose};
pub use pick::{THIN_MAX_K, THIN_MAX_M, THIN_SHORT_K_MAX_M};

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
    /// With `thin`, every conv (any output channels, in blocks of 16; any K) runs on the thin
    /// kernel unless a measured choice or a forced tile says otherwise.
    pub thin_all: bool,
    /// Halo tiles stage A for all taps of a channel block at once where it fits (see
    /// [`HaloCfg::resident`](super::halo::HaloCfg::resident)); off: A streams one tap at a time.
    pub halo_resident: bool,
    /// Tensor-core gathers load runs of 16 output pixels as vectors where the conv allows
    /// ([`BMode::Rows`](super::convgen::BMode::Rows)).
    pub row_loads: bool,
    /// ... as quads of 4 pixels where the channels are a multiple of the K tile
    /// ([`CoopCfg::quads`](super::convgen::CoopCfg::quads)).
    pub row_quads: bool,
    /// The generic conv kernel sums K backwards (a second summation order, for
    /// [`crate::tune::noise_floor`]).
    pub reverse_k: bool,
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
            thin_all: false,
            halo_resident: true,
            row_loads: true,
            row_quads: false,
            reverse_k: false,
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

    /// A conv's bias, which every conv kernel reads as f32 whatever the storage precision: in
    /// f16 a conv's bias often nearly cancels its weighted sum (large after BatchNorm folding),
    /// and rounding it to f16 alone cost u2netp rel-L2 1.4e-2 in an emulation (its weights:
    /// 8e-3). A constant bias gets its own f32 buffer. `graph::prepare` splits a bias computed
    /// at run time off into an Add; should one reach a conv anyway, f32 storage reads it in
    /// place and f16 storage refuses it.
    fn bias(&mut self, n: &Node, b: ValueId) -> Result<View> {
        if let Some(t) = self.p.graph.consts.get(&b) {
            let v = t.to_f32_vec();
            let len = v.len() as u64;
            let buf = self.aux(bytemuck::cast_slice(&v).to_vec());
            return Ok(View { buf, offset: 0, batch_stride: len });
        }
        if self.opts.precision != Precision::F32 {
            return Err(err(n, "internal: a bias computed at run time reached an f16 conv kernel"));
        }
        self.view(n, b)
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
            // four outputs per invocation as vec4: rows a multiple of 8 wide, views 4-aligned,
            // and the grid (a plane's quads in workgroups of 64, by planes) within the device's
            // limit
            let plane_groups = (g.y.output * g.x.output / 4).div_ceil(64);
            let quads = fast
                && g.x.input.is_multiple_of(8)
                && [xv.offset, xv.batch_stride, yv.offset, yv.batch_stride].iter().all(|v| v.is_multiple_of(4))
                && plane_groups <= lx.max_groups as usize
                && g.n * g.c <= lx.max_groups as usize;
            let shader = match (fast, quads) {
                (true, true) => Shader::Pool2x2Quads,
                (true, false) => Shader::Pool2x2,
                _ => Shader::Pool,
            };
            let mut d = base(shader, "main", &n.op_type);
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
            d.groups = if quads { [plane_groups as u32, (g.n * g.c) as u32, 1] } else { lx.grid(total) };
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
    let bias = n.input(2).map(|b| lx.bias(n, b)).transpose()?;
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
    ov.push(("REVERSE_K", lx.opts.reverse_k as u32 as f64));
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
