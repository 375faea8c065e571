//! The conv cost model against the H200 measurements it was fitted to: for single convs shaped
//! like layers of the benchmark networks, the kernel the model picks for an H200-class profile
//! (48 KiB of workgroup memory, 2 GiB bindings, 16x16x16 cooperative matrices) is the one that
//! autotuning measured fastest, or within a few percent of it, in run 6
//! (docs/device-runs/2026-11-27-h200-run6/engine.jsonl). Lowering needs no GPU.

mod common;
use common::build::*;
use unet_gpu::Model;
use unet_gpu::gpu::lower::{LowerOpts, lower};
use unet_gpu::gpu::{Precision, plan::plan};

/// (tensor cores, BM, BN, K slices) of the kernel picked for a 3x3 pad-1 conv `cin -> cout` on a
/// `1 x cin x hw x hw` input.
fn pick(precision: Precision, cin: i64, cout: i64, hw: i64) -> (bool, u32, u32, u32) {
    let m = model(
        vec![node("Conv", "conv", &["x", "w", "b"], &["y"], vec![attr_ints("pads", &[1, 1, 1, 1])])],
        vec![vi("x", &[1, cin, hw, hw])],
        vec![vi("y", &[1, cout, hw, hw])],
        vec![
            tensor("w", &[cout, cin, 3, 3], &vec![0.01; (cout * cin * 9) as usize]),
            tensor("b", &[cout], &vec![0.0; cout as usize]),
        ],
    );
    let m = Model::from_bytes(&bytes(&m), "conv").unwrap();
    let p = m.prepare(&[vec![1, cin as usize, hw as usize, hw as usize]]).unwrap();
    let mp = plan(&p, precision.bytes()).unwrap();
    let low = lower(&p, &mp, 65535, LowerOpts::h200_class(precision), &[]).unwrap();
    let c = unet_gpu::tune::choices_of(&low.dispatches, p.graph.nodes.len())
        .into_iter()
        .flatten()
        .next()
        .expect("a fast conv");
    (c.coop, c.bm, c.bn, c.slices as u32)
}

#[test]
fn f16_picks_match_the_h200_measurements() {
    // 64 channels at 512^2: the 64x64 tensor-core tile (0.37 ms) beat 128x128 (0.46) and the
    // FMA 64x256 tile (0.63) that the previous model chose
    assert_eq!(pick(Precision::F16, 64, 64, 512), (true, 64, 64, 1));
    // 128 and 256 channels: 128x128 tensor-core tiles, whole K (split 2 measured 40 % slower)
    assert_eq!(pick(Precision::F16, 128, 128, 256), (true, 128, 128, 1));
    assert_eq!(pick(Precision::F16, 256, 256, 128), (true, 128, 128, 1));
    // 512 -> 1024 channels at 32^2 (64 workgroups): split K (2: 0.138 ms, 4: 0.148, 1: slower)
    let (coop, bm, bn, s) = pick(Precision::F16, 512, 1024, 32);
    assert!(coop && (bm, bn) == (128, 128) && s >= 2, "{coop} {bm}x{bn} split {s}");
    // 64 channels at 128^2 (base 16): 64x64 tensor-core tile (0.019 ms vs 0.056 for the old pick)
    assert_eq!(pick(Precision::F16, 64, 64, 128), (true, 64, 64, 1));
}

#[test]
fn f32_picks_match_the_h200_measurements() {
    // 64 channels at 512^2: 64x256 (0.640 ms; 32x128 0.772, 128x128 wastes half its rows)
    assert_eq!(pick(Precision::F32, 64, 64, 512), (false, 64, 256, 1));
    // 128 channels at 256^2: 128x128, whole K (0.606 ms; split 2 0.691)
    assert_eq!(pick(Precision::F32, 128, 128, 256), (false, 128, 128, 1));
    // 512 channels at 64^2: 128x128 in 2 K slices (0.627 ms; whole K 0.799 in run 5)
    assert_eq!(pick(Precision::F32, 512, 512, 64), (false, 128, 128, 2));
    // 512 -> 1024 at 32^2: 4 K slices (0.329 ms; 8: 0.339)
    assert_eq!(pick(Precision::F32, 512, 1024, 32), (false, 128, 128, 4));
    // 64 channels at 128^2 (base 16): 64x64, whole K (0.054 ms; 64x256 split 4 0.068)
    assert_eq!(pick(Precision::F32, 64, 64, 128), (false, 64, 64, 1));
}
