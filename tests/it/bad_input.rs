//! Bad input gets a clear message and loses nothing: a missing deploy dir, `current`
//! dangling or outside `releases/`, an unreadable `REVISION`, a garbage log line, an
//! unknown config key, a repository owned by another user.

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn missing_deploy_dir_check_fails_clearly_and_run_picks_it_up_when_it_appears() {
    let env = TestEnv::new();
    crate::support::git::init_source(&env.join("src"));
    let rx = Receiver::start();
    let late = Site {
        root: env.join("late/site"),
        src: env.join("src"),
    };
    let cfg = config(&env, &late, &rx.url, "");
    std::fs::write(env.join("deployhook.toml"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    let out = run(
        &env,
        &[
            "check",
            "--config",
            env.join("deployhook.toml").to_str().unwrap_or(""),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("error: {} does not exist", late.root.display())),
        "{}",
        stdout(&out)
    );

    let d = Daemon::start(&env, &cfg);
    d.wait_log("does not exist (yet)");
    std::fs::create_dir_all(late.root.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    crate::support::git::git(
        &env.path().join("late"),
        &["clone", "-q", "--mirror", "../src", "site/repo"],
    );
    let sha = late.cap_deploy("20261120090000", "alice");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the first deploy into a new dir"
    );
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], sha);
    assert_eq!(p["status"], "success");
    assert_eq!(p["previousId"], serde_json::Value::Null);
}

#[test]
fn dangling_current_is_logged_and_reports_nothing() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    let tmp = site.root.join("releases/current");
    std::os::unix::fs::symlink(site.root.join("releases/20991231000000"), &tmp)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("current points at releases/20991231000000, which does not exist");
    let out = run(
        &env,
        &["check", "--config", d.config.to_str().unwrap_or("")],
    );
    assert!(stdout(&out).contains("(DANGLING)"), "{}", stdout(&out));
    assert!(
        rx.requests().is_empty(),
        "nothing is reported: {:?}",
        rx.statuses()
    );
}

#[test]
fn current_pointing_outside_releases_is_logged_and_reports_nothing() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    let elsewhere = env.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap_or_else(|e| panic!("{e}"));
    let tmp = site.root.join("current.tmp");
    std::os::unix::fs::symlink(&elsewhere, &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("current points outside releases/");
    assert!(rx.requests().is_empty());
}

#[test]
fn unreadable_revision_is_reported_with_the_release_name_as_id() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    site.plain_deploy("1");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    let dir = site.release_dir("2");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("REVISION"), [0xff, 0xfe, 0x00]).unwrap_or_else(|e| panic!("{e}"));
    let tmp = site.root.join("current.tmp");
    std::os::unix::fs::symlink("releases/2", &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], "2");
    assert_eq!(p["author"], serde_json::Value::Null);
    assert!(d.has_log("REVISION is unreadable"));
}

#[test]
fn garbage_revisions_log_line_is_logged_and_is_not_a_deployment() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(site.root.join("revisions.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(b"\x1b[31m@@ not a capistrano line\n")
        .unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("revisions.log line 2 is not a Capistrano log line");
    assert!(rx.requests().is_empty());
    // The daemon goes on: a real deploy after it is reported.
    site.commit("n.html", "Next");
    site.cap_deploy("20261120100000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "the next deploy");
}

#[test]
fn unknown_config_key_is_an_error_naming_file_line_and_key() {
    let env = TestEnv::new();
    let cfg = env.join("bad.toml");
    std::fs::write(
        &cfg,
        "[[site]]\nname = \"shop\"\npath = \"/srv/shop\"\ncolour = \"red\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let want = format!(
        "{}:4:1: site[0].colour: unknown field `colour`",
        cfg.display()
    );
    let out = run(&env, &["check", "--config", cfg.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    let out = run(&env, &["run", "--config", cfg.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
}

#[test]
fn a_repository_owned_by_another_user_is_still_read() {
    // libgit2 refuses repositories owned by another user unless told otherwise.
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let _d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    site.commit("o.html", "Owned elsewhere");
    site.cap_update();
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(site.root.join("repo"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        chown,
        "this test changes a repository's owner: run the tests as root (CI does)"
    );
    let sha = site.cap_create_release("20261120100000");
    site.write_revision("20261120100000", &sha);
    site.cap_switch("20261120100000");
    site.cap_log("20261120100000", &sha, "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(
        p["author"], "Jane Doe",
        "commit data read from a foreign-owned mirror"
    );
    assert_eq!(p["message"], "Owned elsewhere");
}

#[test]
fn a_commit_missing_from_the_repository_is_reported_without_author_data() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    // The release appears whole, its REVISION naming a commit no repository holds.
    let tmp = site.root.join("releases/.incoming");
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tmp.join("REVISION"), format!("{unknown}\n")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.release_dir("20261120100000")).unwrap_or_else(|e| panic!("{e}"));
    site.cap_switch("20261120100000");
    site.cap_log("20261120100000", unknown, "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], unknown);
    assert_eq!(p["author"], serde_json::Value::Null);
    assert_eq!(p["deployer"], "bob");
    let warnings = || {
        d.logs()
            .iter()
            .filter(|l| l.contains(&format!("commit {unknown}")))
            .count()
    };
    eventually!(warnings() >= 1, "a warning about the commit");
    assert_eq!(warnings(), 1, "warned once: {:?}", d.logs());
}
