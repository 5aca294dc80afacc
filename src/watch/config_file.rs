//! Hot reload from the file: the config file's directory is watched (non-recursively),
//! and when the file's text differs from the last text seen, the daemon is asked to
//! reload, exactly as SIGHUP asks. A change is whatever replaces the text: a write in
//! place, an editor's write-then-rename, a Kubernetes ConfigMap's `..data` symlink swap.
//!
//! Events only say "look again" (a burst is one look, after `QUIET`); the decision is
//! the text. The daemon's own reads of the file change nothing and wake nothing. Secret
//! files are not watched: rotating one takes `deployhook reload` or SIGHUP.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{WatchError, is_change};

/// How long the directory must be quiet before the file is read again: an editor's
/// steps and a ConfigMap's swap are one change.
const QUIET: Duration = Duration::from_millis(250);

/// A running watch of the config file; dropping it stops the watch.
pub struct ConfigWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The text of the config file now (`None`: it cannot be read).
fn text_of(path: &Path) -> Option<String> {
    crate::config::read_config_text(path).ok()
}

/// The directories whose entries decide what `path` reads: its own directory, and that
/// of the file its symlinks lead to (a ConfigMap's `..2026_…/` directory).
fn dirs_of(path: &Path) -> BTreeSet<PathBuf> {
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = BTreeSet::from([parent(path)]);
    if let Ok(real) = std::fs::canonicalize(path) {
        dirs.insert(parent(&real));
    }
    dirs
}

impl ConfigWatch {
    /// Starts watching `path`. Its text is read now, before the caller loads the config,
    /// so a change made between the two is not missed (at worst it reloads once more).
    /// `changed` gets a message each time the text changes.
    pub fn start(path: &Path, changed: mpsc::Sender<()>) -> Result<ConfigWatch, WatchError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let handler = move |res: notify::Result<notify::Event>| {
            // A change, an overflow or a backend error: look again.
            if res.as_ref().map_or(true, |e| is_change(&e.kind)) {
                let _ = tx.send(());
            }
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut inner = notify::RecommendedWatcher::new(handler, config)
            .map_err(|source| WatchError::Start { source })?;
        let mut watched = BTreeSet::new();
        watch_dirs(&mut inner, &mut watched, path)?;
        let mut last = text_of(path);
        let path = path.to_path_buf();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Wait until the burst is over.
                loop {
                    match tokio::time::timeout(QUIET, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                // A swap may lead the path through a new directory.
                if let Err(e) = watch_dirs(&mut inner, &mut watched, &path) {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "cannot watch the config file's directory");
                }
                let now = text_of(&path);
                if now != last {
                    last = now;
                    tracing::info!(path = %crate::telemetry::escape(&path.display().to_string()), "config file changed: reloading");
                    if changed.send(()).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(ConfigWatch { task })
    }
}

/// Makes the watches those of the directories that decide `path` now: (re)adds each
/// (one that was removed and made again needs a new watch) and drops the others (a
/// ConfigMap's old directory, gone after the swap).
fn watch_dirs(
    inner: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    path: &Path,
) -> Result<(), WatchError> {
    let dirs = dirs_of(path);
    for old in watched.difference(&dirs) {
        let _ = inner.unwatch(old);
    }
    watched.clear();
    for dir in dirs {
        inner
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Config {
                dir: dir.clone(),
                source,
            })?;
        watched.insert(dir);
    }
    Ok(())
}
