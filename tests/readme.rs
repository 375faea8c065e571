//! The README's library example is the crate's doc test (`src/lib.rs`), which `cargo test` runs:
//! this keeps the two the same text, so the README shows code that is known to work.

#[test]
fn readme_library_example_is_the_doc_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // the doc test: the first ``` block of the crate docs that is not `text`, without `//! `
    // and without the lines rustdoc hides (`# ...`)
    let docs: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
    let fences: Vec<usize> = (0..docs.len()).filter(|&i| docs[i].starts_with("```")).collect();
    let open = fences.chunks(2).map(|c| c[0]).find(|&i| docs[i] == "```").expect("a doc test in src/lib.rs");
    let start = open + 1;
    let len = docs[start..].iter().position(|l| *l == "```").unwrap();
    let shown: Vec<&str> = docs[start..start + len].iter().copied().filter(|l| !l.starts_with("# ")).collect();
    // the README's block after "## As a library"
    let sec = &readme[readme.find("## As a library").expect("README has '## As a library'")..];
    let body = &sec[sec.find("```rust\n").unwrap() + 8..];
    let block: Vec<&str> = body[..body.find("\n```").unwrap()].lines().collect();
    assert!(shown.len() > 10, "{shown:?}");
    assert_eq!(block, shown, "README's library example differs from the doc test in src/lib.rs");
}
