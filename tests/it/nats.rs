//! NATS JetStream hooks (issue 13) against a real `nats-server -js` on loopback: each
//! event published once with its headers and `Nats-Msg-Id`; deliveries wait while the
//! server is down and arrive in order when it is back; a SIGKILL of the daemon while it
//! publishes leaves no duplicate in the stream.

use std::collections::BTreeSet;

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, shop_config};
use crate::support::env::TestEnv;
use crate::support::nats::{self, NatsServer, Stored};

fn hook(url: &str) -> String {
    let retry = vec!["\"300ms\""; 40].join(", ");
    format!(
        "[[hook]]\nname = \"fleet\"\nurl = \"{url}\"\nevents = [\"StatusChanged\", \"PostDeployment\"]\n\
         timeout = \"2s\"\nretry = [{retry}]\n"
    )
}

fn posts(msgs: &[Stored]) -> Vec<serde_json::Value> {
    msgs.iter()
        .filter(|m| m.subject.ends_with(".PostDeployment"))
        .map(|m| serde_json::from_slice(&m.body).unwrap_or_default())
        .collect()
}

fn assert_no_duplicates(msgs: &[Stored]) {
    let ids: BTreeSet<&str> = msgs
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), msgs.len(), "one message per delivery id");
    assert!(!ids.contains(""), "every message has a Nats-Msg-Id");
}

fn deploy(site: &Site, n: u32) -> String {
    site.commit(&format!("f{n}.html"), &format!("Change {n}"));
    site.cap_deploy(&format!("202611201{n:05}"), "bob")
}

#[test]
#[cfg_attr(
    not(tool_nats),
    ignore = "nats-server is needed: apt-get install nats-server"
)]
fn each_event_is_published_once_with_its_headers_and_waits_while_the_server_is_down() {
    if !nats::have() {
        return;
    }
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let mut server = NatsServer::start(env.join("nats"));
    nats::create_stream(&server.url(), "DEPLOY", &["deployhook.>"]);
    let d = Daemon::start(&env, &shop_config(&env, &site, &hook(&server.url())));
    let out = crate::support::daemon::run(
        &env,
        &["check", "--config", &d.config.display().to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(
            "NATS: connected; stream DEPLOY captures deployhook.test-host.shop.PostDeployment"
        ),
        "check says which stream captures the subject: {text}"
    );
    let first = deploy(&site, 1);
    eventually!(
        posts(&nats::messages(&server.url(), "DEPLOY")).len() == 1,
        "the deploy's PostDeployment in the stream"
    );
    let msgs = nats::messages(&server.url(), "DEPLOY");
    assert_no_duplicates(&msgs);
    for m in &msgs {
        let event = m.header("X-Deployhook-Event").unwrap_or("");
        assert_eq!(m.subject, format!("deployhook.test-host.shop.{event}"));
        assert_eq!(m.header("Nats-Msg-Id"), m.header("X-Deployhook-Delivery"));
        assert!(
            m.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/json"))
        );
    }
    assert_eq!(posts(&msgs)[0]["id"], first.as_str());

    server.down();
    let second = deploy(&site, 2);
    eventually!(
        d.has_log("no PubAck") || d.has_log("cannot connect"),
        "attempts fail while the server is down"
    );
    let third = deploy(&site, 3);
    server.up();
    eventually!(
        posts(&nats::messages(&server.url(), "DEPLOY")).len() == 3,
        "both waiting deploys arrive: {:?}",
        posts(&nats::messages(&server.url(), "DEPLOY"))
    );
    let msgs = nats::messages(&server.url(), "DEPLOY");
    assert_no_duplicates(&msgs);
    let ids: Vec<String> = posts(&msgs)
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, [first, second, third], "in order");
    let sequences: Vec<u64> = msgs
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.body).ok())
        .filter_map(|p| p["sequence"].as_u64())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] <= w[1]),
        "the hook's order kept across the outage: {sequences:?}"
    );
}

#[test]
#[cfg_attr(
    not(tool_nats),
    ignore = "nats-server is needed: apt-get install nats-server"
)]
fn a_sigkill_while_publishing_leaves_no_duplicate_in_the_stream() {
    if !nats::have() {
        return;
    }
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let server = NatsServer::start(env.join("nats"));
    nats::create_stream(&server.url(), "DEPLOY", &["deployhook.>"]);
    let cfg = shop_config(&env, &site, &hook(&server.url()));
    let d = Daemon::start(&env, &cfg);
    for n in 1..=8 {
        deploy(&site, n);
    }
    eventually!(
        !nats::messages(&server.url(), "DEPLOY").is_empty(),
        "publishing has begun"
    );
    d.kill();
    let _d = Daemon::start_with(&env, &env.join("deployhook.toml"), &[]);
    eventually!(
        posts(&nats::messages(&server.url(), "DEPLOY")).len() == 8,
        "every deploy's PostDeployment"
    );
    let store = deployhook::store::Store::open_read_only(&env.join("state"))
        .unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        store
            .list_deliveries(Some("fleet"), false, 1000)
            .is_ok_and(|ds| ds
                .iter()
                .all(|d| d.state == deployhook::store::DeliveryState::Delivered)),
        "the outbox has sent everything"
    );
    let delivered = store
        .list_deliveries(Some("fleet"), false, 1000)
        .map(|ds| ds.len())
        .unwrap_or(0);
    let msgs = nats::messages(&server.url(), "DEPLOY");
    assert_no_duplicates(&msgs);
    assert_eq!(
        msgs.len(),
        delivered,
        "exactly one message per delivery, however many attempts the kill caused"
    );
}

#[test]
#[cfg_attr(
    not(tool_nats),
    ignore = "nats-server is needed: apt-get install nats-server"
)]
fn the_readme_nats_hook_connects_as_printed() {
    if !nats::have() {
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/fleet.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let block = readme
        .split_once(
            "<!-- The block below is checked against a real nats-server by tests/it/nats.rs. -->",
        )
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(b, _)| b.to_string())
        .unwrap_or_else(|| panic!("docs/src/fleet.md lost its NATS example"));
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let server = NatsServer::start(env.join("nats"));
    nats::create_stream(&server.url(), "DEPLOY", &["deployhook.>"]);
    let creds = env.join("nats.creds");
    std::fs::write(&creds, "a-token\n").unwrap_or_else(|e| panic!("{e}"));
    let hook = block
        .replace("nats://nats.internal:4222", &server.url())
        .replace("/etc/deployhook/nats.creds", &creds.display().to_string());
    let path = env.join("readme-nats.toml");
    std::fs::write(&path, shop_config(&env, &site, &hook)).unwrap_or_else(|e| panic!("{e}"));
    let out =
        crate::support::daemon::run(&env, &["check", "--config", &path.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("NATS: connected; stream DEPLOY captures"),
        "{text}"
    );
}
