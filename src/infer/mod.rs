//! The pure core: `infer(previous state, snapshot, now, params) -> Inference`.
//!
//! `infer` does no I/O, reads no clock, cannot fail and is deterministic: bad input is
//! data in the snapshot, and anomalies come back beside the transitions. Every rule of
//! SPEC §2 is a row in the table tests (`tests.rs`).

pub mod model;
pub mod releases;
#[cfg(test)]
mod tests;

use model::{Anomaly, Inference, Params, SiteState, Timestamp};

use crate::snapshot::{LayoutSnapshot, Snapshot};

/// Decides what happened between `prev` and `snap`.
pub fn infer(prev: &SiteState, snap: &Snapshot, now: Timestamp, p: &Params) -> Inference {
    let unchanged = |state: SiteState, anomaly: Anomaly| Inference {
        state,
        transitions: Vec::new(),
        anomalies: vec![anomaly],
        wake_at: None,
    };
    match &snap.layout {
        LayoutSnapshot::Releases(r) => releases::infer(prev, r, now, p),
        // A site first seen missing or empty has nothing live: mark it initialised so
        // that the first deployment that appears is reported, not taken as the baseline.
        LayoutSnapshot::Missing { path } => {
            let mut state = prev.clone();
            state.initialised = true;
            unchanged(
                state,
                Anomaly {
                    key: "missing".into(),
                    message: format!(
                        "{} does not exist (yet); waiting for it to appear",
                        path.display()
                    ),
                },
            )
        }
        LayoutSnapshot::Undetected { path, reason } => {
            let mut state = prev.clone();
            state.initialised = true;
            unchanged(
                state,
                Anomaly {
                    key: "undetected".into(),
                    message: format!("{}: layout not detected: {reason}", path.display()),
                },
            )
        }
        LayoutSnapshot::Unreadable { path, reason } => unchanged(
            prev.clone(),
            Anomaly {
                key: "unreadable".into(),
                message: format!("cannot read {}: {reason}", path.display()),
            },
        ),
    }
}
