//! Failure by silence, on time: a deployment with no change for `idle_timeout` is failed
//! within a second of the deadline on every layout — the last change plus the timeout —
//! read from the failure's `endTime`. The last change is one the daemon gets no event
//! for where the layout allows it (a file written inside a release), so a read at the
//! first deadline must not restart the clock from its own time.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::git::{self, git};
use crate::support::receiver::Receiver;
use crate::support::sites::{app_config, kudu_deploy, kudu_site, kudu_xml, write_atomic};

const IDLE: Duration = Duration::from_secs(3);

fn mtime(path: &Path) -> SystemTime {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits for the failure and checks its `endTime` is within a second after
/// `last_change + IDLE`.
fn assert_failed_on_time(rx: &Receiver, last_change: SystemTime) {
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the failure: {:?}",
        rx.statuses()
    );
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["status"], "failed", "{p}");
    let end: jiff::Timestamp = p["endTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("endTime: {p}"));
    let deadline = jiff::Timestamp::try_from(last_change + IDLE).unwrap_or_else(|e| panic!("{e}"));
    let late = end.duration_since(deadline).as_secs_f64();
    assert!(
        (0.0..1.0).contains(&late),
        "failed {late:.3} s after the deadline (last change + {IDLE:?}): {p}"
    );
    assert!(
        p["statusText"]
            .as_str()
            .is_some_and(|t| t.contains("3s") && t.contains("idle_timeout")),
        "{p}"
    );
}

fn start<'a>(env: &'a TestEnv, path: &Path, extra: &str, rx: &Receiver) -> Daemon<'a> {
    let extra = format!("idle_timeout = \"3s\"\n{extra}");
    Daemon::start(env, &app_config(env, path, &extra, &rx.url))
}

#[test]
fn releases_idle_failure_counts_from_the_last_change_inside_the_release() {
    let env = TestEnv::new();
    let root = env.join("site");
    let rel = |n: &str| root.join("releases").join(n);
    std::fs::create_dir_all(rel("20270101000000")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("releases/20270101000000", root.join("current"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start();
    let d = start(&env, &root, "", &rx);
    let tmp = root.join("releases/.new");
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        tmp.join("REVISION"),
        "3333333333333333333333333333333333333333\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, rel("20270101000100")).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        rx.statuses() == ["building"],
        "building: {:?}",
        rx.statuses()
    );
    // The build goes on inside the release (no event reaches the daemon), then hangs.
    std::fs::write(rel("20270101000100").join("vendor.lock"), "x")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_failed_on_time(&rx, mtime(&rel("20270101000100")));
    d.stop();
}

#[test]
fn kudu_idle_failure_counts_from_the_last_rewrite_of_status_xml() {
    let env = TestEnv::new();
    let root = kudu_site(&env, "app");
    kudu_deploy(&root, "a1", "2026-11-20T09:00:00Z", "");
    let rx = Receiver::start();
    let d = start(&env, &root, "", &rx);
    let dir = root.join("deployments/b2");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let xml = |progress: &str| {
        kudu_xml(
            "b2",
            "Building",
            false,
            "2026-11-20T10:00:00Z",
            &format!("<progress>{progress}</progress>"),
        )
    };
    write_atomic(&dir.join("status.xml"), xml("fetching").as_bytes());
    eventually!(
        rx.statuses() == ["building"],
        "building: {:?}",
        rx.statuses()
    );
    write_atomic(&dir.join("status.xml"), xml("compiling").as_bytes());
    assert_failed_on_time(&rx, mtime(&dir.join("status.xml")));
    d.stop();
}

#[test]
fn git_idle_failure_counts_from_the_branch_move() {
    let env = TestEnv::new();
    let app = env.join("app");
    git::init_source(&app);
    let dev = env.join("dev");
    git(env.path(), &["clone", "-q", "app", "dev"]);
    let rx = Receiver::start();
    let d = start(&env, &app, "", &rx);
    let sha = git::commit(&dev, "checkout.html", "<h1>x</h1>\n", "Add checkout");
    // The branch moves, the work tree is never updated (a post-receive that hangs).
    git(&dev, &["push", "-q", "origin", "main:refs/heads/incoming"]);
    git(&app, &["update-ref", "refs/heads/main", &sha]);
    let moved = mtime(&app.join(".git/refs/heads/main"));
    eventually!(
        !rx.statuses().is_empty(),
        "pending or deploying: {:?}",
        rx.statuses()
    );
    assert_failed_on_time(&rx, moved);
    d.stop();
}

#[test]
fn marker_idle_failure_counts_from_the_last_write_of_the_status_file() {
    let env = TestEnv::new();
    let dir = env.join("svc");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start();
    let d = start(&env, &dir, "layout = \"marker\"", &rx);
    let file = dir.join(".deployhook-status.json");
    let id = "4444444444444444444444444444444444444444";
    write_atomic(
        &file,
        format!(r#"{{"status": "building", "id": "{id}"}}"#).as_bytes(),
    );
    eventually!(
        rx.statuses() == ["building"],
        "building: {:?}",
        rx.statuses()
    );
    write_atomic(
        &file,
        format!(r#"{{"status": "building", "id": "{id}", "progress": "50%"}}"#).as_bytes(),
    );
    assert_failed_on_time(&rx, mtime(&file));
    d.stop();
}
