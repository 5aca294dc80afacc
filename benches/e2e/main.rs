//! End-to-end benchmarks (`harness = false`): the real release binary, real files and
//! git, a loopback receiver; each scenario beside the baseline operators use today, in
//! the same run. Prints one table and writes `target/bench/results.json`.
//!
//! ```text
//! cargo bench --bench e2e                  every scenario
//! cargo bench --bench e2e -- latency       one (latency, footprint, idlehooks, scale, fanout, backlog, fleet)
//! ```
//!
//! Installs nothing: a baseline whose tool is missing (`inotifywait` from inotify-tools,
//! `curl`) is skipped, and the table says so. Numbers, never assertions.

mod fleet;
mod harness;
mod idle;
mod results;
mod scenarios;

use std::time::{Duration, Instant};

use results::Results;
use scenarios::{backlog, fanout, footprint, latency, scale};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = args.is_empty();
    let want = |s: &str| all || args.iter().any(|a| a == s);
    let mut res = Results::default();
    let t0 = Instant::now();
    if want("latency") {
        // E2E_DEPLOYS shortens it for a quick look (the table says how many).
        let n = std::env::var("E2E_DEPLOYS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        eprintln!("latency: {n} deploys, both on the same write, then each alone…");
        latency(&mut res, n);
    }
    if want("footprint") {
        eprintln!("footprint: 1, 10 and 100 sites idle 60 s…");
        // E2E_IDLE_SECS shortens the idle window for a quick look (the table says 60).
        let idle = std::env::var("E2E_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        footprint(&mut res, Duration::from_secs(idle));
    }
    if want("idlehooks") {
        eprintln!("idle hooks: 1 site, 1, 10 and 100 hooks idle 60 s…");
        let idle = std::env::var("E2E_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        idle::idle_hooks(&mut res, Duration::from_secs(idle));
    }
    if want("scale") {
        eprintln!("scale: building a large site…");
        scale(&mut res);
    }
    if want("fanout") {
        eprintln!("fan-out: 100 hooks × 1,000 events…");
        fanout(&mut res, 100, 1_000);
    }
    if want("backlog") {
        eprintln!("backlog: 100,000 deliveries queued…");
        backlog(&mut res, 100, 1_000);
    }
    if want("fleet") {
        eprintln!("fleet: 3 edges × 1,000 events through NATS and a relay, then 100 deploys…");
        fleet::fleet(&mut res, 3, 1_000, 100);
    }
    res.print();
    res.write();
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name\t: ").map(str::to_string))
        .unwrap_or_default();
    println!(
        "machine: {} cores, {machine}; scenarios took {:.0} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        t0.elapsed().as_secs_f64()
    );
}
