//! The SQLite outbox and history (SPEC §5): site state, deployments, events,
//! deliveries, attempts and hook flags, with migrations by `PRAGMA user_version`.
//!
//! `commit_inference` writes a site's new state, its transitions, their events and one
//! delivery per matching hook in ONE transaction; nothing else writes the outbox.
//! The database runs in WAL mode with `synchronous=FULL`, so a committed transition
//! survives a crash or power loss. The daemon holds an exclusive lock file beside it, so
//! two daemons never share one state directory.

pub mod api_hooks;
pub mod chains;
pub mod dora;
pub mod github;
pub mod query;
pub mod relay;
mod schema;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::infer::model::{SiteState, Transition};
use crate::model::{Status, Timestamp};
use schema::{SCHEMA_VERSION, check_integrity, corrupt_or, migrate};

pub const DB_FILE: &str = "deployhook.sqlite";
pub const LOCK_FILE: &str = "deployhook.lock";
/// Response bodies are kept up to this size.
pub const MAX_STORED_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the OS random source failed: {reason}")]
    Random { reason: String },
    #[error("cannot create the state directory {}", path.display())]
    CreateStateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another deployhook daemon is using {} (lock file {} is held)", dir.display(), dir.join(LOCK_FILE).display())]
    Locked { dir: PathBuf },
    #[error("cannot lock {}", path.display())]
    LockStateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no database {} yet: has the daemon run with this state_dir?", path.display())]
    NoDatabase { path: PathBuf },
    #[error("cannot open the database {}", path.display())]
    OpenDatabase {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database {} is corrupt ({detail}); it was left untouched: restore it from a backup or move it aside", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("the database {} has schema version {found}, newer than this deployhook knows ({SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: i64 },
    #[error("database operation {op} failed")]
    Query {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The same failure, told to each of the workers whose attempts were in one batch.
    #[error("recording a batch of attempts failed: {0}")]
    Batch(String),
    #[error("the attempt recorder has stopped")]
    Closed,
}

impl StoreError {
    /// This error as told again to another party (errors of SQLite cannot be cloned).
    pub fn again(&self) -> StoreError {
        StoreError::Batch(crate::telemetry::chain(self))
    }
}

fn q(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// A handle to the outbox; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// A second, read-only connection for the workers' queue reads: with WAL they never
    /// wait for a commit (and its fsync) on the writing connection.
    reader: Option<Arc<Mutex<Connection>>>,
    path: PathBuf,
    _lock: Option<Arc<File>>,
}

/// A new event and the deliveries it makes.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: String,
    pub site: Option<String>,
    pub status: Option<Status>,
    pub deployment_serial: Option<u64>,
    pub payload: Vec<u8>,
    pub deliveries: Vec<NewDelivery>,
    /// Chain runs the event starts (their first step's delivery is in `deliveries`).
    pub chains: Vec<chains::NewChainRun>,
}

#[derive(Clone, Debug)]
pub struct NewDelivery {
    /// Chosen by the `events` stage, so a format can carry it in the body (CloudEvents'
    /// `id`); stable across attempts and restarts.
    pub id: String,
    pub hook: String,
    pub body: Vec<u8>,
    /// Headers the format adds (CloudEvents' `ce-*`, its content type).
    pub headers: Vec<(String, String)>,
}

impl NewDelivery {
    /// A delivery of `body` to `hook` with a new id and no headers of its own.
    pub fn new(hook: &str, body: Vec<u8>) -> NewDelivery {
        NewDelivery {
            id: new_delivery_id(),
            hook: hook.to_string(),
            body,
            headers: Vec::new(),
        }
    }
}

/// The head of a hook's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    pub seq: i64,
    pub id: String,
    pub hook: String,
    pub event: String,
    pub body: Vec<u8>,
    /// Headers the format added (see `NewDelivery::headers`).
    pub headers: Vec<(String, String)>,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
}

/// What one site read commits (`commit_inference`): the site's new state, its
/// transitions, the commits each success shipped, the events and their deliveries.
pub struct Inferred<'a> {
    pub site: &'a str,
    pub state: &'a SiteState,
    pub transitions: &'a [Transition],
    pub shipped: &'a std::collections::BTreeMap<u64, Vec<(String, Timestamp)>>,
    pub events: &'a [NewEvent],
}

/// A delivery just committed, handed to its hook's worker with the wake-up (so the
/// worker need not read the outbox for it): `prev` is the hook's newest other pending
/// delivery at the commit. The worker takes it only if it already holds `prev` (or there
/// is none); otherwise it reads the outbox, as after any wake-up.
#[derive(Clone, Debug)]
pub struct Queued {
    pub delivery: DueDelivery,
    pub prev: Option<i64>,
}

/// One HTTP request of a delivery, for the history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptRecord {
    pub started_at: Timestamp,
    pub duration: Duration,
    pub request_headers: Vec<(String, String)>,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub error: Option<String>,
}

/// One attempt's result, waiting to be recorded with others (`commit_attempts`).
#[derive(Clone, Debug)]
pub struct AttemptResult {
    pub delivery: DueDelivery,
    pub record: AttemptRecord,
    pub outcome: Outcome,
    /// Events the attempt made (operational ones: `HookFailing` …), committed with it.
    pub also: Vec<NewEvent>,
}

/// What one attempt decided for its delivery: the one outcome type, produced by
/// `deliver::retry::decide` and committed by `commit_attempt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Any 2xx.
    Delivered,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// The retry schedule is used up.
    Dead,
    /// `410 Gone`: the delivery is dead and the hook disabled.
    DisableHook,
}

/// Where a delivery is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// Sent by a command (`hooks test`), not by a worker, until its attempt is recorded.
    Sending,
    Delivered,
    Dead,
    /// Its hook was deleted (through the API) before it was delivered.
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// The state stored as `text`; an unknown one (a newer version's) reads as pending.
    pub fn parse(text: &str) -> DeliveryState {
        match text {
            "sending" => DeliveryState::Sending,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            "cancelled" => DeliveryState::Cancelled,
            _ => DeliveryState::Pending,
        }
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn new_delivery_id() -> String {
    let mut id = String::from("msg_");
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
    id
}

impl Store {
    /// Opens (creating if needed) the outbox for the daemon, holding the state
    /// directory's lock.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_state_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
        }
        .map_err(|source| StoreError::LockStateDir {
            path: lock_path.clone(),
            source,
        })?;
        match lock.try_lock() {
            Ok(()) => {
                // The holder's pid, for `deployhook reload` run by hand.
                let _ = lock.set_len(0);
                let _ = (&lock).write_all(format!("{}\n", std::process::id()).as_bytes());
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::LockStateDir {
                    path: lock_path,
                    source,
                });
            }
        }
        Self::open_writable(dir, Some(lock))
    }

    /// Opens the outbox read-only (for `status`, `deliveries` while a daemon runs).
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NoDatabase { path });
        }
        let conn = open_reader(&path)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| corrupt_or(e, &path, "read schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
            });
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            reader: None,
            path,
            _lock: None,
        })
    }

    /// Opens (creating if needed) the outbox for a command that writes (`redeliver`,
    /// `hooks test`), beside a running daemon: no lock file, SQLite's own locking.
    pub fn open_shared(dir: &Path) -> Result<Store, StoreError> {
        create_state_dir(dir)?;
        Self::open_writable(dir, None)
    }

    /// The connection setup every writer shares: integrity check, WAL,
    /// `synchronous=FULL`, migrations.
    fn open_writable(dir: &Path, lock: Option<File>) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        secure_database_files(&path);
        let conn = Connection::open(&path).map_err(|source| StoreError::OpenDatabase {
            path: path.clone(),
            source,
        })?;
        check_integrity(&conn, &path)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(q("set busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| corrupt_or(e, &path, "set WAL mode"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(q("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(q("enable foreign keys"))?;
        migrate(&conn, &path)?;
        // Every statement of a commit stays prepared (`write::exec`).
        conn.set_prepared_statement_cache_capacity(64);
        files::cache_at_most(&conn)?;
        let reader = open_reader(&path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            reader: Some(Arc::new(Mutex::new(reader))),
            path,
            _lock: lock.map(Arc::new),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls
        // back an unfinished transaction when the next one begins.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The read-only connection where there is one, else the only one.
    fn read_conn(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(r) => r.lock().unwrap_or_else(|e| e.into_inner()),
            None => self.conn(),
        }
    }

    /// The persisted state of a site, if it has been seen before.
    pub fn read_site_state(&self, site: &str) -> Result<Option<SiteState>, StoreError> {
        let conn = self.conn();
        let json: Option<String> = conn
            .query_row(
                "SELECT state FROM site_state WHERE site = ?1",
                [site],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read site state"))?;
        // A state written by an incompatible version is dropped: the site is baselined again.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Commits a site's new state, its transitions (with the commits each success
    /// shipped, for DORA) and their events and deliveries in one transaction. Returns the
    /// ids of the deliveries created.
    pub fn commit_inference(
        &self,
        inferred: Inferred<'_>,
        now: Timestamp,
        hand: impl FnOnce(Vec<Queued>),
    ) -> Result<Vec<String>, StoreError> {
        let Inferred {
            site,
            state,
            transitions,
            shipped,
            events,
        } = inferred;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        let state_json = serde_json::to_string(state).unwrap_or_default();
        exec(&tx,
            "INSERT INTO site_state (site, state, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(site) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            params![site, state_json, now.0],
        )
        .map_err(q("write site state"))?;
        for t in transitions {
            let d = &t.deployment;
            let data = serde_json::to_string(d).unwrap_or_default();
            exec(&tx,
                "INSERT INTO deployments (site, serial, id, release, status, data, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT(site, serial) DO UPDATE SET id = excluded.id, release = excluded.release,
                   status = excluded.status, data = excluded.data, updated_at = excluded.updated_at",
                params![site, d.serial as i64, d.id, d.release, t.to.as_str(), data, now.0],
            )
            .map_err(q("write deployment"))?;
            if t.to == Status::Success
                && let Some(commits) = shipped.get(&d.serial)
            {
                let ended = d.ended.unwrap_or(d.last_change);
                dora::write_shipped(&tx, site, d.serial, ended, commits)?;
            }
        }
        let mut queued = Vec::new();
        let ids = insert_events(&tx, events, now, Some(&mut queued))?;
        tx.commit().map_err(q("commit transaction"))?;
        // Handed over before the writing connection is let go: hand-offs arrive in the
        // order of their commits.
        hand(queued);
        Ok(ids)
    }

    /// Commits events that are not transitions (pings, published events, redeliveries).
    pub fn commit_events(
        &self,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        let ids = insert_events(&tx, events, now, None)?;
        tx.commit().map_err(q("commit transaction"))?;
        Ok(ids)
    }

    /// Commits a one-off event (`hooks test`) whose single delivery is sent by the
    /// caller, not by a worker (its state is `sending` until `commit_attempt`).
    pub fn commit_direct(
        &self,
        kind: &str,
        d: &NewDelivery,
        now: Timestamp,
    ) -> Result<DueDelivery, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        let hash = put_body(&tx, &d.body)?;
        tx.execute(
            "INSERT INTO events (site, kind, status, deployment_serial, payload, payload_hash,
               created_at) VALUES (NULL, ?1, NULL, NULL, x'', ?2, ?3)",
            params![kind, hash, now.0],
        )
        .map_err(q("write event"))?;
        let event_id = tx.last_insert_rowid();
        let seq = insert_delivery(&tx, d, event_id, "sending", now)?;
        tx.commit().map_err(q("commit transaction"))?;
        Ok(DueDelivery {
            seq,
            id: d.id.clone(),
            hook: d.hook.clone(),
            event: kind.to_string(),
            body: d.body.clone(),
            headers: d.headers.clone(),
            attempts: 0,
            next_attempt_at: now,
        })
    }

    /// The oldest undelivered delivery of `hook`: deliveries of a hook go in order.
    pub fn next_delivery(&self, hook: &str) -> Result<Option<DueDelivery>, StoreError> {
        Ok(self.next_deliveries(hook, 1)?.into_iter().next())
    }

    /// The first `limit` pending deliveries of `hook`, in order.
    pub fn next_deliveries(
        &self,
        hook: &str,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let conn = self.read_conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT d.seq, d.id, d.hook, e.kind, COALESCE(b.body, d.body), d.attempts,
                   d.next_attempt_at, d.headers
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 LEFT JOIN bodies b ON b.hash = d.body_hash
                 WHERE d.hook = ?1 AND d.state = 'pending' ORDER BY d.seq LIMIT ?2",
            )
            .map_err(q("read next deliveries"))?;
        let rows = stmt
            .query_map(params![hook, i64::try_from(limit).unwrap_or(1)], |r| {
                Ok(DueDelivery {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    hook: r.get(2)?,
                    event: r.get(3)?,
                    body: r.get(4)?,
                    headers: parse_headers(r.get::<_, Option<String>>(7)?.as_deref()),
                    attempts: r.get(5)?,
                    next_attempt_at: Timestamp(r.get(6)?),
                })
            })
            .map_err(q("read next deliveries"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(q("read next deliveries"))
    }

    /// Records one attempt and its outcome (one transaction).
    pub fn commit_attempt(
        &self,
        delivery: &DueDelivery,
        attempt: &AttemptRecord,
        update: &Outcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        write_attempt(&tx, delivery, attempt, update, now)?;
        tx.commit().map_err(q("commit transaction"))
    }

    /// Records several attempts (of different hooks) in one transaction: one fsync for
    /// all of them (group commit).
    pub fn commit_attempts(
        &self,
        results: &[AttemptResult],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        // Without its own fsync: SQLite's WAL has the transaction once `write(2)` has
        // returned, so a SIGKILL keeps it; the next commit of a read or the API (FULL)
        // or a checkpoint syncs it. A power cut can lose the latest attempts' records:
        // those deliveries are sent again (at least once), in order, never lost.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(q("set synchronous"))?;
        let committed = (|| {
            let tx = conn.transaction().map_err(q("begin transaction"))?;
            for r in results {
                write_attempt(&tx, &r.delivery, &r.record, &r.outcome, now)?;
                insert_events(&tx, &r.also, now, None)?;
            }
            tx.commit().map_err(q("commit transaction"))
        })();
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(q("set synchronous"))?;
        committed
    }

    /// Why `hook` is disabled, if it is.
    pub fn hook_disabled(&self, hook: &str) -> Result<Option<String>, StoreError> {
        let conn = self.read_conn();
        conn.query_row(
            "SELECT disabled_reason FROM hooks WHERE name = ?1 AND disabled_at IS NOT NULL",
            [hook],
            |r| r.get(0),
        )
        .optional()
        .map_err(q("read hook flags"))
    }

    /// Deletes history older than `max_age` (delivered and dead deliveries, their
    /// attempts, events no delivery needs). Returns how many deliveries went.
    pub fn prune(&self, max_age: Duration, now: Timestamp) -> Result<usize, StoreError> {
        let cutoff = Timestamp(now.0 - i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX));
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(q("begin transaction"))?;
        tx.execute(
            "DELETE FROM attempts WHERE delivery_seq IN (SELECT seq FROM deliveries
               WHERE state IN ('delivered', 'dead') AND updated_at < ?1)",
            [cutoff.0],
        )
        .map_err(q("prune attempts"))?;
        let n = tx
            .execute(
                "DELETE FROM deliveries WHERE state IN ('delivered', 'dead') AND updated_at < ?1",
                [cutoff.0],
            )
            .map_err(q("prune deliveries"))?;
        tx.execute(
            "DELETE FROM events WHERE created_at < ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
            [cutoff.0],
        )
        .map_err(q("prune events"))?;
        tx.execute(
            "DELETE FROM bodies
             WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.body_hash = bodies.hash)
               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.payload_hash = bodies.hash)",
            [],
        )
        .map_err(q("prune bodies"))?;
        // A relayed message older than the history is not redelivered any more.
        tx.execute(
            "DELETE FROM source_messages WHERE received_at < ?1",
            [cutoff.0],
        )
        .map_err(q("prune relayed message ids"))?;
        tx.commit().map_err(q("commit transaction"))?;
        Ok(n)
    }

    /// Runs `f` with the connection (for `query`).
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn())
    }

    /// Runs `f` with the read-only connection where there is one: a long read (DORA
    /// over all of history) does not hold up the daemon's commits.
    pub(crate) fn with_read_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.read_conn())
    }
}

mod files;
mod write;

use files::{create_state_dir, open_reader, secure_database_files};
pub(crate) use write::{disabled_reason, insert_delivery};
use write::{exec, insert_events, parse_headers, put_body, write_attempt};

#[cfg(test)]
mod tests;
