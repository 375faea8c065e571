//! The image pipeline of `unet-gpu infer`: a picture goes through a preset's pre-processing, the
//! network (on the GPU or the CPU reference) and the preset's post-processing.
//!
//! - Models with a dynamic input size get the image itself: it is padded (reflect, at the bottom
//!   and right) to the model's required size multiple and the result is cropped back. The
//!   multiple is found from the graph (the input size divided by the smallest feature-map size,
//!   as a power of two; `--multiple` overrides it).
//! - Images larger than the tile size (1024 px by default, less when the GPU's largest storage
//!   binding needs it) run in overlapping tiles whose margins (4 x the multiple, at least 16 px,
//!   at most a quarter of the tile) are cropped away; tile positions are multiples of the size multiple, so every tile sees the
//!   pooling grid the whole image would. The model is prepared (and on the GPU built) once per
//!   distinct tile shape. Images over 2 megapixels show a progress bar on a terminal.
//! - Models with a fixed input size (u2netp: 320x320) get the image resized to that size
//!   (Lanczos3) and their output resized back, as rembg does.
//!
//! Skip ablation and activation dumps edit the prepared graph of each tile shape (see
//! [`crate::skips`]) before it runs, so they work the same on both executors.

use crate::error::{Error, Result};
use crate::gpu::exec::GpuOptions;
use crate::gpu::{GpuContext, GpuModel};
use crate::graph::Dim;
use crate::graph::prepare::Prepared;
use crate::imageio::Picture;
use crate::presets::Preset;
use crate::skips::{DumpItem, SkipSelection, UnetStructure};
use crate::{Model, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The models built into the binary: (name, file under weights/, description).
pub const SHIPPED: &[(&str, &str, &str)] = &[
    ("colorize", "colorize.onnx", "colourisation U-Net with skip connections (the default)"),
    ("noskip", "colorize_noskip.onnx", "the same U-Net trained without skip connections"),
];

/// The ONNX bytes of a shipped model, by name (`colorize`, `noskip`).
pub fn shipped_bytes(name: &str) -> Option<&'static [u8]> {
    match shipped_name(name)? {
        "colorize" => Some(include_bytes!("../weights/colorize.onnx")),
        _ => Some(include_bytes!("../weights/colorize_noskip.onnx")),
    }
}

/// A shipped model's canonical name, if `spec` names one.
pub fn shipped_name(spec: &str) -> Option<&'static str> {
    match spec {
        "colorize" => Some("colorize"),
        "noskip" | "colorize_noskip" | "colorize-noskip" => Some("noskip"),
        _ => None,
    }
}

/// Load a model given as a shipped name or a path; the flag says whether it is a shipped one.
pub fn load_model(spec: &str) -> Result<(Model, bool)> {
    if let Some(bytes) = shipped_bytes(spec) {
        return Ok((Model::from_bytes(bytes, shipped_name(spec).unwrap_or(spec))?, true));
    }
    let path = Path::new(spec);
    if !path.exists() {
        let names: Vec<&str> = SHIPPED.iter().map(|s| s.0).collect();
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no such model file (the shipped models are: {})", names.join(", ")),
            ),
        ));
    }
    Ok((Model::load(path)?, false))
}

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Gpu,
    Cpu,
    /// The GPU, or the CPU reference with a one-line warning when there is no GPU adapter.
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            "auto" => Ok(DeviceChoice::Auto),
            _ => Err(format!("device '{s}' is not gpu, cpu or auto")),
        }
    }
}

/// Open the device: `None` means the CPU reference.
pub fn open_device(choice: DeviceChoice, adapter: Option<&str>) -> Result<Option<Arc<GpuContext>>> {
    match choice {
        DeviceChoice::Cpu => Ok(None),
        DeviceChoice::Gpu => Ok(Some(GpuContext::new(adapter)?)),
        DeviceChoice::Auto => match GpuContext::new(adapter) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                eprintln!("warning: {e}; running on the CPU reference instead");
                Ok(None)
            }
        },
    }
}

#[derive(Clone, Debug)]
pub struct InferOptions {
    /// Feed zeros in place of these skip connections.
    pub ablate: Option<SkipSelection>,
    /// Return the activation dumps (encoder levels, bottleneck, skips, decoder levels).
    pub dump: bool,
    /// Required size multiple (default: found from the graph).
    pub multiple: Option<usize>,
    /// Largest tile side in pixels.
    pub tile: usize,
    /// Show a progress bar for large images (only drawn on a terminal).
    pub progress: bool,
    /// How the GPU runs the network (precision, autotuning, ...); ignored on the CPU.
    pub gpu: GpuOptions,
}

impl Default for InferOptions {
    fn default() -> Self {
        InferOptions {
            ablate: None,
            dump: false,
            multiple: None,
            tile: 1024,
            progress: true,
            gpu: GpuOptions::default(),
        }
    }
}

/// One dumped tensor, stitched over the tiles and cropped to the image: `channels` planes of
/// `height * width`.
#[derive(Clone, Debug)]
pub struct Dump {
    pub stem: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

struct Runner {
    prepared: Prepared,
    gpu: Option<GpuModel>,
    structure: UnetStructure,
    /// Dump items and their positions in the output list.
    dumps: Vec<(DumpItem, usize)>,
}

/// A model made ready for images: the device, the size rules, and per tile shape a prepared
/// graph (with ablation and dump outputs applied) and its GPU build.
pub struct Engine {
    pub model: Model,
    ctx: Option<Arc<GpuContext>>,
    opts: InferOptions,
    /// Channels fed to the network.
    pub in_channels: usize,
    /// A fixed input size (H, W) declared by the model.
    pub fixed_hw: Option<(usize, usize)>,
    /// Required size multiple of dynamic-size models.
    pub multiple: usize,
    /// Tile side actually used.
    pub tile: usize,
    runners: HashMap<(usize, usize), Runner>,
}

fn fixed(d: &Dim) -> Option<usize> {
    if let Dim::Fixed(n) = d { Some(*n) } else { None }
}

/// The declared (channels, fixed H x W) of a model's single 4-D input.
pub fn declared_input(model: &Model) -> Result<(Option<usize>, Option<(usize, usize)>)> {
    let g = &model.graph;
    if g.inputs.len() != 1 {
        let names: Vec<&str> = g.inputs.iter().map(|&v| g.name(v)).collect();
        return Err(Error::Model(format!(
            "{}: image inference feeds one input, the model has {}: {}",
            model.source,
            names.len(),
            names.join(", ")
        )));
    }
    let vi = &g.values[g.inputs[0]];
    match &vi.dims {
        None => Ok((None, None)),
        Some(d) if d.len() == 4 => {
            if let Some(n) = fixed(&d[0])
                && n != 1
            {
                return Err(Error::Model(format!(
                    "{}: input '{}' has a fixed batch of {n}; image inference runs batch 1",
                    model.source, vi.name
                )));
            }
            let hw = match (fixed(&d[2]), fixed(&d[3])) {
                (Some(h), Some(w)) => Some((h, w)),
                _ => None,
            };
            Ok((fixed(&d[1]), hw))
        }
        Some(d) => Err(Error::Model(format!(
            "{}: input '{}' has rank {} {}; image inference needs an NCHW input",
            model.source,
            vi.name,
            d.len(),
            crate::graph::fmt_dims(d)
        ))),
    }
}

/// Largest tensor of a prepared graph, in bytes (float32).
fn max_tensor_bytes(p: &Prepared) -> u64 {
    p.types.iter().flatten().map(|(_, s)| crate::tensor::numel(s) as u64 * 4).max().unwrap_or(0)
}

/// Smallest feature-map height and width (4-D float activations, global 1x1 reductions left out).
fn min_feature_hw(p: &Prepared) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for n in &p.graph.nodes {
        for &v in n.outputs.iter().flatten() {
            if let Some((dt, s)) = &p.types[v]
                && s.len() == 4
                && dt.is_float()
                && s[2] * s[3] > 1
            {
                best = Some(match best {
                    None => (s[2], s[3]),
                    Some((h, w)) => (h.min(s[2]), w.min(s[3])),
                });
            }
        }
    }
    best
}

fn pow2_floor(x: usize) -> usize {
    if x <= 1 { 1 } else { 1 << (usize::BITS - 1 - x.leading_zeros()) }
}

/// Reflect an index into [0, n) (mirror without repeating the edge, periodic for any distance).
pub fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Tile windows along one axis of padded length `len`: (start, core start, core end), every start
/// and core boundary a multiple of `k`, each window `t` long (or `len` when it fits).
pub fn tile_axis(len: usize, t: usize, margin: usize, k: usize) -> Vec<(usize, usize, usize)> {
    if len <= t {
        return vec![(0, 0, len)];
    }
    let step_max = t.saturating_sub(2 * margin + k).max(k);
    let n = (len - t).div_ceil(step_max) + 1;
    let starts: Vec<usize> =
        (0..n).map(|i| if i + 1 == n { len - t } else { (i * (len - t) / (n - 1)) / k * k }).collect();
    let mut out = Vec::with_capacity(n);
    let mut core_start = 0;
    for i in 0..n {
        let core_end = if i + 1 == n {
            len
        } else {
            let mid = (starts[i + 1] + starts[i] + t) / 2 / k * k;
            mid.clamp(starts[i + 1], starts[i] + t)
        };
        out.push((starts[i], core_start, core_end));
        core_start = core_end;
    }
    out
}

impl Engine {
    /// Make `model` ready for pictures of the preset (`preset` decides the channels fed).
    pub fn new(model: Model, ctx: Option<Arc<GpuContext>>, preset: &Preset, opts: InferOptions) -> Result<Engine> {
        let (decl_c, fixed_hw) = declared_input(&model)?;
        let in_channels = preset.input_channels(decl_c)?;
        let mut e = Engine { model, ctx, opts, in_channels, fixed_hw, multiple: 1, tile: 0, runners: HashMap::new() };
        if let Some(m) = e.opts.multiple
            && m == 0
        {
            return Err(Error::Data("--multiple must be at least 1".into()));
        }
        if fixed_hw.is_none() {
            // probe the graph at a size every common U-Net takes
            let probe = 512;
            let probed = e.model.prepare(&[vec![1, in_channels, probe, probe]]);
            let (multiple, bpp) = match (&probed, e.opts.multiple) {
                (Ok(p), m) => {
                    let found = min_feature_hw(p).map(|(h, w)| pow2_floor((probe / h).min(probe / w))).unwrap_or(1);
                    (m.unwrap_or(found), max_tensor_bytes(p) as f64 / (probe * probe) as f64)
                }
                (Err(_), Some(m)) => (m, 0.0),
                (Err(err), None) => {
                    return Err(Error::Model(format!(
                        "{}: could not prepare the model for a {probe}x{probe} image to find its size multiple ({err}); pass --multiple N",
                        e.model.source
                    )));
                }
            };
            e.multiple = multiple.max(1);
            let k = e.multiple;
            let mut tile = e.opts.tile.max(k) / k * k;
            if let Some(ctx) = &e.ctx
                && bpp > 0.0
            {
                let lim = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size) as f64;
                let side = ((lim / bpp).sqrt() as usize) / k * k;
                if side >= 2 * k && side < tile {
                    log::info!("tile side {tile} reduced to {side} for the device's largest storage binding");
                    tile = side;
                }
            }
            // keep room for the margins
            e.tile = tile.max((8 * k).min(e.opts.tile.max(k) / k * k)).max(k);
        }
        Ok(e)
    }

    /// Whether the network runs on the GPU (else the CPU reference).
    pub fn on_gpu(&self) -> bool {
        self.ctx.is_some()
    }

    pub fn device_description(&self) -> String {
        match &self.ctx {
            Some(c) => c.describe(),
            None => "CPU reference".into(),
        }
    }

    /// Tile margin: 4 x the multiple, at least 16 px, at most a quarter of the tile.
    fn margin(&self) -> usize {
        let k = self.multiple;
        (4 * k).max(16).min((self.tile / 4 / k * k).max(k))
    }

    /// The prepared graph and U-Net structure for an input of h x w (as fed to the network).
    pub fn structure(&mut self, h: usize, w: usize) -> Result<(&Prepared, &UnetStructure)> {
        let r = self.runner(h, w)?;
        Ok((&r.prepared, &r.structure))
    }

    fn runner(&mut self, h: usize, w: usize) -> Result<&Runner> {
        if !self.runners.contains_key(&(h, w)) {
            let mut p = self.model.prepare(&[vec![1, self.in_channels, h, w]])?;
            let structure = crate::skips::analyze(&p);
            if let Some(sel) = &self.opts.ablate {
                let chosen: Vec<crate::skips::Skip> = sel
                    .select(&structure)
                    .map_err(|e| Error::Model(format!("{}: {e}", self.model.source)))?
                    .into_iter()
                    .cloned()
                    .collect();
                crate::skips::ablate(&mut p, &chosen.iter().collect::<Vec<_>>());
            }
            let mut dumps = Vec::new();
            if self.opts.dump {
                let items = structure.dump_items(&p);
                let pos = crate::skips::add_outputs(&mut p, &items.iter().map(|d| d.value).collect::<Vec<_>>());
                dumps = items.into_iter().zip(pos).collect();
            }
            let gpu = match &self.ctx {
                Some(ctx) => Some(GpuModel::with_options(ctx.clone(), &p, self.opts.gpu)?),
                None => None,
            };
            self.runners.insert((h, w), Runner { prepared: p, gpu, structure, dumps });
        }
        Ok(&self.runners[&(h, w)])
    }

    /// Run the network on one input tensor [1, C, h, w]; returns all outputs.
    fn run_tensor(&mut self, x: Tensor) -> Result<(Vec<Tensor>, Vec<(DumpItem, usize)>)> {
        let (h, w) = (x.shape[2], x.shape[3]);
        let r = self.runner(h, w)?;
        let outs = match &r.gpu {
            Some(g) => g.run(&[x])?,
            None => crate::cpu::run(&r.prepared, &[x])?,
        };
        Ok((outs, r.dumps.clone()))
    }

    /// Run the network on planes of the image size (`w` x `h`, one per input channel): the
    /// output planes at the same size, and the dumps. Dynamic models: padding, tiles, crop;
    /// fixed-size models: the planes must already have the model's size.
    pub fn run_planes(&mut self, planes: &[Vec<f32>], w: usize, h: usize) -> Result<(Vec<Vec<f32>>, Vec<Dump>)> {
        if planes.len() != self.in_channels || planes.iter().any(|p| p.len() != w * h) {
            return Err(Error::Data(format!(
                "internal: {} planes for a {w}x{h} image, expected {}",
                planes.len(),
                self.in_channels
            )));
        }
        if let Some((fh, fw)) = self.fixed_hw {
            if (fh, fw) != (h, w) {
                return Err(Error::Data(format!("the model takes {fw}x{fh} images, got {w}x{h}")));
            }
            let x = Tensor::f32(vec![1, planes.len(), h, w], planes.concat());
            let (outs, dumps) = self.run_tensor(x)?;
            let y = &outs[0];
            if y.rank() != 4 {
                return Err(Error::Model(format!("the model's output has shape {:?}, expected NCHW", y.shape)));
            }
            let (c, oh, ow) = (y.shape[1], y.shape[2], y.shape[3]);
            let yd = y.as_f32().map_err(Error::Data)?;
            let out = (0..c).map(|k| yd[k * oh * ow..(k + 1) * oh * ow].to_vec()).collect();
            let dumps = dumps
                .into_iter()
                .filter_map(|(item, i)| {
                    let t = &outs[i];
                    (t.rank() == 4).then(|| Dump {
                        stem: item.stem,
                        channels: t.shape[1],
                        height: t.shape[2],
                        width: t.shape[3],
                        data: t.to_f32_vec(),
                    })
                })
                .collect();
            return Ok((out, dumps));
        }
        let k = self.multiple;
        let (hp, wp) = (h.div_ceil(k) * k, w.div_ceil(k) * k);
        let ys = tile_axis(hp, self.tile, self.margin(), k);
        let xs = tile_axis(wp, self.tile, self.margin(), k);
        let (th, tw) = (self.tile.min(hp), self.tile.min(wp));
        let c = planes.len();
        let ntiles = ys.len() * xs.len();
        let bar = if self.opts.progress && w * h > 2_000_000 {
            let b = indicatif::ProgressBar::new(ntiles as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles, {elapsed} ")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(format!("{w}x{h}"));
            Some(b)
        } else {
            None
        };
        let mut out: Vec<Vec<f32>> = Vec::new();
        // dumped tensors: stem, and (factor to the input's size, padded planes) when stitchable
        let mut dump_acc: Vec<(String, Option<(usize, Vec<Vec<f32>>)>)> = Vec::new();
        for &(sy, cy0, cy1) in &ys {
            for &(sx, cx0, cx1) in &xs {
                let mut data = vec![0f32; c * th * tw];
                for (ch, plane) in planes.iter().enumerate() {
                    for y in 0..th {
                        let iy = reflect((sy + y) as isize, h);
                        let row = &plane[iy * w..(iy + 1) * w];
                        let dst = &mut data[(ch * th + y) * tw..][..tw];
                        for (x, d) in dst.iter_mut().enumerate() {
                            *d = row[reflect((sx + x) as isize, w)];
                        }
                    }
                }
                let (outs, dumps) = self.run_tensor(Tensor::f32(vec![1, c, th, tw], data))?;
                let y = &outs[0];
                if y.rank() != 4 || y.shape[2] != th || y.shape[3] != tw {
                    return Err(Error::Model(format!(
                        "{}: the output has shape {:?} for an input of {th}x{tw}; image inference needs an output of the input's size",
                        self.model.source, y.shape
                    )));
                }
                if out.is_empty() {
                    out = vec![vec![0f32; hp * wp]; y.shape[1]];
                    let single = ys.len() == 1 && xs.len() == 1;
                    for (item, i) in &dumps {
                        let s = &outs[*i].shape;
                        let f = if s.len() == 4 && s[2] > 0 && s[3] > 0 { th / s[2] } else { 0 };
                        let ok = f > 0
                            && s[2] * f == th
                            && s[3] * f == tw
                            && hp.is_multiple_of(f)
                            && wp.is_multiple_of(f)
                            && (single || k.is_multiple_of(f));
                        if !ok {
                            log::warn!("activation {} has shape {s:?}; not dumped", item.stem);
                        }
                        dump_acc
                            .push((item.stem.clone(), ok.then(|| (f, vec![vec![0f32; (hp / f) * (wp / f)]; s[1]]))));
                    }
                }
                let yd = y.as_f32().map_err(Error::Data)?;
                stitch(&mut out, yd, (th, tw), wp, (sy, cy0, cy1), (sx, cx0, cx1));
                for ((_, acc), (_, i)) in dump_acc.iter_mut().zip(&dumps) {
                    if let Some((f, planes)) = acc {
                        let f = *f;
                        let t = outs[*i].as_f32().map_err(Error::Data)?;
                        stitch(
                            planes,
                            t,
                            (th / f, tw / f),
                            wp / f,
                            (sy / f, cy0 / f, cy1 / f),
                            (sx / f, cx0 / f, cx1 / f),
                        );
                    }
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let cropped: Vec<Vec<f32>> = out.into_iter().map(|p| crop(&p, wp, w, h)).collect();
        let dumps = dump_acc
            .into_iter()
            .filter_map(|(stem, acc)| {
                let (f, planes) = acc?;
                let (dh, dw) = (h.div_ceil(f), w.div_ceil(f));
                let data: Vec<f32> = planes.iter().flat_map(|p| crop(p, wp / f, dw, dh)).collect();
                Some(Dump { stem, channels: planes.len(), height: dh, width: dw, data })
            })
            .collect();
        Ok((cropped, dumps))
    }
}

fn crop(p: &[f32], pw: usize, w: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        out.extend_from_slice(&p[y * pw..y * pw + w]);
    }
    out
}

/// Copy the core `[cy0, cy1) x [cx0, cx1)` of a tile's output (channels x th x tw, placed at
/// (sy, sx)) into the padded planes of width `wp`.
fn stitch(
    out: &mut [Vec<f32>],
    tile: &[f32],
    (th, tw): (usize, usize),
    wp: usize,
    (sy, cy0, cy1): (usize, usize, usize),
    (sx, cx0, cx1): (usize, usize, usize),
) {
    for (ch, plane) in out.iter_mut().enumerate() {
        for y in cy0..cy1 {
            let src = &tile[(ch * th + (y - sy)) * tw..][..tw];
            plane[y * wp + cx0..y * wp + cx1].copy_from_slice(&src[cx0 - sx..cx1 - sx]);
        }
    }
}

/// Run a picture through the preset and the engine: the output picture (the input's size) and
/// the activation dumps.
pub fn infer_picture(engine: &mut Engine, preset: &Preset, pic: &Picture) -> Result<(Picture, Vec<Dump>)> {
    let (w, h) = (pic.width, pic.height);
    let (out, dumps) = match engine.fixed_hw {
        Some((fh, fw)) if (fh, fw) != (h, w) => {
            let color: Vec<Vec<f32>> = pic.planes[..if pic.is_gray() { 1 } else { 3 }].to_vec();
            let mut small = Picture::new(fw, fh, crate::imageio::resize_planes(&color, w, h, fw, fh));
            if let Some(a) = pic.alpha() {
                small.planes.extend(crate::imageio::resize_planes(&[a.to_vec()], w, h, fw, fh));
            }
            let x = preset.preprocess(&small, engine.in_channels)?;
            let (y, dumps) = engine.run_planes(&x, fw, fh)?;
            let post = preset.postprocess(y)?;
            let back = crate::imageio::resize_planes(&post, fw, fh, w, h)
                .into_iter()
                .map(|p| p.into_iter().map(|v| v.clamp(0.0, 1.0)).collect())
                .collect();
            (back, dumps)
        }
        _ => {
            let x = preset.preprocess(pic, engine.in_channels)?;
            let (y, dumps) = engine.run_planes(&x, w, h)?;
            (preset.postprocess(y)?, dumps)
        }
    };
    let mut result = preset.compose(out, pic);
    result.sixteen_bit = pic.sixteen_bit;
    Ok((result, dumps))
}

/// A grid of a dump's channels, each normalised to its own min/max, with 1-px white separators.
pub fn dump_grid(d: &Dump) -> Picture {
    let c = d.channels.max(1);
    let cols = (c as f64).sqrt().ceil() as usize;
    let rows = c.div_ceil(cols);
    let (gw, gh) = (cols * d.width + cols - 1, rows * d.height + rows - 1);
    let mut img = vec![1f32; gw * gh];
    let n = d.width * d.height;
    for ch in 0..d.channels {
        let plane = &d.data[ch * n..(ch + 1) * n];
        let (lo, hi) = plane
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let range = hi - lo;
        let (ox, oy) = ((ch % cols) * (d.width + 1), (ch / cols) * (d.height + 1));
        for y in 0..d.height {
            for x in 0..d.width {
                let v = plane[y * d.width + x];
                img[(oy + y) * gw + ox + x] = if range > 0.0 && v.is_finite() { (v - lo) / range } else { 0.0 };
            }
        }
    }
    Picture::new(gw, gh, vec![img])
}

/// Write each dump as `DIR/<stem>.png`; returns the files written (none are left on error).
pub fn write_dumps(dir: &Path, dumps: &[Dump]) -> Result<Vec<PathBuf>> {
    crate::imageio::check_dir_usable(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for d in dumps {
        let path = dir.join(format!("{}.png", d.stem));
        if let Err(e) = crate::imageio::write(&path, &dump_grid(d), false) {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e);
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let v: Vec<usize> = (-4..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(v, vec![2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect(7, 1), 0);
    }

    #[test]
    fn tiles_cover_the_axis_with_aligned_cores_and_margins() {
        for &(len, t, m, k) in &[
            (64, 64, 16, 8),
            (1000, 256, 32, 8),
            (1024, 1024, 32, 8),
            (1032, 1024, 32, 8),
            (4096, 512, 64, 16),
            (90, 40, 10, 2),
        ] {
            let tiles = tile_axis(len, t, m, k);
            let mut pos = 0;
            for (i, &(s, c0, c1)) in tiles.iter().enumerate() {
                assert_eq!(s % k, 0, "{len} {t}: start {s}");
                assert_eq!(c0, pos, "cores must be contiguous");
                assert!(c0 < c1 && s <= c0 && c1 <= s + t.min(len));
                assert!(c1 % k == 0 || c1 == len);
                if i > 0 {
                    assert!(c0 - s + k >= m, "{len} {t} {m} {k}: left margin {} at tile {i}", c0 - s);
                }
                if i + 1 < tiles.len() {
                    assert!(s + t - c1 + k >= m, "{len} {t} {m} {k}: right margin {} at tile {i}", s + t - c1);
                }
                pos = c1;
            }
            assert_eq!(pos, len);
        }
    }
}
