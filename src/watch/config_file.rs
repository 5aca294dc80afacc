//! Hot reload from the file: the config file's directory is watched (non-recursively),
//! and when the file's text differs from the last text seen, the daemon is asked to
//! reload, exactly as SIGHUP asks. A change is whatever replaces the text: a write in
//! place, an editor's write-then-rename, a Kubernetes ConfigMap's `..data` symlink swap.
//!
//! Only a *finished* write says "look again": the file closed after writing
//! (`IN_CLOSE_WRITE`), a rename onto its name (an editor's write-then-rename), or a
//! ConfigMap's `..data` link swapped — never a write still in progress, however long it
//! pauses. Events on other files of the directory (a log file beside it) are not
//! looked at. A burst is one look, after `QUIET`; the decision is the text. Secret files
//! are not watched: rotating one takes `deployhook reload` or SIGHUP.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::WatchError;

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

impl ConfigWatch {
    /// Resolves when the watch has stopped (it runs until dropped: an end is a failure),
    /// with why.
    pub async fn ended(&mut self) -> String {
        match (&mut self.task).await {
            Ok(()) => "it ended".to_string(),
            Err(e) if e.is_panic() => "it panicked (a bug: please report it)".to_string(),
            Err(e) => e.to_string(),
        }
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
        let file = path.to_path_buf();
        let handler = move |res: notify::Result<notify::Event>| {
            // A finished write of the file, an overflow or a backend error: look again.
            let look = match &res {
                Ok(e) if e.need_rescan() => true,
                Ok(e) => finishes_a_write(e, &file),
                Err(_) => true,
            };
            if look {
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
                // A file that cannot be read now (moved away a moment) is looked at again
                // at its next finished write; there is nothing to reload yet.
                if now.is_some() && now != last {
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

/// Whether `event` finishes a write of the config file `file`: closed after writing, a
/// rename onto its name (or onto a ConfigMap's `..data`), or a symlink made at its name.
/// A write in progress (`IN_MODIFY`), a rename away and any other file's event do not.
fn finishes_a_write(event: &notify::Event, file: &Path) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    let (paths, need_link): (&[PathBuf], bool) = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => {
            (&event.paths, false)
        }
        // From and to: only where it went counts.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => (
            event
                .paths
                .last()
                .map(std::slice::from_ref)
                .unwrap_or_default(),
            false,
        ),
        // A new regular file is still empty; a new symlink is whole.
        EventKind::Create(_) => (&event.paths, true),
        _ => return false,
    };
    let names = names_of(file);
    paths.iter().any(|p| {
        p.file_name().is_some_and(|n| names.iter().any(|m| m == n))
            && (!need_link || std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink()))
    })
}

/// The names whose finished write may change what `file` reads: its own, that of the
/// file its symlinks lead to, and a ConfigMap's `..data`.
fn names_of(file: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = vec![OsString::from("..data")];
    names.extend(file.file_name().map(OsStr::to_os_string));
    if let Ok(real) = std::fs::canonicalize(file) {
        names.extend(real.file_name().map(OsStr::to_os_string));
    }
    names
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
