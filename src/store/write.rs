//! The outbox's writes inside a transaction: events, their deliveries, and bodies —
//! each body stored once, by its SHA-256 (`put_body`), whatever refers to it.

use rusqlite::params;

use super::{DeliveryState, NewDelivery, NewEvent, StoreError, api_hooks, chains, q};
use crate::model::Timestamp;

pub(super) fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for e in events {
        let hash = put_body(tx, &e.payload)?;
        tx.execute(
            "INSERT INTO events (site, kind, status, deployment_serial, payload, payload_hash,
               created_at) VALUES (?1, ?2, ?3, ?4, x'', ?5, ?6)",
            params![
                e.site,
                e.kind,
                e.status.map(|s| s.as_str()),
                e.deployment_serial.map(|s| s as i64),
                hash,
                now.0
            ],
        )
        .map_err(q("write event"))?;
        let event_id = tx.last_insert_rowid();
        for d in &e.deliveries {
            let state = if api_hooks::api_hook_deleted(tx, &d.hook)? {
                DeliveryState::Cancelled
            } else {
                DeliveryState::Pending
            };
            insert_delivery(tx, d, event_id, state.as_str(), now)?;
            ids.push(d.id.clone());
        }
        chains::insert_runs(tx, event_id, e.site.as_deref(), &e.chains, now)?;
    }
    Ok(ids)
}

/// Writes one delivery of event `event_id` in `state`, due now; returns its `seq`.
pub(crate) fn insert_delivery(
    tx: &rusqlite::Transaction<'_>,
    d: &NewDelivery,
    event_id: i64,
    state: &str,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let hash = put_body(tx, &d.body)?;
    tx.execute(
        "INSERT INTO deliveries (id, hook, event_id, body, body_hash, state, attempts,
           next_attempt_at, created_at, updated_at, headers)
         VALUES (?1, ?2, ?3, x'', ?4, ?6, 0, ?5, ?5, ?5, ?7)",
        params![
            d.id,
            d.hook,
            event_id,
            hash,
            now.0,
            state,
            headers_json(&d.headers)
        ],
    )
    .map_err(q("write delivery"))?;
    Ok(tx.last_insert_rowid())
}

/// Stores `body` once, by its SHA-256 (hex), and returns the hash: the same body for
/// many deliveries (a publish to many hooks, a redelivery) is one row.
pub(crate) fn put_body(tx: &rusqlite::Transaction<'_>, body: &[u8]) -> Result<String, StoreError> {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tx.prepare_cached("INSERT OR IGNORE INTO bodies (hash, body) VALUES (?1, ?2)")
        .and_then(|mut st| st.execute(params![hash, body]))
        .map_err(q("write a body"))?;
    Ok(hash)
}

/// A delivery's own headers as stored: NULL for none.
fn headers_json(headers: &[(String, String)]) -> Option<String> {
    (!headers.is_empty()).then(|| serde_json::to_string(headers).unwrap_or_default())
}

/// Stored headers back; what does not parse is no headers.
pub(super) fn parse_headers(json: Option<&str>) -> Vec<(String, String)> {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}
