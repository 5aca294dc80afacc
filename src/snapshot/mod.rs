//! Reads a site from disk and git into a `Snapshot`: what `infer` decides from.
//!
//! This stage only reads; it never writes to a site or a repository. Each layout has its
//! own file (`releases.rs`); `git.rs` is the only place that knows git2. A `Reader` keeps
//! what is worth keeping between reads of one site: commit data by SHA (commits never
//! change) and which warnings it has already logged.

pub mod git;
pub mod releases;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::{LayoutChoice, SiteConfig};
use crate::infer::model::{CommitInfo, Timestamp};

pub use releases::{
    Current, DeployerFiles, Flavour, LogEntry, Release, ReleasesLogEntry, ReleasesSnapshot,
    Revision, RevisionsLog,
};

/// What was read of one site at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub taken_at: Timestamp,
    pub layout: LayoutSnapshot,
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
    /// `layout = "auto"` found nothing it recognises (yet).
    Undetected {
        path: PathBuf,
        reason: String,
    },
    Releases(Box<ReleasesSnapshot>),
}

impl LayoutSnapshot {
    pub fn name(&self) -> &'static str {
        match self {
            LayoutSnapshot::Missing { .. } => "missing",
            LayoutSnapshot::Unreadable { .. } => "unreadable",
            LayoutSnapshot::Undetected { .. } => "undetected",
            LayoutSnapshot::Releases(_) => "releases",
        }
    }
}

/// Detects the layout of `path` for `layout = "auto"`; returns the layout and why.
pub fn detect_layout(path: &Path) -> (Option<LayoutChoice>, String) {
    let current = path.join("current");
    let is_link = std::fs::symlink_metadata(&current)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    if path.join("releases").is_dir() {
        (
            Some(LayoutChoice::Releases),
            "found a releases/ directory".to_string(),
        )
    } else if is_link {
        (
            Some(LayoutChoice::Releases),
            "found a current symlink".to_string(),
        )
    } else {
        (
            None,
            "no releases/ directory and no current symlink yet (only the releases layout is implemented in this version)".to_string(),
        )
    }
}

/// Reads one site; keeps caches between reads.
pub struct Reader {
    site: SiteConfig,
    commits: BTreeMap<String, Option<CommitInfo>>,
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
            warned: HashSet::new(),
        }
    }

    pub fn site(&self) -> &SiteConfig {
        &self.site
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
                    other => Some(other),
                };
                match choice {
                    Some(LayoutChoice::Releases) => LayoutSnapshot::Releases(Box::new(
                        releases::read_releases(&self.site, &mut self.commits, &mut warnings),
                    )),
                    _ => LayoutSnapshot::Undetected {
                        reason: detect_layout(&path).1,
                        path,
                    },
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
            },
            fresh,
        )
    }
}
