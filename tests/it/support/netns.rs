//! A daemon and a client script together in a network namespace of their own
//! (`unshare -rn`: a user namespace maps us to root there, and only its loopback
//! exists), so a fixed port is free and anything the script makes the daemon call
//! outside 127.0.0.1 reaches nothing.

use std::path::Path;
use std::process::{Command, Output};

use super::daemon::BIN;
use super::env::TestEnv;

/// Whether `program args` runs; when not, says what to install, and panics under CI.
pub fn have(program: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("`{program}` is needed for this test: {install}");
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg} (CI is set: failing)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// Whether network namespaces can be made here (see `have`).
pub fn available() -> bool {
    have(
        "unshare",
        &["-rn", "ip", "link", "set", "lo", "up"],
        "util-linux's unshare and iproute2's ip, with user namespaces allowed",
    )
}

/// Runs `deployhook run --config config` (with `daemon_env`, `NAME=value ...`) in a new
/// network namespace, waits until it listens on 127.0.0.1:`port`, runs the bash
/// `script`, then stops the daemon. Returns the output (the script's exit status) and
/// the daemon's log.
pub fn run_with_daemon(
    env: &TestEnv,
    config: &Path,
    port: u16,
    daemon_env: &str,
    script: &str,
) -> (Output, String) {
    let log = env.join("daemon.log");
    let body = env.join("script.sh");
    std::fs::write(&body, script).unwrap_or_else(|e| panic!("{e}"));
    let outer = format!(
        r#"ip link set lo up
{daemon_env} "{BIN}" run --config "{config}" 2>"{log}" &
daemon=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done
bash "{body}"
rc=$?
kill $daemon
wait $daemon
echo "daemon exit $?"
exit $rc"#,
        config = config.display(),
        log = log.display(),
        body = body.display(),
    );
    let out = Command::new("unshare")
        .args(["-rn", "bash", "-c", &outer])
        .env("HOME", env.join("home"))
        .current_dir(env.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
    (out, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Everything a failed run printed, for an assertion message.
pub fn report(out: &Output, log: &str) -> String {
    format!(
        "---- stdout\n{}\n---- stderr\n{}\n---- daemon log\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
