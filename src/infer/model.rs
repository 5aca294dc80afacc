//! The vocabulary of inference: `Deployment`, `SiteState`, `Transition`, `Params` and
//! what `infer` returns. Plain data, serialisable, no I/O. The words every stage shares
//! (`Timestamp`, `Status`, `CommitInfo`) are on the ground floor, `crate::model`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::SiteConfig;
use crate::model::{CommitInfo, Status, Timestamp};

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
    /// Whether `id` is final. A new release's first transition waits until its commit
    /// is known (`REVISION`, its git `HEAD`, the mirror's head), at most until
    /// `hold_until` (`settle` after it appeared); then the release name is the id. Every
    /// transition of one deployment carries one id.
    #[serde(default = "yes")]
    pub id_known: bool,
    #[serde(default)]
    pub hold_until: Option<Timestamp>,
    /// Deployer: its lock said `pending` while its id was held; that status goes out
    /// first when it is announced.
    #[serde(default)]
    pub pending_seen: bool,
}

fn yes() -> bool {
    true
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

impl Params {
    /// The settings of `site` that `infer` needs.
    pub fn of(site: &SiteConfig) -> Params {
        Params {
            settle: site.settle,
            idle_timeout: site.idle_timeout,
            deployer: site.deployer.clone(),
            branch: site.branch.clone(),
            health_timeout: site.health_url.as_ref().map(|_| site.health_timeout),
        }
    }
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
