//! The notify adapter. A filesystem event carries no meaning: the callback only marks
//! the sites whose watched directories it touched as dirty (an overflow or `Rescan`
//! marks every site). `Dirty::take` coalesces marks; the daemon then reads snapshots.
//!
//! Watches are non-recursive, on the few directories whose *entries* change (SPEC §2):
//! the deploy root, `releases/`, `.dep/`, the mirror and its `refs/heads/`. Release
//! trees are never watched, so a build writing thousands of files costs nothing here.
//! The watch set is reconciled from the config (desired vs current), never patched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::Notify;

pub mod config_file;

pub use config_file::ConfigWatch;

use crate::config::{LayoutChoice, SiteConfig, WatchMode};
use crate::snapshot::detect_layout;

/// Sites to look at again.
#[derive(Default)]
pub struct Dirty {
    marks: Mutex<Marks>,
    notify: Notify,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    pub all: bool,
    pub sites: BTreeSet<usize>,
    /// Rescans requested by the watcher (overflow), counted for telemetry.
    pub rescans: u64,
}

impl Marks {
    pub fn is_empty(&self) -> bool {
        !self.all && self.sites.is_empty()
    }

    /// The sites to read, of `n`.
    pub fn sites_of(&self, n: usize) -> Vec<usize> {
        if self.all {
            (0..n).collect()
        } else {
            self.sites.iter().copied().filter(|i| *i < n).collect()
        }
    }
}

impl Dirty {
    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mark(&self, site: usize) {
        self.lock().sites.insert(site);
        self.notify.notify_one();
    }

    pub fn mark_all(&self) {
        self.lock().all = true;
        self.notify.notify_one();
    }

    fn rescan(&self) {
        let mut m = self.lock();
        m.all = true;
        m.rescans += 1;
        drop(m);
        self.notify.notify_one();
    }

    /// Takes every mark made so far.
    pub fn take(&self) -> Marks {
        std::mem::take(&mut *self.lock())
    }

    /// Resolves when something was marked (a mark made before the call counts).
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

type Routes = Arc<Mutex<BTreeMap<PathBuf, BTreeSet<usize>>>>;

/// The files the daemon itself writes: its log (when stdout or stderr is a file) and
/// its state directory's files. Their events are never a site's change — else a log
/// line about a read would wake the next read, and so on.
#[derive(Clone, Debug, Default)]
pub struct OwnFiles {
    /// Each as `(directory, file name)`, the directory both as given and resolved.
    files: Vec<(PathBuf, std::ffi::OsString)>,
}

impl OwnFiles {
    /// The daemon's own files: `names` in `state_dir`, and what fds 1 and 2 write to
    /// when that is a regular file.
    pub fn of(state_dir: &Path, names: &[&str]) -> OwnFiles {
        let mut own = OwnFiles::default();
        let dirs: Vec<PathBuf> = [
            Some(state_dir.to_path_buf()),
            std::fs::canonicalize(state_dir).ok(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for dir in &dirs {
            for name in names {
                own.files.push((dir.clone(), name.into()));
            }
        }
        for fd in [1, 2] {
            let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
                continue;
            };
            if std::fs::metadata(&target).is_ok_and(|m| m.is_file())
                && let (Some(dir), Some(name)) = (target.parent(), target.file_name())
            {
                own.files.push((dir.to_path_buf(), name.to_os_string()));
            }
        }
        own
    }

    /// Whether `path` is one of the daemon's own files (the directory compared as
    /// given, then resolved, only when the name matches).
    pub fn contains(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let named: Vec<&PathBuf> = self
            .files
            .iter()
            .filter(|(_, n)| n == name)
            .map(|(d, _)| d)
            .collect();
        if named.is_empty() {
            return false;
        }
        named.iter().any(|d| d.as_path() == dir)
            || std::fs::canonicalize(dir).is_ok_and(|real| named.iter().any(|d| **d == real))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the inotify watcher")]
    Start {
        #[source]
        source: notify::Error,
    },
    #[error("cannot watch {} for config file changes", dir.display())]
    Config {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// The directories to watch for each site, from the config and what exists now. Sites
/// with `watch = "poll"` have none: the daemon reads them every `poll_interval`.
pub fn desired_watches(sites: &[SiteConfig]) -> BTreeMap<PathBuf, BTreeSet<usize>> {
    let mut out: BTreeMap<PathBuf, BTreeSet<usize>> = BTreeMap::new();
    for (i, s) in sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.watch == WatchMode::Inotify)
    {
        for dir in site_dirs(s) {
            out.entry(dir).or_default().insert(i);
        }
    }
    out
}

/// How many Kudu deployment directories (the newest) are watched for in-place rewrites of
/// their `status.xml`; older ones are finished and only re-read at resync.
const KUDU_WATCHED_DEPLOYMENTS: usize = 5;

fn site_dirs(s: &SiteConfig) -> Vec<PathBuf> {
    if !s.path.is_dir() {
        // Wait for it to appear: watch the nearest existing ancestor.
        return s
            .path
            .ancestors()
            .skip(1)
            .find(|a| a.is_dir())
            .map(|a| vec![a.to_path_buf()])
            .unwrap_or_default();
    }
    let p = &s.path;
    let layout = match s.layout {
        LayoutChoice::Auto => detect_layout(p).0,
        other => other,
    };
    let mut dirs = vec![p.clone()];
    match layout {
        LayoutChoice::Releases | LayoutChoice::Auto => dirs.extend([
            p.join("releases"),
            p.join(".dep"),
            p.join("repo"),
            p.join("repo").join("refs").join("heads"),
        ]),
        LayoutChoice::Kudu => {
            let deployments = p.join("deployments");
            let mut subdirs: Vec<(std::time::SystemTime, PathBuf)> =
                std::fs::read_dir(&deployments)
                    .map(|entries| {
                        entries
                            .flatten()
                            .filter(|e| !e.file_name().to_string_lossy().starts_with("temp-"))
                            .filter_map(|e| {
                                let m = std::fs::symlink_metadata(e.path()).ok()?;
                                if m.is_dir() {
                                    Some((m.modified().ok()?, e.path()))
                                } else {
                                    None
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            subdirs.sort();
            dirs.push(deployments);
            dirs.extend(
                subdirs
                    .into_iter()
                    .rev()
                    .take(KUDU_WATCHED_DEPLOYMENTS)
                    .map(|(_, d)| d),
            );
        }
        LayoutChoice::Git => {
            dirs.extend([p.join(".git"), p.join(".git").join("refs").join("heads")]);
        }
        LayoutChoice::Marker => {
            if let Some(parent) = s.status_file.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
    }
    if let Some(r) = &s.repo {
        dirs.push(r.clone());
        dirs.push(r.join("refs").join("heads"));
    }
    dirs.retain(|d| is_real_dir(d));
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Paths whose events mean nothing: git's own lock and temp files (inside `.git` or
/// `refs/`, or a repository's top-level ones) and its object store. Other tools' lock
/// files, such as Deployer's `.dep/deploy.lock`, are signals and are kept.
fn ignored(path: &Path) -> bool {
    const GIT_TOP_LEVEL: [&str; 8] = [
        "HEAD.lock",
        "ORIG_HEAD.lock",
        "FETCH_HEAD.lock",
        "index.lock",
        "config.lock",
        "shallow.lock",
        "packed-refs.lock",
        "packed-refs.new",
    ];
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let in_git = path
        .components()
        .any(|c| c.as_os_str() == ".git" || c.as_os_str() == "refs");
    let temp = name.ends_with(".lock") || name.ends_with(".new");
    (in_git && temp)
        || GIT_TOP_LEVEL.contains(&name.as_ref())
        || path.components().any(|c| c.as_os_str() == "objects")
}

/// A directory that is not a symlink (the watcher does not follow symlinks).
fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Whether an event kind can mean a change: creates, removes, renames, writes,
/// metadata, a close after writing. Not: opens, reads, a close without a write.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The watcher's callback: marks the sites an event touches; a `Rescan` (queue
/// overflow) or a backend error marks every site.
fn route_event(
    res: notify::Result<notify::Event>,
    routes: &BTreeMap<PathBuf, BTreeSet<usize>>,
    own: &OwnFiles,
    dirty: &Dirty,
) {
    match res {
        Ok(event) if event.need_rescan() => dirty.rescan(),
        // Opens, reads and closes without a write change nothing: they are mostly the
        // daemon's own reads, which must never wake it.
        Ok(event) if !is_change(&event.kind) => {}
        Ok(event) => {
            for path in event
                .paths
                .iter()
                .filter(|p| !ignored(p) && !own.contains(p))
            {
                for key in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                    for s in routes.get(key).into_iter().flatten() {
                        dirty.mark(*s);
                    }
                }
            }
        }
        Err(_) => dirty.rescan(),
    }
}

/// The inotify watcher and the routes from watched directories to sites.
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    dirty: Arc<Dirty>,
    /// The first reconcile follows the start-up read of every site: no re-read needed.
    first: bool,
    routes: Routes,
    watched: BTreeSet<PathBuf>,
    /// Directories that could not be watched (the resync timer still covers them).
    failed: BTreeSet<PathBuf>,
}

impl Watcher {
    /// `own`: the daemon's own files, whose events are ignored.
    pub fn new(dirty: Arc<Dirty>, own: OwnFiles) -> Result<Self, WatchError> {
        let routes: Routes = Arc::default();
        let cb_routes = routes.clone();
        let cb_dirty = dirty.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let routes = cb_routes.lock().unwrap_or_else(|e| e.into_inner());
            route_event(res, &routes, &own, &cb_dirty);
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let inner = notify::RecommendedWatcher::new(handler, config)
            .map_err(|source| WatchError::Start { source })?;
        Ok(Watcher {
            inner,
            dirty,
            first: true,
            routes,
            watched: BTreeSet::new(),
            failed: BTreeSet::new(),
        })
    }

    /// Number of directories watched now.
    pub fn count(&self) -> usize {
        self.watched.len()
    }

    /// Makes the watch set equal to `desired`. Returns, for each directory that could
    /// not be watched, a warning and the sites it serves (each reported once); and marks
    /// dirty the sites that got a new watch, since their directory may have changed
    /// before the watch was in place.
    pub fn reconcile(
        &mut self,
        desired: BTreeMap<PathBuf, BTreeSet<usize>>,
    ) -> Vec<(String, BTreeSet<usize>)> {
        let mut warnings = Vec::new();
        let mut added = BTreeSet::new();
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|p| !desired.contains_key(*p))
            .cloned()
            .collect();
        for p in stale {
            let _ = self.inner.unwatch(&p);
            self.watched.remove(&p);
        }
        for p in desired.keys() {
            if self.watched.contains(p) {
                continue;
            }
            match self.inner.watch(p, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(p.clone());
                    self.failed.remove(p);
                    added.extend(desired.get(p).into_iter().flatten().copied());
                }
                Err(e) => {
                    if self.failed.insert(p.clone()) {
                        let sites = desired.get(p).cloned().unwrap_or_default();
                        warnings.push((watch_failure(p, &e), sites));
                    }
                }
            }
        }
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = desired;
        if !self.first && !added.is_empty() {
            for s in added {
                self.dirty.mark(s);
            }
        }
        self.first = false;
        warnings
    }
}

fn watch_failure(p: &Path, e: &notify::Error) -> String {
    let enospc = matches!(&e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28));
    if enospc {
        format!(
            "cannot watch {}: the inotify watch limit is reached; raise it with `sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.d/). Until then the site is polled every poll_interval",
            p.display()
        )
    } else {
        format!(
            "cannot watch {}: {e}; the site is polled every poll_interval instead",
            p.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_mark_their_sites_and_a_rescan_marks_all() {
        use notify::event::{CreateKind, Event, EventKind, Flag};
        let routes: BTreeMap<PathBuf, BTreeSet<usize>> = [
            (PathBuf::from("/srv/a"), BTreeSet::from([0])),
            (PathBuf::from("/srv/b/releases"), BTreeSet::from([1])),
        ]
        .into();
        let d = Dirty::default();
        let ev =
            Event::new(EventKind::Create(CreateKind::Folder)).add_path("/srv/b/releases/9".into());
        route_event(Ok(ev), &routes, &OwnFiles::default(), &d);
        assert_eq!(d.take().sites, BTreeSet::from([1]));
        let ev = Event::new(EventKind::Create(CreateKind::File))
            .add_path("/srv/b/releases/9/deep/file".into());
        route_event(Ok(ev), &routes, &OwnFiles::default(), &d);
        assert!(d.take().is_empty(), "nothing inside release trees");
        let ev = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        route_event(Ok(ev), &routes, &OwnFiles::default(), &d);
        let m = d.take();
        assert!(m.all && m.rescans == 1);
        route_event(
            Err(notify::Error::generic("queue overflow")),
            &routes,
            &OwnFiles::default(),
            &d,
        );
        assert!(d.take().all);
    }

    #[test]
    fn opens_reads_and_closes_without_writing_mark_nothing() {
        use notify::event::{AccessKind, AccessMode, Event, EventKind, ModifyKind};
        let routes: BTreeMap<PathBuf, BTreeSet<usize>> =
            [(PathBuf::from("/srv/a"), BTreeSet::from([0]))].into();
        let d = Dirty::default();
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            route_event(
                Ok(Event::new(kind).add_path("/srv/a/revisions.log".into())),
                &routes,
                &OwnFiles::default(),
                &d,
            );
            assert!(d.take().is_empty(), "{kind:?} is not a change");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Any),
        ] {
            route_event(
                Ok(Event::new(kind).add_path("/srv/a/revisions.log".into())),
                &routes,
                &OwnFiles::default(),
                &d,
            );
            assert_eq!(d.take().sites, BTreeSet::from([0]), "{kind:?} is a change");
        }
    }

    #[test]
    fn the_daemons_own_files_mark_nothing() {
        use notify::event::{DataChange, Event, EventKind, ModifyKind};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).unwrap_or_else(|e| panic!("{e}"));
        let routes: BTreeMap<PathBuf, BTreeSet<usize>> =
            [(site.clone(), BTreeSet::from([0]))].into();
        // The state directory is the site's directory (a marker site, say).
        let own = OwnFiles::of(&site, &["deployhook.sqlite", "deployhook.sqlite-wal"]);
        let d = Dirty::default();
        let write = |name: &str| {
            Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any)))
                .add_path(site.join(name))
        };
        route_event(Ok(write("deployhook.sqlite-wal")), &routes, &own, &d);
        assert!(d.take().is_empty(), "the outbox's own writes");
        route_event(Ok(write("status")), &routes, &own, &d);
        assert_eq!(d.take().sites, BTreeSet::from([0]), "the site's own file");
    }

    #[test]
    fn the_watch_limit_warning_names_the_sysctl() {
        let e = notify::Error::new(notify::ErrorKind::MaxFilesWatch);
        let w = watch_failure(Path::new("/srv/shop/releases"), &e);
        assert!(w.contains("fs.inotify.max_user_watches"), "{w}");
        assert!(w.contains("polled"), "{w}");
        let e = notify::Error::io(std::io::Error::from_raw_os_error(28));
        assert!(watch_failure(Path::new("/x"), &e).contains("max_user_watches"));
    }

    #[test]
    fn git_noise_is_ignored() {
        assert!(ignored(Path::new("/srv/app/.git/index.lock")));
        assert!(ignored(Path::new("/srv/app/.git/refs/heads/main.lock")));
        assert!(ignored(Path::new("/srv/app/.git/packed-refs.new")));
        assert!(ignored(Path::new("/srv/app/.git/objects/ab")));
        assert!(!ignored(Path::new("/srv/app/.git/refs/heads/main")));
        assert!(!ignored(Path::new("/srv/app/.git/packed-refs")));
        assert!(ignored(Path::new("/srv/shop/repo/packed-refs.lock")));
        assert!(ignored(Path::new("/srv/shop/repo/refs/heads/main.lock")));
        assert!(
            !ignored(Path::new("/srv/shop/.dep/deploy.lock")),
            "Deployer's lock is a signal"
        );
        assert!(!ignored(Path::new("/srv/shop/revisions.log")));
    }

    #[test]
    fn marks_coalesce() {
        let d = Dirty::default();
        d.mark(1);
        d.mark(1);
        d.mark(3);
        let m = d.take();
        assert_eq!(m.sites.into_iter().collect::<Vec<_>>(), vec![1, 3]);
        assert!(d.take().is_empty());
        d.rescan();
        let m = d.take();
        assert!(m.all);
        assert_eq!(m.rescans, 1);
        assert_eq!(m.sites_of(3), vec![0, 1, 2]);
    }
}
