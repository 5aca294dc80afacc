//! Read-only queries over the outbox for `status` and `deliveries` (and tests).

use rusqlite::params;

use super::{Store, StoreError, q};
use crate::infer::model::Timestamp;

/// One delivery as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub seq: i64,
    pub id: String,
    pub hook: String,
    pub event: String,
    pub state: String,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

impl Store {
    /// Deliveries, newest first, optionally of one hook and/or only failed ones.
    pub fn list_deliveries(
        &self,
        hook: Option<&str>,
        failed_only: bool,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT d.seq, d.id, d.hook, e.kind, d.state, d.attempts, d.created_at,
                       d.last_status, d.last_error
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE (?1 IS NULL OR d.hook = ?1)
                       AND (?2 = 0 OR d.state = 'dead' OR (d.state = 'pending' AND d.attempts > 0))
                     ORDER BY d.seq DESC LIMIT ?3",
                )
                .map_err(q("list deliveries"))?;
            let rows = stmt
                .query_map(params![hook, failed_only as i64, limit as i64], |r| {
                    Ok(DeliveryRow {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        hook: r.get(2)?,
                        event: r.get(3)?,
                        state: r.get(4)?,
                        attempts: r.get(5)?,
                        created_at: Timestamp(r.get(6)?),
                        last_status: r.get(7)?,
                        last_error: r.get(8)?,
                    })
                })
                .map_err(q("list deliveries"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(q("list deliveries"))
        })
    }
}
