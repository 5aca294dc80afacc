//! Wires the data path: watch → snapshot → infer → store → deliver. Decides what is
//! fatal (a bad config at start, a store that will not open, a watcher that will not
//! start); everything at run time is logged once, counted and retried.
//!
//! `machine.rs` is the loop, a small state machine: a `Daemon` waits for the next event
//! (a dirty mark, a settle/idle deadline, the resync timer, a finished read, a task's
//! end, an API request, a reload or shutdown), handles it (`on_read_done`, `on_reload`,
//! …), then `on_tick` starts a read of each dirty site that has none in flight
//! (`site.rs`). Reads run concurrently and are never awaited in line, so one site never
//! holds up another. Startup and reload inject "sites dirty" marks, so they take the
//! normal path.

pub mod health;
pub mod listener;
mod machine;
pub mod relay;
pub mod site;
mod systemd;
pub mod tasks;
pub mod verdict;

use std::path::PathBuf;
#[cfg(debug_assertions)]
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch as channel};

use crate::api;
use crate::config::{self, Config, LoadError};
use crate::deliver;
use crate::store::StoreError;
use crate::telemetry::chain;
use crate::watch;
pub use listener::raise_fd_limit;
use machine::Daemon;

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
    /// A message says another process wrote the outbox (`deliveries retry`,
    /// `redeliver`, `hooks enable`: SIGUSR1): every worker looks at its queue again.
    pub look_again: Option<mpsc::Receiver<()>>,
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
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(Fatal::Signals)?;
    let (look_tx, look_rx) = mpsc::channel(1);
    let daemon = run(
        config,
        Control {
            shutdown: stop_rx,
            reload: Some(reload_rx),
            ready: None,
            config_path: Some(path),
            look_again: Some(look_rx),
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
            // One waiting is enough: several pokes at once are one look.
            _ = usr1.recv() => {
                let _ = look_tx.try_send(());
            }
            why = watcher_ended => {
                config_watch = None;
                tracing::error!(error = %why, "the config file watcher stopped; reload with `deployhook reload` or SIGHUP");
            }
        }
    }
}

/// Runs the daemon with a validated config until `control.shutdown` says stop: a small
/// state machine (`machine.rs`) fed one event at a time.
pub async fn run(config: Config, control: Control) -> Result<(), Fatal> {
    let mut daemon = Daemon::start(config, control).await?;
    daemon.on_tick();
    daemon.become_ready().await;
    while !daemon.stopping() {
        let event = daemon.next_event().await;
        daemon.on_event(event).await?;
        #[cfg(debug_assertions)]
        debug_stall();
        if daemon.stopping() {
            break;
        }
        daemon.on_tick();
    }
    daemon.shutdown().await
}

/// Debug builds only: blocks the loop while the file `$DEPLOYHOOK_DEBUG_STALL_FILE`
/// exists, so a test can show that a stuck loop stops the watchdog pings. It says so on
/// the notify socket first, so the test knows which pings came before.
#[cfg(debug_assertions)]
fn debug_stall() {
    let Some(path) = std::env::var_os("DEPLOYHOOK_DEBUG_STALL_FILE") else {
        return;
    };
    if std::path::Path::new(&path).exists() {
        systemd::notify(&[sd_notify::NotifyState::Status("debug: the loop is stalled")]);
    }
    while std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
}
