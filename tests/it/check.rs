//! The commands an operator reads: `check` explains a site in one screen, `status`
//! exits like `systemctl is-active`, completions and the man page are generated.

use crate::support::daemon::run;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;

#[test]
fn check_shows_layout_flavour_current_and_live_commit() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let sha = site.cap_deploy("20261120090000", "alice");
    let cfg = env.join("deployhook.toml");
    std::fs::write(
        &cfg,
        config(&env, &site, "https://u:secret-pw@hooks.example.com/x", ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run(&env, &["check", "--config", cfg.to_str().unwrap_or("")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "layout: releases (found a releases/ directory), flavour capistrano",
        "current -> releases/20261120090000",
        &format!(
            "live: release 20261120090000 id {sha} — Jane Doe <jane@example.com>: Initial site"
        ),
        "in progress: nothing",
        "hook all  https://hooks.example.com/x",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("secret-pw"), "credentials are never printed");
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let env = TestEnv::new();
    for (shell, marker) in [
        ("bash", "_deployhook()"),
        ("zsh", "#compdef deployhook"),
        ("fish", "complete -c deployhook"),
    ] {
        let out = run(&env, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(300)]
        );
        assert!(text.contains("deliveries"), "{shell} completes subcommands");
    }
    let out = run(&env, &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie") || text.contains(".TH deployhook"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.contains("Exit codes"),
        "the man page lists the exit codes"
    );
}

#[test]
fn status_exits_0_while_the_daemon_runs_and_3_when_it_does_not() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let rx = crate::support::receiver::Receiver::start();
    let d = crate::support::daemon::Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    let cfg = d.config.to_string_lossy().into_owned();
    let status = || {
        let out = run(&env, &["status", "--config", &cfg]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = status();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("daemon: running"), "{text}");
    assert_eq!(d.stop(), Some(0));
    let (code, text) = status();
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("daemon: not running"), "{text}");
}

/// `--log-output stdout` (the image's default): the daemon's JSON log lines go to stdout,
/// and nothing of them to stderr.
#[test]
fn log_output_stdout_puts_json_lines_on_stdout() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, &site, "http://127.0.0.1:9/hook", ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = crate::support::daemon::command(&env)
        .args(["--log-format", "json", "--log-output", "stdout", "run"])
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let got = || lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ready = || {
        got().iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["message"] == "daemon ready" && v["level"] == "INFO")
        })
    };
    let waited = std::panic::catch_unwind(|| {
        eventually!(
            ready(),
            "a JSON \"daemon ready\" line on stdout: {:?}",
            got()
        )
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let _ = reader.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(waited.is_ok(), "stderr: {stderr}");
    for l in got() {
        assert!(
            serde_json::from_str::<serde_json::Value>(&l).is_ok(),
            "not a JSON line: {l}"
        );
    }
    assert!(
        !stderr.contains("daemon ready"),
        "log lines also on stderr: {stderr}"
    );
}
