//! The HTTP API against the real binary over real HTTP: runtime hooks as real hooks
//! (publish, restart, queue, delete), the unix socket, body limits and the
//! private-address guard. The pure Kudu `/api/hooks` cases and auth run in process, on
//! the router (`src/api/tests.rs`).

use serde_json::json;

use crate::support::api::{Answer, Client};
use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

/// A config with one (empty) site, the given hooks and an `[api]` table on `port`.
pub(crate) fn config(env: &TestEnv, port: u16, api_extra: &str, hooks: &str) -> String {
    let site = env.join("site");
    std::fs::create_dir_all(site.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n{api_extra}\n",
        env.join("state").display(),
        site.display()
    )
}

/// A daemon whose API may register loopback receivers.
fn start<'a>(env: &'a TestEnv, hooks: &str) -> (Daemon<'a>, Client) {
    let d = Daemon::start(env, &config(env, 0, "allow_private_targets = true", hooks));
    let port = d.api_port();
    (d, Client::tcp(port))
}

fn subscribe(c: &Client, url: &str, event: &str) -> Answer {
    c.post_json("/api/hooks", &json!({"url": url, "event": event}))
}

fn id_of(a: &Answer) -> String {
    assert_eq!(a.status, 201, "{}", a.text());
    a.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {}", a.text()))
        .to_string()
}

#[test]
fn publish_goes_to_the_hooks_of_that_event_type_only_and_to_none_when_none_match() {
    let env = TestEnv::new();
    let deploys = Receiver::start();
    let other = Receiver::start();
    let (_d, c) = start(&env, "");
    id_of(&subscribe(&c, &deploys.url, "PostDeployment"));
    let other_id = id_of(&subscribe(&c, &other.url, "SomethingElse"));
    let a = c.post("/api/hooks/publish/postDEPLOYMENT", r#"{"hello": "world"}"#);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json()["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{}",
        a.text()
    );
    eventually!(
        deploys.requests().len() == 1,
        "the matching hook got it: {:?}",
        deploys.requests()
    );
    let r = &deploys.requests()[0];
    assert_eq!(r.json(), json!({"hello": "world"}));
    assert_eq!(r.event(), "postDEPLOYMENT");
    let none = c.post("/hooks/publish/NobodyListens", "{}");
    assert_eq!(none.status, 200, "{}", none.text());
    assert_eq!(none.json()["deliveries"], json!([]));
    let bad = c.post("/api/hooks/publish/PostDeployment", "{not json");
    assert_eq!(bad.status, 400, "{}", bad.text());
    // A publish is committed before it is answered: the outbox says what will be sent.
    let queued = |id: &str| {
        c.get(&format!("/api/hooks/{id}/deliveries"))
            .json()
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(queued(&other_id), 0, "nothing for the other event's hook");
    assert!(other.requests().is_empty());
    assert_eq!(deploys.requests().len(), 1, "nothing more");
}

fn last(c: &Client, id: &str) -> serde_json::Value {
    c.get(&format!("/api/hooks/{id}")).json()
}

#[test]
fn last_fields_after_a_200_a_500_and_a_refused_connection() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    let (_d, c) = start(&env, "");
    let id = id_of(&subscribe(&c, &rx.url, "PostDeployment"));
    assert_eq!(last(&c, &id)["last_status"], json!(null), "no attempt yet");
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(last(&c, &id)["last_status"] == "OK", "{}", last(&c, &id));
    let h = last(&c, &id);
    assert_eq!(h["last_reason"], "OK");
    assert!(
        h["last_datetime"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{h}"
    );
    assert!(
        h["last_context"]
            .as_str()
            .is_some_and(|t| t.contains("PostDeployment")),
        "{h}"
    );

    rx.behave(|b| b.statuses = [500].into());
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(
        last(&c, &id)["last_status"] == "InternalServerError",
        "{}",
        last(&c, &id)
    );
    assert_eq!(last(&c, &id)["last_reason"], "Internal Server Error");

    // A second hook whose receiver is down.
    let down = Receiver::start();
    down.stop();
    let id2 = id_of(&subscribe(&c, &down.url, "Refused"));
    c.post("/api/hooks/publish/Refused", "{}");
    eventually!(
        last(&c, &id2)["last_status"] == "Failure",
        "{}",
        last(&c, &id2)
    );
    assert_eq!(last(&c, &id2)["last_reason"], "connection refused");
}

#[test]
fn last_status_after_a_timeout_is_failure() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    rx.behave(|b| b.hang = true);
    let (_d, c) = start(&env, "");
    let id = id_of(&subscribe(&c, &rx.url, "PostDeployment"));
    c.post("/api/hooks/publish/PostDeployment", "{}");
    // API hooks have the default 10 s timeout.
    crate::support::env::wait_until(
        || last(&c, &id)["last_status"] == "Failure",
        std::time::Duration::from_secs(20),
        || format!("{}", last(&c, &id)),
    );
    let reason = last(&c, &id)["last_reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("timed out"), "{reason}");
}

#[test]
fn a_runtime_hook_survives_a_restart_with_its_queue() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [503].into());
    let cfg = config(&env, 0, "allow_private_targets = true", "");
    let d = Daemon::start(&env, &cfg);
    let c = Client::tcp(d.api_port());
    let id = id_of(&subscribe(&c, &rx.url, "PostDeployment"));
    c.post("/api/hooks/publish/PostDeployment", r#"{"n": 1}"#);
    eventually!(rx.requests().len() == 1, "first attempt");
    c.post("/api/hooks/publish/PostDeployment", r#"{"n": 2}"#);
    // Both wait: the first for its retry (5 s), the second behind it.
    d.kill();
    let d = Daemon::start(&env, &cfg);
    let c = Client::tcp(d.api_port());
    let list = c.get("/api/hooks").json();
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    crate::support::env::wait_until(
        || rx.requests().len() >= 3,
        std::time::Duration::from_secs(20),
        || format!("{:?}", rx.requests()),
    );
    let bodies: Vec<_> = rx
        .requests()
        .iter()
        .map(|r| r.json()["n"].clone())
        .collect();
    assert_eq!(
        bodies,
        vec![json!(1), json!(1), json!(2)],
        "in order, nothing lost"
    );
}

#[test]
fn a_deleted_hooks_queue_is_cancelled_and_other_workers_keep_running() {
    let env = TestEnv::new();
    let slow = Receiver::start();
    slow.behave(|b| b.statuses = [503, 503].into());
    let ops = Receiver::start();
    let (d, c) = start(
        &env,
        &format!(
            "[[hook]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"PostDeployment\"]\n",
            ops.url
        ),
    );
    let id = id_of(&subscribe(&c, &slow.url, "PostDeployment"));
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(
        slow.requests().len() == 1 && ops.requests().len() == 1,
        "both got the first"
    );
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(ops.requests().len() == 2, "ops got the second");
    assert_eq!(
        c.delete(&format!("/api/hooks/{id}")).json()["cancelled"],
        2,
        "both waiting ones"
    );
    let out = crate::support::daemon::run(
        &env,
        &[
            "deliveries",
            "list",
            "--config",
            &d.config.to_string_lossy(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("cancelled").count(), 2, "{text}");
    assert!(
        !d.has_log("hook worker stopping (after the attempt in flight) hook=ops"),
        "ops was not restarted"
    );
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(ops.requests().len() == 3, "ops still delivers");
    // The outbox holds nothing the deleted hook's worker could still send.
    let rows = crate::support::daemon::run(
        &env,
        &[
            "deliveries",
            "list",
            "--config",
            &d.config.to_string_lossy(),
        ],
    );
    let rows = String::from_utf8_lossy(&rows.stdout).into_owned();
    let of_deleted: Vec<&str> = rows
        .lines()
        .filter(|l| l.contains(&format!("api-{id}")))
        .collect();
    assert!(
        of_deleted
            .iter()
            .all(|l| l.contains("cancelled") || l.contains("delivered") || l.contains("dead")),
        "{rows}"
    );
    assert_eq!(
        slow.requests().len(),
        1,
        "nothing more for the deleted hook"
    );
}

#[test]
fn the_unix_socket_serves_the_api_with_mode_0660() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let sock = env.join("api.sock");
    let cfg = config(&env, 0, "", "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"unix:{}\"", sock.display()),
    );
    let _d = Daemon::start(&env, &cfg);
    let mode = std::fs::metadata(&sock)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o660);
    let c = Client::unix(&sock);
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.get("/api/hooks").json(), json!([]));
}

#[test]
fn a_body_over_1_mib_is_413() {
    let env = TestEnv::new();
    let (_d, c) = start(&env, "");
    let big = format!(
        "{{\"url\": \"http://127.0.0.1:9/{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let a = c.post("/api/hooks", &big);
    assert_eq!(a.status, 413, "{}", a.text());
    assert!(a.json()["error"].is_string());
    let a = c.post("/api/hooks/publish/PostDeployment", &big);
    assert_eq!(a.status, 413, "{}", a.text());
}

#[test]
fn private_targets_are_refused_at_registration_and_again_at_delivery() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    let hosts = env.join("hosts");
    // A public address at registration (only resolved, never connected to).
    std::fs::write(&hosts, "93.184.216.34 hooks.example\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, 0, "", "")).unwrap_or_else(|e| panic!("{e}"));
    let hosts_var = hosts.to_string_lossy().into_owned();
    let d = Daemon::start_with(&env, &cfg, &[("DEPLOYHOOK_DEBUG_HOSTS_FILE", &hosts_var)]);
    let c = Client::tcp(d.api_port());
    for url in [
        rx.url.as_str(),
        "http://localhost:9/x",
        "http://[::1]:9/x",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/x",
        // IPv6 forms that embed or reach a private IPv4 address, and site-local.
        "http://[::127.0.0.1]:9/x",
        "http://[::ffff:0:127.0.0.1]:9/x",
        "http://[2002:7f00:1::1]:9/x",
        "http://[fec0::1]:9/x",
        "http://[2001::7f00:1]:9/x",
    ] {
        let a = subscribe(&c, url, "PostDeployment");
        assert_eq!(a.status, 400, "{url}: {}", a.text());
        assert!(a.text().contains("refused"), "{url}: {}", a.text());
    }
    let hook_port = rx
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap_or("9");
    let id = id_of(&subscribe(
        &c,
        &format!("http://hooks.example:{hook_port}/hook"),
        "PostDeployment",
    ));
    // DNS changes: the name now resolves to loopback, where the receiver listens.
    std::fs::write(&hosts, "127.0.0.1 hooks.example\n").unwrap_or_else(|e| panic!("{e}"));
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(
        last(&c, &id)["last_status"] == "Failure",
        "{}",
        last(&c, &id)
    );
    let reason = last(&c, &id)["last_reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("127.0.0.1") && reason.contains("loopback"),
        "{reason}"
    );
    assert!(
        rx.requests().is_empty(),
        "nothing reached the loopback receiver"
    );
}

#[test]
fn healthz_is_200_once_ready_and_a_non_loopback_listen_without_a_token_is_a_config_error() {
    let env = TestEnv::new();
    let (_d, c) = start(&env, "");
    let a = c.get("/healthz");
    assert_eq!(a.status, 200, "{}", a.text());
    let cfg = config(&env, 8791, "", "").replace("127.0.0.1:8791", "0.0.0.0:8791");
    std::fs::write(env.join("bad.toml"), cfg).unwrap_or_else(|e| panic!("{e}"));
    let out = crate::support::daemon::run(
        &env,
        &["check", "--config", &env.join("bad.toml").to_string_lossy()],
    );
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("api.listen") && text.contains("token_file"),
        "{text}"
    );
}

#[test]
fn healthz_is_503_while_the_daemon_loop_is_stuck_and_200_again_after() {
    let env = TestEnv::new();
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, 0, "", "")).unwrap_or_else(|e| panic!("{e}"));
    let stall = env.join("stall");
    let stall_str = stall.to_string_lossy().into_owned();
    // Debug builds block the loop while this file exists, at its next wake-up.
    let d = Daemon::start_with(&env, &cfg, &[("DEPLOYHOOK_DEBUG_STALL_FILE", &stall_str)]);
    let c = Client::tcp(d.api_port());
    assert_eq!(c.get("/healthz").status, 200);
    std::fs::write(&stall, "").unwrap_or_else(|e| panic!("{e}"));
    // This probe wakes the loop (answered), which then sticks.
    c.get("/healthz");
    let stuck = c.get("/healthz");
    assert_eq!(stuck.status, 503, "{}", stuck.text());
    assert!(
        stuck.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("loop")),
        "{}",
        stuck.text()
    );
    std::fs::remove_file(&stall).unwrap_or_else(|e| panic!("{e}"));
    eventually!(c.get("/healthz").status == 200, "healthy again");
}

#[test]
fn a_410_disables_a_runtime_hook_like_a_config_hook() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [410].into());
    let (_d, c) = start(&env, "");
    let id = id_of(&subscribe(&c, &rx.url, "PostDeployment"));
    c.post("/api/hooks/publish/PostDeployment", "{}");
    eventually!(last(&c, &id)["disabled"] == true, "{}", last(&c, &id));
    assert_eq!(last(&c, &id)["last_status"], "Gone");
    let again = c.post("/api/hooks/publish/PostDeployment", "{}");
    // The second delivery is in the outbox and stays there: its hook is disabled. A
    // sentinel to another hook, published after it, arrives first.
    let sentinel = Receiver::start();
    id_of(&subscribe(&c, &sentinel.url, "Sentinel"));
    c.post("/api/hooks/publish/Sentinel", "{}");
    eventually!(sentinel.requests().len() == 1, "the sentinel");
    let waiting = again.json()["deliveries"][0]
        .as_str()
        .unwrap_or("")
        .to_string();
    let state = c.get(&format!("/api/deliveries/{waiting}")).json()["state"].clone();
    assert_eq!(state, "pending", "it waits for the hook to be enabled");
    assert_eq!(rx.requests().len(), 1, "a disabled hook is not called");
}
