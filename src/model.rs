//! The ground floor: the words every stage shares — `Timestamp`, `Status`,
//! `CommitInfo` — and the caps on text that comes from outside. Imports nothing of the
//! crate; plain data, no I/O (`Timestamp::now` is the one clock, read by the daemon and
//! the commands, never by `infer`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time, in microseconds since the Unix epoch (UTC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    pub fn from_unix_seconds(s: i64) -> Self {
        Timestamp(s.saturating_mul(1_000_000))
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// The same time as a `SystemTime`; saturates at the ends of what `SystemTime` holds.
    pub fn to_system(self) -> SystemTime {
        let d = Duration::from_micros(self.0.unsigned_abs());
        let t = if self.0 >= 0 {
            UNIX_EPOCH.checked_add(d)
        } else {
            UNIX_EPOCH.checked_sub(d)
        };
        t.unwrap_or(UNIX_EPOCH)
    }

    pub fn minus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 in UTC with seven fractional digits and `Z`, as Kudu writes times
    /// (`2026-11-20T09:14:02.1034000Z`). Any `i64` is accepted: a time outside the range a
    /// calendar can show (years -9999 to 9999) is clamped to that range's ends.
    pub fn rfc3339(self) -> String {
        let t = jiff::Timestamp::from_microsecond(self.0).unwrap_or(if self.0 < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        format!("{t:.7}")
    }

    /// Parses an RFC 3339 time with `Z` or a numeric offset (`2026-11-20T09:14:02+01:00`);
    /// `None` for anything else, including times outside years -9999 to 9999. Never panics.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let s = s.trim();
        if s.len() > 64 {
            return None;
        }
        let t: jiff::Timestamp = s.parse().ok()?;
        Some(Timestamp(t.as_microsecond()))
    }
}

/// Cuts `s` to at most `max` bytes (on a character boundary), ending it with
/// [`TRUNCATED`] when it was cut, so the cut is visible wherever the text goes.
/// Idempotent: a text already cut by this function is returned unchanged.
pub fn cap_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(TRUNCATED.len());
    let mut end = keep.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &s[..end])
}

/// Whether `s` was cut by [`cap_text`].
pub fn is_capped(s: &str) -> bool {
    s.ends_with(TRUNCATED)
}

/// What [`cap_text`] appends to a text it cut.
pub const TRUNCATED: &str = "…[truncated]";

/// Caps for text that comes from a site, a repository or a receiver (bytes).
pub mod caps {
    /// A commit message, a Kudu `message` or `statusText`.
    pub const MESSAGE: usize = 64 * 1024;
    /// Ids, author names and emails, deployers, branches, progress texts.
    pub const SHORT: usize = 1024;
}

/// A deployment's status. Ordered: statuses only move forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Building,
    Deploying,
    Success,
    Failed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Building,
        Status::Deploying,
        Status::Success,
        Status::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Success | Status::Failed)
    }

    /// Position on the forward path; both terminal statuses share the last rank.
    pub fn rank(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Building => 1,
            Status::Deploying => 2,
            Status::Success | Status::Failed => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Building => "building",
            Status::Deploying => "deploying",
            Status::Success => "success",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One commit of what a deployment changed (`commits` in payloads): the SHA, its
/// author's name and the first line of its message (capped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSummary {
    pub sha: String,
    pub author: String,
    pub message: String,
}

/// The commits between the previous live release and this one, newest first: at most
/// `MAX_COMMITS`, `truncated` when there were more. `shipped` is every commit of the
/// range (at most `MAX_SHIPPED`) with its author time, for the lead time of changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitRange {
    pub commits: Vec<CommitSummary>,
    pub truncated: bool,
    pub shipped: Vec<(String, Timestamp)>,
}

/// How many commits a payload lists.
pub const MAX_COMMITS: usize = 20;
/// How many commits of one deployment are recorded for the lead time of changes.
pub const MAX_SHIPPED: usize = 1000;

/// What the commit of a deployment says, read from the site's git repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub author: String,
    pub email: String,
    pub message: String,
    /// The author's time (when the change was written; `git log --format=%at`).
    pub time: Timestamp,
}

/// The wait after one more failure of something retried by itself (a store write, a
/// site read, a NATS connection): 1 s, then doubling, at most 30 s. Callers retry after it
/// and log once per step.
pub fn next_backoff(prev: Option<std::time::Duration>) -> std::time::Duration {
    use std::time::Duration;
    prev.map_or(Duration::from_secs(1), |b| {
        (b * 2).min(Duration::from_secs(30))
    })
}

/// Parses a duration the way the config writes them: `"2s"`, `"300ms"`, `"10m"`,
/// `"1h 30m"`, `"14d"` (a day is 24 hours). Never panics.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|e: jiff::Error| e.to_string())?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| e.to_string())?;
    std::time::Duration::try_from(d).map_err(|_| "a duration cannot be negative".to_string())
}

/// A duration as the config writes it: `3s`, `10m`, `1h 30m`, `300ms`.
pub fn format_duration(d: std::time::Duration) -> String {
    match jiff::SignedDuration::try_from(d) {
        Ok(sd) => format!("{sd:#}"),
        Err(_) => format!("{}s", d.as_secs()),
    }
}

/// A full commit id: 40 hex digits (SHA-1) or 64 (SHA-256).
pub fn is_full_sha(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `1 site`, `2 sites`: a count with its noun, singular or plural.
pub fn count_of(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_and_print_as_the_config_writes_them() {
        for (text, want) in [
            ("2s", Duration::from_secs(2)),
            ("300ms", Duration::from_millis(300)),
            ("10m", Duration::from_secs(600)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("14d", Duration::from_secs(14 * 86400)),
            ("2 hours", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["5", "abc", "", "-2s", "2 fortnights"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }
}
