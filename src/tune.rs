//! Autotuning: instead of trusting the tile cost model, time every fast-conv kernel shape on
//! the device and keep, for each conv, the one that ran fastest.
//!
//! The whole model is built once per candidate (tensor cores or not, each (BM, BN) tile, each
//! split-K factor forced on every conv; and the thin direct kernel on every conv) and its
//! output checked against the generic kernels'.
//! Candidates are built in groups of eight, and each group is timed together with the cost
//! model's own model (the control), in turns, best of three runs with a timestamp around every
//! dispatch, after a warm-up; a conv's time includes its split-K reduction. Each candidate's
//! per-conv times are scaled by the control's drift on that conv since the first group (the
//! report's `control_drift` gives the control's total per group, relative to the first). Timing
//! each candidate alone right after building it, as before, made every candidate after the first
//! look 1.35-1.6x slower on an H200 than the same kernel in the control. The control's kernels
//! are candidates too, so tuning never picks something it measured slower. Needs
//! TIMESTAMP_QUERY; without it the cost model decides.
//!
//! With a cache file (`set_cache`, the CLI's `--tune-cache FILE`), the choices are stored under a
//! key naming the crate version, the adapter and driver, the options and a fingerprint of the
//! prepared graph (every node's op and tensor shapes), and reused when the key matches.

use crate::error::Result;
use crate::gpu::convgen::{COOP_TILES, TILES};
use crate::gpu::exec::{GpuModel, GpuOptions};
use crate::gpu::halo::HALO_TILES;
use crate::gpu::lower::{CoopMode, Dispatch, TileChoice};
use crate::gpu::{GpuContext, Precision, Shader};
use crate::graph::prepare::Prepared;
use crate::tensor::{Tensor, numel, pseudo_random};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

static CACHE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Keep autotuning results in this JSON file (None: measure every time).
pub fn set_cache(path: Option<PathBuf>) {
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = path;
}

/// The cache key of tuning `p` with `opts` on `ctx`.
pub fn cache_key(ctx: &GpuContext, p: &Prepared, opts: &GpuOptions) -> String {
    // FNV-1a over every node's op and tensor shapes
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for n in &p.graph.nodes {
        eat(&format!("{:?}", n.op));
        for v in n.inputs.iter().chain(&n.outputs).flatten() {
            eat(&format!("{:?}", p.types[*v]));
        }
    }
    format!(
        "unet-gpu {} | {} | {} {} | {:?} coop {:?} split-K {} im2col {} halo {} tap-major {} wide-epilogue {} thin {} thin-all {} halo-resident {} row-loads {} row-quads {} | graph {h:016x}",
        env!("CARGO_PKG_VERSION"),
        ctx.info.name,
        ctx.info.driver,
        ctx.info.driver_info,
        opts.precision,
        opts.coop,
        opts.split_k,
        opts.im2col,
        opts.halo,
        opts.tap_major,
        opts.wide_epilogue,
        opts.thin,
        opts.thin_all,
        opts.halo_resident,
        opts.row_loads,
        opts.row_quads
    )
}

fn choice_json(c: &Option<TileChoice>) -> serde_json::Value {
    match c {
        Some(c) => serde_json::json!([c.coop, c.bm, c.bn, c.slices, c.im2col, c.halo, c.thin]),
        None => serde_json::Value::Null,
    }
}

fn choice_from_json(v: &serde_json::Value) -> Option<TileChoice> {
    let a = v.as_array()?;
    Some(TileChoice {
        coop: a.first()?.as_bool()?,
        bm: a.get(1)?.as_u64()? as u32,
        bn: a.get(2)?.as_u64()? as u32,
        slices: a.get(3)?.as_u64()? as usize,
        im2col: a.get(4)?.as_bool()?,
        halo: a.get(5)?.as_bool()?,
        // (absent in caches written before the thin kernel)
        thin: a.get(6).and_then(|t| t.as_bool()).unwrap_or(false),
    })
}

/// The cache file's entries: none when it does not exist yet or is empty. A file that is not a
/// JSON object (not a cache, or a damaged one) is an error before any measuring, instead of being
/// overwritten afterwards.
fn read_cache(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(crate::error::Error::io(path, e)),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Default::default());
    }
    let not_cache = |why: String| {
        crate::error::Error::Data(format!(
            "{}: not a tune cache ({why}); delete it or give --tune-cache another path",
            path.display()
        ))
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(not_cache("JSON, but not an object".into())),
        Err(e) => Err(not_cache(format!("not JSON: {e}"))),
    }
}

/// [`measure`], or what the cache file holds for the same key.
pub fn autotune(
    ctx: &Arc<GpuContext>,
    p: &Prepared,
    opts: GpuOptions,
) -> Result<(Vec<Option<TileChoice>>, serde_json::Value)> {
    let path = CACHE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(path) = path else { return measure(ctx, p, opts) };
    let key = cache_key(ctx, p, &opts);
    let mut cache = read_cache(&path)?;
    if let Some(e) = cache.get(&key)
        && let Some(list) = e.get("choices").and_then(|c| c.as_array())
        && list.len() == p.graph.nodes.len()
    {
        let choices = list.iter().map(choice_from_json).collect();
        let mut report = e.get("report").cloned().unwrap_or_default();
        report["from_cache"] = path.display().to_string().into();
        return Ok((choices, report));
    }
    let (choices, report) = measure(ctx, p, opts)?;
    if report.get("skipped").is_none() {
        cache.insert(
            key,
            serde_json::json!({
                "choices": choices.iter().map(choice_json).collect::<Vec<_>>(),
                "report": report,
            }),
        );
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(cache))
            .map_err(|e| crate::error::Error::Data(format!("tune cache: {e}")))?;
        crate::io_util::write_atomic(&path, text.as_bytes())?;
    }
    Ok((choices, report))
}

/// Split-K factors tried (each also capped by the layer's K).
const SLICES: [u32; 4] = [1, 2, 4, 8];
/// Candidates built and timed together, beside the control.
const GROUP: usize = 8;
/// Timed runs of each model per group (the best counts), after WARMUP runs of the control.
const ROUNDS: usize = 3;
const WARMUP: usize = 3;

fn min_into(acc: &mut Vec<f64>, t: &[f64]) {
    if acc.len() != t.len() {
        acc.clear();
        acc.extend_from_slice(t);
        return;
    }
    for (a, b) in acc.iter_mut().zip(t) {
        *a = a.min(*b);
    }
}

/// The implicit GEMM of each fast conv in lowered dispatches, by node index: (rows M, columns
/// per image, images, depth K) as the kernel runs it (a transposed conv's rows are output
/// channels x taps; an im2col-packed K is padded to the K tile).
pub fn gemms_of(dispatches: &[Dispatch], nodes: usize) -> Vec<Option<[u32; 4]>> {
    let mut v = vec![None; nodes];
    for d in dispatches {
        if let Some(c) = tile_of(d) {
            v[d.node] = Some([d.params[1], d.params[2], d.groups[2] / c.slices as u32, d.params[0]]);
        }
    }
    v
}

/// What the kernel of each node is in a built model: the fast conv's choice, by node index.
pub fn choices(gm: &GpuModel) -> Vec<Option<TileChoice>> {
    choices_of(gm.dispatches(), gm.prepared().graph.nodes.len())
}

/// [`choices`] of lowered dispatches, for a graph of `nodes` nodes.
pub fn choices_of(dispatches: &[Dispatch], nodes: usize) -> Vec<Option<TileChoice>> {
    let mut v = vec![None; nodes];
    for d in dispatches {
        if let Some(c) = tile_of(d) {
            v[d.node] = Some(c);
        }
    }
    v
}

/// The fast-conv kernel a dispatch runs, as a choice (None for every other dispatch, a split
/// conv's reduction and an im2col pass included).
fn tile_of(d: &Dispatch) -> Option<TileChoice> {
    let (coop, bm, bn, split, im2col, halo, thin) = match d.shader {
        Shader::FastConv(c) => (false, c.bm, c.bn, c.split, false, false, false),
        Shader::CoopConv(c) => (true, c.bm, c.bn, c.split, c.b == crate::gpu::convgen::BMode::Packed, false, false),
        Shader::HaloConv(c) => (true, c.bm, c.bn, c.split, false, true, false),
        Shader::ThinConv(c) => (false, c.co, c.bn(), false, false, false, true),
        _ => return None,
    };
    let slices = if split { d.params[27] as usize } else { 1 };
    Some(TileChoice { coop, bm, bn, slices, im2col, halo, thin })
}

/// A candidate's options as text.
fn describe(c: &GpuOptions) -> String {
    match c.force_tile {
        None => "cost model".to_string(),
        Some((bm, bn)) => format!(
            "{}{} {bm}x{bn} split {}",
            if c.coop == Some(CoopMode::Off) { "fma" } else { "coop" },
            if c.im2col {
                " im2col"
            } else if c.halo {
                " halo"
            } else {
                ""
            },
            c.force_split.unwrap_or(1)
        ),
    }
}

/// A kernel choice as text: `fma 128x128`, `coop 64x64 split 4`.
fn label(c: TileChoice) -> String {
    let split = if c.slices > 1 { format!(" split {}", c.slices) } else { String::new() };
    if c.thin {
        return format!("thin {}", c.bm);
    }
    let kind = match (c.coop, c.im2col, c.halo) {
        (false, ..) => "fma",
        (true, true, _) => "coop im2col",
        (true, false, true) => "coop halo",
        (true, false, false) => "coop",
    };
    format!("{kind} {}x{}{split}", c.bm, c.bn)
}

/// The rel-L2 distance of each output of `a` from the same output of `b`.
pub fn rel_l2_each(a: &[Tensor], b: &[Tensor]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let x = x.to_f32_vec();
            let y = y.to_f32_vec();
            let num: f64 = x.iter().zip(&y).map(|(p, q)| (*p as f64 - *q as f64).powi(2)).sum();
            let den: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum();
            if den > 0.0 { (num / den).sqrt() } else { num.sqrt() }
        })
        .collect()
}

/// The largest of some distances (NaN if any is NaN).
pub fn worst(e: &[f64]) -> f64 {
    e.iter().fold(0.0, |m, &e| if e.is_nan() || e > m { e } else { m })
}

/// How far a fast-kernel model may be from the generic-kernel one on a model that does not
/// amplify rounding: summation order in f32; in f16, rounding of the stored activations along
/// different paths.
pub fn check_tolerance(prec: Precision) -> f64 {
    match prec {
        Precision::F32 => 1e-4,
        Precision::F16 => 2e-2,
    }
}

/// How many times its noise floor ([`noise_floor`]) a model's output may move when the fast
/// kernels replace the generic ones. Two summation orders of the same products differ by about
/// the floor; a wrong kernel (an index off by one, a lost tile) moves outputs by 1e-3 or far more.
pub const NOISE_FACTOR: f64 = 4.0;

/// Some models amplify f32 rounding far beyond [`check_tolerance`] on some inputs: u2netp on a
/// uniform [-1, 1] input ends in saturated sigmoids (logits -16 to -5), which turn an absolute
/// error in a logit into that much relative error in the output, so two correct summation
/// orders give outputs up to 1.3e-4 apart (on lavapipe; onnxruntime with and without its graph
/// optimisations too). The floor measures this on the device: the generic
/// conv kernels summing K backwards (`outputs`, from [`GpuOptions::reverse_k`]) against the
/// same kernels summing forwards (`reference`), per output.
pub fn noise_floor(outputs: &[Tensor], reference: &[Tensor]) -> Vec<f64> {
    rel_l2_each(outputs, reference)
}

/// Whether every output of a fast model (`err`: its distance from the generic model's, per
/// output) is within [`check_tolerance`], or within [`NOISE_FACTOR`] times that output's noise
/// floor where one was measured.
pub fn check_passes(prec: Precision, err: &[f64], floor: Option<&[f64]>) -> bool {
    let tol = check_tolerance(prec);
    err.iter().enumerate().all(|(k, &e)| {
        let f = floor.and_then(|f| f.get(k)).copied().filter(|f| f.is_finite()).unwrap_or(0.0);
        e <= tol.max(NOISE_FACTOR * f)
    })
}

/// Check a fast model's outputs against the generic model's (`reference`): their distance per
/// output, and whether it passes [`check_passes`]. Where an output exceeds the plain tolerance,
/// the noise floor is measured, once, into `floor` from `reversed()` (the generic model's
/// outputs with K summed backwards), and the check is made against it.
pub fn check_outputs(
    prec: Precision,
    outputs: &[Tensor],
    reference: &[Tensor],
    floor: &mut Option<Vec<f64>>,
    reversed: impl FnOnce() -> Result<Vec<Tensor>>,
) -> Result<(Vec<f64>, bool)> {
    let err = rel_l2_each(outputs, reference);
    if check_passes(prec, &err, None) {
        return Ok((err, true));
    }
    if floor.is_none() {
        *floor = Some(noise_floor(&reversed()?, reference));
    }
    let ok = check_passes(prec, &err, floor.as_deref());
    Ok((err, ok))
}

/// The generic-kernel model's outputs on `inputs` with K summed backwards (for [`noise_floor`]).
pub fn reversed_generic(
    ctx: &Arc<GpuContext>,
    p: &Prepared,
    opts: GpuOptions,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>> {
    let o = GpuOptions { fast_conv: false, autotune: false, reverse_k: true, ..opts };
    GpuModel::with_options(ctx.clone(), p, o)?.run(inputs)
}

/// Time the candidates and return the fastest kernel per conv (None where the cost model's
/// choice stands), with a JSON report.
pub fn measure(
    ctx: &Arc<GpuContext>,
    p: &Prepared,
    opts: GpuOptions,
) -> Result<(Vec<Option<TileChoice>>, serde_json::Value)> {
    let t0 = std::time::Instant::now();
    let base = GpuOptions { autotune: false, ..opts };
    let nodes = p.graph.nodes.len();
    if !ctx.timestamps || !opts.fast_conv {
        let why = if opts.fast_conv { "the adapter has no timestamp queries" } else { "fast convs are off" };
        return Ok((vec![None; nodes], serde_json::json!({ "skipped": why })));
    }
    // random inputs of the prepared shapes
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let inputs: Vec<Tensor> = p
        .graph
        .inputs
        .iter()
        .map(|&v| {
            let s = p.shape(v).to_vec();
            let data = pseudo_random(&mut seed, numel(&s));
            Tensor::f32(s, data)
        })
        .collect();
    // forced kernel shapes (the cost model's own model is the control below)
    let mut candidates: Vec<GpuOptions> = Vec::new();
    let coop_mode = match base.coop {
        Some(m) => m,
        None if ctx.coop_ready() => CoopMode::Native,
        None => CoopMode::Off,
    };
    for &(bm, bn, ..) in &TILES {
        for s in SLICES {
            candidates.push(GpuOptions {
                force_tile: Some((bm, bn)),
                force_split: Some(s),
                coop: Some(CoopMode::Off),
                ..base
            });
        }
    }
    if base.precision == Precision::F16 && coop_mode != CoopMode::Off {
        // the gathered operand, the im2col-packed one, the halo tile
        for (im2col, halo) in [(false, false), (true, false), (false, true)] {
            for &(bm, bn, ..) in &COOP_TILES {
                // (a tile without a halo variant would run as the plain gather again)
                if halo && !HALO_TILES.iter().any(|h| (h.0, h.1) == (bm, bn)) {
                    continue;
                }
                for s in SLICES {
                    candidates.push(GpuOptions {
                        force_tile: Some((bm, bn)),
                        force_split: Some(s),
                        coop: Some(coop_mode),
                        im2col,
                        halo,
                        ..base
                    });
                }
            }
        }
    }
    // the thin direct kernel for every conv (the cost model gives it only the head and short-K
    // convs; timed per conv here, it can win elsewhere: 16-channel layers, say)
    if base.thin {
        candidates.push(GpuOptions { thin_all: true, force_tile: None, force_split: None, ..base });
    }
    let mut best: Vec<Option<(f64, TileChoice)>> = vec![None; nodes];
    let mut auto_ms = vec![0.0; nodes];
    let mut auto_choice: Vec<Option<TileChoice>> = vec![None; nodes];
    // every candidate's time per conv, for the report (to refit the cost model from)
    let mut all: Vec<serde_json::Map<String, serde_json::Value>> = vec![Default::default(); nodes];
    let mut tried = 0;
    // every candidate's outputs are checked against the generic conv kernel's: a kernel that
    // computes something else on this device is rejected, and named in the report
    let reference = GpuModel::with_options(ctx.clone(), p, GpuOptions { fast_conv: false, ..base })?.run(&inputs)?;
    // the model's own rounding noise, measured the first time a candidate exceeds the plain
    // tolerance
    let mut floor: Option<Vec<f64>> = None;
    let mut check = |out: &[Tensor]| {
        check_outputs(base.precision, out, &reference, &mut floor, || reversed_generic(ctx, p, base, &inputs))
    };
    let mut rejected = Vec::new();
    // The cost model's own model is the control: it is timed again beside every group of
    // candidates, and a candidate's time is scaled by the control's drift since its first group
    // (GPU clocks rise and fall with the load, and building a group leaves the GPU idle).
    let control = GpuModel::with_options(ctx.clone(), p, base)?;
    let control_out = control.run(&inputs)?;
    let (control_each, control_ok) = check(&control_out)?;
    if !control_ok {
        rejected.push(serde_json::json!({ "candidate": describe(&base), "rel_l2_vs_generic": worst(&control_each) }));
    }
    let control_choices = choices(&control);
    let gemms = gemms_of(control.dispatches(), nodes);
    let mut control_first: Option<Vec<f64>> = None;
    let mut control_drift = Vec::new();
    for group in candidates.chunks(GROUP) {
        let mut models = Vec::new();
        for c in group {
            // a candidate that cannot be built here (workgroup memory...) is skipped
            let Ok(gm) = GpuModel::with_options(ctx.clone(), p, *c) else { continue };
            let out = match gm.run(&inputs) {
                Ok(o) => o,
                Err(e) => {
                    log::warn!("autotune: candidate {c:?} failed to run, skipped: {e}");
                    rejected.push(serde_json::json!({ "candidate": describe(c), "error": e.to_string() }));
                    continue;
                }
            };
            let (each, ok) = check(&out)?;
            if !ok {
                let err = worst(&each);
                log::warn!("autotune: candidate {} differs from the generic kernels by {err:.3e}", describe(c));
                rejected.push(serde_json::json!({ "candidate": describe(c), "rel_l2_vs_generic": err }));
                continue;
            }
            models.push(gm);
        }
        // warm up with the control, then the control and every candidate in turn, best of ROUNDS
        for _ in 0..WARMUP {
            control.run(&inputs)?;
        }
        let mut ctl = vec![f64::INFINITY; nodes];
        let mut times = vec![vec![f64::INFINITY; nodes]; models.len()];
        for _ in 0..ROUNDS {
            min_into(&mut ctl, &control.run_with_stats(&inputs, true)?.1.gpu_ms_by_node);
            for (gm, t) in models.iter().zip(&mut times) {
                min_into(t, &gm.run_with_stats(&inputs, true)?.1.gpu_ms_by_node);
            }
        }
        if ctl.len() < nodes {
            break; // too many dispatches to time one by one
        }
        let first = control_first.get_or_insert_with(|| ctl.clone());
        let drift: Vec<f64> = first.iter().zip(&ctl).map(|(f, c)| if *c > 0.0 { f / c } else { 1.0 }).collect();
        control_drift.push(serde_json::json!(ctl.iter().sum::<f64>() / first.iter().sum::<f64>().max(1e-12)));
        for (gm, t) in models.iter().zip(&times) {
            if t.len() < nodes {
                continue;
            }
            tried += 1;
            for (k, ch) in choices(gm).into_iter().enumerate() {
                let Some(ch) = ch else { continue };
                let ms = t[k] * drift[k];
                all[k].insert(label(ch), ms.into());
                if best[k].is_none_or(|(b, _)| ms < b) {
                    best[k] = Some((ms, ch));
                }
            }
        }
    }
    // the control, at its first group's times
    if let Some(first) = &control_first
        && control_ok
    {
        tried += 1;
        for (k, ch) in control_choices.into_iter().enumerate() {
            let Some(ch) = ch else { continue };
            auto_ms[k] = first[k];
            auto_choice[k] = Some(ch);
            all[k].insert(label(ch), first[k].into());
            if best[k].is_none_or(|(b, _)| first[k] <= b) {
                best[k] = Some((first[k], ch));
            }
        }
    }
    let chosen: Vec<Option<TileChoice>> = best.iter().map(|b| b.map(|b| b.1)).collect();
    let (mut auto_total, mut tuned_total) = (0.0, 0.0);
    for (k, b) in best.iter().enumerate() {
        if let Some((ms, _)) = b {
            auto_total += auto_ms[k];
            tuned_total += ms;
        }
    }
    let mut layers = Vec::new();
    for (k, b) in best.iter().enumerate() {
        let (Some((ms, ch)), Some(ac)) = (b, auto_choice[k]) else { continue };
        let n = &p.graph.nodes[k];
        layers.push(serde_json::json!({
            "node": n.name,
            "out": n.output(0).map(|v| crate::tensor::fmt_shape(p.shape(v))).unwrap_or_default(),
            // [M, columns, images, K] of the control's kernel (scripts/fit_cost_model.py)
            "gemm": gemms[k],
            "cost_model": label(ac), "cost_model_ms": auto_ms[k],
            "tuned": label(*ch), "tuned_ms": ms,
            "all_ms": all[k],
        }));
    }
    let report = serde_json::json!({
        "candidates": tried,
        "rejected": rejected,
        // per output, where a candidate exceeded the plain tolerance (null: none did)
        "noise_floor": floor,
        "seconds": t0.elapsed().as_secs_f64(),
        "control_drift": control_drift,
        "fast_conv_ms_cost_model": auto_total,
        "fast_conv_ms_tuned": tuned_total,
        "layers": layers,
    });
    log::info!("autotune: {} candidates, fast convs {auto_total:.3} ms -> {tuned_total:.3} ms", tried);
    Ok((chosen, report))
}

#[cfg(test)]
mod tests {
    use super::read_cache;

    #[test]
    fn a_tune_cache_that_is_not_one_is_refused_by_name() {
        let d = std::env::temp_dir().join(format!("unet-gpu-tunecache-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("t.json");
        assert!(read_cache(&f).unwrap().is_empty(), "a missing file is an empty cache");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_cache(&f).unwrap().is_empty(), "an empty file is an empty cache");
        std::fs::write(&f, r#"{"k": {"choices": []}}"#).unwrap();
        assert_eq!(read_cache(&f).unwrap().len(), 1);
        for (text, why) in [("garbage", "not JSON"), ("[1, 2]", "not an object")] {
            std::fs::write(&f, text).unwrap();
            let e = read_cache(&f).unwrap_err().to_string();
            assert!(e.contains("t.json") && e.contains("not a tune cache") && e.contains(why), "{e}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
