//! Bench harness (`harness = false`). Numbers for the notes, never assertions:
//!
//! ```text
//! cargo bench --bench daemon -- idle                 inotify watches and RSS of the idle daemon
//! cargo bench --bench daemon -- latency [N]          revisions.log line -> POST received, N deploys
//! cargo bench --bench daemon -- isolation [N]        the same, beside a hook that never answers
//! cargo bench --bench daemon -- throughput [HOOKS] [EVENTS]   deliveries/s through the outbox
//! ```
//!
//! `idle` and `latency` run the real release binary against a real Capistrano-style site
//! and an in-process loopback receiver; `throughput` drives the library's outbox and hook
//! workers against the same receiver.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;

type Log = Arc<Mutex<Vec<(Instant, String, Vec<u8>)>>>;

async fn receive(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> &'static str {
    let event = headers
        .get("x-deployhook-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Instant::now(), event, body.to_vec()));
    "ok"
}

fn receiver(rt: &tokio::runtime::Runtime) -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new().fallback(receive).with_state(log.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), log)
}

fn sh(dir: &Path, script: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Jane Doe")
        .env("GIT_AUTHOR_EMAIL", "jane@example.com")
        .env("GIT_COMMITTER_NAME", "Jane Doe")
        .env("GIT_COMMITTER_EMAIL", "jane@example.com")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{script} failed");
}

/// A Capistrano site with one live release; returns the commit SHA.
fn capistrano_site(root: &Path) -> String {
    sh(
        root,
        "git init -q -b main src && echo hi > src/index.html && git -C src add . && \
         git -C src commit -q -m 'Initial' && mkdir -p site/releases && \
         git clone -q --mirror src site/repo",
    );
    let sha = String::from_utf8_lossy(
        &Command::new("git")
            .args(["-C", "site/repo", "rev-parse", "main"])
            .current_dir(root)
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
            .stdout,
    )
    .trim()
    .to_string();
    deploy(&root.join("site"), "10000000000000", &sha);
    sha
}

/// Capistrano's file operations for one release, without the final log line.
fn deploy(site: &Path, name: &str, sha: &str) {
    let dir = site.join("releases").join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("REVISION"), format!("{sha}\n")).unwrap_or_else(|e| panic!("{e}"));
    let tmp = site.join("releases/current");
    std::os::unix::fs::symlink(&dir, &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.join("current")).unwrap_or_else(|e| panic!("{e}"));
}

fn log_line(site: &Path, name: &str, sha: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(site.join("revisions.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(format!("Branch main (at {sha}) deployed as release {name} by bench\n").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
}

fn start_daemon(root: &Path, hook_url: &str, extra: &str) -> Child {
    let config = root.join("deployhook.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[[site]]\nname = \"shop\"\npath = \"{}\"\n\n\
             [[hook]]\nname = \"bench\"\nurl = \"{hook_url}\"\n{extra}",
            root.join("state").display(),
            root.join("site").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_deployhook"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        if let Some(s) = stderr {
            for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                if line.contains("daemon ready") {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("the daemon did not get ready"));
    child
}

fn idle() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let (url, _log) = receiver(&rt);
    capistrano_site(dir.path());
    let mut child = start_daemon(dir.path(), &url, "");
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    let mut watches = 0;
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) {
        for fd in fds.flatten() {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            watches += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    let threads = status
        .lines()
        .find(|l| l.starts_with("Threads"))
        .unwrap_or("Threads: ?");
    println!("idle daemon, one Capistrano site: inotify watches {watches}; {rss}; {threads}");
    let _ = child.kill();
    let _ = child.wait();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "late"
}

/// `with_hanging_hook`: a second hook whose receiver never answers (60 s timeout).
fn latency(n: usize, with_hanging_hook: bool) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let (url, log) = receiver(&rt);
    let extra = if with_hanging_hook {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        rt.spawn(async move {
            let _ = axum::serve(listener, Router::new().fallback(hang)).await;
        });
        format!(
            "\n[[hook]]\nname = \"hanging\"\nurl = \"http://{addr}/\"\ntimeout = \"60s\"\nevents = [\"StatusChanged\", \"PostDeployment\"]\n"
        )
    } else {
        String::new()
    };
    let sha = capistrano_site(dir.path());
    let mut child = start_daemon(dir.path(), &url, &extra);
    let site = dir.path().join("site");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("2{:013}", i + 1);
        deploy(&site, &name, &sha);
        // Let the daemon see the switch first, as it would in a real deploy.
        std::thread::sleep(Duration::from_millis(20));
        let before = log.lock().unwrap_or_else(|e| e.into_inner()).len();
        let t0 = Instant::now();
        log_line(&site, &name, &sha);
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let got = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .skip(before)
                .find(|(_, ev, _)| ev == "PostDeployment")
                .map(|(t, _, _)| *t);
            if let Some(t) = got {
                samples.push(t - t0);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "deploy {i}: no PostDeployment in 10 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let posts = log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, ev, _)| ev == "PostDeployment")
        .count();
    samples.sort();
    println!(
        "latency revisions.log line -> POST received{}, {n} deploys ({posts} PostDeployment): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if with_hanging_hook {
            " (beside a hook that never answers)"
        } else {
            ""
        },
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn throughput(hooks: usize, events: usize) {
    use deployhook::config::{HookConfig, SignatureKind};
    use deployhook::deliver::{self, WorkerContext};
    use deployhook::model::Timestamp;
    use deployhook::store::{NewDelivery, NewEvent, Store};

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (url, log) = receiver(&rt);
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let hook_configs: Vec<HookConfig> = (0..hooks)
        .map(|i| HookConfig {
            secret: Some(deployhook::config::Secret::new(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            )),
            signature: SignatureKind::Standard,
            retry: vec![Duration::from_secs(1)],
            ..HookConfig::new(
                &format!("h{i}"),
                url::Url::parse(&url).unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect();
    let body = br#"{"id":"2f45d28c063eb367ee76b3c9a4b844b673ca2ad6","status":"success"}"#.to_vec();
    let new_events: Vec<NewEvent> = (0..events)
        .map(|_| NewEvent {
            kind: "PostDeployment".into(),
            site: Some("shop".into()),
            status: None,
            deployment_serial: None,
            payload: body.clone(),
            deliveries: hook_configs
                .iter()
                .map(|h| NewDelivery {
                    hook: h.name.clone(),
                    body: body.clone(),
                })
                .collect(),
        })
        .collect();
    let t_commit = Instant::now();
    for e in &new_events {
        store
            .commit_events(std::slice::from_ref(e), Timestamp::now())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let commit_time = t_commit.elapsed();
    let total = hooks * events;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    let (recorder, rx) = deliver::Recorder::new();
    let recording = rt.spawn(deliver::run_recorder(store.clone(), rx));
    for h in hook_configs {
        let cx = WorkerContext {
            store: store.clone(),
            recorder: recorder.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            in_flight: in_flight.clone(),
            shutdown: stop_rx.clone(),
        };
        handles.push(rt.spawn(deliver::run_hook(h, cx)));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while log.lock().unwrap_or_else(|e| e.into_inner()).len() < total {
        assert!(Instant::now() < deadline, "not all delivered in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t0.elapsed();
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = rt.block_on(h);
    }
    drop(recorder);
    let _ = rt.block_on(recording);
    println!(
        "throughput: {hooks} hook(s) x {events} events = {total} deliveries in {:.2} s: {:.0} deliveries/s \
         (commit of {events} events, one transaction each: {:.0} events/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        events as f64 / commit_time.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("idle") => idle(),
        Some("latency") => latency(num(1, 200), false),
        Some("isolation") => latency(num(1, 200), true),
        Some("throughput") => throughput(num(1, 1), num(2, 2000)),
        _ => {
            idle();
            latency(200, false);
            latency(200, true);
            throughput(1, 2000);
            throughput(100, 50);
        }
    }
}
