//! The API beyond Kudu against the real binary: deployments, a hook's deliveries, one
//! delivery with its attempts, redelivery, ping, and `/metrics` read by a real
//! Prometheus parser (the `prometheus-client` Python package) moving with a deploy.

use serde_json::json;

use crate::support::api::Client;
use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::python;
use crate::support::receiver::Receiver;

/// A Capistrano site, a config hook `ops` to `rx`, and the API on the port it binds.
fn start<'a>(env: &'a TestEnv, site: &Site, rx: &Receiver) -> (Daemon<'a>, Client) {
    let port = 0;
    let cfg = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n\
         [[hook]]\nname = \"ops\"\nurl = \"{}\"\nretry = [\"100ms\"]\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\nallow_private_targets = true\n",
        env.join("state").display(),
        site.root.display(),
        rx.url
    );
    let d = Daemon::start(env, &cfg);
    let port = d.api_port();
    (d, Client::tcp(port))
}

fn deploy(site: &Site, n: u32) -> String {
    site.commit(&format!("f{n}.html"), &format!("Change {n}"));
    site.cap_deploy(&format!("2026112010{n:04}"), "bob")
}

#[test]
fn deployments_newest_first_in_kudus_shape_and_one_by_id() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let (_d, c) = start(&env, &site, &rx);
    let first = deploy(&site, 1);
    eventually!(rx.payloads("PostDeployment").len() == 1, "first deploy");
    let second = deploy(&site, 2);
    eventually!(rx.payloads("PostDeployment").len() == 2, "second deploy");
    let list = c.get("/api/deployments?site=shop").json();
    let rows = list.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "the baseline is not a deployment: {list}");
    assert_eq!(rows[0]["id"], second.as_str(), "newest first");
    assert_eq!(rows[1]["id"], first.as_str());
    assert_eq!(rows[0]["status"], 4, "Kudu's Success");
    assert_eq!(rows[0]["complete"], true);
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[1]["active"], false);
    assert_eq!(rows[0]["author"], "Jane Doe");
    assert_eq!(rows[0]["deployer"], "bob");
    assert_eq!(rows[0]["site_name"], "shop");
    assert_eq!(
        c.get(&format!("/deployments/{first}")).json()["message"],
        "Change 1"
    );
    assert_eq!(c.get("/api/deployments/0000000").status, 404);
    assert_eq!(c.get("/api/deployments?site=other").json(), json!([]));
    assert_eq!(c.get("/api/deployments?limit=x").status, 400);
}

#[test]
fn a_hooks_deliveries_one_delivery_with_its_attempts_redeliver_and_ping() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    rx.behave(|b| b.statuses = [500].into());
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let (_d, c) = start(&env, &site, &rx);
    deploy(&site, 1);
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "a 500, then a 200"
    );
    let list = c.get("/api/hooks/ops/deliveries").json();
    let rows = list.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["state"], "delivered");
    let id = rows[0]["id"].as_str().unwrap_or_default().to_string();
    let one = c.get(&format!("/api/deliveries/{id}")).json();
    let attempts = one["attempt_list"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 2, "{one}");
    assert_eq!(attempts[0]["response_status"], 500);
    assert_eq!(attempts[1]["response_status"], 200);
    assert_eq!(one["request_body"]["json"]["status"], "success");
    assert_eq!(c.get("/api/deliveries/msg_nope").status, 404);
    assert_eq!(c.get("/api/hooks/nope/deliveries").status, 404);

    let again = c.post(&format!("/api/deliveries/{id}/redeliver"), "");
    assert_eq!(again.status, 202, "{}", again.text());
    eventually!(rx.payloads("PostDeployment").len() == 3, "redelivered");
    let ping = c.post("/api/hooks/ops/ping", "");
    assert_eq!(ping.status, 200, "{}", ping.text());
    eventually!(rx.requests().iter().any(|r| r.event() == "ping"), "pinged");
    assert_eq!(c.post("/api/hooks/4242/ping", "").status, 404);
}

const PARSE_METRICS: &str = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": fam.type})
print(json.dumps(out))
"#;

/// The value of the sample `name` with these labels (0 when absent).
fn sample(metrics: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .filter_map(|s| s["value"].as_f64())
        .sum()
}

fn scrape(c: &Client) -> serde_json::Value {
    let a = c.get("/metrics");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.contains("openmetrics"))
    );
    serde_json::from_str(&python::run(PARSE_METRICS, &a.body)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[cfg_attr(
    not(tool_py_prometheus),
    ignore = "the Python package prometheus-client is needed: apt-get install python3-prometheus-client"
)]
fn metrics_parse_with_a_real_prometheus_parser_and_move_with_a_deploy_and_a_delivery() {
    if !python::have("prometheus_client", "prometheus-client") {
        return;
    }
    let env = TestEnv::new();
    let rx = Receiver::start();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let (_d, c) = start(&env, &site, &rx);
    let before = scrape(&c);
    let success = [("site", "shop"), ("status", "success")];
    let delivered = [("hook", "ops"), ("outcome", "delivered")];
    assert_eq!(
        sample(&before, "deployhook_deployments_total", &success),
        0.0
    );
    assert!(sample(&before, "deployhook_site_reads_total", &[("site", "shop")]) >= 1.0);
    assert_eq!(
        sample(&before, "deployhook_queue_depth", &[("hook", "ops")]),
        0.0
    );
    deploy(&site, 1);
    eventually!(rx.payloads("PostDeployment").len() == 1, "delivered");
    eventually!(
        sample(&scrape(&c), "deployhook_deliveries_total", &delivered) == 1.0,
        "the delivery counted"
    );
    let after = scrape(&c);
    assert_eq!(
        sample(&after, "deployhook_deployments_total", &success),
        1.0
    );
    assert!(
        sample(
            &after,
            "deployhook_deployments_total",
            &[("status", "building")]
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "deployhook_attempt_duration_seconds_count",
            &[("hook", "ops")]
        ) >= 1.0
    );
    for name in [
        "deployhook_watcher_rescans_total",
        "deployhook_reload_failures_total",
        "deployhook_oldest_pending_age_seconds",
    ] {
        assert!(
            after
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["name"] == name)),
            "{name} missing"
        );
    }
}
