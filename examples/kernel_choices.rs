//! Which conv kernel the cost model picks for each conv of a model, for a GPU you may not have
//! here: an H100/H200-class profile (48 KiB of workgroup memory, 2 GiB bindings, 16x16x16
//! cooperative matrices). Needs no GPU: it runs the planner and lowering only.
//!
//!     cargo run --release --example kernel_choices -- MODEL.onnx [HxW] [f32|f16] [halo]
//!
//! (`halo`: with f16, the tensor-core convs that can on halo tiles, as `--halo` does.) With
//! `UNET_GPU_WGSL_DIR=DIR` set, it also writes each chosen conv kernel's WGSL to DIR/NAME.wgsl,
//! to read what the device will compile.
//!
//! Compare its output with an autotune report (`unet-gpu bench --autotune`) from the device to
//! see where the cost model and the measurements disagree.

use unet_gpu::gpu::Precision;
use unet_gpu::gpu::lower::{LowerOpts, lower};
use unet_gpu::gpu::{Shader, plan::plan};
use unet_gpu::model::Model;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        anyhow::bail!("usage: kernel_choices MODEL.onnx [HxW] [f32|f16] [halo]");
    };
    let (h, w) = match args.get(1) {
        Some(s) => {
            let (a, b) = s.split_once('x').ok_or_else(|| anyhow::anyhow!("size must be HxW, got '{s}'"))?;
            (a.parse::<usize>()?, b.parse::<usize>()?)
        }
        None => (512, 512),
    };
    let precision = match args.get(2).map(String::as_str) {
        None | Some("f32") => Precision::F32,
        Some("f16") => Precision::F16,
        Some(p) => anyhow::bail!("precision must be f32 or f16, got '{p}'"),
    };
    let m = Model::load(std::path::Path::new(path))?;
    let p = m.prepare(&[vec![1, 3, h, w]])?;
    let mp = plan(&p, precision.bytes())?;
    let low = lower(
        &p,
        &mp,
        65535,
        LowerOpts { halo: args.get(3).is_some_and(|a| a == "halo"), ..LowerOpts::h200_class(precision) },
        &[],
    )?;
    let chosen = unet_gpu::tune::choices_of(&low.dispatches, p.graph.nodes.len());
    for (k, (n, ch)) in p.graph.nodes.iter().zip(&chosen).enumerate() {
        let Some(ch) = ch else { continue };
        let names: Vec<String> = low
            .dispatches
            .iter()
            .filter(|d| d.node == k)
            .filter(|d| {
                matches!(
                    d.shader,
                    Shader::FastConv(_) | Shader::CoopConv(_) | Shader::HaloConv(_) | Shader::ThinConv(_)
                )
            })
            .map(|d| d.shader.kernel_name())
            .collect();
        if let Ok(dir) = std::env::var("UNET_GPU_WGSL_DIR") {
            std::fs::create_dir_all(&dir)?;
            for d in low.dispatches.iter().filter(|d| d.node == k) {
                let name = d.shader.kernel_name();
                let name = if name.ends_with(".wgsl") { name } else { format!("{name}.wgsl") };
                let file = std::path::Path::new(&dir).join(name);
                std::fs::write(&file, d.shader.source(precision))?;
            }
        }
        let out = n.output(0).map(|v| unet_gpu::tensor::fmt_shape(p.shape(v))).unwrap_or_default();
        println!("{:<24} {:<20} {} slices {}", n.name, out, names.join(" + "), ch.slices);
    }
    Ok(())
}
