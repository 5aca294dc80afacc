//! `infer` for the `marker` layout (SPEC §2.4): the status file says the status; a new
//! id, or a status that goes backwards, or a rewrite after a terminal status, is a new
//! deployment. Commit data missing from the file comes from the repository.

use super::common;
use super::model::{Anomaly, Inference, Live, Params, SiteState};
use crate::model::{CommitInfo, Status, Timestamp};
use crate::snapshot::Health;
use crate::snapshot::marker::{MarkerFile, MarkerSnapshot};

pub fn infer(
    prev: &SiteState,
    m: &MarkerSnapshot,
    health: Option<&Health>,
    now: Timestamp,
    p: &Params,
) -> Inference {
    let mut st = prev.clone();
    let mut transitions = Vec::new();
    let mut anomalies = Vec::new();
    let (marker, status, modified, fingerprint) = match &m.file {
        MarkerFile::Ready {
            marker,
            status,
            modified,
            fingerprint,
        } => (marker, *status, *modified, fingerprint.clone()),
        MarkerFile::NotReady { reason, modified } => {
            if now.since(*modified) >= p.idle_timeout {
                anomalies.push(Anomaly {
                    key: format!("marker-unreadable:{}", modified.0),
                    message: format!(
                        "the status file has been unreadable for {} ({reason})",
                        crate::model::format_duration(p.idle_timeout)
                    ),
                });
            }
            return idle_only(st, now, p, anomalies);
        }
        MarkerFile::Absent => {
            st.initialised = true;
            return idle_only(st, now, p, anomalies);
        }
    };
    // The deployment's key: the file's id, else the repository's HEAD, else none (then
    // rewrites continue the deployment in progress, and its payload id is made up once).
    let key = marker
        .id
        .clone()
        .or_else(|| m.head.clone())
        .unwrap_or_default();
    let id = if key.is_empty() {
        st.active.iter().find(|d| d.key.is_empty()).map_or_else(
            || format!("deploy-{}", now.unix_seconds()),
            |d| d.id.clone(),
        )
    } else {
        key.clone()
    };
    let rewritten = st.last_marker.as_deref() != Some(fingerprint.as_str());
    if !st.initialised {
        st.initialised = true;
        if status.is_terminal() || now.since(modified) >= p.idle_timeout {
            st.live = Some(Live {
                release: id.clone(),
                id: id.clone(),
            });
        } else {
            let d = common::new_deployment(&mut st, key.clone(), None, id.clone(), now);
            st.active.push(d);
        }
    } else if rewritten {
        let continues = st
            .active
            .iter()
            .any(|d| d.key == key && (!d.announced || status.rank() >= d.status.rank()));
        if !continues {
            let d = common::new_deployment(&mut st, key.clone(), None, id.clone(), now);
            st.active.push(d);
        }
    }
    st.last_marker = Some(fingerprint.clone());

    let newest = st.active.iter().map(|d| d.serial).max();
    let mut active = std::mem::take(&mut st.active);
    active.sort_by_key(|d| d.serial);
    for d in &mut active {
        if Some(d.serial) != newest {
            common::advance(
                &mut st,
                &mut transitions,
                now,
                d,
                Status::Failed,
                format!("superseded: the status file now describes {id}"),
            );
            continue;
        }
        let commit = m.commit.clone().unwrap_or_default();
        if marker.author.is_some() || marker.message.is_some() || m.commit.is_some() {
            d.commit = Some(CommitInfo {
                author: marker.author.clone().unwrap_or(commit.author),
                email: marker.author_email.clone().unwrap_or(commit.email),
                message: marker.message.clone().unwrap_or(commit.message),
                time: commit.time,
            });
        }
        d.deployer = p.deployer.clone().or_else(|| marker.deployer.clone());
        d.progress = marker.progress.clone().unwrap_or_default();
        if d.branch.is_none() {
            d.branch = p.branch.clone();
        }
        if d.fingerprint != fingerprint {
            d.fingerprint = fingerprint.clone();
            d.last_change = now;
        }
        let text = marker.status_text.clone().unwrap_or_default();
        let level = common::gate_health((status, text), d, health, now, p);
        let level = match (
            level.0.is_terminal(),
            common::idle_failure(d, d.last_change, now, p),
        ) {
            (false, Some(why)) => (Status::Failed, why),
            _ => level,
        };
        common::advance(&mut st, &mut transitions, now, d, level.0, level.1);
    }
    finish(st, active, transitions, anomalies, now, p)
}

/// Ends a marker inference: only the idle deadline is the layout's own.
fn finish(
    st: SiteState,
    active: Vec<super::model::Deployment>,
    transitions: Vec<super::model::Transition>,
    anomalies: Vec<Anomaly>,
    now: Timestamp,
    p: &Params,
) -> Inference {
    common::finish(st, active, transitions, anomalies, now, p, |d| {
        vec![d.last_change.plus(p.idle_timeout)]
    })
}

/// No readable marker: only the idle rule can change anything.
fn idle_only(mut st: SiteState, now: Timestamp, p: &Params, anomalies: Vec<Anomaly>) -> Inference {
    let mut transitions = Vec::new();
    let mut active = std::mem::take(&mut st.active);
    for d in &mut active {
        if let Some(why) = common::idle_failure(d, d.last_change, now, p) {
            common::advance(&mut st, &mut transitions, now, d, Status::Failed, why);
        }
    }
    finish(st, active, transitions, anomalies, now, p)
}
