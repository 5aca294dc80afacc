//! How a site is watched and gated: `health_url`, poll mode, and a burst of writes
//! inside a building release.

use crate::marker::{marker_site, wrap};
use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;
use crate::support::sites::app_config as config;

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
    site.cap_update();
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
        rx.statuses().iter().any(|s| s == "deploying"),
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
    let statuses = rx.statuses();
    assert_eq!(
        statuses[statuses.len() - 3..],
        ["building", "deploying", "success"]
    );
    assert!(
        statuses.len() == 3 || statuses[0] == "pending",
        "{statuses:?}"
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], sha);
}

#[test]
fn a_deploy_costs_a_few_reads_its_own_reads_never_wake_the_daemon() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    site.commit("a.html", "A deploy, then quiet");
    site.cap_deploy("20261120100000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "the deploy");
    let reads = || {
        d.logs()
            .iter()
            .filter(|l| l.contains("site read") && l.contains("site=shop"))
            .count()
    };
    let before = reads();
    // The next deploy is the sentinel: the reads between the two deliveries are this
    // deploy's own; a daemon woken by its own reads would read again and again while
    // the deploy settles.
    site.commit("a.html", "The next deploy");
    site.cap_deploy("20261120110000", "carol");
    eventually!(rx.payloads("PostDeployment").len() == 2, "the next deploy");
    let during = reads() - before;
    assert!(during <= 6, "{during} reads for one deploy: {:?}", d.logs());
}

#[test]
fn a_log_file_in_a_watched_directory_never_wakes_the_daemon() {
    // The daemon's own log, at trace level, written into the directory it watches (a
    // marker site's): each line is an event there, and must not be a reason to read.
    let env = TestEnv::new();
    let dir = env.join("svc");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start();
    let cfg = env.join("deployhook.toml");
    std::fs::write(
        &cfg,
        crate::support::sites::app_config(&env, &dir, "layout = \"marker\"", &rx.url),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let log = dir.join("deployhook.log");
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut child = crate::support::daemon::command(&env)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let reads = || text().matches("site read").count();
    eventually!(text().contains("daemon ready"), "ready: {}", text());
    let mark = |status: &str, id: &str| {
        crate::support::sites::write_atomic(
            &dir.join(".deployhook-status.json"),
            format!(r#"{{"status": "{status}", "id": "{id}"}}"#).as_bytes(),
        )
    };
    mark("success", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    eventually!(rx.payloads("PostDeployment").len() == 1, "the first deploy");
    let before = reads();
    mark("success", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "the second deploy"
    );
    let during = reads() - before;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        during <= 5,
        "{during} reads for one deploy: the daemon's own log woke it ({} bytes of log)",
        text().len()
    );
}

#[test]
fn idle_hook_workers_read_their_queues_only_when_woken() {
    // Three hooks, nothing to send. A worker reads its queue when woken — a commit, a
    // retry's time, SIGUSR1, the resync — never on a timer of its own: between two
    // resyncs (the facts, 6 s apart) each queue is read once, however many hooks.
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let hooks: String = ["a", "b", "c"]
        .iter()
        .map(|n| format!("[[hook]]\nname = \"{n}\"\nurl = \"{}\"\n\n", rx.url))
        .collect();
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\nresync = \"6s\"\n\n[[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}[api]\nlisten = \"127.0.0.1:0\"\n",
        env.join("state").display(),
        site.root.display()
    );
    let d = Daemon::start(&env, &config);
    let reads = |what: &str| d.metric(what);
    let site_reads = r#"deployhook_site_reads_total{site="shop"}"#;
    let queue = |h: &str| reads(&format!("deployhook_queue_reads_total{{hook=\"{h}\"}}"));
    // The first resync after start-up, then one more: the window.
    let start = reads(site_reads);
    crate::support::env::wait_until(
        || reads(site_reads) > start,
        std::time::Duration::from_secs(20),
        || "a resync".to_string(),
    );
    let at = reads(site_reads);
    let before: Vec<f64> = ["a", "b", "c"].iter().map(|h| queue(h)).collect();
    crate::support::env::wait_until(
        || reads(site_reads) > at,
        std::time::Duration::from_secs(20),
        || "the next resync".to_string(),
    );
    for (h, b) in ["a", "b", "c"].iter().zip(before) {
        let n = queue(h) - b;
        assert!(
            (1.0..=2.0).contains(&n),
            "hook {h}: {n} queue reads in one resync"
        );
    }
}

#[test]
fn a_committed_delivery_is_sent_without_reading_the_outbox_first() {
    // The read that commits a deployment hands the deliveries to the worker with its
    // wake-up: the worker sends, then reads its queue once (to see whether anything else
    // came) — one queue read per wake-up, where it used to read before and after.
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let rx = Receiver::start();
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[site]]\nname = \"shop\"\npath = \"{}\"\n\n[[hook]]\nname = \"a\"\nurl = \"{}\"\nevents = [\"PostDeployment\", \"StatusChanged\"]\n\n[api]\nlisten = \"127.0.0.1:0\"\n",
        env.join("state").display(),
        site.root.display(),
        rx.url
    );
    let d = Daemon::start(&env, &config);
    let reads = || d.metric(r#"deployhook_queue_reads_total{hook="a"}"#);
    let sent = || d.metric(r#"deployhook_deliveries_total{hook="a",outcome="delivered"}"#);
    let (reads0, sent0) = (reads(), sent());
    for (i, name) in ["20261120090000", "20261120091000", "20261120092000"]
        .iter()
        .enumerate()
    {
        site.cap_deploy(name, "alice");
        crate::support::env::wait_until(
            || {
                rx.requests()
                    .iter()
                    .filter(|r| r.event() == "PostDeployment")
                    .count()
                    > i
            },
            std::time::Duration::from_secs(20),
            || format!("deploy {i}'s success"),
        );
    }
    // Every delivery recorded, and the read after the last one done.
    let delivered = rx.requests().len() as f64;
    crate::support::env::wait_until(
        || sent() - sent0 >= delivered && reads() - reads0 >= 1.0,
        std::time::Duration::from_secs(20),
        || format!("{delivered} deliveries recorded"),
    );
    let (n_reads, n_sent) = (reads() - reads0, sent() - sent0);
    assert!(n_sent >= 3.0, "{n_sent} deliveries");
    // At most one read per delivery (fewer when one wake-up carries several), and one
    // more if a resync happened to fall inside the test.
    assert!(
        n_reads <= n_sent + 1.0,
        "{n_reads} queue reads for {n_sent} deliveries"
    );
}
