//! What every layout's inference shares: creating a deployment, moving it forward (and
//! emitting the transition), and failure by silence.

use super::model::{
    Anomaly, Deployment, Inference, LAST_SUCCESS_KEEP, Live, Params, SiteState, Transition,
};
use crate::model::{Status, Timestamp};
use crate::snapshot::Health;

/// A new, not yet announced deployment with the next serial.
pub fn new_deployment(
    st: &mut SiteState,
    key: String,
    release: Option<String>,
    id: String,
    now: Timestamp,
) -> Deployment {
    st.next_serial += 1;
    Deployment {
        serial: st.next_serial,
        key,
        release,
        id,
        status: Status::Pending,
        announced: false,
        status_text: String::new(),
        commit: None,
        deployer: None,
        branch: None,
        received: now,
        started: None,
        ended: None,
        previous_id: st.live.as_ref().map(|l| l.id.clone()),
        rollback: false,
        last_change: now,
        fingerprint: String::new(),
        lock_seen: false,
        progress: String::new(),
        done_at: None,
        switched_away: None,
        id_known: true,
        hold_until: None,
        pending_seen: false,
    }
}

/// With a `health_url`, a deployment whose layout says "success" stays `deploying`
/// until a 2xx is observed after that moment, and fails after `health_timeout`. Once the
/// layout has said "done" it stays done unless the layout now says `failed`: its signal
/// may have been an edge (Capistrano's log line is consumed when read).
pub fn gate_health(
    level: (Status, String),
    d: &mut Deployment,
    health: Option<&Health>,
    now: Timestamp,
    p: &Params,
) -> (Status, String) {
    let Some(timeout) = p.health_timeout else {
        return level;
    };
    let layout_done = level.0 == Status::Success || (d.done_at.is_some() && !level.0.is_terminal());
    if !layout_done {
        return level;
    }
    let level = if level.0 == Status::Success {
        level
    } else {
        (Status::Success, String::new())
    };
    let done_at = *d.done_at.get_or_insert(now);
    if health
        .and_then(|h| h.last_ok)
        .is_some_and(|ok| ok >= done_at)
    {
        return level;
    }
    if now >= done_at.plus(timeout) {
        let why = health
            .and_then(|h| h.last_error.clone())
            .unwrap_or_else(|| "no answer yet".into());
        return (
            Status::Failed,
            format!(
                "health_url did not answer 2xx within {} (health_timeout): {why}",
                crate::model::format_duration(timeout)
            ),
        );
    }
    (Status::Deploying, String::new())
}

/// The health deadline of a deployment waiting for its health check.
pub fn health_deadline(d: &Deployment, p: &Params) -> Option<Timestamp> {
    Some(d.done_at?.plus(p.health_timeout?))
}

/// Moves `d` forward to `to` (never backwards; the first call announces it) and
/// records the transition. Times already set (from the tool) are kept.
pub fn advance(
    st: &mut SiteState,
    transitions: &mut Vec<Transition>,
    now: Timestamp,
    d: &mut Deployment,
    to: Status,
    text: String,
) {
    let from = if d.announced { Some(d.status) } else { None };
    if from.is_some_and(|f| to.rank() <= f.rank()) {
        return;
    }
    d.announced = true;
    d.status = to;
    d.status_text = text;
    d.last_change = now;
    if to >= Status::Building && d.started.is_none() {
        d.started = Some(now);
    }
    if to.is_terminal() && d.ended.is_none() {
        d.ended = Some(now);
    }
    if to == Status::Success {
        let end = d.ended.unwrap_or(now);
        st.last_success.insert(d.id.clone(), end);
        if st.last_success.len() > LAST_SUCCESS_KEEP
            && let Some(oldest) = st
                .last_success
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            st.last_success.remove(&oldest);
        }
        st.live = Some(Live {
            release: d.release.clone().unwrap_or_else(|| d.key.clone()),
            id: d.id.clone(),
        });
    }
    st.sequence += 1;
    transitions.push(Transition {
        deployment: d.clone(),
        from,
        to,
        sequence: st.sequence,
        last_success_end: st.last_success.get(&d.id).copied(),
    });
}

/// The failure text when `d` has shown no change since `since` for `idle_timeout`.
pub fn idle_failure(
    d: &Deployment,
    since: Timestamp,
    now: Timestamp,
    p: &Params,
) -> Option<String> {
    (now >= since.plus(p.idle_timeout)).then(|| {
        format!(
            "no change for {} (idle_timeout) while {}: the deploy did not finish",
            crate::model::format_duration(p.idle_timeout),
            d.status
        )
    })
}

/// Ends an inference: keeps the deployments still in progress and says when to look
/// again — the earliest of each one's own `deadlines` (idle, settle) and its health
/// deadline.
pub fn finish(
    mut st: SiteState,
    mut active: Vec<Deployment>,
    transitions: Vec<Transition>,
    anomalies: Vec<Anomaly>,
    now: Timestamp,
    p: &Params,
    deadlines: impl Fn(&Deployment) -> Vec<Timestamp>,
) -> Inference {
    active.retain(|d| !d.status.is_terminal());
    let wake_at = earliest(
        active.iter().flat_map(|d| {
            let mut all = deadlines(d);
            all.extend(health_deadline(d, p));
            all
        }),
        now,
    );
    st.active = active;
    Inference {
        state: st,
        transitions,
        anomalies,
        wake_at,
    }
}

/// The earliest future deadline of `deadlines`.
pub fn earliest(
    deadlines: impl IntoIterator<Item = Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    deadlines.into_iter().filter(|t| *t > now).min()
}
