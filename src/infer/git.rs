//! `infer` for the `git` layout (SPEC §2.3): a work tree deployed by `git push`
//! (`receive.denyCurrentBranch=updateInstead`), `git pull` or `git reset --hard`, or a
//! bare repository checked out into a deploy dir by a post-receive script.
//!
//! The watched branch moving to a commit that is not the live one starts a deployment
//! (`pending`). It is `deploying` while the tracked files are being made to match it,
//! and `success` once HEAD is that commit, the tracked files match and the tree has been
//! quiet for `settle`. Refs are always re-resolved, so `git pack-refs` or `git gc` moving
//! a ref from a loose file into `packed-refs` changes nothing.

use super::common;
use super::model::{Anomaly, Inference, Params, SiteState};
use crate::model::{Status, Timestamp};
use crate::snapshot::Health;
use crate::snapshot::git::GitSite;

pub fn infer(
    prev: &SiteState,
    g: &GitSite,
    health: Option<&Health>,
    now: Timestamp,
    p: &Params,
) -> Inference {
    let mut st = prev.clone();
    let mut transitions = Vec::new();
    let mut anomalies = Vec::new();
    let Some(head) = g.branch_commit.clone() else {
        anomalies.push(Anomaly {
            key: "git-unreadable".into(),
            message: format!(
                "cannot resolve the watched branch: {}",
                g.error.as_deref().unwrap_or("no commit")
            ),
        });
        st.initialised = true;
        return Inference {
            state: st,
            transitions,
            anomalies,
            wake_at: None,
        };
    };
    let matches = |id: &str| g.tree_matches && g.head_commit.as_deref() == Some(id);
    let create = |st: &mut SiteState| {
        let mut d = common::new_deployment(st, head.clone(), None, head.clone(), now);
        d.commit = g.commit.clone();
        d.branch = p.branch.clone().or_else(|| g.branch.clone());
        d.deployer = p.deployer.clone();
        st.active.push(d);
    };
    if !st.initialised {
        st.initialised = true;
        if matches(&head) {
            st.live = Some(super::model::Live {
                release: head.clone(),
                id: head.clone(),
            });
        } else {
            create(&mut st);
        }
    } else if st.repo_head.as_deref() != Some(head.as_str())
        && st.live.as_ref().is_none_or(|l| l.id != head)
        && !st.active.iter().any(|d| d.id == head)
    {
        create(&mut st);
    }

    let mut active = std::mem::take(&mut st.active);
    active.sort_by_key(|d| d.serial);
    for d in &mut active {
        if d.id != head {
            common::advance(
                &mut st,
                &mut transitions,
                now,
                d,
                Status::Failed,
                format!("superseded: the branch moved to {head} before this deploy settled"),
            );
            continue;
        }
        if !d.announced {
            common::advance(
                &mut st,
                &mut transitions,
                now,
                d,
                Status::Pending,
                String::new(),
            );
        }
        let fp = format!("{}:{:?}", g.tree_matches, g.head_commit);
        if fp != d.fingerprint {
            d.fingerprint = fp;
            d.last_change = now;
        }
        let level = if matches(&d.id) && now >= d.last_change.plus(p.settle) {
            (Status::Success, String::new())
        } else {
            (Status::Deploying, String::new())
        };
        let level = common::gate_health(level, d, health, now, p);
        let level = match (
            level.0.is_terminal(),
            common::idle_failure(d, d.last_change, now, p),
        ) {
            (false, Some(_)) => (
                Status::Failed,
                format!(
                    "the work tree did not match {} after {} (idle_timeout)",
                    d.id,
                    crate::model::format_duration(p.idle_timeout)
                ),
            ),
            _ => level,
        };
        common::advance(&mut st, &mut transitions, now, d, level.0, level.1);
    }
    st.repo_head = Some(head);
    common::finish(st, active, transitions, anomalies, now, p, |d| {
        vec![
            d.last_change.plus(p.settle),
            d.last_change.plus(p.idle_timeout),
        ]
    })
}
