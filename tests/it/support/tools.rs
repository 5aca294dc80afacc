//! Other programs a test drives (`cap`, `ansible-playbook`): without one, the test says
//! which Debian package brings it and skips — but fails under CI (`.ci/run` installs
//! each).

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
