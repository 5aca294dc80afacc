//! The real `deployhook` binary as a child process, in a hermetic environment, with its
//! stderr collected; on a failing test it prints the config, the temp dir and the logs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::env::{TestEnv, wait_until};

pub const BIN: &str = env!("CARGO_BIN_EXE_deployhook");

/// A command for the binary with a hermetic environment.
pub fn command(env: &TestEnv) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("TMPDIR", env.path());
    c
}

/// Runs the binary to completion.
pub fn run(env: &TestEnv, args: &[&str]) -> Output {
    command(env)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

pub struct Daemon<'a> {
    env: &'a TestEnv,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    pub config: PathBuf,
}

impl<'a> Daemon<'a> {
    /// Writes `config` and starts `deployhook run`, waiting for "daemon ready".
    pub fn start(env: &'a TestEnv, config: &str) -> Daemon<'a> {
        let path = env.join("deployhook.toml");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
        Self::start_with(env, &path, &[])
    }

    /// Starts `deployhook run` on an existing config file, with extra environment.
    pub fn start_with(env: &'a TestEnv, config: &Path, vars: &[(&str, &str)]) -> Daemon<'a> {
        Self::start_as(env, config, vars, None)
    }

    /// `start_with`, the daemon running as `uid` (its group the same number) when given.
    pub fn start_as(
        env: &'a TestEnv,
        config: &Path,
        vars: &[(&str, &str)],
        uid: Option<u32>,
    ) -> Daemon<'a> {
        Self::start_opts(env, config, vars, uid, None)
    }

    /// `start_as`, with the open files limit (soft and hard) set to `nofile` when given,
    /// as systemd's `LimitNOFILE=` would.
    pub fn start_opts(
        env: &'a TestEnv,
        config: &Path,
        vars: &[(&str, &str)],
        uid: Option<u32>,
        nofile: Option<u64>,
    ) -> Daemon<'a> {
        use std::os::unix::process::CommandExt;
        let mut cmd = command(env);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        if let Some(n) = nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; `lim` is a valid local.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd
            .args(["run", "--config"])
            .arg(config)
            .envs(vars.iter().copied())
            .env("RUST_LOG", "deployhook=debug,info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take();
        let sink = logs.clone();
        std::thread::spawn(move || {
            if let Some(stderr) = stderr {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        });
        let d = Daemon {
            env,
            child,
            logs,
            config: config.to_path_buf(),
        };
        d.wait_log("daemon ready");
        d
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn has_log(&self, needle: &str) -> bool {
        self.logs().iter().any(|l| l.contains(needle))
    }

    pub fn wait_log(&self, needle: &str) {
        wait_until(
            || self.has_log(needle),
            Duration::from_secs(10),
            || format!("a log line containing {needle:?}"),
        );
    }

    /// The TCP port the daemon's API bound (a config may say port 0), from the
    /// `api.address` file it writes in its state directory.
    pub fn api_port(&self) -> u16 {
        let path = self.state_dir().join("api.address");
        let mut port = None;
        super::env::wait_until(
            || {
                port = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok())
                    .map(|a| a.port());
                port.is_some()
            },
            std::time::Duration::from_secs(20),
            || format!("the API's address in {}: {:?}", path.display(), self.logs()),
        );
        port.unwrap_or_default()
    }

    /// The daemon's state directory, as its config file says.
    pub fn state_dir(&self) -> PathBuf {
        std::fs::read_to_string(&self.config)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| {
                t.get("daemon")?
                    .get("state_dir")?
                    .as_str()
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| panic!("no daemon.state_dir in {}", self.config.display()))
    }

    /// A series of `/metrics` (`name{labels}` as printed), 0 when it is not there; the
    /// daemon needs an `[api]`.
    pub fn metric(&self, series: &str) -> f64 {
        let text = super::api::Client::tcp(self.api_port())
            .get("/metrics")
            .text();
        text.lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(name, _)| *name == series)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Runs a command of the CLI with this daemon's config: whether it succeeded, and
    /// everything it printed (stdout, then stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let cfg = self.config.to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &cfg]);
        let out = run(self.env, &all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// What `deployhook status` prints about the running daemon (stdout and stderr).
    pub fn status(&self) -> String {
        let o = run(
            self.env,
            &["status", "--config", &self.config.to_string_lossy()],
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by number (SIGTERM = 15, SIGHUP = 1).
    pub fn signal(&self, sig: i32) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal(15);
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// SIGTERM, and the exit code, which must come within `limit`.
    pub fn stop_within(mut self, limit: Duration) -> Option<i32> {
        self.signal(15);
        let mut code = None;
        wait_until(
            || match self.child.try_wait() {
                Ok(Some(s)) => {
                    code = s.code();
                    true
                }
                _ => false,
            },
            limit,
            || "the daemon to exit after SIGTERM".to_string(),
        );
        code
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- config {}\n{}",
                self.config.display(),
                std::fs::read_to_string(&self.config).unwrap_or_default()
            );
            eprintln!("---- temp dir\n{}", self.env.listing());
            eprintln!("---- daemon stderr\n{}", self.logs().join("\n"));
        }
    }
}
