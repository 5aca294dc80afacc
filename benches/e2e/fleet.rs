//! The fleet row (issue 13): edges publishing to a real `nats-server -js` on loopback, one
//! relay consuming the stream and calling one HTTP hook. Throughput: every edge's backlog
//! is published first; then the relay starts, timed until its outbox has every event
//! (the relay's own rate) and until its hook has them. Latency: a
//! Capistrano deploy on one edge, from its completing `revisions.log` line to the relay's
//! POST. Skipped (and said so) without `nats-server`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::results::{Results, pct, sorted};
use crate::scenarios::queued;

const SCENARIO: &str = "fleet (3 edges → NATS JetStream → relay → 1 hook)";

fn nats_server(store: &Path) -> Option<(Proc, String)> {
    if !have("nats-server") {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()?;
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc { child };
    wait_for("nats-server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("nats://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let client = async_nats::connect(&url).await.ok()?;
        async_nats::jetstream::new(client)
            .create_stream(async_nats::jetstream::stream::Config {
                name: "DEPLOY".into(),
                subjects: vec!["deployhook.>".into()],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .ok()
    })?;
    Some((p, url))
}

/// How many messages the stream holds.
fn stream_messages(url: &str) -> u64 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 0;
    };
    rt.block_on(async {
        let Ok(client) = async_nats::connect(url).await else {
            return 0;
        };
        let js = async_nats::jetstream::new(client);
        let Ok(mut stream) = js.get_stream("DEPLOY").await else {
            return 0;
        };
        stream.info().await.map(|i| i.state.messages).unwrap_or(0)
    })
}

/// How many messages the relay has committed to its outbox (read-only).
fn relayed(outbox: &Path) -> u64 {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(outbox, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    c.query_row("SELECT COUNT(*) FROM source_messages", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.unsigned_abs())
    .unwrap_or(0)
}

fn relay_config(dir: &Path, nats: &str, hook: &str) -> std::path::PathBuf {
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"relay\"\n\n\
         [[source]]\nname = \"fleet\"\nkind = \"nats\"\nurl = \"{nats}\"\nstream = \"DEPLOY\"\ndurable = \"relay\"\n\n\
         [[hook]]\nname = \"central\"\nurl = \"{hook}\"\n",
        dir.join("state").display()
    );
    let path = dir.join("deployhook.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

pub fn fleet(res: &mut Results, edges: usize, events: usize, deploys: usize) {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let Some((_server, nats)) = nats_server(store.path()) else {
        res.add(
            SCENARIO,
            "events/s",
            None,
            None,
            "SKIPPED (install nats-server)",
            "per s",
            "",
        );
        return;
    };
    let rx = Receiver::start();
    // Throughput: every edge's backlog published first (the stream holds them all), then
    // the relay started: its rate into its outbox, and on to its one hook.
    let backlogs: Vec<_> = (0..edges).map(|_| queued(&nats, 1, events)).collect();
    let total = edges * events;
    let _edges: Vec<Proc> = backlogs.iter().map(|(_, cfg)| daemon(cfg).0).collect();
    wait_for(
        "every edge's backlog in the stream",
        Duration::from_secs(600),
        || stream_messages(&nats) >= total as u64,
    );
    let relay_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let (_relay, _) = daemon(&relay_config(relay_dir.path(), &nats, &rx.url));
    let outbox = relay_dir.path().join("state/deployhook.sqlite");
    wait_for(
        "every event in the relay's outbox",
        Duration::from_secs(600),
        || relayed(&outbox) >= total as u64,
    );
    let committed = total as f64 / t0.elapsed().as_secs_f64();
    wait_for(
        "every relayed event at the hook",
        Duration::from_secs(600),
        || rx.len() >= total,
    );
    let delivered = rx.len() as f64 / t0.elapsed().as_secs_f64();
    res.add(
        SCENARIO,
        &format!("relay: stream → outbox, events/s ({edges} × {events} in the stream)"),
        Some(committed),
        None,
        "",
        "per s",
        "≥ 5,000",
    );
    res.add(
        SCENARIO,
        "relay: stream → its one hook, events/s",
        Some(delivered),
        None,
        "",
        "per s",
        "",
    );

    // Latency: a deploy on an edge to the relay's hook.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let site = dir.path().join("site");
    let sha = capistrano_site(&site, 1);
    let cfg = config(
        dir.path(),
        &[("shop".into(), site.clone(), "layout = \"releases\"")],
        &[("fleet".into(), nats.clone())],
    );
    let (_edge, _) = daemon(&cfg);
    std::fs::write(site.join("revisions.log"), "").unwrap_or_else(|e| panic!("{e}"));
    let mut ms = Vec::new();
    for i in 0..deploys {
        let name = format!("2026113{:07}", i + 1);
        release(&site, &name, &sha);
        if i >= 5 {
            let _ = std::fs::remove_dir_all(site.join(format!("releases/2026113{:07}", i - 4)));
        }
        std::thread::sleep(Duration::from_millis(30));
        let from = rx.len();
        let t0 = Instant::now();
        log_line(&site, &name, &sha);
        wait_for("the relay's POST", Duration::from_secs(10), || {
            rx.arrival(from, "", &name).is_some()
        });
        if let Some(t) = rx.arrival(from, "", &name) {
            ms.push(t.duration_since(t0).as_secs_f64() * 1000.0);
        }
    }
    let ms = sorted(ms);
    for (metric, p) in [("deploy → relay hook p50", 0.5), ("p99", 0.99)] {
        res.add(SCENARIO, metric, pct(&ms, p), None, "", "ms", "");
    }
    res.add(
        SCENARIO,
        "deploys measured",
        Some(ms.len() as f64),
        None,
        "",
        "count",
        &format!("{deploys}"),
    );
}
