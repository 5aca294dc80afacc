//! Other programs a test drives (`cap`, `ansible-playbook`): without one, the test is
//! ignored with the reason (`build.rs` sets a `tool_*` cfg for each program it finds, and
//! the test says `#[cfg_attr(not(tool_cap), ignore = "…")]`), so the harness counts it as
//! ignored. Under CI every such test runs, and `have` fails it when its program is
//! missing (`.ci/install-test-tools` installs each).

use std::process::{Command, Stdio};

/// Whether `bin --version` runs; when not, says to install `package`, and panics under
/// CI.
pub fn have(bin: &str, package: &str) -> bool {
    let ok = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!("{bin} is needed for this test: apt-get install {package}");
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg} (CI is set: failing)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}
