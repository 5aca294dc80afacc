//! The DORA tools' formats as their receivers define them: each `devlake` body checked
//! by Go against DevLake's own request struct, each `datadog-dora` body by Node against
//! Datadog's API client models (both vendored in `tests/fixtures/`), a mutated body shown
//! to fail each; the API keys sent as the tools want them and never stored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::netns;
use crate::support::receiver::Receiver;

const DD_KEY: &str = "dd-api-key-for-tests-0123456789";
const DEVLAKE_KEY: &str = "devlake-api-key-for-tests";

fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// Runs a checker with `body` on its standard input: whether it said "valid", and what.
fn checked(env: &TestEnv, program: &str, args: &[&str], dir: &Path, body: &[u8]) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", env.join("home"))
        .env("GOCACHE", env.join("gocache"))
        .env("GOFLAGS", "-buildvcs=false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.trim() == "valid", text)
}

/// A Capistrano site deployed twice, with a devlake and a datadog-dora hook.
fn deployed<'a>(env: &'a TestEnv, devlake: &Receiver, datadog: &Receiver) -> Daemon<'a> {
    let site = Site::capistrano(env);
    std::fs::write(env.join("dd.key"), DD_KEY).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        r#"[daemon]
state_dir = "{state}"
host_name = "web-1"

[[site]]
name = "shop"
path = "{path}"
settle = "300ms"
repository_url = "https://github.com/example/shop"

[[hook]]
name = "devlake"
url = "{devlake}"
format = "devlake"
environment = "staging"
secret_env = "DEVLAKE_KEY"

[[hook]]
name = "datadog"
url = "{datadog}"
format = "datadog-dora"
secret_file = "{dd_key}"
"#,
        state = env.join("state").display(),
        path = site.root.display(),
        devlake = devlake.url,
        datadog = datadog.url,
        dd_key = env.join("dd.key").display(),
    );
    let path = env.join("deployhook.toml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start_with(env, &path, &[("DEVLAKE_KEY", DEVLAKE_KEY)]);
    site.cap_deploy("20261120090000", "jane");
    site.commit("b.html", "Checkout page\n\nWith a body.");
    site.cap_deploy("20261120090100", "jane");
    eventually!(
        devlake.requests().len() == 2 && datadog.requests().len() == 2,
        "two deployments at each, got {} and {}",
        devlake.requests().len(),
        datadog.requests().len()
    );
    d
}

#[test]
#[cfg_attr(not(tool_go), ignore = "Go is needed: apt-get install golang-go")]
#[cfg_attr(not(tool_node), ignore = "Node.js is needed: apt-get install nodejs")]
fn devlake_and_datadog_bodies_match_the_receivers_own_definitions() {
    if !netns::have("go", &["version"], "apt-get install golang-go")
        || !netns::have("node", &["--version"], "apt-get install nodejs")
    {
        return;
    }
    let env = TestEnv::new();
    let (devlake, datadog) = (Receiver::start(), Receiver::start());
    let d = deployed(&env, &devlake, &datadog);

    let go_dir = fixtures("devlake");
    let go = |body: &[u8]| {
        checked(
            &env,
            "go",
            &["run", "check.go", "webhook_deployment_req.go"],
            &go_dir,
            body,
        )
    };
    for r in devlake.requests() {
        let (ok, why) = go(&r.body);
        assert!(
            ok,
            "DevLake refuses {}: {why}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {DEVLAKE_KEY}").as_str())
        );
        assert_eq!(
            r.header("webhook-signature"),
            None,
            "an API key signs nothing"
        );
    }
    let last = devlake.requests()[1].json();
    assert_eq!(last["id"], "web-1:shop:2");
    assert_eq!(last["result"], "SUCCESS");
    assert_eq!(last["environment"], "STAGING");
    let commit = &last["deploymentCommits"][0];
    assert_eq!(commit["repoUrl"], "https://github.com/example/shop");
    assert_eq!(commit["commitMsg"], "Checkout page");
    assert_eq!(commit["refName"], "main");
    assert_eq!(commit["commitSha"].as_str().map(str::len), Some(40));
    // A mutated body fails: no commit SHA; an environment DevLake does not know.
    let mut bad = last.clone();
    bad["deploymentCommits"][0]
        .as_object_mut()
        .map(|o| o.remove("commitSha"));
    let (ok, why) = go(bad.to_string().as_bytes());
    assert!(
        !ok && why.contains("deploymentCommits[0].commitSha: required"),
        "{why}"
    );
    let mut bad = last.clone();
    bad["environment"] = "PROD".into();
    let (ok, why) = go(bad.to_string().as_bytes());
    assert!(
        !ok && why.contains("Environment: \"PROD\" is not one of"),
        "{why}"
    );

    let js_dir = fixtures("datadog-api-client-1.64.0");
    let node = |body: &[u8]| checked(&env, "node", &["check.js"], &js_dir, body);
    for r in datadog.requests() {
        let (ok, why) = node(&r.body);
        assert!(
            ok,
            "Datadog refuses {}: {why}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("dd-api-key"), Some(DD_KEY));
    }
    let last = datadog.requests()[1].json();
    let a = &last["data"]["attributes"];
    assert_eq!(
        (&a["service"], &a["env"]),
        (&"shop".into(), &"production".into())
    );
    assert_eq!(
        a["git"]["repository_url"],
        "https://github.com/example/shop"
    );
    assert_eq!(a["version"], "20261120090100");
    let (started, finished) = (a["started_at"].as_i64(), a["finished_at"].as_i64());
    assert!(
        started
            .zip(finished)
            .is_some_and(|(s, f)| s > 1_700_000_000_000_000_000 && s <= f),
        "nanoseconds: {a}"
    );
    // A mutated body fails: no service; a time as text.
    let mut bad = last.clone();
    bad["data"]["attributes"]
        .as_object_mut()
        .map(|o| o.remove("service"));
    let (ok, why) = node(bad.to_string().as_bytes());
    assert!(!ok && why.contains("service: required"), "{why}");
    let mut bad = last.clone();
    bad["data"]["attributes"]["started_at"] = "2026-11-20T09:00:00Z".into();
    let (ok, why) = node(bad.to_string().as_bytes());
    assert!(!ok && why.contains("started_at: not a number"), "{why}");

    // The keys are not in the outbox: the recorded attempt shows none of them.
    let (ok, listing) = d.cli(&["deliveries", "list", "--hook", "datadog"]);
    assert!(ok, "{listing}");
    let id = listing
        .split_whitespace()
        .find(|w| w.starts_with("msg_"))
        .unwrap_or_else(|| panic!("no delivery in {listing}"))
        .to_string();
    let (ok, shown) = d.cli(&["deliveries", "show", &id]);
    assert!(ok && shown.contains("DD-API-KEY: ***"), "{shown}");
    for key in [DD_KEY, DEVLAKE_KEY] {
        assert!(!env.outbox_holds(key), "{key} is stored");
    }
}
