//! The delivery log from the command line (issue 25's CLI half): `deliveries list` and
//! `deliveries retry` take the same filters (hook, event, outcome, HTTP status, time);
//! retrying the dead ones that match queues them again, their history kept; an unknown
//! hook is an error; with the daemon down, `status` promises no retry time.

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::{Site, shop_config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

#[test]
fn retrying_every_dead_delivery_of_a_hook_sends_them_again_and_keeps_their_history() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    // Two deploys, each dead after two attempts (503, 503); then the receiver is fine.
    rx.behave(|b| b.statuses = [503; 4].into());
    let other = Receiver::start();
    let hooks = format!(
        "[[hook]]\nname = \"ops\"\nurl = \"{}\"\nretry = [\"100ms\"]\n\n\
         [[hook]]\nname = \"other\"\nurl = \"{}\"\n",
        rx.url, other.url
    );
    let d = Daemon::start(&env, &shop_config(&env, &site, &hooks));
    for (n, release) in ["20261120100000", "20261120110000"].iter().enumerate() {
        site.commit(&format!("f{n}.html"), &format!("Change {n}"));
        site.cap_deploy(release, "bob");
        eventually!(
            other.payloads("PostDeployment").len() == n + 1,
            "deploy {n} delivered to the other hook"
        );
    }
    eventually!(rx.requests().len() == 4, "four failed attempts");
    let dead = || d.cli(&["deliveries", "list", "--hook", "ops", "--outcome", "dead"]);
    eventually!(
        dead().1.matches(" dead ").count() == 2,
        "two dead: {}",
        dead().1
    );
    let (ok, by_status) = d.cli(&[
        "deliveries",
        "list",
        "--http-status",
        "503",
        "--since",
        "1h",
    ]);
    assert!(ok && by_status.matches(" ops ").count() == 2, "{by_status}");
    assert!(!by_status.contains(" other "), "{by_status}");

    let (ok, text) = d.cli(&["deliveries", "retry", "--outcome", "dead", "--hook", "ops"]);
    assert!(
        ok && text.contains("2 deliveries matched: 0 made due now, 2 dead queued again"),
        "{text}"
    );
    // The receiver answered 200 from the fifth request on: the two sent again.
    let answered_ok = || -> Vec<String> {
        rx.requests()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.json()["message"].to_string())
            .collect()
    };
    eventually!(
        answered_ok().len() == 2,
        "both sent again: {:?}",
        answered_ok()
    );
    let bodies = answered_ok();
    assert_eq!(
        bodies,
        ["\"Change 0\"", "\"Change 1\""],
        "the same payloads, in order"
    );
    // The dead ones stay in the history; the new ones are delivered.
    assert_eq!(dead().1.matches(" dead ").count(), 2, "{}", dead().1);
    let (_, delivered) = d.cli(&[
        "deliveries",
        "list",
        "--hook",
        "ops",
        "--outcome",
        "delivered",
    ]);
    assert_eq!(delivered.matches(" delivered ").count(), 2, "{delivered}");
    // Only failures are retried; a hook nobody knows is an error.
    let (ok, text) = d.cli(&["deliveries", "retry", "--outcome", "delivered"]);
    assert!(!ok && text.contains("not delivered ones"), "{text}");
    let (ok, text) = d.cli(&["deliveries", "retry", "--hook", "nosuch"]);
    assert!(!ok && text.contains("no hook named nosuch"), "{text}");
    let (ok, text) = d.cli(&["deliveries", "list", "--since", "soon"]);
    assert!(!ok && text.contains("is not a duration"), "{text}");
}

#[test]
fn with_the_daemon_down_status_promises_no_retry_time() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [500].into());
    let hooks = format!(
        "[[hook]]\nname = \"ops\"\nurl = \"{}\"\nretry = [\"1h\"]\n",
        rx.url
    );
    let d = Daemon::start(&env, &shop_config(&env, &site, &hooks));
    site.commit("a.html", "Fix header");
    site.cap_deploy("20261120100000", "bob");
    eventually!(!rx.requests().is_empty(), "the failed attempt");
    eventually!(
        d.status().contains("next retry in "),
        "a retry time while it runs: {}",
        d.status()
    );
    let config = d.config.to_string_lossy().into_owned();
    assert_eq!(d.stop(), Some(0));
    let o = run(&env, &["status", "--config", &config]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("daemon: not running"), "{text}");
    assert!(!text.contains("next retry in "), "{text}");
    assert!(text.contains("if the daemon runs by then"), "{text}");
}
