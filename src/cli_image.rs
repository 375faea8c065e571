//! The image subcommands of the `unet-gpu` binary: `infer` and `compare`.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use unet_gpu::compare::CompareOptions;
use unet_gpu::gpu::Precision;
use unet_gpu::gpu::exec::GpuOptions;
use unet_gpu::infer::{DeviceChoice, Engine, InferOptions};
use unet_gpu::presets::{Preset, RawParams, parse_floats};
use unet_gpu::skips::SkipSelection;

/// A count option's value, refused below `min` ("must be at least 1", not clap's u64 range).
pub fn count_at_least(s: &str, min: usize) -> Result<usize, String> {
    let n: usize = s.trim().parse().map_err(|_| format!("'{s}' is not a whole number"))?;
    if n < min { Err(format!("must be at least {min}")) } else { Ok(n) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Gpu,
    Cpu,
    Auto,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> DeviceChoice {
        match d {
            DeviceArg::Gpu => DeviceChoice::Gpu,
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Auto => DeviceChoice::Auto,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Luminance in, RGB out (the shipped models)
    Colorize,
    /// u2netp-style salient-object mask (rembg pre/post-processing)
    Mask,
    /// (v * scale - mean) / std per channel in, output clamped to [0, 1]
    Raw,
}

#[derive(Args, Debug)]
pub struct InferArgs {
    /// Input image (PNG or JPEG; gray, RGB or RGBA; 8 or 16 bits; any size)
    pub input: PathBuf,
    /// Output PNG (same size as the input; alpha kept)
    pub output: PathBuf,
    /// `colorize` (built in, the default), `noskip` (built in, trained without skips), or an ONNX file
    #[arg(long, default_value = "colorize")]
    pub model: String,
    /// Pre/post-processing (default: colorize for the built-in models, raw for a file)
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// raw preset: mean per channel (one value or one per channel)
    #[arg(long, allow_hyphen_values = true)]
    pub mean: Option<String>,
    /// raw preset: standard deviation per channel (one value or one per channel)
    #[arg(long)]
    pub std: Option<String>,
    /// raw preset: factor applied to the [0, 1] image values before mean/std
    #[arg(long)]
    pub scale: Option<f32>,
    /// mask preset: write the input with the mask as its alpha instead of the gray mask
    #[arg(long)]
    pub apply_mask: bool,
    /// Where to run: the GPU, the CPU reference, or auto (default): the GPU, or the CPU with a
    /// warning when there is no GPU adapter
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// GPU adapter to use (a substring of its name; also UNET_GPU_ADAPTER)
    #[arg(long)]
    pub adapter: Option<String>,
    /// GPU storage precision: f32 (default), or f16 (f32 arithmetic; tensor cores where the
    /// adapter has cooperative matrices)
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Time every conv kernel shape on this GPU first (per tile shape) and keep the fastest per conv
    #[arg(long)]
    pub autotune: bool,
    /// With --autotune: keep the measured choices in FILE and reuse them when the model, tile
    /// size, options, adapter and driver match
    #[arg(long, value_name = "FILE")]
    pub tune_cache: Option<PathBuf>,
    /// Feed zeros in place of skip connections: `all` or levels such as `0,2` (see `unet-gpu info`)
    #[arg(long, value_name = "all|LEVEL[,LEVEL]")]
    pub ablate_skips: Option<SkipSelection>,
    /// Write a PNG grid of the channels of each encoder level, the bottleneck, each skip and each decoder level
    #[arg(long, value_name = "DIR")]
    pub dump_activations: Option<PathBuf>,
    /// Pad the image to a multiple of N (default: found from the model)
    #[arg(long)]
    pub multiple: Option<usize>,
    /// Largest tile side in pixels for big images
    #[arg(long, default_value_t = 1024)]
    pub tile: usize,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Colour photos (their luminance is the input, the photo itself the ground truth)
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Models to compare (shipped names or ONNX files), comma-separated; the first is also run ablated
    #[arg(long, default_value = "colorize,noskip")]
    pub models: String,
    /// Skips to ablate in the first model for the extra row: `all`, levels such as `0,2`, or `none`
    #[arg(long, default_value = "all", value_name = "all|LEVEL[,LEVEL]|none")]
    pub ablate_skips: String,
    /// Side-by-side picture (PNG, or JPEG for a .jpg name)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// All numbers as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Height of each panel of the side-by-side picture (32 or more)
    #[arg(long, default_value_t = 192, value_parser = |s: &str| count_at_least(s, 32))]
    pub panel_height: usize,
    /// Where to run: gpu, cpu, or auto (default: the GPU, or the CPU when there is none)
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// GPU adapter to use (a substring of its name)
    #[arg(long)]
    pub adapter: Option<String>,
    /// Largest tile side in pixels for big images
    #[arg(long, default_value_t = 1024)]
    pub tile: usize,
}

pub fn infer(a: InferArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    unet_gpu::imageio::check_writable(&a.output)?;
    if !a.input.exists() {
        bail!("{}: no such file", a.input.display());
    }
    if let Some(dir) = &a.dump_activations {
        unet_gpu::imageio::check_dir_usable(dir).context("--dump-activations")?;
    }
    let (model, shipped) = unet_gpu::infer::load_model(&a.model)?;
    let preset_arg = a.preset.unwrap_or(if shipped { PresetArg::Colorize } else { PresetArg::Raw });
    if preset_arg != PresetArg::Raw && (a.mean.is_some() || a.std.is_some() || a.scale.is_some()) {
        bail!("--mean, --std and --scale apply to --preset raw only");
    }
    if preset_arg != PresetArg::Mask && a.apply_mask {
        bail!("--apply-mask applies to --preset mask only");
    }
    let preset = match preset_arg {
        PresetArg::Colorize => Preset::Colorize,
        PresetArg::Mask => Preset::Mask { apply: a.apply_mask },
        PresetArg::Raw => {
            let mut r = RawParams::default();
            if let Some(m) = &a.mean {
                r.mean = parse_floats(m, "--mean")?;
            }
            if let Some(s) = &a.std {
                r.std = parse_floats(s, "--std")?;
            }
            if let Some(s) = a.scale {
                r.scale = s;
            }
            Preset::Raw(r)
        }
    };
    let pic = unet_gpu::imageio::read(&a.input)?;
    let ctx = unet_gpu::infer::open_device(a.device.into(), a.adapter.as_deref())?;
    let opts = InferOptions {
        ablate: a.ablate_skips.clone(),
        dump: a.dump_activations.is_some(),
        multiple: a.multiple,
        tile: a.tile,
        progress: true,
        gpu: GpuOptions { precision: a.precision, autotune: a.autotune, ..Default::default() },
    };
    if a.tune_cache.is_some() && !a.autotune {
        bail!("--tune-cache applies with --autotune only");
    }
    unet_gpu::tune::set_cache(a.tune_cache.clone());
    let mut engine = Engine::new(model, ctx, &preset, opts)?;
    let (out, dumps) = unet_gpu::infer::infer_picture(&mut engine, &preset, &pic)
        .with_context(|| format!("running {} on {}", engine.model.source, a.input.display()))?;
    if let Some(dir) = &a.dump_activations {
        let files = unet_gpu::infer::write_dumps(dir, &dumps)?;
        eprintln!("wrote {} activation picture(s) to {}", files.len(), dir.display());
    }
    unet_gpu::imageio::write(&a.output, &out, out.sixteen_bit)?;
    eprintln!(
        "{}: {}x{} from {} ({} preset{}) on {}{} in {:.2} s",
        a.output.display(),
        out.width,
        out.height,
        engine.model.source,
        preset.name(),
        a.ablate_skips.as_ref().map(|s| format!(", skips {s} ablated")).unwrap_or_default(),
        engine.device_description(),
        if a.precision == Precision::F16 && engine.on_gpu() { ", f16" } else { "" },
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let models: Vec<String> = a.models.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let ablate = if a.ablate_skips.trim().eq_ignore_ascii_case("none") {
        None
    } else {
        Some(a.ablate_skips.parse::<SkipSelection>().map_err(anyhow::Error::msg)?)
    };
    let opts = CompareOptions {
        models,
        ablate,
        device: a.device.into(),
        adapter: a.adapter,
        out: a.out.clone(),
        json: a.json.clone(),
        panel_height: a.panel_height,
        tile: a.tile,
    };
    let report = unet_gpu::compare::compare(&a.images, &opts)?;
    println!("{}", report.text());
    if let Some(o) = &a.out {
        eprintln!("wrote {}", o.display());
    }
    Ok(())
}
