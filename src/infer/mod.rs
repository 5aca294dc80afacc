//! The pure core: `infer(previous state, snapshot, now, params) -> Inference`.
//!
//! `infer` does no I/O, reads no clock, cannot fail and is deterministic: bad input is
//! data in the snapshot, and anomalies come back beside the transitions. Every rule of
//! SPEC §2 is a row in the table tests (`tests.rs`).

pub mod common;
pub mod git;
#[cfg(test)]
mod interleavings;
pub mod kudu;
pub mod marker;
pub mod model;
pub mod releases;
#[cfg(test)]
mod tests;

use crate::model::Timestamp;
use model::{Anomaly, Inference, Params, SiteState};

use crate::snapshot::{LayoutSnapshot, Snapshot};

/// Decides what happened between `prev` and `snap`.
pub fn infer(prev: &SiteState, snap: &Snapshot, now: Timestamp, p: &Params) -> Inference {
    let layout = snap.layout.name();
    let unchanged = |state: SiteState, anomaly: Anomaly| Inference {
        state,
        transitions: Vec::new(),
        anomalies: vec![anomaly],
        wake_at: None,
    };
    // A site whose layout changed (e.g. `auto` now detects something else) starts a
    // new baseline; deployments of the old layout cannot be followed any more.
    let fresh;
    let prev = match &snap.layout {
        LayoutSnapshot::Missing { .. } => prev,
        _ if prev.initialised && !prev.layout.is_empty() && prev.layout != layout => {
            fresh = SiteState {
                initialised: !prev.active.is_empty() || prev.live.is_some(),
                next_serial: prev.next_serial,
                sequence: prev.sequence,
                live: prev.live.clone(),
                last_success: prev.last_success.clone(),
                ..SiteState::default()
            };
            &fresh
        }
        _ => prev,
    };
    let health = snap.health.as_ref();
    let mut out = match &snap.layout {
        LayoutSnapshot::Releases(r) => releases::infer(prev, r, health, now, p),
        LayoutSnapshot::Kudu(k) => kudu::infer(prev, k, health, now, p),
        LayoutSnapshot::Git(g) => git::infer(prev, g, health, now, p),
        LayoutSnapshot::Marker(m) => marker::infer(prev, m, health, now, p),
        // A site first seen missing has nothing live: mark it initialised so that the
        // first deployment that appears is reported, not taken as the baseline.
        LayoutSnapshot::Missing { path } => {
            let mut state = prev.clone();
            state.initialised = true;
            return unchanged(
                state,
                Anomaly {
                    key: "missing".into(),
                    message: format!(
                        "{} does not exist (yet); waiting for it to appear",
                        path.display()
                    ),
                },
            );
        }
    };
    out.state.layout = layout.to_string();
    out
}
