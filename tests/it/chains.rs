//! Chains (issue 12, SPEC §5; Docker Hub's webhook chains): a deploy calls the chain's
//! first hook with a `callback_url`; only a `success` callback calls the next one. A
//! failure stops the chain, no callback in time ends it in `error`, a bad callback is
//! `400` and leaves the step waiting, a used token is `404`, and a restart resumes a
//! chain where it was — all visible in `GET /api/chains` and `deployhook status`.

use crate::support::api::Client;
use crate::support::daemon::{self, Daemon};
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

const HOOKS: [&str; 3] = ["smoke", "prod", "changelog"];

fn config(env: &TestEnv, site: &Site, rxs: &[Receiver], port: u16, timeout: &str) -> String {
    let hooks: String = HOOKS
        .iter()
        .zip(rxs)
        .map(|(name, rx)| {
            format!(
                "[[hook]]\nname = \"{name}\"\nurl = \"{}\"\nretry = [\"100ms\"]\n\n",
                rx.url
            )
        })
        .collect();
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}\
         [[hook]]\nname = \"ops\"\nurl = \"{}\"\n\n\
         [[chain]]\nname = \"promote\"\nsites = [\"shop\"]\non = \"success\"\n\
         hooks = [\"smoke\", \"prod\", \"changelog\"]\ncallback_timeout = \"{timeout}\"\n",
        env.join("state").display(),
        site.root.display(),
        rxs[3].url,
    )
}

struct Setup {
    env: TestEnv,
    site: Site,
    rxs: Vec<Receiver>,
    port: u16,
}

fn setup() -> Setup {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    Setup {
        env,
        site,
        rxs: (0..4).map(|_| Receiver::start()).collect(),
        // Port 0: each test reads the port its daemon bound (`Daemon::api_port`); the
        // callback URLs' base is only parsed for their path.
        port: 0,
    }
}

/// The callback path (`/api/callbacks/<token>`) of the `n`th request `rx` got.
fn callback_path(rx: &Receiver, n: usize) -> String {
    let body = rx.requests()[n].json();
    let url = body["callback_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = url
        .split_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .unwrap_or_else(|| panic!("no callback_url in {body}"));
    assert!(path.starts_with("/api/callbacks/"), "{path}");
    path
}

fn deploy(s: &Setup) {
    s.site.commit("a.html", "Fix header");
    s.site.cap_deploy("20261120100000", "bob");
}

fn runs(api: &Client) -> serde_json::Value {
    let a = api.get("/api/chains");
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

#[test]
fn success_calls_the_next_hook_failure_stops_and_bad_or_used_callbacks_are_refused() {
    let s = setup();
    let d = Daemon::start(&s.env, &config(&s.env, &s.site, &s.rxs, s.port, "1h"));
    let api = Client::tcp(d.api_port());
    deploy(&s);
    eventually!(s.rxs[0].requests().len() == 1, "the chain's first hook");
    eventually!(!s.rxs[3].requests().is_empty(), "the ordinary hook too");
    let first = s.rxs[0].requests()[0].json();
    assert_eq!(first["status"], "success");
    assert_eq!(
        first["chain"],
        serde_json::json!({"name": "promote", "step": 1, "of": 3})
    );
    assert!(
        s.rxs[1].requests().is_empty(),
        "the next hook waits for the callback"
    );
    let smoke = callback_path(&s.rxs[0], 0);

    // A bad callback is refused and the step still waits.
    let long = "x".repeat(256);
    let a = api.post_json(
        &smoke,
        &serde_json::json!({"state": "success", "description": long}),
    );
    assert_eq!(a.status, 400, "{}", a.text());
    let a = api.post_json(&smoke, &serde_json::json!({"state": "maybe"}));
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(api.post(&smoke, "not json").status, 400);
    assert_eq!(runs(&api)[0]["steps"][0]["state"], "waiting");

    // The receiver's answer, as docs/src/chains.md prints it (curl), to the URL it got.
    let answer = crate::docs::block_after(
        "chains.md",
        "<!-- The block below is run as printed by tests/it/chains.rs. -->",
    );
    // (Its base is the API's address: this test's listen is port 0.)
    let url = format!("http://127.0.0.1:{}{smoke}", d.api_port());
    let out = std::process::Command::new("sh")
        .args(["-c", &answer])
        .env("CALLBACK_URL", &url)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("\"next\":\"prod\""), "{said}");
    // The token was single-use.
    assert_eq!(
        api.post_json(&smoke, &serde_json::json!({"state": "success"}))
            .status,
        404
    );
    assert_eq!(
        api.post_json(
            "/api/callbacks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &serde_json::json!({"state": "success"})
        )
        .status,
        404,
        "an unknown token"
    );
    eventually!(
        s.rxs[1].requests().len() == 1,
        "the second hook, after success"
    );
    assert_eq!(s.rxs[1].requests()[0].json()["chain"]["step"], 2);
    let prod = callback_path(&s.rxs[1], 0);
    assert_ne!(prod, smoke, "each step has its own token");
    let a = api.post_json(
        &prod,
        &serde_json::json!({"state": "failure", "description": "canary alarms"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["next"].is_null());

    let run = runs(&api)[0].clone();
    assert_eq!(run["state"], "failure", "{run}");
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 2, "the chain stopped: {run}");
    assert_eq!(steps[0]["state"], "success");
    // What the page's curl sent.
    assert_eq!(steps[0]["description"], "42 smoke tests passed");
    assert_eq!(steps[0]["context"], "ci");
    assert_eq!(steps[0]["target_url"], "https://ci.example.com/runs/42");
    assert_eq!(steps[1]["state"], "failure");
    // The run is over with two steps: no third step's delivery exists to be sent.
    assert!(
        s.rxs[2].requests().is_empty(),
        "a failure calls no further hook"
    );
    assert_eq!(
        s.rxs[0].requests().len(),
        1,
        "a chained hook is called only by its chain"
    );
    let out = daemon::run(
        &s.env,
        &[
            "status",
            "--config",
            &s.env.join("deployhook.toml").display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("chain promote run")
            && text.contains("failure")
            && text.contains("smoke success"),
        "{text}"
    );
}

#[test]
fn no_callback_within_the_timeout_ends_the_chain_in_error() {
    let s = setup();
    let d = Daemon::start(&s.env, &config(&s.env, &s.site, &s.rxs, s.port, "1s"));
    let api = Client::tcp(d.api_port());
    deploy(&s);
    eventually!(s.rxs[0].requests().len() == 1, "the first hook");
    eventually!(
        runs(&api)[0]["state"] == "error",
        "the run ends in error: {}",
        runs(&api)
    );
    let run = runs(&api)[0].clone();
    assert_eq!(run["steps"][0]["state"], "error");
    assert!(
        run["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no callback")),
        "{run}"
    );
    let late = callback_path(&s.rxs[0], 0);
    assert_eq!(
        api.post_json(&late, &serde_json::json!({"state": "success"}))
            .status,
        404,
        "a callback after the timeout finds nothing waiting"
    );
    assert!(s.rxs[1].requests().is_empty());
}

#[test]
fn a_restart_mid_chain_resumes_it() {
    let s = setup();
    let cfg = config(&s.env, &s.site, &s.rxs, s.port, "1h");
    let d = Daemon::start(&s.env, &cfg);
    deploy(&s);
    eventually!(s.rxs[0].requests().len() == 1, "the first hook");
    let smoke = callback_path(&s.rxs[0], 0);
    d.kill();
    let d = Daemon::start_with(&s.env, &s.env.join("deployhook.toml"), &[]);
    let api = Client::tcp(d.api_port());
    let a = api.post_json(&smoke, &serde_json::json!({"state": "success"}));
    assert_eq!(
        a.status,
        200,
        "the token survives the restart: {}",
        a.text()
    );
    eventually!(s.rxs[1].requests().len() == 1, "the second hook");
    let prod = callback_path(&s.rxs[1], 0);
    assert_eq!(
        api.post_json(&prod, &serde_json::json!({"state": "success"}))
            .status,
        200
    );
    eventually!(s.rxs[2].requests().len() == 1, "the third hook");
    let last = callback_path(&s.rxs[2], 0);
    assert_eq!(
        api.post_json(&last, &serde_json::json!({"state": "success"}))
            .status,
        200
    );
    let run = runs(&api)[0].clone();
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["steps"].as_array().map(|s| s.len()), Some(3));
    // A kill right after the first hook got its request may send that delivery again
    // (at-least-once, same delivery id); the step itself is never started twice.
    let ids: std::collections::BTreeSet<String> = s.rxs[0]
        .requests()
        .iter()
        .map(|r| r.header("x-deployhook-delivery").unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "no step was started twice");
    drop(d);
}

#[test]
fn the_readme_chain_config_is_accepted_as_printed() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/chains.md"))
            .unwrap_or_else(|e| panic!("{e}"));
    let block = readme
        .split_once("<!-- The block below is checked by tests/it/chains.rs. -->")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(b, _)| b.to_string())
        .unwrap_or_else(|| panic!("docs/src/chains.md lost its chain example"));
    let s = setup();
    let cfg = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[site]]\nname = \"shop\"\npath = \"{}\"\n\n{block}\n",
        s.env.join("state").display(),
        s.site.root.display()
    );
    let path = s.env.join("readme-chain.toml");
    std::fs::write(&path, cfg).unwrap_or_else(|e| panic!("{e}"));
    let out = daemon::run(&s.env, &["check", "--config", &path.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_late_callback_is_gone_and_no_view_shows_the_token() {
    let s = setup();
    let d = Daemon::start(&s.env, &config(&s.env, &s.site, &s.rxs, s.port, "1s"));
    let api = Client::tcp(d.api_port());
    deploy(&s);
    eventually!(s.rxs[0].requests().len() == 1, "the first hook");
    let path = callback_path(&s.rxs[0], 0);
    let token = path.trim_start_matches("/api/callbacks/").to_string();

    // No view of the delivery shows the token: only its receiver ever sees it.
    let id = s.rxs[0].requests()[0]
        .header("x-deployhook-delivery")
        .unwrap_or_default()
        .to_string();
    let shown = api.get(&format!("/api/deliveries/{id}")).text();
    assert!(!shown.contains(&token), "{shown}");
    assert!(shown.contains("/api/callbacks/***"), "{shown}");
    let cli = daemon::run(
        &s.env,
        &[
            "deliveries",
            "show",
            &id,
            "--config",
            &d.config.to_string_lossy(),
        ],
    );
    let cli = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(!cli.contains(&token), "{cli}");
    assert!(cli.contains("/api/callbacks/***"), "{cli}");

    // The receiver answers after callback_timeout (its own slowness, the scenario): the
    // run has ended in error by then.
    eventually!(
        runs(&api)[0]["state"] == "error",
        "the run ends in error: {}",
        runs(&api)
    );
    let late = api.post_json(&path, &serde_json::json!({"state": "success"}));
    assert!(
        late.status == 410 || late.status == 404,
        "too late: {} {}",
        late.status,
        late.text()
    );
    assert_eq!(runs(&api)[0]["state"], "error", "{}", runs(&api));
    assert!(
        s.rxs[1].requests().is_empty(),
        "a late callback starts nothing"
    );
}
