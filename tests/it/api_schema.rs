//! `schemathesis` (PyPI) against `/api/openapi.json` of a running daemon: no `500`, and
//! every response matches the description generated from the handlers (status codes,
//! content types, bodies, headers), with and without the token. The daemon and
//! schemathesis run together in a network namespace of their own (`unshare -rn`), so
//! the hooks the fuzzer registers can reach nothing but that namespace's loopback.

use crate::support::env::TestEnv;
use crate::support::netns;

#[test]
#[cfg_attr(
    not(all(tool_schemathesis, tool_netns)),
    ignore = "schemathesis and network namespaces are needed: pip install schemathesis; apt-get install iproute2"
)]
fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    if !netns::have("schemathesis", &["--version"], "pip install schemathesis")
        || !netns::available()
    {
        return;
    }
    let env = TestEnv::new();
    // The namespace's own loopback: no other process can hold the port.
    let port = 8791;
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
    let script = format!(
        r#"schemathesis run "http://127.0.0.1:{port}/api/openapi.json" \
  -H "Authorization: Bearer fuzz-token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,missing_required_header,ignored_auth \
  --max-examples 25 --no-color"#
    );
    let (out, log) = netns::run_with_daemon(&env, &cfg, port, "", &script);
    let report = netns::report(&out, &log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    assert!(
        stdout.contains("daemon exit 0"),
        "the daemon did not stop cleanly:\n{report}"
    );
    let generated = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_default()
        .to_string();
    assert!(
        generated.contains("passed") && !generated.contains(" 0 generated"),
        "{report}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
