//! The CLI over the running daemon's API (`hooks add|list|remove`, `publish`): what it
//! registers, lists and sends through the daemon, and what it says when no daemon
//! listens or the config has no `[api]`.

use serde_json::json;

use crate::api::config;
use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

#[test]
fn the_cli_adds_lists_publishes_to_and_removes_hooks_through_the_daemon() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    std::fs::write(env.join("token"), "cli-token").unwrap_or_else(|e| panic!("{e}"));
    // Port 0: the CLI finds the port the daemon bound in its state directory.
    let port = 0;
    let extra = format!(
        "token_file = \"{}\"\nallow_private_targets = true",
        env.join("token").display()
    );
    let d = Daemon::start(
        &env,
        &config(
            &env,
            port,
            &extra,
            "[[hook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/x\"\nevents = [\"Other\"]\n",
        ),
    );
    let status = d.status();
    assert!(
        status.contains(&format!("api: listening on 127.0.0.1:{}", d.api_port())),
        "{status}"
    );
    let (ok, text) = d.cli(&["hooks", "add", &rx.url, "--event", "Custom"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("hook api-1: "), "{text}");
    let (ok, again) = d.cli(&["hooks", "add", &rx.url, "--event", "custom"]);
    assert!(
        ok && again.starts_with("hook api-1: "),
        "the same hook: {again}"
    );
    let (ok, conflict) = d.cli(&["hooks", "add", &rx.url, "--event", "Else"]);
    assert!(!ok && conflict.contains("registered already"), "{conflict}");
    let (ok, list) = d.cli(&["hooks", "list"]);
    assert!(ok, "{list}");
    assert!(list.contains("ops") && list.contains("(config)"), "{list}");
    assert!(
        list.contains("api-1") && list.contains("(api, id 1"),
        "{list}"
    );

    std::fs::write(env.join("doc.json"), r#"{"from": "file"}"#).unwrap_or_else(|e| panic!("{e}"));
    let doc = env.join("doc.json").to_string_lossy().into_owned();
    let (ok, text) = d.cli(&["publish", "Custom", &doc]);
    assert!(ok && text.contains("1 delivery queued"), "{text}");
    eventually!(rx.requests().len() == 1, "published from a file");
    assert_eq!(rx.requests()[0].json(), json!({"from": "file"}));
    let mut child = crate::support::daemon::command(&env)
        .args(["publish", "Custom", "--config", &d.config.to_string_lossy()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(br#"{"from": "stdin"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(child.wait().is_ok_and(|s| s.success()));
    eventually!(rx.requests().len() == 2, "published from stdin");
    assert_eq!(rx.requests()[1].json(), json!({"from": "stdin"}));
    let (ok, text) = d.cli(&["publish", "Custom", &env.join("token").to_string_lossy()]);
    assert!(!ok && text.contains("not JSON"), "{text}");

    // A hook registered through the API is a hook like any other for the CLI.
    eventually!(
        d.status()
            .contains("hook api-1: queue 0 (oldest -), delivered 2"),
        "status shows api-1: {}",
        d.status()
    );
    let (ok, text) = d.cli(&["hooks", "test", "api-1"]);
    assert!(ok && text.contains("ping api-1"), "{text}");
    assert!(
        rx.requests()
            .iter()
            .any(|r| r.header("x-deployhook-event") == Some("ping")),
        "the ping arrived"
    );
    let (ok, text) = d.cli(&[
        "deliveries",
        "list",
        "--hook",
        "api-1",
        "--event",
        "custom",
        "--outcome",
        "delivered",
        "--since",
        "1h",
    ]);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches(" api-1 ").count(),
        2,
        "the two published: {text}"
    );
    let (ok, text) = d.cli(&["deliveries", "list", "--hook", "nosuch"]);
    assert!(
        !ok && text.contains("no hook named nosuch (hooks: api-1, ops)"),
        "{text}"
    );
    let (ok, text) = d.cli(&["hooks", "remove", "api-1"]);
    assert!(ok && text.contains("hook api-1 removed"), "{text}");
    let (ok, text) = d.cli(&["hooks", "remove", "ops"]);
    assert!(!ok && text.contains("config file"), "{text}");
}

#[test]
fn the_cli_says_when_no_daemon_listens_or_the_config_has_no_api() {
    let env = TestEnv::new();
    // Port 0: nothing can be listening on it, and no daemon wrote the address it bound.
    let port = 0;
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, port, "", "")).unwrap_or_else(|e| panic!("{e}"));
    let c = cfg.to_string_lossy().into_owned();
    let out = crate::support::daemon::run(
        &env,
        &["hooks", "add", "https://example.org/h", "--config", &c],
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("no daemon is listening on 127.0.0.1:{port}")),
        "{text}"
    );
    let no_api = config(&env, port, "", "");
    let no_api = no_api.split("[api]").next().unwrap_or_default().to_string();
    std::fs::write(&cfg, no_api).unwrap_or_else(|e| panic!("{e}"));
    let out = crate::support::daemon::run(&env, &["publish", "X", "--config", &c]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("has no [api] table"), "{text}");
}
