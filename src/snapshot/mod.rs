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

use std::collections::{BTreeMap, HashSet};
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutSnapshot {
    /// The deployment directory does not exist (yet).
    Missing {
        path: PathBuf,
    },
    /// The directory exists but could not be read (permissions, I/O error).
    Unreadable {
        path: PathBuf,
        reason: String,
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
            LayoutSnapshot::Unreadable { .. } => "unreadable",
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
    let deployments = path.join("deployments");
    let kudu = std::fs::read_dir(&deployments).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().join("status.xml").is_file())
    });
    let current_link = std::fs::symlink_metadata(path.join("current"))
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    if kudu {
        (
            LayoutChoice::Kudu,
            "found deployments/ with status.xml files".into(),
        )
    } else if path.join("releases").is_dir() {
        (LayoutChoice::Releases, "found a releases/ directory".into())
    } else if current_link {
        (LayoutChoice::Releases, "found a current symlink".into())
    } else if path.join(".git").exists() {
        (LayoutChoice::Git, "found a .git work tree".into())
    } else {
        (
            LayoutChoice::Marker,
            "no deployments/, releases/, current or .git: a marker file".into(),
        )
    }
}

/// Reads one site; keeps caches between reads.
pub struct Reader {
    site: SiteConfig,
    commits: BTreeMap<String, Option<CommitInfo>>,
    /// Commit ranges by (from, to): they never change either.
    ranges: BTreeMap<(String, String), Option<CommitRange>>,
    /// What a releases site read last time (log offsets, settled releases).
    cache: releases::ReleasesCache,
    warned: HashSet<String>,
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
            commits: BTreeMap::new(),
            ranges: BTreeMap::new(),
            cache: releases::ReleasesCache::default(),
            warned: HashSet::new(),
        }
    }

    pub fn site(&self) -> &SiteConfig {
        &self.site
    }

    fn read_marker(&mut self, warnings: &mut Vec<Warning>) -> marker::MarkerSnapshot {
        let file = marker::read_marker(&self.site.status_file, warnings);
        let repo = self
            .site
            .repo
            .clone()
            .unwrap_or_else(|| self.site.path.clone());
        let head = git::read_head(&repo);
        let id = match &file {
            marker::MarkerFile::Ready { marker, .. } => marker.id.clone().or(head.clone()),
            _ => None,
        };
        let commit = id.and_then(|id| {
            self.commits
                .entry(id.clone())
                .or_insert_with(
                    || match git::read_commit(std::slice::from_ref(&repo), &id) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            warnings.push(Warning {
                                key: format!("commit:{id}"),
                                message: format!(
                                    "commit {id}: {e}; reporting it without author data"
                                ),
                            });
                            None
                        }
                    },
                )
                .clone()
        });
        marker::MarkerSnapshot { file, head, commit }
    }

    /// The repositories a site's commits may be in, for the layout `snap` was read as.
    fn repos(&self, snap: &Snapshot) -> Vec<PathBuf> {
        let mut repos: Vec<PathBuf> = self.site.repo.iter().cloned().collect();
        match &snap.layout {
            LayoutSnapshot::Releases(r) => {
                repos.extend(releases::candidate_repos(&self.site, r.flavour));
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
        if self.ranges.len() >= 64 {
            self.ranges.clear();
        }
        self.ranges.insert(key, range.clone());
        range
    }

    /// Reads a snapshot of the site. Never fails: problems become data or warnings.
    pub fn read(&mut self, now: Timestamp) -> (Snapshot, Vec<Warning>) {
        let mut warnings = Vec::new();
        let path = self.site.path.clone();
        let layout = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LayoutSnapshot::Missing { path },
            Err(e) => LayoutSnapshot::Unreadable {
                path,
                reason: e.to_string(),
            },
            Ok(m) if !m.is_dir() => LayoutSnapshot::Unreadable {
                path,
                reason: "not a directory".to_string(),
            },
            Ok(_) => {
                let choice = match self.site.layout {
                    LayoutChoice::Auto => detect_layout(&path).0,
                    other => other,
                };
                match choice {
                    LayoutChoice::Kudu => {
                        LayoutSnapshot::Kudu(Box::new(kudu::read_kudu(&path, &mut warnings)))
                    }
                    LayoutChoice::Git => {
                        let bare = self.site.repo.as_deref().filter(|r| *r != path);
                        let site = git::read_git_site(&path, bare, self.site.branch.as_deref());
                        if let Some(e) = &site.error {
                            warnings.push(Warning {
                                key: format!("git:{e}"),
                                message: format!("cannot read the git repository: {e}"),
                            });
                        }
                        LayoutSnapshot::Git(Box::new(site))
                    }
                    LayoutChoice::Marker => {
                        LayoutSnapshot::Marker(Box::new(self.read_marker(&mut warnings)))
                    }
                    LayoutChoice::Releases | LayoutChoice::Auto => {
                        LayoutSnapshot::Releases(Box::new(releases::read_releases(
                            &self.site,
                            &mut self.commits,
                            &mut self.cache,
                            &mut warnings,
                        )))
                    }
                }
            }
        };
        let fresh = warnings
            .into_iter()
            .filter(|w| self.warned.insert(w.key.clone()))
            .collect();
        (
            Snapshot {
                taken_at: now,
                layout,
                health: None,
            },
            fresh,
        )
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
