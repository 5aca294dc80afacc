//! SIGHUP: a config that fails validation is rejected (with file, line and key) and the
//! running one stays; a valid one is applied.

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

#[test]
fn a_broken_reload_keeps_the_old_config_and_a_good_one_applies() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let old = Receiver::start();
    let new = Receiver::start();
    let good = format!("{}{API}", config(&env, &site, &old.url, ""));
    let d = Daemon::start(&env, &good);

    std::fs::write(
        &d.config,
        good.replace("[[hook]]", "colour = \"red\"\n\n[[hook]]"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    d.signal(1);
    eventually!(
        d.metric("deployhook_reload_failures_total") == 1.0,
        "the reload is rejected: {:?}",
        d.logs()
    );
    assert_eq!(d.metric("deployhook_reloads_total"), 0.0);
    let line = good
        .lines()
        .position(|l| l == "[[hook]]")
        .map_or(0, |i| i + 1);
    assert!(
        d.has_log(&format!(
            "{}:{line}:1: site[0].colour: unknown field",
            d.config.display()
        )),
        "the error names the file, line and key: {:?}",
        d.logs()
    );
    site.commit("a.html", "After a broken reload");
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        old.payloads("PostDeployment").len() == 1,
        "the old config still delivers"
    );

    let next = format!("{}{API}", config(&env, &site, &new.url, ""));
    std::fs::write(&d.config, next).unwrap_or_else(|e| panic!("{e}"));
    d.signal(1);
    eventually!(
        d.metric("deployhook_reloads_total") == 1.0,
        "the reload applies: {:?}",
        d.logs()
    );
    site.commit("b.html", "After a good reload");
    site.cap_deploy("20261120110000", "bob");
    eventually!(
        new.payloads("PostDeployment").len() == 1,
        "the new hook gets it"
    );
    assert_eq!(
        old.payloads("PostDeployment").len(),
        1,
        "the old hook no longer does"
    );
    assert_eq!(d.stop(), Some(0));
}

/// An API for `/metrics` on the port it binds.
const API: &str = "\n[api]\nlisten = \"127.0.0.1:0\"\n";

fn reads_of(d: &Daemon<'_>, site: &str) -> f64 {
    d.metric(&format!("deployhook_site_reads_total{{site=\"{site}\"}}"))
}

#[test]
fn a_reload_keeps_the_attempt_in_flight_unchanged_workers_and_unchanged_sites() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    rx.behave(|b| b.delay = Some(std::time::Duration::from_secs(2)));
    let other = Receiver::start();
    let cfg = format!("{}{API}", config(&env, &site, &rx.url, ""));
    let d = Daemon::start(&env, &cfg);
    site.commit("a.html", "In flight during a reload");
    site.cap_deploy("20261120100000", "bob");
    eventually!(!rx.requests().is_empty(), "an attempt in flight");

    // The same site and hook, plus a new site and a new hook.
    let second = Site::plain_at(&env, "second");
    let reloaded = format!(
        "{cfg}\n[[site]]\nname = \"second\"\npath = \"{}\"\n\n[[hook]]\nname = \"extra\"\nurl = \"{}\"\n",
        second.root.display(),
        other.url
    );
    std::fs::write(&d.config, reloaded).unwrap_or_else(|e| panic!("{e}"));
    let shop_reads = reads_of(&d, "shop");
    d.signal(1);
    eventually!(
        d.metric("deployhook_reloads_total") == 1.0,
        "the reload applies"
    );
    eventually!(reads_of(&d, "second") >= 1.0, "the new site is read");
    assert_eq!(
        reads_of(&d, "shop"),
        shop_reads,
        "the unchanged site is not read again"
    );

    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "every delivery of the deploy"
    );
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .filter_map(|r| r.header("x-deployhook-delivery").map(str::to_string))
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "nothing sent twice: {ids:?}");
    let started = d
        .logs()
        .iter()
        .filter(|l| l.contains("hook worker started") && l.contains("hook=all"))
        .count();
    assert_eq!(started, 1, "the unchanged hook's worker kept running");
    assert!(d.has_log("hook worker started hook=extra"));

    site.commit("b.html", "After the reload");
    site.cap_deploy("20261120110000", "carol");
    eventually!(
        other.payloads("PostDeployment").len() == 1,
        "the new hook gets the next deploy"
    );
}

#[test]
fn a_typo_on_disk_does_not_make_a_healthy_daemon_look_sick() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let cfg = config(&env, &site, &rx.url, "");
    let d = Daemon::start(&env, &cfg);
    let path = d.config.to_string_lossy().into_owned();
    // A bad edit: the daemon keeps its running config.
    std::fs::write(&d.config, cfg.replace("[[site]]", "[[site]]\ncolour = 1"))
        .unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("reload rejected");
    let status = crate::support::daemon::run(&env, &["status", "--config", &path]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(0), "the daemon runs: {text}");
    assert!(text.contains("daemon: running"), "{text}");
    assert!(text.contains("site shop: live release"), "{text}");
    assert!(
        text.contains("has errors") && text.contains("colour"),
        "the file's errors, said apart: {text}"
    );
    let list = crate::support::daemon::run(&env, &["deliveries", "list", "--config", &path]);
    assert_eq!(list.status.code(), Some(0), "{:?}", list);
    // The deploys still go out.
    site.commit("a.html", "After the typo");
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "a deploy after the typo"
    );
    d.stop();
    // Without a running daemon the broken file is an error again.
    let status = crate::support::daemon::run(&env, &["status", "--config", &path]);
    assert_ne!(status.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&status.stderr).contains("colour"));
}
