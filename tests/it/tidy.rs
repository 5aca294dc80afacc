//! Keeps habits honest: every source file starts with a `//!` module doc, no source file
//! is over 700 lines, and every module in `lib.rs` appears in ARCHITECTURE.md's code map.

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
fn no_source_file_is_over_700_lines() {
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
        .filter(|(_, n)| *n > 700)
        .collect();
    assert!(long.is_empty(), "split these along their stages: {long:?}");
}

/// The files under `src/` whose text names `needle` in code (not in comments), outside
/// the folders in `allowed` (`src/<dir>/`) and files in `allowed_files`.
fn who_names(needle: &str, allowed: &[&str], allowed_files: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(root).ok()?.to_string_lossy().into_owned();
            if allowed
                .iter()
                .any(|d| rel.starts_with(&format!("src/{d}/")))
                || allowed_files.contains(&rel.as_str())
            {
                return None;
            }
            let text = std::fs::read_to_string(&f).ok()?;
            let named = text
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
                .any(|l| l.contains(needle));
            named.then_some(rel)
        })
        .collect()
}

/// Arrows run down: only the daemon (which starts the API) and the commands import
/// `api`; only `deliver` and the commands (the CLI's API client) know reqwest.
#[test]
fn the_import_rules_hold() {
    let api = who_names("crate::api", &["api", "daemon", "cmd"], &["src/lib.rs"]);
    assert!(api.is_empty(), "these import api: {api:?}");
    let reqwest = who_names("reqwest", &["deliver", "cmd"], &[]);
    assert!(reqwest.is_empty(), "these know reqwest: {reqwest:?}");
}
