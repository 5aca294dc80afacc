//! Read-only queries over the outbox for `status` and `deliveries` (and tests).

use rusqlite::{OptionalExtension, params};

use super::{AttemptRecord, Store, StoreError, q};
use crate::model::Timestamp;

/// One delivery as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub seq: i64,
    pub id: String,
    pub hook: String,
    pub event: String,
    pub state: super::DeliveryState,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// The first nine columns of a delivery listing (`seq, id, hook, kind, state, attempts,
/// created_at, last_status, last_error`), as a `DeliveryRow`.
fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        hook: r.get(2)?,
        event: r.get(3)?,
        state: super::DeliveryState::parse(&r.get::<_, String>(4)?),
        attempts: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        last_status: r.get(7)?,
        last_error: r.get(8)?,
    })
}

/// What became of a delivery, as a listing's filter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx came back.
    Delivered,
    /// An attempt failed; another is scheduled.
    Retrying,
    /// Queued, not attempted yet.
    Waiting,
    /// Every attempt failed (or a `410`).
    Dead,
    /// Its hook was deleted first.
    Cancelled,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 5] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retrying,
        DeliveryOutcome::Waiting,
        DeliveryOutcome::Dead,
        DeliveryOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::Waiting => "waiting",
            DeliveryOutcome::Dead => "dead",
            DeliveryOutcome::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryOutcome> {
        DeliveryOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The condition on `deliveries d` (fixed text, never built from input).
    fn sql(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "d.state = 'delivered'",
            DeliveryOutcome::Retrying => "(d.state IN ('pending', 'sending') AND d.attempts > 0)",
            DeliveryOutcome::Waiting => "(d.state IN ('pending', 'sending') AND d.attempts = 0)",
            DeliveryOutcome::Dead => "d.state = 'dead'",
            DeliveryOutcome::Cancelled => "d.state = 'cancelled'",
        }
    }
}

/// Which deliveries a listing wants: `deployhook deliveries list|retry`'s filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub hook: Option<String>,
    /// The event type, compared case-insensitively.
    pub event: Option<String>,
    /// Any of these outcomes (none: every one).
    pub outcomes: Vec<DeliveryOutcome>,
    /// The HTTP status of the last attempt.
    pub http_status: Option<u16>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// Of this site's events.
    pub site: Option<String>,
    /// Of this deployment's events (its serial in `site`).
    pub deployment: Option<u64>,
}

impl DeliveryFilter {
    /// A filter for a retry: waiting and retrying ones unless outcomes are given; an
    /// outcome that is no failure (delivered, cancelled) is refused, with why.
    pub fn for_retry(mut self) -> Result<DeliveryFilter, String> {
        if self.outcomes.is_empty() {
            self.outcomes = vec![DeliveryOutcome::Retrying, DeliveryOutcome::Waiting];
        }
        match self
            .outcomes
            .iter()
            .find(|o| matches!(o, DeliveryOutcome::Delivered | DeliveryOutcome::Cancelled))
        {
            Some(o) => Err(format!(
                "retry takes waiting, retrying or dead deliveries, not {} ones",
                o.as_str()
            )),
            None => Ok(self),
        }
    }
}

/// What a retry of every delivery a filter matches did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryCount {
    pub matched: usize,
    /// Waiting or retrying ones made due now.
    pub due: usize,
    /// Dead ones queued again as new deliveries.
    pub queued_again: usize,
    /// Dead ones not queued again: their hook's queue holds `max_queue_bytes`.
    pub refused: usize,
    /// The hooks that got something to send.
    pub hooks: Vec<String>,
}

impl Store {
    /// Retries every delivery `filter` matches (see `DeliveryFilter::for_retry`), oldest
    /// first so each hook keeps its order: a waiting or retrying one becomes due now; a
    /// dead one is queued again as a new delivery, its history kept — unless that would
    /// take its hook's queue over `max_queue_bytes`.
    pub fn retry_matching(
        &self,
        filter: &DeliveryFilter,
        max_queue_bytes: Option<u64>,
        now: Timestamp,
    ) -> Result<RetryCount, StoreError> {
        let rows = self.find_deliveries(filter, usize::MAX)?;
        let mut count = RetryCount {
            matched: rows.len(),
            ..RetryCount::default()
        };
        for r in rows.iter().rev() {
            let sent = if r.state == super::DeliveryState::Dead {
                if let Some(max) = max_queue_bytes {
                    let size = self.body_len(&r.id)?;
                    if self.queued_bytes(&r.hook)?.saturating_add(size) > max {
                        count.refused += 1;
                        continue;
                    }
                }
                let again = self.redeliver(&r.id, now)?.is_some();
                count.queued_again += usize::from(again);
                again
            } else {
                let due = self.retry_now(Some(&r.id), None, now)? > 0;
                count.due += usize::from(due);
                due
            };
            if sent && !count.hooks.contains(&r.hook) {
                count.hooks.push(r.hook.clone());
            }
        }
        Ok(count)
    }

    /// A deployment's transitions, oldest first: when, and the status it reached (its
    /// `StatusChanged` events, which are written whether or not a hook wants them).
    pub fn transitions(
        &self,
        site: &str,
        serial: u64,
    ) -> Result<Vec<(Timestamp, String)>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT created_at, COALESCE(status, '') FROM events
                     WHERE site = ?1 AND deployment_serial = ?2 AND kind = 'StatusChanged'
                     ORDER BY id",
                )
                .map_err(q("read transitions"))?;
            let rows = stmt
                .query_map(
                    params![site, i64::try_from(serial).unwrap_or(i64::MAX)],
                    |r| Ok((Timestamp(r.get(0)?), r.get(1)?)),
                )
                .map_err(q("read transitions"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(q("read transitions"))
        })
    }

    /// The hook's current run of failures: failed attempts since its last 2xx, and when
    /// the first of them started (a worker starts counting from here).
    pub fn failure_run(&self, hook: &str) -> Result<(u32, Option<Timestamp>), StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*), MIN(a.started_at) FROM attempts a
                 JOIN deliveries d ON d.seq = a.delivery_seq
                 WHERE d.hook = ?1 AND a.id > COALESCE((
                   SELECT MAX(a2.id) FROM attempts a2 JOIN deliveries d2 ON d2.seq = a2.delivery_seq
                   WHERE d2.hook = ?1 AND a2.response_status BETWEEN 200 AND 299), 0)",
                [hook],
                |r| {
                    Ok((
                        u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                        r.get::<_, Option<i64>>(1)?.map(Timestamp),
                    ))
                },
            )
            .map_err(q("count failures in a row"))
        })
    }

    /// The newest event payload of a deployment (its kudu object: commits and all).
    pub fn latest_payload(&self, site: &str, serial: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT b.body FROM events e JOIN bodies b ON b.hash = e.payload_hash
                 WHERE e.site = ?1 AND e.deployment_serial = ?2
                 ORDER BY e.id DESC LIMIT 1",
                params![site, i64::try_from(serial).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read a deployment's payload"))
        })
    }

    /// The size of a delivery's body, without reading it (or its attempts).
    fn body_len(&self, id: &str) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COALESCE(length(COALESCE(b.body, d.body)), 0)
                 FROM deliveries d LEFT JOIN bodies b ON b.hash = d.body_hash WHERE d.id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.unwrap_or(0).unsigned_abs())
            .map_err(q("read a body's size"))
        })
    }

    /// A marker that moves whenever the outbox changes: a new event, a new delivery, an
    /// attempt or any other change of a delivery (the console's live updates).
    pub fn change_marker(&self) -> Result<(i64, i64), StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM events),
                        (SELECT COALESCE(MAX(updated_at), 0) FROM deliveries)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(q("read the change marker"))
        })
    }

    /// Deliveries, newest first, optionally of one hook and/or only failed ones.
    pub fn list_deliveries(
        &self,
        hook: Option<&str>,
        failed_only: bool,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let filter = DeliveryFilter {
            hook: hook.map(str::to_string),
            outcomes: if failed_only {
                vec![DeliveryOutcome::Retrying, DeliveryOutcome::Dead]
            } else {
                Vec::new()
            },
            ..DeliveryFilter::default()
        };
        self.find_deliveries(&filter, limit)
    }

    /// The deliveries `filter` matches, newest first, at most `limit`.
    pub fn find_deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let outcomes = if filter.outcomes.is_empty() {
            "1".to_string()
        } else {
            let any: Vec<&str> = filter.outcomes.iter().map(|o| o.sql()).collect();
            format!("({})", any.join(" OR "))
        };
        let sql = format!(
            "SELECT d.seq, d.id, d.hook, e.kind, d.state, d.attempts, d.created_at,
               d.last_status, d.last_error
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE (?1 IS NULL OR d.hook = ?1)
               AND (?2 IS NULL OR lower(e.kind) = lower(?2))
               AND (?3 IS NULL OR d.last_status = ?3)
               AND (?4 IS NULL OR d.created_at >= ?4)
               AND (?5 IS NULL OR d.created_at < ?5)
               AND (?7 IS NULL OR e.site = ?7)
               AND (?8 IS NULL OR e.deployment_serial = ?8)
               AND {outcomes}
             ORDER BY d.seq DESC LIMIT ?6"
        );
        self.with_conn(|c| {
            let mut stmt = c.prepare(&sql).map_err(q("list deliveries"))?;
            let rows = stmt
                .query_map(
                    params![
                        filter.hook,
                        filter.event,
                        filter.http_status,
                        filter.since.map(|t| t.0),
                        filter.until.map(|t| t.0),
                        limit.min(i64::MAX as usize) as i64,
                        filter.site,
                        filter
                            .deployment
                            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
                    ],
                    delivery_row,
                )
                .map_err(q("list deliveries"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(q("list deliveries"))
        })
    }
}

/// A deployment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRow {
    pub serial: u64,
    pub id: String,
    pub release: Option<String>,
    pub status: String,
    pub updated_at: Timestamp,
}

/// A hook's queue and last outcome, for `deployhook status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookSummary {
    pub pending: u64,
    pub oldest_pending: Option<Timestamp>,
    /// Pending deliveries that failed before and wait for their retry.
    pub retrying: u64,
    /// When the next retry of a delivery that failed before is due.
    pub next_retry: Option<Timestamp>,
    pub dead: u64,
    pub delivered: u64,
    pub last_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub disabled: Option<String>,
    /// Failed attempts since the hook's last 2xx.
    pub failures_in_a_row: u64,
}

/// One stored attempt, for `deliveries show`: its number and what was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRow {
    pub n: u32,
    pub attempt: AttemptRecord,
}

/// A delivery with its body and attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryDetail {
    pub row: DeliveryRow,
    pub body: Vec<u8>,
    pub next_attempt_at: Timestamp,
    pub attempts: Vec<AttemptRow>,
}

fn headers_of(json: Option<String>) -> Vec<(String, String)> {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

impl Store {
    /// Deliveries waiting across all hooks, and when the oldest was queued (systemd's
    /// `STATUS=` line).
    pub fn queue_totals(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
        let (n, oldest): (i64, Option<i64>) = self
            .read_conn()
            .query_row(
                "SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE state = 'pending'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(q("count pending deliveries"))?;
        Ok((n.unsigned_abs(), oldest.map(Timestamp)))
    }

    /// The bytes of the bodies waiting to be sent to `hook` (each delivery counted,
    /// however its body is shared).
    pub fn queued_bytes(&self, hook: &str) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(length(COALESCE(b.body, d.body))), 0)
                 FROM deliveries d LEFT JOIN bodies b ON b.hash = d.body_hash
                 WHERE d.hook = ?1 AND d.state = 'pending'",
                [hook],
                |r| r.get::<_, i64>(0),
            )
            .map(i64::unsigned_abs)
            .map_err(q("count queued bytes"))
        })
    }

    /// Every hook the outbox has deliveries for, by name.
    pub fn hook_names(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare("SELECT DISTINCT hook FROM deliveries ORDER BY hook")
                .map_err(q("list hooks"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(q("list hooks"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(q("list hooks"))
        })
    }

    pub fn hook_summary(&self, hook: &str) -> Result<HookSummary, StoreError> {
        self.with_conn(|c| {
            type Counts = (i64, Option<i64>, i64, i64, i64, Option<i64>);
            let (pending, oldest, dead, delivered, retrying, next_retry): Counts = c
                .query_row(
                    "SELECT
                       COALESCE(SUM(state = 'pending'), 0),
                       MIN(CASE WHEN state = 'pending' THEN created_at END),
                       COALESCE(SUM(state = 'dead'), 0),
                       COALESCE(SUM(state = 'delivered'), 0),
                       COALESCE(SUM(state = 'pending' AND attempts > 0), 0),
                       MIN(CASE WHEN state = 'pending' AND attempts > 0 THEN next_attempt_at END)
                     FROM deliveries WHERE hook = ?1",
                    [hook],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )
                .map_err(q("summarise hook"))?;
            let last: Option<(i64, Option<u16>, Option<String>)> = c
                .query_row(
                    "SELECT a.started_at, a.response_status, a.error FROM attempts a
                     JOIN deliveries d ON d.seq = a.delivery_seq
                     WHERE d.hook = ?1 ORDER BY a.id DESC LIMIT 1",
                    [hook],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(q("read last attempt"))?;
            // Failed attempts since the hook's last 2xx (its current run of failures).
            let failures_in_a_row: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.seq = a.delivery_seq
                     WHERE d.hook = ?1 AND a.id > COALESCE((
                       SELECT MAX(a2.id) FROM attempts a2 JOIN deliveries d2 ON d2.seq = a2.delivery_seq
                       WHERE d2.hook = ?1 AND a2.response_status BETWEEN 200 AND 299), 0)",
                    [hook],
                    |r| r.get(0),
                )
                .map_err(q("count failures in a row"))?;
            let disabled: Option<String> = c
                .query_row(
                    "SELECT disabled_reason FROM hooks WHERE name = ?1 AND disabled_at IS NOT NULL",
                    [hook],
                    |r| r.get(0),
                )
                .optional()
                .map_err(q("read hook flags"))?;
            Ok(HookSummary {
                failures_in_a_row: failures_in_a_row.unsigned_abs(),
                pending: pending.unsigned_abs(),
                oldest_pending: oldest.map(Timestamp),
                retrying: retrying.unsigned_abs(),
                next_retry: next_retry.map(Timestamp),
                dead: dead.unsigned_abs(),
                delivered: delivered.unsigned_abs(),
                last_attempt_at: last.as_ref().map(|l| Timestamp(l.0)),
                last_status: last.as_ref().and_then(|l| l.1),
                last_error: last.and_then(|l| l.2),
                disabled,
            })
        })
    }

    /// One delivery by its id (`msg_…`), with its attempts.
    pub fn delivery_detail(&self, id: &str) -> Result<Option<DeliveryDetail>, StoreError> {
        self.with_conn(|c| {
            let found = c
                .query_row(
                    "SELECT d.seq, d.id, d.hook, e.kind, d.state, d.attempts, d.created_at,
                       d.last_status, d.last_error, COALESCE(b.body, d.body), d.next_attempt_at
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     LEFT JOIN bodies b ON b.hash = d.body_hash WHERE d.id = ?1",
                    [id],
                    |r| {
                        Ok((
                            delivery_row(r)?,
                            r.get::<_, Vec<u8>>(9)?,
                            Timestamp(r.get(10)?),
                        ))
                    },
                )
                .optional()
                .map_err(q("read delivery"))?;
            let Some((row, body, next_attempt_at)) = found else {
                return Ok(None);
            };
            let mut stmt = c
                .prepare(
                    "SELECT n, started_at, duration_us, request_headers, response_status,
                       response_headers, response_body, error
                     FROM attempts WHERE delivery_seq = ?1 ORDER BY id",
                )
                .map_err(q("read attempts"))?;
            let attempts = stmt
                .query_map([row.seq], |r| {
                    Ok(AttemptRow {
                        n: r.get(0)?,
                        attempt: AttemptRecord {
                            started_at: Timestamp(r.get(1)?),
                            duration: std::time::Duration::from_micros(
                                r.get::<_, i64>(2)?.unsigned_abs(),
                            ),
                            request_headers: headers_of(r.get(3)?),
                            response_status: r.get(4)?,
                            response_headers: headers_of(r.get(5)?),
                            response_body: r.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
                            error: r.get(7)?,
                        },
                    })
                })
                .map_err(q("read attempts"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(q("read attempts"))?;
            Ok(Some(DeliveryDetail {
                row,
                body,
                next_attempt_at,
                attempts,
            }))
        })
    }

    /// Queues a new delivery of the same event and body; returns its id.
    pub fn redeliver(&self, id: &str, now: Timestamp) -> Result<Option<String>, StoreError> {
        let new_id = super::new_delivery_id();
        let n = self.with_conn(|c| {
            c.execute(
                "INSERT INTO deliveries (id, hook, event_id, body, body_hash, state, attempts,
                   next_attempt_at, created_at, updated_at, headers)
                 SELECT ?2, hook, event_id, body, body_hash, 'pending', 0, ?3, ?3, ?3, headers
                 FROM deliveries WHERE id = ?1",
                params![id, new_id, now.0],
            )
            .map_err(q("redeliver"))
        })?;
        Ok((n == 1).then_some(new_id))
    }

    /// Makes waiting deliveries due now: one (`id`), or every one of `hook`, or all.
    /// Returns how many.
    pub fn retry_now(
        &self,
        id: Option<&str>,
        hook: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE deliveries SET next_attempt_at = ?3, updated_at = ?3
                 WHERE state = 'pending' AND next_attempt_at > ?3
                   AND (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR hook = ?2)",
                params![id, hook, now.0],
            )
            .map_err(q("retry now"))
        })
    }

    /// Clears a hook's disabled flag.
    pub fn enable_hook(&self, hook: &str) -> Result<bool, StoreError> {
        let n = self.with_conn(|c| {
            c.execute("DELETE FROM hooks WHERE name = ?1", [hook])
                .map_err(q("enable hook"))
        })?;
        Ok(n > 0)
    }

    /// Site names and their persisted state.
    pub fn site_states(
        &self,
    ) -> Result<Vec<(String, Option<crate::infer::model::SiteState>, Timestamp)>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare("SELECT site, state, updated_at FROM site_state ORDER BY site")
                .map_err(q("read site states"))?;
            let rows = stmt
                .query_map([], |r| {
                    let json: String = r.get(1)?;
                    Ok((
                        r.get(0)?,
                        serde_json::from_str(&json).ok(),
                        Timestamp(r.get(2)?),
                    ))
                })
                .map_err(q("read site states"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(q("read site states"))
        })
    }

    /// The latest deployment of a site.
    pub fn latest_deployment(&self, site: &str) -> Result<Option<DeploymentRow>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT serial, id, release, status, updated_at FROM deployments
                 WHERE site = ?1 ORDER BY serial DESC LIMIT 1",
                [site],
                |r| {
                    Ok(DeploymentRow {
                        serial: r.get::<_, i64>(0)?.unsigned_abs(),
                        id: r.get(1)?,
                        release: r.get(2)?,
                        status: r.get(3)?,
                        updated_at: Timestamp(r.get(4)?),
                    })
                },
            )
            .optional()
            .map_err(q("read latest deployment"))
        })
    }
}
