//! `schemathesis` (PyPI) against `/api/openapi.json` of a running daemon: no `500`, and
//! every response matches the description generated from the handlers (status codes,
//! content types, bodies, headers), with and without the token. The daemon and
//! schemathesis run together in a network namespace of their own (`unshare -rn`), so
//! the hooks the fuzzer registers can reach nothing but that namespace's loopback.

use std::process::Command;

use crate::support::api::free_port;
use crate::support::daemon::BIN;
use crate::support::env::TestEnv;

/// Whether `program` runs; when not, says what to install, and panics under CI.
fn have(program: &str, args: &[&str], install: &str) -> bool {
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

#[test]
fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    if !have("schemathesis", &["--version"], "pip install schemathesis")
        || !have(
            "unshare",
            &["-rn", "ip", "link", "set", "lo", "up"],
            "util-linux's unshare and iproute2's ip, with user namespaces allowed",
        )
    {
        return;
    }
    let env = TestEnv::new();
    let port = free_port();
    std::fs::create_dir_all(env.join("site/releases")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(env.join("token"), "fuzz-token").unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "[daemon]\nstate_dir = \"{state}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{site}\"\n\n\
         [[hook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/hook\"\nretry = [\"1s\"]\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{token}\"\nallow_private_targets = true\n",
        state = env.join("state").display(),
        site = env.join("site").display(),
        token = env.join("token").display(),
    );
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("{e}"));
    let log = env.join("daemon.log");
    let script = format!(
        r#"set -u
ip link set lo up
"{BIN}" run --config "{cfg}" 2>"{log}" &
daemon=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done
schemathesis run "http://127.0.0.1:{port}/api/openapi.json" \
  -H "Authorization: Bearer fuzz-token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,missing_required_header,ignored_auth \
  --max-examples 25 --no-color
rc=$?
kill $daemon
wait $daemon
echo "daemon exit $?"
exit $rc"#,
        cfg = cfg.display(),
        log = log.display(),
    );
    let out = Command::new("unshare")
        .args(["-rn", "bash", "-c", &script])
        .env("HOME", env.join("home"))
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(env.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "{stdout}\n{}\n---- daemon log\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    assert!(stdout.contains("passed"), "{report}");
    assert!(
        stdout.contains("daemon exit 0"),
        "the daemon did not stop cleanly:\n{report}"
    );
    let generated = stdout
        .lines()
        .find(|l| l.contains("generated"))
        .unwrap_or_default()
        .to_string();
    assert!(
        !generated.is_empty() && !generated.contains(" 0 generated"),
        "{report}"
    );
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!daemon_log.contains("panicked"), "{daemon_log}");
}
