//! The outbox's writes inside a transaction: events, their deliveries, and bodies —
//! each body stored once, by its SHA-256 (`put_body`), whatever refers to it.

use rusqlite::params;

use super::{
    AttemptRecord, DeliveryState, DueDelivery, MAX_STORED_BODY, NewDelivery, NewEvent, Outcome,
    Queued, StoreError, api_hooks, chains, q,
};
use crate::model::Timestamp;

pub(super) fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[NewEvent],
    now: Timestamp,
    mut handed: Option<&mut Vec<Queued>>,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for e in events {
        let hash = put_body(tx, &e.payload)?;
        exec(
            tx,
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
            let seq = insert_delivery(tx, d, event_id, state.as_str(), now)?;
            ids.push(d.id.clone());
            if let Some(handed) = handed.as_deref_mut()
                && state == DeliveryState::Pending
            {
                handed.push(Queued {
                    prev: pending_before(tx, &d.hook, seq)?,
                    delivery: DueDelivery {
                        seq,
                        id: d.id.clone(),
                        hook: d.hook.clone(),
                        event: e.kind.clone(),
                        body: d.body.clone(),
                        headers: d.headers.clone(),
                        attempts: 0,
                        next_attempt_at: now,
                    },
                });
            }
        }
        chains::insert_runs(tx, event_id, e.site.as_deref(), &e.chains, now)?;
    }
    Ok(ids)
}

/// `tx.execute` through the connection's statement cache: the statements of a commit
/// are parsed once, not at every read.
pub(super) fn exec(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// The newest pending delivery of `hook` before `seq` (the queue's index answers it).
fn pending_before(
    tx: &rusqlite::Transaction<'_>,
    hook: &str,
    seq: i64,
) -> Result<Option<i64>, StoreError> {
    tx.prepare_cached(
        "SELECT MAX(seq) FROM deliveries WHERE hook = ?1 AND state = 'pending' AND seq < ?2",
    )
    .and_then(|mut st| st.query_row(params![hook, seq], |r| r.get(0)))
    .map_err(q("read the queue's tail"))
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
    exec(
        tx,
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
    exec(
        tx,
        "INSERT OR IGNORE INTO bodies (hash, body) VALUES (?1, ?2)",
        params![hash, body],
    )
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

/// One attempt and its outcome, written inside `tx`.
pub(super) fn write_attempt(
    tx: &rusqlite::Transaction<'_>,
    delivery: &DueDelivery,
    attempt: &AttemptRecord,
    update: &Outcome,
    now: Timestamp,
) -> Result<(), StoreError> {
    let n = delivery.attempts + 1;
    let mut body = attempt.response_body.clone();
    body.truncate(MAX_STORED_BODY);
    exec(
        tx,
        "INSERT INTO attempts (delivery_seq, n, started_at, duration_us, request_headers,
           response_status, response_headers, response_body, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            delivery.seq,
            n,
            attempt.started_at.0,
            i64::try_from(attempt.duration.as_micros()).unwrap_or(i64::MAX),
            serde_json::to_string(&attempt.request_headers).unwrap_or_default(),
            attempt.response_status,
            serde_json::to_string(&attempt.response_headers).unwrap_or_default(),
            body,
            attempt.error,
        ],
    )
    .map_err(q("write attempt"))?;
    let (state, next) = match update {
        Outcome::Delivered => (DeliveryState::Delivered.as_str(), now),
        Outcome::RetryAt(t) => (DeliveryState::Pending.as_str(), *t),
        Outcome::Dead | Outcome::DisableHook => (DeliveryState::Dead.as_str(), now),
    };
    exec(
        tx,
        // A delivery cancelled while its attempt was in flight stays cancelled unless
        // that attempt delivered it (or it is dead).
        "UPDATE deliveries SET state = CASE WHEN state = 'cancelled' AND ?2 = 'pending'
             THEN 'cancelled' ELSE ?2 END,
           attempts = ?3, next_attempt_at = ?4, updated_at = ?5,
           last_status = ?6, last_error = ?7 WHERE seq = ?1",
        params![
            delivery.seq,
            state,
            n,
            next.0,
            now.0,
            attempt.response_status,
            attempt.error
        ],
    )
    .map_err(q("update delivery"))?;
    if *update == Outcome::DisableHook {
        // A 410, or failing for longer than the hook's `disable_after`.
        exec(
            tx,
            "INSERT INTO hooks (name, disabled_at, disabled_reason) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET disabled_at = excluded.disabled_at,
               disabled_reason = excluded.disabled_reason",
            params![delivery.hook, now.0, disabled_reason(attempt)],
        )
        .map_err(q("disable hook"))?;
    }
    Ok(())
}

/// Why an attempt that disabled its hook did.
pub(crate) fn disabled_reason(attempt: &AttemptRecord) -> &'static str {
    if attempt.response_status == Some(410) {
        "the receiver answered 410 Gone"
    } else {
        "it failed without a 2xx for longer than its disable_after"
    }
}
