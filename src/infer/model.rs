//! The vocabulary of inference: `Timestamp`, `Status`, `Deployment`, `SiteState`,
//! `Transition` and what `infer` returns. Plain data, serialisable, no I/O.

use std::collections::{BTreeMap, BTreeSet};
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

/// What the commit of a deployment says, read from the site's git repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub author: String,
    pub email: String,
    pub message: String,
    pub time: Timestamp,
}

/// One attempt to put one revision live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Per-site number, assigned when the deployment is first seen.
    pub serial: u64,
    /// What identifies it within its layout (release name, Kudu id and received time,
    /// commit, marker id).
    #[serde(default)]
    pub key: String,
    /// The release directory name (`releases` layout); `None` while only pending.
    pub release: Option<String>,
    /// The payload `id`: commit SHA, else the release name.
    pub id: String,
    pub status: Status,
    /// Whether any transition of this deployment has been reported yet.
    pub announced: bool,
    pub status_text: String,
    pub commit: Option<CommitInfo>,
    pub deployer: Option<String>,
    pub branch: Option<String>,
    pub received: Timestamp,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub previous_id: Option<String>,
    pub rollback: bool,
    /// Last time anything this deployment depends on was seen to change.
    pub last_change: Timestamp,
    /// What was last seen of its release (modification time, marker), to notice change.
    pub fingerprint: String,
    /// Deployer only: the deploy lock was seen held while this deployment was tracked.
    pub lock_seen: bool,
    /// The tool's progress text (Kudu, marker).
    #[serde(default)]
    pub progress: String,
    /// When the layout's own signal said "done"; with `health_url`, success waits for a
    /// 2xx observed after this.
    #[serde(default)]
    pub done_at: Option<Timestamp>,
    /// When `current` was first seen to point away from this deploying release. It is
    /// failed as superseded only by a later read: the read that saw the switch may
    /// have read the tool's log before the line that finished this deploy was written.
    #[serde(default)]
    pub switched_away: Option<Timestamp>,
}

/// The release that is live now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub release: String,
    pub id: String,
}

/// Everything `infer` remembers about a site between snapshots; persisted by `store`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    /// False until the first snapshot has set the baseline.
    pub initialised: bool,
    /// The layout the state was inferred for; a change of layout starts a new baseline.
    #[serde(default)]
    pub layout: String,
    pub next_serial: u64,
    /// Per-site event counter (`sequence` in payloads).
    pub sequence: u64,
    pub live: Option<Live>,
    /// The release `current` pointed at in the last snapshot.
    pub current: Option<String>,
    /// Deployments that are not terminal yet.
    pub active: Vec<Deployment>,
    /// Release names (releases) or deployment keys (kudu) present in the last snapshot.
    pub known_releases: BTreeSet<String>,
    /// Capistrano: complete `revisions.log` lines already consumed.
    pub log_seen: usize,
    /// Capistrano: since when the line at `log_seen` has been held back because it names
    /// a release the listing does not show (yet); it is consumed once the release is
    /// listed, or given up after `idle_timeout`.
    #[serde(default)]
    pub log_hold_since: Option<Timestamp>,
    /// Capistrano: the commit the mirror's branch pointed at in the last snapshot; git:
    /// the watched branch's commit.
    pub repo_head: Option<String>,
    /// Deployer: whether `.dep/deploy.lock` existed in the last snapshot.
    pub lock_held: bool,
    /// marker: the version of the marker file last read.
    #[serde(default)]
    pub last_marker: Option<String>,
    /// End time of the last success of each payload id (bounded).
    pub last_success: BTreeMap<String, Timestamp>,
}

/// How many ids `SiteState::last_success` keeps.
pub const LAST_SUCCESS_KEEP: usize = 256;

/// A deployment's status changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The deployment as it is after the change.
    pub deployment: Deployment,
    pub from: Option<Status>,
    pub to: Status,
    /// Per-site counter, increasing with every transition.
    pub sequence: u64,
    /// When this deployment's `id` last succeeded (including now).
    pub last_success_end: Option<Timestamp>,
}

/// Something odd in a snapshot, reported beside the transitions (logged once, counted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// A stable key so the same anomaly is logged once.
    pub key: String,
    pub message: String,
}

/// What `infer` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inference {
    pub state: SiteState,
    pub transitions: Vec<Transition>,
    pub anomalies: Vec<Anomaly>,
    /// When to look again even if nothing changes (settle and idle deadlines).
    pub wake_at: Option<Timestamp>,
}

/// Per-site settings `infer` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub settle: Duration,
    pub idle_timeout: Duration,
    /// `deployer` from the site's config, which overrides the tool's.
    pub deployer: Option<String>,
    /// `branch` from the site's config.
    pub branch: Option<String>,
    /// `health_timeout`, when the site has a `health_url`.
    pub health_timeout: Option<Duration>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            settle: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(600),
            deployer: None,
            branch: None,
            health_timeout: None,
        }
    }
}
