//! Hooks registered through the API (Kudu's `/api/hooks`): stored here so they survive
//! restarts; their run-time name is `api-<id>` (`config::is_api_hook_name`), and their
//! deliveries, attempts and disabled flag live in the same tables as a config hook's.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, q};
use crate::model::Timestamp;

/// A hook registered through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiHook {
    /// Decimal, server-generated, never reused.
    pub id: i64,
    pub url: String,
    pub event: String,
    pub insecure_ssl: bool,
    pub created_at: Timestamp,
}

impl ApiHook {
    /// The hook's run-time name: its deliveries' `hook`.
    pub fn name(&self) -> String {
        hook_name(self.id)
    }

    /// The hook it runs as (`api-<id>`, its one event; `public_only` unless the API lets
    /// hooks call private addresses): what the daemon runs and `hooks test` sends to.
    pub fn to_hook(&self, public_only: bool) -> Result<crate::config::HookConfig, url::ParseError> {
        let url = url::Url::parse(&self.url)?;
        Ok(crate::config::HookConfig {
            events: vec![self.event.clone()],
            insecure_ssl: self.insecure_ssl,
            public_only,
            ..crate::config::HookConfig::new(&self.name(), url)
        })
    }
}

pub fn hook_name(id: i64) -> String {
    format!("api-{id}")
}

/// What a subscription did (Kudu's semantics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscribed {
    Created(ApiHook),
    /// The same URL and event were registered already: that hook.
    Existing(ApiHook),
    /// The same URL is registered for another event.
    Conflict(ApiHook),
}

/// The last attempt of a hook, for Kudu's `last_*` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastAttempt {
    pub at: Timestamp,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub event: String,
    pub delivery: String,
}

/// URLs are compared trimmed and case-insensitively, as Kudu does.
fn url_key(url: &str) -> String {
    url.trim().to_lowercase()
}

const COLUMNS: &str = "id, url, event, insecure_ssl, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiHook> {
    Ok(ApiHook {
        id: r.get(0)?,
        url: r.get(1)?,
        event: r.get(2)?,
        insecure_ssl: r.get(3)?,
        created_at: Timestamp(r.get(4)?),
    })
}

impl Store {
    /// Registers `url` for `event`, or finds it registered (one transaction).
    pub fn subscribe_api_hook(
        &self,
        url: &str,
        event: &str,
        insecure_ssl: bool,
        now: Timestamp,
    ) -> Result<Subscribed, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        let found = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_hooks WHERE url_key = ?1"),
                params![url_key(url)],
                row,
            )
            .optional()
            .map_err(q("read api hooks"))?;
        let result = match found {
            Some(h) if h.event.eq_ignore_ascii_case(event) => Subscribed::Existing(h),
            Some(h) => Subscribed::Conflict(h),
            None => {
                tx.execute(
                    "INSERT INTO api_hooks (url, url_key, event, insecure_ssl, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![url.trim(), url_key(url), event, insecure_ssl, now.0],
                )
                .map_err(q("write api hook"))?;
                Subscribed::Created(ApiHook {
                    id: tx.last_insert_rowid(),
                    url: url.trim().to_string(),
                    event: event.to_string(),
                    insecure_ssl,
                    created_at: now,
                })
            }
        };
        tx.commit().map_err(q("commit transaction"))?;
        Ok(result)
    }

    /// Every hook registered through the API, oldest first.
    pub fn api_hooks(&self) -> Result<Vec<ApiHook>, StoreError> {
        let conn = self.read_conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM api_hooks ORDER BY id"))
            .map_err(q("read api hooks"))?;
        let rows = stmt.query_map([], row).map_err(q("read api hooks"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(q("read api hooks"))
    }

    /// Removes a hook registered through the API; its waiting deliveries are kept as
    /// `cancelled` (visible in the history). `None`: no such hook.
    pub fn delete_api_hook(
        &self,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<(ApiHook, usize)>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        let found = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_hooks WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
            .map_err(q("read api hooks"))?;
        let Some(hook) = found else {
            return Ok(None);
        };
        tx.execute("DELETE FROM api_hooks WHERE id = ?1", params![id])
            .map_err(q("delete api hook"))?;
        let cancelled = tx
            .execute(
                "UPDATE deliveries SET state = 'cancelled', updated_at = ?2
                 WHERE hook = ?1 AND state IN ('pending', 'sending')",
                params![hook.name(), now.0],
            )
            .map_err(q("cancel deliveries"))?;
        tx.commit().map_err(q("commit transaction"))?;
        Ok(Some((hook, cancelled)))
    }

    /// The newest attempt of `hook`, if any.
    pub fn last_attempt(&self, hook: &str) -> Result<Option<LastAttempt>, StoreError> {
        let conn = self.read_conn();
        conn.query_row(
            "SELECT a.started_at, a.response_status, a.error, e.kind, d.id
             FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq
             JOIN events e ON e.id = d.event_id
             WHERE d.hook = ?1 ORDER BY a.id DESC LIMIT 1",
            params![hook],
            |r| {
                Ok(LastAttempt {
                    at: Timestamp(r.get(0)?),
                    status: r.get(1)?,
                    error: r.get(2)?,
                    event: r.get(3)?,
                    delivery: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(q("read last attempt"))
    }
}

/// Whether the API hook behind `hook` (an `api-<id>` name) is gone, inside `tx`: a read
/// that planned deliveries before a delete commits them `cancelled`, never orphaned.
pub(super) fn api_hook_deleted(
    tx: &rusqlite::Transaction<'_>,
    hook: &str,
) -> Result<bool, StoreError> {
    let Some(id) = hook
        .strip_prefix("api-")
        .and_then(|id| id.parse::<i64>().ok())
    else {
        return Ok(false);
    };
    let n: i64 = tx
        .query_row(
            "SELECT count(*) FROM api_hooks WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .map_err(q("read api hooks"))?;
    Ok(n == 0)
}

pub(super) const MIGRATE_2: &str = "BEGIN;
    CREATE TABLE api_hooks (
      id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, url_key TEXT NOT NULL UNIQUE,
      event TEXT NOT NULL, insecure_ssl INTEGER NOT NULL, created_at INTEGER NOT NULL);
    PRAGMA user_version = 2;
    COMMIT;";

/// A deployment as the API shows it: its site and the stored `Deployment` JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeployment {
    pub site: String,
    pub serial: u64,
    pub data: String,
    pub updated_at: Timestamp,
}

impl Store {
    /// Deployments, newest first (by last change), optionally of one site and/or with
    /// one payload id.
    pub fn deployments(
        &self,
        site: Option<&str>,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredDeployment>, StoreError> {
        let conn = self.read_conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT site, serial, data, updated_at FROM deployments
                 WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR id = ?2)
                 ORDER BY created_at DESC, serial DESC LIMIT ?3",
            )
            .map_err(q("read deployments"))?;
        let rows = stmt
            .query_map(
                params![site, id, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(StoredDeployment {
                        site: r.get(0)?,
                        serial: r.get::<_, i64>(1)?.unsigned_abs(),
                        data: r.get(2)?,
                        updated_at: Timestamp(r.get(3)?),
                    })
                },
            )
            .map_err(q("read deployments"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(q("read deployments"))
    }
}
