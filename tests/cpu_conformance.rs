//! The ONNX backend node tests on the CPU reference executor.

mod common;
use common::*;

#[test]
fn onnx_node_tests_cpu() {
    let cases = conformance_cases();
    assert!(cases.len() > 200, "node tests missing: found {}", cases.len());
    let mut failed = Vec::new();
    let mut passed = 0;
    let mut skipped = 0;
    for case in &cases {
        if std::env::var("VERBOSE").is_ok() {
            eprintln!("{}", case.name);
        }
        let res = run_case(case, &|p, x| unet_gpu::cpu::run(p, x));
        match (res, skip_reason(&case.name)) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => failed.push(format!("{}: passes but is listed as skipped", case.name)),
            (Err(_), Some(_)) => skipped += 1,
            (Err(e), None) => failed.push(format!("{}: {e}", case.name)),
        }
    }
    eprintln!("node tests on the CPU: {passed} passed, {skipped} skipped, {} failed", failed.len());
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
}
