//! The daemon's answer to a reload, for `deployhook reload` (the unit's `ExecReload=`):
//! after every reload (SIGHUP or a change of the file) the daemon writes
//! `reload.status` in its state directory — its pid, a count of reloads, `ok` or
//! `rejected` and the errors — so the command that asked can say what happened.
//! Validating in the daemon matters under systemd: only the main process can read the
//! service's credentials (`ExecReload=` cannot), and only the daemon knows whether the
//! config it will run is valid.

use std::io::Write;
use std::path::Path;

pub const FILE: &str = "reload.status";

/// The daemon's last answer, as read back by `deployhook reload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub pid: u32,
    pub seq: u64,
    /// `None`: applied; `Some(errors)`: rejected, the running config stays.
    pub rejected: Option<String>,
}

impl Verdict {
    fn render(&self) -> String {
        match &self.rejected {
            None => format!("{} {} ok\n", self.pid, self.seq),
            Some(e) => format!("{} {} rejected\n{e}\n", self.pid, self.seq),
        }
    }

    fn parse(text: &str) -> Option<Verdict> {
        let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
        let mut f = head.split(' ');
        let pid = f.next()?.parse().ok()?;
        let seq = f.next()?.parse().ok()?;
        let rejected = match f.next()? {
            "ok" => None,
            "rejected" => Some(rest.trim_end().to_string()),
            _ => return None,
        };
        Some(Verdict { pid, seq, rejected })
    }
}

/// Writes the verdict atomically (a temporary file, then a rename).
pub fn write(dir: &Path, verdict: &Verdict) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(verdict.render().as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))
}

/// The last verdict; `Ok(None)` when there is none yet (or it cannot be parsed).
pub fn read(dir: &Path) -> std::io::Result<Option<Verdict>> {
    match std::fs::read_to_string(dir.join(FILE)) {
        Ok(text) => Ok(Verdict::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(dir.path()).ok(), Some(None));
        for v in [
            Verdict {
                pid: 7,
                seq: 1,
                rejected: None,
            },
            Verdict {
                pid: 7,
                seq: 2,
                rejected: Some(
                    "x.toml:3:1: colour: unknown field\nx.toml:9:2: hook[0].url: bad".into(),
                ),
            },
        ] {
            write(dir.path(), &v).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read(dir.path()).ok(), Some(Some(v)));
        }
    }

    #[test]
    fn a_garbled_file_is_no_verdict() {
        for text in ["", "7", "7 x ok", "7 1 maybe\n", "\n\n"] {
            assert_eq!(Verdict::parse(text), None, "{text:?}");
        }
    }
}
