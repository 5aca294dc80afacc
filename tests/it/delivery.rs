//! Delivery that loses nothing: crash safety under SIGKILL, retries, 3xx/410/dead,
//! Retry-After, hook isolation, signatures checked by an independent implementation,
//! Basic auth, a corrupt or locked database, the history commands and `listen`.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::receiver::{Receiver, Request};

pub(crate) fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A config with one Capistrano site and the given `[[hook]]` tables.
pub(crate) fn config(env: &TestEnv, site: &Site, hooks: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}",
        env.join("state").display(),
        site.root.display()
    )
}

pub(crate) fn hook(name: &str, url: &str, extra: &str) -> String {
    format!("[[hook]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

fn cfg_path(d: &Daemon<'_>) -> String {
    d.config.to_string_lossy().into_owned()
}

fn delivery_id(r: &Request) -> String {
    r.header("x-deployhook-delivery").unwrap_or("").to_string()
}

/// A Capistrano site with one live release, and a function that deploys the next one.
pub(crate) fn site(env: &TestEnv) -> Site {
    let site = Site::capistrano(env);
    site.cap_deploy("20261120090000", "alice");
    site
}

pub(crate) fn deploy(site: &Site, n: u32) -> String {
    site.commit(&format!("f{n}.html"), &format!("Change {n}"));
    site.cap_deploy(&format!("2026112010{n:04}"), "bob")
}

/// Delivery ids of `hook` in outbox order, from `deployhook deliveries list`.
fn outbox_ids(env: &TestEnv, config: &str, hook: &str) -> Vec<(String, String)> {
    let o = run(
        env,
        &[
            "deliveries",
            "list",
            "--config",
            config,
            "--hook",
            hook,
            "--limit",
            "1000",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let mut rows: Vec<(String, String)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.to_string(), cols.get(3)?.to_string()))
        })
        .collect();
    rows.reverse();
    rows
}

#[test]
fn sigkill_at_any_point_loses_nothing_and_keeps_order() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let retry = format!("retry = [{}]", vec!["\"100ms\""; 100].join(", "));
    let cfg = config(
        &env,
        &site,
        &hook(
            "h",
            &rx.url,
            &format!("events = [\"StatusChanged\", \"PostDeployment\"]\n{retry}"),
        ),
    );
    let d = Daemon::start(&env, &cfg);
    let cfg_file = cfg_path(&d);

    // The receiver is down while deployments happen.
    rx.stop();
    deploy(&site, 1);
    d.wait_log("attempt failed");
    d.kill(); // SIGKILL while retrying

    deploy(&site, 2); // a deploy while the daemon is dead
    let d = Daemon::start(&env, &cfg);
    d.wait_log("attempt failed");
    d.kill();

    // The receiver comes back but hangs: SIGKILL with an attempt in flight.
    rx.behave(|b| b.hang = true);
    rx.restart();
    let d = Daemon::start(&env, &cfg);
    eventually!(!rx.requests().is_empty(), "an attempt in flight");
    let in_flight = delivery_id(&rx.requests()[0]);
    d.kill();

    rx.behave(|b| b.hang = false);
    let d = Daemon::start(&env, &cfg);
    eventually!(
        rx.payloads("PostDeployment").len() >= 2,
        "both PostDeployments"
    );
    eventually!(
        outbox_ids(&env, &cfg_file, "h")
            .iter()
            .all(|(_, state)| state == "delivered"),
        "every delivery delivered: {:?}",
        outbox_ids(&env, &cfg_file, "h")
    );
    d.stop();

    let expected = outbox_ids(&env, &cfg_file, "h");
    let received: Vec<String> = rx.requests().iter().map(delivery_id).collect();
    let mut first_seen = Vec::new();
    for id in &received {
        if !first_seen.contains(id) {
            first_seen.push(id.clone());
        }
    }
    let expected_ids: Vec<String> = expected.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        first_seen, expected_ids,
        "every delivery arrived, in outbox order"
    );
    let duplicated: BTreeSet<&String> = received
        .iter()
        .filter(|id| received.iter().filter(|x| x == id).count() > 1)
        .collect();
    assert_eq!(
        duplicated.into_iter().cloned().collect::<Vec<_>>(),
        vec![in_flight],
        "the attempt in flight at the kill, and only it, is sent again with the same id"
    );
    let posts = rx.payloads("PostDeployment");
    let mut ids: Vec<&str> = posts.iter().filter_map(|p| p["id"].as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "two deploys, each reported: {ids:?}");
}

#[test]
fn failures_and_redirects_are_retried_with_the_same_delivery_id() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [500, 302, 429].into());
    rx.behave(|b| b.retry_after = Some("1".into()));
    let d = Daemon::start(
        &env,
        &config(
            &env,
            &site,
            &hook("h", &rx.url, "retry = [\"100ms\", \"100ms\", \"100ms\"]"),
        ),
    );
    deploy(&site, 1);
    eventually!(
        rx.requests().len() == 4,
        "four attempts, got {}",
        rx.requests().len()
    );
    let reqs = rx.requests();
    let ids: BTreeSet<String> = reqs.iter().map(delivery_id).collect();
    assert_eq!(ids.len(), 1, "one delivery, stable id across attempts");
    assert_eq!(
        reqs.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 302, 429, 200]
    );
    let id = ids.into_iter().next().unwrap_or_default();
    eventually!(
        out(&run(
            &env,
            &["deliveries", "show", &id, "--config", &cfg_path(&d)]
        ))
        .contains("state delivered"),
        "the delivery recorded as delivered"
    );
    let shown = out(&run(
        &env,
        &["deliveries", "show", &id, "--config", &cfg_path(&d)],
    ));
    for want in [
        "attempt 1 ",
        "< HTTP 500",
        "< HTTP 302",
        "< HTTP 429",
        "< retry-after: 1",
        "attempt 4 ",
        "< HTTP 200",
        "\"status\": \"success\"",
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
}

#[test]
fn a_delivery_goes_dead_after_the_schedule_and_the_queue_moves_on() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [500, 500, 500].into());
    let d = Daemon::start(
        &env,
        &config(
            &env,
            &site,
            &hook("h", &rx.url, "retry = [\"50ms\", \"50ms\"]"),
        ),
    );
    deploy(&site, 1);
    d.wait_log("delivery is dead");
    deploy(&site, 2);
    eventually!(
        rx.requests().iter().any(|r| r.answered == 200),
        "the next delivery"
    );
    let failed = out(&run(
        &env,
        &["deliveries", "list", "--failed", "--config", &cfg_path(&d)],
    ));
    assert_eq!(failed.matches(" dead ").count(), 1, "{failed}");
    let status = out(&run(&env, &["status", "--config", &cfg_path(&d)]));
    assert!(status.contains("delivered 1, dead 1"), "{status}");
    assert!(status.contains("daemon: running"), "{status}");
}

#[test]
fn gone_disables_the_hook_until_it_is_enabled_and_nothing_is_lost() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [410].into());
    let d = Daemon::start(&env, &config(&env, &site, &hook("h", &rx.url, "")));
    deploy(&site, 1);
    d.wait_log("hook disabled");
    deploy(&site, 2);
    eventually!(
        out(&run(&env, &["status", "--config", &cfg_path(&d)])).contains("queue 1"),
        "the next delivery queued while disabled: {}",
        out(&run(&env, &["status", "--config", &cfg_path(&d)]))
    );
    let status = out(&run(&env, &["status", "--config", &cfg_path(&d)]));
    assert!(
        status.contains("DISABLED (the receiver answered 410 Gone)"),
        "{status}"
    );
    assert_eq!(rx.requests().len(), 1);
    let o = run(&env, &["hooks", "enable", "h", "--config", &cfg_path(&d)]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    eventually!(rx.requests().len() == 2, "the queued delivery after enable");
    assert_eq!(rx.requests()[1].answered, 200);
}

#[test]
fn a_hook_that_never_answers_does_not_hold_up_another() {
    let env = TestEnv::new();
    let site = site(&env);
    let slow = Receiver::start();
    slow.behave(|b| b.hang = true);
    let fast = Receiver::start();
    let hooks = format!(
        "{}{}",
        hook(
            "slow",
            &slow.url,
            "timeout = \"60s\"\nevents = [\"StatusChanged\", \"PostDeployment\"]"
        ),
        hook(
            "fast",
            &fast.url,
            "events = [\"StatusChanged\", \"PostDeployment\"]"
        )
    );
    let _d = Daemon::start(&env, &config(&env, &site, &hooks));
    deploy(&site, 1);
    deploy(&site, 2);
    eventually!(
        fast.payloads("PostDeployment").len() == 2,
        "the healthy hook gets everything"
    );
    assert_eq!(
        slow.requests().len(),
        1,
        "the hanging hook is still on its first attempt"
    );
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|e| panic!("{e}"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn signatures_verify_over_the_exact_bytes_received() {
    let env = TestEnv::new();
    let site = site(&env);
    let std_rx = Receiver::start();
    let gh_rx = Receiver::start();
    let std_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let gh_secret = "It's a Secret to Everybody";
    std::fs::write(env.join("std.secret"), format!("{std_secret}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let hooks = format!(
        "{}{}",
        hook(
            "std",
            &std_rx.url,
            &format!("secret_file = \"{}\"", env.join("std.secret").display())
        ),
        hook(
            "gh",
            &gh_rx.url,
            "secret_env = \"GH_SECRET\"\nsignature = \"github\""
        )
    );
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, &site, &hooks)).unwrap_or_else(|e| panic!("{e}"));
    // secret_env is read from the daemon's environment.
    let d = Daemon::start_with(&env, &cfg, &[("GH_SECRET", gh_secret)]);
    deploy(&site, 1);
    eventually!(
        !std_rx.requests().is_empty() && !gh_rx.requests().is_empty(),
        "both hooks called"
    );
    let logs = d.logs().join("\n");
    assert!(
        !logs.contains(std_secret) && !logs.contains(gh_secret),
        "secrets never logged"
    );
    assert!(
        logs.contains("readable by every user"),
        "world-readable secret file warned about"
    );

    let key = STANDARD
        .decode(std_secret.trim_start_matches("whsec_"))
        .unwrap_or_default();
    for r in std_rx.requests() {
        let id = r.header("webhook-id").unwrap_or_default();
        let ts = r.header("webhook-timestamp").unwrap_or_default();
        assert_eq!(id, delivery_id(&r), "webhook-id is the delivery id");
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(&r.body);
        let want = format!("v1,{}", STANDARD.encode(hmac(&key, &signed)));
        assert_eq!(r.header("webhook-signature"), Some(want.as_str()));
    }
    for r in gh_rx.requests() {
        let hex: String = hmac(gh_secret.as_bytes(), &r.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            r.header("x-hub-signature-256"),
            Some(format!("sha256={hex}").as_str())
        );
        assert_eq!(r.header("webhook-signature"), None);
    }
}

#[test]
fn credentials_in_the_url_are_sent_as_basic_auth_and_never_shown() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let url = rx.url_with_credentials("deploy", "s3cr%40t");
    let d = Daemon::start(&env, &config(&env, &site, &hook("h", &url, "")));
    deploy(&site, 1);
    eventually!(!rx.requests().is_empty(), "a request");
    let auth = rx.requests()[0]
        .header("authorization")
        .unwrap_or_default()
        .to_string();
    assert_eq!(auth, format!("Basic {}", STANDARD.encode("deploy:s3cr@t")));
    let id = delivery_id(&rx.requests()[0]);
    eventually!(
        out(&run(
            &env,
            &["deliveries", "show", &id, "--config", &cfg_path(&d)]
        ))
        .contains("< HTTP 200"),
        "the attempt recorded"
    );
    let shown = out(&run(
        &env,
        &["deliveries", "show", &id, "--config", &cfg_path(&d)],
    ));
    let status = out(&run(&env, &["status", "--config", &cfg_path(&d)]));
    let check = out(&run(&env, &["check", "--config", &cfg_path(&d)]));
    for text in [shown, status, check, d.logs().join("\n")] {
        assert!(
            !text.contains("s3cr") && !text.contains("Basic "),
            "credentials shown:\n{text}"
        );
    }
}

#[test]
fn redeliver_sends_the_same_payload_as_a_new_delivery() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &hook("h", &rx.url, "")));
    deploy(&site, 1);
    eventually!(rx.requests().len() == 1, "the delivery");
    let first = rx.requests()[0].clone();
    let id = delivery_id(&first);
    let o = run(
        &env,
        &["deliveries", "redeliver", &id, "--config", &cfg_path(&d)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("the running daemon sends now"),
        "{}",
        out(&o)
    );
    eventually!(rx.requests().len() == 2, "the redelivery");
    let second = &rx.requests()[1];
    assert_ne!(delivery_id(second), id);
    assert_eq!(second.body, first.body);
}

#[test]
fn a_corrupt_database_is_a_clear_error_and_is_left_untouched() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    std::fs::create_dir_all(env.join("state")).unwrap_or_else(|e| panic!("{e}"));
    let garbage = b"this is not a SQLite database, it is a text file\n".repeat(200);
    std::fs::write(env.join("state/deployhook.sqlite"), &garbage).unwrap_or_else(|e| panic!("{e}"));
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, &site, &hook("h", &rx.url, "")))
        .unwrap_or_else(|e| panic!("{e}"));
    let o = run(&env, &["run", "--config", cfg.to_str().unwrap_or("")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("is corrupt"), "{}", out(&o));
    assert!(out(&o).contains("left untouched"), "{}", out(&o));
    let after = std::fs::read(env.join("state/deployhook.sqlite")).unwrap_or_default();
    assert_eq!(after, garbage, "nothing overwritten");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &hook("h", &rx.url, "")));
    let o = run(&env, &["run", "--config", &cfg_path(&d)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("another deployhook daemon is using"),
        "{}",
        out(&o)
    );
    // The first one is unharmed.
    deploy(&site, 1);
    eventually!(rx.requests().len() == 1, "the first daemon still delivers");
}

/// The `at` of the first line of `deliveries show` output starting with `prefix`.
fn time_after(text: &str, prefix: &str) -> Option<jiff::Timestamp> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse().ok())
}

#[test]
fn a_retry_after_http_date_is_honoured() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    // An hour from now: honoured up to twice the scheduled 10 s, i.e. 20 s; without the
    // date, the retry would come after 10 s ± 20 %.
    let in_an_hour = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    rx.behave(|b| {
        b.statuses = [503].into();
        b.retry_after = Some(httpdate::fmt_http_date(in_an_hour));
    });
    let d = Daemon::start(
        &env,
        &config(&env, &site, &hook("h", &rx.url, "retry = [\"10s\"]")),
    );
    deploy(&site, 1);
    eventually!(!rx.requests().is_empty(), "the first attempt");
    let id = delivery_id(&rx.requests()[0]);
    let show = || {
        out(&run(
            &env,
            &["deliveries", "show", &id, "--config", &cfg_path(&d)],
        ))
    };
    eventually!(show().contains("< HTTP 503"), "the attempt recorded");
    let text = show();
    let attempted = time_after(&text, "attempt 1 at").unwrap_or_else(|| panic!("{text}"));
    let next = time_after(&text, "next attempt at").unwrap_or_else(|| panic!("{text}"));
    let waits = next.duration_since(attempted).as_secs_f64();
    assert!(
        (19.0..=21.0).contains(&waits),
        "the next attempt is {waits} s after the first:\n{text}"
    );
}

#[test]
fn hooks_test_answered_410_disables_the_hook() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [410].into());
    let cfg = config(&env, &site, &hook("h", &rx.url, ""));
    let path = env.join("deployhook.toml");
    std::fs::write(&path, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let path = path.to_string_lossy().into_owned();
    let o = run(&env, &["hooks", "test", "h", "--config", &path]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("hook h is disabled"), "{}", out(&o));
    let list = out(&run(&env, &["hooks", "list", "--config", &path]));
    assert!(list.contains("DISABLED"), "{list}");
}

#[test]
fn after_an_outage_status_tells_the_next_retry_and_deliveries_retry_sends_it_now() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    rx.stop();
    let d = Daemon::start(
        &env,
        &config(&env, &site, &hook("h", &rx.url, "retry = [\"1h\"]")),
    );
    deploy(&site, 1);
    d.wait_log("attempt failed; will retry");
    let failed: Vec<String> = d
        .logs()
        .into_iter()
        .filter(|l| l.contains("attempt failed"))
        .collect();
    assert!(
        failed
            .iter()
            .all(|l| l.contains("error=\"connection refused\"") && !l.contains("status=")),
        "{failed:?}"
    );
    let status = out(&run(&env, &["status", "--config", &cfg_path(&d)]));
    assert!(status.contains("next retry in "), "{status}");
    assert!(status.contains("deliveries retry --hook h"), "{status}");

    rx.restart();
    let test = out(&run(
        &env,
        &["hooks", "test", "h", "--config", &cfg_path(&d)],
    ));
    assert!(test.contains("HTTP 200"), "{test}");
    assert!(test.contains("wait for a scheduled retry"), "{test}");
    let retry = out(&run(
        &env,
        &[
            "deliveries",
            "retry",
            "--hook",
            "h",
            "--config",
            &cfg_path(&d),
        ],
    ));
    assert!(retry.contains("made due now"), "{retry}");
    // Within a second (the worker looks again every second), not in an hour.
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the waiting delivery sent after `deliveries retry`"
    );
}
