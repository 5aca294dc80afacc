//! Relay mode (schema 6): each message a `[[source]]` consumed is written once — its
//! source message id in the same transaction as the event it became, so a message seen
//! again (a redelivery after a crash, an edge's re-send) is dropped, and the JetStream
//! message is acknowledged only after that commit.

use rusqlite::{OptionalExtension, params};

use super::{NewEvent, Store, StoreError, q};
use crate::infer::model::Deployment;
use crate::model::Timestamp;

pub(super) const MIGRATE_6: &str = "BEGIN;
    CREATE TABLE source_messages (
        source TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (source, msg_id)
    );
    PRAGMA user_version = 6;
    COMMIT;";

impl Store {
    /// Commits `event` as message `msg_id` of `source`, unless that message was committed
    /// before. Returns whether it is new (its deliveries are then in the outbox).
    pub fn commit_relayed(
        &self,
        source: &str,
        msg_id: &str,
        event: &NewEvent,
        deployment: Option<&Deployment>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            let tx = c
                .unchecked_transaction()
                .map_err(q("begin a relayed event"))?;
            let fresh = tx
                .execute(
                    "INSERT OR IGNORE INTO source_messages (source, msg_id, received_at)
                     VALUES (?1, ?2, ?3)",
                    params![source, msg_id, now.0],
                )
                .map_err(q("note a relayed message"))?;
            if fresh == 0 {
                return Ok(false);
            }
            super::insert_events(&tx, std::slice::from_ref(event), now)?;
            if let (Some(d), Some(site)) = (deployment, event.site.as_deref()) {
                upsert_deployment(&tx, site, d, now)?;
            }
            tx.commit().map_err(q("commit a relayed event"))?;
            Ok(true)
        })
    }
}

/// The relay's record of an edge's deployment (`site` is `<hostName>/<siteName>`, the
/// key the edge's `receivedTime`): the same deployment's later events update it.
fn upsert_deployment(
    tx: &rusqlite::Transaction<'_>,
    site: &str,
    d: &Deployment,
    now: Timestamp,
) -> Result<(), StoreError> {
    let existing: Option<i64> = tx
        .query_row(
            "SELECT serial FROM deployments WHERE site = ?1 AND id = ?2
               AND json_extract(data, '$.key') = ?3",
            params![site, d.id, d.key],
            |r| r.get(0),
        )
        .optional()
        .map_err(q("find a relayed deployment"))?;
    let serial = match existing {
        Some(s) => s,
        None => tx
            .query_row(
                "SELECT COALESCE(MAX(serial), 0) + 1 FROM deployments WHERE site = ?1",
                [site],
                |r| r.get(0),
            )
            .map_err(q("number a relayed deployment"))?,
    };
    let mut d = d.clone();
    d.serial = serial as u64;
    let data = serde_json::to_string(&d).unwrap_or_default();
    tx.execute(
        "INSERT INTO deployments (site, serial, id, release, status, data, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (site, serial) DO UPDATE SET release = excluded.release,
           status = excluded.status, data = excluded.data, updated_at = excluded.updated_at",
        params![
            site,
            serial,
            d.id,
            d.release,
            d.status.as_str(),
            data,
            now.0
        ],
    )
    .map_err(q("write a relayed deployment"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDelivery;

    #[test]
    fn a_message_is_committed_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let commit = |id: &str| {
            let ev = NewEvent {
                kind: "PostDeployment".into(),
                site: Some("shop".into()),
                status: None,
                deployment_serial: None,
                payload: b"{}".to_vec(),
                chains: Vec::new(),
                deliveries: vec![NewDelivery::new("h", b"{}".to_vec())],
            };
            store
                .commit_relayed("fleet", id, &ev, None, Timestamp(1))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(commit("msg_1"));
        assert!(!commit("msg_1"), "the same message again is dropped");
        assert!(commit("msg_2"));
        assert_eq!(
            store
                .list_deliveries(Some("h"), false, 10)
                .map(|d| d.len())
                .unwrap_or(0),
            2
        );
    }
}
