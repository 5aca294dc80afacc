//! The `releases` layout (Capistrano, Deployer, Ansible deploy_helper, plain): reads
//! `current`, `releases/*`, `revisions.log`, `.dep/` and the mirror's branch head.
//!
//! `read_*` functions do the I/O; `parse_*` functions take text and are pure, so the odd
//! inputs (a half-written log line, garbage) are unit-tested without files.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::file::{self, FileProblem};
use super::logtail::LogTail;
use super::{Commits, ReadError, Warning, exists, git, is_dir, list_dir, not_found};
use crate::config::SiteConfig;
use crate::model::{CommitInfo, Timestamp, cap_text, caps};

/// How long a release directory must have been unchanged before its reading is kept.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// What a `Reader` keeps between reads of a releases site, so a read costs what changed:
/// where the append-only logs were read up to, and each release directory as last read,
/// keyed by its inode and modification time (writing `REVISION` or removing
/// `DEPLOY_UNFINISHED` in it changes the directory's time; an unchanged release costs the
/// one `lstat` of the listing).
#[derive(Debug, Default)]
pub struct ReleasesCache {
    pub revisions: LogTail<LogEntry>,
    pub releases_log: LogTail<ReleasesLogEntry>,
    releases: BTreeMap<String, (u64, i128, Release)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Capistrano,
    Deployer,
    /// Plain releases, also Ansible's deploy_helper.
    Plain,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Capistrano => "capistrano",
            Flavour::Deployer => "deployer",
            Flavour::Plain => "plain",
        }
    }
}

/// Where `current` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Current {
    /// No `current` symlink.
    Absent,
    /// `current` points at `releases/<name>`, which exists.
    Release(String),
    /// `current` points at `releases/<name>`, which does not exist.
    Dangling(String),
    /// `current` points somewhere that is not a release, or is not a symlink.
    Outside(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revision {
    /// A commit id (from `REVISION`, or the release's own git HEAD).
    Sha(String),
    /// No `REVISION` file (yet).
    Missing,
    /// `REVISION` exists but could not be read or does not hold a commit id.
    Unreadable(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub revision: Revision,
    /// Ansible deploy_helper's `DEPLOY_UNFINISHED` marker is present.
    pub unfinished: bool,
    /// Deployer's `BAD_RELEASE` marker is present (a rollback moved away from it).
    pub bad: bool,
    /// Modification time of the release directory.
    pub modified: Timestamp,
    pub commit: Option<CommitInfo>,
}

impl Release {
    /// The payload id: the commit SHA, else the release name.
    pub fn id(&self) -> String {
        match &self.revision {
            Revision::Sha(s) => s.clone(),
            _ => self.name.clone(),
        }
    }

    /// What changes when the release changes on the surface we look at.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}:{}:{}",
            self.modified.0,
            self.unfinished,
            matches!(self.revision, Revision::Sha(_))
        )
    }
}

/// One complete line of Capistrano's `revisions.log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    Deployed {
        branch: String,
        sha: String,
        release: String,
        user: String,
    },
    RolledBack {
        user: String,
        release: String,
    },
    Garbage(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionsLog {
    /// How many complete lines came before `entries[0]` (the reader keeps a window of
    /// the newest ones).
    pub first: usize,
    /// Complete lines, in order (blank lines skipped).
    pub entries: Vec<LogEntry>,
    /// The file ends in a line still being written (no newline yet): not ready.
    pub partial_tail: bool,
}

impl RevisionsLog {
    /// How many complete lines the log has.
    pub fn total(&self) -> usize {
        self.first + self.entries.len()
    }
}

/// One line of Deployer's `.dep/releases_log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasesLogEntry {
    pub release_name: String,
    pub created_at: Option<Timestamp>,
    pub user: Option<String>,
    pub target: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeployerFiles {
    /// `.dep/deploy.lock` exists; its content (the user) if any.
    pub lock: Option<String>,
    /// The `release` symlink's release name, while a deploy is building.
    pub release_link: Option<String>,
    pub releases_log: Vec<ReleasesLogEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasesSnapshot {
    pub flavour: Flavour,
    pub current: Current,
    /// Release directories by name (symlinks such as `releases/current` are not releases).
    pub releases: BTreeMap<String, Release>,
    /// Capistrano's `revisions.log`, if present.
    pub revisions_log: Option<RevisionsLog>,
    /// Deployer's `.dep/` files, if the flavour is Deployer.
    pub deployer: Option<DeployerFiles>,
    /// Capistrano: the commit the mirror's branch points at.
    pub repo_head: Option<String>,
    /// Capistrano: the branch `repo_head` was read from.
    pub repo_branch: Option<String>,
    /// Capistrano: the commit data of `repo_head`.
    pub repo_head_commit: Option<CommitInfo>,
}

impl ReleasesSnapshot {
    pub fn empty(flavour: Flavour) -> Self {
        ReleasesSnapshot {
            flavour,
            current: Current::Absent,
            releases: BTreeMap::new(),
            revisions_log: None,
            deployer: None,
            repo_head: None,
            repo_branch: None,
            repo_head_commit: None,
        }
    }

    pub fn current_release(&self) -> Option<&str> {
        match &self.current {
            Current::Release(n) if self.releases.contains_key(n) => Some(n),
            _ => None,
        }
    }
}

/// Parses `revisions.log`. Only complete lines count; a trailing partial line is "not ready".
pub fn parse_revisions_log(text: &str) -> RevisionsLog {
    let mut parts: Vec<&str> = text.split('\n').collect();
    let tail = parts.pop().unwrap_or("");
    let entries = parts
        .into_iter()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(parse_revisions_log_line)
        .collect();
    RevisionsLog {
        first: 0,
        entries,
        partial_tail: !tail.trim().is_empty(),
    }
}

/// One complete line of `revisions.log`.
pub fn parse_revisions_log_line(line: &str) -> LogEntry {
    let garbage = || LogEntry::Garbage(cap_text(line, 120));
    if let Some(rest) = line.strip_prefix("Branch ") {
        // Branch <branch> (at <sha>) deployed as release <release> by <user>
        let Some((branch, rest)) = rest.split_once(" (at ") else {
            return garbage();
        };
        let Some((sha, rest)) = rest.split_once(") deployed as release ") else {
            return garbage();
        };
        let Some((release, user)) = rest.split_once(" by ") else {
            return garbage();
        };
        if release.is_empty() || release.contains(char::is_whitespace) {
            return garbage();
        }
        return LogEntry::Deployed {
            branch: cap_text(branch, caps::SHORT),
            sha: cap_text(sha, caps::SHORT),
            release: release.to_string(),
            user: cap_text(user.trim(), caps::SHORT),
        };
    }
    if let Some((user, release)) = line.split_once(" rolled back to release ") {
        let release = release.trim();
        if !release.is_empty() && !release.contains(char::is_whitespace) {
            return LogEntry::RolledBack {
                user: cap_text(user.trim(), caps::SHORT),
                release: release.to_string(),
            };
        }
    }
    garbage()
}

/// Parses Deployer's `.dep/releases_log` (one JSON object per line); bad lines are skipped.
pub fn parse_releases_log(text: &str) -> Vec<ReleasesLogEntry> {
    let mut parts: Vec<&str> = text.split('\n').collect();
    parts.pop(); // a line without its newline is still being written
    parts
        .into_iter()
        .filter_map(parse_releases_log_line)
        .collect()
}

/// One complete line of `.dep/releases_log`; `None` if it is not one of its objects.
pub fn parse_releases_log_line(line: &str) -> Option<ReleasesLogEntry> {
    #[derive(serde::Deserialize)]
    struct Line {
        release_name: serde_json::Value,
        created_at: Option<String>,
        user: Option<String>,
        target: Option<String>,
    }
    let l = serde_json::from_str::<Line>(line.trim()).ok()?;
    Some(ReleasesLogEntry {
        release_name: cap_text(
            &match l.release_name {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
            caps::SHORT,
        ),
        created_at: l.created_at.as_deref().and_then(parse_time),
        user: l
            .user
            .filter(|u| !u.is_empty())
            .map(|u| cap_text(&u, caps::SHORT)),
        target: l
            .target
            .filter(|t| !t.is_empty())
            .map(|t| cap_text(&t, caps::SHORT)),
    })
}

/// Parses an RFC 3339 time with `Z` or a numeric offset (`2026-11-20T09:14:02+01:00`);
/// `None` for anything else. Never panics, whatever the text.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(s)
}

/// Reads the flavour: `.dep/` → Deployer; `revisions.log` or `repo/` → Capistrano.
pub fn read_flavour(root: &Path) -> Result<Flavour, ReadError> {
    Ok(if is_dir(&root.join(".dep"))? {
        Flavour::Deployer
    } else if exists(&root.join("revisions.log"))? || is_dir(&root.join("repo"))? {
        Flavour::Capistrano
    } else {
        Flavour::Plain
    })
}

/// Reads the whole layout of one site.
///
/// The parts are read in the reverse of the order deploy tools write them (logs and
/// locks, then `current`, then the release listing): whatever an earlier read names was
/// created before it was read, so a later read sees it too, and a snapshot read while a
/// deploy runs never names a release it does not list (unless one was deleted between
/// the reads, which `infer` tolerates).
///
/// An error other than "not found" reading any part fails the read as a whole.
pub fn read_releases(
    site: &SiteConfig,
    commits: &mut Commits,
    cache: &mut ReleasesCache,
    warnings: &mut Vec<Warning>,
) -> Result<ReleasesSnapshot, ReadError> {
    let root = &site.path;
    let flavour = read_flavour(root)?;
    let mut snap = ReleasesSnapshot::empty(flavour);
    let releases_dir = root.join("releases");

    if flavour == Flavour::Capistrano || exists(&root.join("revisions.log"))? {
        let path = root.join("revisions.log");
        let parse = |l: &str| (!l.trim().is_empty()).then(|| parse_revisions_log_line(l));
        match cache.revisions.read(&path, parse) {
            Ok(t) => {
                snap.revisions_log = Some(RevisionsLog {
                    first: t.first,
                    entries: t.entries,
                    partial_tail: t.partial_tail,
                })
            }
            Err(FileProblem::Missing) => {}
            Err(e) => warnings.push(e.into_read_error(&path)?.warning(&path)),
        }
    }

    if flavour == Flavour::Deployer {
        let dep = root.join(".dep");
        let lock_path = dep.join("deploy.lock");
        let lock = match file::read_small(&lock_path) {
            Ok(r) => Some(cap_text(
                String::from_utf8_lossy(&r.bytes).trim(),
                caps::SHORT,
            )),
            Err(FileProblem::Missing) => None,
            Err(e) => {
                // It exists, so the lock is held; who holds it is unknown.
                warnings.push(e.into_read_error(&lock_path)?.warning(&lock_path));
                Some(String::new())
            }
        };
        let release_link = match read_release_link(root, &root.join("release"))? {
            Current::Release(n) | Current::Dangling(n) => Some(n),
            _ => None,
        };
        let log_path = dep.join("releases_log");
        let releases_log = match cache.releases_log.read(&log_path, parse_releases_log_line) {
            Ok(t) => t.entries,
            Err(FileProblem::Missing) => Vec::new(),
            Err(e) => {
                warnings.push(e.into_read_error(&log_path)?.warning(&log_path));
                Vec::new()
            }
        };
        snap.deployer = Some(DeployerFiles {
            lock,
            release_link,
            releases_log,
        });
    }

    snap.current = read_release_link(root, &root.join("current"))?;

    if let Some(entries) = list_dir(&releases_dir)? {
        for entry in entries {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || name == "current" {
                continue;
            }
            // symlink_metadata: `releases/current` (Capistrano's temp link) is no release.
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) if not_found(&e) => continue, // removed since the listing
                Err(e) => return Err(ReadError::io(&entry.path(), &e)),
            };
            if !meta.is_dir() {
                continue;
            }
            let stamp = {
                use std::os::unix::fs::MetadataExt;
                (
                    meta.ino(),
                    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                )
            };
            if let Some((ino, mtime, rel)) = cache.releases.get(&name)
                && (*ino, *mtime) == stamp
            {
                snap.releases.insert(name, rel.clone());
                continue;
            }
            let dir = entry.path();
            let mut revision = read_revision(&dir)?;
            // A clone into the release (Ansible's git module) has no HEAD commit until
            // it is done: "not yet", whatever libgit2 says meanwhile.
            if revision == Revision::Missing
                && exists(&dir.join(".git"))?
                && let Some(head) = git::read_head(&dir)
            {
                revision = Revision::Sha(head);
            }
            if let Revision::Unreadable(reason) = &revision {
                warnings.push(Warning {
                    key: format!("revision:{name}"),
                    message: format!(
                        "release {name}: REVISION is unreadable ({reason}); using the release name as id"
                    ),
                });
            }
            let modified = meta
                .modified()
                .map(Timestamp::from_system)
                .unwrap_or(Timestamp(0));
            let release = Release {
                name: name.clone(),
                revision,
                unfinished: exists(&dir.join("DEPLOY_UNFINISHED"))?,
                bad: exists(&dir.join("BAD_RELEASE"))?,
                modified,
                commit: None,
            };
            // Only a final answer is kept: a `REVISION` not there yet, or still being
            // written (its content changes without the directory's time), is read again;
            // and only for a directory quiet for a while, as file times are coarse (a
            // change within the same tick would not show).
            let settled = Timestamp::now().since(release.modified) > SETTLED;
            if settled && matches!(release.revision, Revision::Sha(_)) {
                cache
                    .releases
                    .insert(name.clone(), (stamp.0, stamp.1, release.clone()));
            }
            snap.releases.insert(name, release);
        }
    }
    cache
        .releases
        .retain(|name, _| snap.releases.contains_key(name));

    let repos = candidate_repos(site, flavour)?;
    for release in snap.releases.values_mut() {
        let Revision::Sha(sha) = &release.revision else {
            continue;
        };
        let mut own = repos.clone();
        own.push(releases_dir.join(&release.name));
        let what = format!("release {}", release.name);
        release.commit = commits.commit_of(&own, &sha.clone(), &what, warnings)?;
    }

    if flavour == Flavour::Capistrano {
        let mirror = site.repo.clone().unwrap_or_else(|| root.join("repo"));
        if exists(&mirror)?
            && let Some((branch, head)) = git::read_branch_head(&mirror, site.branch.as_deref())?
        {
            let mirrors = std::slice::from_ref(&mirror);
            snap.repo_head_commit = commits.commit_of(mirrors, &head, "the mirror", warnings)?;
            snap.repo_branch = Some(cap_text(&branch, caps::SHORT));
            snap.repo_head = Some(head);
        }
    }
    Ok(snap)
}

/// The repositories to look a release's commit up in, most specific first.
pub fn candidate_repos(site: &SiteConfig, flavour: Flavour) -> Result<Vec<PathBuf>, ReadError> {
    let mut repos = Vec::new();
    if let Some(r) = &site.repo {
        repos.push(r.clone());
    }
    match flavour {
        Flavour::Capistrano => repos.push(site.path.join("repo")),
        Flavour::Deployer => repos.push(site.path.join(".dep").join("repo")),
        Flavour::Plain => {}
    }
    let mut out = Vec::new();
    for r in repos {
        if exists(&r)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Reads `REVISION` in a release directory (a regular file of at most 1 MiB). What the
/// file is (a FIFO, too large) is data; an error reading it fails the read.
pub fn read_revision(release_dir: &Path) -> Result<Revision, ReadError> {
    let path = release_dir.join("REVISION");
    Ok(match file::read_small(&path) {
        Ok(r) => parse_revision(&r.bytes),
        Err(FileProblem::Missing) => Revision::Missing,
        Err(e) => Revision::Unreadable(e.into_read_error(&path)?.to_string()),
    })
}

/// Parses the content of `REVISION`: a hex commit id (possibly still being written).
pub fn parse_revision(bytes: &[u8]) -> Revision {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Revision::Unreadable("not UTF-8 text".into());
    };
    let t = text.trim();
    if t.is_empty() {
        return Revision::Missing;
    }
    if (7..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Revision::Sha(t.to_ascii_lowercase())
    } else {
        Revision::Unreadable("does not hold a commit id".into())
    }
}

/// Reads a symlink (`current`, `release`) and says which release it names, if any.
pub fn read_release_link(root: &Path, link: &Path) -> Result<Current, ReadError> {
    let meta = match std::fs::symlink_metadata(link) {
        Ok(m) => m,
        Err(e) if not_found(&e) => return Ok(Current::Absent),
        Err(e) => return Err(ReadError::io(link, &e)),
    };
    if !meta.file_type().is_symlink() {
        return Ok(Current::Outside(format!(
            "{} is not a symlink",
            link.display()
        )));
    }
    let target = match std::fs::read_link(link) {
        Ok(t) => t,
        Err(e) if not_found(&e) => return Ok(Current::Absent),
        Err(e) => return Err(ReadError::io(link, &e)),
    };
    let resolved = normalise(&root.join(&target));
    let releases = normalise(&root.join("releases"));
    let parent_ok = |p: &Path| {
        p == releases
            || match (std::fs::canonicalize(p), std::fs::canonicalize(&releases)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    };
    Ok(match (resolved.parent(), resolved.file_name()) {
        (Some(parent), Some(name)) if parent_ok(parent) => {
            let name = name.to_string_lossy().into_owned();
            if is_dir(&releases.join(&name))? {
                Current::Release(name)
            } else {
                Current::Dangling(name)
            }
        }
        _ => Current::Outside(target.display().to_string()),
    })
}

/// Lexical normalisation (`.` and `..`), without following symlinks.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
