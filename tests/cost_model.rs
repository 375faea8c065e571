//! The conv cost model against the H200 measurements it was fitted to: for single convs shaped
//! like layers of the benchmark networks, the kernel the model picks for an H200-class profile
//! (48 KiB of workgroup memory, 2 GiB bindings, 16x16x16 cooperative matrices) is the one that
//! autotuning measured fastest, or within a few percent of it, in run 6
//! (docs/device-runs/2026-11-27-h200-run6/engine.jsonl). Also on that profile: the halo-tile
//! kernels (`--halo`) replace the tensor-core gathers tile for tile (and take the 16-channel
//! convs the cost model keeps on FMA tiles), a transposed conv is one GEMM over its taps, and
//! the first conv, the 1x1 head and a short-K transposed conv run on the thin direct kernel.
//! Lowering needs no GPU.

mod common;
use common::build::*;
use unet_gpu::Model;
use unet_gpu::gpu::lower::{CoopMode, LowerOpts, lower};
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

/// The dispatches of one node `op` (weights `w` of shape `wshape`, bias of `cout`) on a
/// `batch x cin x hw x hw` input, lowered for the H200 profile in f16 with `halo`.
fn lowered(
    op: &str,
    attrs: Vec<unet_gpu::onnx::proto::AttributeProto>,
    x: [i64; 4],
    wshape: [i64; 4],
    cout: i64,
    halo: bool,
) -> Vec<unet_gpu::gpu::lower::Dispatch> {
    lowered_with(op, attrs, x, wshape, cout, LowerOpts { halo, ..LowerOpts::h200_class(Precision::F16) })
}

/// As [`lowered`], with the options given.
fn lowered_with(
    op: &str,
    attrs: Vec<unet_gpu::onnx::proto::AttributeProto>,
    x: [i64; 4],
    wshape: [i64; 4],
    cout: i64,
    opts: LowerOpts,
) -> Vec<unet_gpu::gpu::lower::Dispatch> {
    let n: i64 = wshape.iter().product();
    let m = model(
        vec![node(op, "n", &["x", "w", "b"], &["y"], attrs)],
        vec![vi("x", &x)],
        vec![vi("y", &[])],
        vec![tensor("w", &wshape, &vec![0.01; n as usize]), tensor("b", &[cout], &vec![0.0; cout as usize])],
    );
    let m = Model::from_bytes(&bytes(&m), op).unwrap();
    let p = m.prepare(&[x.iter().map(|&d| d as usize).collect()]).unwrap();
    let mp = plan(&p, 2).unwrap();
    lower(&p, &mp, 65535, opts, &[]).unwrap().dispatches
}

#[test]
fn halo_kernels_replace_the_tensor_core_gathers_on_an_h200_profile() {
    use unet_gpu::gpu::Shader;
    // the benchmark network's 3x3 convs that run on tensor cores: with --halo, each becomes the
    // halo kernel of the same tile, within 48 KiB, its K slices whole channel blocks
    for (cin, cout, hw) in
        [(64, 64, 512), (128, 128, 256), (256, 256, 128), (512, 512, 64), (512, 1024, 32), (48, 64, 128)]
    {
        let plain =
            lowered("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, cin, hw, hw], [cout, cin, 3, 3], cout, false);
        let halo =
            lowered("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, cin, hw, hw], [cout, cin, 3, 3], cout, true);
        let (Shader::CoopConv(c), Shader::HaloConv(h)) = (plain[0].shader, halo[0].shader) else {
            panic!("{cin}->{cout} at {hw}: {:?} / {:?}", plain[0].shader, halo[0].shader)
        };
        assert_eq!((h.bm, h.bn, h.kh, h.kw, h.dil), (c.bm, c.bn, 3, 3, 1), "{cin}->{cout} at {hw}");
        // A resident for all taps where it fits (channel blocks of 32, else 16), else streamed
        let fits = |resident, cb| unet_gpu::gpu::halo::HaloCfg { resident, cb, epi: 1, ..h }.shared_bytes() <= 49152;
        let want = [(true, 32), (true, 16), (false, 32), (false, 16)]
            .into_iter()
            .find(|&(r, cb)| cin % cb as i64 == 0 && fits(r, cb))
            .unwrap();
        assert_eq!((h.resident, h.cb), want, "{cin}->{cout} at {hw}");
        // (the 128x128 tile has no room for nine taps of A; the 64x64 one has, in blocks of 16)
        assert_eq!(h.resident, h.bm < 128, "{cin}->{cout} at {hw}: {}", h.name());
        assert!(h.shared_bytes() <= 49152);
        let d = &halo[0];
        // pixel tiles of (BN / 16) x 16, channel tiles, image
        let tiles = (hw as u32).div_ceil(16) * (hw as u32).div_ceil(h.bn / 16);
        assert_eq!((d.params[15], d.params[12]), (tiles, (hw as u32).div_ceil(16)));
        if h.split {
            let (per, slices) = (d.params[26], d.params[27]);
            let blocks = cin as u32 / h.cb;
            assert!(per * (slices - 1) < blocks && per * slices >= blocks, "{cin}: {per} x {slices} of {blocks}");
            assert_eq!(halo[1].shader, Shader::SplitK);
        }
    }
    // stride 2 keeps the gather
    let s2 = lowered(
        "Conv",
        vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])],
        [1, 64, 64, 64],
        [64, 64, 3, 3],
        64,
        true,
    );
    assert!(!matches!(s2[0].shader, Shader::HaloConv(_)), "{:?}", s2[0].shader);
    // base 16's 16-channel convs, on FMA tiles by the cost model, take halo tiles (cb 16) when
    // asked for; the 1x1 head stays on the thin kernel
    for (cin, cout, hw) in [(16, 16, 512), (32, 16, 512), (16, 32, 256)] {
        let k3 = |halo| {
            lowered("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, cin, hw, hw], [cout, cin, 3, 3], cout, halo)
        };
        assert!(matches!(k3(false)[0].shader, Shader::FastConv(_)), "{cin}->{cout}: {:?}", k3(false)[0].shader);
        let h = k3(true);
        assert!(
            matches!(h[0].shader, Shader::HaloConv(c) if c.cb == if cin % 32 == 0 { 32 } else { 16 }),
            "{cin}->{cout}: {:?}",
            h[0].shader
        );
    }
    let head = lowered("Conv", vec![], [1, 16, 512, 512], [3, 16, 1, 1], 3, true);
    assert!(matches!(head[0].shader, Shader::ThinConv(_)), "{:?}", head[0].shader);
}

#[test]
fn tensor_core_gathers_load_runs_of_rows_on_an_h200_profile() {
    use unet_gpu::gpu::Shader;
    use unet_gpu::gpu::convgen::BMode;
    // every 3x3 conv of the benchmark networks that runs on tensor cores has 16-pixel output
    // rows: its gather loads runs of them as vectors, with the last vec4 it may read in param 28
    for (cin, cout, hw) in [(64, 64, 512), (128, 128, 256), (512, 512, 64), (512, 1024, 32), (32, 32, 256)] {
        let d =
            lowered("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, cin, hw, hw], [cout, cin, 3, 3], cout, false);
        assert!(
            matches!(d[0].shader, Shader::CoopConv(c) if c.b == BMode::Rows),
            "{cin}->{cout} at {hw}: {:?}",
            d[0].shader
        );
        assert_eq!(d[0].params[28] as i64, cin * hw * hw / 4 - 1, "{cin}->{cout} at {hw}");
    }
    // a width that is not a multiple of 16 keeps the per-f16 gather
    let d = lowered("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, 64, 40, 40], [64, 64, 3, 3], 64, false);
    assert!(matches!(d[0].shader, Shader::CoopConv(c) if c.b == BMode::Taps), "{:?}", d[0].shader);
    // the direct GEMMs of a transposed conv and a 1x1 conv: one row of all their pixels
    let d =
        lowered("ConvTranspose", vec![attr_ints("strides", &[2, 2])], [1, 256, 64, 64], [256, 128, 2, 2], 128, false);
    assert!(matches!(d[0].shader, Shader::CoopConv(c) if c.b == BMode::Rows && c.scatter), "{:?}", d[0].shader);
    assert_eq!(&d[0].params[28..38], &[256 * 64 * 64 / 4 - 1, 256, 1, 0, 0, 64 * 64, 1, 64 * 64, 0, 0]);
    let d = lowered("Conv", vec![], [1, 256, 128, 128], [256, 256, 1, 1], 256, false);
    assert!(matches!(d[0].shader, Shader::CoopConv(c) if c.b == BMode::Rows), "{:?}", d[0].shader);
}

#[test]
fn a_transposed_conv_is_one_gemm_over_its_taps() {
    use unet_gpu::gpu::Shader;
    // 2x2 stride 2, 128 -> 64 channels, batch 2: one dispatch, rows = 64 channels x 4 taps,
    // grid z = the images
    let d = lowered("ConvTranspose", vec![attr_ints("strides", &[2, 2])], [2, 128, 64, 64], [128, 64, 2, 2], 64, false);
    assert_eq!(d.len(), 1);
    assert!(matches!(d[0].shader, Shader::CoopConv(c) if c.scatter), "{:?}", d[0].shader);
    assert_eq!((d[0].params[0], d[0].params[1], d[0].params[2], d[0].params[22]), (128, 256, 64 * 64, 4));
    assert_eq!(d[0].groups[2], 2);
}

#[test]
fn the_thin_kernel_takes_the_first_conv_the_head_and_the_last_upsampling() {
    use unet_gpu::gpu::Shader;
    // the first conv of an RGB U-Net (K 27) and its 1x1 head (3 outputs): the thin direct
    // kernel, 16 (or all 3) output channels per invocation, 256 pixels per workgroup
    let pad = || vec![attr_ints("pads", &[1, 1, 1, 1])];
    let first = lowered("Conv", pad(), [1, 3, 512, 512], [64, 3, 3, 3], 64, false);
    assert!(matches!(first[0].shader, Shader::ThinConv(c) if c.co == 16), "{:?}", first[0].shader);
    assert_eq!((first[0].params[15], first[0].params[16]), (512 * 512 / 256, 4));
    let head = lowered("Conv", vec![], [1, 64, 512, 512], [3, 64, 1, 1], 3, false);
    assert!(matches!(head[0].shader, Shader::ThinConv(c) if c.co == 4), "{:?}", head[0].shader);
    // a conv with both more channels and a longer K, and a short-K conv with many outputs, do not
    let deep = lowered("Conv", pad(), [1, 16, 512, 512], [16, 16, 3, 3], 16, false);
    assert!(!matches!(deep[0].shader, Shader::ThinConv(_)), "{:?}", deep[0].shader);
    let wide = lowered("Conv", vec![], [1, 32, 64, 64], [256, 32, 1, 1], 256, false);
    assert!(!matches!(wide[0].shader, Shader::ThinConv(_)), "{:?}", wide[0].shader);
    // base 16's last upsampling, 2x2 stride 2, 32 -> 16 channels: 64 GEMM rows, K 32, scattered
    let up =
        lowered("ConvTranspose", vec![attr_ints("strides", &[2, 2])], [1, 32, 256, 256], [32, 16, 2, 2], 16, false);
    assert!(matches!(up[0].shader, Shader::ThinConv(c) if c.co == 16 && c.scatter), "{:?}", up[0].shader);
    assert_eq!((up[0].params[2], up[0].params[15], up[0].params[16]), (256 * 256, 256 * 256 / 256, 4));
    // `--thin all` (autotuning's candidate): those two as well, in blocks of 16 output channels;
    // a forced tile still wins
    let all = LowerOpts { thin_all: true, ..LowerOpts::h200_class(Precision::F16) };
    let deep = lowered_with("Conv", pad(), [1, 16, 512, 512], [16, 16, 3, 3], 16, all);
    assert!(matches!(deep[0].shader, Shader::ThinConv(c) if c.co == 16 && !c.scatter), "{:?}", deep[0].shader);
    assert_eq!(deep[0].params[16], 1);
    let wide = lowered_with("Conv", vec![], [1, 32, 64, 64], [256, 32, 1, 1], 256, all);
    assert!(matches!(wide[0].shader, Shader::ThinConv(c) if c.co == 16), "{:?}", wide[0].shader);
    assert_eq!(wide[0].params[16], 16);
    let forced = LowerOpts { force_tile: Some((64, 64)), ..all };
    let deep = lowered_with("Conv", pad(), [1, 16, 512, 512], [16, 16, 3, 3], 16, forced);
    assert!(!matches!(deep[0].shader, Shader::ThinConv(_)), "{:?}", deep[0].shader);
}

/// A tensor-core tile not yet timed on hardware (efficiency 0 in `COOP_TILES`) is never the cost
/// model's choice, on any conv shape of the benchmark networks, but runs where it is forced (as
/// autotuning forces every tile to time it).
#[test]
fn untimed_tiles_run_only_when_forced() {
    use unet_gpu::gpu::convgen::COOP_TILES;
    let untimed: Vec<(u32, u32)> = COOP_TILES.iter().filter(|t| t.4 <= 0.0).map(|t| (t.0, t.1)).collect();
    for &(cin, cout, hw) in &[
        (64, 64, 512),
        (128, 64, 512),
        (64, 128, 256),
        (128, 128, 256),
        (256, 256, 128),
        (512, 512, 64),
        (512, 1024, 32),
    ] {
        let (coop, bm, bn, _) = pick(Precision::F16, cin, cout, hw);
        assert!(!(coop && untimed.contains(&(bm, bn))), "{cin}->{cout} at {hw}: untimed tile {bm}x{bn} picked");
    }
    for &(bm, bn) in &untimed {
        let opts = LowerOpts { force_tile: Some((bm, bn)), ..LowerOpts::h200_class(Precision::F16) };
        let pads = vec![attr_ints("pads", &[1, 1, 1, 1])];
        let d = lowered_with("Conv", pads, [1, 64, 64, 64], [64, 64, 3, 3], 64, opts);
        let c = unet_gpu::tune::choices_of(&d, 1).into_iter().flatten().next().unwrap();
        assert_eq!((c.coop, c.bm, c.bn), (true, bm, bn), "forced {bm}x{bn}");
    }
}

#[test]
fn every_kernel_fits_a_32_kib_adapter() {
    use unet_gpu::gpu::Shader;
    use unet_gpu::gpu::convgen::COOP_TILES;
    // on 32 KiB of workgroup memory (lavapipe) a tensor-core tile may fit only with its B
    // operand staged as rows: the cost model prices it so where the conv can have them, and
    // must leave it out where it cannot (row loads off, a stride, an odd width, im2col);
    // whatever the options and forced tile, no kernel may need more than the adapter has
    let convs: [(&str, Vec<unet_gpu::onnx::proto::AttributeProto>, [i64; 4], [i64; 4], i64); 5] = [
        ("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, 64, 32, 32], [64, 64, 3, 3], 64),
        ("Conv", vec![attr_ints("pads", &[1, 1, 1, 1])], [1, 32, 20, 20], [48, 32, 3, 3], 48),
        (
            "Conv",
            vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])],
            [1, 32, 32, 32],
            [64, 32, 3, 3],
            64,
        ),
        ("Conv", vec![], [1, 64, 16, 16], [96, 64, 1, 1], 96),
        ("ConvTranspose", vec![attr_ints("strides", &[2, 2])], [1, 64, 16, 16], [64, 32, 2, 2], 32),
    ];
    let base = LowerOpts { max_shared: 32768, coop: CoopMode::Emulate, ..LowerOpts::h200_class(Precision::F16) };
    let options = [
        base,
        LowerOpts { row_loads: false, ..base },
        LowerOpts { row_quads: true, ..base },
        LowerOpts { im2col: true, ..base },
        LowerOpts { halo: true, ..base },
    ];
    let mut rows_only = 0;
    for (op, attrs, x, w, cout) in &convs {
        for o in options {
            for tile in [None].into_iter().chain(COOP_TILES.iter().map(|t| Some((t.0, t.1)))) {
                let d = lowered_with(op, attrs.clone(), *x, *w, *cout, LowerOpts { force_tile: tile, ..o });
                for k in &d {
                    let bytes = match k.shader {
                        Shader::CoopConv(c) => {
                            let gather = unet_gpu::gpu::convgen::CoopCfg {
                                b: unet_gpu::gpu::convgen::BMode::Gather,
                                epi: 1,
                                quads: false,
                                ..c
                            };
                            rows_only += (gather.shared_bytes() > 32768) as usize;
                            c.shared_bytes()
                        }
                        Shader::FastConv(c) => c.shared_bytes(),
                        Shader::HaloConv(c) => c.shared_bytes(),
                        _ => 0,
                    };
                    assert!(bytes <= 32768, "{op} {x:?} {tile:?} {o:?}: {:?} needs {bytes}", k.shader);
                }
            }
        }
    }
    // (the check above is not vacuous: some convs did take a tile that fits only with rows)
    assert!(rows_only > 0);
}
