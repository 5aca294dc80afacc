//! The supervisor: every long-running task — one worker per hook, one health probe per
//! site with a `health_url`, one consumer per relay `[[source]]` — runs in one `JoinSet`
//! under a name, and the loop hears at
//! once when any of them ends (a worker whose HTTP client cannot be built is an error in
//! the log right away, not at shutdown).
//!
//! Hook workers are reconciled against the wanted set, like everything else: an
//! unchanged hook's worker keeps running; a removed or changed one is told to stop after
//! the attempt it has in flight (never aborted, so a receiver never gets a duplicate for
//! it); a changed hook's new worker starts once its old one has ended, so two workers
//! never send the same queue. API-registered hooks (a later issue) are one more input to
//! the same reconcile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::health::{self, Probe};
use super::site::SiteRuntime;
use crate::config::{Config, HookConfig};
use crate::deliver::{self, WorkerContext};
use crate::store::Store;
use crate::telemetry::{chain, escape};
use crate::watch::Dirty;

/// What a task is, for the log when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskName {
    Hook(String),
    Health(String),
    Source(String),
    Recorder,
}

/// Why a task ended with an error.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

pub(super) type TaskResult = (TaskName, u64, Result<(), TaskError>);

struct HookWorker {
    config: HookConfig,
    stop: watch::Sender<bool>,
    /// Which start of this hook's worker (to tell an old one's end from the new one's).
    generation: u64,
}

pub struct Tasks {
    set: JoinSet<TaskResult>,
    store: Store,
    /// Records the attempts of every worker, several in one transaction.
    recorder: Option<deliver::Recorder>,
    in_flight: Arc<Semaphore>,
    hooks: BTreeMap<String, HookWorker>,
    /// Hooks whose old worker is finishing its attempt; started when it has ended.
    waiting: BTreeMap<String, HookConfig>,
    /// Each hook's wake-up, poked after a commit queued a delivery for it.
    wakes: BTreeMap<String, Arc<Notify>>,
    /// Each hook's hand-off: what a site read committed for it, given with the wake-up.
    handoffs: BTreeMap<String, Arc<deliver::Handoff>>,
    probes: watch::Sender<bool>,
    /// What the relay sources and the hook workers' operational events route by (the
    /// hooks that run and their wake-ups).
    sources_view: watch::Sender<crate::running::HookView>,
    sources_stop: watch::Sender<bool>,
    next_generation: u64,
    /// Each running task's name by its id, so even a panic says whose it was.
    names: std::collections::HashMap<tokio::task::Id, (TaskName, u64)>,
}

impl Tasks {
    pub fn new(store: &Store, in_flight: Arc<Semaphore>) -> Self {
        let (recorder, rx) = deliver::Recorder::new();
        let recorder_store = store.clone();
        let mut tasks = Tasks {
            set: JoinSet::new(),
            recorder: Some(recorder),
            store: store.clone(),
            in_flight,
            hooks: BTreeMap::new(),
            waiting: BTreeMap::new(),
            wakes: BTreeMap::new(),
            handoffs: BTreeMap::new(),
            probes: watch::channel(false).0,
            sources_view: watch::channel(crate::running::HookView::default()).0,
            sources_stop: watch::channel(false).0,
            next_generation: 0,
            names: std::collections::HashMap::new(),
        };
        tasks.spawn(TaskName::Recorder, 0, async move {
            deliver::run_recorder(recorder_store, rx)
                .await
                .map_err(TaskError::from)
        });
        tasks
    }

    /// Runs `task` in the set under `name` (and `generation`, for a hook's worker).
    fn spawn(
        &mut self,
        name: TaskName,
        generation: u64,
        task: impl std::future::Future<Output = Result<(), TaskError>> + Send + 'static,
    ) {
        let named = name.clone();
        let handle = self
            .set
            .spawn(async move { (named, generation, task.await) });
        self.names.insert(handle.id(), (name, generation));
    }

    pub fn wakes(&self) -> &BTreeMap<String, Arc<Notify>> {
        &self.wakes
    }

    pub fn handoffs(&self) -> &BTreeMap<String, Arc<deliver::Handoff>> {
        &self.handoffs
    }

    /// How many hook workers are running.
    pub fn hook_workers(&self) -> usize {
        self.hooks.len()
    }

    /// Makes the running hook workers match `wanted`.
    pub fn reconcile_hooks(&mut self, wanted: &[HookConfig]) {
        let wanted_by_name: BTreeMap<&str, &HookConfig> =
            wanted.iter().map(|h| (h.name.as_str(), h)).collect();
        let stale: Vec<String> = self
            .hooks
            .iter()
            .filter(|(name, w)| wanted_by_name.get(name.as_str()) != Some(&&w.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(w) = self.hooks.remove(&name) {
                let _ = w.stop.send(true);
                tracing::info!(hook = %name, "hook worker stopping (after the attempt in flight)");
                if let Some(h) = wanted_by_name.get(name.as_str()) {
                    self.waiting.insert(name.clone(), (*h).clone());
                }
            }
        }
        self.waiting
            .retain(|name, _| wanted_by_name.contains_key(name.as_str()));
        for h in wanted {
            if self.waiting.contains_key(&h.name) {
                self.waiting.insert(h.name.clone(), h.clone());
            } else if !self.hooks.contains_key(&h.name) {
                self.start_hook(h.clone());
            }
        }
    }

    fn start_hook(&mut self, hook: HookConfig) {
        let wake = self
            .wakes
            .entry(hook.name.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        let handoff = self.handoffs.entry(hook.name.clone()).or_default().clone();
        let (stop, stop_rx) = watch::channel(false);
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let cx = WorkerContext {
            store: self.store.clone(),
            recorder,
            wake,
            handoff,
            in_flight: self.in_flight.clone(),
            shutdown: stop_rx,
            view: self.sources_view.subscribe(),
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        tracing::info!(hook = %hook.name, url = %hook.display_url(), events = ?hook.events, "hook worker started");
        let name = TaskName::Hook(hook.name.clone());
        self.hooks.insert(
            hook.name.clone(),
            HookWorker {
                config: hook.clone(),
                stop,
                generation,
            },
        );
        self.spawn(name, generation, async move {
            deliver::run_hook(hook, cx).await.map_err(TaskError::from)
        });
    }

    /// Restarts the health probes for the sites of `config` (they hold nothing that a
    /// restart loses).
    pub fn reconcile_probes(&mut self, config: &Config, sites: &[SiteRuntime], dirty: &Arc<Dirty>) {
        let _ = self.probes.send(true);
        let (tx, rx) = watch::channel(false);
        self.probes = tx;
        for (i, (site, rt)) in config.sites.iter().zip(sites).enumerate() {
            if let (Some(url), Some(health)) = (&site.health_url, &rt.health) {
                let probe = Probe {
                    url: url.clone(),
                    site: i,
                    health: health.clone(),
                    wanted: rt.health_wanted.clone(),
                    dirty: dirty.clone(),
                };
                let name = TaskName::Health(site.name.clone());
                let stop = rx.clone();
                self.spawn(name, 0, async move {
                    health::run(probe, stop).await.map_err(TaskError::from)
                });
            }
        }
    }

    /// The hooks the relay sources route to from now on.
    pub fn publish_view(&self, view: crate::running::HookView) {
        self.sources_view.send_replace(view);
    }

    /// Starts one consumer per `[[source]]` (at start-up; a change waits for a restart).
    pub fn start_sources(&mut self, config: &Config) {
        for source in &config.sources {
            let name = TaskName::Source(source.name.clone());
            let run = super::relay::run(
                source.clone(),
                self.sources_view.subscribe(),
                self.store.clone(),
                config.daemon.host_name.clone(),
                self.sources_stop.subscribe(),
            );
            self.spawn(name, 0, async move { run.await.map_err(TaskError::from) });
        }
    }

    /// The next task to end (pending forever while none runs).
    pub async fn join_next(&mut self) -> Option<Result<TaskResult, tokio::task::JoinError>> {
        if self.set.is_empty() {
            std::future::pending::<()>().await;
        }
        match self.set.join_next_with_id().await? {
            Ok((id, r)) => {
                self.names.remove(&id);
                Some(Ok(r))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// A task ended: says so at once; starts a hook's waiting worker. `Err` when the
    /// daemon cannot go on without it (the attempt recorder: every worker would wait
    /// forever), so the daemon exits and systemd restarts it cleanly.
    pub fn ended(&mut self, r: Result<TaskResult, tokio::task::JoinError>) -> Result<(), String> {
        let (name, generation, result) = match r {
            Ok(r) => r,
            Err(e) => {
                let name = self.names.remove(&e.id());
                let panic = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                tracing::error!(task = ?name.as_ref().map(|n| &n.0), "a daemon task {panic} (a bug: please report it)");
                return match name {
                    Some((TaskName::Recorder, _)) => Err(format!("the attempt recorder {panic}")),
                    Some((TaskName::Hook(hook), generation)) => {
                        // The current worker of its hook is gone: started again at once.
                        let current = self
                            .hooks
                            .get(&hook)
                            .is_some_and(|w| w.generation == generation);
                        if current && let Some(w) = self.hooks.remove(&hook) {
                            self.start_hook(w.config);
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                };
            }
        };
        match (&name, result) {
            (TaskName::Hook(hook), result) => {
                let current = self
                    .hooks
                    .get(hook)
                    .is_some_and(|w| w.generation == generation);
                if let Err(e) = result {
                    tracing::error!(hook = %hook, error = %escape(&chain(e.as_ref())), "hook worker failed: its deliveries wait until the config is fixed and reloaded");
                } else if current {
                    tracing::warn!(hook = %hook, "hook worker ended");
                }
                if current {
                    self.hooks.remove(hook);
                }
                if let Some(h) = self.waiting.remove(hook) {
                    self.start_hook(h);
                }
            }
            (TaskName::Health(site), Err(e)) => {
                tracing::error!(site = %escape(site), error = %escape(&chain(e.as_ref())), "health probe failed");
            }
            (TaskName::Health(_), Ok(())) => {}
            (TaskName::Source(source), Err(e)) => {
                tracing::error!(source = %escape(source), error = %escape(&chain(e.as_ref())), "relay source failed");
            }
            (TaskName::Source(_), Ok(())) => {}
            (TaskName::Recorder, result) => {
                let why = match result {
                    Err(e) => chain(e.as_ref()),
                    Ok(()) => "it ended".to_string(),
                };
                tracing::error!(error = %escape(&why), "the attempt recorder stopped: the daemon cannot record attempts and stops");
                return Err(format!("the attempt recorder stopped: {why}"));
            }
        }
        Ok(())
    }

    /// Stops everything; attempts in flight get up to `grace` to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        for w in self.hooks.values() {
            let _ = w.stop.send(true);
        }
        let _ = self.probes.send(true);
        let _ = self.sources_stop.send(true);
        // The recorder ends once the last worker (and this handle) is gone.
        self.recorder = None;
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = self.set.join_next().await {
                if let Ok((TaskName::Hook(hook), _, Err(e))) = r {
                    tracing::error!(hook = %hook, error = %escape(&chain(e.as_ref())), "hook worker failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "attempts still in flight after the shutdown timeout; they will be sent again at the next start"
            );
            self.set.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str) -> HookConfig {
        let url = url::Url::parse("http://127.0.0.1:9/").unwrap_or_else(|e| panic!("{e}"));
        HookConfig::new(name, url)
    }

    /// A hook's worker that ends with an error (as one whose HTTP client cannot be
    /// built does, at once) is heard at once, not at shutdown, and the next reconcile
    /// starts it again; an unchanged hook's worker is left alone by a reconcile.
    /// Runs `test` with a supervisor over a new outbox, on a current-thread runtime.
    fn with_tasks<F: std::future::Future<Output = ()>>(test: impl FnOnce(Tasks) -> F) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async { test(Tasks::new(&store, Arc::new(Semaphore::new(4)))).await });
    }

    #[test]
    fn a_worker_that_fails_is_heard_at_once_and_restarted_by_the_next_reconcile() {
        with_tasks(|mut tasks| async move {
            tasks.reconcile_hooks(&[hook("good"), hook("bad")]);
            assert_eq!(tasks.hook_workers(), 2);
            let generation = tasks.hooks.get("bad").map(|w| w.generation);
            // Stand in for the failing start of "bad"'s worker.
            if let Some(w) = tasks.hooks.get("bad") {
                let _ = w.stop.send(true);
            }
            let g = generation.unwrap_or(0);
            tasks.set.spawn(async move {
                let e: TaskError = "cannot build the HTTP client".into();
                (TaskName::Hook("bad".into()), g, Err(e))
            });
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    let r = tasks.join_next().await;
                    let is_failure =
                        matches!(&r, Some(Ok((TaskName::Hook(h), _, Err(_)))) if h == "bad");
                    if let Some(r) = r {
                        assert!(tasks.ended(r).is_ok(), "a hook's worker is not fatal");
                    }
                    if is_failure {
                        return true;
                    }
                }
            })
            .await;
            assert_eq!(ended, Ok(true), "the failure is heard without a shutdown");
            assert!(
                !tasks.hooks.contains_key("bad"),
                "a failed worker is not counted as running"
            );
            let good_generation = tasks.hooks.get("good").map(|w| w.generation);
            tasks.reconcile_hooks(&[hook("good"), hook("bad")]);
            assert!(tasks.hooks.contains_key("bad"), "started again");
            assert_eq!(
                tasks.hooks.get("good").map(|w| w.generation),
                good_generation,
                "the unchanged worker was not restarted"
            );
            tasks.shutdown(Duration::from_secs(1)).await;
        });
    }

    /// A panic is told with the task's name, and the hook's worker started again; the
    /// attempt recorder's end is fatal (every worker would wait for it forever).
    #[test]
    fn a_panicking_worker_is_named_and_restarted_and_the_recorders_end_is_fatal() {
        with_tasks(|mut tasks| async move {
            tasks.reconcile_hooks(&[hook("good")]);
            let g = tasks.hooks.get("good").map_or(0, |w| w.generation);
            tasks.spawn(TaskName::Hook("good".into()), g, async {
                panic!("a bug in a worker");
            });
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match tasks.join_next().await {
                        Some(Err(e)) if e.is_panic() => return Some(Err(e)),
                        Some(other) => {
                            let _ = tasks.ended(other);
                        }
                        None => return None,
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the panic was not heard"));
            let Some(r) = r else {
                panic!("no task ended");
            };
            assert!(tasks.ended(r).is_ok());
            let now = tasks.hooks.get("good").map(|w| w.generation);
            assert!(now.is_some_and(|n| n != g), "started again: {now:?}");

            tasks.spawn(TaskName::Recorder, 0, async { Ok(()) });
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if let Some(Ok((TaskName::Recorder, g, res))) = tasks.join_next().await {
                        return (TaskName::Recorder, g, res);
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the recorder's end was not heard"));
            assert!(tasks.ended(Ok(r)).is_err(), "the recorder's end is fatal");
            tasks.shutdown(Duration::from_secs(1)).await;
        });
    }
}
