//! `infer` for the `kudu` layout (SPEC §2.2): statuses, times and author data come from
//! each `status.xml`; `active` names the live deployment. A deployment is one
//! `deployments/<id>` run, keyed by id and `receivedTime` (a redeploy of the same id
//! rewrites the file with a new `receivedTime`).

use super::common;
use super::model::{Anomaly, Deployment, Inference, Live, Params, SiteState};
use crate::model::{CommitInfo, Status, Timestamp};
use crate::snapshot::Health;
use crate::snapshot::kudu::{KuduEntry, KuduSnapshot, KuduStatus};

fn key_of(dir: &str, s: &KuduStatus) -> String {
    format!("{dir}@{}", s.received_time.map_or(0, |t| t.0))
}

fn dir_of(key: &str) -> &str {
    key.rsplit_once('@').map_or(key, |(d, _)| d)
}

/// The status `status.xml` shows: terminal only when `complete` says so.
fn level_of(s: &KuduStatus) -> Status {
    match (s.status.unwrap_or(Status::Pending), s.complete) {
        (st, true) if st.is_terminal() => st,
        (_, true) => Status::Failed,
        (st, false) if st.is_terminal() => Status::Deploying,
        (st, false) => st,
    }
}

pub fn infer(
    prev: &SiteState,
    snap: &KuduSnapshot,
    health: Option<&Health>,
    now: Timestamp,
    p: &Params,
) -> Inference {
    let mut st = prev.clone();
    let mut transitions = Vec::new();
    let mut anomalies = Vec::new();
    let ready = || {
        snap.deployments.iter().filter_map(|(dir, e)| match e {
            KuduEntry::Ready { status, modified } => Some((dir, status, *modified)),
            KuduEntry::NotReady { .. } => None,
        })
    };
    if !st.initialised {
        st.initialised = true;
        st.live = snap.active.as_ref().map(|a| Live {
            release: a.clone(),
            id: a.clone(),
        });
        for (dir, status, modified) in ready() {
            if !status.complete && now.since(modified) < p.idle_timeout {
                let d = common::new_deployment(
                    &mut st,
                    key_of(dir, status),
                    None,
                    status.id.clone(),
                    now,
                );
                st.active.push(d);
            }
        }
    } else {
        for (dir, status, _) in ready() {
            let key = key_of(dir, status);
            if st.known_releases.contains(&key) || st.active.iter().any(|d| d.key == key) {
                continue;
            }
            // A redeploy of the same id replaces a run still in progress.
            for d in st.active.iter_mut().filter(|d| dir_of(&d.key) == dir) {
                d.done_at = Some(now);
                d.fingerprint = "replaced".into();
            }
            let d = common::new_deployment(&mut st, key, None, status.id.clone(), now);
            st.active.push(d);
        }
    }

    // Half-written files are retried; one that stays unreadable is worth a warning.
    let mut not_ready_deadlines = Vec::new();
    for (dir, e) in &snap.deployments {
        if let KuduEntry::NotReady { reason, modified } = e {
            if now.since(*modified) >= p.idle_timeout {
                anomalies.push(Anomaly {
                    key: format!("kudu-unreadable:{dir}:{}", modified.0),
                    message: format!(
                        "deployments/{dir}/status.xml has been unreadable for {} ({reason})",
                        crate::model::format_duration(p.idle_timeout)
                    ),
                });
            } else {
                not_ready_deadlines.push(modified.plus(p.idle_timeout));
            }
        }
    }
    let mut active = std::mem::take(&mut st.active);
    active.sort_by_key(|d| d.serial);
    for d in &mut active {
        let dir = dir_of(&d.key).to_string();
        let (level, text, modified) = match snap.deployments.get(&dir) {
            None => (
                Status::Failed,
                format!("deployments/{dir} was removed before the deployment completed"),
                None,
            ),
            Some(KuduEntry::NotReady { modified, .. }) => {
                (d.status, d.status_text.clone(), Some(*modified))
            }
            Some(KuduEntry::Ready { status, modified }) if key_of(&dir, status) == d.key => {
                refresh(d, status, p);
                let fp = modified.0.to_string();
                if fp != d.fingerprint {
                    // When the file says it changed, not when this read saw it.
                    d.fingerprint = fp;
                    d.last_change = d.last_change.max((*modified).min(now));
                }
                (
                    level_of(status),
                    status.status_text.clone(),
                    Some(*modified),
                )
            }
            Some(KuduEntry::Ready { .. }) => (
                Status::Failed,
                format!("replaced by a new deployment of {dir} before it completed"),
                None,
            ),
        };
        let (level, text) = common::gate_health((level, text), d, health, now, p);
        let since = d.last_change.max(modified.unwrap_or(d.last_change));
        let (level, text) = match (level.is_terminal(), common::idle_failure(d, since, now, p)) {
            (false, Some(_)) => (
                Status::Failed,
                format!(
                    "Kudu left this deployment incomplete ({}) with no change for {} (idle_timeout); Kudu itself sends no hook for this",
                    d.status,
                    crate::model::format_duration(p.idle_timeout)
                ),
            ),
            _ => (level, text),
        };
        common::advance(&mut st, &mut transitions, now, d, level, text);
    }
    active.retain(|d| !d.status.is_terminal());
    // What this snapshot shows, plus what a directory whose file is being rewritten
    // (not ready right now) showed before: a half-written read must not make a known
    // deployment look new at the next read.
    let not_ready: std::collections::BTreeSet<&str> = snap
        .deployments
        .iter()
        .filter(|(_, e)| matches!(e, KuduEntry::NotReady { .. }))
        .map(|(dir, _)| dir.as_str())
        .collect();
    let kept: Vec<String> = prev
        .known_releases
        .iter()
        .filter(|k| not_ready.contains(dir_of(k)))
        .cloned()
        .collect();
    st.known_releases = ready().map(|(dir, s, _)| key_of(dir, s)).collect();
    st.known_releases.extend(kept);
    // `active` names the live deployment once nothing is in progress.
    if active.is_empty()
        && let Some(a) = &snap.active
    {
        st.live = Some(Live {
            release: a.clone(),
            id: a.clone(),
        });
    }
    let modified_of = |d: &Deployment| {
        snap.deployments.get(dir_of(&d.key)).map(|e| match e {
            KuduEntry::Ready { modified, .. } | KuduEntry::NotReady { modified, .. } => *modified,
        })
    };
    let mut out = common::finish(st, active, transitions, anomalies, now, p, |d| {
        let since = d.last_change.max(modified_of(d).unwrap_or(d.last_change));
        vec![since.plus(p.idle_timeout)]
    });
    // A half-written file is looked at again when it would become worth a warning.
    out.wake_at = common::earliest(out.wake_at.into_iter().chain(not_ready_deadlines), now);
    out
}

/// Takes the file's own data: author, message, deployer, progress and times.
fn refresh(d: &mut Deployment, s: &KuduStatus, p: &Params) {
    d.id = s.id.clone();
    if s.author.is_some() || s.author_email.is_some() || s.message.is_some() {
        d.commit = Some(CommitInfo {
            author: s.author.clone().unwrap_or_default(),
            email: s.author_email.clone().unwrap_or_default(),
            message: s.message.clone().unwrap_or_default(),
            time: Timestamp::default(),
        });
    }
    d.deployer = p.deployer.clone().or_else(|| s.deployer.clone());
    d.progress = s.progress.clone();
    if let Some(t) = s.received_time {
        d.received = t;
    }
    if s.start_time.is_some() {
        d.started = s.start_time;
    }
    if s.complete && s.end_time.is_some() {
        d.ended = s.end_time;
    }
    if d.branch.is_none() {
        d.branch = p.branch.clone();
    }
}
