//! The five scenarios: latency, footprint, scale, fan-out, backlog.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::results::{Results, pct, sorted};

// ---- scenarios ----------------------------------------------------------------------------

/// Completing write → receiver read, for deployhook, the `inotifywait`+`curl` loop and a
/// 1 s polling loop, all watching the same site in the same run.
pub fn latency(res: &mut Results, n: usize) {
    // Both on the same write, as before: the loop's `bash`, `tail` and `curl` run on the
    // same two cores at the same moment as the daemon, so each slows the other.
    latency_run(res, n, false);
    // Each alone: the loop watches its own site's log, written after the daemon's POST
    // has arrived, so neither competes with the other for the CPU.
    latency_run(res, n, true);
}

fn latency_run(res: &mut Results, n: usize, apart: bool) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let site = dir.path().join("site");
    let sha = capistrano_site(&site, 1);
    // The loop's own site when apart (the daemon does not watch it).
    let other = dir.path().join("other");
    if apart {
        std::fs::create_dir_all(&other).unwrap_or_else(|e| panic!("{e}"));
    }
    let rx = Receiver::start();
    let cfg = config(
        dir.path(),
        &[("shop".into(), site.clone(), "layout = \"releases\"")],
        &[("bench".into(), rx.url.clone())],
    );
    let (_d, _) = daemon(&cfg);
    let log = site.join("revisions.log");
    std::fs::write(&log, "").unwrap_or_else(|e| panic!("{e}"));
    let their_log = if apart {
        let l = other.join("revisions.log");
        std::fs::write(&l, "").unwrap_or_else(|e| panic!("{e}"));
        l
    } else {
        log.clone()
    };
    let inotify = (have("inotifywait") && have("curl")).then(|| {
        shell(&format!(
            "inotifywait -m -q -e close_write --format %w%f {} | while read f; do \
             tail -n 1 \"$f\" | curl -s -o /dev/null -H 'x-baseline: inotify' --data-binary @- {}; done",
            their_log.display(),
            rx.url
        ))
    });
    let poll = (have("curl") && !apart).then(|| {
        shell(&format!(
            "last=$(stat -c %s {f}); while sleep 1; do n=$(stat -c %s {f}); if [ \"$n\" != \"$last\" ]; then \
             last=$n; tail -n 1 {f} | curl -s -o /dev/null -H 'x-baseline: poll' --data-binary @- {u}; fi; done",
            f = log.display(),
            u = rx.url
        ))
    });
    std::thread::sleep(Duration::from_millis(500));
    let (mut ours, mut theirs, mut polled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let name = format!("2026112{:07}", i + 1);
        release(&site, &name, &sha);
        // Capistrano's cleanup keeps the newest five releases (`keep_releases`).
        if i >= 5 {
            let old = site.join(format!("releases/2026112{:07}", i - 4));
            let _ = std::fs::remove_dir_all(old);
        }
        // Let every watcher see the switch before the completing write.
        std::thread::sleep(Duration::from_millis(30));
        let from = rx.len();
        let t0 = Instant::now();
        log_line(&site, &name, &sha);
        let got = |who: &str| rx.arrival(from, who, &name);
        wait_for("deployhook's POST", Duration::from_secs(10), || {
            got("").is_some()
        });
        let ms = |t: Option<Instant>, t0: Instant| {
            t.map(|t| t.duration_since(t0).as_secs_f64() * 1000.0)
        };
        ours.extend(ms(got(""), t0));
        let (from, t0) = if apart && inotify.is_some() {
            // The daemon is done; now the loop's own deploy.
            std::thread::sleep(Duration::from_millis(30));
            let from = rx.len();
            let t0 = Instant::now();
            log_line(&other, &name, &sha);
            (from, t0)
        } else {
            (from, t0)
        };
        let got = |who: &str| rx.arrival(from, who, &name);
        if inotify.is_some() {
            wait_for(
                "the inotifywait loop's POST",
                Duration::from_secs(10),
                || got("inotify").is_some(),
            );
        }
        // The polling loop is slow: sample it on every tenth deploy only.
        if poll.is_some() && i % 10 == 0 {
            wait_for("the polling loop's POST", Duration::from_secs(5), || {
                got("poll").is_some()
            });
        }
        theirs.extend(ms(got("inotify"), t0));
        if poll.is_some() && i % 10 == 0 {
            polled.extend(ms(got("poll"), t0));
        }
    }
    let (ours, theirs, polled) = (sorted(ours), sorted(theirs), sorted(polled));
    let base = if inotify.is_some() {
        "inotifywait+curl"
    } else {
        "inotifywait+curl: SKIPPED (install inotify-tools and curl)"
    };
    let scen = if apart {
        "latency, each alone (revisions.log line → POST)"
    } else {
        "latency, same write (revisions.log line → POST)"
    };
    for (label, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        let target = match label {
            "p50" => "≤ 1/5 of the baseline",
            "p99" => "≤ 5 ms",
            _ => "",
        };
        res.add(
            scen,
            label,
            pct(&ours, p),
            pct(&theirs, p),
            base,
            "ms",
            target,
        );
    }
    if !apart {
        res.add(
            scen,
            "p50",
            None,
            pct(&polled, 0.5),
            "1 s polling loop",
            "ms",
            "",
        );
    }
    res.add(
        scen,
        "deploys",
        Some(ours.len() as f64),
        Some(theirs.len() as f64),
        base,
        "count",
        "",
    );
}

/// Idle cost: 1, 10 and 100 sites that have each deployed once, idle 60 s, side by side
/// with an `inotifywait` watching the same directories.
pub fn footprint(res: &mut Results, idle: Duration) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut runs = Vec::new();
    for count in [1usize, 10, 100] {
        let base = dir.path().join(format!("n{count}"));
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
        let rx = Receiver::start();
        let mut sites = Vec::new();
        let mut shas = Vec::new();
        for i in 0..count {
            let root = base.join(format!("site{i}"));
            shas.push(capistrano_site(&root, 1));
            sites.push((format!("s{i}"), root, "layout = \"releases\""));
        }
        let cfg = config(&base, &sites, &[("bench".into(), rx.url.clone())]);
        let (d, _) = daemon(&cfg);
        for (i, (_, root, _)) in sites.iter().enumerate() {
            release(root, "20261120000000", &shas[i]);
            log_line(root, "20261120000000", &shas[i]);
        }
        wait_for("every first deploy", Duration::from_secs(60), || {
            rx.arrival(0, "", "20261120000000").is_some() && rx.len() >= count
        });
        std::thread::sleep(Duration::from_secs(3));
        let watched: Vec<String> = sites
            .iter()
            .flat_map(|(_, r, _)| {
                [
                    r.display().to_string(),
                    r.join("releases").display().to_string(),
                ]
            })
            .collect();
        let baseline = have("inotifywait").then(|| {
            shell(&format!(
                "inotifywait -m -q -e close_write,create,moved_to,delete {} > /dev/null",
                watched.join(" ")
            ))
        });
        runs.push((count, d, rx, baseline));
    }
    std::thread::sleep(Duration::from_millis(500));
    let start: Vec<(f64, u64, Option<f64>)> = runs
        .iter()
        .map(|(_, d, _, b)| {
            (
                cpu_ms(d.pid()),
                ctx_switches(d.pid()),
                b.as_ref().and_then(|b| b.as_ref()).map(|b| cpu_ms(b.pid())),
            )
        })
        .collect();
    std::thread::sleep(idle);
    let minutes = idle.as_secs_f64() / 60.0;
    for ((count, d, _rx, b), (cpu0, ctx0, bcpu0)) in runs.iter().zip(start) {
        let cpu = (cpu_ms(d.pid()) - cpu0) / minutes;
        let ctx = (ctx_switches(d.pid()) - ctx0) as f64 / minutes;
        let bpid = b.as_ref().and_then(|b| b.as_ref()).map(Proc::pid);
        let bcpu = bpid.zip(bcpu0).map(|(p, c0)| (cpu_ms(p) - c0) / minutes);
        let name = if bpid.is_some() {
            "inotifywait"
        } else {
            "inotifywait: SKIPPED (install inotify-tools)"
        };
        let scen = format!("footprint, {count} site(s), idle after a deploy");
        let cpu_target = if *count == 1 {
            "≤ 10 ms/min"
        } else if *count == 100 {
            "≤ 100 ms/min (1 per site)"
        } else {
            ""
        };
        res.add(
            &scen,
            "CPU",
            Some(cpu),
            bcpu,
            name,
            "ms per minute",
            cpu_target,
        );
        let rss_target = match count {
            1 => "≤ 10 MB",
            100 => "≤ 16 MB",
            _ => "",
        };
        res.add(
            &scen,
            "RSS",
            Some(status_kib(d.pid(), "VmRSS:") as f64 / 1024.0),
            bpid.map(|p| status_kib(p, "VmRSS:") as f64 / 1024.0),
            name,
            "MB",
            rss_target,
        );
        res.add(
            &scen,
            "context switches",
            Some(ctx),
            None,
            "",
            "per minute",
            "",
        );
    }
}

/// One large site: 100 releases × 2,000 files, a 50,000-commit mirror, a 100,000-line
/// `revisions.log`. Time to READY, RSS, watches; then a deploy's latency against a small
/// site's, same run.
pub fn scale(res: &mut Results) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let big = dir.path().join("big");
    let sha = capistrano_site(&big, 50_000);
    for r in 0..100 {
        let rel = big.join(format!("releases/2025{r:010}"));
        std::fs::create_dir_all(rel.join("app")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(rel.join("REVISION"), format!("{sha}\n")).unwrap_or_else(|e| panic!("{e}"));
        for f in 0..2_000 {
            std::fs::write(rel.join(format!("app/f{f}.txt")), "x")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(big.join("revisions.log")).unwrap_or_else(|e| panic!("{e}")),
        );
        for i in 0..100_000 {
            let _ = writeln!(
                f,
                "Branch main (at {sha}) deployed as release 2024{i:010} by bench"
            );
        }
    }
    let small = dir.path().join("small");
    let small_sha = capistrano_site(&small, 1);
    let rx = Receiver::start();
    let cfg = config(
        dir.path(),
        &[
            ("big".into(), big.clone(), "layout = \"releases\""),
            ("small".into(), small.clone(), "layout = \"releases\""),
        ],
        &[("bench".into(), rx.url.clone())],
    );
    let (d, ready) = daemon(&cfg);
    res.add(
        "scale (100 releases × 2,000 files, 50,000 commits, 100,000-line log)",
        "time to READY",
        Some(ready.as_secs_f64() * 1000.0),
        None,
        "",
        "ms",
        "≤ 1000 ms",
    );
    let lat = |root: &Path, sha: &str, tag: &str| {
        let mut v = Vec::new();
        for i in 0..20 {
            let name = format!("2026{tag}{i:08}");
            release(root, &name, sha);
            std::thread::sleep(Duration::from_millis(30));
            let from = rx.len();
            let t0 = Instant::now();
            log_line(root, &name, sha);
            wait_for("a POST", Duration::from_secs(10), || {
                rx.arrival(from, "", &name).is_some()
            });
            if let Some(t) = rx.arrival(from, "", &name) {
                v.push(t.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        sorted(v)
    };
    let big_lat = lat(&big, &sha, "11");
    let small_lat = lat(&small, &small_sha, "22");
    let scen = "scale (100 releases × 2,000 files, 50,000 commits, 100,000-line log)";
    res.add(
        scen,
        "RSS",
        Some(status_kib(d.pid(), "VmRSS:") as f64 / 1024.0),
        None,
        "",
        "MB",
        "",
    );
    res.add(
        scen,
        "inotify watches (2 sites)",
        Some(inotify_watches(d.pid()) as f64),
        None,
        "",
        "count",
        "≤ 10 per site",
    );
    res.add(
        scen,
        "deploy latency p50, large vs small site",
        pct(&big_lat, 0.5),
        pct(&small_lat, 0.5),
        "the small site, same run",
        "ms",
        "≤ 1.2 × the small site's",
    );
}

/// Prefills the outbox of `state` with `events` events for each of `hooks` hooks (one
/// delivery per hook and event; the body says which).
pub fn prefill(state: &Path, hooks: usize, events: usize) {
    use deployhook::model::Timestamp;
    use deployhook::store::{NewDelivery, NewEvent, Store};
    let store = Store::open(state).unwrap_or_else(|e| panic!("{e}"));
    let batch: Vec<NewEvent> = (0..events)
        .map(|n| NewEvent {
            kind: "PostDeployment".into(),
            site: Some("shop".into()),
            status: None,
            deployment_serial: None,
            payload: Vec::new(),
            chains: Vec::new(),
            deliveries: (0..hooks)
                .map(|h| {
                    NewDelivery::new(
                        &format!("h{h}"),
                        format!("{{\"hook\":{h},\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200))
                            .into_bytes(),
                    )
                })
                .collect(),
        })
        .collect();
    for chunk in batch.chunks(100) {
        store
            .commit_events(chunk, Timestamp::now())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The row that says every delivery arrived once and in per-hook order.
pub fn add_delivered(res: &mut Results, scen: &str, rx: &Receiver, hooks: usize, total: usize) {
    let (unique, ordered) = per_hook_order_kept(rx, hooks);
    res.add(
        scen,
        "delivered once each, per-hook order kept",
        Some(unique as f64),
        None,
        if ordered {
            "order kept"
        } else {
            "ORDER BROKEN"
        },
        "count",
        &format!("{total}"),
    );
}

/// Parses the receiver's log: deliveries per hook in arrival order.
pub fn per_hook_order_kept(rx: &Receiver, hooks: usize) -> (usize, bool) {
    let log = rx.log.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = vec![-1i64; hooks];
    let mut ok = true;
    let mut seen = std::collections::HashSet::new();
    for (_, _, body) in log.iter() {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let (Some(h), Some(n)) = (v["hook"].as_u64(), v["n"].as_i64()) else {
            continue;
        };
        let h = h as usize;
        if h < hooks {
            if n < last[h] {
                ok = false;
            }
            last[h] = last[h].max(n);
            seen.insert((h, n));
        }
    }
    (seen.len(), ok)
}

pub fn attempt_latencies(state: &Path) -> Vec<f64> {
    let conn = rusqlite::Connection::open(state.join("deployhook.sqlite"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stmt = conn
        .prepare("SELECT duration_us FROM attempts")
        .unwrap_or_else(|e| panic!("{e}"));
    let v: Vec<f64> = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .map(|rows| rows.flatten().map(|us| us as f64 / 1000.0).collect())
        .unwrap_or_default();
    sorted(v)
}

/// A config with one quiet site and `hooks` hooks to `url`, with `events` deliveries
/// already queued for each.
pub fn queued(url: &str, hooks: usize, events: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap_or_else(|e| panic!("{e}"));
    let cfg = config(
        dir.path(),
        &[("shop".into(), site, "layout = \"marker\"")],
        &hooks_of(url, hooks),
    );
    prefill(&dir.path().join("state"), hooks, events);
    (dir, cfg)
}

pub fn hooks_of(url: &str, n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("h{i}"), url.to_string())).collect()
}

/// 100 hooks × 1,000 events through the real daemon, and the raw ceiling: the same
/// receiver hit by plain keep-alive reqwest clients (100 at once), no outbox.
pub fn fanout(res: &mut Results, hooks: usize, events: usize) {
    let rx = Receiver::start();
    let (dir, cfg) = queued(&rx.url, hooks, events);
    let total = hooks * events;
    let t0 = Instant::now();
    let (_d, _) = daemon(&cfg);
    wait_for("every delivery", Duration::from_secs(300), || {
        rx.len() >= total
    });
    let secs = t0.elapsed().as_secs_f64();
    let rate = rx.len() as f64 / secs;
    // The raw ceiling.
    let ceiling = {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let url = rx.url.clone();
        deployhook::deliver::init_tls();
        let t0 = Instant::now();
        rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for h in 0..hooks {
                let url = url.clone();
                set.spawn(async move {
                    let client = reqwest::Client::new();
                    for n in 0..events {
                        let _ = client
                            .post(&url)
                            .header("x-baseline", "raw")
                            .body(format!("{{\"raw\":{h},\"n\":{n}}}"))
                            .send()
                            .await;
                    }
                });
            }
            while set.join_next().await.is_some() {}
        });
        total as f64 / t0.elapsed().as_secs_f64()
    };
    let lat = attempt_latencies(&dir.path().join("state"));
    let scen = format!("fan-out ({hooks} hooks × {events} events)");
    res.add(
        &scen,
        "deliveries/s",
        Some(rate),
        Some(ceiling),
        "raw keep-alive reqwest, no outbox",
        "per s",
        "≥ 5,000 and ≥ 0.5 × raw",
    );
    res.add(
        &scen,
        "attempt latency p50",
        pct(&lat, 0.5),
        None,
        "",
        "ms",
        "",
    );
    res.add(
        &scen,
        "attempt latency p99",
        pct(&lat, 0.99),
        None,
        "",
        "ms",
        "",
    );
    add_delivered(res, &scen, &rx, hooks, total);
}

/// The receiver down with 100,000 deliveries queued: peak RSS; then it comes back: the
/// drain rate; nothing lost, per-hook order kept.
pub fn backlog(res: &mut Results, hooks: usize, events: usize) {
    // A free port, closed for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let (_dir, cfg) = queued(&format!("http://127.0.0.1:{port}/hook"), hooks, events);
    let (d, _) = daemon(&cfg);
    // Let every worker fail against the closed port for a while.
    std::thread::sleep(Duration::from_secs(3));
    let peak_down = status_kib(d.pid(), "VmHWM:") as f64 / 1024.0;
    let rx = Receiver::start_on(&format!("127.0.0.1:{port}"));
    let t0 = Instant::now();
    let total = hooks * events;
    wait_for("the backlog to drain", Duration::from_secs(300), || {
        rx.len() >= total
    });
    let secs = t0.elapsed().as_secs_f64();
    let scen = format!("backlog ({total} queued, receiver down, then back)");
    res.add(
        &scen,
        "peak RSS",
        Some(peak_down.max(status_kib(d.pid(), "VmHWM:") as f64 / 1024.0)),
        None,
        "",
        "MB",
        "≤ 64 MB",
    );
    res.add(
        &scen,
        "drain rate",
        Some(rx.len() as f64 / secs),
        None,
        "",
        "per s",
        "≥ 2,000",
    );
    add_delivered(res, &scen, &rx, hooks, total);
}
