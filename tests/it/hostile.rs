//! Hostile input from a site, through the real binary: nothing a site holds can panic
//! the daemon, block it, bloat it, hold up another site, or write itself raw into a log
//! or a terminal.

use std::io::Write;
use std::path::Path;

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::{TestEnv, wait_until};
use crate::support::receiver::Receiver;
use crate::support::sites::{
    hook_url, kudu_deploy, kudu_site, kudu_xml, mkfifo, rss_kib, sites_config, write_atomic,
};

// ---- Nothing from disk stops a site ----------------------------------------------------

#[test]
fn a_pre_1970_kudu_time_does_not_stop_the_site() {
    let env = TestEnv::new();
    let root = kudu_site(&env, "kudu");
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &sites_config(&env, &[("app", &root, "layout = \"kudu\"")], &hook_url(&rx)),
    );
    kudu_deploy(&root, "aaaa1111", "1970-01-01T00:00:00+01:00", "");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the pre-1970 deployment is reported"
    );
    assert_eq!(
        rx.payloads("PostDeployment")[0]["receivedTime"],
        "1969-12-31T23:00:00.0000000Z"
    );
    kudu_deploy(&root, "bbbb2222", "2026-11-20T08:01:02Z", "");
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "a later valid deployment is reported too"
    );
    assert_eq!(rx.payloads("PostDeployment")[1]["id"], "bbbb2222");
    assert!(!d.has_log("panic"), "{:?}", d.logs());
}

#[test]
fn a_non_ascii_deployer_time_does_not_stop_the_site() {
    let env = TestEnv::new();
    let site = Site::deployer(&env);
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    // A releases_log line whose created_at would be cut inside 'é'.
    site.dep_lock("alice");
    let log = site.root.join(".dep/releases_log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(
        b"{\"created_at\":\"a\xc3\xa912345\",\"release_name\":\"1\",\"user\":\"alice\",\"target\":\"main\"}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    site.dep_unlock();
    site.dep_lock("bob");
    let sha = site.dep_release("2", "bob");
    site.dep_switch();
    site.dep_unlock();
    eventually!(
        rx.payloads("PostDeployment")
            .iter()
            .any(|p| p["id"] == sha.as_str() && p["status"] == "success"),
        "the valid deployment after the odd line is reported"
    );
    assert!(!d.has_log("panic"), "{:?}", d.logs());
}

#[test]
fn fifos_in_sites_are_anomalies_and_other_sites_keep_reporting() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    // One site per file a layout reads, each with a FIFO in its place.
    let cap = Site::capistrano(&env);
    std::fs::remove_file(cap.root.join("revisions.log")).ok();
    mkfifo(&cap.root.join("revisions.log"));
    let plain = env.join("plain");
    std::fs::create_dir_all(plain.join("releases/20261120090000"))
        .unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&plain.join("releases/20261120090000/REVISION"));
    let kudu = kudu_site(&env, "kudu");
    std::fs::create_dir_all(kudu.join("deployments/x1")).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&kudu.join("deployments/x1/status.xml"));
    mkfifo(&kudu.join("deployments/active"));
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&marker.join(".deployhook-status.json"));
    let dep = env.join("dep");
    std::fs::create_dir_all(dep.join(".dep")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dep.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&dep.join(".dep/deploy.lock"));
    mkfifo(&dep.join(".dep/releases_log"));
    // The healthy site.
    let good = Site::plain_at(&env, "good");
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[
                ("cap", &cap.root, "layout = \"releases\""),
                ("plain", &plain, "layout = \"releases\""),
                ("kudu", &kudu, "layout = \"kudu\""),
                ("marker", &marker, "layout = \"marker\""),
                ("dep", &dep, "layout = \"releases\""),
                ("good", &good.root, "layout = \"releases\""),
            ],
            &hook_url(&rx),
        ),
    );
    let sha = good.plain_deploy("1");
    eventually!(
        rx.payloads("PostDeployment")
            .iter()
            .any(|p| p["siteName"] == "good" && p["id"] == sha.as_str()),
        "the healthy site's deploy is reported"
    );
    for file in [
        "revisions.log",
        "REVISION",
        "status.xml",
        "deployments/active",
        ".deployhook-status.json",
        "deploy.lock",
        "releases_log",
    ] {
        eventually!(
            d.logs()
                .iter()
                .any(|l| l.contains(file) && l.contains("not a regular file (a FIFO)")),
            "an anomaly naming {file}"
        );
    }
    assert_eq!(d.stop(), Some(0), "SIGTERM is honoured");
}

#[test]
fn a_revision_linked_to_dev_zero_is_not_followed() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    site.plain_deploy("1");
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    let dir = site.release_dir("2");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("REVISION")).unwrap_or_else(|e| panic!("{e}"));
    let tmp = site.root.join(".current.tmp");
    std::os::unix::fs::symlink("releases/2", &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the deployment is reported"
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], "2");
    assert!(d.has_log("is a symlink, which is not followed"));
    // Every resync would re-read it: the daemon stays small.
    let rss = rss_kib(d.pid());
    assert!(rss > 0 && rss < 100 * 1024, "RSS {rss} KiB");
}

#[test]
fn a_flood_of_entries_in_releases_with_the_deploy_racing_the_reads_is_exact() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    // Old junk (a day old: not a deploy in progress when the daemon first looks).
    let day_ago = libc::timespec {
        tv_sec: libc::time_t::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .saturating_sub(86_400),
        )
        .unwrap_or(0),
        tv_nsec: 0,
    };
    for i in 0..30_000 {
        let dir = site.root.join(format!("releases/junk-{i:05}"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: a valid path and two valid timespecs.
        let rc =
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [day_ago, day_ago].as_ptr(), 0) };
        assert_eq!(rc, 0);
    }
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    // Each read lists 30,000 entries: the deploys race the reads.
    let slow = std::time::Duration::from_secs(60);
    site.commit("a.txt", "first after the flood");
    let first = site.cap_deploy("20261120100000", "bob");
    wait_until(
        || rx.payloads("PostDeployment").len() == 1,
        slow,
        || {
            format!(
                "the first deploy's PostDeployment: {:?}",
                rx.statuses().iter().take(20).collect::<Vec<_>>()
            )
        },
    );
    site.commit("b.txt", "second after the flood");
    let second = site.cap_deploy("20261120110000", "carol");
    wait_until(
        || rx.payloads("PostDeployment").len() == 2,
        slow,
        || {
            format!(
                "the second deploy's PostDeployment: {:?}",
                rx.statuses().iter().take(20).collect::<Vec<_>>()
            )
        },
    );
    let posts = rx.payloads("PostDeployment");
    assert_eq!(
        posts
            .iter()
            .map(|p| (
                p["id"].as_str().unwrap_or(""),
                p["status"].as_str().unwrap_or("")
            ))
            .collect::<Vec<_>>(),
        [(first.as_str(), "success"), (second.as_str(), "success")]
    );
    assert!(
        !rx.statuses().iter().any(|s| s == "failed"),
        "{:?}",
        rx.statuses()
    );
    drop(d);
}

// ---- Never echo, always escape -----------------------------------------------------------

#[test]
fn a_status_xml_linked_to_a_secret_is_neither_followed_nor_quoted() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let secret = env.join("secret");
    std::fs::write(&secret, "root:SECRET-CONTENT-1234:0:0::/root:/bin/sh\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let root = kudu_site(&env, "kudu");
    kudu_deploy(&root, "aaaa1111", "2026-11-20T08:01:02Z", "");
    std::fs::create_dir_all(root.join("deployments/x")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&secret, root.join("deployments/x/status.xml"))
        .unwrap_or_else(|e| panic!("{e}"));
    // And a regular file that is not XML at all: the parser's complaint is cut short.
    std::fs::create_dir_all(root.join("deployments/y")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        root.join("deployments/y/status.xml"),
        format!(
            "<deployment><status>{}</status>",
            "SECRET-CONTENT-1234 ".repeat(500)
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start();
    let cfg = sites_config(
        &env,
        &[("app", &root, "layout = \"kudu\"\nidle_timeout = \"1s\"")],
        &hook_url(&rx),
    );
    let d = Daemon::start(&env, &cfg);
    d.wait_log("not followed");
    let out = run(
        &env,
        &["check", "--config", d.config.to_str().unwrap_or("")],
    );
    let all = format!(
        "{}{}{}",
        d.logs().join("\n"),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("SECRET-CONTENT-1234:0:0"),
        "the secret file is quoted:\n{all}"
    );
    assert!(
        all.matches("SECRET-CONTENT-1234").count() <= 6,
        "at most a short excerpt of a bad file is quoted:\n{all}"
    );
}

const EVIL: &str = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\nFAKE LOG LINE";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "raw escapes in {what}:\n{text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("FAKE LOG LINE")),
        "a forged line in {what}:\n{text}"
    );
}

#[test]
fn escapes_in_names_ids_and_texts_are_escaped_everywhere() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    // A release name, a Kudu deployment directory and a marker id, each with escapes.
    let plain = Site::plain_at(&env, "plain");
    let kudu = kudu_site(&env, "kudu");
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[
                ("plain", &plain.root, "layout = \"releases\""),
                ("kudu", &kudu, "layout = \"kudu\""),
                ("marker", &marker, "layout = \"marker\""),
            ],
            &hook_url(&rx),
        ),
    );
    plain.plain_deploy(&format!("20261120{EVIL}"));
    let dir = kudu.join("deployments").join(EVIL);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    write_atomic(
        &dir.join("status.xml"),
        kudu_xml(
            "",
            "Failed",
            true,
            "2026-11-20T08:01:02Z",
            &format!("<statusText>{EVIL}</statusText>"),
        )
        .as_bytes(),
    );
    let marker_json = serde_json::json!({"status": "failed", "id": EVIL, "statusText": EVIL});
    write_atomic(
        &marker.join(".deployhook-status.json"),
        marker_json.to_string().as_bytes(),
    );
    eventually!(
        rx.payloads("PostDeployment").len() == 3,
        "the three deployments"
    );
    let cfg = d.config.to_str().unwrap_or("").to_string();
    for args in [
        vec!["status", "--config", &cfg],
        vec!["check", "--config", &cfg],
        vec!["deliveries", "list", "--config", &cfg],
    ] {
        let out = run(&env, &args);
        assert_clean(&args[0..2].join(" "), &String::from_utf8_lossy(&out.stdout));
        assert_clean(&args[0..2].join(" "), &String::from_utf8_lossy(&out.stderr));
    }
    let logs = d.logs().join("\n");
    assert_clean("the daemon log", &logs);
    // The escaped text is there, visibly.
    assert!(logs.contains("\\u{1b}[2J\\nFAKE LOG LINE"), "{logs}");
    // Hook-controlled text is a field of a fixed message, and failures are warnings.
    assert!(
        d.logs().iter().any(|l| l.contains("WARN")
            && l.contains("deployment failed")
            && l.contains("status_text=")),
        "{logs}"
    );
}

#[test]
fn reads_stuck_in_libgit2_hold_up_no_other_site_and_not_shutdown() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    // Git sites whose .git/index is a FIFO: libgit2 blocks opening it, forever. More of
    // them than reads run at once (8): a stuck read gives its slot back.
    let mut stuck = Vec::new();
    for i in 0..9 {
        let dir = env.join(&format!("stuck{i}"));
        crate::support::git::init_source(&dir);
        std::fs::remove_file(dir.join(".git/index")).unwrap_or_else(|e| panic!("{e}"));
        mkfifo(&dir.join(".git/index"));
        stuck.push((format!("stuck{i}"), dir));
    }
    let good = Site::plain_at(&env, "good");
    let mut sites: Vec<(&str, &Path, &str)> = stuck
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path(), "layout = \"git\""))
        .collect();
    sites.push(("good", &good.root, "layout = \"releases\""));
    let d = Daemon::start(&env, &sites_config(&env, &sites, &hook_url(&rx)));
    d.wait_log("the first read of this site has not finished");
    let sha = good.plain_deploy("1");
    wait_until(
        || {
            rx.payloads("PostDeployment")
                .iter()
                .any(|p| p["siteName"] == "good" && p["id"] == sha.as_str())
        },
        std::time::Duration::from_secs(30),
        || "the other site's deploy is reported".to_string(),
    );
    assert_eq!(d.stop(), Some(0), "SIGTERM is honoured");
}
