//! The fleet on a three-node JetStream cluster (issue 27): three `nats-server` processes
//! on loopback, the stream with three replicas, two edges publishing (each connected to
//! a different node) and a relay consuming from the third. One node is killed while the
//! edges deploy, then restarted: every deployment reaches the relay's hook once, each
//! edge's in order.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::nats::{self, NatsCluster};
use crate::support::receiver::Receiver;

fn edge_config(env: &TestEnv, site: &Site, host: &str, url: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"{host}\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n\
         [[hook]]\nname = \"fleet\"\nurl = \"{url}\"\nevents = [\"PostDeployment\"]\nretry = [\"200ms\", \"500ms\", \"1s\", \"2s\", \"2s\", \"2s\", \"2s\", \"2s\"]\n",
        env.join("state").display(),
        site.root.display()
    )
}

#[test]
#[cfg_attr(
    not(tool_nats),
    ignore = "nats-server is needed: apt-get install nats-server"
)]
fn a_node_of_a_three_node_cluster_dies_and_returns_nothing_lost_or_twice() {
    if !nats::have() {
        return;
    }
    let nats_env = TestEnv::new();
    let mut cluster = NatsCluster::start(nats_env.join("cluster"));
    cluster.create_stream("DEPLOY", &["deployhook.>"]);

    // Two edges, on nodes 1 and 2; the relay on node 3.
    let edges: Vec<(TestEnv, Site, String)> = (1..=2)
        .map(|i| {
            let env = TestEnv::new();
            let site = Site::capistrano(&env);
            site.cap_deploy("20261120090000", "alice");
            (env, site, format!("edge-{i}"))
        })
        .collect();
    let daemons: Vec<Daemon<'_>> = edges
        .iter()
        .enumerate()
        .map(|(i, (env, site, host))| {
            Daemon::start(env, &edge_config(env, site, host, &cluster.url(i)))
        })
        .collect();
    let rx = Receiver::start();
    let relay_env = TestEnv::new();
    let relay = Daemon::start(
        &relay_env,
        &format!(
            "[daemon]\nstate_dir = \"{}\"\nhost_name = \"relay\"\n\n\
             [[source]]\nname = \"fleet\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"DEPLOY\"\ndurable = \"relay\"\n\n\
             [[hook]]\nname = \"central\"\nurl = \"{}\"\nstatuses = [\"success\"]\n",
            relay_env.join("state").display(),
            cluster.url(2),
            rx.url
        ),
    );
    let received = || -> Vec<(String, String)> {
        rx.requests()
            .iter()
            .map(|r| {
                let p = r.json();
                (
                    p["hostName"].as_str().unwrap_or("").to_string(),
                    p["id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut deploy_round = |n: u32| {
        for (_, site, host) in &edges {
            site.commit(&format!("f{n}.html"), &format!("{host} change {n}"));
            let sha = site.cap_deploy(&format!("202611201{n:05}"), "bob");
            expected.entry(host.clone()).or_default().push(sha);
        }
    };
    deploy_round(1);
    deploy_round(2);
    eventually!(
        received().len() >= 2,
        "the first deployments: {:?}",
        received()
    );
    // Node 1 (edge-1's, and the first of the cluster) dies while the edges deploy.
    cluster.down(0);
    deploy_round(3);
    deploy_round(4);
    // Both edges' (edge-1's through another node) before node 1 is back.
    crate::support::env::wait_until(
        || received().len() >= 8,
        std::time::Duration::from_secs(60),
        || format!("deployments while node 1 is down: {:?}", received()),
    );
    cluster.up(0);
    deploy_round(5);
    deploy_round(6);
    crate::support::env::wait_until(
        || received().len() >= 12,
        std::time::Duration::from_secs(60),
        || format!("all twelve: {:?}", received()),
    );
    let events = received();
    let unique: BTreeSet<&(String, String)> = events.iter().collect();
    assert_eq!(unique.len(), events.len(), "none twice: {events:?}");
    assert_eq!(events.len(), 12, "{events:?}");
    for (host, ids) in &expected {
        let got: Vec<String> = events
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(&got, ids, "{host}: every deployment, in order");
    }
    drop(relay);
    drop(daemons);
}
