//! `unet-gpu infer`, `info` and `compare` from the command line: the built-in model works from any
//! directory; corrupt images and unwritable outputs get clear errors and leave no file behind.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unet-gpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("unet-gpu-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn image(name: &str) -> PathBuf {
    common::data_dir().join("data/images").join(name)
}

fn run(c: &mut Command) -> (bool, String, String) {
    let o: Output = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Files in a directory (temporary files included).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn infer_with_the_built_in_model_from_another_directory() {
    let dir = tmpdir("default");
    let (ok, _, err) = run(bin()
        .current_dir(&dir)
        .arg("infer")
        .arg(image("coffee_150x100.jpg"))
        .arg("out.png")
        .args(["--device", "cpu"]));
    assert!(ok, "{err}");
    let out = image::open(dir.join("out.png")).unwrap();
    assert_eq!((out.width(), out.height(), out.color()), (150, 100, image::ColorType::Rgb8));
    assert!(err.contains("colorize"), "{err}");
    assert_eq!(listing(&dir), ["out.png"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn infer_in_f16_and_tune_cache_needs_autotune() {
    let dir = tmpdir("f16");
    let (ok, _, err) = run(bin()
        .current_dir(&dir)
        .arg("infer")
        .arg(image("coffee_150x100.jpg"))
        .arg("out.png")
        .args(["--device", "gpu", "--precision", "f16"]));
    assert!(ok, "{err}");
    assert!(err.contains(", f16 in"), "{err}");
    let out = image::open(dir.join("out.png")).unwrap();
    assert_eq!((out.width(), out.height()), (150, 100));
    // a cache file without autotuning is refused before anything is written
    let (ok, _, err) = run(bin()
        .current_dir(&dir)
        .arg("infer")
        .arg(image("coffee_150x100.jpg"))
        .arg("b.png")
        .args(["--tune-cache", "t.json"]));
    assert!(!ok && err.contains("--tune-cache applies with --autotune only"), "{err}");
    assert_eq!(listing(&dir), ["out.png"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn auto_falls_back_to_the_cpu_with_one_warning_line() {
    // no adapter: an instance limited to a backend this platform does not have
    let dir = tmpdir("fallback");
    let input = image("chelsea_120x80.jpg");
    let (ok, _, err) = run(bin().env("WGPU_BACKEND", "metal").arg("infer").arg(&input).arg(dir.join("a.png")));
    assert!(ok, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("no GPU adapter") && warnings[0].contains("CPU"), "{err}");
    assert!(dir.join("a.png").exists());
    // --device gpu refuses instead
    let (ok, _, err) = run(bin()
        .env("WGPU_BACKEND", "metal")
        .arg("infer")
        .arg(&input)
        .arg(dir.join("b.png"))
        .args(["--device", "gpu"]));
    assert!(!ok && err.contains("no GPU adapter"), "{err}");
    assert!(!dir.join("b.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_images_are_refused_with_the_file_name() {
    let dir = tmpdir("corrupt");
    let good_png = {
        let mut b = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut b),
            &[7u8; 16 * 16 * 3],
            16,
            16,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        b
    };
    let jpeg = std::fs::read(image("chelsea_120x80.jpg")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.png", good_png[..good_png.len() / 2].to_vec(), "cannot decode"),
        ("truncated.jpg", jpeg[..600].to_vec(), "cannot decode"),
        ("cut.jpg", jpeg[..jpeg.len() * 2 / 3].to_vec(), "truncated"),
        ("garbage.jpg", b"this is not an image at all, just text".to_vec(), "not a PNG or JPEG"),
        ("empty.png", Vec::new(), "empty"),
        ("picture.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "Gif images are not supported"),
    ];
    for (name, bytes, why) in cases {
        let input = dir.join(name);
        std::fs::write(&input, &bytes).unwrap();
        let out = dir.join(format!("{name}.out.png"));
        let (ok, _, err) = run(bin().arg("infer").arg(&input).arg(&out).args(["--device", "cpu"]));
        assert!(!ok, "{name}: should fail");
        assert!(err.contains(name) && err.contains(why), "{name}: error should name the file and say {why:?}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!out.exists(), "{name}: an output was written");
    }
    let (ok, _, err) = run(bin().arg("infer").arg(dir.join("missing.png")).arg(dir.join("o.png")));
    assert!(!ok && err.contains("missing.png"), "{err}");
    // only the inputs remain: no output, no temporary file
    assert_eq!(
        listing(&dir).iter().filter(|f| f.contains("out") || f.contains("partial")).count(),
        0,
        "{:?}",
        listing(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unwritable_outputs_are_refused_and_nothing_is_left() {
    let dir = tmpdir("unwritable");
    let input = image("chelsea_120x80.jpg");
    // a directory that does not exist
    let out = dir.join("no/such/dir/out.png");
    let (ok, _, err) = run(bin().arg("infer").arg(&input).arg(&out).args(["--device", "cpu"]));
    assert!(!ok && err.contains("no/such/dir"), "{err}");
    // the output is a directory
    let sub = dir.join("taken.png");
    std::fs::create_dir(&sub).unwrap();
    let (ok, _, err) = run(bin().arg("infer").arg(&input).arg(&sub).args(["--device", "cpu"]));
    assert!(!ok && err.contains("taken.png") && err.contains("directory"), "{err}");
    assert!(sub.is_dir() && listing(&sub).is_empty());
    // an unwritable activation directory: a file where the directory should be
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let out = dir.join("ok.png");
    let (ok, _, err) = run(bin()
        .arg("infer")
        .arg(&input)
        .arg(&out)
        .args(["--device", "cpu", "--dump-activations"])
        .arg(blocker.join("d")));
    assert!(!ok && err.contains("blocker"), "{err}");
    assert!(!out.exists());
    // and the file itself, refused before the network runs
    let (ok, _, err) =
        run(bin().arg("infer").arg(&input).arg(&out).args(["--device", "cpu", "--dump-activations"]).arg(&blocker));
    assert!(!ok && err.contains("blocker: exists and is not a directory"), "{err}");
    assert!(!out.exists());
    assert_eq!(listing(&dir), ["blocker", "taken.png"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_options_are_explained() {
    let input = image("chelsea_120x80.jpg");
    let dir = tmpdir("opts");
    let out = dir.join("o.png");
    let (ok, _, err) = run(bin().arg("infer").arg(&input).arg(&out).args(["--ablate-skips", "zero"]));
    assert!(!ok && err.contains("not a level"), "{err}");
    let (ok, _, err) =
        run(bin().arg("infer").arg(&input).arg(&out).args(["--device", "cpu", "--model", "no-such-model.onnx"]));
    assert!(!ok && err.contains("no-such-model.onnx") && err.contains("colorize"), "{err}");
    // the OS error's text once, not repeated by the error chain
    assert_eq!(err.matches("no such model file").count(), 1, "{err}");
    let (ok, _, err) = run(bin().arg("infer").arg(&input).arg(&out).args(["--device", "cpu", "--ablate-skips", "3"]));
    assert!(!ok && err.contains("no skip connection at level 3"), "{err}");
    let (ok, _, err) = run(bin().arg("infer").arg(&input).arg(&out).args(["--device", "cpu", "--mean", "0.5"]));
    assert!(!ok && err.contains("raw"), "{err}");
    let fixture = common::data_dir().join("fixtures/classic_unet/model.onnx");
    let (ok, _, err) = run(bin()
        .arg("infer")
        .arg(&input)
        .arg(&out)
        .args(["--device", "cpu", "--preset", "colorize", "--model"])
        .arg(&fixture));
    assert!(!ok && err.contains("colorize preset feeds 1 channel(s) but the model's input has 3"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn info_lists_the_skips_of_the_built_in_model() {
    let (ok, out, err) = run(bin().args(["info", "colorize", "--input-shape", "1x1x64x64"]));
    assert!(ok, "{err}");
    assert!(out.contains("skip connections (3)"), "{out}");
    assert!(out.contains("[1, 20, 64, 64]") && out.contains("[1, 80, 16, 16]"), "{out}");
    let u2 = common::data_dir().join("data/u2netp/model.onnx");
    let (ok, out, err) = run(bin().arg("info").arg(&u2));
    assert!(ok, "{err}");
    assert!(out.contains("skip connections (5)") && out.contains("bottleneck: 1293"), "{out}");
}

#[test]
fn compare_reports_a_table_and_writes_the_pictures() {
    let dir = tmpdir("compare");
    let models = "colorize,noskip";
    let (ok, out, err) = run(bin()
        .arg("compare")
        .arg(image("chelsea_120x80.jpg"))
        .arg(image("coffee_150x100.jpg"))
        .args(["--device", "cpu", "--models", models, "--panel-height", "48", "--out"])
        .arg(dir.join("side.png"))
        .arg("--json")
        .arg(dir.join("r.json")));
    assert!(ok, "{err}");
    assert!(out.contains("| model | PSNR (dB) | SSIM | HF-PSNR (dB) | HF energy ratio |"), "{out}");
    assert!(out.contains("colorize, skips ablated (all)"), "{out}");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), models.split(',').count() + 1);
    let psnr = |r: &serde_json::Value| r["mean"]["psnr"].as_f64().unwrap();
    // the ablated model is far worse than the model itself
    assert!(psnr(&rows[0]) > psnr(rows.last().unwrap()) + 3.0, "{out}");
    let side = image::open(dir.join("side.png")).unwrap();
    assert_eq!(side.height(), 2 * (2 * 48 + 4) + 12);
    let _ = std::fs::remove_dir_all(&dir);
}
