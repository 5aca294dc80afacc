//! The `marker` layout end to end: the status file, `mark` from a script, and `wrap`
//! (exit statuses, a kill, signal forwarding).

use std::path::Path;

use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::git::{self, git};
use crate::support::receiver::Receiver;
use crate::support::sites::app_config as config;

// ---- marker, mark and wrap ----------------------------------------------------------------

pub(crate) fn marker_site(env: &TestEnv) -> std::path::PathBuf {
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

pub(crate) fn wrap(env: &TestEnv, cfg: &Path, script: &str) -> std::process::Output {
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
