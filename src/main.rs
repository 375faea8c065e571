//! The `unet-gpu` command line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use unet_gpu::bench::BenchOpts;
use unet_gpu::gpu::exec::GpuOptions;
use unet_gpu::gpu::lower::CoopMode;
use unet_gpu::gpu::{GpuContext, GpuModel, Precision};
use unet_gpu::graph::prepare::Prepared;
use unet_gpu::graph::{Dim, fmt_dims};
use unet_gpu::tensor::fmt_shape;
use unet_gpu::{Model, Tensor, npy};

mod cli_image;

#[derive(Parser)]
#[command(name = "unet-gpu", version, about = "Run ONNX-exported U-Nets on the GPU (wgpu + WGSL) or the CPU reference")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RowLoads {
    On,
    Off,
    Quads,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Thin {
    On,
    Off,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Coop {
    Auto,
    Off,
    Native,
    Emulate,
}

impl Coop {
    fn mode(self) -> Option<CoopMode> {
        match self {
            Coop::Auto => None,
            Coop::Off => Some(CoopMode::Off),
            Coop::Native => Some(CoopMode::Native),
            Coop::Emulate => Some(CoopMode::Emulate),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    Cpu,
    Gpu,
    Auto,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a model on a .npy input and write its first output as .npy
    Run {
        /// The ONNX model (external data is read from beside it)
        model: PathBuf,
        /// float32 .npy holding the model's single input, in the model's own layout
        #[arg(long)]
        input: PathBuf,
        /// Where to write the model's first output (float32 .npy)
        #[arg(long)]
        output: Option<PathBuf>,
        /// Write every output as DIR/<output name>.npy
        #[arg(long, value_name = "DIR")]
        all_outputs: Option<PathBuf>,
        /// Where to run: the GPU (default), the CPU reference, or the GPU with a fallback to the CPU
        #[arg(long, value_enum, default_value_t = Device::Gpu)]
        device: Device,
        /// GPU adapter to use (a substring of its name; also UNET_GPU_ADAPTER)
        #[arg(long)]
        adapter: Option<String>,
        /// Write run statistics (dispatches, transfers, memory, per-op GPU time) as JSON
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
        /// GPU storage precision: f32 (default), or f16 (f32 arithmetic; tensor cores where the
        /// adapter has cooperative matrices)
        #[arg(long, default_value = "f32")]
        precision: Precision,
        /// With f16: tensor cores (auto: when the adapter has them), or off, or their scalar emulation
        #[arg(long, value_enum, default_value_t = Coop::Auto)]
        coop: Coop,
        /// With f16 on tensor cores: write each conv's operand out with an im2col pass and read it
        /// as vectors, instead of gathering it in the GEMM
        #[arg(long)]
        im2col: bool,
        /// With f16 on tensor cores: stride-1 convs whose input channels are a multiple of 16 stage
        /// one input patch per channel block for all taps (halo tile) instead of gathering per tap
        #[arg(long)]
        halo: bool,
        /// Time every conv kernel shape on this GPU first and keep the fastest per conv
        #[arg(long)]
        autotune: bool,
        /// With --autotune: keep the measured choices in FILE and reuse them when the model,
        /// input size, options, adapter and driver match
        #[arg(long, value_name = "FILE")]
        tune_cache: Option<PathBuf>,
    },
    /// Time a model on the GPU: median and min GPU time, wall time, GFLOP/s, per-layer times
    Bench {
        model: PathBuf,
        /// Input height x width (default: the model's declared size, or 256x256)
        #[arg(long, value_name = "HxW")]
        size: Option<String>,
        /// Batch size (default: the model's declared batch, or 1); a batch too large for one
        /// storage binding runs in chunks
        #[arg(long, value_parser = |s: &str| cli_image::count_at_least(s, 1))]
        batch: Option<usize>,
        #[arg(long, default_value = "f32")]
        precision: Precision,
        /// Timed runs (at least 1)
        #[arg(long, default_value_t = 20, value_parser = |s: &str| cli_image::count_at_least(s, 1))]
        iters: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Also time the CPU reference once and print the speed-up
        #[arg(long)]
        cpu_reference: bool,
        /// Leave out the per-layer profile
        #[arg(long)]
        no_layers: bool,
        /// Run every conv on the generic kernel instead of the generated fast ones
        #[arg(long)]
        generic_conv: bool,
        /// With f16: tensor cores (auto: when the adapter has them), or off, or their scalar emulation
        #[arg(long, value_enum, default_value_t = Coop::Auto)]
        coop: Coop,
        /// Split the K loop of convs too small to fill the GPU (on), or never (off: to compare)
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        split_k: OnOff,
        /// With f16 on tensor cores: write each conv's operand out with an im2col pass and read it
        /// as vectors, instead of gathering it in the GEMM
        #[arg(long)]
        im2col: bool,
        /// With f16 on tensor cores: stride-1 convs whose input channels are a multiple of 16 stage
        /// one input patch per channel block for all taps (halo tile) instead of gathering per tap
        #[arg(long)]
        halo: bool,
        /// Order conv K tap-major where K tiles can share a tap (on), or always use the tap
        /// table (off: to compare)
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        tap_major: OnOff,
        /// With f16 on tensor cores: the conv epilogue stages as many accumulator fragments per
        /// barrier as workgroup memory allows (on), or one per two barriers (off: to compare)
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        wide_epilogue: OnOff,
        /// With f16: convs whose bias cancels their weighted sum (a bias of 64 or more) keep
        /// their weights in two f16 parts, as two convs (on), or in one (off: to compare)
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        f16_split: OnOff,
        /// Convs with at most 4 output channels or 32 K rows (the 1x1 head, the first conv) on the
        /// thin direct kernel (on), or on GEMM tiles (off: to compare), or every conv on it (all:
        /// to compare)
        #[arg(long, value_enum, default_value_t = Thin::On)]
        thin: Thin,
        /// With --halo: stage the weights of all taps of a channel block at once where they fit
        /// (on), or one tap at a time (off: to compare)
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        halo_resident: OnOff,
        /// With f16 on tensor cores: stride-1 convs whose output rows are runs of 16 pixels load
        /// those runs as vectors (on), or one f16 per load (off: to compare), or, where the
        /// channels are a multiple of 32, quads of 4 pixels, consecutive invocations reading
        /// consecutive quads (quads: to compare)
        #[arg(long, value_enum, default_value_t = RowLoads::On)]
        row_loads: RowLoads,
        /// Run every fast conv on this tile, BMxBN (output channels x pixels; tensor-core tiles
        /// in f16 where the adapter has them), to compare (default: chosen per conv)
        #[arg(long, value_name = "BMxBN")]
        tile: Option<String>,
        /// Split the K loop of every fast conv that can be into this many slices, to compare
        /// (default: chosen per conv)
        #[arg(long, value_name = "N")]
        slices: Option<u32>,
        /// Time every conv kernel shape on this GPU first and keep the fastest per conv
        #[arg(long)]
        autotune: bool,
        /// With --autotune: keep the measured choices in FILE and reuse them when the model,
        /// input size, options, adapter and driver match
        #[arg(long, value_name = "FILE")]
        tune_cache: Option<PathBuf>,
        /// GPU adapter to use (a substring of its name; also UNET_GPU_ADAPTER)
        #[arg(long)]
        adapter: Option<String>,
    },
    /// List the GPU adapters wgpu can see, best first
    Devices,
    /// Describe a model: inputs, outputs, ops, parameters, and (for an input shape) every node's
    /// output shape and the ops that would run
    Info {
        model: PathBuf,
        /// Input shape such as 1x3x256x256 (defaults to the declared shape when it is fixed)
        #[arg(long, value_name = "NxCxHxW")]
        input_shape: Option<String>,
    },
    /// Colourise a photo with the built-in model (or run any U-Net on an image): PNG/JPEG in, PNG out
    Infer(cli_image::InferArgs),
    /// The skip-connection experiment: PSNR, SSIM and fine detail of models on colour photos
    Compare(cli_image::CompareArgs),
}

fn parse_shape(s: &str) -> Result<Vec<usize>> {
    s.split(['x', 'X', ','])
        .map(|p| p.trim().parse::<usize>().with_context(|| format!("bad dimension '{p}' in shape '{s}'")))
        .collect()
}

/// A tile shape `BMxBN` that the fast conv kernels have (register-blocked or tensor-core).
fn parse_tile(t: &str) -> Result<(u32, u32)> {
    use unet_gpu::gpu::convgen::{COOP_TILES, TILES};
    let mut known: Vec<(u32, u32)> = Vec::new();
    for t in TILES.iter().map(|c| (c.0, c.1)).chain(COOP_TILES.iter().map(|c| (c.0, c.1))) {
        if !known.contains(&t) {
            known.push(t);
        }
    }
    let v = parse_shape(t)?;
    let list = || known.iter().map(|(m, n)| format!("{m}x{n}")).collect::<Vec<_>>().join(", ");
    if v.len() != 2 {
        bail!("--tile takes BMxBN (one of {}), got '{t}'", list());
    }
    let (bm, bn) = (v[0] as u32, v[1] as u32);
    if !known.contains(&(bm, bn)) {
        bail!("--tile {t}: no such tile; the tiles are {}", list());
    }
    Ok((bm, bn))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Devices => {
            let all = unet_gpu::gpu::list_adapters();
            if all.is_empty() {
                println!(
                    "no GPU adapter found (on Linux without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)"
                );
            }
            for (i, a) in all.iter().enumerate() {
                println!("[{i}] {} ({}, {}) driver: {} {}", a.name, a.backend, a.device_type, a.driver, a.driver_info);
                let f: Vec<String> =
                    a.features.iter().map(|(n, on)| format!("{n}={}", if *on { "yes" } else { "no" })).collect();
                println!("    {}", f.join(" "));
                println!(
                    "    cooperative matrix 16x16x16 f16->f32: {}; max storage binding {} MiB",
                    if a.coop_16x16x16_f16_f32 { "yes" } else { "no" },
                    a.max_storage_binding >> 20
                );
            }
            Ok(())
        }
        Cmd::Bench {
            model,
            size,
            batch,
            precision,
            iters,
            warmup,
            cpu_reference,
            no_layers,
            generic_conv,
            coop,
            split_k,
            im2col,
            halo,
            tap_major,
            wide_epilogue,
            f16_split,
            thin,
            halo_resident,
            row_loads,
            tile,
            slices,
            autotune,
            tune_cache,
            adapter,
        } => {
            unet_gpu::tune::set_cache(tune_cache);
            let m = Model::load(&model)?;
            let size = match size {
                Some(s) => {
                    let v = parse_shape(&s)?;
                    if v.len() != 2 {
                        bail!("--size takes HxW, got '{s}'");
                    }
                    Some((v[0], v[1]))
                }
                None => None,
            };
            let force_tile = match tile {
                Some(t) => Some(parse_tile(&t)?),
                None => None,
            };
            if slices == Some(0) {
                bail!("--slices must be at least 1");
            }
            let opts = BenchOpts {
                size,
                batch,
                gpu: GpuOptions {
                    precision,
                    fast_conv: !generic_conv,
                    coop: coop.mode(),
                    split_k: split_k == OnOff::On,
                    im2col,
                    halo,
                    tap_major: tap_major == OnOff::On,
                    wide_epilogue: wide_epilogue == OnOff::On,
                    f16_split: f16_split == OnOff::On,
                    thin: thin != Thin::Off,
                    thin_all: thin == Thin::All,
                    halo_resident: halo_resident == OnOff::On,
                    row_loads: row_loads != RowLoads::Off,
                    row_quads: row_loads == RowLoads::Quads,
                    force_tile,
                    force_split: slices,
                    autotune,
                    ..Default::default()
                },
                iters,
                warmup,
                cpu_reference,
                per_layer: !no_layers,
            };
            let ctx = GpuContext::new(adapter.as_deref())?;
            let j = unet_gpu::bench::bench(ctx, &m, &opts)?;
            println!("{j}");
            Ok(())
        }
        Cmd::Run {
            model,
            input,
            output,
            all_outputs,
            device,
            adapter,
            stats,
            precision,
            coop,
            im2col,
            halo,
            autotune,
            tune_cache,
        } => {
            unet_gpu::tune::set_cache(tune_cache);
            if output.is_none() && all_outputs.is_none() {
                bail!("give --output FILE and/or --all-outputs DIR");
            }
            // every file this run writes can be written, before any work: a failed run leaves none
            for path in output.iter().chain(stats.iter()) {
                unet_gpu::imageio::check_writable(path)?;
            }
            if let Some(dir) = &all_outputs {
                unet_gpu::imageio::check_dir_usable(dir).context("--all-outputs")?;
            }
            let m = Model::load(&model)?;
            if m.graph.inputs.len() != 1 {
                let names: Vec<&str> = m.graph.inputs.iter().map(|&v| m.graph.name(v)).collect();
                bail!(
                    "`run` feeds one input, but {} has {} inputs: {}",
                    model.display(),
                    names.len(),
                    names.join(", ")
                );
            }
            let x = npy::read(&input)?;
            let prepared = m.prepare(&[x.shape.clone()])?;
            let ctx = match device {
                Device::Cpu => None,
                Device::Gpu => Some(GpuContext::new(adapter.as_deref())?),
                Device::Auto => match GpuContext::new(adapter.as_deref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        eprintln!("warning: {e}; running on the CPU reference instead");
                        None
                    }
                },
            };
            let (outs, st) = match ctx {
                None => {
                    let t = std::time::Instant::now();
                    let outs = unet_gpu::cpu::run(&prepared, &[x])?;
                    let st = serde_json::json!({"device": "cpu", "wall_ms": t.elapsed().as_secs_f64() * 1e3});
                    (outs, st)
                }
                Some(ctx) => {
                    let gm = GpuModel::for_model(
                        ctx.clone(),
                        &m,
                        &[x.shape.clone()],
                        GpuOptions { precision, coop: coop.mode(), im2col, halo, autotune, ..Default::default() },
                    )?;
                    let (outs, s) = gm.run_with_stats(&[x], stats.is_some())?;
                    let mut j = s.to_json();
                    j["device"] = ctx.describe().into();
                    j["batch_chunks"] = gm.chunks().into();
                    if let Some(r) = gm.tune_report() {
                        j["autotune"] = r.clone();
                    }
                    (outs, j)
                }
            };
            write_outputs(&prepared, &outs, output.as_deref(), all_outputs.as_deref())?;
            if let Some(path) = stats {
                unet_gpu::io_util::write_atomic(&path, format!("{st}\n").as_bytes())?;
            }
            Ok(())
        }
        Cmd::Info { model, input_shape } => info(&model, input_shape.as_deref()),
        Cmd::Infer(a) => cli_image::infer(a),
        Cmd::Compare(a) => cli_image::compare(a),
    }
}

/// File name for an output value: its ONNX name with path separators and odd characters replaced.
fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') { format!("output{s}") } else { s }
}

fn write_outputs(p: &Prepared, outs: &[Tensor], first: Option<&Path>, dir: Option<&Path>) -> Result<()> {
    let mut written: Vec<PathBuf> = Vec::new();
    let res = (|| -> Result<()> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (v, t) in p.graph.outputs.iter().zip(outs) {
                let path = dir.join(format!("{}.npy", file_stem(p.graph.name(*v))));
                npy::write(&path, t)?;
                written.push(path);
            }
        }
        if let Some(path) = first {
            npy::write(path, &outs[0])?;
        }
        Ok(())
    })();
    if res.is_err() {
        for w in written {
            let _ = std::fs::remove_file(w);
        }
    }
    res
}

fn info(path: &Path, shape: Option<&str>) -> Result<()> {
    let m = unet_gpu::infer::load_model(&path.to_string_lossy())?.0;
    let g = &m.graph;
    println!("model: {}", path.display());
    println!("producer: {}  opset: {}", if g.producer.is_empty() { "?" } else { &g.producer }, g.opset);
    for &v in &g.inputs {
        let vi = &g.values[v];
        println!(
            "input  {}: {} {}",
            vi.name,
            vi.dtype.map(|d| d.name()).unwrap_or("?"),
            vi.dims.as_ref().map(|d| fmt_dims(d)).unwrap_or_else(|| "[?]".into())
        );
    }
    for &v in &g.outputs {
        let vi = &g.values[v];
        println!(
            "output {}: {} {}",
            vi.name,
            vi.dtype.map(|d| d.name()).unwrap_or("?"),
            vi.dims.as_ref().map(|d| fmt_dims(d)).unwrap_or_else(|| "[?]".into())
        );
    }
    println!("nodes: {}  parameters: {}", g.nodes.len(), g.parameter_count());
    let hist: Vec<String> = g.op_histogram().iter().map(|(k, c)| format!("{k} {c}")).collect();
    println!("ops in file: {}", hist.join(", "));

    let shapes: Option<Vec<Vec<usize>>> = match shape {
        Some(s) => {
            if g.inputs.len() != 1 {
                bail!("--input-shape gives one shape, the model has {} inputs", g.inputs.len());
            }
            Some(vec![parse_shape(s)?])
        }
        None => g
            .inputs
            .iter()
            .map(|&v| {
                g.values[v].dims.as_ref().and_then(|d| {
                    d.iter().map(|x| if let Dim::Fixed(n) = x { Some(*n) } else { None }).collect::<Option<Vec<_>>>()
                })
            })
            .collect(),
    };
    let Some(shapes) = shapes else {
        println!("(the input size is not fixed: pass --input-shape NxCxHxW to see shapes and the ops that would run)");
        return Ok(());
    };
    let p = m.prepare(&shapes)?;
    println!();
    println!(
        "prepared for input {}: {} nodes run",
        shapes.iter().map(|s| fmt_shape(s)).collect::<Vec<_>>().join(", "),
        p.graph.nodes.len()
    );
    let mut run_hist: std::collections::BTreeMap<String, usize> = Default::default();
    for n in &p.graph.nodes {
        *run_hist.entry(op_label(&n.op, &n.op_type)).or_default() += 1;
    }
    let rh: Vec<String> = run_hist.iter().map(|(k, c)| format!("{k} {c}")).collect();
    println!("ops that run: {}", rh.join(", "));
    for n in &p.graph.nodes {
        let outs: Vec<String> =
            n.outputs.iter().flatten().map(|&v| format!("{} {}", p.graph.name(v), fmt_shape(p.shape(v)))).collect();
        println!("  {:<40} {:<24} -> {}", n.name, op_label(&n.op, &n.op_type), outs.join(", "));
    }
    for &v in &p.graph.outputs {
        println!("output {}: {}", p.graph.name(v), fmt_shape(p.shape(v)));
    }
    print!("{}", unet_gpu::skips::analyze(&p).describe(&p));
    Ok(())
}

/// The op as it will run (a conv shows its fused activation, residual Add and the activation
/// after it).
fn op_label(op: &unet_gpu::ops::Op, op_type: &str) -> String {
    use unet_gpu::ops::Op;
    let name = |k: unet_gpu::ops::elementwise::Activation| {
        k.map(|k| format!("+{}", format!("{k:?}").split([' ', '{']).next().unwrap_or(""))).unwrap_or_default()
    };
    match op {
        Op::Conv(c) if c.residual => format!("{op_type}{}+Add{}", name(c.act), name(c.post_act)),
        Op::Conv(c) => format!("{op_type}{}", name(c.act)),
        Op::ConvTranspose(c) => format!("{op_type}{}", name(c.act)),
        _ => op_type.to_string(),
    }
}
