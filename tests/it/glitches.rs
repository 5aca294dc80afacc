//! A glitch is never a deployment: a directory unreadable for a second (EACCES while a
//! deploy tool fixes permissions), or the daemon out of file descriptors (EMFILE), fails
//! the read as a whole. Nothing is delivered, no state is lost, and the next real deploy
//! is reported — once, under its own id.

use std::path::Path;

use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;
use crate::support::sites::{app_config, kudu_deploy, kudu_site, kudu_xml, write_atomic};

const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";

/// A release that appears whole (made aside, renamed in), with its `REVISION`.
fn release(root: &Path, name: &str, sha: &str) {
    let tmp = root.join("releases").join(format!(".{name}"));
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tmp.join("REVISION"), format!("{sha}\n")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, root.join("releases").join(name)).unwrap_or_else(|e| panic!("{e}"));
}

/// `current` switched to `name` atomically.
fn switch(root: &Path, name: &str) {
    let tmp = root.join("current.tmp");
    std::os::unix::fs::symlink(format!("releases/{name}"), &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, root.join("current")).unwrap_or_else(|e| panic!("{e}"));
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The user permissions apply to: this one, or `nobody` (65534) when the tests run as
/// root (root reads anything), the test's directory then given to it.
fn unprivileged(env: &TestEnv) -> Option<u32> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let ok = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown -R 65534:65534 {}", env.path().display());
    Some(65534)
}

/// A plain releases site with `20270101000000` (SHA1) live.
fn live_site(env: &TestEnv) -> std::path::PathBuf {
    let root = env.join("site");
    std::fs::create_dir_all(root.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    release(&root, "20270101000000", SHA1);
    switch(&root, "20270101000000");
    root
}

fn start<'a>(env: &'a TestEnv, root: &Path, rx: &Receiver, uid: Option<u32>) -> Daemon<'a> {
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, app_config(env, root, "", &rx.url)).unwrap_or_else(|e| panic!("{e}"));
    Daemon::start_as(env, &cfg, &[], uid)
}

/// The next real deploy (`20270101000100`, SHA2) is reported once, and nothing else
/// ever was.
fn assert_only_the_next_deploy(root: &Path, rx: &Receiver) {
    release(root, "20270101000100", SHA2);
    switch(root, "20270101000100");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the next deploy's PostDeployment: {:?}",
        rx.statuses()
    );
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        ids.iter().all(|id| id == SHA2),
        "only the real deploy: {ids:?}"
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["status"], "success");
    assert_eq!(
        rx.statuses().last().map(String::as_str),
        Some("success"),
        "{:?}",
        rx.statuses()
    );
}

#[test]
fn releases_unreadable_for_a_second_invents_nothing() {
    let env = TestEnv::new();
    let root = live_site(&env);
    let uid = unprivileged(&env);
    let rx = Receiver::start();
    let d = start(&env, &root, &rx, uid);
    // A deploy tool fixing permissions: releases/ unreadable for a moment.
    chmod(&root.join("releases"), 0o000);
    d.wait_log("cannot read the site");
    chmod(&root.join("releases"), 0o755);
    d.wait_log("the site can be read again");
    assert!(rx.requests().is_empty(), "{:?}", rx.statuses());
    assert_only_the_next_deploy(&root, &rx);
    d.stop();
}

#[test]
fn deployments_unreadable_for_a_second_fail_nothing_and_repeat_nothing() {
    let env = TestEnv::new();
    let root = kudu_site(&env, "app");
    kudu_deploy(&root, "a1", "2026-11-20T09:00:00Z", "");
    let uid = unprivileged(&env);
    let rx = Receiver::start();
    let d = start(&env, &root, &rx, uid);
    // A deployment in progress.
    let dir = root.join("deployments/b2");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let status = |s: &str, done: bool| {
        write_atomic(
            &dir.join("status.xml"),
            kudu_xml("b2", s, done, "2026-11-20T10:00:00Z", "").as_bytes(),
        );
    };
    status("Building", false);
    eventually!(
        rx.statuses() == ["building"],
        "building: {:?}",
        rx.statuses()
    );
    chmod(&root.join("deployments"), 0o000);
    d.wait_log("cannot read the site");
    chmod(&root.join("deployments"), 0o755);
    d.wait_log("the site can be read again");
    status("Success", true);
    write_atomic(&root.join("deployments/active"), b"b2");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "b2's end: {:?}",
        rx.statuses()
    );
    d.stop();
    assert_eq!(
        rx.statuses(),
        ["building", "success"],
        "nothing failed, nothing repeated"
    );
    assert!(
        rx.requests().iter().all(|r| r.json()["id"] == "b2"),
        "the baseline a1 was not announced again"
    );
}

/// Sets the daemon's soft limit of open files (`None`: back to `old`); returns the old
/// limits.
fn nofile(pid: u32, soft: Option<u64>, old: Option<libc::rlimit>) -> libc::rlimit {
    let mut was = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pid, a null new limit (a read) and a valid out-pointer.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut was) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = match (soft, old) {
        (Some(n), _) => libc::rlimit {
            rlim_cur: n,
            rlim_max: was.rlim_max,
        },
        (None, Some(o)) => o,
        (None, None) => was,
    };
    // SAFETY: as above, with a valid new limit.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    was
}

#[test]
fn out_of_file_descriptors_for_a_while_invents_nothing() {
    let env = TestEnv::new();
    let root = live_site(&env);
    let rx = Receiver::start();
    let d = start(&env, &root, &rx, None);
    // Every fd the daemon may have is in use: the next open fails with EMFILE.
    let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .map(|e| e.count() as u64)
        .unwrap_or_else(|e| panic!("{e}"));
    let old = nofile(d.pid(), Some(open.saturating_sub(1)), None);
    // A deploy starts meanwhile: its release cannot be listed.
    release(
        &root,
        "20270101000050",
        "5555555555555555555555555555555555555555",
    );
    d.wait_log("cannot read the site");
    assert!(rx.requests().is_empty(), "{:?}", rx.statuses());
    nofile(d.pid(), None, Some(old));
    d.wait_log("the site can be read again");
    // The release seen after the glitch is the deploy it is, nothing more: it builds
    // (never live, it is not reported live), and nothing about the live one.
    eventually!(
        rx.statuses() == ["building"],
        "the release made during the glitch: {:?}",
        rx.statuses()
    );
    assert_eq!(
        rx.requests()[0].json()["id"],
        "5555555555555555555555555555555555555555"
    );
    d.stop();
}
