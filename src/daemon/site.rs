//! One site at run time: its reader, its last known state, its deadlines, and the read
//! that may be in flight.
//!
//! A read (snapshot → infer → commit) runs on the blocking pool, at most one per site,
//! never awaited by the loop: its result comes back through the loop's `JoinSet`, so a
//! site whose read is slow or stuck (a FIFO inside `.git/`, a hung NFS mount) delays no
//! other site, and shutdown does not wait for it. A read that panics is caught inside
//! the task: the reader comes back, the panic is logged once, and the site is read again
//! at its next wake-up. A commit that fails (a full disk) is retried with backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{ChainConfig, Config, HookConfig, SiteConfig, WatchMode};
use crate::deliver::Handoff;
use crate::events;
use crate::infer::{self, model::Inference, model::SiteState};
use crate::model::Timestamp;
use crate::model::next_backoff;
use crate::snapshot::{Health, ReadError, Reader, Warning};
use crate::store::{Inferred, Queued, Store, StoreError};
use crate::telemetry::{catch_panic, chain, escape};

pub struct SiteRuntime {
    pub name: String,
    config: SiteConfig,
    /// `None` while a read is in flight (the reader travels with it).
    reader: Option<Reader>,
    /// Marked dirty while a read was in flight: read again when it is back.
    pub again: bool,
    pub state: SiteState,
    pub wake_at: Option<Timestamp>,
    /// Anomaly and warning keys already logged (the newest `LOGGED_KEPT`).
    logged: lru::LruCache<String, ()>,
    /// The current wait after failed reads or commits, while they fail.
    backoff: Option<Duration>,
    /// Why reads of the site fail, while they do (one WARN per episode).
    read_failing: Option<String>,
    /// Read every `poll_interval` (configured, or inotify could not watch it).
    pub polling: bool,
    pub next_poll: tokio::time::Instant,
    /// The health probe's latest result, and whether a deployment waits for it.
    pub health: Option<Arc<Mutex<Health>>>,
    pub health_wanted: Arc<AtomicBool>,
}

impl SiteRuntime {
    /// A site as the store last committed it (a new site, or the daemon starting).
    pub fn load(site: &SiteConfig, store: &Store, poll_all: bool) -> Result<Self, StoreError> {
        let state = store.read_site_state(&site.name)?.unwrap_or_default();
        Ok(Self::with_state(site, state, poll_all))
    }

    fn with_state(site: &SiteConfig, state: SiteState, poll_all: bool) -> Self {
        SiteRuntime {
            name: site.name.clone(),
            config: site.clone(),
            state,
            reader: Some(Reader::new(site.clone())),
            again: false,
            wake_at: None,
            logged: lru::LruCache::sparse(LOGGED_KEPT),
            backoff: None,
            read_failing: None,
            polling: poll_all || site.watch == WatchMode::Poll,
            next_poll: tokio::time::Instant::now(),
            health: site.health_url.as_ref().map(|_| Arc::default()),
            health_wanted: Arc::default(),
        }
    }

    /// A running site under its (possibly changed) config after a reload: it keeps its
    /// state (already committed: nothing is read from the store again), deadlines,
    /// logged keys and a read in flight. A changed config gets a new reader (now, or when
    /// the read in flight is back).
    pub fn reconfigured(old: SiteRuntime, site: &SiteConfig, poll_all: bool) -> Self {
        let mut rt = Self::with_state(site, old.state, poll_all);
        rt.wake_at = old.wake_at;
        rt.logged = old.logged;
        rt.backoff = old.backoff;
        rt.read_failing = old.read_failing;
        rt.again = old.again;
        if old.config == rt.config {
            rt.reader = old.reader;
        } else if old.reader.is_none() {
            // In flight: the reader that comes back is replaced by a new one then.
            rt.reader = None;
            rt.again = true;
        }
        rt
    }

    pub fn config(&self) -> &SiteConfig {
        &self.config
    }

    pub fn in_flight(&self) -> bool {
        self.reader.is_none()
    }

    /// Whether a failed commit holds reads back until `wake_at`.
    pub fn backing_off(&self, now: Timestamp) -> bool {
        self.backoff.is_some() && self.wake_at.is_some_and(|t| t > now)
    }

    /// Starts a read of this site on the blocking pool; `None` if one is in flight.
    pub fn start_read(
        &mut self,
        cx: &ReadContext,
    ) -> Option<impl std::future::Future<Output = ReadDone> + Send + 'static> {
        let slots = cx.slots.clone();
        let reader = self.reader.take()?;
        self.again = false;
        let prev = self.state.clone();
        let health = self
            .health
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let routing = Routing {
            hooks: cx.hooks.clone(),
            chains: cx.chains.clone(),
            host: cx.host_name.clone(),
            callback_base: cx.callback_base.clone(),
        };
        let store = cx.store.clone();
        let (wakes, handoffs) = (cx.wakes.clone(), cx.handoffs.clone());
        let name = self.name.clone();
        let read = move || {
            let mut reader = reader;
            // Right after the commit, from the read's own thread: each worker gets what
            // was queued for it with its wake-up (`deliver::handoff`).
            let hand = |queued: Vec<Queued>| {
                let mut woken = BTreeSet::new();
                for q in queued {
                    if let Some(h) = handoffs.get(&q.delivery.hook) {
                        woken.insert(q.delivery.hook.clone());
                        h.hand(q);
                    }
                }
                for hook in woken {
                    if let Some(w) = wakes.get(&hook) {
                        w.notify_one();
                    }
                }
            };
            let result = catch_panic(|| {
                read_infer_commit(&mut reader, &prev, health, &routing, &store, hand)
            });
            ReadDone {
                site: name,
                reader,
                result,
            }
        };
        // At most `READ_SLOTS` reads run at once; one that takes longer than
        // `SLOW_READ` (stuck on a hung mount) gives its slot back and goes on without it,
        // so stuck sites never starve the others.
        Some(async move {
            let slot = slots.acquire_owned().await.ok();
            let mut task = tokio::task::spawn_blocking(read);
            let done = tokio::select! {
                done = &mut task => done,
                _ = tokio::time::sleep(SLOW_READ) => {
                    drop(slot);
                    task.await
                }
            };
            // Panics are caught inside the read: an error here is a cancelled task (the
            // runtime shutting down), which ends this one too.
            done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        })
    }

    /// Takes a finished read back: logs what it found, and keeps the new state if it was
    /// committed (the read already woke the workers of the hooks that got a delivery).
    /// Returns whether a deployment's end was committed (it may have started a chain run).
    pub fn finish_read(&mut self, done: ReadDone) -> bool {
        self.reader = Some(if self.reader_is_stale(&done.reader) {
            Reader::new(self.config.clone())
        } else {
            done.reader
        });
        let now = Timestamp::now();
        let read = match done.result {
            Ok(read) => read,
            Err(panic) => {
                if self.logged.put(format!("panic:{panic}"), ()).is_none() {
                    tracing::error!(site = %escape(&self.name), panic = %escape(&panic), "reading the site failed unexpectedly (a bug: please report it); it is read again at its next wake-up");
                }
                self.wake_at = Some(now.plus(self.config_resync_hint()));
                return false;
            }
        };
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                // Nothing was inferred: the site keeps its last state and is read again
                // after a backoff (1 s doubling to 30 s). One WARN per episode.
                crate::metrics::get().site_read_error(&self.name);
                let wait = next_backoff(self.backoff);
                self.backoff = Some(wait);
                self.wake_at = Some(now.plus(wait));
                if self.read_failing.is_none() {
                    tracing::warn!(site = %escape(&self.name), error = %escape(&e.to_string()), retry_in_s = wait.as_secs(), "cannot read the site; its last state is kept and it is read again");
                }
                self.read_failing = Some(e.to_string());
                return false;
            }
        };
        if self.read_failing.take().is_some() {
            tracing::info!(site = %escape(&self.name), "the site can be read again");
            self.backoff = None;
        }
        let [snapshot_us, infer_us, commit_us] = read.timings;
        tracing::debug!(site = %escape(&self.name), snapshot_us, infer_us, commit_us, "site read");
        for w in &read.warnings {
            if self.logged.put(w.key.clone(), ()).is_none() {
                tracing::warn!(site = %escape(&self.name), detail = %escape(&w.message), "site read warning");
            }
        }
        for a in &read.inference.anomalies {
            if self.logged.put(a.key.clone(), ()).is_none() {
                tracing::warn!(site = %escape(&self.name), detail = %escape(&a.message), "site anomaly");
            }
        }
        match read.committed {
            Ok(_) => {
                let ended = read
                    .inference
                    .transitions
                    .iter()
                    .any(|t| t.to.is_terminal());
                if self.backoff.take().is_some() {
                    tracing::info!(site = %escape(&self.name), "commits work again");
                }
                log_transitions(&self.name, &read.inference);
                self.state = read.inference.state;
                self.wake_at = read.inference.wake_at;
                let waiting = self.state.active.iter().any(|d| d.done_at.is_some());
                self.health_wanted.store(waiting, Ordering::Relaxed);
                ended
            }
            Err(e) => {
                // Nothing was committed: the old state stays, so the same transitions are
                // inferred again at the next read, after a backoff that doubles up to 30 s.
                // One log line per step.
                let wait = next_backoff(self.backoff);
                self.backoff = Some(wait);
                self.wake_at = Some(now.plus(wait));
                tracing::error!(site = %escape(&self.name), error = %escape(&chain(&e)), retry_in_s = wait.as_secs(), "cannot commit; will retry");
                false
            }
        }
    }

    fn reader_is_stale(&self, reader: &Reader) -> bool {
        reader.site() != &self.config
    }

    /// After a panic, the next look is at most a minute away.
    fn config_resync_hint(&self) -> Duration {
        Duration::from_secs(60).min(self.config.idle_timeout)
    }
}

/// What every read needs from the daemon.
#[derive(Clone)]
pub struct ReadContext {
    pub store: Store,
    pub hooks: Arc<Vec<HookConfig>>,
    pub chains: Arc<Vec<ChainConfig>>,
    pub host_name: String,
    /// `[api] public_url`: the base of chain callback URLs.
    pub callback_base: Option<String>,
    /// Each hook worker's wake-up: a read that queued deliveries wakes their workers
    /// right after its commit, from the read's own thread.
    pub wakes: Arc<BTreeMap<String, Arc<Notify>>>,
    /// Each hook worker's hand-off: the deliveries a read committed go with the wake-up.
    pub handoffs: Arc<BTreeMap<String, Arc<Handoff>>>,
    /// Bounds the reads running at once (shared by every site).
    pub slots: Arc<tokio::sync::Semaphore>,
}

impl ReadContext {
    /// `hooks`: the hooks the daemon runs (the config's and the API's).
    pub fn new(
        config: &Config,
        hooks: &[HookConfig],
        store: &Store,
        wakes: &BTreeMap<String, Arc<Notify>>,
        handoffs: &BTreeMap<String, Arc<Handoff>>,
    ) -> Self {
        ReadContext {
            store: store.clone(),
            hooks: Arc::new(hooks.to_vec()),
            chains: Arc::new(config.chains.clone()),
            host_name: config.daemon.host_name.clone(),
            callback_base: config.callback_base(),
            wakes: Arc::new(wakes.clone()),
            handoffs: Arc::new(handoffs.clone()),
            slots: Arc::new(tokio::sync::Semaphore::new(READ_SLOTS)),
        }
    }

    /// The same context under a reloaded config; the read slots stay (reads in flight
    /// hold some).
    pub fn reconfigured(
        &self,
        config: &Config,
        hooks: &[HookConfig],
        wakes: &BTreeMap<String, Arc<Notify>>,
        handoffs: &BTreeMap<String, Arc<Handoff>>,
    ) -> Self {
        ReadContext {
            slots: self.slots.clone(),
            ..Self::new(config, hooks, &self.store, wakes, handoffs)
        }
    }
}

/// How many anomaly and warning keys a site remembers as logged: one whose id changes
/// every deploy must not grow without end (one forgotten is at worst logged again).
const LOGGED_KEPT: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(1024) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};

/// How many site reads run at once.
pub const READ_SLOTS: usize = 8;
/// A read running longer than this gives its slot back.
const SLOW_READ: Duration = Duration::from_secs(5);

/// A read that is back, with its reader.
pub struct ReadDone {
    pub site: String,
    reader: Reader,
    /// `Err` holds the text of a panic; `Ok(Err)` a read that failed as a whole.
    result: Result<Result<SiteRead, ReadError>, String>,
}

struct SiteRead {
    /// How long the snapshot, `infer` and the commit took (µs), for the debug log.
    timings: [u128; 3],
    warnings: Vec<Warning>,
    inference: Inference,
    /// Whether the commit (if there was one) failed, and why.
    committed: Result<(), StoreError>,
}

/// What each deployment of `transitions` changed since the previous live one, where the
/// site's repository holds both commits (read once per deployment and cached).
fn commit_ranges(
    reader: &mut Reader,
    snap: &crate::snapshot::Snapshot,
    transitions: &[infer::model::Transition],
) -> std::collections::BTreeMap<u64, crate::model::CommitRange> {
    let mut ranges = std::collections::BTreeMap::new();
    for t in transitions {
        let d = &t.deployment;
        if ranges.contains_key(&d.serial) {
            continue;
        }
        let Some(from) = d.previous_id.as_deref() else {
            continue;
        };
        if let Some(range) = reader.commits_between(snap, from, &d.id) {
            ranges.insert(d.serial, range);
        }
    }
    ranges
}

/// The commits each deployment that succeeds in `transitions` shipped, with their author
/// times (DORA's lead time): its range when known, else its own commit.
fn shipped_commits(
    reader: &Reader,
    snap: &crate::snapshot::Snapshot,
    transitions: &[infer::model::Transition],
    ranges: &std::collections::BTreeMap<u64, crate::model::CommitRange>,
) -> std::collections::BTreeMap<u64, Vec<(String, Timestamp)>> {
    let mut shipped = std::collections::BTreeMap::new();
    for t in transitions
        .iter()
        .filter(|t| t.to == crate::model::Status::Success)
    {
        let d = &t.deployment;
        let commits = match ranges.get(&d.serial) {
            Some(r) => r.shipped.clone(),
            None => reader
                .commit_authored(snap, &d.id)
                .map(|at| vec![(d.id.clone(), at)])
                .unwrap_or_default(),
        };
        shipped.insert(d.serial, commits);
    }
    shipped
}

/// For an `[otlp]` export: the transitions before each one that ends a deployment now,
/// those committed already (from the outbox) and those of this read.
fn span_history(
    store: &Store,
    site: &str,
    transitions: &[infer::model::Transition],
    hooks: &[HookConfig],
) -> std::collections::BTreeMap<u64, Vec<(Timestamp, crate::model::Status)>> {
    let mut history = std::collections::BTreeMap::new();
    if !hooks
        .iter()
        .any(|h| h.format == crate::config::Format::Otlp)
    {
        return history;
    }
    for (i, t) in transitions.iter().enumerate() {
        if !t.to.is_terminal() {
            continue;
        }
        let serial = t.deployment.serial;
        // Not read: the span goes without its earlier events (said), never not at all.
        let committed = store.transitions(site, serial).unwrap_or_else(|e| {
            tracing::warn!(site = %escape(site), error = %crate::telemetry::chain(&e), "cannot read a deployment's transitions for its span");
            Vec::new()
        });
        let mut seen: Vec<(Timestamp, crate::model::Status)> = committed
            .into_iter()
            .filter_map(|(at, s)| crate::model::Status::parse(&s).map(|s| (at, s)))
            .collect();
        seen.extend(
            transitions[..i]
                .iter()
                .filter(|e| e.deployment.serial == serial)
                .map(|e| (events::transition_time(e), e.to)),
        );
        history.insert(serial, seen);
    }
    history
}

/// What a read routes its events by.
struct Routing {
    hooks: Arc<Vec<HookConfig>>,
    chains: Arc<Vec<ChainConfig>>,
    host: String,
    callback_base: Option<String>,
}

/// Reads one site, infers, and commits what changed (one transaction).
fn read_infer_commit(
    reader: &mut Reader,
    prev: &SiteState,
    health: Option<Health>,
    routing: &Routing,
    store: &Store,
    hand: impl FnOnce(Vec<Queued>),
) -> Result<SiteRead, ReadError> {
    let now = Timestamp::now();
    let t0 = std::time::Instant::now();
    let (mut snap, warnings) = reader.read(now)?;
    let t_snapshot = t0.elapsed().as_micros();
    #[cfg(test)]
    if tests::FORCE_PANIC.swap(false, Ordering::SeqCst) {
        panic!("forced inside a read of {}: \u{1b}[2J", reader.site().name);
    }
    snap.health = health;
    let params = infer::model::Params::of(reader.site());
    let t1 = std::time::Instant::now();
    let inference = infer::infer(prev, &snap, now, &params);
    let t_infer = t1.elapsed().as_micros();
    let t2 = std::time::Instant::now();
    let name = reader.site().name.clone();
    crate::metrics::get().site_read(&name);
    let committed = if inference.state != *prev || !inference.transitions.is_empty() {
        let commits = commit_ranges(reader, &snap, &inference.transitions);
        let shipped = shipped_commits(reader, &snap, &inference.transitions, &commits);
        let repository_url = reader.repository_url(&snap);
        let history = span_history(store, &name, &inference.transitions, &routing.hooks);
        let cx = events::Context {
            site: &name,
            host_name: &routing.host,
            layout: snap.layout.name(),
            commits: &commits,
            chains: &routing.chains,
            callback_base: routing.callback_base.as_deref(),
            repository_url: repository_url.as_deref(),
            history: &history,
        };
        let events = events::plan(&inference.transitions, &routing.hooks, cx);
        store
            .commit_inference(
                Inferred {
                    site: &name,
                    state: &inference.state,
                    transitions: &inference.transitions,
                    shipped: &shipped,
                    events: &events,
                },
                now,
                hand,
            )
            .map(|_| {
                for t in &inference.transitions {
                    crate::metrics::get().deployment(&name, t.to.as_str());
                }
            })
    } else {
        Ok(())
    };
    Ok(SiteRead {
        timings: [t_snapshot, t_infer, t2.elapsed().as_micros()],
        warnings,
        inference,
        committed,
    })
}

/// One log line per transition: a fixed message; what came from disk (ids, release
/// names, the tool's status text) only in escaped fields. Failures are warnings.
fn log_transitions(site: &str, inference: &Inference) {
    for t in &inference.transitions {
        let d = &t.deployment;
        let release = d.release.as_deref().map_or("-".to_string(), escape);
        let from = t.from.map_or("new", |s| s.as_str());
        let text = escape(&d.status_text);
        if t.to == crate::model::Status::Failed {
            tracing::warn!(site = %escape(site), deployment = %escape(&d.id), release = %release, from, status = %t.to, status_text = %text, "deployment failed");
        } else {
            tracing::info!(site = %escape(site), deployment = %escape(&d.id), release = %release, from, status = %t.to, status_text = %text, "transition");
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Makes the next read panic, after the snapshot is taken.
    pub static FORCE_PANIC: AtomicBool = AtomicBool::new(false);

    /// A read that panics gives its reader back, the panic is reported once, and the
    /// next read of the same site works.
    #[test]
    fn a_panicking_read_keeps_its_reader_and_the_site_is_read_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = dir.path().join("state");
        let store = Store::open(&state).unwrap_or_else(|e| panic!("{e}"));
        let site_dir = dir.path().join("site");
        std::fs::create_dir_all(&site_dir).unwrap_or_else(|e| panic!("{e}"));
        let mut cfg = SiteConfig::new("s", &site_dir);
        cfg.layout = crate::config::LayoutChoice::Marker;
        let mut rt = SiteRuntime::load(&cfg, &store, false).unwrap_or_else(|e| panic!("{e}"));
        let cx = ReadContext {
            store: store.clone(),
            hooks: Arc::new(Vec::new()),
            chains: Arc::new(Vec::new()),
            host_name: "h".into(),
            callback_base: None,
            wakes: Arc::default(),
            handoffs: Arc::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let read = |rt: &mut SiteRuntime| {
            let done = tokio.block_on(async {
                rt.start_read(&cx)
                    .unwrap_or_else(|| panic!("not in flight"))
                    .await
            });
            rt.finish_read(done);
        };

        FORCE_PANIC.store(true, Ordering::SeqCst);
        read(&mut rt);
        assert!(!rt.in_flight(), "the reader is back");
        assert!(
            rt.logged
                .iter()
                .any(|(k, _)| k.contains("forced inside a read")),
            "{:?}",
            rt.logged
        );
        assert!(rt.wake_at.is_some(), "read again at the next wake-up");
        assert!(!rt.state.initialised, "nothing was committed");

        // The next read of the same site works and commits its first state.
        crate::snapshot::marker::write_marker(
            &cfg.status_file,
            &crate::snapshot::marker::Marker {
                status: "building".into(),
                id: Some("abc1234".into()),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        read(&mut rt);
        assert!(rt.state.initialised, "the site was read after the panic");
        assert_eq!(
            store
                .read_site_state("s")
                .ok()
                .flatten()
                .map(|s| s.initialised),
            Some(true)
        );
    }
}
