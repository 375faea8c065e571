//! End-to-end: the PyTorch fixtures and u2netp on the CPU reference, through the library and
//! the CLI.

mod common;
use common::*;
use std::process::Command;
use unet_gpu::{Model, npy};

#[test]
fn fixtures_match_onnxruntime_on_cpu() {
    for name in FIXTURES {
        let (model, pairs) = fixture(name);
        let m = Model::load(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!pairs.is_empty(), "{name}: no data");
        for (x, want) in pairs {
            let out = m.run_cpu(&[x.clone()]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let err = rel_l2(out[0].as_f32().unwrap(), want.as_f32().unwrap());
            assert_eq!(out[0].shape, want.shape, "{name}");
            assert!(err <= 1e-4, "{name} at {:?}: rel-L2 {err:.3e}", x.shape);
        }
    }
}

#[test]
fn bilinear_unet_has_shape_subgraphs_that_fold() {
    let (model, pairs) = fixture("bilinear_unet");
    let m = Model::load(&model).unwrap();
    let hist = m.graph.op_histogram();
    assert!(hist.iter().any(|(k, _)| k == "Shape"), "the export should carry shape subgraphs: {hist:?}");
    let p = m.prepare(&[pairs[0].0.shape.clone()]).unwrap();
    for n in &p.graph.nodes {
        assert!(
            !matches!(
                n.op_type.as_str(),
                "Shape" | "Gather" | "Cast" | "Unsqueeze" | "ConstantOfShape" | "BatchNormalization"
            ),
            "{} ({}) should have been folded",
            n.name,
            n.op_type
        );
    }
}

#[test]
fn groupnorm_unet_reads_external_data() {
    let (model, _) = fixture("groupnorm_unet");
    assert!(model.with_file_name("model.onnx.data").exists());
    let m = Model::load(&model).unwrap();
    assert!(m.graph.parameter_count() > 100_000);
}

fn u2netp() -> std::path::PathBuf {
    data_dir().join("data/u2netp")
}

#[test]
fn u2netp_matches_onnxruntime_on_cpu() {
    let (m, x, want) = u2netp_reference();
    let out = m.run_cpu(&[x]).unwrap();
    assert_eq!(out.len(), 7);
    assert_eq!(want.len(), 7);
    for (k, w) in want.iter().enumerate() {
        let err = rel_l2(out[k].as_f32().unwrap(), w.as_f32().unwrap());
        assert!(err <= 1e-4, "u2netp output {k}: rel-L2 {err:.3e}");
    }
}

#[test]
fn cli_run_cpu_writes_first_and_all_outputs() {
    let dir = u2netp();
    let tmp = std::env::temp_dir().join(format!("unet-gpu-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let out = tmp.join("y.npy");
    let all = tmp.join("all");
    let st = Command::new(env!("CARGO_BIN_EXE_unet-gpu"))
        .args(["run"])
        .arg(dir.join("model.onnx"))
        .arg("--input")
        .arg(dir.join("input.npy"))
        .arg("--output")
        .arg(&out)
        .arg("--all-outputs")
        .arg(&all)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let y = npy::read(&out).unwrap();
    let want = npy::read(&dir.join("output.npy")).unwrap();
    assert!(rel_l2(y.as_f32().unwrap(), want.as_f32().unwrap()) <= 1e-4);
    for name in ["1959", "1960", "1961", "1962", "1963", "1964", "1965"] {
        assert!(all.join(format!("{name}.npy")).exists(), "missing {name}.npy");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn cli_info_lists_shapes_and_ops() {
    let (model, _) = fixture("bilinear_unet");
    let st = Command::new(env!("CARGO_BIN_EXE_unet-gpu"))
        .arg("info")
        .arg(&model)
        .args(["--input-shape", "1x3x37x45"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(text.contains("parameters:"), "{text}");
    assert!(text.contains("Conv+Relu"), "fused convs should be listed: {text}");
    assert!(text.contains("[1, 2, 37, 45]"), "{text}");
}
