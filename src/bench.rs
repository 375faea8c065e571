//! The benchmark harness behind `unet-gpu bench` and `cargo bench`: GPU time of whole inferences
//! from timestamp queries (median and min over iterations), wall time, useful GFLOP/s counted
//! from the graph's convolutions, per-layer time and TFLOP/s from a profiling run, and optionally
//! the CPU reference's time for the speed-up.

use crate::error::{Error, Result};
use crate::gpu::exec::GpuOptions;
use crate::gpu::f16split;
use crate::gpu::{GpuContext, GpuModel};
use crate::graph::Dim;
use crate::model::Model;
use crate::tensor::{Tensor, fmt_shape};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct BenchOpts {
    /// Input height and width (default: the model's declared size).
    pub size: Option<(usize, usize)>,
    pub batch: Option<usize>,
    pub gpu: GpuOptions,
    pub iters: usize,
    pub warmup: usize,
    pub cpu_reference: bool,
    /// Per-layer times (one extra profiling run with a timestamp pair per dispatch).
    pub per_layer: bool,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            size: None,
            batch: None,
            gpu: GpuOptions::default(),
            iters: 20,
            warmup: 3,
            cpu_reference: false,
            per_layer: true,
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) }
}

/// The input shape to benchmark: the declared one with batch/size overridden.
pub fn input_shape(model: &Model, opts: &BenchOpts) -> Result<Vec<usize>> {
    let g = &model.graph;
    if g.inputs.len() != 1 {
        return Err(Error::Model(format!("bench feeds one input; the model has {}", g.inputs.len())));
    }
    let dims = g.values[g.inputs[0]].dims.clone().unwrap_or_default();
    let fixed = |i: usize, default: usize| match dims.get(i) {
        Some(Dim::Fixed(n)) => *n,
        _ => default,
    };
    if dims.len() != 4 && !dims.is_empty() {
        return Err(Error::Model(format!(
            "bench expects an NCHW image input; the model's input has rank {}",
            dims.len()
        )));
    }
    let (h, w) = opts.size.unwrap_or((fixed(2, 256), fixed(3, 256)));
    Ok(vec![opts.batch.unwrap_or(fixed(0, 1)), fixed(1, 3), h, w])
}

/// Run the benchmark; returns one JSON object.
pub fn bench(ctx: Arc<GpuContext>, model: &Model, opts: &BenchOpts) -> Result<serde_json::Value> {
    let shape = input_shape(model, opts)?;
    let t_build = std::time::Instant::now();
    let gm = GpuModel::for_model(ctx.clone(), model, std::slice::from_ref(&shape), opts.gpu)?;
    // the graph the dispatches run (one chunk of the batch when it is split)
    let prepared = gm.prepared().clone();
    let chunks = gm.chunks() as u64;
    let n: usize = shape.iter().product();
    let data = crate::tensor::pseudo_random(&mut 0x2545_F491_4F6C_DD1Du64, n);
    let x = Tensor::f32(shape.clone(), data);
    let inputs = [x];
    // first run compiles the pipelines in the driver
    let (first_out, first) = gm.run_with_stats(&inputs, false)?;
    let build_ms = t_build.elapsed().as_secs_f64() * 1e3;
    // the timed kernels must compute what the generic conv kernel computes on this device
    // (where they differ by more than the plain tolerance, by how much the model moves with
    // rounding alone: the generic kernels summing K backwards, `crate::tune::noise_floor`)
    let (check, floor, check_ok) = if opts.gpu.fast_conv {
        let generic = GpuOptions { fast_conv: false, autotune: false, ..opts.gpu };
        let g = GpuModel::for_model(ctx.clone(), model, std::slice::from_ref(&shape), generic)?.run(&inputs)?;
        let mut floor = None;
        let (err, ok) = crate::tune::check_outputs(opts.gpu.precision, &first_out, &g, &mut floor, || {
            let rev = GpuOptions { reverse_k: true, ..generic };
            GpuModel::for_model(ctx.clone(), model, std::slice::from_ref(&shape), rev)?.run(&inputs)
        })?;
        (Some(crate::tune::worst(&err)), floor, Some(ok))
    } else {
        (None, None, None)
    };
    for _ in 1..opts.warmup.max(1) {
        gm.run_with_stats(&inputs, false)?;
    }
    let mut gpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..opts.iters.max(1) {
        let (_, st) = gm.run_with_stats(&inputs, false)?;
        if let Some(t) = st.gpu_ms_total {
            gpu.push(t);
        }
        wall.push(st.wall_ms);
    }
    // useful work: the second conv of a split f16 conv (`gpu/f16split.rs`) computes nothing new
    let conv_flops: u64 = gm
        .dispatches()
        .iter()
        .filter(|d| d.kind.starts_with("Conv") && !f16split::is_low_part(&prepared.graph.nodes[d.node]))
        .map(|d| d.flops)
        .sum::<u64>()
        * chunks;
    let gflop = conv_flops as f64 / 1e9;
    let wall_med = median(&mut wall);
    let gpu_med = (!gpu.is_empty()).then(|| median(&mut gpu));
    let gpu_min = gpu.iter().copied().fold(f64::INFINITY, f64::min);
    let t_ref = gpu_med.unwrap_or(wall_med);
    let mut j = serde_json::json!({
        "model": model.source,
        "input": fmt_shape(&shape),
        "precision": format!("{:?}", opts.gpu.precision).to_lowercase(),
        "device": ctx.describe(),
        "iters": opts.iters.max(1),
        "gpu_ms_median": gpu_med,
        "gpu_ms_min": gpu_med.map(|_| gpu_min),
        "wall_ms_median": wall_med,
        "build_and_first_run_ms": build_ms,
        "gflop": gflop,
        "tflops": gflop / t_ref,
        "dispatches": first.dispatches,
        "batch_chunks": chunks,
        "split_k": opts.gpu.split_k,
        "im2col": opts.gpu.im2col,
        "halo": opts.gpu.halo,
        "tap_major": opts.gpu.tap_major,
        "wide_epilogue": opts.gpu.wide_epilogue,
        "f16_split": opts.gpu.f16_split,
        "f16_split_convs": prepared.graph.nodes.iter().filter(|n| f16split::is_low_part(n)).count(),
        "thin": opts.gpu.thin,
        "thin_all": opts.gpu.thin_all,
        "row_loads": opts.gpu.row_loads,
        "row_quads": opts.gpu.row_quads,
        "halo_resident": opts.gpu.halo_resident,
        "force_tile": opts.gpu.force_tile.map(|(m, n)| format!("{m}x{n}")),
        "force_slices": opts.gpu.force_split,
        "split_k_convs": gm.dispatches().iter().filter(|d| d.shader == crate::gpu::Shader::SplitK).count(),
        "autotune": gm.tune_report().cloned(),
        "check_rel_l2_vs_generic": check,
        "check_ok": check_ok,
        "check_tolerance": crate::tune::check_tolerance(opts.gpu.precision),
        // per output; only measured where the check exceeds the tolerance (it then passes
        // within NOISE_FACTOR times the floor)
        "check_noise_floor": floor,
        "tensor_cores": gm.dispatches().iter().any(|d| d.shader.tensor_cores()),
        "peak_activation_bytes": first.peak_activation_bytes,
        "naive_activation_bytes": first.naive_activation_bytes,
    });
    if opts.per_layer && ctx.timestamps {
        let (_, prof) = gm.run_with_stats(&inputs, true)?;
        let nodes = &prepared.graph.nodes;
        let mut layers = Vec::new();
        for (k, ms) in prof.gpu_ms_by_node.iter().enumerate() {
            if *ms <= 0.0 {
                continue;
            }
            let fl: u64 = gm.dispatches().iter().filter(|d| d.node == k).map(|d| d.flops).sum::<u64>() * chunks;
            let shader: Vec<String> = gm
                .dispatches()
                .iter()
                .filter(|d| d.node == k)
                .map(|d| d.shader.kernel_name().trim_end_matches(".wgsl").to_string())
                .collect();
            let out = nodes[k].output(0).map(|v| fmt_shape(prepared.shape(v))).unwrap_or_default();
            layers.push(serde_json::json!({
                "node": nodes[k].name, "op": nodes[k].op_type, "out": out, "kernel": shader.join("+"),
                "ms": ms, "tflops": if nodes[k].op_type.starts_with("Conv") { fl as f64 / 1e9 / ms } else { 0.0 },
            }));
        }
        j["profiled_gpu_ms"] = prof.gpu_ms_total.into();
        j["layers"] = layers.into();
    }
    if opts.cpu_reference {
        let t = std::time::Instant::now();
        crate::cpu::run(&model.prepare(std::slice::from_ref(&shape))?, &inputs)?;
        let cpu_ms = t.elapsed().as_secs_f64() * 1e3;
        j["cpu_reference_ms"] = cpu_ms.into();
        j["speedup_vs_cpu"] = (cpu_ms / t_ref).into();
    }
    Ok(j)
}
