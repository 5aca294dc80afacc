//! Idle cost by number of hooks (issue 27): one site deployed once to 1, 10 and 100
//! hooks, then idle: CPU, context switches and RSS per minute. Workers sleep until woken
//! (a commit, a retry's time, SIGUSR1, the resync), so the cost must not grow with hooks.

use std::time::Duration;

use crate::harness::*;
use crate::results::Results;
use crate::scenarios::hooks_of;

pub fn idle_hooks(res: &mut Results, idle: Duration) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut runs = Vec::new();
    for count in [1usize, 10, 100] {
        let base = dir.path().join(format!("h{count}"));
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
        let rx = Receiver::start();
        let root = base.join("site");
        let sha = capistrano_site(&root, 1);
        let sites = [("s".to_string(), root.clone(), "layout = \"releases\"")];
        let cfg = config(&base, &sites, &hooks_of(&rx.url, count));
        let (d, _) = daemon(&cfg);
        release(&root, "20261120000000", &sha);
        log_line(&root, "20261120000000", &sha);
        wait_for("the deploy at every hook", Duration::from_secs(60), || {
            rx.len() >= count
        });
        runs.push((count, d, rx));
    }
    std::thread::sleep(Duration::from_secs(2));
    let start: Vec<(f64, u64)> = runs
        .iter()
        .map(|(_, d, _)| (cpu_ms(d.pid()), ctx_switches(d.pid())))
        .collect();
    std::thread::sleep(idle);
    let minutes = idle.as_secs_f64() / 60.0;
    for ((count, d, _rx), (cpu0, ctx0)) in runs.iter().zip(start) {
        let scen = format!("idle, 1 site, {count} hook(s), after a deploy");
        let cpu = (cpu_ms(d.pid()) - cpu0) / minutes;
        let ctx = (ctx_switches(d.pid()) - ctx0) as f64 / minutes;
        let target = if *count == 100 { "as with 1 hook" } else { "" };
        res.add(&scen, "CPU", Some(cpu), None, "", "ms per minute", target);
        res.add(
            &scen,
            "context switches",
            Some(ctx),
            None,
            "",
            "per minute",
            "",
        );
        res.add(
            &scen,
            "RSS",
            Some(status_kib(d.pid(), "VmRSS:") as f64 / 1024.0),
            None,
            "",
            "MB",
            "",
        );
    }
}
