//! Every other layout end to end: Kudu's deployments directory (rewritten in place, as
//! Kudu does), git push-to-deploy, the marker file with `mark` and `wrap`, health
//! checks, poll mode, and a burst of writes inside a release.

use std::io::Write;
use std::path::Path;

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::git::{self, git};
use crate::support::receiver::Receiver;

/// A config with one site at `path` (with `extra` keys) and a hook for every event.
fn config(env: &TestEnv, path: &Path, extra: &str, hook_url: &str) -> String {
    format!(
        r#"[daemon]
state_dir = "{}"
host_name = "test-host"

[[site]]
name = "app"
path = "{}"
settle = "300ms"
{extra}

[[hook]]
name = "all"
url = "{hook_url}"
events = ["StatusChanged", "PostDeployment"]
retry = ["100ms"]
"#,
        env.join("state").display(),
        path.display()
    )
}

// ---- Kudu -----------------------------------------------------------------------------

fn kudu_xml(id: &str, status: &str, complete: bool, end: Option<&str>) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<deployment>
  <id>{id}</id>
  <author>Sam Roe</author>
  <deployer>GitHub</deployer>
  <authorEmail>sam@example.com</authorEmail>
  <message>Add checkout page</message>
  <progress>step {status}</progress>
  <status>{status}</status>
  <statusText>{status} text</statusText>
  <lastSuccessEndTime />
  <receivedTime>2026-11-20T08:01:02.0000000Z</receivedTime>
  <startTime>2026-11-20T08:01:03.5000000Z</startTime>
  {}
  <complete>{}</complete>
  <is_temp>False</is_temp>
  <is_readonly>False</is_readonly>
</deployment>
"#,
        end.map_or("<endTime />".to_string(), |e| format!(
            "<endTime>{e}</endTime>"
        )),
        if complete { "True" } else { "False" }
    )
}

/// Rewrites a file in place, in two writes with a pause between, as Kudu does (no
/// temp file, no rename), so the daemon can read it half-written.
fn rewrite_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = text.split_at(text.len() / 2);
    f.write_all(a.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    f.flush().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(30));
    f.write_all(b.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
}

fn kudu_site(env: &TestEnv) -> std::path::PathBuf {
    let root = env.join("kudu");
    let deployments = root.join("deployments");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kudu/deployments");
    for id in [
        "2f45d28c063eb367ee76b3c9a4b844b673ca2ad6",
        "9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b",
    ] {
        std::fs::create_dir_all(deployments.join(id)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(
            fixtures.join(id).join("status.xml"),
            deployments.join(id).join("status.xml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::copy(fixtures.join("active"), deployments.join("active"))
        .unwrap_or_else(|e| panic!("{e}"));
    root
}

#[test]
fn kudu_fixture_directory_in_progress_deployment_is_reported_when_it_finishes() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "", &rx.url));
    // The fixture's Building deployment is in progress at first sight: tracked, reported.
    eventually!(
        rx.statuses() == ["building"],
        "building, got {:?}",
        rx.statuses()
    );
    let building = "9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b";
    let file = root.join("deployments").join(building).join("status.xml");
    let fixture = std::fs::read_to_string(&file).unwrap_or_default();
    let done = fixture
        .replace("<status>Building</status>", "<status>Success</status>")
        .replace("<complete>False</complete>", "<complete>True</complete>")
        .replace(
            "<endTime />",
            "<endTime>2024-09-05T08:04:10.2500000Z</endTime>",
        );
    rewrite_in_place(&file, &done);
    std::fs::write(root.join("deployments/active"), building).unwrap_or_else(|e| panic!("{e}"));
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], building);
    assert_eq!(p["status"], "success");
    assert_eq!(p["author"], "Sam Roe");
    assert_eq!(p["authorEmail"], "sam@example.com");
    assert_eq!(p["message"], "Add checkout page");
    assert_eq!(p["deployer"], "GitHub");
    assert_eq!(p["receivedTime"], "2024-09-05T08:01:02.0000000Z");
    assert_eq!(p["startTime"], "2024-09-05T08:01:03.5000000Z");
    assert_eq!(p["endTime"], "2024-09-05T08:04:10.2500000Z");
    assert_eq!(p["lastSuccessEndTime"], "2024-09-05T08:04:10.2500000Z");
    assert_eq!(
        p["previousId"], "2f45d28c063eb367ee76b3c9a4b844b673ca2ad6",
        "the active one"
    );
    assert_eq!(p["layout"], "kudu");
    assert_eq!(p["complete"], true);
    assert_eq!(rx.statuses(), ["building", "success"]);
}

#[test]
fn kudu_pending_building_success_rewritten_in_place_with_racing_reads() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "", &rx.url));
    eventually!(rx.statuses() == ["building"], "the fixture's building one");
    let id = "c0ffee0000000000000000000000000000000001";
    let dir = root.join("deployments").join(id);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("status.xml");
    for (status, n) in [("Pending", 2), ("Building", 3)] {
        for _ in 0..5 {
            rewrite_in_place(&file, &kudu_xml(id, status, false, None));
        }
        eventually!(
            rx.statuses().len() == n,
            "{status}, got {:?}",
            rx.statuses()
        );
    }
    for _ in 0..5 {
        rewrite_in_place(
            &file,
            &kudu_xml(id, "Success", true, Some("2026-11-20T08:05:00.0000000Z")),
        );
    }
    eventually!(
        rx.payloads("PostDeployment").iter().any(|p| p["id"] == id),
        "its PostDeployment"
    );
    d.stop();
    let mine: Vec<String> = rx
        .payloads("StatusChanged")
        .iter()
        .filter(|p| p["id"] == id)
        .map(|p| p["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(mine, ["pending", "building", "success"]);
    let p = rx
        .payloads("PostDeployment")
        .into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or_default();
    assert_eq!(p["progress"], "step Success");
    assert_eq!(p["statusText"], "Success text");
    assert_eq!(p["endTime"], "2026-11-20T08:05:00.0000000Z");
}

#[test]
fn kudu_failed_and_a_crash_left_incomplete_are_both_reported_failed() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let _d = Daemon::start(&env, &config(&env, &root, "idle_timeout = \"1s\"", &rx.url));
    let failed = "bad0000000000000000000000000000000000001";
    std::fs::create_dir_all(root.join("deployments").join(failed))
        .unwrap_or_else(|e| panic!("{e}"));
    rewrite_in_place(
        &root.join("deployments").join(failed).join("status.xml"),
        &kudu_xml(failed, "Failed", true, Some("2026-11-20T08:02:00.0000000Z")),
    );
    // The fixture's Building deployment never completes: Kudu crashed.
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "two PostDeployments, got {:?}",
        rx.payloads("PostDeployment")
    );
    let posts = rx.payloads("PostDeployment");
    let by_id = |id: &str| {
        posts
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let f = by_id(failed);
    assert_eq!(f["status"], "failed");
    assert_eq!(f["statusText"], "Failed text");
    let crashed = by_id("9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b");
    assert_eq!(crashed["status"], "failed");
    assert!(
        crashed["statusText"]
            .as_str()
            .is_some_and(|t| t.contains("Kudu itself sends no hook")),
        "{crashed}"
    );
}

#[test]
fn kudu_truncated_file_is_not_reported_and_is_warned_about_once_stale() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "idle_timeout = \"1s\"", &rx.url));
    let id = "7777000000000000000000000000000000000001";
    std::fs::create_dir_all(root.join("deployments").join(id)).unwrap_or_else(|e| panic!("{e}"));
    let full = kudu_xml(id, "Building", false, None);
    std::fs::write(
        root.join("deployments").join(id).join("status.xml"),
        &full[..full.len() / 3],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("status.xml has been unreadable");
    assert!(
        rx.payloads("StatusChanged").iter().all(|p| p["id"] != id),
        "never reported"
    );
}

#[test]
fn kudu_temp_placeholders_and_tools_are_not_deployments() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "", &rx.url));
    eventually!(rx.statuses() == ["building"], "the fixture's building one");
    for dir in ["temp-4b1c0e7d", "tools"] {
        std::fs::create_dir_all(root.join("deployments").join(dir))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            root.join("deployments").join(dir).join("status.xml"),
            kudu_xml(dir, "Building", false, None),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // A real one after them shows the daemon has looked.
    let id = "aaaa000000000000000000000000000000000001";
    std::fs::create_dir_all(root.join("deployments").join(id)).unwrap_or_else(|e| panic!("{e}"));
    rewrite_in_place(
        &root.join("deployments").join(id).join("status.xml"),
        &kudu_xml(id, "Pending", false, None),
    );
    eventually!(
        rx.statuses().len() == 2,
        "the real one, got {:?}",
        rx.statuses()
    );
    let ids: Vec<String> = rx
        .payloads("StatusChanged")
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        !ids.iter().any(|i| i.starts_with("temp-") || i == "tools"),
        "{ids:?}"
    );
    let out = run(&env, &["check", "--config", &d.config.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("layout: kudu (found deployments/ with status.xml files)"),
        "{text}"
    );
    assert!(text.contains("deployments: 3"), "{text}");
}

// ---- git push-to-deploy -----------------------------------------------------------------

/// A non-bare repository that accepts pushes into its checked-out branch, and a clone to
/// push from.
fn push_site(env: &TestEnv) -> (std::path::PathBuf, std::path::PathBuf) {
    let app = env.join("app");
    git::init_source(&app);
    git(
        &app,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
    let dev = env.join("dev");
    git(env.path(), &["clone", "-q", "app", "dev"]);
    (app, dev)
}

#[test]
fn git_push_with_update_instead_is_pending_deploying_success_with_author_data() {
    let env = TestEnv::new();
    let (app, dev) = push_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &app, "", &rx.url));
    let sha = git::commit(
        &dev,
        "checkout.html",
        "<h1>checkout</h1>\n",
        "Add checkout page",
    );
    git(&dev, &["push", "-q", "origin", "main"]);
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(rx.statuses(), ["pending", "deploying", "success"]);
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], sha);
    assert_eq!(p["author"], "Jane Doe");
    assert_eq!(p["authorEmail"], "jane@example.com");
    assert_eq!(p["message"], "Add checkout page");
    assert_eq!(p["branch"], "main");
    assert_eq!(p["layout"], "git");
    assert!(app.join("checkout.html").exists());
}

#[test]
fn git_refused_push_pack_refs_and_gc_are_not_deployments_and_force_push_is() {
    let env = TestEnv::new();
    let (app, dev) = push_site(&env);
    let first = git(&app, &["rev-parse", "HEAD"]);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &app, "", &rx.url));

    // A dirty work tree: updateInstead refuses the push.
    std::fs::write(app.join("index.html"), "edited on the server\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let second = git::commit(&dev, "b.html", "b\n", "Second");
    let refused = std::process::Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .current_dir(&dev)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!refused.status.success(), "the push must be refused");
    git(&app, &["checkout", "--", "index.html"]);

    // Housekeeping moves refs around but deploys nothing.
    git(&app, &["pack-refs", "--all"]);
    git(&app, &["gc", "-q"]);

    // The same commit pushed again, now accepted: exactly one deployment.
    git(&dev, &["push", "-q", "origin", "main"]);
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the accepted push"
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], second);

    // A force-push back to the first commit is a new deployment.
    git(
        &dev,
        &["push", "-q", "-f", "origin", &format!("{first}:main")],
    );
    eventually!(rx.payloads("PostDeployment").len() == 2, "the force-push");
    d.stop();
    let p = &rx.payloads("PostDeployment")[1];
    assert_eq!(p["id"], first);
    assert_eq!(p["previousId"], second);
    assert_eq!(
        rx.statuses(),
        [
            "pending",
            "deploying",
            "success",
            "pending",
            "deploying",
            "success"
        ]
    );
}

// ---- marker, mark and wrap ----------------------------------------------------------------

fn marker_site(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.join("svc");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn mark_from_a_shell_script_through_every_status() {
    let env = TestEnv::new();
    let dir = marker_site(&env);
    git::init_source(&env.join("src"));
    let head = git(&env.join("src"), &["rev-parse", "HEAD"]);
    let rx = Receiver::start();
    let cfg = config(
        &env,
        &dir,
        &format!("repo = \"{}\"", env.join("src").display()),
        &rx.url,
    );
    let d = Daemon::start(&env, &cfg);
    let script = format!(
        "set -e\nfor s in pending building deploying; do {bin} mark $s --site app --config {cfg} --deployer ci; done\n\
         {bin} mark success --site app --config {cfg} --status-text 'all green' --progress 100%\n",
        bin = crate::support::daemon::BIN,
        cfg = d.config.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("HOME", env.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], head, "the id defaults to the repository's HEAD");
    assert_eq!(p["author"], "Jane Doe", "commit data from the repository");
    assert_eq!(p["message"], "Initial site");
    assert_eq!(p["deployer"], "ci");
    assert_eq!(p["statusText"], "all green");
    assert_eq!(p["progress"], "100%");
    assert_eq!(p["layout"], "marker");
    // Each mark is its own write; all four are seen (the daemon reads after each).
    let statuses = rx.statuses();
    assert_eq!(statuses.last().map(String::as_str), Some("success"));
    assert!(statuses.windows(2).all(|w| w[0] != w[1]), "{statuses:?}");
}

fn wrap(env: &TestEnv, cfg: &Path, script: &str) -> std::process::Output {
    crate::support::daemon::command(env)
        .args(["wrap", "--site", "app", "--config"])
        .arg(cfg)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn wrap_reports_success_failure_and_a_kill_and_passes_the_exit_status_through() {
    let env = TestEnv::new();
    let dir = marker_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &dir, "", &rx.url));

    let o = wrap(&env, &d.config, "echo compiling; echo deployed v2");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "compiling\ndeployed v2\n",
        "output passes through"
    );
    eventually!(rx.payloads("PostDeployment").len() == 1, "the first");

    let o = wrap(
        &env,
        &d.config,
        "echo migrating; echo 'migration 42 failed' >&2; exit 3",
    );
    assert_eq!(o.status.code(), Some(3), "the child's exit status");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "migration 42 failed\n");
    eventually!(rx.payloads("PostDeployment").len() == 2, "the second");

    let o = wrap(&env, &d.config, "echo about to die; kill -9 $$");
    assert_eq!(o.status.code(), Some(137), "128 + SIGKILL");
    eventually!(rx.payloads("PostDeployment").len() == 3, "the third");
    d.stop();

    let posts = rx.payloads("PostDeployment");
    let summary: Vec<(String, String)> = posts
        .iter()
        .map(|p| {
            (
                p["status"].as_str().unwrap_or("").to_string(),
                p["statusText"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("success".to_string(), "deployed v2".to_string()),
            ("failed".into(), "migration 42 failed".into()),
            ("failed".into(), "sh was killed by signal 9".into()),
        ]
    );
    let seqs: Vec<u64> = posts
        .iter()
        .filter_map(|p| p["sequence"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "three deployments in order: {seqs:?}"
    );
}

#[test]
fn wrap_forwards_signals_to_the_command() {
    let env = TestEnv::new();
    let dir = marker_site(&env);
    let cfg = env.join("c.toml");
    std::fs::write(&cfg, config(&env, &dir, "", "http://127.0.0.1:9/"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = crate::support::daemon::command(&env)
        .args(["wrap", "--site", "app", "--config"])
        .arg(&cfg)
        .args([
            "--",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok);
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("got TERM")
    );
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status.code(),
        Some(7),
        "the command's own exit status after the signal"
    );
    let marker = std::fs::read_to_string(dir.join(".deployhook-status.json")).unwrap_or_default();
    assert!(
        marker.contains("\"status\": \"failed\"") && marker.contains("got TERM"),
        "{marker}"
    );
}

// ---- health_url ---------------------------------------------------------------------------

#[test]
fn health_url_gates_success_until_it_answers_2xx() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let health = Receiver::start();
    health.behave(|b| b.statuses = [503, 503].into());
    let rx = Receiver::start();
    let extra = format!("health_url = \"{}\"\nhealth_timeout = \"30s\"", health.url);
    let d = Daemon::start(&env, &config(&env, &site.root, &extra, &rx.url));
    site.commit("h.html", "Health");
    site.cap_deploy("20261120100000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(rx.payloads("PostDeployment")[0]["status"], "success");
    let answered: Vec<u16> = health.requests().iter().map(|r| r.answered).collect();
    assert_eq!(&answered[..3], [503, 503, 200], "success only after a 2xx");
}

#[test]
fn health_url_failing_past_health_timeout_fails_the_deployment() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let health = Receiver::start();
    health.behave(|b| b.statuses = [500; 100].into());
    let rx = Receiver::start();
    let extra = format!("health_url = \"{}\"\nhealth_timeout = \"1s\"", health.url);
    let _d = Daemon::start(&env, &config(&env, &site.root, &extra, &rx.url));
    site.commit("h.html", "Unhealthy");
    site.cap_deploy("20261120100000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["status"], "failed");
    assert!(
        p["statusText"]
            .as_str()
            .is_some_and(|t| t.contains("health_url did not answer 2xx") && t.contains("HTTP 500")),
        "{p}"
    );
}

// ---- poll mode ----------------------------------------------------------------------------

#[test]
fn poll_mode_sees_a_capistrano_deploy_and_a_marker_like_inotify_does() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &config(
            &env,
            &site.root,
            "watch = \"poll\"\npoll_interval = \"100ms\"",
            &rx.url,
        ),
    );
    assert!(d.has_log("watches=0 polled=1"), "{:?}", d.logs());
    let sha = site.commit("p.html", "Polled");
    site.cap_update();
    eventually!(
        rx.statuses() == ["pending"],
        "pending, got {:?}",
        rx.statuses()
    );
    site.cap_create_release("20261120100000");
    eventually!(
        rx.statuses().len() == 2,
        "building, got {:?}",
        rx.statuses()
    );
    site.write_revision("20261120100000", &sha);
    site.cap_switch("20261120100000");
    eventually!(
        rx.statuses().len() == 3,
        "deploying, got {:?}",
        rx.statuses()
    );
    site.cap_log("20261120100000", &sha, "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(
        rx.statuses(),
        ["pending", "building", "deploying", "success"]
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], sha);

    let env = TestEnv::new();
    let dir = marker_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &config(
            &env,
            &dir,
            "watch = \"poll\"\npoll_interval = \"100ms\"",
            &rx.url,
        ),
    );
    let o = wrap(&env, &d.config, "echo polled ok");
    assert_eq!(o.status.code(), Some(0));
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    assert_eq!(rx.payloads("PostDeployment")[0]["statusText"], "polled ok");
}

// ---- a burst of writes inside a release -------------------------------------------------------

#[test]
fn twenty_thousand_writes_inside_a_building_release_neither_delay_nor_lose_transitions() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site.root, "", &rx.url));
    let sha = site.commit("x.html", "Burst");
    let r = "20261120100000";
    site.cap_create_release(r);
    eventually!(
        rx.statuses().last().is_some_and(|s| s == "building"),
        "building"
    );
    let deep = site.release_dir(r).join("node_modules/pkg");
    std::fs::create_dir_all(&deep).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..20_000 {
        std::fs::write(deep.join(format!("f{i}.js")), "x").unwrap_or_else(|e| panic!("{e}"));
    }
    site.write_revision(r, &sha);
    site.cap_switch(r);
    eventually!(
        rx.statuses().len() == 2,
        "deploying, got {:?}",
        rx.statuses()
    );
    site.cap_log(r, &sha, "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    assert!(
        !d.has_log("rescan"),
        "no overflow: the release tree is not watched"
    );
    d.stop();
    assert_eq!(rx.statuses(), ["building", "deploying", "success"]);
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], sha);
}

#[test]
fn git_bare_repository_checked_out_by_a_post_receive_hook() {
    let env = TestEnv::new();
    let bare = env.join("app.git");
    let deploy = env.join("www");
    std::fs::create_dir_all(&deploy).unwrap_or_else(|e| panic!("{e}"));
    git::init_source(&env.join("dev"));
    git(env.path(), &["clone", "-q", "--bare", "dev", "app.git"]);
    let hook = bare.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nGIT_WORK_TREE='{}' git --git-dir='{}' checkout -q -f main\n",
            deploy.display(),
            bare.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    git(
        &env.join("dev"),
        &["remote", "add", "origin", bare.to_str().unwrap_or("")],
    );
    // The first deploy, as the hook does it: the baseline.
    git(
        env.path(),
        &[
            "--git-dir",
            bare.to_str().unwrap_or(""),
            "--work-tree",
            deploy.to_str().unwrap_or(""),
            "checkout",
            "-q",
            "-f",
            "main",
        ],
    );

    let rx = Receiver::start();
    let extra = format!("layout = \"git\"\nrepo = \"{}\"", bare.display());
    let d = Daemon::start(&env, &config(&env, &deploy, &extra, &rx.url));
    let sha = git::commit(&env.join("dev"), "shop.html", "shop\n", "Add the shop");
    git(&env.join("dev"), &["push", "-q", "origin", "main"]);
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(rx.statuses(), ["pending", "deploying", "success"]);
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], sha);
    assert_eq!(p["message"], "Add the shop");
    assert!(deploy.join("shop.html").exists());
}
