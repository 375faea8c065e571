//! The ONNX backend node tests on the GPU executor (lavapipe in CI).

mod common;
use common::*;
use unet_gpu::gpu::GpuModel;

/// Node tests the GPU executor does not run, with the reason (on top of the CPU skips).
const GPU_SKIPPED: &[(&str, &str)] = &[];

#[test]
fn onnx_node_tests_gpu() {
    let ctx = gpu();
    let cases = conformance_cases();
    let mut failed = Vec::new();
    let (mut passed, mut skipped) = (0, 0);
    for case in &cases {
        let skip =
            skip_reason(&case.name).or_else(|| GPU_SKIPPED.iter().find(|(n, _)| *n == case.name).map(|(_, r)| *r));
        let res = run_case(case, &|p, x| GpuModel::new(ctx.clone(), p)?.run(x));
        match (res, skip) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => failed.push(format!("{}: passes but is listed as skipped", case.name)),
            (Err(_), Some(_)) => skipped += 1,
            (Err(e), None) => failed.push(format!("{}: {e}", case.name)),
        }
    }
    eprintln!(
        "node tests on the GPU ({}): {passed} passed, {skipped} skipped, {} failed",
        ctx.describe(),
        failed.len()
    );
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
}
