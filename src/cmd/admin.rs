//! Operator commands that read (and, for `redeliver`, `hooks test` and `hooks enable`,
//! write) the outbox directly: `status`, `deliveries list|show|redeliver`,
//! `hooks list|test|enable`. They work whether or not the daemon runs; a delivery they
//! queue is sent by the running daemon within seconds, or at its next start.

use std::io::Write;

/// Writes one line with everything in it escaped: names, ids, paths, errors and answers
/// come from sites, repositories and receivers, and must not drive the terminal.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        let _ = writeln!($out, "{}", $crate::telemetry::escape(&format!($($arg)*)));
    };
}
pub(crate) use say;

use crate::config::{self, Config};
use crate::deliver;
use crate::model::Timestamp;
use crate::store::{LOCK_FILE, Outcome, Store};
use crate::telemetry::{chain, escape};

/// An error to print and exit 1 with.
#[derive(Debug)]
pub struct Failed(pub String);

impl<E: std::error::Error> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed(chain(&e))
    }
}

type Result<T> = std::result::Result<T, Failed>;

/// The config, for these commands and those beside this file (`hooks add`, `publish`).
pub fn load(path: &std::path::Path) -> Result<Config> {
    Ok(config::load(path)?)
}

/// The largest document `publish` sends (the API's limit).
const MAX_INPUT: u64 = crate::api::MAX_BODY as u64;

/// A file's content, or standard input's for `-`, at most the API's body limit.
pub fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| Failed(format!("cannot read {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Failed(format!(
            "{} is larger than the API's limit of {MAX_INPUT} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Whether a daemon holds the state directory's lock.
pub fn daemon_running(config: &Config) -> bool {
    lock_held(&config.daemon.state_dir)
}

/// Whether a daemon holds the lock of `state_dir`.
pub(crate) fn lock_held(state_dir: &std::path::Path) -> bool {
    let Ok(f) = std::fs::File::open(state_dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

/// The pid of the daemon holding the state directory's lock (it writes it there).
pub fn daemon_pid(config: &Config) -> Option<i32> {
    if !daemon_running(config) {
        return None;
    }
    let text = std::fs::read_to_string(config.daemon.state_dir.join(LOCK_FILE)).ok()?;
    text.trim().parse().ok().filter(|p| *p > 0)
}

/// Tells the running daemon that the outbox was written from here (SIGUSR1): its
/// workers look at their queues now instead of at the next resync. Says, for the
/// operator, when what was queued goes out.
pub fn poke_daemon(config: &Config) -> String {
    let Some(pid) = daemon_pid(config) else {
        return "the daemon is not running: sent when it starts".to_string();
    };
    // SAFETY: kill(2) with a pid read from the daemon's lock file; nothing is shared.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } == 0 {
        return "the running daemon sends now".to_string();
    }
    let why = std::io::Error::last_os_error();
    format!(
        "the running daemon (pid {pid}) could not be told ({why}; run this as its user or root): sent at its next resync, within {}",
        crate::model::format_duration(config.daemon.resync)
    )
}

/// How long `deployhook reload` waits for the daemon's verdict.
const RELOAD_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `deployhook reload`: validates the config (all but the systemd credentials, which
/// `ExecReload=` cannot read), asks the daemon to load it (SIGHUP), and waits for the
/// daemon's verdict, so `systemctl reload` fails visibly on a config the daemon rejects.
pub fn reload(path: &std::path::Path, pid: Option<i32>, out: &mut impl Write) -> Result<()> {
    use crate::daemon::verdict;
    let config = crate::config::load_without_credentials(path)?;
    let pid = match pid {
        Some(p) if p > 0 => p,
        Some(p) => return Err(Failed(format!("--pid {p} is not a process id"))),
        None => daemon_pid(&config).ok_or_else(|| {
            Failed(format!(
                "no running daemon holds {}; nothing to reload (start it, or pass --pid)",
                config.daemon.state_dir.display()
            ))
        })?,
    };
    let dir = &config.daemon.state_dir;
    let before = verdict::read(dir);
    // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failed(format!("cannot signal the daemon (pid {pid}): {e}")));
    }
    let before = match before {
        Ok(v) => v,
        Err(e) => {
            say!(
                out,
                "config {}: valid; daemon (pid {pid}) asked to reload (its answer in {} cannot be read: {e}; see its log)",
                path.display(),
                dir.join(verdict::FILE).display()
            );
            return Ok(());
        }
    };
    let deadline = std::time::Instant::now() + RELOAD_ANSWER_WAIT;
    loop {
        let now = verdict::read(dir).ok().flatten();
        if now.is_some() && now != before {
            return match now.and_then(|v| v.rejected) {
                None => {
                    say!(
                        out,
                        "config {}: valid; daemon (pid {pid}) reloaded it",
                        path.display()
                    );
                    Ok(())
                }
                Some(errors) => Err(Failed(format!(
                    "the daemon (pid {pid}) rejected the config and keeps running the old one: {errors}"
                ))),
            };
        }
        if std::time::Instant::now() >= deadline {
            return Err(Failed(format!(
                "daemon (pid {pid}) was asked to reload but did not answer within {} s; see its log",
                RELOAD_ANSWER_WAIT.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn age(t: Timestamp, now: Timestamp) -> String {
    let d = now.since(t);
    crate::model::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string() + " ago"
}

/// `deployhook status`.
/// `deployhook status`; returns whether the daemon is running.
///
/// It reports the running daemon: a config file with errors on disk (the daemon keeps
/// running the config it has) is said separately, and is no failure while the daemon
/// runs — a typo must not make a healthy daemon's health check fail.
pub fn status(path: &std::path::Path, out: &mut impl Write) -> Result<bool> {
    let (config, file_error) = match load(path) {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e)),
    };
    let state_dir = config.as_ref().map_or_else(
        || config::state_dir_of(path),
        |c| c.daemon.state_dir.clone(),
    );
    let is_running = lock_held(&state_dir);
    let Some(file_error) = file_error else {
        return status_of(config.as_ref(), &state_dir, is_running, out);
    };
    if !is_running {
        return Err(file_error);
    }
    let running = status_of(None, &state_dir, true, out)?;
    say!(
        out,
        "config: {} has errors; the running daemon keeps the config it loaded last (fix the file, then `deployhook reload`):",
        path.display()
    );
    for line in file_error.0.lines() {
        say!(out, "  {}", escape(line));
    }
    Ok(running)
}

/// What `status` says of the daemon whose state is in `state_dir`: of `config`'s sites
/// and hooks, or (the file on disk being broken) of every site the outbox knows.
fn status_of(
    config: Option<&Config>,
    state_dir: &std::path::Path,
    is_running: bool,
    out: &mut impl Write,
) -> Result<bool> {
    let store = Store::open_read_only(state_dir)?;
    let now = Timestamp::now();
    let running = if is_running { "running" } else { "not running" };
    say!(out, "daemon: {running}  (state {})", store.path().display());
    if is_running
        && let Ok(addr) =
            std::fs::read_to_string(state_dir.join(crate::daemon::listener::ADDRESS_FILE))
    {
        say!(out, "api: listening on {}", escape(addr.trim()));
    }
    let states = store.site_states()?;
    let names: Vec<String> = match config {
        Some(c) => c.sites.iter().map(|s| s.name.clone()).collect(),
        None => states.iter().map(|(n, _, _)| n.clone()).collect(),
    };
    for name in &names {
        let state = states
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, s, _)| s.clone());
        let mut line = format!("site {name}: ");
        match state.as_ref().and_then(|s| s.live.as_ref()) {
            // A git site's release is its commit: said once.
            Some(live) if live.release == live.id => {
                line.push_str(&format!("live commit {}", live.id));
            }
            Some(live) => line.push_str(&format!("live release {} ({})", live.release, live.id)),
            None => line.push_str("nothing live yet"),
        }
        if let Some(d) = store.latest_deployment(name)? {
            line.push_str(&format!(
                "; last deployment #{} {} (release {}) {} {}",
                d.serial,
                d.id,
                d.release.as_deref().unwrap_or("-"),
                d.status,
                age(d.updated_at, now)
            ));
        }
        say!(out, "{line}");
        for d in state.iter().flat_map(|s| s.active.iter()) {
            say!(
                out,
                "  in progress: #{} {} (release {}) {} since {}",
                d.serial,
                d.id,
                d.release.as_deref().unwrap_or("-"),
                d.status,
                age(d.last_change, now)
            );
        }
    }
    let hooks: Vec<String> = match config {
        // The config's hooks, then those registered through the API.
        Some(c) => c
            .hooks
            .iter()
            .map(|h| h.name.clone())
            .chain(store.api_hooks()?.iter().map(|h| h.name()))
            .collect(),
        None => store.hook_names()?,
    };
    for hook in &hooks {
        let s = store.hook_summary(hook)?;
        let last = match (s.last_attempt_at, s.last_status, &s.last_error) {
            (None, _, _) => "never attempted".to_string(),
            (Some(t), Some(code), _) => format!("HTTP {code} {}", age(t, now)),
            (Some(t), None, Some(e)) => format!("{} {}", escape(e), age(t, now)),
            (Some(t), None, None) => format!("no answer {}", age(t, now)),
        };
        let next = s.next_retry.map_or(String::new(), |t| {
            let when = match (is_running, t > now) {
                (true, true) => format!("in {}", until(t, now)),
                (true, false) => "now".to_string(),
                // Nothing is sent while the daemon is down: no promise of a time.
                (false, true) => format!("due in {}, if the daemon runs by then", until(t, now)),
                (false, false) => "due, when the daemon runs".to_string(),
            };
            format!(", next retry {when} (deployhook deliveries retry --hook {hook} makes it now)")
        });
        say!(
            out,
            "hook {}: {}queue {} (oldest {}), delivered {}, dead {}, last attempt: {last}{}{next}",
            hook,
            s.disabled
                .as_ref()
                .map_or(String::new(), |r| format!("DISABLED ({r}); ")),
            s.pending,
            s.oldest_pending.map_or("-".into(), |t| age(t, now)),
            s.delivered,
            s.dead,
            if s.failures_in_a_row > 1 {
                format!(" ({} failures in a row)", s.failures_in_a_row)
            } else {
                String::new()
            },
        );
    }
    if config.is_none_or(|c| !c.chains.is_empty()) {
        for run in store.chain_runs(10)? {
            let steps: Vec<String> = run
                .steps
                .iter()
                .map(|st| {
                    let said = st
                        .description
                        .as_deref()
                        .map_or(String::new(), |d| format!(" {d:?}"));
                    format!("{} {}{said}", st.hook, st.state)
                })
                .collect();
            say!(
                out,
                "chain {} run {} ({}): {} since {}; steps: {}",
                run.chain,
                run.id,
                run.site.as_deref().unwrap_or("-"),
                run.state,
                run.created_at,
                steps.join(" → ")
            );
        }
    }
    Ok(is_running)
}

/// How long until `t`, to the second.
fn until(t: Timestamp, now: Timestamp) -> String {
    crate::model::format_duration(std::time::Duration::from_secs(t.since(now).as_secs()))
        .to_string()
}

/// `deployhook hooks list`.
pub fn hooks_list(path: &std::path::Path, out: &mut impl Write) -> Result<()> {
    let config = load(path)?;
    // Before the daemon has ever run there is no outbox, and nothing is disabled.
    let store = Store::open_read_only(&config.daemon.state_dir).ok();
    for h in &config.hooks {
        let disabled = match &store {
            Some(s) => s.hook_disabled(&h.name)?,
            None => None,
        };
        let state = match disabled {
            Some(reason) => format!("  DISABLED ({reason}; deployhook hooks enable {})", h.name),
            None => String::new(),
        };
        say!(
            out,
            "{}  {}  events {:?}  signature {:?}  (config){state}",
            h.name,
            h.display_url(),
            h.events,
            h.signature
        );
    }
    // An outbox written by an older version has no such table: none, then.
    let api_hooks = store.as_ref().and_then(|s| s.api_hooks().ok());
    for h in api_hooks.unwrap_or_default() {
        let disabled = match &store {
            Some(s) => s.hook_disabled(&h.name())?,
            None => None,
        };
        let state = disabled.map_or_else(String::new, |reason| format!("  DISABLED ({reason})"));
        let url = url::Url::parse(&h.url)
            .map_or_else(|_| "(invalid)".to_string(), |u| config::redact_url(&u));
        say!(
            out,
            "{}  {url}  events [{:?}]  (api, id {}; deployhook hooks remove {}){state}",
            h.name(),
            h.event,
            h.id,
            h.id
        );
    }
    Ok(())
}

/// `deployhook hooks test NAME`: sends a `ping` event now, prints the outcome, and
/// records it in the history. Returns whether the receiver answered 2xx.
pub fn hooks_test(path: &std::path::Path, name: &str, out: &mut impl Write) -> Result<bool> {
    let config = load(path)?;
    let store = Store::open_shared(&config.daemon.state_dir)?;
    let public_only = !config.api.as_ref().is_some_and(|a| a.allow_private_targets);
    let api_hooks = store.api_hooks()?;
    let hook = match config.hooks.iter().find(|h| h.name == name) {
        Some(h) => h.clone(),
        None => api_hooks
            .iter()
            .find(|h| h.name() == name)
            .map(|h| h.to_hook(public_only))
            .transpose()
            .map_err(|e| Failed(format!("hook {name}'s stored url does not parse: {e}")))?
            .ok_or_else(|| {
                Failed(format!(
                    "no hook named {name:?} in {} or registered through the API",
                    path.display()
                ))
            })?,
    };
    let now = Timestamp::now();
    let ping = crate::events::ping(&hook, &config.daemon.host_name, now);
    let d = store.commit_direct("ping", &ping, now)?;
    let mut sink = deliver::Sink::for_hook(&hook)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (record, response) = rt.block_on(deliver::send(&mut sink, &hook, &d, &store, now));
    // The same decision a worker makes, with no retries: a 410 disables the hook.
    let outcome = deliver::retry::decide(&[], 1, &response, Timestamp::now(), 0.0);
    let ok = outcome == Outcome::Delivered;
    store.commit_attempt(&d, &record, &outcome, Timestamp::now())?;
    match (record.response_status, &record.error) {
        (Some(code), _) => {
            say!(
                out,
                "ping {} -> {}: HTTP {code} in {} ms (delivery {})",
                hook.name,
                hook.display_url(),
                record.duration.as_millis(),
                d.id
            );
            let waiting = store.hook_summary(&hook.name)?.retrying;
            if outcome == Outcome::Delivered && waiting > 0 {
                say!(
                    out,
                    "hook {} answers again, but {waiting} deliver{} wait for a scheduled retry: `deployhook deliveries retry --hook {}` sends them now",
                    hook.name,
                    if waiting == 1 { "y" } else { "ies" },
                    hook.name
                );
            }
            if outcome == Outcome::DisableHook {
                say!(
                    out,
                    "the receiver answered 410 Gone: hook {} is disabled (deployhook hooks enable {} lifts it)",
                    hook.name,
                    hook.name
                );
            }
        }
        (None, e) => {
            say!(
                out,
                "ping {} -> {}: {} (delivery {})",
                hook.name,
                hook.display_url(),
                e.as_deref().unwrap_or("no response"),
                d.id
            );
        }
    }
    Ok(ok)
}

/// `deployhook hooks enable NAME`: clears the disabled flag a `410 Gone` set.
pub fn hooks_enable(path: &std::path::Path, name: &str, out: &mut impl Write) -> Result<()> {
    let config = load(path)?;
    let store = Store::open_shared(&config.daemon.state_dir)?;
    if store.enable_hook(name)? {
        say!(
            out,
            "hook {name} enabled; its queue: {}",
            poke_daemon(&config)
        );
    } else {
        say!(out, "hook {name} was not disabled");
    }
    Ok(())
}
