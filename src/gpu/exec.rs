//! A prepared graph made ready on the GPU: constants uploaded, activation buffers allocated from
//! the memory plan, pipelines compiled (once per specialisation), bind groups built. Running it
//! is one upload per input, one submission, one readback.

use super::lower::{CoopMode, Dispatch, LowerOpts, Lowered, lower};
use super::plan::{BufRef, MemPlan, plan};
use super::{GpuContext, Precision, Shader};
use crate::error::{Error, Result};
use crate::graph::ValueId;
use crate::graph::prepare::Prepared;
use crate::tensor::{Tensor, numel};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wgpu::util::DeviceExt;

const PARAM_BYTES: u64 = 256;

/// Per-inference statistics (`--stats`).
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub dispatches: usize,
    pub uploads: usize,
    pub readbacks: usize,
    pub concat_copies: usize,
    pub peak_activation_bytes: u64,
    pub naive_activation_bytes: u64,
    pub submits: usize,
    /// GPU time per op kind in milliseconds (with timestamp queries).
    pub gpu_ms_by_kind: BTreeMap<String, f64>,
    /// GPU time per node (index into the prepared graph's nodes), milliseconds.
    pub gpu_ms_by_node: Vec<f64>,
    pub gpu_ms_total: Option<f64>,
    pub wall_ms: f64,
    pub flops: u64,
}

impl RunStats {
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("dispatches".into(), self.dispatches.into());
        m.insert("uploads".into(), self.uploads.into());
        m.insert("readbacks".into(), self.readbacks.into());
        m.insert("concat_copies".into(), self.concat_copies.into());
        m.insert("peak_activation_bytes".into(), self.peak_activation_bytes.into());
        m.insert("naive_activation_bytes".into(), self.naive_activation_bytes.into());
        m.insert("submits".into(), self.submits.into());
        m.insert("wall_ms".into(), self.wall_ms.into());
        m.insert("flops".into(), self.flops.into());
        if let Some(t) = self.gpu_ms_total {
            m.insert("gpu_ms".into(), t.into());
        }
        if !self.gpu_ms_by_kind.is_empty() {
            let by: serde_json::Map<String, serde_json::Value> =
                self.gpu_ms_by_kind.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
            m.insert("gpu_ms_by_op".into(), by.into());
        }
        serde_json::Value::Object(m)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: Shader,
    entry: &'static str,
    overrides: Vec<(&'static str, u64)>,
}

struct OutputSpec {
    value: ValueId,
    /// Host constant (folded output), or a region to read back.
    host: Option<Arc<Tensor>>,
    buf: Option<BufRef>,
    offset_bytes: u64,
    bytes: u64,
    readback_offset: u64,
    shape: Vec<usize>,
}

/// How a model is built on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct GpuOptions {
    pub precision: Precision,
    /// Use the generated fast conv kernels where they apply (default); off, every conv runs on
    /// the generic tiled kernel (used to test one against the other).
    pub fast_conv: bool,
    /// With f16: tensor cores when the adapter has 16x16x16 f16 cooperative matrices (None =
    /// decide from the adapter), or force them off / to their scalar emulation.
    pub coop: Option<CoopMode>,
    /// Force one (BM, BN) tile shape on every fast conv (for tests); None chooses per layer.
    pub force_tile: Option<(u32, u32)>,
    /// Treat storage bindings larger than this many bytes as too large (below the device's own
    /// limit; for tests of batch splitting, or to bound buffer sizes).
    pub binding_limit: Option<u64>,
    /// Split the K loop of convs too small to fill the GPU (default on; off for comparisons).
    pub split_k: bool,
    /// Split every fast conv that can be into this many K slices (tests).
    pub force_split: Option<u32>,
    /// Time every fast-conv kernel shape on the device at build time and keep the fastest per
    /// conv (`crate::tune`); off: the cost model chooses.
    pub autotune: bool,
    /// Tensor-core convs read their operand written out by an im2col pass instead of gathering
    /// it (default off until measured; autotuning tries both).
    pub im2col: bool,
    /// Stride-1 tensor-core convs read a halo tile staged once per channel block and shared by
    /// the kernel's taps instead of gathering per tap (default off until measured; autotuning
    /// tries it).
    pub halo: bool,
    /// Order a conv's K tap-major where whole K tiles share a tap (default on; off to compare).
    pub tap_major: bool,
    /// Tensor-core epilogues stage as many accumulator fragments per barrier as the workgroup
    /// memory allows (default on; off: one fragment per round, to compare).
    pub wide_epilogue: bool,
    /// Convs with few output channels or a short K run on the thin direct kernel
    /// (`gpu/thin.rs`; default on; off: on GEMM tiles, to compare).
    pub thin: bool,
    /// With `thin`: every conv the thin kernel can run goes to it, whatever its channels or K
    /// (blocks of 16 output channels; autotuning's candidate, `--thin all`; default off).
    pub thin_all: bool,
    /// Halo tiles stage the weights of all taps of a channel block at once where workgroup
    /// memory allows (default on; off: one tap at a time, to compare).
    pub halo_resident: bool,
    /// Tensor-core gathers of stride-1 convs with 16-pixel output rows and 4-aligned input load
    /// runs of 16 pixels as vectors (`BMode::Rows`; default on; off: one f16 per load, to
    /// compare).
    pub row_loads: bool,
    /// With `row_loads`: where a conv's channels are a multiple of the K tile, each invocation
    /// loads quads of 4 pixels, consecutive invocations consecutive quads (`CoopCfg::quads`;
    /// default off, to compare).
    pub row_quads: bool,
    /// The generic conv kernel sums K from its last element to its first (default off): a
    /// second summation order of the same products, to measure how much a model amplifies f32
    /// rounding ([`crate::tune::noise_floor`]).
    pub reverse_k: bool,
    /// With f16: convs whose bias cancels their weighted sum keep their weights in two f16
    /// parts, run as two convs (`gpu/f16split.rs`; default on; off to compare).
    pub f16_split: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            precision: Precision::F32,
            fast_conv: true,
            coop: None,
            force_tile: None,
            binding_limit: None,
            split_k: true,
            force_split: None,
            autotune: false,
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
            f16_split: true,
        }
    }
}

impl GpuOptions {
    pub fn f16() -> GpuOptions {
        GpuOptions { precision: Precision::F16, ..Default::default() }
    }
}

pub struct GpuModel {
    ctx: Arc<GpuContext>,
    opts: GpuOptions,
    /// The graph the dispatches run: for the whole batch, or for one chunk of it.
    prepared: Prepared,
    /// The batch runs as this many chunks of `prepared`'s batch, one after the other in the
    /// same submission (when the whole batch has a tensor past the storage-binding limit).
    chunks: usize,
    /// The whole batch's graph when chunked (input and output shapes).
    full: Option<Prepared>,
    /// Each input for the whole batch, chunk after chunk at 4-byte aligned strides, in mappable
    /// memory; every chunk is copied into `input_bufs` before its dispatches.
    staging: Vec<(wgpu::Buffer, u64)>,
    tune_report: Option<serde_json::Value>,
    pub plan: MemPlan,
    dispatches: Vec<Dispatch>,
    pipelines: Vec<wgpu::ComputePipeline>,
    dispatch_pipeline: Vec<usize>,
    bind_groups: Vec<wgpu::BindGroup>,
    input_bufs: Vec<wgpu::Buffer>,
    outputs: Vec<OutputSpec>,
    readback: Option<wgpu::Buffer>,
    readback_bytes: u64,
    /// Begin/end timestamps of the whole inference (when the adapter has TIMESTAMP_QUERY),
    /// resolved and copied to the end of the readback buffer.
    total_ts: Option<(wgpu::QuerySet, wgpu::Buffer, u64)>,
    act_bufs: Vec<wgpu::Buffer>,
    const_bufs: HashMap<ValueId, wgpu::Buffer>,
    aux_bufs: Vec<wgpu::Buffer>,
    scratch: wgpu::Buffer,
    im2col: wgpu::Buffer,
    #[allow(dead_code)]
    dummy: wgpu::Buffer,
    #[allow(dead_code)]
    params: wgpu::Buffer,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuModel({} dispatches on {})", self.dispatches.len(), self.ctx.info.name)
    }
}

/// Kernels built without wgpu's runtime bounds checks (25-35 % faster): only the generated conv
/// kernels, the 2x2 max-pool and the split-K reduction, whose extents are proven on the host.
/// `UNET_GPU_CHECKED=1` keeps the checks.
fn unchecked(s: Shader) -> bool {
    matches!(
        s,
        Shader::FastConv(_)
            | Shader::CoopConv(_)
            | Shader::HaloConv(_)
            | Shader::ThinConv(_)
            | Shader::Pool2x2
            | Shader::Pool2x2Quads
            | Shader::SplitK
    ) && std::env::var_os("UNET_GPU_CHECKED").is_none()
}

/// Compile the shader modules and then the pipelines of `uniq` (one dispatch per
/// specialisation, in order) on several threads: the driver's compiler (LLVM on lavapipe, the
/// NVIDIA compiler on its cards) takes most of a model's build time, autotuning builds a model
/// per candidate, and wgpu creates modules and pipelines concurrently (its error scopes are per
/// thread). The first error in `uniq`'s order is returned.
fn build_pipelines(ctx: &GpuContext, prec: Precision, uniq: &[&Dispatch]) -> Result<Vec<wgpu::ComputePipeline>> {
    let dev = &ctx.device;
    // the distinct shaders, and each pipeline's among them
    let mut shaders: Vec<Shader> = Vec::new();
    let mut module_of = Vec::with_capacity(uniq.len());
    for d in uniq {
        module_of.push(shaders.iter().position(|s| *s == d.shader).unwrap_or_else(|| {
            shaders.push(d.shader);
            shaders.len() - 1
        }));
    }
    let modules = par_map(&shaders, |&shader| {
        ctx.scoped(&format!("compiling {}", shader.file()), || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(shader.file()),
                source: wgpu::ShaderSource::Wgsl(shader.source(prec).into()),
            };
            if unchecked(shader) {
                // SAFETY: the unchecked kernels (`unchecked`) index only inside the extents
                // recorded in `Dispatch::min_bytes`, which are checked against the bound buffers
                // before any bind group is built; their loops have uniform trip counts from the
                // parameters.
                unsafe { dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
            } else {
                dev.create_shader_module(desc)
            }
        })
    })
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let jobs: Vec<(&Dispatch, &wgpu::ShaderModule)> =
        uniq.iter().zip(&module_of).map(|(d, &m)| (*d, &modules[m])).collect();
    par_map(&jobs, |&(d, module)| {
        let constants: Vec<(&str, f64)> = d.overrides.iter().map(|(k, v)| (*k, *v)).collect();
        ctx.scoped(&format!("building pipeline {}:{}", d.shader.file(), d.entry), || {
            dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(d.shader.file()),
                layout: None,
                module,
                entry_point: Some(d.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    // the generated kernels write all of their workgroup memory before reading it
                    zero_initialize_workgroup_memory: !unchecked(d.shader),
                },
                cache: None,
            })
        })
    })
    .into_iter()
    .collect()
}

/// `f` over `items` on up to 8 threads (the available cores), results in `items`' order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        // (a worker's panic is the caller's, as on one thread)
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The largest storage binding the model may use.
fn binding_limit(ctx: &GpuContext, opts: &GpuOptions) -> u64 {
    let lim = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    opts.binding_limit.map_or(lim, |l| l.min(lim))
}

fn buffer_size_check(lim: u64, what: &str, bytes: u64) -> Result<()> {
    if bytes > lim {
        return Err(Error::Gpu(format!(
            "{what} needs {bytes} bytes, more than this device's largest storage binding ({lim} bytes); use a smaller input or the CPU"
        )));
    }
    Ok(())
}

/// The conv kernels' bounds, proven on the host, assume tensors with at least one element (a
/// zero batch or a zero-sized axis would underflow them), so a conv reading or writing an empty
/// tensor is refused with its name; the CPU reference runs it. (Other ops with empty tensors run:
/// their dispatches have no work.)
fn empty_tensor_check(p: &Prepared) -> Result<()> {
    let g = &p.graph;
    for n in g.nodes.iter().filter(|n| matches!(n.op, crate::ops::Op::Conv(_) | crate::ops::Op::ConvTranspose(_))) {
        let tensors =
            n.inputs.iter().flatten().map(|v| ("input", *v)).chain(n.outputs.iter().flatten().map(|v| ("output", *v)));
        for (role, v) in tensors {
            if p.types[v].is_some() && crate::tensor::numel(p.shape(v)) == 0 {
                let shape = crate::tensor::fmt_shape(p.shape(v));
                return Err(Error::node(
                    &n.name,
                    &n.op_type,
                    format!(
                        "{role} '{}' of shape {shape} has no elements: the GPU conv kernels do not run empty tensors (the CPU reference does: --device cpu)",
                        g.name(v)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether every buffer the model needs stays within the device's storage-binding limit.
fn fits(ctx: &GpuContext, p: &Prepared, opts: &GpuOptions) -> Result<bool> {
    let lim = binding_limit(ctx, opts);
    let eb = opts.precision.bytes();
    let mp = plan(p, eb)?;
    let g = &p.graph;
    let tensor = |v: &ValueId| numel(p.shape(*v)) as u64 * eb;
    Ok(mp.act_sizes.iter().all(|&s| s <= lim)
        && g.inputs.iter().all(|v| tensor(v) <= lim)
        && g.consts.values().all(|t| t.len() as u64 * eb <= lim))
}

/// Whether running `chunk` (the same graph prepared for a batch `k` times smaller) `k` times
/// computes `full`: every run-time value has the batch as its first dimension in both and
/// agrees on the rest, and no op mixes the samples of a batch (a Softmax over axis 0; Concat,
/// Split, Slice or a reduction over the batch change the first dimension and fail the shapes).
fn batch_separable(full: &Prepared, chunk: &Prepared, k: usize) -> bool {
    let (gf, gc) = (&full.graph, &chunk.graph);
    let n = gf.inputs.first().map(|&v| full.shape(v).first().copied().unwrap_or(0)).unwrap_or(0);
    if n == 0 || gf.nodes.len() != gc.nodes.len() || gf.inputs.len() != gc.inputs.len() || gf.outputs != gc.outputs {
        return false;
    }
    let same = |v: ValueId| {
        if gf.consts.contains_key(&v) || gc.consts.contains_key(&v) {
            return gf.consts.contains_key(&v) == gc.consts.contains_key(&v) && full.types[v] == chunk.types[v];
        }
        match (&full.types[v], &chunk.types[v]) {
            (Some((df, sf)), Some((dc, sc))) => {
                df == dc && !sf.is_empty() && sf.len() == sc.len() && sf[0] == n && sc[0] * k == n && sf[1..] == sc[1..]
            }
            _ => false,
        }
    };
    gf.nodes.iter().zip(&gc.nodes).all(|(a, b)| {
        let mixes = match &a.op {
            crate::ops::Op::Softmax(sm) => {
                let rank = a.input(0).map(|v| full.shape(v).len() as i64).unwrap_or(0);
                let axis = if sm.axis < 0 { sm.axis + rank } else { sm.axis };
                axis == 0
            }
            _ => false,
        };
        a.op_type == b.op_type
            && !mixes
            && a.inputs == b.inputs
            && a.outputs == b.outputs
            && a.inputs.iter().chain(&a.outputs).flatten().all(|&v| same(v))
    }) && gf.inputs.iter().chain(&gf.outputs).all(|&v| same(v))
}

/// Place the outputs read back from the GPU (`k` chunks each, one after the other, at 4-byte
/// aligned strides) and the inference's two timestamps in one readback buffer; returns it and
/// its size.
fn make_readback(
    dev: &wgpu::Device,
    outputs: &mut [OutputSpec],
    timestamps_at: Option<&mut u64>,
    k: usize,
) -> (Option<wgpu::Buffer>, u64) {
    let mut rb = 0u64;
    for o in outputs.iter_mut().filter(|o| o.host.is_none()) {
        o.readback_offset = rb;
        rb += o.bytes.next_multiple_of(4) * k as u64;
    }
    if let Some(at) = timestamps_at {
        *at = rb.next_multiple_of(8);
        rb = *at + 16;
    }
    let buf = (rb > 0).then(|| {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: rb,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    });
    (buf, rb)
}

/// Mappable upload buffers, one per input, holding `k` chunks at 4-byte aligned strides: the
/// inputs are written into them in place (no staging allocation per inference) and copied into
/// the input buffers on the GPU.
fn make_staging(ctx: &GpuContext, p: &Prepared, prec: Precision, k: usize) -> Result<Vec<(wgpu::Buffer, u64)>> {
    let lim = ctx.limits.max_buffer_size;
    let mut staging = Vec::new();
    for &v in &p.graph.inputs {
        let stride = (numel(p.shape(v)) as u64 * prec.bytes()).next_multiple_of(4);
        if stride * k as u64 > lim {
            return Err(Error::Gpu(format!(
                "input '{}' needs {} bytes, more than this device's largest buffer ({lim} bytes)",
                p.graph.name(v),
                stride * k as u64
            )));
        }
        let b = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("input upload"),
            size: (stride * k as u64).max(16),
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        staging.push((b, stride));
    }
    Ok(staging)
}

impl GpuModel {
    /// Prepare `model` for inputs of these shapes and build it. When the whole batch has a
    /// tensor past the device's storage-binding limit, the batch is split into the fewest equal
    /// chunks that fit (when the graph treats the samples of a batch independently); the chunks
    /// run one after the other in the same submission, into one readback.
    pub fn for_model(
        ctx: Arc<GpuContext>,
        model: &crate::Model,
        shapes: &[Vec<usize>],
        opts: GpuOptions,
    ) -> Result<GpuModel> {
        let full = model.prepare(shapes)?;
        let n = shapes.first().and_then(|s| s.first().copied()).unwrap_or(1);
        if n <= 1 || fits(&ctx, &full, &opts)? || shapes.iter().any(|s| s.first() != Some(&n)) {
            return GpuModel::with_options(ctx, &full, opts);
        }
        for k in (2..=n).filter(|k| n.is_multiple_of(*k)) {
            let cs: Vec<Vec<usize>> = shapes
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    s[0] = n / k;
                    s
                })
                .collect();
            let Ok(chunk) = model.prepare(&cs) else { break };
            if !batch_separable(&full, &chunk, k) {
                break;
            }
            if fits(&ctx, &chunk, &opts)? {
                log::info!("the batch of {n} runs as {k} chunks of {} (storage-binding limit)", n / k);
                let mut gm = GpuModel::with_options(ctx, &chunk, opts)?;
                gm.chunk_into(k, full)?;
                return Ok(gm);
            }
        }
        // not separable, or even one sample is too large: the error names the tensor
        GpuModel::with_options(ctx, &full, opts)
    }

    /// Make this model (built for one chunk) run `k` chunks of the batch of `full`.
    fn chunk_into(&mut self, k: usize, full: Prepared) -> Result<()> {
        let dev = &self.ctx.device;
        let staging = make_staging(&self.ctx, &self.prepared, self.opts.precision, k)?;
        if self.outputs.iter().any(|o| o.host.is_some()) {
            return Err(Error::Gpu("a constant graph output cannot be split into batch chunks".into()));
        }
        let (readback, rb) = make_readback(dev, &mut self.outputs, self.total_ts.as_mut().map(|t| &mut t.2), k);
        self.readback = readback;
        self.readback_bytes = rb;
        self.staging = staging;
        self.chunks = k;
        self.full = Some(full);
        Ok(())
    }

    /// How many chunks the batch runs as (1: all at once).
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    pub fn new(ctx: Arc<GpuContext>, prepared: &Prepared) -> Result<GpuModel> {
        GpuModel::with_options(ctx, prepared, GpuOptions::default())
    }

    pub fn with_options(ctx: Arc<GpuContext>, prepared: &Prepared, opts: GpuOptions) -> Result<GpuModel> {
        // the graph as it will run: the autotuner's choices are per node of this graph, and the
        // models it builds from it must not split it again
        let split;
        let prepared = if opts.f16_split {
            split = super::f16split::split_cancelling_convs(prepared, opts.precision).0;
            &split
        } else {
            prepared
        };
        let opts = GpuOptions { f16_split: false, ..opts };
        if opts.autotune {
            let (tuned, report) = crate::tune::autotune(&ctx, prepared, opts)?;
            let mut gm = GpuModel::with_tuning(ctx, prepared, GpuOptions { autotune: false, ..opts }, &tuned)?;
            gm.tune_report = Some(report);
            return Ok(gm);
        }
        GpuModel::with_tuning(ctx, prepared, opts, &[])
    }

    /// What autotuning measured (when `GpuOptions::autotune` was set).
    pub fn tune_report(&self) -> Option<&serde_json::Value> {
        self.tune_report.as_ref()
    }

    /// Build with measured kernel choices for some convs (by node index; see `crate::tune`).
    pub fn with_tuning(
        ctx: Arc<GpuContext>,
        prepared: &Prepared,
        opts: GpuOptions,
        tuned: &[Option<super::lower::TileChoice>],
    ) -> Result<GpuModel> {
        let p = prepared.clone();
        let g = &p.graph;
        let prec = opts.precision;
        if prec == Precision::F16 && !ctx.shader_f16 {
            return Err(Error::Gpu(format!("--precision f16 needs SHADER_F16, which '{}' lacks", ctx.info.name)));
        }
        empty_tensor_check(&p)?;
        let eb = prec.bytes();
        let plan = plan(&p, eb)?;
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension;
        let coop = opts.coop.unwrap_or(if ctx.coop_ready() { CoopMode::Native } else { CoopMode::Off });
        if coop == CoopMode::Native && !ctx.coop_ready() {
            return Err(Error::Gpu(format!(
                "'{}' has no 16x16x16 f16 cooperative matrices with 32-lane subgroups",
                ctx.info.name
            )));
        }
        let lopts = LowerOpts {
            precision: prec,
            fast_conv: opts.fast_conv,
            max_shared: ctx.limits.max_compute_workgroup_storage_size,
            coop,
            force_tile: opts.force_tile,
            split_k: opts.split_k,
            force_split: opts.force_split,
            im2col: opts.im2col,
            halo: opts.halo,
            tap_major: opts.tap_major,
            wide_epilogue: opts.wide_epilogue,
            thin: opts.thin,
            thin_all: opts.thin_all,
            halo_resident: opts.halo_resident,
            row_loads: opts.row_loads,
            row_quads: opts.row_quads,
            reverse_k: opts.reverse_k,
            max_binding: binding_limit(&ctx, &opts),
        };
        let Lowered { dispatches, aux, consts, scratch_bytes, im2col_bytes } =
            lower(&p, &plan, max_groups, lopts, tuned)?;
        let dev = &ctx.device;
        let lim = binding_limit(&ctx, &opts);

        // size checks, naming the tensor
        for (k, s) in plan.act_sizes.iter().enumerate() {
            let who = p
                .graph
                .nodes
                .iter()
                .flat_map(|n| n.outputs.iter().flatten())
                .find(|v| plan.views[**v].is_some_and(|w| w.buf == BufRef::Act(k)))
                .map(|v| format!("activation '{}' ({})", g.name(*v), crate::tensor::fmt_shape(p.shape(*v))))
                .unwrap_or_else(|| format!("activation buffer {k}"));
            buffer_size_check(lim, &who, *s)?;
        }
        for &v in &g.inputs {
            buffer_size_check(lim, &format!("input '{}'", g.name(v)), numel(p.shape(v)) as u64 * eb)?;
        }
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let (act_bufs, input_bufs, const_bufs, aux_bufs, dummy, params_buf, scratch, im2col) =
            ctx.scoped("allocating GPU buffers", || {
                let act_bufs: Vec<wgpu::Buffer> = plan
                    .act_sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| {
                        dev.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(&format!("act{k}")),
                            size: s.max(16).next_multiple_of(4),
                            usage: storage,
                            mapped_at_creation: false,
                        })
                    })
                    .collect();
                let input_bufs: Vec<wgpu::Buffer> = g
                    .inputs
                    .iter()
                    .map(|&v| {
                        dev.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(g.name(v)),
                            size: (numel(p.shape(v)) as u64 * eb).next_multiple_of(4).max(16),
                            usage: storage,
                            mapped_at_creation: false,
                        })
                    })
                    .collect();
                let mut const_bufs = HashMap::new();
                for &v in &consts {
                    let t = &g.consts[&v];
                    let mut bytes = prec.encode(&t.to_f32_vec());
                    bytes.resize(bytes.len().max(16), 0);
                    const_bufs.insert(
                        v,
                        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some(g.name(v)),
                            contents: &bytes,
                            usage: wgpu::BufferUsages::STORAGE,
                        }),
                    );
                }
                let aux_bufs: Vec<wgpu::Buffer> = aux
                    .iter()
                    .map(|b| {
                        let mut bytes = b.clone();
                        bytes.resize(bytes.len().max(16), 0);
                        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some("table"),
                            contents: &bytes,
                            usage: wgpu::BufferUsages::STORAGE,
                        })
                    })
                    .collect();
                let dummy = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dummy"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                let mut pbytes = vec![0u8; (dispatches.len().max(1) as u64 * PARAM_BYTES) as usize];
                for (i, d) in dispatches.iter().enumerate() {
                    assert!(d.params.len() <= 64, "parameter block too long");
                    let b: &[u8] = bytemuck::cast_slice(&d.params);
                    pbytes[i * PARAM_BYTES as usize..][..b.len()].copy_from_slice(b);
                }
                let params_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: &pbytes,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
                let scratch = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("split-K partial sums"),
                    size: scratch_bytes.max(16),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                let im2col = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("im2col operands"),
                    size: im2col_bytes.max(16),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                (act_bufs, input_bufs, const_bufs, aux_bufs, dummy, params_buf, scratch, im2col)
            })?;
        for (&v, t) in &g.consts {
            if consts.contains(&v) {
                buffer_size_check(lim, &format!("constant '{}'", g.name(v)), t.len() as u64 * eb)?;
            }
        }

        // pipelines, one per specialisation
        let mut keys: HashMap<PipelineKey, usize> = HashMap::new();
        let mut uniq: Vec<&Dispatch> = Vec::new();
        let mut dispatch_pipeline = Vec::with_capacity(dispatches.len());
        for d in &dispatches {
            let key = PipelineKey {
                shader: d.shader,
                entry: d.entry,
                overrides: d.overrides.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
            };
            let i = *keys.entry(key).or_insert_with(|| {
                uniq.push(d);
                uniq.len() - 1
            });
            dispatch_pipeline.push(i);
        }
        let pipelines = build_pipelines(&ctx, prec, &uniq)?;

        // bind groups, once
        let resolve = |b: BufRef| -> &wgpu::Buffer {
            match b {
                BufRef::Act(i) => &act_bufs[i],
                BufRef::Input(i) => &input_bufs[i],
                BufRef::Const(v) => &const_bufs[&v],
                BufRef::Aux(i) => &aux_bufs[i],
                BufRef::Scratch => &scratch,
                BufRef::Im2col => &im2col,
                BufRef::Dummy | BufRef::Unbound => &dummy,
            }
        };
        for d in &dispatches {
            for (j, (b, need)) in d.bindings.iter().zip(&d.min_bytes).enumerate() {
                if *need > 0 && *b != BufRef::Unbound && resolve(*b).size() < *need {
                    return Err(Error::Gpu(format!(
                        "internal: binding {} of a {} dispatch holds {} bytes, the kernel may read {}",
                        j + 1,
                        d.kind,
                        resolve(*b).size(),
                        need
                    )));
                }
            }
        }
        let bind_groups = ctx.scoped("building bind groups", || {
            dispatches
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let layout = pipelines[dispatch_pipeline[i]].get_bind_group_layout(0);
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params_buf,
                            offset: i as u64 * PARAM_BYTES,
                            size: std::num::NonZeroU64::new(PARAM_BYTES),
                        }),
                    }];
                    for (j, b) in d.bindings.iter().enumerate() {
                        if *b == BufRef::Unbound {
                            continue;
                        }
                        entries.push(wgpu::BindGroupEntry {
                            binding: j as u32 + 1,
                            resource: resolve(*b).as_entire_binding(),
                        });
                    }
                    dev.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &layout,
                        entries: &entries,
                    })
                })
                .collect::<Vec<_>>()
        })?;

        // outputs: host constants or regions to read back into one buffer
        let mut outputs = Vec::new();
        for &v in &g.outputs {
            if let Some(t) = g.consts.get(&v) {
                outputs.push(OutputSpec {
                    value: v,
                    host: Some(t.clone()),
                    buf: None,
                    offset_bytes: 0,
                    bytes: 0,
                    readback_offset: 0,
                    shape: t.shape.clone(),
                });
                continue;
            }
            let view = plan.views[v].ok_or_else(|| Error::Model(format!("output '{}' has no storage", g.name(v))))?;
            let shape = p.shape(v).to_vec();
            let bytes = numel(&shape) as u64 * eb;
            outputs.push(OutputSpec {
                value: v,
                host: None,
                buf: Some(view.buf),
                offset_bytes: view.offset * eb,
                bytes,
                readback_offset: 0,
                shape,
            });
            debug_assert!((view.offset * eb).is_multiple_of(4), "outputs start at aligned offsets");
        }
        let mut total_ts = ctx.timestamps.then(|| {
            let q = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("inference time"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let r = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("inference time"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (q, r, 0)
        });
        let (readback, rb) = make_readback(dev, &mut outputs, total_ts.as_mut().map(|t| &mut t.2), 1);

        let staging = make_staging(&ctx, &p, prec, 1)?;
        Ok(GpuModel {
            ctx,
            opts,
            prepared: p,
            chunks: 1,
            full: None,
            staging,
            tune_report: None,
            plan,
            dispatches,
            pipelines,
            dispatch_pipeline,
            bind_groups,
            input_bufs,
            outputs,
            readback,
            readback_bytes: rb,
            total_ts,
            act_bufs,
            const_bufs,
            aux_bufs,
            scratch,
            im2col,
            dummy,
            params: params_buf,
        })
    }

    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    fn buffer(&self, b: BufRef) -> &wgpu::Buffer {
        match b {
            BufRef::Act(i) => &self.act_bufs[i],
            BufRef::Input(i) => &self.input_bufs[i],
            BufRef::Const(v) => &self.const_bufs[&v],
            BufRef::Aux(i) => &self.aux_bufs[i],
            BufRef::Scratch => &self.scratch,
            BufRef::Im2col => &self.im2col,
            BufRef::Dummy | BufRef::Unbound => &self.dummy,
        }
    }

    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self.run_with_stats(inputs, false)?.0)
    }

    /// Run once; with `profile`, every dispatch gets GPU timestamps (when the adapter has
    /// TIMESTAMP_QUERY) and the statistics carry per-op times.
    pub fn run_with_stats(&self, inputs: &[Tensor], profile: bool) -> Result<(Vec<Tensor>, RunStats)> {
        crate::cpu::check_inputs(self.full.as_ref().unwrap_or(&self.prepared), inputs)?;
        let t0 = std::time::Instant::now();
        let ctx = &self.ctx;
        let (k, nd) = (self.chunks, self.dispatches.len());
        let timestamps = profile && ctx.timestamps && nd > 0 && nd * k * 2 <= 4096;
        let nq = (nd * k * 2) as u32;
        let query = timestamps.then(|| {
            ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("ts"),
                ty: wgpu::QueryType::Timestamp,
                count: nq,
            })
        });
        let ts_bufs = timestamps.then(|| {
            (
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("ts resolve"),
                    size: nq as u64 * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("ts read"),
                    size: nq as u64 * 8,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            )
        });
        // each chunk at its aligned stride, copied into the mapped upload buffer
        for ((buf, stride), t) in self.staging.iter().zip(inputs) {
            let owned;
            let v = match t.as_f32() {
                Ok(v) => v,
                Err(_) => {
                    owned = t.to_f32_vec();
                    &owned
                }
            };
            let per = v.len() / k;
            let eb = self.opts.precision.bytes() as usize;
            let mut bytes = vec![0u8; *stride as usize * k];
            for c in 0..k {
                let dst = &mut bytes[c * *stride as usize..][..per * eb];
                self.opts.precision.encode_into(&v[c * per..(c + 1) * per], dst);
            }
            ctx.write_mapped(buf, &bytes)?;
        }
        ctx.scoped("running the model", || {
            let mut enc =
                ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("inference") });
            for c in 0..k {
                for ((st, stride), buf) in self.staging.iter().zip(&self.input_bufs) {
                    enc.copy_buffer_to_buffer(st, c as u64 * stride, buf, 0, *stride);
                }
                if let Some(q) = &query {
                    for (i, d) in self.dispatches.iter().enumerate() {
                        let qi = 2 * (c * nd + i) as u32;
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: q,
                                beginning_of_pass_write_index: Some(qi),
                                end_of_pass_write_index: Some(qi + 1),
                            }),
                        });
                        pass.set_pipeline(&self.pipelines[self.dispatch_pipeline[i]]);
                        pass.set_bind_group(0, &self.bind_groups[i], &[]);
                        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                    }
                } else if nd > 0 {
                    // the inference's begin and end timestamps: first and last chunk's passes
                    let tw = self.total_ts.as_ref().filter(|_| c == 0 || c + 1 == k).map(|(q, _, _)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: q,
                            beginning_of_pass_write_index: (c == 0).then_some(0),
                            end_of_pass_write_index: (c + 1 == k).then_some(1),
                        }
                    });
                    let mut pass = enc
                        .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("unet"), timestamp_writes: tw });
                    for (i, d) in self.dispatches.iter().enumerate() {
                        pass.set_pipeline(&self.pipelines[self.dispatch_pipeline[i]]);
                        pass.set_bind_group(0, &self.bind_groups[i], &[]);
                        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                    }
                }
                if let Some(rb) = &self.readback {
                    for o in &self.outputs {
                        if let Some(b) = o.buf
                            && o.bytes > 0
                        {
                            let stride = o.bytes.next_multiple_of(4);
                            enc.copy_buffer_to_buffer(
                                self.buffer(b),
                                o.offset_bytes,
                                rb,
                                o.readback_offset + c as u64 * stride,
                                stride,
                            );
                        }
                    }
                }
            }
            if let (Some(q), Some((res, rd))) = (&query, &ts_bufs) {
                enc.resolve_query_set(q, 0..nq, res, 0);
                enc.copy_buffer_to_buffer(res, 0, rd, 0, nq as u64 * 8);
            }
            if let (None, Some((q, res, at)), Some(rb), false) =
                (&query, &self.total_ts, &self.readback, self.dispatches.is_empty())
            {
                enc.resolve_query_set(q, 0..2, res, 0);
                enc.copy_buffer_to_buffer(res, 0, rb, *at, 16);
            }
            ctx.queue.submit([enc.finish()]);
        })?;
        let raw = match &self.readback {
            Some(rb) => ctx.read_buffer(rb, self.readback_bytes)?,
            None => {
                ctx.wait()?;
                vec![]
            }
        };
        let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut outs = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            if let Some(t) = &o.host {
                outs.push((**t).clone());
                continue;
            }
            let stride = o.bytes.next_multiple_of(4) as usize;
            let mut v = Vec::with_capacity(numel(&o.shape) * k);
            for c in 0..k {
                let b = &raw[o.readback_offset as usize + c * stride..][..o.bytes as usize];
                v.extend(self.opts.precision.decode(b));
            }
            let mut shape = o.shape.clone();
            if k > 1 {
                shape[0] *= k;
            }
            let dt = self.prepared.dtype(o.value);
            outs.push(Tensor::with_dtype(dt, shape, crate::tensor::Data::F32(v)));
        }
        let total_gpu_ms = match (&query, &self.total_ts, self.dispatches.is_empty()) {
            (None, Some((_, _, at)), false) => {
                let t: Vec<u64> = bytemuck::pod_collect_to_vec(&raw[*at as usize..*at as usize + 16]);
                Some(t[1].wrapping_sub(t[0]) as f64 * ctx.queue.get_timestamp_period() as f64 * 1e-6)
            }
            _ => None,
        };
        let mut stats = RunStats {
            gpu_ms_total: total_gpu_ms,
            dispatches: nd * k,
            uploads: self.input_bufs.len(),
            readbacks: usize::from(self.readback.is_some()),
            concat_copies: self.dispatches.iter().filter(|d| d.concat_copy).count() * k,
            peak_activation_bytes: self.plan.peak_activation_bytes,
            naive_activation_bytes: self.plan.naive_activation_bytes,
            submits: 1,
            wall_ms,
            flops: self.dispatches.iter().map(|d| d.flops).sum::<u64>() * k as u64,
            ..Default::default()
        };
        if let Some((_, rd)) = &ts_bufs {
            let raw = ctx.read_buffer(rd, nq as u64 * 8)?;
            let t: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            let period = ctx.queue.get_timestamp_period() as f64;
            let mut by_node = vec![0.0; self.prepared.graph.nodes.len()];
            let mut total = 0.0;
            for c in 0..k {
                for (i, d) in self.dispatches.iter().enumerate() {
                    let q = 2 * (c * nd + i);
                    let ms = t[q + 1].wrapping_sub(t[q]) as f64 * period * 1e-6;
                    *stats.gpu_ms_by_kind.entry(d.kind.clone()).or_default() += ms;
                    by_node[d.node] += ms;
                    total += ms;
                }
            }
            stats.gpu_ms_by_node = by_node;
            stats.gpu_ms_total = Some(total);
        }
        Ok((outs, stats))
    }

    /// The dispatches, for statistics and tests.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::par_map;

    #[test]
    fn par_map_keeps_the_order_of_its_items() {
        // more items than threads, with uneven work, so that workers finish out of order
        let items: Vec<u64> = (0..97).collect();
        let out = par_map(&items, |&i| {
            std::thread::sleep(std::time::Duration::from_micros((97 - i) * 20));
            (i, std::thread::current().id())
        });
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), items);
        assert!(par_map(&[] as &[u64], |&i| i).is_empty());
        assert_eq!(par_map(&[5u64], |&i| i + 1), vec![6]);
    }

    #[test]
    #[should_panic(expected = "item 40")]
    fn par_map_passes_a_workers_panic_on() {
        let items: Vec<u64> = (0..64).collect();
        par_map(&items, |&i| assert_ne!(i, 40, "item 40"));
    }
}
