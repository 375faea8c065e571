//! Bad input gets a clear error naming what is wrong, never a panic, and no output file.

mod common;
use common::build::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use unet_gpu::onnx::proto::*;
use unet_gpu::{Model, Tensor, npy};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("unet-gpu-err-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load_err(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes, "test") {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} should mention {p:?}");
    }
}

#[test]
fn truncated_and_non_onnx_files() {
    let good = bytes(&small_conv());
    let msg = load_err(&good[..good.len() / 2]);
    assert_contains(&msg, &["not an ONNX model"]);
    assert_contains(&load_err(b""), &["empty"]);
    assert_contains(&load_err(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR this is a picture"), &["not an ONNX model"]);
    assert_contains(&load_err(&std::fs::read(file!()).unwrap()), &["not an ONNX model"]);
}

#[test]
fn unsupported_op_names_the_node() {
    let mut m = small_conv();
    m.graph.as_mut().unwrap().node[1].op_type = "NonMaxSuppression".into();
    assert_contains(&load_err(&bytes(&m)), &["relu1", "NonMaxSuppression", "not supported"]);
    // several unsupported nodes are all listed
    m.graph.as_mut().unwrap().node[0].op_type = "RoiAlign".into();
    assert_contains(
        &load_err(&bytes(&m)),
        &["2 nodes cannot be loaded", "conv1", "RoiAlign", "relu1", "NonMaxSuppression"],
    );
}

#[test]
fn unsupported_attribute_value() {
    let m = model(
        vec![node("Resize", "up", &["x", "", "s"], &["y"], vec![attr_s("mode", "cubic")])],
        vec![vi("x", &[1, 1, 4, 4])],
        vec![vi("y", &[1, 1, 8, 8])],
        vec![tensor("s", &[4], &[1.0, 1.0, 2.0, 2.0])],
    );
    assert_contains(&load_err(&bytes(&m)), &["up", "Resize", "cubic"]);
    let m = model(
        vec![node("Conv", "c", &["x", "w"], &["y"], vec![attr_s("auto_pad", "SOMETIMES")])],
        vec![vi("x", &[1, 1, 4, 4])],
        vec![vi("y", &[1, 1, 4, 4])],
        vec![tensor("w", &[1, 1, 1, 1], &[1.0])],
    );
    assert_contains(&load_err(&bytes(&m)), &["'c'", "auto_pad", "SOMETIMES"]);
}

#[test]
fn missing_initializer() {
    let mut m = small_conv();
    m.graph.as_mut().unwrap().initializer.clear();
    assert_contains(&load_err(&bytes(&m)), &["conv1", "'w'", "missing initializer"]);
}

#[test]
fn cycle() {
    let m = model(
        vec![
            node("Add", "a", &["x", "d"], &["c"], vec![]),
            node("Relu", "b", &["c"], &["d"], vec![]),
            node("Relu", "out", &["c"], &["y"], vec![]),
        ],
        vec![vi("x", &[1, 2])],
        vec![vi("y", &[1, 2])],
        vec![],
    );
    assert_contains(&load_err(&bytes(&m)), &["cycle", "'a'", "'b'"]);
}

#[test]
fn input_shape_and_rank_mismatch() {
    let m = Model::from_bytes(&bytes(&small_conv()), "t").unwrap();
    let e = m.prepare(&[vec![1, 2, 6, 5]]).unwrap_err().to_string();
    assert_contains(&e, &["input 'x'", "dimension 2 must be 5"]);
    let e = m.prepare(&[vec![1, 2, 5]]).unwrap_err().to_string();
    assert_contains(&e, &["input 'x'", "rank 4"]);
    let e = m.prepare(&[]).unwrap_err().to_string();
    assert_contains(&e, &["1 input", "0 were given"]);
    // a conv whose channels do not fit
    let mut mm = small_conv();
    mm.graph.as_mut().unwrap().input[0] = vi("x", &[1, 4, 5, 5]);
    let m = Model::from_bytes(&bytes(&mm), "t").unwrap();
    let e = m.prepare(&[vec![1, 4, 5, 5]]).unwrap_err().to_string();
    assert_contains(&e, &["conv1", "Conv", "channels"]);
}

#[test]
fn absurd_and_negative_dimensions() {
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![vi("x", &[-1, -1, -1, -1])],
        vec![vi("y", &[-1, -1, -1, -1])],
        vec![],
    );
    let m = Model::from_bytes(&bytes(&m), "t").unwrap();
    let e = m.prepare(&[vec![100_000, 100_000, 100_000, 3]]).unwrap_err().to_string();
    assert_contains(&e, &["input 'x'", "over the limit"]);
    // ConstantOfShape asked for a huge tensor
    let shape = TensorProto {
        name: "s".into(),
        dims: vec![3],
        data_type: data_type::INT64,
        int64_data: vec![1 << 20, 1 << 20, 1 << 20],
        ..Default::default()
    };
    let m2 = model(
        vec![node("ConstantOfShape", "big", &["s"], &["z"], vec![]), node("Add", "add", &["x", "z"], &["y"], vec![])],
        vec![vi("x", &[1])],
        vec![vi("y", &[1])],
        vec![shape],
    );
    let m2 = Model::from_bytes(&bytes(&m2), "t").unwrap();
    let e = m2.prepare(&[vec![1]]).unwrap_err().to_string();
    assert_contains(&e, &["big", "ConstantOfShape", "over the limit"]);
    // negative dimension in an initializer
    let mut neg = small_conv();
    neg.graph.as_mut().unwrap().initializer[0].dims = vec![3, -2, 3, 3];
    assert_contains(&load_err(&bytes(&neg)), &["'w'", "negative dimension"]);
    // initializer whose data does not fit its shape
    let mut short = small_conv();
    short.graph.as_mut().unwrap().initializer[0].float_data.truncate(10);
    assert_contains(&load_err(&bytes(&short)), &["'w'", "needs 54 values"]);
}

#[test]
fn external_data_outside_the_model_dir_or_past_the_end() {
    let dir = tmpdir("ext");
    std::fs::write(dir.join("w.bin"), vec![0u8; 64]).unwrap();
    let ext = |loc: &str, offset: &str, length: &str| {
        let mut m = small_conv();
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.float_data.clear();
        t.data_location = 1;
        t.external_data = vec![
            StringStringEntryProto { key: "location".into(), value: loc.into() },
            StringStringEntryProto { key: "offset".into(), value: offset.into() },
            StringStringEntryProto { key: "length".into(), value: length.into() },
        ];
        let p = dir.join("m.onnx");
        std::fs::write(&p, bytes(&m)).unwrap();
        Model::load(&p).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = ext("../w.bin", "0", "216").unwrap_err();
    assert_contains(&e, &["'w'", "escapes the model's directory"]);
    let e = ext("/etc/passwd", "0", "216").unwrap_err();
    assert_contains(&e, &["escapes the model's directory"]);
    let e = ext("w.bin", "0", "216").unwrap_err();
    assert_contains(&e, &["'w'", "past the end", "64 bytes"]);
    let e = ext("w.bin", "60", "8").unwrap_err();
    assert_contains(&e, &["past the end"]);
    std::fs::write(dir.join("w.bin"), vec![0u8; 300]).unwrap();
    assert!(ext("w.bin", "7", "216").is_ok(), "an unaligned offset inside the file is fine");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_npy() {
    let d = tmpdir("npy");
    let p = d.join("bad.npy");
    std::fs::write(&p, b"hello").unwrap();
    assert_contains(&npy::read(&p).unwrap_err().to_string(), &["bad.npy", "magic"]);
    let good = npy::to_bytes(&Tensor::f32(vec![2, 3], vec![1.0; 6]));
    std::fs::write(&p, &good[..good.len() - 4]).unwrap();
    assert_contains(&npy::read(&p).unwrap_err().to_string(), &["needs 24 bytes"]);
    let ints = npy::to_bytes(&Tensor::i64(vec![2], vec![1, 2]));
    std::fs::write(&p, ints).unwrap();
    assert_contains(&npy::read(&p).unwrap_err().to_string(), &["dtype '<i8'"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// `unet-gpu run MODEL --input X --output OUT --device cpu`: (success, stderr).
fn run_cpu(model: &Path, x: &Path, out: &Path) -> (bool, String) {
    run_cpu_with(model, x, out, &[])
}

/// The same with more options.
fn run_cpu_with(model: &Path, x: &Path, out: &Path, extra: &[&std::ffi::OsStr]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_unet-gpu"))
        .arg("run")
        .arg(model)
        .arg("--input")
        .arg(x)
        .arg("--output")
        .arg(out)
        .args(["--device", "cpu"])
        .args(extra)
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn cli_failures_leave_no_output_file() {
    let d = tmpdir("cli");
    let model = d.join("m.onnx");
    std::fs::write(&model, bytes(&small_conv())).unwrap();
    let out = d.join("y.npy");
    let x = d.join("x.npy");
    // wrong input shape
    npy::write(&x, &Tensor::f32(vec![1, 2, 4, 4], vec![0.5; 32])).unwrap();
    let (ok, err) = run_cpu(&model, &x, &out);
    assert!(!ok);
    assert_contains(&err, &["input 'x'", "dimension 2 must be 5"]);
    assert!(!out.exists());
    // truncated model
    let trunc = d.join("t.onnx");
    let b = bytes(&small_conv());
    std::fs::write(&trunc, &b[..b.len() - 9]).unwrap();
    npy::write(&x, &Tensor::f32(vec![1, 2, 5, 5], vec![0.5; 50])).unwrap();
    let (ok, err) = run_cpu(&trunc, &x, &out);
    assert!(!ok);
    assert_contains(&err, &["t.onnx", "not an ONNX model"]);
    assert!(!out.exists());
    // output into a directory that does not exist
    let bad_out = d.join("no/such/dir/y.npy");
    let (ok, err) = run_cpu(&model, &x, &bad_out);
    assert!(!ok);
    assert_contains(&err, &["y.npy"]);
    // a --stats file or an --all-outputs directory that cannot be written: refused before the
    // run, so the output is not written either (it used to be, and then the stats failed)
    let stats = d.join("no/such/dir/s.json");
    let (ok, err) = run_cpu_with(&model, &x, &out, &["--stats".as_ref(), stats.as_os_str()]);
    assert!(!ok);
    assert_contains(&err, &["s.json", "does not exist"]);
    assert!(!out.exists());
    let (ok, err) = run_cpu_with(&model, &x, &out, &["--all-outputs".as_ref(), x.as_os_str()]);
    assert!(!ok);
    assert_contains(&err, &["x.npy: exists and is not a directory"]);
    assert!(!out.exists());
    // the good run works and leaves only the output
    let (ok, err) = run_cpu(&model, &x, &out);
    assert!(ok, "{err}");
    let y = npy::read(&out).unwrap();
    assert_eq!(y.shape, vec![1, 3, 5, 5]);
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn counts_below_their_minimum_are_refused_by_name() {
    // clap refuses them before any model or device is opened: `bench --batch 0` once reached the
    // GPU kernels and failed with an internal bounds message, `--iters 0` timed one run and
    // reported 0, `compare --panel-height 0` wrote a picture with no panels
    let d = tmpdir("counts");
    let model = d.join("m.onnx");
    std::fs::write(&model, bytes(&small_conv())).unwrap();
    let m = model.to_str().unwrap();
    for (args, want) in [
        (vec!["bench", m, "--batch", "0"], "'--batch <BATCH>': must be at least 1"),
        (vec!["bench", m, "--iters", "0"], "'--iters <ITERS>': must be at least 1"),
        (vec!["bench", m, "--iters", "many"], "'many' is not a whole number"),
        (vec!["compare", "x.jpg", "--panel-height", "5"], "'--panel-height <PANEL_HEIGHT>': must be at least 32"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_unet-gpu")).args(&args).output().unwrap();
        assert!(!o.status.success(), "{args:?}");
        assert_contains(&String::from_utf8_lossy(&o.stderr), &[want]);
    }
    let _ = std::fs::remove_dir_all(&d);
}
