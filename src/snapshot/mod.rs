//! Reads a site from disk and git into a `Snapshot`: what `infer` decides from.
//!
//! This stage only reads; it never writes to a site or a repository. Each layout has its
//! own file (`releases.rs`, `kudu.rs`, `marker.rs`; the `git` layout is read in `git.rs`,
//! the only place that knows git2). A `Reader` keeps
//! what is worth keeping between reads of one site: commit data by SHA (commits never
//! change) and which warnings it has already logged.

pub mod file;
pub mod git;
pub mod kudu;
pub mod logtail;
pub mod marker;
#[cfg(test)]
mod parse_props;
pub mod releases;
#[cfg(test)]
mod releases_tests;

use std::num::NonZeroUsize;

use lru::LruCache;
use std::path::{Path, PathBuf};

use crate::config::{LayoutChoice, SiteConfig};
use crate::model::{CommitInfo, CommitRange, Timestamp};

pub use releases::{
    Current, DeployerFiles, Flavour, LogEntry, Release, ReleasesLogEntry, ReleasesSnapshot,
    Revision, RevisionsLog,
};

/// What was read of one site at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub taken_at: Timestamp,
    pub layout: LayoutSnapshot,
    /// The latest `health_url` probe, when the site has one (filled in by the daemon).
    pub health: Option<Health>,
}

/// What the health probe has seen of a site's `health_url`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// The last time it answered 2xx.
    pub last_ok: Option<Timestamp>,
    pub last_checked: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Why a read of a site failed as a whole: an error other than "not found" while
/// listing or reading one of its parts (permissions, too many open files, an I/O error,
/// a repository that cannot be opened). Nothing is inferred from a partial view: the
/// site keeps its last state and is read again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {}: {reason}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub reason: String,
}

impl ReadError {
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        ReadError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// Whether `path` exists (not following a final symlink); an error other than "not
/// found" is a failed read, never "no".
pub fn exists(path: &Path) -> Result<bool, ReadError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) => Err(ReadError::io(path, &e)),
    }
}

/// Whether `path` is a directory (following symlinks, as `Path::is_dir`); an error other
/// than "not found" is a failed read.
pub fn is_dir(path: &Path) -> Result<bool, ReadError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) => Err(ReadError::io(path, &e)),
    }
}

/// "Not found": the path, or a directory on the way to it, is not there.
pub fn not_found(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// The entries of a directory, each with its name; `None` if it does not exist. Any
/// other error, listing it or any entry, fails the read.
pub fn list_dir(dir: &Path) -> Result<Option<Vec<std::fs::DirEntry>>, ReadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(ReadError::io(dir, &e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        out.push(entry.map_err(|e| ReadError::io(dir, &e))?);
    }
    Ok(Some(out))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutSnapshot {
    /// The deployment directory does not exist (yet).
    Missing {
        path: PathBuf,
    },
    Releases(Box<ReleasesSnapshot>),
    Kudu(Box<kudu::KuduSnapshot>),
    Git(Box<git::GitSite>),
    Marker(Box<marker::MarkerSnapshot>),
}

impl LayoutSnapshot {
    pub fn name(&self) -> &'static str {
        match self {
            LayoutSnapshot::Missing { .. } => "missing",
            LayoutSnapshot::Releases(_) => "releases",
            LayoutSnapshot::Kudu(_) => "kudu",
            LayoutSnapshot::Git(_) => "git",
            LayoutSnapshot::Marker(_) => "marker",
        }
    }
}

/// Detects the layout of `path` for `layout = "auto"` (SPEC §2.5); returns the layout
/// and why. Every path detects as something: `marker` is the fallback.
pub fn detect_layout(path: &Path) -> (LayoutChoice, String) {
    read_layout(path).unwrap_or_else(|e| (LayoutChoice::Marker, e.to_string()))
}

/// `detect_layout`, failing where a part could not be read (a glitch must not make a
/// site look like another layout).
pub fn read_layout(path: &Path) -> Result<(LayoutChoice, String), ReadError> {
    let deployments = path.join("deployments");
    let mut kudu = false;
    for e in list_dir(&deployments)?.unwrap_or_default() {
        let status = e.path().join("status.xml");
        match std::fs::metadata(&status) {
            Ok(m) if m.is_file() => {
                kudu = true;
                break;
            }
            Ok(_) => {}
            Err(err) if not_found(&err) => {}
            Err(err) => return Err(ReadError::io(&status, &err)),
        }
    }
    let current_link = match std::fs::symlink_metadata(path.join("current")) {
        Ok(m) => m.file_type().is_symlink(),
        Err(e) if not_found(&e) => false,
        Err(e) => return Err(ReadError::io(&path.join("current"), &e)),
    };
    let releases = is_dir(&path.join("releases"))?;
    let git = exists(&path.join(".git"))?;
    Ok(if kudu {
        (
            LayoutChoice::Kudu,
            "found deployments/ with status.xml files".into(),
        )
    } else if releases {
        (LayoutChoice::Releases, "found a releases/ directory".into())
    } else if current_link {
        (LayoutChoice::Releases, "found a current symlink".into())
    } else if git {
        (LayoutChoice::Git, "found a .git work tree".into())
    } else {
        (
            LayoutChoice::Marker,
            "no deployments/, releases/, current or .git: a marker file".into(),
        )
    })
}

/// How many commits, commit ranges and logged warnings a `Reader` remembers: a site
/// that names a new id every deploy (a marker site, say) must not grow without end.
const COMMITS_KEPT: usize = 256;
const RANGES_KEPT: usize = 64;
const WARNINGS_KEPT: usize = 1024;

/// Allocated as it fills (`sparse`): `new` takes room for all `cap` entries at once, tens
/// of KB per site that most sites never use.
fn lru<K: std::hash::Hash + Eq, V>(cap: usize) -> LruCache<K, V> {
    LruCache::sparse(NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN))
}

/// Commit data by SHA, least recently used first out (commits never change, so a
/// forgotten one is only read again).
pub struct Commits(LruCache<String, Option<CommitInfo>>);

impl Default for Commits {
    fn default() -> Self {
        Commits(lru(COMMITS_KEPT))
    }
}

impl Commits {
    /// The commit `sha` from the first of `repos` that holds it. Not found is
    /// remembered as `None` with a warning (`what` names whose commit it is); a
    /// repository that cannot be opened fails the read and is not remembered.
    pub fn commit_of(
        &mut self,
        repos: &[PathBuf],
        sha: &str,
        what: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<CommitInfo>, ReadError> {
        if let Some(c) = self.0.get(sha) {
            return Ok(c.clone());
        }
        let found = match git::read_commit(repos, sha) {
            Ok(c) => Some(c),
            Err(e) if e.is_read_failure() => {
                return Err(ReadError {
                    path: repos.first().cloned().unwrap_or_default(),
                    reason: telemetry_chain(&e),
                });
            }
            Err(e) => {
                warnings.push(Warning {
                    key: format!("commit:{sha}"),
                    message: format!(
                        "commit {sha} ({what}): {e}; reporting it without author data"
                    ),
                });
                None
            }
        };
        self.0.put(sha.to_string(), found.clone());
        Ok(found)
    }
}

fn telemetry_chain(e: &dyn std::error::Error) -> String {
    crate::telemetry::chain(e)
}

/// Reads one site; keeps caches between reads, each bounded.
pub struct Reader {
    site: SiteConfig,
    commits: Commits,
    /// Commit ranges by (from, to): they never change either.
    ranges: LruCache<(String, String), Option<CommitRange>>,
    /// What a releases site read last time (log offsets, settled releases).
    cache: releases::ReleasesCache,
    warned: LruCache<String, ()>,
    /// The repository's URL for DORA tools, once looked up.
    repository_url: Option<Option<String>>,
}

/// A warning from reading, to be logged once by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub key: String,
    pub message: String,
}

impl Reader {
    pub fn new(site: SiteConfig) -> Self {
        Reader {
            site,
            commits: Commits::default(),
            ranges: lru(RANGES_KEPT),
            repository_url: None,
            cache: releases::ReleasesCache::default(),
            warned: lru(WARNINGS_KEPT),
        }
    }

    pub fn site(&self) -> &SiteConfig {
        &self.site
    }

    fn read_marker(
        &mut self,
        warnings: &mut Vec<Warning>,
    ) -> Result<marker::MarkerSnapshot, ReadError> {
        let file = marker::read_marker(&self.site.status_file, warnings)?;
        let repo = self
            .site
            .repo
            .clone()
            .unwrap_or_else(|| self.site.path.clone());
        let head = git::read_head_checked(&repo)?;
        let id = match &file {
            marker::MarkerFile::Ready { marker, .. } => marker.id.clone().or(head.clone()),
            _ => None,
        };
        let commit = match id {
            Some(id) => {
                let repos = std::slice::from_ref(&repo);
                self.commits.commit_of(repos, &id, "the marker", warnings)?
            }
            None => None,
        };
        Ok(marker::MarkerSnapshot { file, head, commit })
    }

    /// The repositories a site's commits may be in, for the layout `snap` was read as.
    fn repos(&self, snap: &Snapshot) -> Vec<PathBuf> {
        let mut repos: Vec<PathBuf> = self.site.repo.iter().cloned().collect();
        match &snap.layout {
            LayoutSnapshot::Releases(r) => {
                repos.extend(releases::candidate_repos(&self.site, r.flavour).unwrap_or_default());
            }
            LayoutSnapshot::Git(_) | LayoutSnapshot::Marker(_) => {
                repos.push(self.site.path.clone());
            }
            _ => {}
        }
        repos.dedup();
        repos
    }

    /// The commits a deployment of `to` brought over `from` (`git log from..to`), when
    /// a repository of the site holds both; cached.
    pub fn commits_between(
        &mut self,
        snap: &Snapshot,
        from: &str,
        to: &str,
    ) -> Option<CommitRange> {
        let key = (from.to_string(), to.to_string());
        if let Some(r) = self.ranges.get(&key) {
            return r.clone();
        }
        let range = git::commits_between(&self.repos(snap), from, to);
        self.ranges.put(key, range.clone());
        range
    }

    /// The site's repository URL for DORA tools: `repository_url`, else the `origin`
    /// of its repository (looked up once).
    pub fn repository_url(&mut self, snap: &Snapshot) -> Option<String> {
        if let Some(u) = &self.site.repository_url {
            return Some(u.clone());
        }
        if self.repository_url.is_none() {
            self.repository_url = Some(git::origin_url(&self.repos(snap)));
        }
        self.repository_url.clone().flatten()
    }

    /// The author time of commit `sha`, when a repository of the site holds it.
    pub fn commit_authored(&self, snap: &Snapshot, sha: &str) -> Option<Timestamp> {
        crate::model::is_full_sha(sha)
            .then(|| git::authored(&self.repos(snap), sha))
            .flatten()
    }

    /// Reads a snapshot of the site. What a site holds (odd files, garbage) becomes
    /// data or warnings; an error other than "not found" reading any part (a glitch:
    /// permissions, too many open files, an I/O error) fails the whole read.
    pub fn read(&mut self, now: Timestamp) -> Result<(Snapshot, Vec<Warning>), ReadError> {
        let mut warnings = Vec::new();
        let path = self.site.path.clone();
        let layout = match std::fs::metadata(&path) {
            Err(e) if not_found(&e) => LayoutSnapshot::Missing { path },
            Err(e) => return Err(ReadError::io(&path, &e)),
            Ok(m) if !m.is_dir() => {
                return Err(ReadError {
                    path,
                    reason: "not a directory".to_string(),
                });
            }
            Ok(_) => {
                let choice = match self.site.layout {
                    LayoutChoice::Auto => read_layout(&path)?.0,
                    other => other,
                };
                match choice {
                    LayoutChoice::Kudu => {
                        LayoutSnapshot::Kudu(Box::new(kudu::read_kudu(&path, &mut warnings)?))
                    }
                    LayoutChoice::Git => {
                        let bare = self.site.repo.as_deref().filter(|r| *r != path);
                        let site = git::read_git_site(&path, bare, self.site.branch.as_deref())?;
                        if let Some(e) = &site.error {
                            warnings.push(Warning {
                                key: format!("git:{e}"),
                                message: format!("cannot read the git repository: {e}"),
                            });
                        }
                        LayoutSnapshot::Git(Box::new(site))
                    }
                    LayoutChoice::Marker => {
                        LayoutSnapshot::Marker(Box::new(self.read_marker(&mut warnings)?))
                    }
                    LayoutChoice::Releases | LayoutChoice::Auto => {
                        LayoutSnapshot::Releases(Box::new(releases::read_releases(
                            &self.site,
                            &mut self.commits,
                            &mut self.cache,
                            &mut warnings,
                        )?))
                    }
                }
            }
        };
        let fresh = warnings
            .into_iter()
            .filter(|w| self.warned.put(w.key.clone(), ()).is_none())
            .collect();
        Ok((
            Snapshot {
                taken_at: now,
                layout,
                health: None,
            },
            fresh,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_detects_each_layout() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mk = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
            p
        };
        let kudu = mk("kudu");
        std::fs::create_dir_all(kudu.join("deployments/abc")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(kudu.join("deployments/abc/status.xml"), "<deployment/>")
            .unwrap_or_else(|e| panic!("{e}"));
        let releases = mk("releases");
        std::fs::create_dir_all(releases.join("releases")).unwrap_or_else(|e| panic!("{e}"));
        let link = mk("link");
        std::os::unix::fs::symlink("/nowhere", link.join("current"))
            .unwrap_or_else(|e| panic!("{e}"));
        let git = mk("git");
        std::fs::create_dir_all(git.join(".git")).unwrap_or_else(|e| panic!("{e}"));
        let empty_kudu = mk("empty-deployments");
        std::fs::create_dir_all(empty_kudu.join("deployments/tools"))
            .unwrap_or_else(|e| panic!("{e}"));
        let plain = mk("plain");
        for (p, want) in [
            (&kudu, LayoutChoice::Kudu),
            (&releases, LayoutChoice::Releases),
            (&link, LayoutChoice::Releases),
            (&git, LayoutChoice::Git),
            (&empty_kudu, LayoutChoice::Marker),
            (&plain, LayoutChoice::Marker),
        ] {
            assert_eq!(detect_layout(p).0, want, "{}", p.display());
        }
    }
}
