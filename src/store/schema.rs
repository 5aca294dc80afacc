//! The outbox's schema: its migrations by `PRAGMA user_version`, and the integrity
//! check at open.

use std::path::Path;

use rusqlite::Connection;

use super::{StoreError, api_hooks, q};

pub(super) const SCHEMA_VERSION: i64 = 9;

pub(super) fn corrupt_or(e: rusqlite::Error, path: &Path, op: &'static str) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        }
        _ => StoreError::Query { op, source: e },
    }
}

pub(super) fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let result: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| corrupt_or(e, path, "check integrity"))?;
    if result != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: result,
        });
    }
    Ok(())
}

pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| corrupt_or(e, path, "read schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
            CREATE TABLE site_state (
              site TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at INTEGER NOT NULL);
            CREATE TABLE deployments (
              site TEXT NOT NULL, serial INTEGER NOT NULL, id TEXT NOT NULL, release TEXT,
              status TEXT NOT NULL, data TEXT NOT NULL,
              created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
              PRIMARY KEY (site, serial));
            CREATE TABLE events (
              id INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT, kind TEXT NOT NULL, status TEXT,
              deployment_serial INTEGER, payload BLOB NOT NULL, created_at INTEGER NOT NULL);
            CREATE TABLE deliveries (
              seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
              hook TEXT NOT NULL, event_id INTEGER NOT NULL REFERENCES events(id),
              body BLOB NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
              next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
              updated_at INTEGER NOT NULL, last_status INTEGER, last_error TEXT);
            CREATE INDEX deliveries_queue ON deliveries (hook, state, seq);
            CREATE TABLE attempts (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              delivery_seq INTEGER NOT NULL REFERENCES deliveries(seq),
              n INTEGER NOT NULL, started_at INTEGER NOT NULL, duration_us INTEGER NOT NULL,
              request_headers TEXT NOT NULL, response_status INTEGER, response_headers TEXT,
              response_body BLOB, error TEXT);
            CREATE INDEX attempts_delivery ON attempts (delivery_seq);
            CREATE TABLE hooks (
              name TEXT PRIMARY KEY, disabled_at INTEGER, disabled_reason TEXT);
            PRAGMA user_version = 1;
            COMMIT;",
        )
        .map_err(q("migrate to schema 1"))?;
    }
    if version < 2 {
        conn.execute_batch(api_hooks::MIGRATE_2)
            .map_err(q("migrate to schema 2"))?;
    }
    if version < 3 {
        // Per-delivery headers a format adds (CloudEvents' `ce-*`, its content type):
        // a JSON array of [name, value] pairs, NULL for none.
        conn.execute_batch(
            "BEGIN;
            ALTER TABLE deliveries ADD COLUMN headers TEXT;
            PRAGMA user_version = 3;
            COMMIT;",
        )
        .map_err(q("migrate to schema 3"))?;
    }
    if version < 4 {
        conn.execute_batch(super::github::MIGRATE_4)
            .map_err(q("migrate to schema 4"))?;
    }
    if version < 5 {
        conn.execute_batch(super::chains::MIGRATE_5)
            .map_err(q("migrate to schema 5"))?;
    }
    if version < 6 {
        conn.execute_batch(super::relay::MIGRATE_6)
            .map_err(q("migrate to schema 6"))?;
    }
    if version < 7 {
        // Bodies stored once, by content (SHA-256): a redelivery, or one publish to many
        // hooks, refers to the stored body rather than copying it. Rows written before
        // keep their own `body`; new ones an empty one and the hash.
        conn.execute_batch(
            "BEGIN;
            CREATE TABLE bodies (hash TEXT PRIMARY KEY, body BLOB NOT NULL);
            ALTER TABLE deliveries ADD COLUMN body_hash TEXT;
            ALTER TABLE events ADD COLUMN payload_hash TEXT;
            CREATE INDEX deliveries_body ON deliveries (body_hash);
            CREATE INDEX events_payload ON events (payload_hash);
            PRAGMA user_version = 7;
            COMMIT;",
        )
        .map_err(q("migrate to schema 7"))?;
    }
    if version < 8 {
        conn.execute_batch(super::dora::MIGRATE_8)
            .map_err(q("migrate to schema 8"))?;
    }
    if version < 9 {
        conn.execute_batch(super::relay::MIGRATE_9)
            .map_err(q("migrate to schema 9"))?;
    }
    Ok(())
}
