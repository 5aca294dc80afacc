//! Keeps habits honest: every source file starts with a `//!` module doc, no source file
//! is over 800 lines, and every module in `lib.rs` appears in ARCHITECTURE.md's code map.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module doc: {missing:?}"
    );
}

#[test]
fn every_module_is_in_the_architecture_code_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap_or_default();
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert!(modules.len() >= 8, "{modules:?}");
    for m in modules {
        let as_dir = format!("`src/{m}/`");
        let as_file = format!("`src/{m}.rs`");
        let mentioned = format!("`{m}.rs`");
        assert!(
            arch.contains(&as_dir) || arch.contains(&as_file) || arch.contains(&mentioned),
            "module {m} is not in ARCHITECTURE.md's code map"
        );
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<_> = files
        .iter()
        .map(|f| {
            let n = std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .count();
            (f.strip_prefix(root).unwrap_or(f).display().to_string(), n)
        })
        .filter(|(_, n)| *n > 800)
        .collect();
    assert!(long.is_empty(), "split these along their stages: {long:?}");
}
