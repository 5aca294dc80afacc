//! Wires the data path: watch → snapshot → infer → store → deliver. Decides what is
//! fatal (a bad config at start, a store that will not open, a watcher that will not
//! start); everything at run time is logged once, counted and retried.
//!
//! One loop owns the sites: it waits for dirty marks, a settle/idle deadline, the resync
//! timer, a reload or shutdown; then reads, infers and commits each dirty site. Startup
//! and reload inject one "all sites dirty" mark, so they take the normal path.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch as channel};
use tokio::task::JoinSet;

use crate::config::WatchMode;
use crate::config::{self, Config, LoadError};
use crate::deliver::{self, WorkerContext, payload};
use crate::infer::{self, model::SiteState, model::Timestamp};
use crate::snapshot::{self, Health, Reader};
use crate::store::{Store, StoreError};
use crate::telemetry::{chain, sd_notify};
use crate::watch::{self, Dirty, Watcher};

/// How long marks are collected after the first one, so a burst is one read.
const COALESCE: Duration = Duration::from_millis(5);
/// Attempts in flight across all hooks.
const MAX_IN_FLIGHT: usize = 64;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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
    Rejected(LoadError),
}

struct SiteRuntime {
    reader: Option<Reader>,
    state: SiteState,
    wake_at: Option<Timestamp>,
    logged: HashSet<String>,
    /// Read every `poll_interval` (configured, or inotify could not watch it).
    polling: bool,
    next_poll: tokio::time::Instant,
    /// The health probe's latest result, and whether a deployment waits for it.
    health: Option<Arc<Mutex<Health>>>,
    health_wanted: Arc<AtomicBool>,
}

struct Workers {
    set: JoinSet<Result<(), deliver::DeliverError>>,
    stop: channel::Sender<bool>,
    wakes: BTreeMap<String, Arc<Notify>>,
}

/// Runs the daemon from the command line: loads the config, handles signals.
pub async fn run_from_config_file(path: PathBuf) -> Result<(), Fatal> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = config::load(&path)?;
    let (stop_tx, stop_rx) = channel::channel(false);
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let mut term = signal(SignalKind::terminate()).map_err(Fatal::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Fatal::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(Fatal::Signals)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => { let _ = reload_tx.try_send(()); }
            }
        }
        let _ = stop_tx.send(true);
    });
    run(
        config,
        Control {
            shutdown: stop_rx,
            reload: Some(reload_rx),
            ready: None,
            config_path: Some(path),
        },
    )
    .await
}

/// Runs the daemon with a validated config until `control.shutdown` says stop.
pub async fn run(mut config: Config, mut control: Control) -> Result<(), Fatal> {
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
    let mut watcher = match Watcher::new(dirty.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %chain(&e), "inotify is unavailable: every site is polled every poll_interval");
            None
        }
    };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut sites = load_sites(&config, &store, watcher.is_none())?;
    let mut workers = start_workers(&config, &store, &in_flight, &sites, &dirty);

    dirty.mark_all();
    let mut ready = control.ready.take();
    let mut next_resync = tokio::time::Instant::now() + config.daemon.resync;
    let mut next_prune = tokio::time::Instant::now();
    let mut first = true;
    loop {
        if !first {
            let now = Timestamp::now();
            let wake = sites
                .iter()
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
            // Reloads need a file to read again; without one (the demo) nothing asks.
            let reload = async {
                match (control.reload.as_mut(), control.config_path.as_deref()) {
                    (Some(r), Some(path)) => r.recv().await.map(|()| path),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = dirty.notified() => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep_until(wake) => {}
                Some(path) = reload => {
                    sd_notify("RELOADING=1");
                    match reload_config(path, &mut config) {
                        Reload::Applied => {
                            stop_workers(workers, Duration::from_secs(0)).await;
                            sites = load_sites(&config, &store, watcher.is_none())?;
                            workers = start_workers(&config, &store, &in_flight, &sites, &dirty);
                            dirty.mark_all();
                            tracing::info!(sites = config.sites.len(), hooks = config.hooks.len(), "config reloaded");
                        }
                        Reload::Rejected(e) => {
                            tracing::error!(error = %chain(&e), "reload rejected; the running config stays");
                        }
                    }
                    sd_notify("READY=1");
                }
                _ = control.shutdown.changed() => {}
            }
        }
        if *control.shutdown.borrow() {
            break;
        }
        let now = Timestamp::now();
        let mut marks = dirty.take();
        if tokio::time::Instant::now() >= next_resync {
            marks.all = true;
            next_resync = tokio::time::Instant::now() + config.daemon.resync;
        }
        if marks.rescans > 0 {
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
                s.wake_at.is_some_and(|t| t <= now) || (s.polling && s.next_poll <= instant)
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
            reconcile_site(&config, &store, &mut sites[i], &workers.wakes).await;
        }
        if let Some(w) = watcher.as_mut() {
            let desired = watch::desired_watches(&config.sites);
            for (warning, failed_sites) in w.reconcile(desired) {
                tracing::warn!("{warning}");
                for i in failed_sites {
                    if let Some(s) = sites.get_mut(i) {
                        s.polling = true;
                    }
                }
            }
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
            first = false;
            tracing::info!(
                sites = config.sites.len(),
                hooks = config.hooks.len(),
                watches = watcher.as_ref().map_or(0, Watcher::count),
                polled = sites.iter().filter(|s| s.polling).count(),
                "daemon ready"
            );
            sd_notify("READY=1");
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
        }
    }
    sd_notify("STOPPING=1");
    tracing::info!("stopping: waiting for attempts in flight");
    stop_workers(workers, config.daemon.shutdown_timeout).await;
    tracing::info!("stopped");
    Ok(())
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
        Err(e) => Reload::Rejected(e),
    }
}

fn load_sites(config: &Config, store: &Store, poll_all: bool) -> Result<Vec<SiteRuntime>, Fatal> {
    config
        .sites
        .iter()
        .map(|s| {
            Ok(SiteRuntime {
                state: store.read_site_state(&s.name)?.unwrap_or_default(),
                reader: Some(Reader::new(s.clone())),
                wake_at: None,
                logged: HashSet::new(),
                polling: poll_all || s.watch == WatchMode::Poll,
                next_poll: tokio::time::Instant::now(),
                health: s.health_url.as_ref().map(|_| Arc::default()),
                health_wanted: Arc::default(),
            })
        })
        .collect()
}

/// Probes a site's `health_url` every second while a deployment waits for it.
async fn run_health_probe(
    url: url::Url,
    site: usize,
    health: Arc<Mutex<Health>>,
    wanted: Arc<AtomicBool>,
    dirty: Arc<Dirty>,
    mut stop: channel::Receiver<bool>,
) -> Result<(), deliver::DeliverError> {
    let client = deliver::health_client()?;
    loop {
        let pause = if wanted.load(Ordering::Relaxed) {
            let result = deliver::probe_health(&client, &url).await;
            let now = Timestamp::now();
            {
                let mut h = health.lock().unwrap_or_else(|e| e.into_inner());
                h.last_checked = Some(now);
                match result {
                    Ok(_) => {
                        h.last_ok = Some(now);
                        h.last_error = None;
                    }
                    Err(e) => h.last_error = Some(e),
                }
            }
            dirty.mark(site);
            Duration::from_secs(1)
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

fn start_workers(
    config: &Config,
    store: &Store,
    in_flight: &Arc<Semaphore>,
    sites: &[SiteRuntime],
    dirty: &Arc<Dirty>,
) -> Workers {
    let (stop, stop_rx) = channel::channel(false);
    let mut set = JoinSet::new();
    let mut wakes = BTreeMap::new();
    for (i, (site, rt)) in config.sites.iter().zip(sites).enumerate() {
        if let (Some(url), Some(health)) = (&site.health_url, &rt.health) {
            set.spawn(run_health_probe(
                url.clone(),
                i,
                health.clone(),
                rt.health_wanted.clone(),
                dirty.clone(),
                stop_rx.clone(),
            ));
        }
    }
    for hook in &config.hooks {
        let wake = Arc::new(Notify::new());
        wakes.insert(hook.name.clone(), wake.clone());
        let cx = WorkerContext {
            store: store.clone(),
            wake,
            in_flight: in_flight.clone(),
            shutdown: stop_rx.clone(),
        };
        tracing::info!(hook = %hook.name, url = %hook.display_url(), events = ?hook.events, "hook worker started");
        set.spawn(deliver::run_hook(hook.clone(), cx));
    }
    Workers { set, stop, wakes }
}

/// Stops the workers; attempts in flight get up to `grace` to finish.
async fn stop_workers(mut workers: Workers, grace: Duration) {
    let _ = workers.stop.send(true);
    let drained = tokio::time::timeout(grace, async {
        while let Some(r) = workers.set.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::error!(error = %chain(&e), "hook worker failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "attempts still in flight after the shutdown timeout; they will be sent again at the next start"
        );
        workers.set.abort_all();
    }
}

/// Reads one site, infers, and commits what changed (one transaction).
async fn reconcile_site(
    config: &Config,
    store: &Store,
    site: &mut SiteRuntime,
    wakes: &BTreeMap<String, Arc<Notify>>,
) {
    let Some(mut reader) = site.reader.take() else {
        return;
    };
    let prev = site.state.clone();
    let health = site
        .health
        .as_ref()
        .map(|h| h.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let hooks = config.hooks.clone();
    let host = config.daemon.host_name.clone();
    let store = store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let now = Timestamp::now();
        let (mut snap, warnings) = reader.read(now);
        snap.health = health;
        let params = reader.site().params();
        let inference = infer::infer(&prev, &snap, now, &params);
        let name = reader.site().name.clone();
        let committed = if inference.state != prev || !inference.transitions.is_empty() {
            let cx = payload::Context {
                site: &name,
                host_name: &host,
                layout: snap.layout.name(),
            };
            let events = deliver::plan(&inference.transitions, &hooks, cx);
            // The hooks that got a delivery: only their workers are woken.
            let queued: BTreeSet<String> = events
                .iter()
                .flat_map(|e| e.deliveries.iter().map(|d| d.hook.clone()))
                .collect();
            store
                .commit_inference(
                    &name,
                    &inference.state,
                    &inference.transitions,
                    &events,
                    now,
                )
                .map(|_| queued)
        } else {
            Ok(BTreeSet::new())
        };
        (reader, inference, warnings, committed)
    })
    .await;
    let Ok((reader, inference, warnings, committed)) = joined else {
        tracing::error!("a site read panicked; it will be read again at the next resync");
        return;
    };
    let name = reader.site().name.clone();
    site.reader = Some(reader);
    for w in warnings {
        tracing::warn!(site = %name, "{}", w.message);
    }
    for a in &inference.anomalies {
        if site.logged.insert(a.key.clone()) {
            tracing::warn!(site = %name, "{}", a.message);
        }
    }
    match committed {
        Ok(queued) => {
            for t in &inference.transitions {
                tracing::info!(
                    site = %name,
                    deployment = %t.deployment.id,
                    release = t.deployment.release.as_deref().unwrap_or("-"),
                    from = t.from.map_or("new", |s| s.as_str()),
                    status = %t.to,
                    "{}", if t.deployment.status_text.is_empty() { "transition".to_string() } else { t.deployment.status_text.clone() }
                );
            }
            site.state = inference.state;
            site.wake_at = inference.wake_at;
            let waiting = site.state.active.iter().any(|d| d.done_at.is_some());
            site.health_wanted.store(waiting, Ordering::Relaxed);
            for hook in &queued {
                if let Some(w) = wakes.get(hook) {
                    w.notify_one();
                }
            }
        }
        Err(e) => {
            // Nothing was committed: keep the old state so the same transitions are
            // inferred again at the next read.
            tracing::error!(site = %name, error = %chain(&e), "cannot commit; will retry");
            site.wake_at = Some(Timestamp::now().plus(Duration::from_secs(1)));
        }
    }
}
