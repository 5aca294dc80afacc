//! DORA's five keys end to end: a scripted history through real git repositories (commits
//! with pinned author dates) and the real daemon — a Kudu site with pinned deploy times
//! (a success, a failure, its fix) and a Capistrano site deployed now (a success, another,
//! a rollback, a forward fix) — checked against a table computed by hand, from the CLI,
//! the API and `/metrics`.

use std::path::Path;

use deployhook::model::Timestamp;
use serde_json::Value;

use crate::support::api::Client;
use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::git::{commit_at, git, init_source};
use crate::support::receiver::Receiver;

const MIN: i64 = 60;
const HOUR: i64 = 3600;

fn kudu_status(id: &str, status: &str, received: i64, start: i64, end: i64) -> String {
    let t = |s: i64| Timestamp::from_unix_seconds(s).rfc3339();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<deployment>
  <id>{id}</id>
  <author>Sam Roe</author>
  <deployer>GitHub</deployer>
  <authorEmail>sam@example.com</authorEmail>
  <message>deploy {id}</message>
  <progress />
  <status>{status}</status>
  <statusText />
  <lastSuccessEndTime />
  <receivedTime>{}</receivedTime>
  <startTime>{}</startTime>
  <endTime>{}</endTime>
  <complete>True</complete>
  <is_temp>False</is_temp>
  <is_readonly>False</is_readonly>
</deployment>
"#,
        t(received),
        t(start),
        t(end)
    )
}

/// Kudu finishes a deployment: its status file (written whole, then renamed in), and
/// `active` when it succeeded.
fn kudu_deploy(root: &Path, id: &str, ok: bool, received: i64, end: i64) {
    let dir = root.join("deployments").join(id);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let status = if ok { "Success" } else { "Failed" };
    let tmp = dir.join("status.xml.tmp");
    std::fs::write(&tmp, kudu_status(id, status, received, received + MIN, end))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.join("status.xml")).unwrap_or_else(|e| panic!("{e}"));
    if ok {
        std::fs::write(root.join("deployments/active"), id).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn secs(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// `want` seconds, to the second (`tolerance` 0) or within `tolerance` seconds.
fn near(got: &Value, want: i64, tolerance: i64, what: &str) {
    let g = secs(got);
    assert!(
        (g - want as f64).abs() <= tolerance as f64 + 0.5,
        "{what}: got {g} s, want {want} s ± {tolerance}"
    );
}

fn figures<'a>(report: &'a Value, site: &str) -> &'a Value {
    report["sites"]
        .as_array()
        .and_then(|s| s.iter().find(|f| f["site"] == site))
        .unwrap_or_else(|| panic!("no {site} in {report}"))
}

#[test]
fn a_scripted_history_gives_the_hand_computed_dora_table_from_the_cli_the_api_and_metrics() {
    let env = TestEnv::new();
    let now = Timestamp::now().unix_seconds();
    let t0 = now - 10 * 24 * HOUR;

    // shop: Kudu, its own repository; deploy times pinned in the status files.
    let shop_src = env.join("shop-src");
    init_source(&shop_src);
    let shop = env.join("shop");
    std::fs::create_dir_all(shop.join("deployments")).unwrap_or_else(|e| panic!("{e}"));
    // api: Capistrano from `src`, deployed now.
    let api = Site::capistrano(&env);

    let rx = Receiver::start();
    let config = format!(
        r#"[daemon]
state_dir = "{state}"
host_name = "test-host"

[[site]]
name = "shop"
path = "{shop}"
layout = "kudu"
repo = "{shop_src}"

[[site]]
name = "api"
path = "{api}"
settle = "300ms"

[[hook]]
name = "all"
url = "{url}"
retry = ["100ms"]

[api]
listen = "127.0.0.1:0"
"#,
        state = env.join("state").display(),
        shop = shop.display(),
        shop_src = shop_src.display(),
        api = api.root.display(),
        url = rx.url,
    );
    let d = Daemon::start(&env, &config);
    let posts = |n: usize| {
        eventually!(
            rx.payloads("PostDeployment").len() == n,
            "{n} PostDeployments, got {:?}",
            rx.payloads("PostDeployment")
        )
    };

    // shop, by hand (t0 = 10 days ago):
    //   s1 written t0-48h; K1 = s1 received t0, ends t0+10m: success (first seen: ships s1)
    //   s2 t0+2h, s3 t0+3h; K2 = s3 received t0+24h, ends t0+24h05m: failed
    //   s4 t0+25h; K3 = s4 received t0+26h, ends t0+26h10m: success (ships s2, s3, s4)
    let s1 = commit_at(&shop_src, "a.txt", "1", "s1", t0 - 48 * HOUR);
    kudu_deploy(&shop, &s1, true, t0, t0 + 10 * MIN);
    posts(1);
    commit_at(&shop_src, "a.txt", "2", "s2", t0 + 2 * HOUR);
    let s3 = commit_at(&shop_src, "a.txt", "3", "s3", t0 + 3 * HOUR);
    kudu_deploy(&shop, &s3, false, t0 + 24 * HOUR, t0 + 24 * HOUR + 5 * MIN);
    posts(2);
    let s4 = commit_at(&shop_src, "a.txt", "4", "s4", t0 + 25 * HOUR);
    kudu_deploy(&shop, &s4, true, t0 + 26 * HOUR, t0 + 26 * HOUR + 10 * MIN);
    posts(3);

    // api, by hand (deployed now, within seconds):
    //   a1 written now-72h; A ships a1
    //   a2 now-50h, a3 now-49h; B ships a2, a3; then rolled back to A (R: ships nothing)
    //   a4 now-2h; C ships a4 (a2, a3 again: first shipped by B)
    let src = &api.src;
    commit_at(src, "b.txt", "1", "a1", now - 72 * HOUR);
    api.cap_deploy("20260101000001", "jane");
    posts(4);
    commit_at(src, "b.txt", "2", "a2", now - 50 * HOUR);
    commit_at(src, "b.txt", "3", "a3", now - 49 * HOUR);
    api.cap_deploy("20260101000002", "jane");
    posts(5);
    api.cap_rollback("20260101000001", "jane");
    posts(6);
    commit_at(src, "b.txt", "4", "a4", now - 2 * HOUR);
    api.cap_deploy("20260101000003", "jane");
    posts(7);
    let rollbacks: Vec<bool> = rx
        .payloads("PostDeployment")
        .iter()
        .map(|p| p["rollback"] == true)
        .collect();
    assert_eq!(rollbacks, [false, false, false, false, false, true, false]);
    assert_eq!(git(src, &["rev-list", "--count", "HEAD"]), "5");

    // The table, by hand. Seconds; api's figures are now-relative (± 2 minutes).
    let (m, h) = (MIN, HOUR);
    let slack = 120;
    let port = d.api_port();
    let from_api = Client::tcp(port).get("/api/dora?since=30d").json();
    let (ok, text) = d.cli(&["dora", "--json"]);
    assert!(ok, "{text}");
    let from_cli: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    for report in [&from_api, &from_cli] {
        let shop = figures(report, "shop");
        assert_eq!(
            [
                &shop["deployments"],
                &shop["successful"],
                &shop["failed"],
                &shop["rolled_back"],
                &shop["rollbacks"],
                &shop["rework"]
            ],
            [
                &Value::from(3),
                &2.into(),
                &1.into(),
                &0.into(),
                &0.into(),
                &1.into()
            ],
            "shop counts"
        );
        assert_eq!(shop["lead_time"]["count"], 4);
        // [1h10m, 23h10m, 24h10m, 48h10m]: median 23h40m, p90 24h10m + 0.7·24h = 40h58m.
        near(
            &shop["lead_time"]["median_seconds"],
            23 * h + 40 * m,
            0,
            "shop lead median",
        );
        near(
            &shop["lead_time"]["p90_seconds"],
            40 * h + 58 * m,
            0,
            "shop lead p90",
        );
        assert_eq!(shop["change_failure_rate"], 1.0 / 3.0);
        assert_eq!(shop["recovery"]["count"], 1);
        near(
            &shop["recovery"]["median_seconds"],
            2 * h + 5 * m,
            0,
            "shop recovery",
        );
        assert_eq!(shop["rework_rate"], 1.0 / 3.0);
        assert_eq!(shop["per_day"], 2.0 / 30.0);

        let api = figures(report, "api");
        assert_eq!(
            [
                &api["deployments"],
                &api["successful"],
                &api["failed"],
                &api["rolled_back"],
                &api["rollbacks"],
                &api["rework"]
            ],
            [
                &Value::from(4),
                &4.into(),
                &0.into(),
                &1.into(),
                &1.into(),
                &2.into()
            ],
            "api counts"
        );
        assert_eq!(api["lead_time"]["count"], 4);
        // [2h, 49h, 50h, 72h]: median 49h30m, p90 50h + 0.7·22h = 65h24m.
        near(
            &api["lead_time"]["median_seconds"],
            49 * h + 30 * m,
            slack,
            "api lead median",
        );
        near(
            &api["lead_time"]["p90_seconds"],
            65 * h + 24 * m,
            slack,
            "api lead p90",
        );
        assert_eq!(api["change_failure_rate"], 0.25);
        assert_eq!(api["recovery"]["count"], 1);
        near(
            &api["recovery"]["median_seconds"],
            0,
            slack,
            "api recovery (the rollback)",
        );
        assert_eq!(api["rework_rate"], 0.5);

        let all = &report["all"];
        assert_eq!(
            (&all["deployments"], &all["failed"]),
            (&7.into(), &1.into())
        );
        assert_eq!(all["change_failure_rate"], 2.0 / 7.0);
        assert_eq!(all["rework_rate"], 3.0 / 7.0);
        // [1h10m, 2h, 23h10m, 24h10m, 48h10m, 49h, 50h, 72h]: median 36h10m,
        // p90 50h + 0.3·22h = 56h36m.
        near(
            &all["lead_time"]["median_seconds"],
            36 * h + 10 * m,
            slack,
            "all lead median",
        );
        near(
            &all["lead_time"]["p90_seconds"],
            56 * h + 36 * m,
            slack,
            "all lead p90",
        );
        assert_eq!(all["recovery"]["count"], 2);
    }

    // A window that ends before api's deploys: only shop's count.
    let (ok, text) = d.cli(&["dora", "--json", "--until", "3d"]);
    assert!(ok, "{text}");
    let older: Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(figures(&older, "api")["deployments"], 0, "{older}");
    assert_eq!(older["all"]["deployments"], 3, "{older}");
    let (ok, text) = d.cli(&["dora", "--site", "nope"]);
    assert!(!ok && text.contains("no site named nope"), "{text}");
    assert_eq!(Client::tcp(port).get("/api/dora?since=never").status, 400);

    // The table as an operator reads it.
    let (ok, table) = d.cli(&["dora"]);
    assert!(ok, "{table}");
    println!("{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
            .to_string()
    };
    let shop_row = row("shop");
    for cell in [
        "23h 40m / 40h 58m (4 commits)",
        "33% (1 of 3)",
        "2h 5m (1)",
        "0.07",
    ] {
        assert!(shop_row.contains(cell), "{cell:?} not in {shop_row:?}");
    }
    assert!(row("api").contains("25% (1 of 4)") && row("api").contains("50% (2 of 4)"));
    assert!(row("all").contains("29% (2 of 7)"), "{table}");

    // /metrics: all of history, as counters and histograms.
    let metric = |s: &str| d.metric(s);
    assert_eq!(
        metric(r#"deployhook_dora_deployments_total{site="shop",outcome="success"}"#),
        2.0
    );
    assert_eq!(
        metric(r#"deployhook_dora_deployments_total{site="shop",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        metric(r#"deployhook_dora_deployments_total{site="api",outcome="success"}"#),
        4.0
    );
    assert_eq!(
        metric(r#"deployhook_dora_rolled_back_total{site="api"}"#),
        1.0
    );
    assert_eq!(metric(r#"deployhook_dora_rework_total{site="shop"}"#), 1.0);
    assert_eq!(metric(r#"deployhook_dora_rework_total{site="api"}"#), 2.0);
    assert_eq!(
        metric(r#"deployhook_lead_time_seconds_count{site="shop"}"#),
        4.0
    );
    // 1h10m + 23h10m + 24h10m + 48h10m.
    assert_eq!(
        metric(r#"deployhook_lead_time_seconds_sum{site="shop"}"#),
        (96 * h + 40 * m) as f64
    );
    assert_eq!(
        metric(r#"deployhook_lead_time_seconds_count{site="api"}"#),
        4.0
    );
    let api_sum = metric(r#"deployhook_lead_time_seconds_sum{site="api"}"#);
    assert!(
        (api_sum - (173 * h) as f64).abs() < (4 * slack) as f64,
        "{api_sum}"
    );
    assert_eq!(
        metric(r#"deployhook_recovery_seconds_count{site="shop"}"#),
        1.0
    );
    assert_eq!(
        metric(r#"deployhook_recovery_seconds_sum{site="shop"}"#),
        (2 * h + 5 * m) as f64
    );
}
