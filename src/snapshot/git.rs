//! The only module that knows git2: commit data (author, email, message, time), a work
//! tree's HEAD and a branch head, all read-only.
//!
//! libgit2 refuses to open a repository owned by another user (code -36). A daemon that
//! runs as its own system user and only reads would hit that on every watched repository,
//! so `allow_foreign_owners` turns the check off once at start-up: we never write to a
//! repository, so the check protects nothing here (git's own reason for it is running
//! hooks and config of a hostile repository, which reading objects does not do).

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository, RepositoryOpenFlags};

use crate::model::{CommitInfo, CommitRange, CommitSummary, MAX_COMMITS, MAX_SHIPPED, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("no git repository to look it up in")]
    NoRepository,
    #[error("cannot open the repository {path}")]
    OpenRepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("not a valid commit id")]
    BadId,
    #[error("not found in {}{}", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "), if *.shallow { " (a shallow clone)" } else { "" })]
    CommitNotFound {
        searched: Vec<PathBuf>,
        shallow: bool,
    },
}

/// Turns off libgit2's repository-owner check for this process (see the module docs).
pub fn allow_foreign_owners() -> Result<(), git2::Error> {
    // SAFETY: called once at start-up before any other git2 use; it only sets a global
    // option inside libgit2.
    unsafe { git2::opts::set_verify_owner_validation(false) }
}

fn open(path: &Path) -> Result<Repository, git2::Error> {
    // No search upwards: the path given is the repository (bare, or a work tree).
    Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
}

/// Looks `sha` up in the first repository of `repos` that has it.
pub fn read_commit(repos: &[PathBuf], sha: &str) -> Result<CommitInfo, GitError> {
    let oid = Oid::from_str(sha).map_err(|_| GitError::BadId)?;
    let mut last_open_error = None;
    let mut searched = Vec::new();
    let mut shallow = false;
    for path in repos {
        let repo = match open(path) {
            Ok(r) => r,
            Err(source) => {
                if source.code() != ErrorCode::NotFound {
                    last_open_error = Some(GitError::OpenRepository {
                        path: path.clone(),
                        source,
                    });
                }
                continue;
            }
        };
        searched.push(path.clone());
        shallow |= repo.is_shallow();
        // Short ids (7+ hex digits) are resolved too.
        let found = if sha.len() < 40 {
            repo.revparse_single(sha).and_then(|o| o.peel_to_commit())
        } else {
            repo.find_commit(oid)
        };
        if let Ok(c) = found {
            return Ok(commit_info(&c));
        }
    }
    if searched.is_empty() {
        return Err(last_open_error.unwrap_or(GitError::NoRepository));
    }
    Err(GitError::CommitNotFound { searched, shallow })
}

/// How many commits a range walk visits at most: a `from` that is no ancestor of `to`
/// in a huge history must not make one read walk all of it.
const MAX_WALK: usize = 10_000;
/// A listed commit's message: its first line, at most this many bytes.
const MAX_LINE: usize = 200;

/// The commits reachable from `to` but not from `from` (`git log from..to`), newest
/// first, at most `MAX_COMMITS` listed and `MAX_SHIPPED` recorded with their author
/// times, from the first repository of `repos` that holds both.
/// `None` when no repository holds both, or the walk gives up.
pub fn commits_between(repos: &[PathBuf], from: &str, to: &str) -> Option<CommitRange> {
    let (from, to) = (Oid::from_str(from).ok()?, Oid::from_str(to).ok()?);
    for path in repos {
        let Ok(repo) = open(path) else {
            continue;
        };
        let (Ok(_), Ok(_)) = (repo.find_commit(from), repo.find_commit(to)) else {
            continue;
        };
        return walk(&repo, from, to).ok().flatten();
    }
    None
}

/// The URL of the `origin` remote of the first repository of `repos` that has one, with
/// any credentials removed (it is sent to DORA tools). Capped; control characters refused.
pub fn origin_url(repos: &[PathBuf]) -> Option<String> {
    repos.iter().find_map(|path| {
        let repo = open(path).ok()?;
        let remote = repo.find_remote("origin").ok()?;
        let url = remote.url().ok()?.trim();
        if url.is_empty() || url.len() > 1024 || url.chars().any(char::is_control) {
            return None;
        }
        match url::Url::parse(url) {
            Ok(mut u) if matches!(u.scheme(), "http" | "https") || u.password().is_some() => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                Some(u.to_string())
            }
            _ => Some(url.to_string()),
        }
    })
}

/// The author time of commit `sha`, from the first repository of `repos` that holds it.
pub fn authored(repos: &[PathBuf], sha: &str) -> Option<Timestamp> {
    let oid = Oid::from_str(sha).ok()?;
    repos.iter().find_map(|path| {
        let repo = open(path).ok()?;
        let c = repo.find_commit(oid).ok()?;
        Some(Timestamp::from_unix_seconds(c.author().when().seconds()))
    })
}

fn walk(repo: &Repository, from: Oid, to: Oid) -> Result<Option<CommitRange>, git2::Error> {
    use crate::model::{cap_text, caps};
    let mut revwalk = repo.revwalk()?;
    revwalk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    revwalk.push(to)?;
    revwalk.hide(from)?;
    let mut range = CommitRange::default();
    for (n, oid) in revwalk.enumerate() {
        if n >= MAX_WALK {
            return Ok(None);
        }
        if range.shipped.len() == MAX_SHIPPED {
            break;
        }
        let c = repo.find_commit(oid?)?;
        range.shipped.push((
            c.id().to_string(),
            Timestamp::from_unix_seconds(c.author().when().seconds()),
        ));
        if range.commits.len() == MAX_COMMITS {
            range.truncated = true;
            continue;
        }
        // Only the head of a field is decoded: a commit can hold megabytes.
        let head = |b: &[u8], max: usize| {
            let b = &b[..b.len().min(max * 4)];
            String::from_utf8_lossy(b).into_owned()
        };
        let message = head(c.message_bytes(), MAX_LINE);
        range.commits.push(CommitSummary {
            sha: c.id().to_string(),
            author: cap_text(&head(c.author().name_bytes(), caps::SHORT), caps::SHORT),
            message: cap_text(message.lines().next().unwrap_or("").trim_end(), MAX_LINE),
        });
    }
    Ok(Some(range))
}

/// The commit a work tree's HEAD points at.
pub fn read_head(work_tree: &Path) -> Option<String> {
    let repo = open(work_tree).ok()?;
    let head = repo.head().ok()?;
    head.peel_to_commit().ok().map(|c| c.id().to_string())
}

/// Whether a git error means "not there" (no repository, no such ref, an unborn
/// branch): data, not a failed read.
fn is_absent(e: &git2::Error) -> bool {
    matches!(e.code(), ErrorCode::NotFound | ErrorCode::UnbornBranch)
}

fn read_error(path: &Path, e: &git2::Error) -> super::ReadError {
    super::ReadError {
        path: path.to_path_buf(),
        reason: format!("git: {}", e.message()),
    }
}

/// `read_head`, where only "not there" is `None`: any other error (permissions, a
/// corrupt or unreadable repository) fails the read.
pub fn read_head_checked(work_tree: &Path) -> Result<Option<String>, super::ReadError> {
    let repo = match open(work_tree) {
        Ok(r) => r,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(read_error(work_tree, &e)),
    };
    let head = match repo.head() {
        Ok(h) => h,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(read_error(work_tree, &e)),
    };
    match head.peel_to_commit() {
        Ok(c) => Ok(Some(c.id().to_string())),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(read_error(work_tree, &e)),
    }
}

/// The branch name and the commit `branch` (default: what HEAD names) points at in
/// `repo` (bare or not). Packed and loose refs are both read by libgit2.
/// Only "not there" (no repository, no such branch) is `None`; any other error fails
/// the read: a mirror read as "no head" would make its next head look like a move.
pub fn read_branch_head(
    path: &Path,
    branch: Option<&str>,
) -> Result<Option<(String, String)>, super::ReadError> {
    let absent_or = |e: git2::Error| {
        if is_absent(&e) {
            Ok(None)
        } else {
            Err(read_error(path, &e))
        }
    };
    let repo = match open(path) {
        Ok(r) => r,
        Err(e) => return absent_or(e),
    };
    let reference = match branch {
        Some(b) => repo.find_reference(&format!("refs/heads/{b}")),
        None => repo.head(),
    };
    let reference = match reference {
        Ok(r) => r,
        Err(e) => return absent_or(e),
    };
    let name = reference.shorthand().unwrap_or_default().to_string();
    match reference.peel_to_commit() {
        Ok(c) => Ok(Some((name, c.id().to_string()))),
        Err(e) => absent_or(e),
    }
}

/// What the `git` layout reads of a site.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitSite {
    /// The watched branch's name.
    pub branch: Option<String>,
    /// The commit the watched branch points at (packed or loose: always re-resolved).
    pub branch_commit: Option<String>,
    /// The commit HEAD points at (the work tree's; for a bare repository plus deploy
    /// dir, the branch's).
    pub head_commit: Option<String>,
    /// Tracked files of the work tree (or deploy dir) match `branch_commit`'s tree.
    pub tree_matches: bool,
    /// Commit data of `branch_commit`.
    pub commit: Option<CommitInfo>,
    /// Why the repository could not be read, if it could not.
    pub error: Option<String>,
}

/// Reads a push/pull-to-deploy site: `work_tree` is a non-bare repository's work tree,
/// or (with `bare`) the directory a post-receive script checks `bare` out into.
///
/// A repository or branch that is not there is data (`error`); any other error fails
/// the read.
pub fn read_git_site(
    work_tree: &Path,
    bare: Option<&Path>,
    branch: Option<&str>,
) -> Result<GitSite, super::ReadError> {
    match read_git_site_inner(work_tree, bare, branch) {
        Ok(s) => Ok(s),
        Err(e) if is_absent(&e) => Ok(GitSite {
            error: Some(e.message().to_string()),
            ..GitSite::default()
        }),
        Err(e) => Err(read_error(bare.unwrap_or(work_tree), &e)),
    }
}

impl GitError {
    /// A repository that exists but could not be opened: the read fails (and is
    /// tried again), rather than a commit reported without its author.
    pub fn is_read_failure(&self) -> bool {
        matches!(self, GitError::OpenRepository { .. })
    }
}

fn read_git_site_inner(
    work_tree: &Path,
    bare: Option<&Path>,
    branch: Option<&str>,
) -> Result<GitSite, git2::Error> {
    let repo = match bare {
        Some(b) => {
            let r = open(b)?;
            r.set_workdir(work_tree, false)?;
            r
        }
        None => open(work_tree)?,
    };
    let name = match branch {
        Some(b) => b.to_string(),
        None => {
            let head = repo.find_reference("HEAD")?;
            head.symbolic_target()
                .ok()
                .flatten()
                .and_then(|t| t.strip_prefix("refs/heads/"))
                .unwrap_or("HEAD")
                .to_string()
        }
    };
    let reference = if name == "HEAD" {
        repo.head()?
    } else {
        repo.find_reference(&format!("refs/heads/{name}"))?
    };
    let commit = reference.peel_to_commit()?;
    let head_commit = if bare.is_some() {
        Some(commit.id().to_string())
    } else {
        repo.head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .map(|c| c.id().to_string())
    };
    let tree = commit.tree()?;
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(false)
        .ignore_submodules(true)
        .include_ignored(false);
    let diff = if bare.is_some() {
        repo.diff_tree_to_workdir(Some(&tree), Some(&mut opts))?
    } else {
        repo.diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))?
    };
    Ok(GitSite {
        branch: Some(name),
        branch_commit: Some(commit.id().to_string()),
        head_commit,
        tree_matches: diff.deltas().len() == 0,
        commit: Some(commit_info(&commit)),
        error: None,
    })
}

/// A commit's author data, each field capped (a repository is outside input too): the
/// message at 64 KiB, names and emails at 1 KiB. Non-UTF-8 bytes are replaced.
fn commit_info(c: &git2::Commit<'_>) -> CommitInfo {
    use crate::model::{cap_text, caps};
    let sig = c.author();
    let lossy = |b: &[u8], max: usize| {
        let b = &b[..b.len().min(max + 4)];
        cap_text(&String::from_utf8_lossy(b), max)
    };
    CommitInfo {
        author: lossy(sig.name_bytes(), caps::SHORT),
        email: lossy(sig.email_bytes(), caps::SHORT),
        message: lossy(c.message_bytes(), caps::MESSAGE)
            .trim_end()
            .to_string(),
        time: Timestamp::from_unix_seconds(sig.when().seconds()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_url_loses_its_credentials() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().to_path_buf();
        let repo = Repository::init(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(origin_url(std::slice::from_ref(&path)), None, "no origin");
        repo.remote("origin", "https://ci:s3cret@github.com/example/shop.git")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            origin_url(std::slice::from_ref(&path)).as_deref(),
            Some("https://github.com/example/shop.git")
        );
        repo.remote_set_url("origin", "git@github.com:example/shop.git")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            origin_url(&[path]).as_deref(),
            Some("git@github.com:example/shop.git")
        );
    }
}
