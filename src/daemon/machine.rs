//! The daemon as a small state machine. `Daemon::start` opens the store, the watcher, the
//! API and the tasks; then each `next_event` (a dirty mark, a deadline, a finished read, a
//! task's end, an API request, a reload, shutdown) goes to its `on_*` handler, and
//! `on_tick` does what is due: start reads of dirty sites, ping the watchdog, reconcile the
//! watches, expire chain steps, prune. `shutdown` waits for attempts in flight.
//!
//! Startup and reload inject "sites dirty" marks, so they take the normal path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::listener::{self, follow_api, reconfigure_api, start_api};
use super::site::{ReadContext, ReadDone, SiteRuntime};
use super::systemd::{notify, send_status};
use super::tasks::{TaskResult, Tasks};
use super::{Control, Fatal, Reload, verdict};
use crate::api::{self, ApiHandle, HookView, LoopRequest};
use crate::config::{self, Config, HookConfig};
use crate::deliver;
use crate::model::Timestamp;
use crate::snapshot;
use crate::store::Store;
use crate::store::api_hooks::ApiHook;
use crate::telemetry::{chain, escape};
use crate::watch::{self, Dirty, Watcher};

/// Attempts in flight across all hooks.
const MAX_IN_FLIGHT: usize = 64;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often, with chains configured, steps are checked for a missing callback.
const CHAIN_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long the first reads may take before the daemon says it is ready without them.
const FIRST_READ_WAIT: Duration = Duration::from_secs(5);
/// How often systemd's `STATUS=` line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What woke the daemon.
pub enum Event {
    /// A site was marked dirty (a watch event, a probe, startup or a reload).
    Dirty,
    /// A deadline passed (settle, idle, poll, resync, watchdog, chains).
    Deadline,
    /// Another process wrote the outbox (SIGUSR1): every worker looks again.
    LookAgain,
    ReadDone(Box<Result<ReadDone, tokio::task::JoinError>>),
    TaskEnded(Result<TaskResult, tokio::task::JoinError>),
    Api(LoopRequest),
    /// The API's server stopped, and why.
    ApiEnded(String),
    /// A reload was asked for (SIGHUP, the config file written).
    Reload(PathBuf),
    /// Shutdown was asked for.
    Shutdown,
}

/// Everything the running daemon holds.
pub struct Daemon {
    config: Config,
    control: Control,
    store: Store,
    dirty: Arc<Dirty>,
    watcher: Option<Watcher>,
    sites: Vec<SiteRuntime>,
    /// Hooks registered through the API: they run whether or not `[api]` is still on.
    api_hooks: Vec<ApiHook>,
    api: Option<ApiHandle>,
    tasks: Tasks,
    read_cx: ReadContext,
    reads: JoinSet<ReadDone>,
    /// Told once the first reconcile is done.
    ready: Option<oneshot::Sender<()>>,
    /// The watchdog is pinged from this machine's tick, so a stuck loop stops the pings.
    watchdog: Option<Duration>,
    next_watchdog: Instant,
    /// STATUS= is refreshed only under systemd.
    status_every: Option<Duration>,
    next_status: Instant,
    next_resync: Instant,
    next_prune: Instant,
    /// When to look for chain steps past their deadline; `None` while no run waits.
    next_chain_check: Option<Instant>,
    /// Reloads done, for `deployhook reload` (`verdict.rs`).
    reloads: u64,
    /// The first reads are done and the daemon said so.
    is_ready: bool,
    /// A task the daemon cannot go on without ended: stop, and say why.
    fatal: Option<String>,
}

impl Daemon {
    /// Opens what the daemon runs on and starts its tasks; every site is marked dirty.
    pub async fn start(config: Config, mut control: Control) -> Result<Self, Fatal> {
        listener::raise_fd_limit();
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
        let watcher = match Watcher::new(dirty.clone(), own_files(&config)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "inotify is unavailable: every site is polled every poll_interval");
                None
            }
        };
        let (sites, _) = load_sites(&config, &store, watcher.is_none(), Vec::new())?;
        let api_hooks = store.api_hooks()?;
        let api = match &config.api {
            Some(a) => Some(start_api(a, &config, &store, &control.shutdown).await?),
            None => None,
        };
        listener::record_address(&config.daemon.state_dir, api.as_ref());
        let mut tasks = Tasks::new(&store, Arc::new(Semaphore::new(MAX_IN_FLIGHT)));
        let mut read_cx = ReadContext::new(&config, &[], &store, tasks.wakes(), tasks.handoffs());
        run_hooks(&config, &api_hooks, &mut tasks, &mut read_cx, api.as_ref());
        tasks.start_sources(&config);
        tasks.reconcile_probes(&config, &sites, &dirty);
        dirty.mark_all();
        let now = Instant::now();
        Ok(Daemon {
            next_resync: now + config.daemon.resync,
            ready: control.ready.take(),
            watchdog: sd_notify::watchdog_enabled().map(|d| d / 2),
            status_every: std::env::var_os("NOTIFY_SOCKET").map(|_| STATUS_EVERY),
            next_watchdog: now,
            next_status: now,
            next_prune: now,
            next_chain_check: Some(now),
            reloads: 0,
            is_ready: false,
            fatal: None,
            reads: JoinSet::new(),
            config,
            control,
            store,
            dirty,
            watcher,
            sites,
            api_hooks,
            api,
            tasks,
            read_cx,
        })
    }

    /// Shutdown was asked for, or a task the daemon needs ended.
    pub fn stopping(&self) -> bool {
        *self.control.shutdown.borrow() || self.fatal.is_some()
    }

    /// The earliest deadline of anything due.
    fn next_deadline(&self) -> Instant {
        let now = Timestamp::now();
        let instant = Instant::now();
        let mut wake = self.next_resync;
        for s in &self.sites {
            if let Some(t) = s.wake_at.filter(|_| !s.in_flight()) {
                wake = wake.min(instant + t.since(now));
            }
            if s.polling {
                wake = wake.min(s.next_poll);
            }
        }
        if self.watchdog.is_some() {
            wake = wake.min(self.next_watchdog);
        }
        // No wake-up of its own for systemd's STATUS= line: it is refreshed on the ticks
        // that happen anyway (reads, resync), at most every STATUS_EVERY.
        if let Some(t) = self
            .next_chain_check
            .filter(|_| !self.config.chains.is_empty())
        {
            wake = wake.min(t);
        }
        wake
    }

    /// Waits for the next thing to happen.
    pub async fn next_event(&mut self) -> Event {
        let wake = self.next_deadline();
        let Daemon {
            dirty,
            reads,
            tasks,
            api,
            control,
            ..
        } = self;
        // A request of the API to the loop, or the API's server gone (it runs until
        // closed).
        let api_event = async {
            match api.as_mut() {
                Some(a) => {
                    let (requests, server) = (&mut a.requests, &mut a.server);
                    tokio::select! {
                        r = requests.recv() => r.map(Event::Api),
                        why = api::server_ended(server) => Some(Event::ApiEnded(why)),
                    }
                }
                None => std::future::pending().await,
            }
        };
        // Reloads need a file to read again; without one (the demo) nothing asks.
        let (reload_rx, config_path, look_rx) = (
            control.reload.as_mut(),
            control.config_path.as_deref(),
            control.look_again.as_mut(),
        );
        let reload = async {
            match (reload_rx, config_path) {
                (Some(r), Some(path)) => r.recv().await.map(|()| path.to_path_buf()),
                _ => std::future::pending().await,
            }
        };
        let look_again = async {
            match look_rx {
                Some(l) => l.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Leading edge: the first mark of a burst starts a read at once; marks while
            // it runs make one more read when it is back (`SiteRuntime::again`).
            _ = dirty.notified() => Event::Dirty,
            _ = tokio::time::sleep_until(wake) => Event::Deadline,
            Some(done) = reads.join_next(), if !reads.is_empty() => Event::ReadDone(Box::new(done)),
            Some(ended) = tasks.join_next() => Event::TaskEnded(ended),
            Some(event) = api_event => event,
            Some(path) = reload => Event::Reload(path),
            Some(()) = look_again => Event::LookAgain,
            _ = control.shutdown.changed() => Event::Shutdown,
        }
    }

    /// Handles one event; only a reload that cannot load its sites is fatal here.
    pub async fn on_event(&mut self, event: Event) -> Result<(), Fatal> {
        match event {
            Event::Dirty | Event::Deadline | Event::Shutdown => {}
            Event::ReadDone(done) => self.on_read_done(*done),
            Event::TaskEnded(ended) => {
                if let Err(why) = self.tasks.ended(ended) {
                    self.fatal = Some(why);
                }
            }
            Event::Api(request) => self.on_api_request(request),
            // At shutdown it stops as it should; otherwise the daemon stops too.
            Event::ApiEnded(why) => {
                if !*self.control.shutdown.borrow() {
                    tracing::error!(error = %why, "the API server stopped");
                    self.fatal = Some(format!("the API server stopped: {why}"));
                }
            }
            Event::Reload(path) => self.on_reload(&path).await?,
            Event::LookAgain => self.look_again(),
        }
        Ok(())
    }

    /// A read is back: its site takes the result. A deployment that ended may have
    /// started a chain run: its steps are looked at from now on.
    pub fn on_read_done(&mut self, done: Result<ReadDone, tokio::task::JoinError>) {
        let Ok(done) = done else {
            return;
        };
        if let Some(s) = self.sites.iter_mut().find(|s| s.name == done.site)
            && s.finish_read(done)
        {
            self.next_chain_check = Some(Instant::now());
        }
    }

    /// Every worker reads its queue again, and chain steps are looked at: what another
    /// process wrote (SIGUSR1), or the resync's look at everything.
    fn look_again(&mut self) {
        for wake in self.tasks.wakes().values() {
            wake.notify_one();
        }
        self.next_chain_check = Some(Instant::now());
    }

    fn on_api_request(&mut self, request: LoopRequest) {
        match request {
            LoopRequest::Ping(answer) => {
                let _ = answer.send(());
            }
            LoopRequest::ApiHooks(now_registered, done) => {
                self.api_hooks = now_registered;
                self.run_hooks();
                let _ = done.send(());
            }
        }
    }

    /// Loads the config file again; the running config stays if it fails, or if the API
    /// cannot follow it. The outcome goes to systemd, the metrics and `verdict.rs`.
    pub async fn on_reload(&mut self, path: &std::path::Path) -> Result<(), Fatal> {
        let mut states = vec![NotifyState::Reloading];
        states.extend(NotifyState::monotonic_usec_now().ok());
        notify(&states);
        self.reloads += 1;
        let old = self.config.clone();
        let mut outcome = reload_config(path, &mut self.config);
        // The API follows the new config at once, or the reload is refused: never a
        // listener whose rules no longer match the config.
        if matches!(outcome, Reload::Applied)
            && let Err(why) = follow_api(
                &mut self.api,
                &old,
                &self.config,
                &self.store,
                &self.control.shutdown,
            )
            .await
        {
            self.config = old;
            outcome = Reload::Rejected(why);
        }
        crate::metrics::get().reload(matches!(outcome, Reload::Applied));
        let answer = verdict::Verdict {
            pid: std::process::id(),
            seq: self.reloads,
            rejected: match &outcome {
                Reload::Applied => None,
                Reload::Rejected(e) => Some(e.clone()),
            },
        };
        if let Err(e) = verdict::write(&self.config.daemon.state_dir, &answer) {
            tracing::warn!(error = %e, "cannot write {} for `deployhook reload`", verdict::FILE);
        }
        match outcome {
            Reload::Applied => {
                let old = std::mem::take(&mut self.sites);
                let (new, changed) =
                    load_sites(&self.config, &self.store, self.watcher.is_none(), old)?;
                self.sites = new;
                reconfigure_api(self.api.as_ref(), &self.config);
                listener::record_address(&self.config.daemon.state_dir, self.api.as_ref());
                self.run_hooks();
                self.tasks
                    .reconcile_probes(&self.config, &self.sites, &self.dirty);
                // Only new and changed sites are read again.
                for i in changed {
                    self.dirty.mark(i);
                }
                tracing::info!(
                    sites = self.config.sites.len(),
                    hooks = self.config.hooks.len(),
                    "config reloaded"
                );
            }
            Reload::Rejected(e) => {
                tracing::error!(error = %e, "reload rejected; the running config stays");
            }
        }
        notify(&[NotifyState::Ready]);
        Ok(())
    }

    /// Does what is due: takes reads that are back, pings the watchdog, starts a read of
    /// each dirty or due site, reconciles the watches, expires chain steps, prunes.
    pub fn on_tick(&mut self) {
        // Results that are back already are taken before new reads start.
        while let Some(done) = self.reads.try_join_next() {
            self.on_read_done(done);
        }
        let instant = Instant::now();
        if let Some(every) = self.watchdog
            && instant >= self.next_watchdog
        {
            notify(&[NotifyState::Watchdog]);
            self.next_watchdog = instant + every;
        }
        if let Some(every) = self.status_every
            && self.is_ready
            && instant >= self.next_status
        {
            self.next_status = instant + every;
            send_status(self.config.sites.len(), &self.store);
        }
        self.start_reads();
        self.reconcile_watches();
        if !self.config.chains.is_empty() && self.next_chain_check.is_some_and(|t| instant >= t) {
            // Then not again until a step's deadline, or a run's next step is sent; never
            // while no run waits.
            self.next_chain_check = match self.store.expire_chain_steps(Timestamp::now()) {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(
                            runs = n,
                            "chain runs ended in error: no callback in time, or a step's delivery died"
                        );
                    }
                    match self
                        .store
                        .next_chain_check(Timestamp::now(), CHAIN_CHECK_EVERY)
                    {
                        Ok(due) => due.map(|t| instant + t.since(Timestamp::now())),
                        Err(e) => {
                            tracing::warn!(error = %chain(&e), "cannot check chain steps");
                            Some(instant + CHAIN_CHECK_EVERY)
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot check chain steps");
                    Some(instant + CHAIN_CHECK_EVERY)
                }
            };
        }
        if instant >= self.next_prune {
            self.next_prune = instant + PRUNE_EVERY;
            let store = self.store.clone();
            let max_age = self.config.daemon.history_max_age;
            tokio::task::spawn_blocking(move || match store.prune(max_age, Timestamp::now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "pruned delivery history"),
                Err(e) => tracing::warn!(error = %chain(&e), "cannot prune history"),
            });
        }
    }

    /// Starts a read of every site marked dirty or due (settle, idle, poll, resync, a mark
    /// during its last read); a site with a read in flight reads again when it is back.
    fn start_reads(&mut self) {
        let now = Timestamp::now();
        let instant = Instant::now();
        let mut marks = self.dirty.take();
        if instant >= self.next_resync {
            marks.all = true;
            self.next_resync = instant + self.config.daemon.resync;
            // A wake-up the daemon could not hear (a signal it was not allowed) is heard
            // here at the latest.
            self.look_again();
        }
        if marks.rescans > 0 {
            crate::metrics::get().rescans(marks.rescans);
            tracing::warn!(
                rescans = marks.rescans,
                "the watcher asked for a rescan (event queue overflow?): re-reading every site"
            );
        }
        let mut to_read = marks.sites_of(self.sites.len());
        for (i, s) in self.sites.iter_mut().enumerate() {
            let polled = s.polling && s.next_poll <= instant;
            if s.wake_at.is_some_and(|t| t <= now) || polled || (s.again && !s.in_flight()) {
                to_read.push(i);
            }
            if polled {
                s.next_poll = instant + self.config.sites[i].poll_interval;
            }
        }
        to_read.sort_unstable();
        to_read.dedup();
        for i in to_read {
            let Some(site) = self.sites.get_mut(i) else {
                continue;
            };
            if site.in_flight() {
                site.again = true;
            } else if !site.backing_off(now)
                && let Some(read) = site.start_read(&self.read_cx)
            {
                self.reads.spawn(read);
            }
        }
    }

    /// Keeps a watch on every directory the sites need; a site whose directory cannot be
    /// watched is polled.
    fn reconcile_watches(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let desired = watch::desired_watches(&self.config.sites);
        for (warning, failed_sites) in w.reconcile(desired) {
            tracing::warn!(detail = %escape(&warning), "cannot watch a directory");
            for i in failed_sites {
                if let Some(s) = self.sites.get_mut(i) {
                    s.polling = true;
                }
            }
        }
    }

    /// Waits for the first reads (a stuck one at most a few seconds: it must not keep the
    /// daemon from serving the other sites), then says the daemon is ready.
    pub async fn become_ready(&mut self) {
        let deadline = Instant::now() + FIRST_READ_WAIT;
        while !self.reads.is_empty() {
            match tokio::time::timeout_at(deadline, self.reads.join_next()).await {
                Ok(Some(done)) => self.on_read_done(done),
                Ok(None) => break,
                Err(_) => {
                    for s in self.sites.iter().filter(|s| s.in_flight()) {
                        tracing::warn!(site = %escape(&s.name), "the first read of this site has not finished; going on without it");
                    }
                    break;
                }
            }
        }
        tracing::info!(
            sites = self.config.sites.len(),
            hooks = self.config.hooks.len(),
            watches = self.watcher.as_ref().map_or(0, Watcher::count),
            polled = self.sites.iter().filter(|s| s.polling).count(),
            "daemon ready"
        );
        self.is_ready = true;
        notify(&[NotifyState::Ready]);
        if self.status_every.is_some() {
            send_status(self.config.sites.len(), &self.store);
        }
        if let Some(r) = self.ready.take() {
            let _ = r.send(());
        }
        if let Some(a) = &self.api {
            let _ = a.ready.send(true);
        }
    }

    /// Stops: waits for attempts in flight (up to `shutdown_timeout`); reads in flight
    /// are not waited for (each is one transaction or nothing).
    pub async fn shutdown(mut self) -> Result<(), Fatal> {
        notify(&[NotifyState::Stopping]);
        tracing::info!("stopping: waiting for attempts in flight");
        self.tasks
            .shutdown(self.config.daemon.shutdown_timeout)
            .await;
        self.reads.detach_all();
        tracing::info!("stopped");
        match self.fatal {
            Some(why) => Err(Fatal::Task(why)),
            None => Ok(()),
        }
    }

    fn run_hooks(&mut self) {
        run_hooks(
            &self.config,
            &self.api_hooks,
            &mut self.tasks,
            &mut self.read_cx,
            self.api.as_ref(),
        );
    }
}

/// The daemon's own files in its state directory: their events never wake it.
fn own_files(config: &Config) -> watch::OwnFiles {
    let db = crate::store::DB_FILE;
    watch::OwnFiles::of(
        &config.daemon.state_dir,
        &[
            db,
            &format!("{db}-wal"),
            &format!("{db}-shm"),
            &format!("{db}-journal"),
            crate::store::LOCK_FILE,
            verdict::FILE,
            &format!(".{}.tmp", verdict::FILE),
            listener::ADDRESS_FILE,
            &format!(".{}.tmp", listener::ADDRESS_FILE),
        ],
    )
}

/// The hooks to run: the config's, then those registered through the API (`api-<id>`,
/// refused private addresses unless `api.allow_private_targets`).
fn wanted_hooks(config: &Config, api_hooks: &[ApiHook]) -> Vec<HookConfig> {
    let public_only = !config.api.as_ref().is_some_and(|a| a.allow_private_targets);
    let mut hooks = config.hooks.clone();
    for h in api_hooks {
        match h.to_hook(public_only) {
            Ok(hook) => hooks.push(hook),
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
    *read_cx = read_cx.reconfigured(config, &hooks, tasks.wakes(), tasks.handoffs());
    // The same lists the reads use.
    let view = HookView {
        hooks: read_cx.hooks.clone(),
        config_hooks: Arc::new(config.hooks.iter().map(|h| h.name.clone()).collect()),
        wakes: read_cx.wakes.clone(),
        chains: read_cx.chains.clone(),
        callback_base: read_cx.callback_base.clone(),
        host_name: config.daemon.host_name.clone(),
    };
    tasks.publish_view(view.clone());
    if let Some(a) = api {
        a.view.send_replace(view);
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
