//! Independent checkers written in Python (PyPI packages): a test that needs one says
//! loudly which package to install and skips — but fails when `CI` is set (`.ci/run`
//! installs them).

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether `python3` can import `module`; when not, says how to get it, and panics
/// under CI.
pub fn have(module: &str, package: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!(
            "python3 with the `{package}` package is needed for this test: pip install {package}"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg} (CI is set: failing)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// Runs a Python script with `input` on stdin; returns stdout, panicking with stderr on
/// failure.
pub fn run(script: &str, input: &[u8]) -> String {
    run_args(script, &[], input)
}

/// `run` with `args` as the script's `sys.argv[1:]`.
pub fn run_args(script: &str, args: &[&str], input: &[u8]) -> String {
    let out = output(script, args, input);
    assert!(
        out.status.success(),
        "the Python checker failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the script fails (a checker that must reject `input`).
pub fn fails_args(script: &str, args: &[&str], input: &[u8]) -> bool {
    !output(script, args, input).status.success()
}

fn output(script: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}
