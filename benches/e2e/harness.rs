//! The pieces every scenario uses: the loopback receiver, the daemon and baseline
//! processes and what `/proc` says of them, Capistrano sites, configs.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;

pub const BIN: &str = env!("CARGO_BIN_EXE_deployhook");

// ---- the receiver ------------------------------------------------------------------------

/// (arrival, `x-baseline` header or "", body)
pub type Log = Arc<Mutex<Vec<(Instant, String, Vec<u8>)>>>;

async fn receive(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> &'static str {
    let who = headers
        .get("x-baseline")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Instant::now(), who, body.to_vec()));
    "ok"
}

pub struct Receiver {
    pub url: String,
    pub log: Log,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let log: Log = Arc::default();
        let app = Router::new().fallback(receive).with_state(log.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            log,
            _rt: rt,
        }
    }

    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Arrival of the first request after index `from` whose body contains `needle`
    /// and that came from `who` ("" for deployhook).
    pub fn arrival(&self, from: usize, who: &str, needle: &str) -> Option<Instant> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().skip(from).find_map(|(t, w, b)| {
            (w == who && String::from_utf8_lossy(b).contains(needle)).then_some(*t)
        })
    }
}

pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    eprintln!("  (gave up waiting for {what})");
    false
}

// ---- processes ----------------------------------------------------------------------------

pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `deployhook run` on `config`; returns it once ready, and how long that took.
pub fn daemon(config: &Path) -> (Proc, Duration) {
    let t0 = Instant::now();
    // E2E_DAEMON_LOG=FILE keeps the daemon's debug log there (for a profile).
    let log_to = std::env::var_os("E2E_DAEMON_LOG");
    let level = if log_to.is_some() {
        "warn,deployhook=debug"
    } else {
        "warn,deployhook=info"
    };
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", level)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut keep = log_to.and_then(|p| std::fs::File::create(p).ok());
        if let Some(s) = stderr {
            for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                if let Some(f) = keep.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("daemon ready") {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("the daemon did not get ready"));
    (Proc { child }, t0.elapsed())
}

pub fn shell(script: &str) -> Option<Proc> {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(|child| Proc { child })
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// CPU time (user + system, all threads and waited-for children) of a process tree's
/// root and its direct children, in ms.
pub fn cpu_ms(pid: u32) -> f64 {
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    let tick = 100.0; // USER_HZ
    pids.iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = after.split_whitespace().collect();
            // fields after the name: state=0 … utime=11 stime=12 cutime=13 cstime=14
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (n(11) + n(12) + n(13) + n(14)) * 1000.0 / tick
        })
        .sum()
}

pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn ctx_switches(pid: u32) -> u64 {
    ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
        .iter()
        .map(|k| status_kib(pid, k))
        .sum()
}

pub fn inotify_watches(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .map(|fd| {
            std::fs::read_to_string(fd.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

// ---- sites --------------------------------------------------------------------------------

pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Jane Doe")
        .env("GIT_AUTHOR_EMAIL", "jane@example.com")
        .env("GIT_COMMITTER_NAME", "Jane Doe")
        .env("GIT_COMMITTER_EMAIL", "jane@example.com")
        .output()
        .unwrap_or_else(|e| panic!("git: {e}"));
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A Capistrano site at `root` (a mirror with `commits` commits made by fast-import, one
/// live release); returns the head SHA.
pub fn capistrano_site(root: &Path, commits: usize) -> String {
    std::fs::create_dir_all(root.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    git(root, &["init", "-q", "--bare", "repo"]);
    let mut stream = String::new();
    for i in 1..=commits {
        let content = format!("v{i}\n");
        let message = format!("commit {i}");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Jane Doe <jane@example.com> {} +0000\n\
             data {}\n{message}\nM 100644 inline index.html\ndata {}\n{content}\n",
            1_700_000_000 + i,
            message.len(),
            content.len()
        ));
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(root.join("repo"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(stream.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(child.wait().is_ok_and(|s| s.success()), "fast-import");
    let sha = git(&root.join("repo"), &["rev-parse", "main"]);
    release(root, "10000000000000", &sha);
    sha
}

/// Capistrano's file operations for one release, without the final log line.
pub fn release(root: &Path, name: &str, sha: &str) {
    let dir = root.join("releases").join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("REVISION"), format!("{sha}\n")).unwrap_or_else(|e| panic!("{e}"));
    let tmp = root.join("releases/current");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&dir, &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, root.join("current")).unwrap_or_else(|e| panic!("{e}"));
}

/// The completing write of a Capistrano deploy: one appended `revisions.log` line.
pub fn log_line(root: &Path, name: &str, sha: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("revisions.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(format!("Branch main (at {sha}) deployed as release {name} by bench\n").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
}

pub fn config(
    dir: &Path,
    sites: &[(String, PathBuf, &str)],
    hooks: &[(String, String)],
) -> PathBuf {
    let mut s = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"bench\"\n",
        dir.join("state").display()
    );
    for (name, path, extra) in sites {
        s.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\npath = \"{}\"\n{extra}\n",
            path.display()
        ));
    }
    for (name, url) in hooks {
        s.push_str(&format!(
            "\n[[hook]]\nname = \"{name}\"\nurl = \"{url}\"\nretry = [\"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\"]\n"
        ));
    }
    let path = dir.join("deployhook.toml");
    std::fs::write(&path, s).unwrap_or_else(|e| panic!("{e}"));
    path
}
