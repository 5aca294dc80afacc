//! Relay mode (schema 6, 9): each message a `[[source]]` consumed is written once — its
//! source message id in the same transaction as the event it became, so a message seen
//! again (an edge's re-send) is dropped — and with a batch of messages, the stream
//! sequence consumed up to (`source_positions`): a relay resumes right after it.

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

pub(super) const MIGRATE_9: &str = "BEGIN;
    CREATE TABLE source_positions (
        source TEXT PRIMARY KEY,
        stream_sequence INTEGER NOT NULL
    );
    PRAGMA user_version = 9;
    COMMIT;";

/// One consumed message: its id, and the event it became (`None`: no deployhook event,
/// skipped — its sequence still counts as consumed).
pub struct RelayedMessage {
    pub msg_id: String,
    pub event: Option<(NewEvent, Option<Deployment>)>,
}

impl Store {
    /// Where `source` stopped: the last stream sequence committed.
    pub fn source_position(&self, source: &str) -> Result<Option<u64>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT stream_sequence FROM source_positions WHERE source = ?1",
                [source],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.map(|s| u64::try_from(s).unwrap_or(0)))
            .map_err(q("read a source's position"))
        })
    }

    /// Commits a batch of consumed messages, in order, and `source`'s position (`last`,
    /// the batch's last stream sequence) in one transaction. Returns, per message, whether
    /// it became new deliveries (a message id seen before is dropped).
    pub fn commit_relayed_batch(
        &self,
        source: &str,
        messages: &[RelayedMessage],
        last: u64,
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        self.with_conn(|c| {
            let tx = c
                .unchecked_transaction()
                .map_err(q("begin relayed events"))?;
            let mut fresh = Vec::with_capacity(messages.len());
            for m in messages {
                let Some((event, deployment)) = &m.event else {
                    fresh.push(false);
                    continue;
                };
                let new = tx
                    .execute(
                        "INSERT OR IGNORE INTO source_messages (source, msg_id, received_at)
                         VALUES (?1, ?2, ?3)",
                        params![source, m.msg_id, now.0],
                    )
                    .map_err(q("note a relayed message"))?
                    > 0;
                if new {
                    super::insert_events(&tx, std::slice::from_ref(event), now, None)?;
                    if let (Some(d), Some(site)) = (deployment, event.site.as_deref()) {
                        upsert_deployment(&tx, site, d, now)?;
                    }
                }
                fresh.push(new);
            }
            tx.execute(
                "INSERT INTO source_positions (source, stream_sequence) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET stream_sequence = excluded.stream_sequence",
                params![source, i64::try_from(last).unwrap_or(i64::MAX)],
            )
            .map_err(q("note a source's position"))?;
            tx.commit().map_err(q("commit relayed events"))?;
            Ok(fresh)
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
            let m = RelayedMessage {
                msg_id: id.into(),
                event: Some((ev, None)),
            };
            store
                .commit_relayed_batch("fleet", &[m], 1, Timestamp(1))
                .unwrap_or_else(|e| panic!("{e}"))
                == [true]
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

    #[test]
    fn a_batch_commits_its_messages_in_order_and_the_position_with_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let event = || NewEvent {
            kind: "PostDeployment".into(),
            site: Some("shop".into()),
            status: None,
            deployment_serial: None,
            payload: b"{}".to_vec(),
            chains: Vec::new(),
            deliveries: vec![NewDelivery::new("h", b"{}".to_vec())],
        };
        let m = |id: &str, ev: bool| RelayedMessage {
            msg_id: id.into(),
            event: ev.then(|| (event(), None)),
        };
        assert_eq!(store.source_position("relay").ok().flatten(), None);
        let fresh = store
            .commit_relayed_batch(
                "relay",
                &[m("a", true), m("junk", false), m("b", true)],
                7,
                Timestamp(1),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fresh, [true, false, true]);
        assert_eq!(store.source_position("relay").ok().flatten(), Some(7));
        // Seen again (an edge's re-send): dropped; the position moves on.
        let fresh = store
            .commit_relayed_batch("relay", &[m("b", true), m("c", true)], 9, Timestamp(2))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fresh, [false, true]);
        assert_eq!(store.source_position("relay").ok().flatten(), Some(9));
        assert_eq!(
            store
                .list_deliveries(Some("h"), false, 10)
                .map(|d| d.len())
                .unwrap_or(0),
            3
        );
    }
}
