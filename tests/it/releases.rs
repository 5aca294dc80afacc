//! End-to-end: each flavour's deploy, performed with the tool's own file operations,
//! seen by the real daemon and delivered to a loopback receiver.

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

const KUDU_KEYS: [&str; 26] = [
    "id",
    "status",
    "statusText",
    "authorEmail",
    "author",
    "message",
    "progress",
    "deployer",
    "receivedTime",
    "startTime",
    "endTime",
    "lastSuccessEndTime",
    "complete",
    "siteName",
    "hostName",
    "event",
    "branch",
    "release",
    "previousId",
    "rollback",
    "layout",
    "sequence",
    "previousStatus",
    "commits",
    "commitsTruncated",
    "truncated",
];

/// Asserts what every PostDeployment of a successful deploy of `sha` carries.
fn assert_post_deployment(p: &serde_json::Value, sha: &str, release: &str, previous: &str) {
    let keys: Vec<&str> = p
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    // What the deploy changed, when the repository holds both commits; else null.
    assert!(
        (p["commits"].is_array() && p["commitsTruncated"].is_boolean())
            || (p["commits"].is_null() && p["commitsTruncated"].is_null()),
        "{p}"
    );
    assert_eq!(keys, KUDU_KEYS, "field order: every key, always");
    assert_eq!(p["id"], sha);
    assert_eq!(p["status"], "success");
    assert_eq!(p["complete"], true);
    assert_eq!(p["author"], "Jane Doe");
    assert_eq!(p["authorEmail"], "jane@example.com");
    assert_eq!(p["siteName"], "shop");
    assert_eq!(p["hostName"], "test-host");
    assert_eq!(p["event"], "PostDeployment");
    assert_eq!(p["release"], release);
    assert_eq!(p["previousId"], previous);
    assert_eq!(p["layout"], "releases");
    let time = |k: &str| {
        p[k].as_str()
            .unwrap_or_else(|| panic!("{k} missing in {p}"))
            .to_string()
    };
    let (received, start, end) = (time("receivedTime"), time("startTime"), time("endTime"));
    for t in [&received, &start, &end] {
        assert!(
            t.ends_with('Z') && t.len() == 28,
            "RFC 3339 with 7 digits and Z: {t}"
        );
    }
    assert!(
        received <= start && start <= end,
        "timings in order: {received} {start} {end}"
    );
    assert_eq!(p["lastSuccessEndTime"], p["endTime"]);
}

#[test]
fn capistrano_deploy_reports_each_step_and_one_post_deployment() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let first = site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    let r = "20261120091402";

    let sha = site.commit("checkout.html", "Add checkout page");
    site.cap_update();
    eventually!(
        rx.statuses() == ["pending"],
        "pending, got {:?}",
        rx.statuses()
    );
    site.cap_create_release(r);
    eventually!(
        rx.statuses() == ["pending", "building"],
        "building, got {:?}",
        rx.statuses()
    );
    site.write_revision(r, &sha);
    site.cap_switch(r);
    eventually!(
        rx.statuses().len() == 3,
        "deploying, got {:?}",
        rx.statuses()
    );
    site.cap_log(r, &sha, "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    assert_eq!(d.stop(), Some(0), "SIGTERM exits 0");

    assert_eq!(
        rx.statuses(),
        ["pending", "building", "deploying", "success"]
    );
    let posts = rx.payloads("PostDeployment");
    assert_eq!(posts.len(), 1, "exactly one PostDeployment");
    let p = &posts[0];
    assert_post_deployment(p, &sha, r, &first);
    assert_eq!(p["message"], "Add checkout page");
    assert_eq!(p["deployer"], "bob");
    assert_eq!(p["branch"], "main");
    assert_eq!(p["rollback"], false);
    let changed = rx.payloads("StatusChanged");
    let seqs: Vec<u64> = changed
        .iter()
        .filter_map(|c| c["sequence"].as_u64())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(
        changed[0]["id"], sha,
        "pending already carries the mirror's commit"
    );
    assert_eq!(changed[1]["previousStatus"], "pending");
    for req in rx.requests() {
        assert_eq!(
            req.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert!(
            req.header("user-agent")
                .is_some_and(|u| u.starts_with("deployhook/"))
        );
        assert!(
            req.header("x-deployhook-delivery")
                .is_some_and(|id| id.starts_with("msg_"))
        );
    }
}

#[test]
fn capistrano_rollback_is_reported_as_a_new_deployment() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let first = site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let _d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    site.commit("b.html", "Break everything");
    let second = site.cap_deploy("20261120100000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 1, "the deploy");
    site.cap_rollback("20261120090000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 2, "the rollback");
    let p = &rx.payloads("PostDeployment")[1];
    assert_eq!(p["id"], first);
    assert_eq!(p["rollback"], true);
    assert_eq!(p["status"], "success");
    assert_eq!(p["release"], "20261120090000");
    assert_eq!(p["previousId"], second);
    assert_eq!(p["message"], "Initial site");
}

#[test]
fn two_capistrano_deploys_back_to_back_are_both_reported_in_order() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    site.commit("a.html", "First change");
    let a = site.cap_deploy("20261120100000", "bob");
    site.commit("b.html", "Second change");
    let b = site.cap_deploy("20261120110000", "bob");
    eventually!(
        rx.payloads("PostDeployment").len() >= 2,
        "two PostDeployments"
    );
    d.stop();
    let posts = rx.payloads("PostDeployment");
    let ids: Vec<&str> = posts.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, [a.as_str(), b.as_str()]);
    assert!(posts.iter().all(|p| p["status"] == "success"));
}

#[test]
fn deployer_deploy_uses_the_lock_and_releases_log() {
    let env = TestEnv::new();
    let site = Site::deployer(&env);
    site.dep_lock("carol");
    let first = site.dep_release("1", "carol");
    site.dep_switch();
    site.dep_unlock();
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));

    let sha = site.commit("checkout.html", "Add checkout page");
    site.dep_lock("carol");
    // The lock's `pending` waits for the commit the release will carry (one id).
    eventually!(
        d.status().contains("in progress: #"),
        "the lock's deployment tracked (held): {}",
        d.status()
    );
    assert!(rx.statuses().is_empty(), "{:?}", rx.statuses());
    site.dep_release("2", "carol");
    eventually!(
        rx.statuses() == ["pending", "building"],
        "building, got {:?}",
        rx.statuses()
    );
    site.dep_switch();
    eventually!(
        rx.statuses().len() == 3,
        "deploying, got {:?}",
        rx.statuses()
    );
    site.dep_unlock();
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(
        rx.statuses(),
        ["pending", "building", "deploying", "success"]
    );
    let p = &rx.payloads("PostDeployment")[0];
    assert_post_deployment(p, &sha, "2", &first);
    assert_eq!(p["deployer"], "carol");
    assert_eq!(p["branch"], "main");
    assert_eq!(
        p["startTime"], "2026-11-20T09:00:00.0000000Z",
        "created_at from releases_log"
    );
}

#[test]
fn deployer_failed_deploy_releases_the_lock_while_release_points_at_it() {
    let env = TestEnv::new();
    let site = Site::deployer(&env);
    site.dep_lock("carol");
    site.dep_release("1", "carol");
    site.dep_switch();
    site.dep_unlock();
    let rx = Receiver::start();
    let _d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    site.commit("x.html", "Broken build");
    site.dep_lock("carol");
    site.dep_release("2", "carol");
    eventually!(
        rx.statuses().last().is_some_and(|s| s == "building"),
        "building"
    );
    site.dep_unlock(); // deploy:failed -> deploy:unlock
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["status"], "failed");
    assert_eq!(p["complete"], true);
    assert!(
        p["statusText"].as_str().is_some_and(|t| t.contains("lock")),
        "{p}"
    );
    assert_eq!(p["lastSuccessEndTime"], serde_json::Value::Null);
}

#[test]
fn ansible_deploy_helper_finishes_after_settle() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    site.ansible_create("20261120090000");
    site.ansible_finalize("20261120090000");
    let first = crate::support::git::git(&site.src, &["rev-parse", "HEAD"]);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));

    let sha = site.commit("checkout.html", "Add checkout page");
    site.ansible_create("20261120100000");
    eventually!(
        rx.statuses() == ["building"],
        "building, got {:?}",
        rx.statuses()
    );
    site.ansible_finalize("20261120100000");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(rx.statuses(), ["building", "deploying", "success"]);
    let p = &rx.payloads("PostDeployment")[0];
    assert_post_deployment(p, &sha, "20261120100000", &first);
    assert_eq!(p["message"], "Add checkout page");
}

#[test]
fn plain_release_switch_succeeds_after_settle() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let first = site.plain_deploy("1");
    let rx = Receiver::start();
    let _d = Daemon::start(
        &env,
        &config(
            &env,
            &site,
            &rx.url,
            &format!("repo = \"{}\"", site.src.display()),
        ),
    );
    let sha = site.commit("c.html", "Add c");
    site.plain_deploy("2");
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    let p = &rx.payloads("PostDeployment")[0];
    assert_post_deployment(p, &sha, "2", &first);
    assert_eq!(
        p["commits"],
        serde_json::json!([{"sha": sha, "author": "Jane Doe", "message": "Add c"}]),
        "what the deploy changed, from the configured repo"
    );
    assert_eq!(
        p["message"], "Add c",
        "commit data from the configured repo"
    );
    assert_eq!(rx.statuses().last().map(String::as_str), Some("success"));
}

#[test]
fn a_deploy_that_finished_while_the_daemon_was_stopped_is_reported_once_after_restart() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let cfg = config(&env, &site, &rx.url, "");
    Daemon::start(&env, &cfg).stop();
    site.commit("x.html", "While stopped");
    let sha = site.cap_deploy("20261120100000", "bob");
    let d = Daemon::start(&env, &cfg);
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    let d = Daemon::start(&env, &cfg);
    d.stop();
    let posts = rx.payloads("PostDeployment");
    assert_eq!(
        posts.len(),
        1,
        "reported once, not again after another restart"
    );
    assert_eq!(posts[0]["id"], sha);
    assert_eq!(
        rx.statuses(),
        ["success"],
        "skipped states are not invented"
    );
}
