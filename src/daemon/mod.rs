//! Wires the data path: watch → snapshot → infer → store → deliver. Decides what is
//! fatal (a bad config at start, a store that will not open, a watcher that will not
//! start); everything at run time is logged once, counted and retried.
//!
//! One loop owns the sites: it waits for dirty marks, a settle/idle deadline, the resync
//! timer, a finished read, a reload or shutdown; then starts a read of each dirty site
//! that has none in flight (`site.rs`). Reads run concurrently and are never awaited in
//! line, so one site never holds up another. Startup and reload inject one "all sites
//! dirty" mark, so they take the normal path.

pub mod health;
pub mod listener;
pub mod relay;
pub mod site;
mod systemd;
pub mod tasks;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{Semaphore, mpsc, oneshot, watch as channel};
use tokio::task::JoinSet;

use crate::api::{self, ApiHandle, HookView, LoopRequest};
use crate::config::{self, Config, HookConfig, LoadError};
use crate::deliver;
use crate::model::Timestamp;
use crate::snapshot;
use crate::store::api_hooks::ApiHook;
use crate::store::{Store, StoreError};
use crate::telemetry::{chain, escape};
use crate::watch::{self, Dirty, Watcher};
pub use listener::raise_fd_limit;
use listener::{follow_api, reconfigure_api, start_api};
use site::{ReadContext, ReadDone, SiteRuntime};
use systemd::{notify, send_status};
use tasks::Tasks;

/// Attempts in flight across all hooks.
const MAX_IN_FLIGHT: usize = 64;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often, with chains configured, steps are checked for a missing callback.
const CHAIN_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long the first reads may take before the daemon says it is ready without them.
const FIRST_READ_WAIT: Duration = Duration::from_secs(5);
/// How often systemd's `STATUS=` line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[error(transparent)]
    Deliver(#[from] deliver::DeliverError),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error("{0}; stopping so that the service manager starts the daemon afresh")]
    Task(String),
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
}

/// How the daemon is driven from outside.
pub struct Control {
    pub shutdown: channel::Receiver<bool>,
    /// A message asks for a config reload (SIGHUP).
    pub reload: Option<mpsc::Receiver<()>>,
    /// Told once the first reconcile is done.
    pub ready: Option<oneshot::Sender<()>>,
    /// Where to reload the config from (`None`: no reloads).
    pub config_path: Option<PathBuf>,
}

/// The outcome of a reload.
#[derive(Debug)]
pub enum Reload {
    Applied,
    /// Why, every error in one text.
    Rejected(String),
}

/// Runs the daemon from the command line: loads the config, handles signals.
pub async fn run_from_config_file(path: PathBuf) -> Result<(), Fatal> {
    use tokio::signal::unix::{SignalKind, signal};
    let (reload_tx, reload_rx) = mpsc::channel(4);
    // Watched before it is loaded, so an edit in between is not missed.
    let mut config_watch = match watch::ConfigWatch::start(&path, reload_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "config file changes are not watched; reload with `deployhook reload` or SIGHUP");
            None
        }
    };
    let config = config::load(&path)?;
    let (stop_tx, stop_rx) = channel::channel(false);
    let mut term = signal(SignalKind::terminate()).map_err(Fatal::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Fatal::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(Fatal::Signals)?;
    let daemon = run(
        config,
        Control {
            shutdown: stop_rx,
            reload: Some(reload_rx),
            ready: None,
            config_path: Some(path),
        },
    );
    tokio::pin!(daemon);
    // The signals and the config watcher are heard here, beside the daemon, never as
    // tasks of their own: nothing of them outlives it, and an end is heard at once.
    loop {
        let watcher_ended = async {
            match config_watch.as_mut() {
                Some(w) => w.ended().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = &mut daemon => return ended,
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                let _ = stop_tx.send(true);
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: shutting down");
                let _ = stop_tx.send(true);
            }
            _ = hup.recv() => {
                let _ = reload_tx.try_send(());
            }
            why = watcher_ended => {
                config_watch = None;
                tracing::error!(error = %why, "the config file watcher stopped; reload with `deployhook reload` or SIGHUP");
            }
        }
    }
}

/// Runs the daemon with a validated config until `control.shutdown` says stop.
pub async fn run(mut config: Config, mut control: Control) -> Result<(), Fatal> {
    raise_fd_limit();
    deliver::init_tls();
    if let Err(e) = snapshot::git::allow_foreign_owners() {
        tracing::warn!(error = %e, "cannot turn off libgit2's owner check; repositories owned by other users will not be read");
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let store = Store::open(&config.daemon.state_dir)?;
    tracing::info!(path = %store.path().display(), "outbox opened");
    let dirty = Arc::new(Dirty::default());
    let own = watch::OwnFiles::of(
        &config.daemon.state_dir,
        &[
            crate::store::DB_FILE,
            &format!("{}-wal", crate::store::DB_FILE),
            &format!("{}-shm", crate::store::DB_FILE),
            &format!("{}-journal", crate::store::DB_FILE),
            crate::store::LOCK_FILE,
            verdict::FILE,
            &format!(".{}.tmp", verdict::FILE),
            listener::ADDRESS_FILE,
            &format!(".{}.tmp", listener::ADDRESS_FILE),
        ],
    );
    let mut watcher = match Watcher::new(dirty.clone(), own) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "inotify is unavailable: every site is polled every poll_interval");
            None
        }
    };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (mut sites, _) = load_sites(&config, &store, watcher.is_none(), Vec::new())?;
    // Hooks registered through the API run whether or not `[api]` is still configured.
    let mut api_hooks = store.api_hooks()?;
    let mut api = match &config.api {
        Some(a) => Some(start_api(a, &config, &store, &control.shutdown).await?),
        None => None,
    };
    listener::record_address(&config.daemon.state_dir, api.as_ref());
    let mut tasks = Tasks::new(&store, in_flight);
    let mut read_cx = ReadContext::new(&config, &[], &store, tasks.wakes());
    run_hooks(&config, &api_hooks, &mut tasks, &mut read_cx, api.as_ref());
    tasks.start_sources(&config);
    tasks.reconcile_probes(&config, &sites, &dirty);
    // The watchdog is pinged from this loop, so a stuck loop stops the pings.
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    // Reloads done, for `deployhook reload` (`verdict.rs`).
    let mut reloads: u64 = 0;
    let mut next_watchdog = tokio::time::Instant::now();
    // STATUS= is refreshed only under systemd (a query every STATUS_EVERY).
    let status_every = std::env::var_os("NOTIFY_SOCKET").map(|_| STATUS_EVERY);
    let mut next_status = tokio::time::Instant::now();
    let mut reads: JoinSet<ReadDone> = JoinSet::new();

    dirty.mark_all();
    let mut ready = control.ready.take();
    let mut next_resync = tokio::time::Instant::now() + config.daemon.resync;
    let mut next_prune = tokio::time::Instant::now();
    let mut next_chain_check = tokio::time::Instant::now();
    let mut first = true;
    // A task the daemon cannot go on without ended: stop, and say why.
    let mut fatal: Option<String> = None;
    loop {
        if !first {
            let now = Timestamp::now();
            let wake = sites
                .iter()
                .filter(|s| !s.in_flight())
                .filter_map(|s| s.wake_at)
                .min()
                .map(|t| tokio::time::Instant::now() + t.since(now))
                .unwrap_or(next_resync)
                .min(next_resync);
            let wake = sites
                .iter()
                .filter(|s| s.polling)
                .map(|s| s.next_poll)
                .fold(wake, |a, b| a.min(b));
            let wake = match watchdog {
                Some(_) => wake.min(next_watchdog),
                None => wake,
            };
            let wake = match status_every {
                Some(_) => wake.min(next_status),
                None => wake,
            };
            let wake = if config.chains.is_empty() {
                wake
            } else {
                wake.min(next_chain_check)
            };
            // A request of the API to the loop, or the API's server gone (fatal: it runs
            // until closed).
            let api_request = async {
                match api.as_mut() {
                    Some(a) => {
                        let (requests, server) = (&mut a.requests, &mut a.server);
                        tokio::select! {
                            r = requests.recv() => r.map(Ok),
                            why = api::server_ended(server) => Some(Err(why)),
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            // Reloads need a file to read again; without one (the demo) nothing asks.
            let reload = async {
                match (control.reload.as_mut(), control.config_path.as_deref()) {
                    (Some(r), Some(path)) => r.recv().await.map(|()| path),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                // Leading edge: the first mark of a burst starts a read at once; marks
                // while it runs make one more read when it is back (`SiteRuntime::again`).
                _ = dirty.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
                Some(done) = reads.join_next(), if !reads.is_empty() => {
                    finish_read(done, &mut sites);
                }
                Some(ended) = tasks.join_next() => {
                    if let Err(why) = tasks.ended(ended) {
                        fatal = Some(why);
                    }
                }
                Some(request) = api_request => match request {
                    Ok(LoopRequest::Ping(answer)) => {
                        let _ = answer.send(());
                    }
                    Ok(LoopRequest::ApiHooks(now_registered, done)) => {
                        api_hooks = now_registered;
                        run_hooks(&config, &api_hooks, &mut tasks, &mut read_cx, api.as_ref());
                        let _ = done.send(());
                    }
                    // At shutdown it stops as it should; otherwise the daemon stops too.
                    Err(why) if !*control.shutdown.borrow() => {
                        tracing::error!(error = %why, "the API server stopped");
                        fatal = Some(format!("the API server stopped: {why}"));
                    }
                    Err(_) => {}
                },
                Some(path) = reload => {
                    let mut states = vec![NotifyState::Reloading];
                    states.extend(NotifyState::monotonic_usec_now().ok());
                    notify(&states);
                    reloads += 1;
                    let old = config.clone();
                    let mut outcome = reload_config(path, &mut config);
                    // The API follows the new config at once, or the reload is refused:
                    // never a listener whose rules no longer match the config.
                    if matches!(outcome, Reload::Applied)
                        && let Err(why) = follow_api(&mut api, &old, &config, &store, &control.shutdown).await
                    {
                        config = old;
                        outcome = Reload::Rejected(why);
                    }
                    crate::metrics::get().reload(matches!(outcome, Reload::Applied));
                    let answer = verdict::Verdict {
                        pid: std::process::id(),
                        seq: reloads,
                        rejected: match &outcome {
                            Reload::Applied => None,
                            Reload::Rejected(e) => Some(e.clone()),
                        },
                    };
                    if let Err(e) = verdict::write(&config.daemon.state_dir, &answer) {
                        tracing::warn!(error = %e, "cannot write {} for `deployhook reload`", verdict::FILE);
                    }
                    match outcome {
                        Reload::Applied => {
                            let old = std::mem::take(&mut sites);
                            let (new, changed) = load_sites(&config, &store, watcher.is_none(), old)?;
                            sites = new;
                            reconfigure_api(api.as_ref(), &config);
                            listener::record_address(&config.daemon.state_dir, api.as_ref());
                            run_hooks(&config, &api_hooks, &mut tasks, &mut read_cx, api.as_ref());
                            tasks.reconcile_probes(&config, &sites, &dirty);
                            // Only new and changed sites are read again.
                            for i in changed {
                                dirty.mark(i);
                            }
                            tracing::info!(sites = config.sites.len(), hooks = config.hooks.len(), "config reloaded");
                        }
                        Reload::Rejected(e) => {
                            tracing::error!(error = %e, "reload rejected; the running config stays");
                        }
                    }
                    notify(&[NotifyState::Ready]);
                }
                _ = control.shutdown.changed() => {}
            }
        }
        #[cfg(debug_assertions)]
        debug_stall();
        if *control.shutdown.borrow() || fatal.is_some() {
            break;
        }
        // Results that are back already are taken before new reads start.
        while let Some(done) = reads.try_join_next() {
            finish_read(done, &mut sites);
        }
        if let Some(every) = watchdog
            && tokio::time::Instant::now() >= next_watchdog
        {
            notify(&[NotifyState::Watchdog]);
            next_watchdog = tokio::time::Instant::now() + every;
        }
        if let Some(every) = status_every
            && !first
            && tokio::time::Instant::now() >= next_status
        {
            next_status = tokio::time::Instant::now() + every;
            send_status(config.sites.len(), &store);
        }
        let now = Timestamp::now();
        let mut marks = dirty.take();
        if tokio::time::Instant::now() >= next_resync {
            marks.all = true;
            next_resync = tokio::time::Instant::now() + config.daemon.resync;
        }
        if marks.rescans > 0 {
            crate::metrics::get().rescans(marks.rescans);
            tracing::warn!(
                rescans = marks.rescans,
                "the watcher asked for a rescan (event queue overflow?): re-reading every site"
            );
        }
        let instant = tokio::time::Instant::now();
        let due: Vec<usize> = sites
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.wake_at.is_some_and(|t| t <= now)
                    || (s.polling && s.next_poll <= instant)
                    || (s.again && !s.in_flight())
            })
            .map(|(i, _)| i)
            .collect();
        for (i, s) in sites.iter_mut().enumerate() {
            if s.polling && s.next_poll <= instant {
                s.next_poll = instant + config.sites[i].poll_interval;
            }
        }
        let mut to_read = marks.sites_of(sites.len());
        to_read.extend(due);
        to_read.sort_unstable();
        to_read.dedup();
        for i in to_read {
            let Some(site) = sites.get_mut(i) else {
                continue;
            };
            if site.in_flight() {
                site.again = true;
            } else if !site.backing_off(now)
                && let Some(read) = site.start_read(&read_cx)
            {
                reads.spawn(read);
            }
        }
        if let Some(w) = watcher.as_mut() {
            let desired = watch::desired_watches(&config.sites);
            for (warning, failed_sites) in w.reconcile(desired) {
                tracing::warn!(detail = %escape(&warning), "cannot watch a directory");
                for i in failed_sites {
                    if let Some(s) = sites.get_mut(i) {
                        s.polling = true;
                    }
                }
            }
        }
        if !config.chains.is_empty() && tokio::time::Instant::now() >= next_chain_check {
            next_chain_check = tokio::time::Instant::now() + CHAIN_CHECK_EVERY;
            let store = store.clone();
            tokio::task::spawn_blocking(move || match store.expire_chain_steps(Timestamp::now()) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    runs = n,
                    "chain runs ended in error: no callback in time, or a step's delivery died"
                ),
                Err(e) => tracing::warn!(error = %chain(&e), "cannot check chain steps"),
            });
        }
        if tokio::time::Instant::now() >= next_prune {
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
            let store = store.clone();
            let max_age = config.daemon.history_max_age;
            tokio::task::spawn_blocking(move || match store.prune(max_age, Timestamp::now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "pruned delivery history"),
                Err(e) => tracing::warn!(error = %chain(&e), "cannot prune history"),
            });
        }
        if first {
            // Ready once the first reads are done (a stuck one is waited for at most a
            // few seconds: it must not keep the daemon from serving the other sites).
            let deadline = tokio::time::Instant::now() + FIRST_READ_WAIT;
            while !reads.is_empty() {
                match tokio::time::timeout_at(deadline, reads.join_next()).await {
                    Ok(Some(done)) => finish_read(done, &mut sites),
                    Ok(None) => break,
                    Err(_) => {
                        for s in sites.iter().filter(|s| s.in_flight()) {
                            tracing::warn!(site = %escape(&s.name), "the first read of this site has not finished; going on without it");
                        }
                        break;
                    }
                }
            }
            first = false;
            tracing::info!(
                sites = config.sites.len(),
                hooks = config.hooks.len(),
                watches = watcher.as_ref().map_or(0, Watcher::count),
                polled = sites.iter().filter(|s| s.polling).count(),
                "daemon ready"
            );
            notify(&[NotifyState::Ready]);
            if status_every.is_some() {
                send_status(config.sites.len(), &store);
            }
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            if let Some(a) = &api {
                let _ = a.ready.send(true);
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    tracing::info!("stopping: waiting for attempts in flight");
    tasks.shutdown(config.daemon.shutdown_timeout).await;
    // Reads still in flight are not waited for: each is one transaction or nothing.
    reads.detach_all();
    tracing::info!("stopped");
    match fatal {
        Some(why) => Err(Fatal::Task(why)),
        None => Ok(()),
    }
}

/// The hooks to run: the config's, then those registered through the API (`api-<id>`,
/// refused private addresses unless `api.allow_private_targets`).
fn wanted_hooks(config: &Config, api_hooks: &[ApiHook]) -> Vec<HookConfig> {
    let public_only = !config.api.as_ref().is_some_and(|a| a.allow_private_targets);
    let mut hooks = config.hooks.clone();
    for h in api_hooks {
        match url::Url::parse(&h.url) {
            Ok(url) => hooks.push(HookConfig {
                events: vec![h.event.clone()],
                insecure_ssl: h.insecure_ssl,
                public_only,
                ..HookConfig::new(&h.name(), url)
            }),
            Err(e) => {
                tracing::warn!(hook = %h.name(), error = %e, "a stored hook's url does not parse; it is not run");
            }
        }
    }
    hooks
}

/// Runs the wanted hooks (config + API): reconciles the workers, gives the reads the
/// new list and wake-ups, and tells the API what runs now. At start-up, after a
/// reload, and after a hook change through the API.
fn run_hooks(
    config: &Config,
    api_hooks: &[ApiHook],
    tasks: &mut Tasks,
    read_cx: &mut ReadContext,
    api: Option<&ApiHandle>,
) {
    let hooks = wanted_hooks(config, api_hooks);
    tasks.reconcile_hooks(&hooks);
    *read_cx = read_cx.reconfigured(config, &hooks, tasks.wakes());
    // The same lists the reads use.
    let view = HookView {
        hooks: read_cx.hooks.clone(),
        config_hooks: Arc::new(config.hooks.iter().map(|h| h.name.clone()).collect()),
        wakes: read_cx.wakes.clone(),
        chains: read_cx.chains.clone(),
        callback_base: read_cx.callback_base.clone(),
    };
    tasks.publish_view(view.clone());
    if let Some(a) = api {
        a.view.send_replace(view);
    }
}

/// Debug builds only: blocks the loop while the file `$DEPLOYHOOK_DEBUG_STALL_FILE`
/// exists, so a test can show that a stuck loop stops the watchdog pings.
#[cfg(debug_assertions)]
fn debug_stall() {
    let Some(path) = std::env::var_os("DEPLOYHOOK_DEBUG_STALL_FILE") else {
        return;
    };
    while std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish_read(done: Result<ReadDone, tokio::task::JoinError>, sites: &mut [SiteRuntime]) {
    let Ok(done) = done else {
        return;
    };
    if let Some(s) = sites.iter_mut().find(|s| s.name == done.site) {
        s.finish_read(done);
    }
}

/// Loads the config again; a config that fails validation is rejected and the
/// running one stays. `state_dir` changes wait for a restart.
fn reload_config(path: &std::path::Path, config: &mut Config) -> Reload {
    match config::load(path) {
        Ok(mut new) => {
            if new.daemon.state_dir != config.daemon.state_dir {
                tracing::warn!("daemon.state_dir changed: this takes effect at the next restart");
                new.daemon.state_dir = config.daemon.state_dir.clone();
            }
            for w in &new.warnings {
                tracing::warn!("{w}");
            }
            *config = new;
            Reload::Applied
        }
        Err(e) => Reload::Rejected(chain(&e)),
    }
}

/// The run-time sites of `config`, and the indices of those that are new or whose
/// config changed. On a reload, `old` are the running ones: a site still configured
/// keeps its state, deadlines and a read in flight (nothing is read from the store
/// again, so nothing committed meanwhile is lost or repeated).
fn load_sites(
    config: &Config,
    store: &Store,
    poll_all: bool,
    old: Vec<SiteRuntime>,
) -> Result<(Vec<SiteRuntime>, Vec<usize>), Fatal> {
    let mut old: BTreeMap<String, SiteRuntime> =
        old.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut changed = Vec::new();
    let mut sites = Vec::new();
    for (i, s) in config.sites.iter().enumerate() {
        let rt = match old.remove(&s.name) {
            Some(prev) => {
                if prev.config() != s {
                    changed.push(i);
                }
                SiteRuntime::reconfigured(prev, s, poll_all)
            }
            None => {
                changed.push(i);
                SiteRuntime::load(s, store, poll_all)?
            }
        };
        sites.push(rt);
    }
    Ok((sites, changed))
}
