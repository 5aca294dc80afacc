//! The `kudu` layout: `<path>/deployments/<id>/status.xml` and `deployments/active`.
//! `status.xml` is parsed with quick-xml + serde, with Kudu's element names,
//! `True`/`False` booleans and empty elements (`<endTime />`). Kudu rewrites the file in
//! place, so a read can see it half-written: that is "not ready", not corrupt.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::file::{self, FileProblem};
use super::marker::short_reason;
use super::releases::parse_time;
use super::{ReadError, Warning, list_dir, not_found};
use crate::model::{Status, Timestamp, cap_text, caps};

/// One deployment as `status.xml` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KuduStatus {
    pub id: String,
    pub status: Option<Status>,
    pub status_text: String,
    pub author: Option<String>,
    pub author_email: Option<String>,
    pub message: Option<String>,
    pub deployer: Option<String>,
    pub progress: String,
    pub received_time: Option<Timestamp>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    pub last_success_end_time: Option<Timestamp>,
    pub complete: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KuduEntry {
    Ready {
        status: Box<KuduStatus>,
        modified: Timestamp,
    },
    /// Could not be read or parsed (yet): retried at the next read.
    NotReady { reason: String, modified: Timestamp },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KuduSnapshot {
    /// Deployments by directory name (`temp-*` and directories without `status.xml`
    /// are not deployments).
    pub deployments: BTreeMap<String, KuduEntry>,
    /// The content of `deployments/active`: the live deployment's id.
    pub active: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename = "deployment")]
struct Xml {
    id: Option<String>,
    author: Option<String>,
    deployer: Option<String>,
    #[serde(rename = "authorEmail")]
    author_email: Option<String>,
    message: Option<String>,
    progress: Option<String>,
    status: Option<String>,
    #[serde(rename = "statusText")]
    status_text: Option<String>,
    #[serde(rename = "lastSuccessEndTime")]
    last_success_end_time: Option<String>,
    #[serde(rename = "receivedTime")]
    received_time: Option<String>,
    #[serde(rename = "startTime")]
    start_time: Option<String>,
    #[serde(rename = "endTime")]
    end_time: Option<String>,
    complete: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A trimmed, non-empty field, capped at `max` bytes.
fn field(s: Option<String>, max: usize) -> Option<String> {
    nonempty(s).map(|s| cap_text(&s, max))
}

/// Parses the text of a `status.xml`.
pub fn parse_status_xml(text: &str) -> Result<KuduStatus, String> {
    if text.trim().is_empty() {
        return Err("empty".into());
    }
    let x: Xml = quick_xml::de::from_str(text).map_err(|e| short_reason(&e.to_string()))?;
    let status_name = nonempty(x.status).ok_or("no <status> element")?;
    let status = match status_name.as_str() {
        "Pending" => Status::Pending,
        "Building" => Status::Building,
        "Deploying" => Status::Deploying,
        "Failed" => Status::Failed,
        "Success" => Status::Success,
        other => return Err(format!("unknown status {:?}", cap_text(other, 40))),
    };
    let time = |s: Option<String>| nonempty(s).as_deref().and_then(parse_time);
    Ok(KuduStatus {
        id: field(x.id, caps::SHORT).unwrap_or_default(),
        status: Some(status),
        status_text: field(x.status_text, caps::MESSAGE).unwrap_or_default(),
        author: field(x.author, caps::SHORT),
        author_email: field(x.author_email, caps::SHORT),
        message: field(x.message, caps::MESSAGE),
        deployer: field(x.deployer, caps::SHORT),
        progress: field(x.progress, caps::SHORT).unwrap_or_default(),
        received_time: time(x.received_time),
        start_time: time(x.start_time),
        end_time: time(x.end_time),
        last_success_end_time: time(x.last_success_end_time),
        complete: nonempty(x.complete).is_some_and(|c| c.eq_ignore_ascii_case("true")),
    })
}

/// Reads `<root>/deployments/`: `active` and each `status.xml` are regular files of at
/// most 1 MiB, not followed if they are symlinks. A file that cannot be read is
/// `NotReady` with the reason (never its content).
///
/// An error other than "not found" listing `deployments/` or reading a file fails the
/// read as a whole: a glitch is never an empty directory.
pub fn read_kudu(root: &Path, warnings: &mut Vec<Warning>) -> Result<KuduSnapshot, ReadError> {
    let dir = root.join("deployments");
    let active_path = dir.join("active");
    let active = match file::read_small(&active_path) {
        Ok(r) => Some(cap_text(
            String::from_utf8_lossy(&r.bytes).trim(),
            caps::SHORT,
        ))
        .filter(|s| !s.is_empty()),
        Err(FileProblem::Missing) => None,
        Err(e) => {
            warnings.push(e.into_read_error(&active_path)?.warning(&active_path));
            None
        }
    };
    let mut snap = KuduSnapshot {
        active,
        ..KuduSnapshot::default()
    };
    let Some(entries) = list_dir(&dir)? else {
        return Ok(snap);
    };
    for entry in entries {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with("temp-") || name.starts_with('.') || name == "tools" {
            continue;
        }
        let is_dir = match std::fs::symlink_metadata(entry.path()) {
            Ok(m) => m.is_dir(),
            Err(e) if not_found(&e) => false,
            Err(e) => return Err(ReadError::io(&entry.path(), &e)),
        };
        if !is_dir {
            continue;
        }
        let path = entry.path().join("status.xml");
        let entry = match file::read_small(&path) {
            Err(FileProblem::Missing) => continue, // not a deployment (yet)
            Err(e) => {
                let e = e.into_read_error(&path)?;
                warnings.push(e.warning(&path));
                KuduEntry::NotReady {
                    reason: e.to_string(),
                    modified: file::modified_no_follow(&path),
                }
            }
            Ok(read) => {
                let parsed = String::from_utf8(read.bytes)
                    .map_err(|_| "not UTF-8".to_string())
                    .and_then(|t| parse_status_xml(&t));
                match parsed {
                    Ok(mut status) => {
                        if status.id.is_empty() {
                            status.id = name.clone();
                        }
                        KuduEntry::Ready {
                            status: Box::new(status),
                            modified: read.modified,
                        }
                    }
                    Err(reason) => KuduEntry::NotReady {
                        reason,
                        modified: read.modified,
                    },
                }
            }
        };
        snap.deployments.insert(name, entry);
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(id: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/kudu/deployments/{id}/status.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_kudus_success_fixture() {
        let s = parse_status_xml(&fixture("2f45d28c063eb367ee76b3c9a4b844b673ca2ad6"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.status, Some(Status::Success));
        assert!(s.complete);
        assert_eq!(s.author.as_deref(), Some("Jane Doe"));
        assert_eq!(s.author_email.as_deref(), Some("jane@example.com"));
        assert_eq!(s.deployer.as_deref(), Some("$mysite"));
        assert_eq!(s.message.as_deref(), Some("Fix header"));
        assert_eq!(s.progress, "");
        assert_eq!(
            s.end_time.map(|t| t.rfc3339()).as_deref(),
            Some("2024-09-04T17:33:21.4455660Z")
        );
        assert_eq!(s.last_success_end_time, s.end_time);
    }

    #[test]
    fn parses_kudus_building_fixture_with_empty_elements() {
        let s = parse_status_xml(&fixture("9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.status, Some(Status::Building));
        assert!(!s.complete);
        assert_eq!(s.end_time, None);
        assert_eq!(s.last_success_end_time, None);
        assert_eq!(s.progress, "Running deployment command...");
        assert!(s.status_text.starts_with("Building and Deploying"));
    }

    #[test]
    fn half_written_files_are_errors_not_panics() {
        let full = fixture("2f45d28c063eb367ee76b3c9a4b844b673ca2ad6");
        for cut in [0, 10, 60, full.len() / 2, full.len() - 20] {
            assert!(parse_status_xml(&full[..cut]).is_err(), "cut at {cut}");
        }
    }
}
