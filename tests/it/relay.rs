//! Relay mode (issue 13), with the README's Fleet configs as printed (only the server's
//! address, the site's path, the hook's URL and the API port put in): three edge daemons
//! (`build-01` … `build-03`) publish to one JetStream stream of a real `nats-server`; a
//! relay daemon with a `[[source]]` consumes it and calls its own HTTP hook, which wants
//! `build-01` and `build-02`. Every deployment of those edges reaches the hook once, in
//! per-edge order — across SIGKILLs of the relay and a restart of the server — and the
//! relay's `/api/deployments` lists every edge's.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::nats::{self, NatsServer};
use crate::support::receiver::Receiver;

struct Edge {
    env: TestEnv,
    site: Site,
    host: String,
}

/// The README's Fleet blocks: the stream command, the edge's and the relay's config.
fn readme_blocks() -> (String, String) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/fleet.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let after = readme
        .split_once(
            "<!-- The configs below are run by tests/it/relay.rs (three edges, one relay). -->",
        )
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("docs/src/fleet.md lost its Fleet marker"));
    let mut blocks = after.split("```toml\n").skip(1).map(|b| {
        b.split_once("\n```")
            .map(|(b, _)| b.to_string())
            .unwrap_or_default()
    });
    let edge = blocks.next().unwrap_or_default();
    let relay = blocks.next().unwrap_or_default();
    (edge, relay)
}

const README_NATS: &str = "nats://nats.internal:4222";

fn edge_config(e: &Edge, url: &str, block: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"{}\"\nshutdown_timeout = \"1s\"\n\n{}\n",
        e.env.join("state").display(),
        e.host,
        block
            .replace(README_NATS, url)
            .replace("/var/www/shop", &e.site.root.display().to_string())
    )
}

/// The README's relay, plus two hooks of the test's own: `all` (every edge) and
/// `chat` (`format = "slack"`, rendered from the relayed kudu object as on an edge).
fn relay_config(
    env: &TestEnv,
    url: &str,
    hooks: (&str, &str, &str),
    port: u16,
    block: &str,
) -> String {
    let (hook, all, chat) = hooks;
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"relay\"\nshutdown_timeout = \"1s\"\n\n{}\n\n\
         [[hook]]\nname = \"all\"\nurl = \"{all}\"\n\n\
         [[hook]]\nname = \"chat\"\nurl = \"{chat}\"\nformat = \"slack\"\n",
        env.join("state").display(),
        block
            .replace(README_NATS, url)
            .replace("https://ops.example.com/deploys", hook)
            .replace("127.0.0.1:8791", &format!("127.0.0.1:{port}"))
    )
}

fn deploy(e: &Edge, n: u32) -> String {
    e.site
        .commit(&format!("f{n}.html"), &format!("{} change {n}", e.host));
    e.site.cap_deploy(&format!("202611201{n:05}"), "bob")
}

/// The (hostName, id) of every PostDeployment the hook got, and their delivery ids.
fn received(rx: &Receiver) -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut events = Vec::new();
    let mut deliveries = BTreeSet::new();
    for r in rx.requests() {
        let p = r.json();
        let key = (
            p["hostName"].as_str().unwrap_or("").to_string(),
            p["id"].as_str().unwrap_or("").to_string(),
        );
        if deliveries.insert(r.header("x-deployhook-delivery").unwrap_or("").to_string()) {
            events.push(key);
        }
    }
    (events, deliveries)
}

#[test]
#[cfg_attr(
    not(tool_nats),
    ignore = "nats-server is needed: apt-get install nats-server"
)]
fn three_edges_through_one_relay_each_deployment_once_in_order_across_crashes() {
    if !nats::have() {
        return;
    }
    let (edge_block, relay_block) = readme_blocks();
    assert!(relay_block.contains("[[source]]"), "{relay_block}");
    let nats_env = TestEnv::new();
    let mut server = NatsServer::start(nats_env.join("nats"));
    nats::create_stream(&server.url(), "DEPLOY", &["deployhook.>"]);
    let edges: Vec<Edge> = (1..=3)
        .map(|i| {
            let env = TestEnv::new();
            let site = Site::capistrano(&env);
            site.cap_deploy("20261120090000", "alice");
            Edge {
                env,
                site,
                host: format!("build-{i:02}"),
            }
        })
        .collect();
    let daemons: Vec<Daemon<'_>> = edges
        .iter()
        .map(|e| Daemon::start(&e.env, &edge_config(e, &server.url(), &edge_block)))
        .collect();
    let rx = Receiver::start();
    let all = Receiver::start();
    let chat = Receiver::start();
    let relay_env = TestEnv::new();
    let relay = Daemon::start(
        &relay_env,
        &relay_config(
            &relay_env,
            &server.url(),
            (&rx.url, &all.url, &chat.url),
            0,
            &relay_block,
        ),
    );

    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 1..=2 {
        for e in &edges {
            expected
                .entry(e.host.clone())
                .or_default()
                .push(deploy(e, n));
        }
    }
    eventually!(
        received(&rx).0.len() == 4,
        "four deployments of build-01 and build-02: {:?}",
        received(&rx).0
    );

    // The relay dies while the edges keep deploying, and the server restarts.
    relay.kill();
    for e in &edges {
        expected
            .entry(e.host.clone())
            .or_default()
            .push(deploy(e, 3));
    }
    server.down();
    server.up();
    for e in &edges {
        expected
            .entry(e.host.clone())
            .or_default()
            .push(deploy(e, 4));
    }
    let relay = Daemon::start_with(&relay_env, &relay_env.join("deployhook.toml"), &[]);
    // And once more, mid-stream.
    eventually!(received(&rx).0.len() >= 5, "the relay is consuming again");
    relay.kill();
    let relay = Daemon::start_with(&relay_env, &relay_env.join("deployhook.toml"), &[]);
    wait_long(
        || received(&rx).0.len() >= 8,
        || format!("eight: {:?}", received(&rx).0),
    );

    let (events, _) = received(&rx);
    let unique: BTreeSet<&(String, String)> = events.iter().collect();
    assert_eq!(
        unique.len(),
        events.len(),
        "no deployment was committed twice by the relay: {events:?}"
    );
    assert_eq!(events.len(), 8, "{events:?}");
    for (host, ids) in expected.iter().filter(|(h, _)| h.as_str() != "build-03") {
        assert_eq!(
            &of(&events, host),
            ids,
            "{host}: every deployment, in order"
        );
    }
    // Every edge's deployments reach the unfiltered hook, each once, in per-edge order.
    wait_long(
        || received(&all).0.len() >= 12,
        || format!("twelve: {:?}", received(&all).0),
    );
    let (every, _) = received(&all);
    assert_eq!(every.len(), 12, "{every:?}");
    for (host, ids) in &expected {
        assert_eq!(&of(&every, host), ids, "{host} on the unfiltered hook");
    }
    // A slack hook on the relay gets the edge's full message (blocks, commit, author).
    eventually!(chat.requests().len() >= 12, "twelve chat messages");
    let first = chat.requests()[0].json();
    let fields = first["blocks"][1]["fields"].to_string();
    assert!(
        first["text"]
            .as_str()
            .is_some_and(|t| t.contains("shop: deployment success on build-0"))
            && fields.contains("*Author*")
            && fields.contains("*Commit*"),
        "{first}"
    );
    // The relay's API lists the whole fleet's deployments.
    let api = crate::support::api::Client::tcp(relay.api_port());
    let rows = || {
        let a = api.get("/api/deployments?limit=100");
        assert_eq!(a.status, 200, "{}", a.text());
        a.json().as_array().cloned().unwrap_or_default()
    };
    // build-03's last events may still be on their way (no hook waits for them).
    wait_long(
        || {
            let r = rows();
            r.len() == 12 && r.iter().all(|d| d["status"] == 4)
        },
        || format!("twelve successful deployments on the relay: {:?}", rows()),
    );
    let rows = rows();
    for (host, ids) in &expected {
        let mine: Vec<String> = rows
            .iter()
            .filter(|r| r["site_name"] == format!("{host}/shop").as_str())
            .map(|r| r["id"].as_str().unwrap_or("").to_string())
            .collect();
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(
            mine, newest_first,
            "{host}'s deployments on the relay: {rows:?}"
        );
    }
    assert!(
        rows.iter().all(|r| r["status"] == 4),
        "all successful (Kudu's 4)"
    );
    drop(daemons);
}

/// The ids `host`'s deployments arrived with, in arrival order.
fn of(events: &[(String, String)], host: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(h, _)| h == host)
        .map(|(_, id)| id.clone())
        .collect()
}

/// `eventually!` with room for JetStream's redelivery of an unacknowledged message.
fn wait_long(cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    crate::support::env::wait_until(cond, std::time::Duration::from_secs(30), what);
}

/// A kudu object from `host` for a deployment `id`, with a `message` of `message_len`.
fn edge_object(host: &str, id: &str, message_len: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "status": "success", "statusText": "", "authorEmail": "jane@example.com",
        "author": "Jane Doe", "message": "m".repeat(message_len), "progress": "",
        "deployer": "bob", "receivedTime": "2026-11-20T10:00:00.0000000Z",
        "startTime": "2026-11-20T10:00:01.0000000Z", "endTime": "2026-11-20T10:00:05.0000000Z",
        "lastSuccessEndTime": "2026-11-20T10:00:05.0000000Z", "complete": true,
        "siteName": "shop", "hostName": host, "event": "PostDeployment", "branch": "main",
        "release": "20261120100000", "previousId": null, "rollback": false,
        "layout": "releases", "sequence": 2, "previousStatus": "deploying"
    }))
    .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(tool_nats),
    ignore = "nats-server is needed: apt-get install nats-server"
)]
fn an_edge_cannot_report_as_another_and_relayed_fields_are_capped() {
    if !nats::have() {
        return;
    }
    let nats_env = TestEnv::new();
    let server = NatsServer::start(nats_env.join("nats"));
    nats::create_stream(&server.url(), "DEPLOY", &["deployhook.>"]);
    let rx = Receiver::start();
    let env = TestEnv::new();
    let cfg = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"relay\"\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\n\
         [[source]]\nname = \"fleet\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"DEPLOY\"\ndurable = \"relay\"\n\n\
         [[hook]]\nname = \"all\"\nurl = \"{}\"\nevents = [\"PostDeployment\"]\n",
        env.join("state").display(),
        server.url(),
        rx.url
    );
    let d = Daemon::start(&env, &cfg);
    let port = d.api_port();
    // edge-1, allowed to publish only under deployhook.edge-1.>, says it is edge-2-prod.
    let forged = edge_object("edge-2-prod", &"f".repeat(40), 10);
    nats::publish(
        &server.url(),
        "deployhook.edge-1.shop.PostDeployment",
        &forged,
    );
    // Then an honest message from edge-1 with a message of 1 MB (the server's max).
    let honest = edge_object("edge-1", &"a".repeat(40), 1000 * 1000);
    nats::publish(
        &server.url(),
        "deployhook.edge-1.shop.PostDeployment",
        &honest,
    );
    eventually!(rx.requests().len() == 1, "the honest message");
    let p = rx.requests()[0].json();
    assert_eq!(p["hostName"], "edge-1");
    let message = p["message"].as_str().unwrap_or("");
    assert!(
        message.len() <= 64 * 1024 + 16 && message.ends_with("[truncated]"),
        "capped as on an edge: {} bytes",
        message.len()
    );
    let metrics = crate::support::api::Client::tcp(port)
        .get("/metrics")
        .text();
    assert!(
        metrics.contains("deployhook_relay_skipped_total{source=\"fleet\"} 1"),
        "{metrics}"
    );
    let listed = crate::support::api::Client::tcp(port)
        .get("/api/deployments")
        .text();
    assert!(!listed.contains("edge-2-prod"), "{listed}");
    d.stop();
    assert_eq!(rx.requests().len(), 1, "the forged one went nowhere");
}
