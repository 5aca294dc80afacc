//! Append-only logs (`revisions.log`, `.dep/releases_log`) read from where the last read
//! stopped, so a read costs what was appended, not the years of deploys before it.
//!
//! A `LogTail` remembers the file's identity (device and inode), the offset after its
//! last complete line, how many entries came before, and a window of the newest entries
//! (what `infer` needs: the lines since its last look, and the recent ones it looks up by
//! release). A file replaced (new inode) or truncated (shorter than the offset) is read
//! from the start once. A line still being written (no newline yet) is left for the next
//! read. Lines are cut at 64 KiB; one read takes at most 64 MiB (the rest comes next time).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::file::{self, FileProblem};

/// How many of the newest entries are kept.
pub const WINDOW: usize = 1024;
/// A longer line is cut (it is garbage to every parser here).
const MAX_LINE: usize = 64 * 1024;
/// How many bytes before the offset are compared to tell an append from a rewrite.
const CHECK: usize = 64;
/// At most this much is read at once.
const MAX_READ: u64 = 64 * 1024 * 1024;

/// What a read of the log shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail<T> {
    /// How many entries came before `entries[0]`.
    pub first: usize,
    /// The newest entries, in order.
    pub entries: Vec<T>,
    /// The file ends in a line still being written.
    pub partial_tail: bool,
}

#[derive(Debug)]
pub struct LogTail<T> {
    id: Option<(u64, u64)>,
    offset: u64,
    total: usize,
    window: VecDeque<T>,
    /// The last bytes before `offset`: read again to tell an append from a rewrite of
    /// the same length or longer (truncated, then written again).
    check: Vec<u8>,
    /// How many bytes the last read took.
    pub last_read_bytes: u64,
}

impl<T> Default for LogTail<T> {
    fn default() -> Self {
        LogTail {
            id: None,
            offset: 0,
            total: 0,
            window: VecDeque::new(),
            check: Vec::new(),
            last_read_bytes: 0,
        }
    }
}

impl<T: Clone> LogTail<T> {
    /// Reads what was appended since the last read; `parse` turns a complete line into
    /// an entry (`None`: not an entry, such as a blank line).
    pub fn read(
        &mut self,
        path: &Path,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Tail<T>, FileProblem> {
        let (mut f, meta) = file::open_regular(path)?;
        let id = (meta.dev(), meta.ino());
        if self.id != Some(id) || meta.len() < self.offset {
            *self = LogTail {
                id: Some(id),
                ..LogTail::default()
            };
        }
        let io = |e: std::io::Error| FileProblem::Io(e.to_string());
        if !self.check.is_empty() {
            let mut seen = vec![0u8; self.check.len()];
            f.seek(SeekFrom::Start(self.offset - self.check.len() as u64))
                .map_err(io)?;
            let same = f.read_exact(&mut seen).is_ok() && seen == self.check;
            if !same {
                *self = LogTail {
                    id: Some(id),
                    ..LogTail::default()
                };
            }
        }
        f.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut reader = f.take(MAX_READ);
        let mut buf = vec![0u8; 64 * 1024];
        let mut line: Vec<u8> = Vec::new();
        let mut line_len = 0usize; // bytes of the current line, kept or not
        let mut read_bytes = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            read_bytes += n as u64;
            for &b in &buf[..n] {
                line_len += 1;
                if b == b'\n' {
                    self.offset += line_len as u64;
                    // A cut line's kept bytes are not the ones before the offset.
                    let whole = line_len - 1 == line.len();
                    line_len = 0;
                    self.check.clear();
                    if whole {
                        let keep = line.len().min(CHECK - 1);
                        self.check.extend_from_slice(&line[line.len() - keep..]);
                        self.check.push(b'\n');
                    }
                    let text = String::from_utf8_lossy(&line);
                    if let Some(entry) = parse(text.trim_end_matches('\r')) {
                        self.total += 1;
                        self.window.push_back(entry);
                        if self.window.len() > WINDOW {
                            self.window.pop_front();
                        }
                    }
                    line.clear();
                } else if line.len() < MAX_LINE {
                    line.push(b);
                }
            }
        }
        self.last_read_bytes = read_bytes;
        Ok(Tail {
            first: self.total - self.window.len(),
            entries: self.window.iter().cloned().collect(),
            partial_tail: !String::from_utf8_lossy(&line).trim().is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn words(line: &str) -> Option<String> {
        (!line.trim().is_empty()).then(|| line.to_string())
    }

    #[test]
    fn appends_are_read_from_the_offset_and_a_replaced_file_from_the_start() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("log");
        let append = |s: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{e}"));
            f.write_all(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        };
        let mut tail: LogTail<String> = LogTail::default();
        append("a\n\nb\nhalf");
        let t = tail.read(&path, words).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.first, t.entries.clone(), t.partial_tail),
            (0, vec!["a".into(), "b".into()], true)
        );
        append(" line\nc\n");
        let t = tail.read(&path, words).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.entries, ["a", "b", "half line", "c"]);
        assert_eq!(
            tail.last_read_bytes,
            "half line\nc\n".len() as u64,
            "only the new bytes"
        );
        let t = tail.read(&path, words).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.entries.len(), tail.last_read_bytes),
            (4, 0),
            "nothing new: nothing read"
        );

        // Rotated: a new file at the same path is read whole.
        let tmp = dir.path().join("log.new");
        std::fs::write(&tmp, "x\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("{e}"));
        let t = tail.read(&path, words).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.first, t.entries), (0, vec!["x".to_string()]));
        // Truncated in place: read from the start.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        append("y\n");
        let t = tail.read(&path, words).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.first, t.entries), (0, vec!["y".to_string()]));
    }

    #[test]
    fn the_window_keeps_the_newest_entries_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("log");
        let text: String = (0..WINDOW + 10).map(|i| format!("{i}\n")).collect();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let mut tail: LogTail<String> = LogTail::default();
        let t = tail.read(&path, words).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.first, 10);
        assert_eq!(t.entries.len(), WINDOW);
        assert_eq!(t.entries.first().map(String::as_str), Some("10"));
    }
}
