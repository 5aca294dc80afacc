//! Real git repositories made with the `git` CLI, with pinned author and dates.

use std::path::Path;
use std::process::Command;

/// Runs git in `dir` hermetically; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// `git` with more environment (a commit's own author date).
fn git_env(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        // The test's own git may touch repositories it chowned to another user.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Jane Doe")
        .env("GIT_AUTHOR_EMAIL", "jane@example.com")
        .env("GIT_AUTHOR_DATE", "2026-11-20T09:00:00Z")
        .env("GIT_COMMITTER_NAME", "CI Bot")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .env("GIT_COMMITTER_DATE", "2026-11-20T09:00:00Z")
        .envs(vars.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (install git): {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A source repository with one commit on `main`.
pub fn init_source(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    git(dir, &["init", "-q", "-b", "main"]);
    commit(dir, "index.html", "<h1>v1</h1>\n", "Initial site");
}

/// Commits `file` with `content`; returns the new SHA.
pub fn commit(dir: &Path, file: &str, content: &str, message: &str) -> String {
    std::fs::write(dir.join(file), content).unwrap_or_else(|e| panic!("{e}"));
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Commits `file` with `content`, written by its author at `unix_seconds`; returns the
/// new SHA.
pub fn commit_at(
    dir: &Path,
    file: &str,
    content: &str,
    message: &str,
    unix_seconds: i64,
) -> String {
    std::fs::write(dir.join(file), content).unwrap_or_else(|e| panic!("{e}"));
    git(dir, &["add", "."]);
    let date = format!("@{unix_seconds} +0000");
    git_env(
        dir,
        &["commit", "-q", "-m", message],
        &[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)],
    );
    git(dir, &["rev-parse", "HEAD"])
}
