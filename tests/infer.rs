//! The image pipeline: GPU and CPU give the same PNG, odd sizes / gray / alpha / 16-bit round-trip,
//! tiles stitch exactly, fixed-size models (u2netp) are resized, ablation and dumps work.

mod common;
use common::build::*;
use std::path::{Path, PathBuf};
use unet_gpu::Model;
use unet_gpu::imageio::{self, Picture};
use unet_gpu::infer::{Engine, InferOptions, infer_picture};
use unet_gpu::onnx::proto::*;
use unet_gpu::presets::{Preset, RawParams};
use unet_gpu::skips::SkipSelection;

fn image(name: &str) -> PathBuf {
    common::data_dir().join("data/images").join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("unet-gpu-infer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn colorize() -> Model {
    unet_gpu::infer::load_model("colorize").unwrap().0
}

fn engine(model: Model, gpu: bool, preset: &Preset, opts: InferOptions) -> Engine {
    let ctx = if gpu { Some(common::gpu()) } else { None };
    Engine::new(model, ctx, preset, opts).unwrap()
}

/// Decode PNG bytes to (width, height, color type, 8-bit or 16-bit samples as u16).
fn decode_png(bytes: &[u8]) -> (u32, u32, image::ColorType, Vec<u16>) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
    let ct = img.color();
    let samples: Vec<u16> = match ct {
        image::ColorType::L16 | image::ColorType::La16 | image::ColorType::Rgb16 | image::ColorType::Rgba16 => {
            img.to_rgba16().into_raw()
        }
        _ => img.to_rgba8().into_raw().into_iter().map(u16::from).collect(),
    };
    (img.width(), img.height(), ct, samples)
}

fn max_diff(a: &[u16], b: &[u16]) -> u16 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

#[test]
fn gpu_and_cpu_write_the_same_png() {
    let preset = Preset::Colorize;
    let mut cpu = engine(colorize(), false, &preset, InferOptions::default());
    let mut gpu = engine(colorize(), true, &preset, InferOptions::default());
    // 120x80 fits the multiple of 8; 150x100 is padded to 152x104 and cropped back
    for name in ["chelsea_120x80.jpg", "coffee_150x100.jpg"] {
        let pic = imageio::read(&image(name)).unwrap();
        let (a, _) = infer_picture(&mut cpu, &preset, &pic).unwrap();
        let (b, _) = infer_picture(&mut gpu, &preset, &pic).unwrap();
        let (pa, pb) = (imageio::encode_png(&a, false).unwrap(), imageio::encode_png(&b, false).unwrap());
        let (w, h, ct, sa) = decode_png(&pa);
        let (_, _, _, sb) = decode_png(&pb);
        assert_eq!((w as usize, h as usize), (pic.width, pic.height), "{name}");
        assert_eq!(ct, image::ColorType::Rgb8, "{name}");
        let d = max_diff(&sa, &sb);
        assert!(d <= 1, "{name}: GPU and CPU PNGs differ by {d} (8-bit levels)");
        // a colour picture, not gray
        let chroma: f32 =
            (0..a.pixels()).map(|i| (a.planes[0][i] - a.planes[2][i]).abs()).sum::<f32>() / a.pixels() as f32;
        assert!(chroma > 0.01, "{name}: the output has no colour (mean |R-B| {chroma})");
    }
}

#[test]
fn f16_stays_close_to_f32() {
    // --precision f16: activations and weights stored in f16, f32 arithmetic (tensor cores
    // where the adapter has them; lavapipe runs the scalar f16 kernels)
    let preset = Preset::Colorize;
    let mut f32 = engine(colorize(), true, &preset, InferOptions::default());
    let f16_opts = InferOptions { gpu: unet_gpu::gpu::exec::GpuOptions::f16(), ..Default::default() };
    let mut f16 = engine(colorize(), true, &preset, f16_opts);
    let pic = imageio::read(&image("coffee_150x100.jpg")).unwrap();
    let (a, _) = infer_picture(&mut f32, &preset, &pic).unwrap();
    let (b, _) = infer_picture(&mut f16, &preset, &pic).unwrap();
    let (mut num, mut den, mut worst) = (0f64, 0f64, 0f32);
    for (pa, pb) in a.planes.iter().zip(&b.planes) {
        for (x, y) in pa.iter().zip(pb) {
            num += ((x - y) as f64).powi(2);
            den += (*x as f64).powi(2);
            worst = worst.max((x - y).abs());
        }
    }
    let rel = (num / den).sqrt();
    assert!(rel <= 1e-2, "f16 vs f32 rel-L2 {rel}");
    assert!(worst > 0.0, "f16 gave exactly the f32 picture: was it f16?");
    assert!(worst <= 4.0 / 255.0, "f16 vs f32: worst sample {worst}");
}

#[test]
fn ablation_and_dumps_agree_on_gpu_and_cpu() {
    let preset = Preset::Colorize;
    let opts = InferOptions { ablate: Some("0,2".parse().unwrap()), dump: true, ..Default::default() };
    let mut cpu = engine(colorize(), false, &preset, opts.clone());
    let mut gpu = engine(colorize(), true, &preset, opts);
    let pic = imageio::read(&image("coffee_150x100.jpg")).unwrap();
    let (a, da) = infer_picture(&mut cpu, &preset, &pic).unwrap();
    let (b, db) = infer_picture(&mut gpu, &preset, &pic).unwrap();
    let d = max_diff(
        &decode_png(&imageio::encode_png(&a, false).unwrap()).3,
        &decode_png(&imageio::encode_png(&b, false).unwrap()).3,
    );
    assert!(d <= 1, "ablated outputs differ by {d}");
    let stems: Vec<&str> = da.iter().map(|d| d.stem.as_str()).collect();
    let kinds: Vec<&str> = stems.iter().map(|s| s.split('_').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["enc0", "enc1", "enc2", "bottleneck", "skip0", "skip1", "skip2", "dec0", "dec1", "dec2"],
        "{stems:?}"
    );
    assert_eq!(da.len(), db.len());
    for (x, y) in da.iter().zip(&db) {
        assert_eq!((&x.stem, x.channels, x.height, x.width), (&y.stem, y.channels, y.height, y.width));
        let rel = common::rel_l2(&y.data, &x.data);
        assert!(rel < 1e-4, "{}: rel-L2 {rel}", x.stem);
    }
    // the dumps are cropped to the image at their own resolution: 150x100 -> 75x50 -> 38x25
    let skip1 = da.iter().find(|d| d.stem.starts_with("skip1")).unwrap();
    assert_eq!((skip1.channels, skip1.width, skip1.height), (40, 75, 50));
    let b = da.iter().find(|d| d.stem.starts_with("bottleneck")).unwrap();
    assert_eq!((b.channels, b.width, b.height), (160, 19, 13));
    // ablating changes the output
    let mut plain = engine(colorize(), false, &preset, InferOptions::default());
    let (c, _) = infer_picture(&mut plain, &preset, &pic).unwrap();
    let diff: f32 = c.planes[0].iter().zip(&a.planes[0]).map(|(x, y)| (x - y).abs()).sum::<f32>() / c.pixels() as f32;
    assert!(diff > 0.01, "ablation made no difference ({diff})");
}

fn write_png(path: &Path, w: u32, h: u32, ct: image::ExtendedColorType, samples: &[u8]) {
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(image::codecs::png::PngEncoder::new(&mut bytes), samples, w, h, ct).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn odd_sizes_gray_alpha_and_16_bit_round_trip() {
    let dir = tmpdir("roundtrip");
    let preset = Preset::Colorize;
    let mut e = engine(colorize(), false, &preset, InferOptions::default());
    let pattern = |n: usize, k: usize| -> Vec<u8> { (0..n).map(|i| ((i * 37 + k * 11) % 251) as u8).collect() };
    // (name, w, h, color type, samples per pixel, bytes per sample)
    let cases: &[(&str, u32, u32, image::ExtendedColorType, usize, usize)] = &[
        ("gray8", 37, 29, image::ExtendedColorType::L8, 1, 1),
        ("graya8", 33, 17, image::ExtendedColorType::La8, 2, 1),
        ("rgb8", 1, 1, image::ExtendedColorType::Rgb8, 3, 1),
        ("rgba8", 21, 40, image::ExtendedColorType::Rgba8, 4, 1),
        ("rgba16", 45, 31, image::ExtendedColorType::Rgba16, 4, 2),
        ("gray16", 9, 70, image::ExtendedColorType::L16, 1, 2),
    ];
    for &(name, w, h, ct, spp, bps) in cases {
        let input = dir.join(format!("{name}.png"));
        let samples = pattern((w * h) as usize * spp * bps, 3);
        write_png(&input, w, h, ct, &samples);
        let pic = imageio::read(&input).unwrap();
        assert_eq!((pic.width, pic.height, pic.channels()), (w as usize, h as usize, spp), "{name}");
        assert_eq!(pic.sixteen_bit, bps == 2, "{name}");
        let (out, _) = infer_picture(&mut e, &preset, &pic).unwrap();
        let path = dir.join(format!("{name}_out.png"));
        imageio::write(&path, &out, out.sixteen_bit).unwrap();
        let got = image::open(&path).unwrap();
        assert_eq!((got.width(), got.height()), (w, h), "{name}: size");
        let has_alpha = spp == 2 || spp == 4;
        let want_ct = match (has_alpha, bps) {
            (false, 1) => image::ColorType::Rgb8,
            (true, 1) => image::ColorType::Rgba8,
            (false, _) => image::ColorType::Rgb16,
            (true, _) => image::ColorType::Rgba16,
        };
        assert_eq!(got.color(), want_ct, "{name}: colour type");
        if has_alpha {
            // the alpha channel comes back exactly
            let src = image::open(&input).unwrap().to_rgba16();
            let dst = got.to_rgba16();
            for (a, b) in src.pixels().zip(dst.pixels()) {
                assert_eq!(a.0[3], b.0[3], "{name}: alpha");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A U-Net whose outputs depend only on 2x2-aligned neighbourhoods: x [1,1,H,W] -> 1x1 conv ->
/// e0 -> MaxPool 2 -> 1x1 conv -> ConvTranspose 2x2 s2 -> concat(e0, up) -> 1x1 conv -> Sigmoid
/// -> y [1,3,H,W]. Tiles on a 2-aligned grid must give exactly the untiled result.
fn aligned_unet() -> Vec<u8> {
    let dyn_vi = |name: &str, c: i64| {
        let mut v = vi(name, &[1, c, 1, 1]);
        let s = v.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap();
        s.dim[2] = Dimension { dim_param: Some("H".into()), ..Default::default() };
        s.dim[3] = Dimension { dim_param: Some("W".into()), ..Default::default() };
        v
    };
    let r = |n: usize, seed: u64| common::random(n, seed, -1.0, 1.0);
    let m = model(
        vec![
            node("Conv", "c1", &["x", "w1", "b1"], &["c1"], vec![]),
            node("Relu", "r1", &["c1"], &["e0"], vec![]),
            node(
                "MaxPool",
                "pool",
                &["e0"],
                &["p"],
                vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
            ),
            node("Conv", "c2", &["p", "w2"], &["c2"], vec![]),
            node("Relu", "r2", &["c2"], &["m"], vec![]),
            node("ConvTranspose", "up", &["m", "wt"], &["u"], vec![attr_ints("strides", &[2, 2])]),
            node("Concat", "cat", &["e0", "u"], &["cat"], vec![attr_i("axis", 1)]),
            node("Conv", "c3", &["cat", "w3"], &["c3"], vec![]),
            node("Sigmoid", "s", &["c3"], &["y"], vec![]),
        ],
        vec![dyn_vi("x", 1)],
        vec![dyn_vi("y", 3)],
        vec![
            tensor("w1", &[4, 1, 1, 1], &r(4, 1)),
            tensor("b1", &[4], &r(4, 2)),
            tensor("w2", &[6, 4, 1, 1], &r(24, 3)),
            tensor("wt", &[6, 4, 2, 2], &r(96, 4)),
            tensor("w3", &[3, 8, 1, 1], &r(24, 5)),
        ],
    );
    bytes(&m)
}

#[test]
fn tiles_stitch_exactly() {
    let m = Model::from_bytes(&aligned_unet(), "aligned").unwrap();
    let preset = Preset::Colorize;
    let (w, h) = (101, 67);
    let gray: Vec<f32> = common::random(w * h, 9, 0.0, 1.0);
    let pic = Picture::new(w, h, vec![gray]);
    let mut whole = engine(m.clone(), false, &preset, InferOptions { dump: true, ..Default::default() });
    assert_eq!(whole.multiple, 2, "the size multiple found from the graph");
    let mut tiled = engine(m, false, &preset, InferOptions { dump: true, tile: 40, ..Default::default() });
    assert_eq!(tiled.tile, 40);
    let (a, da) = infer_picture(&mut whole, &preset, &pic).unwrap();
    let (b, db) = infer_picture(&mut tiled, &preset, &pic).unwrap();
    assert_eq!(a, b, "tiled output differs from the whole-image output");
    let stems: Vec<&str> = da.iter().map(|d| d.stem.as_str()).collect();
    assert_eq!(stems, ["bottleneck_m", "skip0_e0", "dec0_cat"]);
    for (x, y) in da.iter().zip(&db) {
        assert_eq!(x.stem, y.stem);
        assert_eq!(x.data, y.data, "{}", x.stem);
    }
    let skip = da.iter().find(|d| d.stem == "skip0_e0").unwrap();
    assert_eq!((skip.channels, skip.width, skip.height), (4, 101, 67));
    let bott = da.iter().find(|d| d.stem.starts_with("bottleneck")).unwrap();
    assert_eq!((bott.channels, bott.width, bott.height), (6, 51, 34));
}

#[test]
fn u2netp_mask_preset_resizes_ablates_and_dumps() {
    let m = Model::load(&common::data_dir().join("data/u2netp/model.onnx")).unwrap();
    let preset = Preset::Mask { apply: false };
    let opts = InferOptions { ablate: Some(SkipSelection::Levels(vec![4])), dump: true, ..Default::default() };
    let mut e = engine(m, false, &preset, opts);
    assert_eq!(e.fixed_hw, Some((320, 320)));
    let pic = imageio::read(&image("coffee_150x100.jpg")).unwrap();
    let (out, dumps) = infer_picture(&mut e, &preset, &pic).unwrap();
    assert_eq!((out.width, out.height, out.channels()), (150, 100, 1));
    let lo = out.planes[0].iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = out.planes[0].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert!(lo >= 0.0 && hi <= 1.0 && hi - lo > 0.5, "mask range {lo}..{hi}");
    let dir = tmpdir("u2dump");
    let files = unet_gpu::infer::write_dumps(&dir, &dumps).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in
        ["skip0_947.png", "skip1_1070.png", "skip2_1166.png", "skip3_1235.png", "skip4_1264.png", "bottleneck_1293.png"]
    {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("enc0_")) && names.iter().any(|n| n.starts_with("dec0_")), "{names:?}");
    // a grid of 64 channels of 320x320 with 1-px separators
    let g = image::open(dir.join("skip0_947.png")).unwrap();
    assert_eq!((g.width(), g.height()), (8 * 320 + 7, 8 * 320 + 7));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raw_preset_normalises_each_channel() {
    let pic = Picture::new(2, 1, vec![vec![0.0, 1.0], vec![0.5, 0.5], vec![1.0, 0.0]]);
    let p = Preset::Raw(RawParams { mean: vec![0.5, 0.0, 1.0], std: vec![0.5], scale: 2.0 });
    let x = p.preprocess(&pic, 3).unwrap();
    assert_eq!(x, vec![vec![-1.0, 3.0], vec![2.0, 2.0], vec![2.0, -2.0]]);
    let lum = p.input_channels(Some(1)).unwrap();
    assert_eq!(lum, 1);
    let err = Preset::Raw(RawParams { mean: vec![0.0, 0.0], ..Default::default() }).preprocess(&pic, 3).unwrap_err();
    assert!(err.to_string().contains("--mean has 2 values"), "{err}");
    let err = Preset::Colorize.input_channels(Some(3)).unwrap_err().to_string();
    assert!(err.contains("colorize preset feeds 1"), "{err}");
    // 4 output channels are written as RGBA, others as gray
    let out = p.postprocess(vec![vec![2.0, -1.0]; 4]).unwrap();
    assert_eq!(out, vec![vec![1.0, 0.0]; 4]);
    assert_eq!(p.postprocess(vec![vec![0.5, 0.5]; 2]).unwrap().len(), 1);
}
