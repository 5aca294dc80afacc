//! A temp directory per test and waiting with a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    /// Whether the outbox in `state/` (the database or its WAL) holds `needle` anywhere.
    pub fn outbox_holds(&self, needle: &str) -> bool {
        ["deployhook.sqlite", "deployhook.sqlite-wal"]
            .iter()
            .any(|f| {
                std::fs::read(self.join("state").join(f))
                    .unwrap_or_default()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            })
    }

    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("deployhook-it-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        std::fs::create_dir_all(dir.path().join("home")).unwrap_or_else(|e| panic!("{e}"));
        TestEnv { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `find`-like listing, for failure messages.
    pub fn listing(&self) -> String {
        fn walk(p: &Path, depth: usize, out: &mut String) {
            let Ok(entries) = std::fs::read_dir(p) else {
                return;
            };
            let mut entries: Vec<_> = entries.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "objects" || name == "home" {
                    continue;
                }
                let path = e.path();
                let link = std::fs::read_link(&path)
                    .map(|t| format!(" -> {}", t.display()))
                    .unwrap_or_default();
                out.push_str(&format!("{}{}{}\n", "  ".repeat(depth), name, link));
                if depth < 4 && link.is_empty() && path.is_dir() {
                    walk(&path, depth + 1, out);
                }
            }
        }
        let mut out = String::new();
        walk(self.path(), 0, &mut out);
        out
    }
}

/// Polls `cond` every 10 ms until it holds; panics with `what()` after `limit`.
pub fn wait_until(mut cond: impl FnMut() -> bool, limit: Duration, what: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {}", what());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
