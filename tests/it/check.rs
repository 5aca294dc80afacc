//! `deployhook check` explains a site in one screen.

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
