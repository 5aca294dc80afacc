//! The `marker` layout: a JSON status file (default `<path>/.deployhook-status.json`)
//! that any tool replaces atomically, e.g. `{"status":"building","id":"<sha>"}`.
//! `deployhook mark` and `deployhook wrap` write it (`write_marker`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::file::{self, FileProblem};
use crate::model::{Status, Timestamp, cap_text, caps};

pub use crate::config::DEFAULT_STATUS_FILE as DEFAULT_FILE;

/// The marker file's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkerFile {
    Absent,
    /// Unparseable or an unknown status: retried at the next read.
    NotReady {
        reason: String,
        modified: Timestamp,
    },
    Ready {
        marker: Marker,
        status: Status,
        modified: Timestamp,
        /// Identifies this version of the file (content and time), to notice rewrites.
        fingerprint: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerSnapshot {
    pub file: MarkerFile,
    /// The repository's HEAD, for the id when the marker has none.
    pub head: Option<String>,
    /// Commit data of the marker's id (or HEAD), from the repository.
    pub commit: Option<crate::model::CommitInfo>,
}

/// Parses the marker file's text. Every field is capped (the message and `statusText`
/// at 64 KiB, the rest at 1 KiB), the cut marked in the text.
pub fn parse_marker(text: &str) -> Result<(Marker, Status), String> {
    let m: Marker = serde_json::from_str(text).map_err(|e| short_reason(&e.to_string()))?;
    let status = Status::parse(&m.status)
        .ok_or_else(|| format!("unknown status {:?}", cap_text(&m.status, 40)))?;
    let short = |v: Option<String>| v.map(|v| cap_text(&v, caps::SHORT));
    let long = |v: Option<String>| v.map(|v| cap_text(&v, caps::MESSAGE));
    let m = Marker {
        status: m.status,
        id: short(m.id),
        deployer: short(m.deployer),
        message: long(m.message),
        author: short(m.author),
        author_email: short(m.author_email),
        status_text: long(m.status_text),
        progress: short(m.progress),
    };
    Ok((m, status))
}

/// A parser's complaint, cut short: it may quote the input, which is never echoed whole.
pub fn short_reason(e: &str) -> String {
    cap_text(e, 100)
}

/// Reads the marker file (a regular file of at most 1 MiB, not followed if a symlink).
/// A file that is refused (not a regular file, too large) is also a warning.
///
/// An error reading it (permissions, too many open files) fails the read.
pub fn read_marker(
    path: &Path,
    warnings: &mut Vec<super::Warning>,
) -> Result<MarkerFile, super::ReadError> {
    let read = match file::read_small(path) {
        Ok(r) => r,
        Err(FileProblem::Missing) => return Ok(MarkerFile::Absent),
        Err(e) => {
            let e = e.into_read_error(path)?;
            warnings.push(e.warning(path));
            let modified = file::modified_no_follow(path);
            return Ok(MarkerFile::NotReady {
                reason: e.to_string(),
                modified,
            });
        }
    };
    let modified = read.modified;
    let Ok(text) = String::from_utf8(read.bytes) else {
        return Ok(MarkerFile::NotReady {
            reason: "not UTF-8 text".into(),
            modified,
        });
    };
    Ok(match parse_marker(&text) {
        Ok((marker, status)) => MarkerFile::Ready {
            fingerprint: format!("{}:{}", modified.0, text.len()),
            marker,
            status,
            modified,
        },
        Err(reason) => MarkerFile::NotReady { reason, modified },
    })
}

/// Writes the marker atomically: a temp file in the same directory, then rename.
pub fn write_marker(file: &Path, marker: &Marker) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("marker"),
        std::process::id()
    ));
    let body = serde_json::to_vec_pretty(marker).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let (m, s) =
            parse_marker(r#"{"status":"building","id":"abc123","deployer":"ci","extra":1}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, Status::Building);
        assert_eq!(m.id.as_deref(), Some("abc123"));
        assert_eq!(m.deployer.as_deref(), Some("ci"));
    }

    #[test]
    fn rejects_unknown_statuses_and_half_files() {
        assert!(parse_marker(r#"{"status":"done"}"#).is_err());
        assert!(parse_marker(r#"{"status":"buil"#).is_err());
        assert!(parse_marker("").is_err());
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join(DEFAULT_FILE);
        let m = Marker {
            status: "success".into(),
            id: Some("abc".into()),
            status_text: Some("all good".into()),
            ..Marker::default()
        };
        write_marker(&file, &m).unwrap_or_else(|e| panic!("{e}"));
        match read_marker(&file, &mut Vec::new()).unwrap_or_else(|e| panic!("{e}")) {
            MarkerFile::Ready { marker, status, .. } => {
                assert_eq!(marker, m);
                assert_eq!(status, Status::Success);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(0),
            1,
            "no temp file left"
        );
    }
}
