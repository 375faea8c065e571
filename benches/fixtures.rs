//! `cargo bench`: the benchmark harness of `unet-gpu bench` on the repository's U-Net fixtures
//! and u2netp, in f32 and f16, on the best adapter (lavapipe where there is no GPU). Prints one
//! JSON line per model and precision. `UNET_GPU_BENCH_ITERS` sets the iterations (default 5).

use std::path::Path;
use unet_gpu::Model;
use unet_gpu::bench::{BenchOpts, bench};
use unet_gpu::gpu::exec::GpuOptions;
use unet_gpu::gpu::{GpuContext, Precision};

fn main() {
    let ctx = match GpuContext::new(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no GPU adapter, nothing to benchmark: {e}");
            std::process::exit(1);
        }
    };
    let iters = std::env::var("UNET_GPU_BENCH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut models: Vec<(String, std::path::PathBuf, Option<(usize, usize)>)> =
        ["classic_unet", "bilinear_unet", "groupnorm_unet"]
            .iter()
            .map(|n| (n.to_string(), root.join("fixtures").join(n).join("model.onnx"), Some((256usize, 256usize))))
            .collect();
    models.push(("u2netp".into(), root.join("data/u2netp/model.onnx"), None));
    for (name, path, size) in models {
        let m = Model::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        for precision in [Precision::F32, Precision::F16] {
            if precision == Precision::F16 && !ctx.shader_f16 {
                continue;
            }
            let opts = BenchOpts {
                size,
                gpu: GpuOptions { precision, ..Default::default() },
                iters,
                warmup: 1,
                per_layer: false,
                ..Default::default()
            };
            match bench(ctx.clone(), &m, &opts) {
                Ok(j) => println!("{j}"),
                Err(e) => println!("{{\"model\": \"{name}\", \"error\": \"{e}\"}}"),
            }
        }
    }
}
