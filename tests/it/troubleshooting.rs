//! `docs/src/troubleshooting.md`'s three cases, as a new user meets them, each block run
//! as printed (`sudo` left out, `DEPLOYHOOK_CONFIG` set, `MSG_ID` an id from the list):
//! a webhook that did not arrive, a deploy that was not seen, a reload that failed.

use std::path::Path;
use std::process::Command;

use crate::support::daemon::{BIN, Daemon};
use crate::support::deploy::{Site, shop_config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

const MARKER: &str = "<!-- The block below is run as printed by tests/it/troubleshooting.rs. -->";

/// The `n`th marked block of the page.
fn block(n: usize) -> String {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/troubleshooting.md"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let parts: Vec<&str> = page.split(MARKER).collect();
    assert!(parts.len() > n, "troubleshooting.md lost its block {n}");
    let rest = parts[n];
    rest.split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("\n```"))
        .map(|(b, _)| b.replace("sudo ", ""))
        .unwrap_or_else(|| panic!("troubleshooting.md: block {n}"))
}

/// Runs a block with bash, the config named by `DEPLOYHOOK_CONFIG`: everything it printed.
fn run_block(env: &TestEnv, config: &Path, block: &str) -> String {
    let bin_dir = Path::new(BIN).parent().unwrap_or(Path::new("/"));
    let out = Command::new("bash")
        .args(["-c", block])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("DEPLOYHOOK_CONFIG", config)
        .env("HOME", env.join("home"))
        .current_dir(env.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_block_for_a_webhook_that_did_not_arrive_shows_why() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [500; 20].into());
    let hooks = format!(
        "[[hook]]\nname = \"ops\"\nurl = \"{}\"\nretry = [\"1h\"]\n",
        rx.url
    );
    let d = Daemon::start(&env, &shop_config(&env, &site, &hooks));
    site.commit("a.html", "Fix header");
    site.cap_deploy("20261120100000", "bob");
    eventually!(!rx.requests().is_empty(), "the first attempt");
    let id = rx.requests()[0]
        .header("x-deployhook-delivery")
        .unwrap_or_default()
        .to_string();
    let text = block(1).replace("MSG_ID", &id);
    let out = run_block(&env, &d.config, &text);
    eprintln!("{out}");
    for want in [
        "daemon: running",
        "hook ops",
        "HTTP 500",
        id.as_str(),
        "500",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(rx.requests().len() >= 2, "hooks test sent a ping");
    assert!(
        rx.requests()
            .iter()
            .any(|r| r.header("x-deployhook-event") == Some("ping")),
        "{:?}",
        rx.requests().len()
    );
}

#[test]
fn the_block_for_a_deploy_that_was_not_seen_shows_the_site_as_the_daemon_sees_it() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    // A typo in the site's path: the deploys go to /…/shop, the daemon watches /…/shpo.
    let cfg = shop_config(
        &env,
        &site,
        &format!("[[hook]]\nname = \"ops\"\nurl = \"{}\"\n", rx.url),
    )
    .replace(
        &format!("path = \"{}\"", site.root.display()),
        &format!("path = \"{}\"", site.root.with_file_name("shpo").display()),
    );
    let d = Daemon::start(&env, &cfg);
    site.commit("a.html", "Fix header");
    site.cap_deploy("20261120100000", "bob");
    let out = run_block(&env, &d.config, &block(2));
    eprintln!("{out}");
    assert!(out.contains("shpo"), "{out}");
    assert!(out.contains("does not exist"), "check says why: {out}");
    assert!(out.contains("daemon: running"), "{out}");
}

#[test]
fn the_block_for_a_failed_reload_names_the_line_and_the_key() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let cfg = shop_config(
        &env,
        &site,
        &format!("[[hook]]\nname = \"ops\"\nurl = \"{}\"\n", rx.url),
    );
    let d = Daemon::start(&env, &cfg);
    // An edit with a typo: `pth` for `path`.
    std::fs::write(&d.config, cfg.replace("path = ", "pth = ")).unwrap_or_else(|e| panic!("{e}"));
    let out = run_block(&env, &d.config, &block(3));
    eprintln!("{out}");
    let file = d.config.display().to_string();
    for want in [
        format!("{file}:"),
        "site[0].pth: unknown field `pth`: did you mean `path`?".to_string(),
        "daemon: running".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    // The running config still delivers.
    site.commit("a.html", "After the typo");
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the daemon runs on its last good config"
    );
}
