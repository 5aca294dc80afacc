//! The `kudu` format: the events a transition produces and Kudu's PostDeployment body
//! (SPEC §3), field order exactly Kudu's, then deployhook's additions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::ChainConfig;
use crate::infer::model::Transition;
use crate::model::{CommitRange, CommitSummary, Status, Timestamp, is_capped};

pub const POST_DEPLOYMENT: &str = "PostDeployment";
pub const STATUS_CHANGED: &str = "StatusChanged";

/// What the payload needs beyond the transition.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub site: &'a str,
    pub host_name: &'a str,
    pub layout: &'a str,
    /// What each deployment (by serial) changed, when the site's repository holds both
    /// its commit and the previous live one's.
    pub commits: &'a BTreeMap<u64, CommitRange>,
    /// The chains a deployment's end may start.
    pub chains: &'a [ChainConfig],
    /// `[api] public_url`, the base of chain callback URLs.
    pub callback_base: Option<&'a str>,
    /// The site's repository URL for DORA tools (`repository_url`, else its `origin`).
    pub repository_url: Option<&'a str>,
    /// The transitions already committed of each deployment that ends now (by serial),
    /// for an OTLP span's events; empty unless an `[otlp]` export runs.
    pub history: &'a BTreeMap<u64, Vec<(Timestamp, Status)>>,
}

/// No transitions.
pub static NO_HISTORY: BTreeMap<u64, Vec<(Timestamp, Status)>> = BTreeMap::new();

/// No commit ranges.
pub static NO_COMMITS: BTreeMap<u64, CommitRange> = BTreeMap::new();

/// Kudu's PostDeployment object plus deployhook's camelCase additions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KuduPayload {
    pub id: String,
    pub status: Status,
    pub status_text: String,
    pub author_email: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    pub progress: String,
    pub deployer: Option<String>,
    pub received_time: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub last_success_end_time: Option<String>,
    pub complete: bool,
    pub site_name: String,
    pub host_name: String,
    pub event: String,
    pub branch: Option<String>,
    pub release: Option<String>,
    pub previous_id: Option<String>,
    pub rollback: bool,
    pub layout: String,
    pub sequence: u64,
    /// The status before this transition; `null` for a deployment's first.
    pub previous_status: Option<Status>,
    /// The commits between the previous live release and this one (newest first, at
    /// most 20), when the repository holds both; else `null`.
    pub commits: Option<Vec<CommitSummary>>,
    /// Whether `commits` left some out; `null` with `commits`.
    pub commits_truncated: Option<bool>,
    /// The fields that were cut at their cap (their text ends in `…[truncated]`).
    pub truncated: Vec<&'static str>,
}

/// The events one transition produces: `StatusChanged` always, `PostDeployment` when it
/// becomes terminal.
pub fn events_of(t: &Transition) -> Vec<&'static str> {
    if t.to.is_terminal() {
        vec![STATUS_CHANGED, POST_DEPLOYMENT]
    } else {
        vec![STATUS_CHANGED]
    }
}

/// Builds the kudu object for `event` of transition `t`.
pub fn kudu(t: &Transition, event: &str, cx: Context<'_>) -> KuduPayload {
    let d = &t.deployment;
    let commit = d.commit.as_ref();
    let mut p = KuduPayload {
        id: d.id.clone(),
        status: t.to,
        status_text: d.status_text.clone(),
        author_email: commit.map(|c| c.email.clone()),
        author: commit.map(|c| c.author.clone()),
        message: commit.map(|c| c.message.clone()),
        progress: d.progress.clone(),
        deployer: d.deployer.clone(),
        received_time: d.received.rfc3339(),
        start_time: d.started.map(|t| t.rfc3339()),
        end_time: d.ended.map(|t| t.rfc3339()),
        last_success_end_time: t.last_success_end.map(|t| t.rfc3339()),
        complete: t.to.is_terminal(),
        site_name: cx.site.to_string(),
        host_name: cx.host_name.to_string(),
        event: event.to_string(),
        branch: d.branch.clone(),
        release: d.release.clone(),
        previous_id: d.previous_id.clone(),
        rollback: d.rollback,
        layout: cx.layout.to_string(),
        sequence: t.sequence,
        previous_status: t.from,
        commits: None,
        commits_truncated: None,
        truncated: Vec::new(),
    };
    if let Some(range) = cx.commits.get(&d.serial) {
        p.commits = Some(range.commits.clone());
        p.commits_truncated = Some(range.truncated);
    }
    p.truncated = truncated_fields(&p);
    p
}

/// Which text fields of `p` were cut at their cap when they were read.
fn truncated_fields(p: &KuduPayload) -> Vec<&'static str> {
    let opt = |v: &Option<String>| v.as_deref().is_some_and(is_capped);
    [
        ("id", is_capped(&p.id)),
        ("statusText", is_capped(&p.status_text)),
        ("authorEmail", opt(&p.author_email)),
        ("author", opt(&p.author)),
        ("message", opt(&p.message)),
        ("progress", is_capped(&p.progress)),
        ("deployer", opt(&p.deployer)),
        ("branch", opt(&p.branch)),
    ]
    .into_iter()
    .filter_map(|(name, cut)| cut.then_some(name))
    .collect()
}

/// The JSON body of a payload.
pub fn body(p: &KuduPayload) -> Vec<u8> {
    // Serialising a struct of strings, numbers and options cannot fail.
    serde_json::to_vec(p).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::model::Deployment;
    use crate::model::{CommitInfo, Timestamp};

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap_or_default()
    }

    #[test]
    fn matches_the_fixture_field_for_field_and_in_order() {
        let t = Transition {
            deployment: Deployment {
                serial: 7,
                key: "20261120091402".into(),
                release: Some("20261120091402".into()),
                id: "2f45d28c063eb367ee76b3c9a4b844b673ca2ad6".into(),
                status: Status::Success,
                announced: true,
                status_text: String::new(),
                commit: Some(CommitInfo {
                    author: "Jane Doe".into(),
                    email: "jane@example.com".into(),
                    message: "Fix header".into(),
                    time: Timestamp(0),
                }),
                deployer: Some("alice".into()),
                branch: Some("main".into()),
                received: at("2026-11-20T09:14:02.103400Z"),
                started: Some(at("2026-11-20T09:14:02.512000Z")),
                ended: Some(at("2026-11-20T09:15:47.900100Z")),
                previous_id: Some("9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b".into()),
                rollback: false,
                last_change: Timestamp(0),
                fingerprint: String::new(),
                lock_seen: false,
                progress: String::new(),
                done_at: None,
                switched_away: None,
                id_known: true,
                hold_until: None,
                pending_seen: false,
            },
            from: Some(Status::Deploying),
            to: Status::Success,
            sequence: 42,
            last_success_end: Some(at("2026-11-20T09:15:47.900100Z")),
        };
        let cx = Context {
            site: "shop",
            host_name: "build-01",
            layout: "releases",
            commits: &NO_COMMITS,
            chains: &[],
            callback_base: None,
            repository_url: None,
            history: &NO_HISTORY,
        };
        let ours = serde_json::to_string_pretty(&kudu(&t, POST_DEPLOYMENT, cx)).unwrap_or_default();
        let fixture_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/payloads/post-deployment-success.json"
        );
        let fixture = std::fs::read_to_string(fixture_path).unwrap_or_default();
        let parsed: serde_json::Value = serde_json::from_str(&fixture).unwrap_or_default();
        let fixture = serde_json::to_string_pretty(&parsed).unwrap_or_default();
        assert!(!fixture.is_empty(), "fixture {fixture_path} not found");
        assert_eq!(ours, fixture);
    }
}
