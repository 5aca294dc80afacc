//! Chains (schema 5; Docker Hub's webhook chains, SPEC §5): a run per trigger, a step
//! per hook called. A step waits for its receiver's callback (`POST
//! /api/callbacks/{token}`); the token is single-use and only its SHA-256 is stored.
//! `success` starts the next step (its delivery is written in the same transaction);
//! anything else, a dead delivery or no callback within the chain's timeout (counted
//! from the step's delivery) ends the run. All of it lives in the outbox, so a restart
//! resumes every run where it was.

use rusqlite::{OptionalExtension, params};
use sha2::Digest;

use super::{Store, StoreError, q};
use crate::model::Timestamp;

pub(super) const MIGRATE_5: &str = "BEGIN;
    CREATE TABLE chain_runs (
        id TEXT PRIMARY KEY,
        chain TEXT NOT NULL,
        site TEXT,
        event_id INTEGER NOT NULL,
        hooks TEXT NOT NULL,
        payload BLOB NOT NULL,
        timeout_us INTEGER NOT NULL,
        step INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        created_at INTEGER NOT NULL,
        ended_at INTEGER
    );
    CREATE TABLE chain_steps (
        run_id TEXT NOT NULL REFERENCES chain_runs(id),
        step INTEGER NOT NULL,
        hook TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        description TEXT,
        context TEXT,
        target_url TEXT,
        answered_at INTEGER,
        PRIMARY KEY (run_id, step)
    );
    CREATE INDEX chain_steps_waiting ON chain_steps (state);
    PRAGMA user_version = 5;
    COMMIT;";

/// A chain run to start with an event: its first step's delivery is among the event's.
#[derive(Clone, Debug)]
pub struct NewChainRun {
    pub id: String,
    pub chain: String,
    pub hooks: Vec<String>,
    /// The body every step's hook gets (before `callback_url` is added).
    pub payload: Vec<u8>,
    pub timeout: std::time::Duration,
    /// The first step's delivery id and callback token.
    pub delivery_id: String,
    pub token: String,
}

/// What a receiver says of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub state: String,
    pub description: Option<String>,
    pub context: Option<String>,
    pub target_url: Option<String>,
}

/// The next step a callback started: its delivery is in the outbox; its hook's worker
/// should look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextStep {
    pub hook: String,
    pub delivery_id: String,
}

/// A chain run as the API and `status` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainRun {
    pub id: String,
    pub chain: String,
    pub site: Option<String>,
    /// `running`, `success`, `failure` or `error`.
    pub state: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub ended_at: Option<String>,
    pub steps: Vec<ChainStep>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainStep {
    pub step: u32,
    pub hook: String,
    pub delivery: String,
    /// `waiting`, or what the receiver said (`success`, `failure`, `error`), or `error`
    /// when it never did.
    pub state: String,
    pub description: Option<String>,
    pub context: Option<String>,
    pub target_url: Option<String>,
    pub answered_at: Option<String>,
}

/// Ends a waiting step, and its run, in error for `reason`.
fn fail_step(
    tx: &rusqlite::Transaction<'_>,
    run: &str,
    step: i64,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE chain_steps SET state = 'error', description = ?3, answered_at = ?4
         WHERE run_id = ?1 AND step = ?2",
        params![run, step, reason, now.0],
    )
    .map_err(q("expire a chain step"))?;
    end_run(tx, run, "error", reason, now)
}

/// Makes a step's body and its token from the run's payload, the chain's name, the
/// step's index and the number of steps (`events::chains::next_step`); `None` when no
/// token can be made.
pub type MakeStep<'a> = dyn Fn(&[u8], &str, usize, usize) -> Option<(Vec<u8>, String)> + 'a;

/// What a callback met.
#[derive(Debug)]
pub enum Answered {
    /// No step waits for this token (unknown, used, or its chain is over).
    Unknown,
    /// Its step's deadline had passed: the step ended in error, nothing started.
    Late,
    /// Recorded; the next step when a success started one.
    Recorded(Option<NextStep>),
}

fn token_hash(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the runs an event starts (inside its transaction).
pub(super) fn insert_runs(
    tx: &rusqlite::Transaction<'_>,
    event_id: i64,
    site: Option<&str>,
    runs: &[NewChainRun],
    now: Timestamp,
) -> Result<(), StoreError> {
    for r in runs {
        tx.execute(
            "INSERT INTO chain_runs (id, chain, site, event_id, hooks, payload, timeout_us, step,
               state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'running', ?8)",
            params![
                r.id,
                r.chain,
                site,
                event_id,
                serde_json::to_string(&r.hooks).unwrap_or_default(),
                r.payload,
                i64::try_from(r.timeout.as_micros()).unwrap_or(i64::MAX),
                now.0
            ],
        )
        .map_err(q("write a chain run"))?;
        tx.execute(
            "INSERT INTO chain_steps (run_id, step, hook, delivery_id, token_hash, state)
             VALUES (?1, 0, ?2, ?3, ?4, 'waiting')",
            params![
                r.id,
                r.hooks.first().cloned().unwrap_or_default(),
                r.delivery_id,
                token_hash(&r.token)
            ],
        )
        .map_err(q("write a chain step"))?;
    }
    Ok(())
}

fn end_run(
    tx: &rusqlite::Transaction<'_>,
    run: &str,
    state: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE chain_runs SET state = ?2, reason = ?3, ended_at = ?4 WHERE id = ?1",
        params![run, state, reason, now.0],
    )
    .map(|_| ())
    .map_err(q("end a chain run"))
}

impl Store {
    /// A receiver's callback. `Ok(None)`: no step waits for this token (unknown, used,
    /// or its run is over). `Ok(Some(next))`: recorded; `next` is the step it started.
    pub fn chain_callback(
        &self,
        token: &str,
        cb: &Callback,
        next_step: &MakeStep<'_>,
        now: Timestamp,
    ) -> Result<Answered, StoreError> {
        self.with_conn(|c| {
            let tx = c.unchecked_transaction().map_err(q("begin a callback"))?;
            type Found = (
                String,
                i64,
                String,
                String,
                Vec<u8>,
                i64,
                String,
                i64,
                i64,
                String,
            );
            let found: Option<Found> = tx
                .query_row(
                    "SELECT r.id, s.step, r.chain, r.hooks, r.payload, r.event_id,
                            d.state, d.updated_at, r.timeout_us, s.hook
                     FROM chain_steps s JOIN chain_runs r ON r.id = s.run_id
                     JOIN deliveries d ON d.id = s.delivery_id
                     WHERE s.token_hash = ?1 AND s.state = 'waiting' AND r.state = 'running'",
                    [token_hash(token)],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                        ))
                    },
                )
                .optional()
                .map_err(q("find a chain step"))?;
            let Some((run, step, chain, hooks, payload, event_id, dstate, updated, timeout, hook)) =
                found
            else {
                return Ok(Answered::Unknown);
            };
            // The deadline is the handler's own: a callback after it ends the step in
            // error (as the expiry would) and starts nothing.
            let late = matches!(dstate.as_str(), "dead" | "cancelled")
                || (dstate == "delivered" && updated.saturating_add(timeout) <= now.0);
            if late {
                let reason = format!(
                    "step {} ({hook}): the callback came after the chain's callback_timeout",
                    step + 1
                );
                fail_step(&tx, &run, step, &reason, now)?;
                tx.commit().map_err(q("commit a late callback"))?;
                return Ok(Answered::Late);
            }
            tx.execute(
                "UPDATE chain_steps SET state = ?3, description = ?4, context = ?5,
                   target_url = ?6, answered_at = ?7 WHERE run_id = ?1 AND step = ?2",
                params![
                    run,
                    step,
                    cb.state,
                    cb.description,
                    cb.context,
                    cb.target_url,
                    now.0
                ],
            )
            .map_err(q("record a callback"))?;
            let hooks: Vec<String> = serde_json::from_str(&hooks).unwrap_or_default();
            let next_index = step as usize + 1;
            let next =
                if cb.state != "success" {
                    end_run(
                        &tx,
                        &run,
                        &cb.state,
                        &format!(
                            "step {} ({}) answered {}",
                            next_index,
                            hooks.get(step as usize).map_or("?", |h| h.as_str()),
                            cb.state
                        ),
                        now,
                    )?;
                    None
                } else if let Some(hook) = hooks.get(next_index) {
                    let (body, token) = next_step(&payload, &chain, next_index, hooks.len())
                        .ok_or_else(|| StoreError::Random {
                            reason: "no callback token for the next step".into(),
                        })?;
                    let delivery = super::NewDelivery::new(hook, body);
                    let delivery_id = delivery.id.clone();
                    super::insert_delivery(&tx, &delivery, event_id, "pending", now)?;
                    tx.execute(
                    "INSERT INTO chain_steps (run_id, step, hook, delivery_id, token_hash, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'waiting')",
                    params![run, next_index as i64, hook, delivery_id, token_hash(&token)],
                )
                .map_err(q("write the next chain step"))?;
                    tx.execute(
                        "UPDATE chain_runs SET step = ?2 WHERE id = ?1",
                        params![run, next_index as i64],
                    )
                    .map_err(q("advance a chain run"))?;
                    Some(NextStep {
                        hook: hook.clone(),
                        delivery_id,
                    })
                } else {
                    end_run(&tx, &run, "success", "every step answered success", now)?;
                    None
                };
            tx.commit().map_err(q("commit a callback"))?;
            Ok(Answered::Recorded(next))
        })
    }

    /// Ends the runs whose waiting step's delivery died, or was delivered longer than
    /// the chain's timeout ago without a callback. Returns how many ended.
    /// When chain steps must be looked at next: a delivered step's callback deadline, now
    /// for a step whose delivery died, `every` from now while a step's delivery is still
    /// being sent; `None` while no run waits on a step.
    pub fn next_chain_check(
        &self,
        now: Timestamp,
        every: std::time::Duration,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT d.state, d.updated_at + r.timeout_us
                     FROM chain_steps s
                     JOIN chain_runs r ON r.id = s.run_id
                     JOIN deliveries d ON d.id = s.delivery_id
                     WHERE s.state = 'waiting' AND r.state = 'running'",
                )
                .map_err(q("find waiting chain steps"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(q("find waiting chain steps"))?;
            let mut next: Option<Timestamp> = None;
            for row in rows {
                let (state, deadline) = row.map_err(q("find waiting chain steps"))?;
                let due = match state.as_str() {
                    "delivered" => Timestamp(deadline),
                    "dead" | "cancelled" => now,
                    _ => now.plus(every),
                };
                next = Some(next.map_or(due, |n| n.min(due)));
            }
            Ok(next)
        })
    }

    pub fn expire_chain_steps(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            let tx = c.unchecked_transaction().map_err(q("begin chain expiry"))?;
            let expired: Vec<(String, i64, String, String)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT r.id, s.step, s.hook, d.state
                         FROM chain_steps s
                         JOIN chain_runs r ON r.id = s.run_id
                         JOIN deliveries d ON d.id = s.delivery_id
                         WHERE s.state = 'waiting' AND r.state = 'running'
                           AND (d.state IN ('dead', 'cancelled')
                                OR (d.state = 'delivered' AND d.updated_at + r.timeout_us <= ?1))",
                    )
                    .map_err(q("find expired chain steps"))?;
                let rows = stmt
                    .query_map([now.0], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(q("find expired chain steps"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(q("find expired chain steps"))?
            };
            for (run, step, hook, delivery_state) in &expired {
                let reason = if delivery_state == "delivered" {
                    format!(
                        "step {} ({hook}): no callback within the chain's callback_timeout",
                        step + 1
                    )
                } else {
                    format!(
                        "step {} ({hook}): the delivery is {delivery_state}",
                        step + 1
                    )
                };
                fail_step(&tx, run, *step, &reason, now)?;
            }
            tx.commit().map_err(q("commit chain expiry"))?;
            Ok(expired.len())
        })
    }

    /// The newest chain runs with their steps.
    pub fn chain_runs(&self, limit: usize) -> Result<Vec<ChainRun>, StoreError> {
        let conn = self.read_conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, chain, site, state, reason, created_at, ended_at FROM chain_runs
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1",
            )
            .map_err(q("list chain runs"))?;
        let ts = |v: Option<i64>| v.map(|t| Timestamp(t).rfc3339());
        let runs: Vec<ChainRun> = stmt
            .query_map([limit as i64], |r| {
                Ok(ChainRun {
                    id: r.get(0)?,
                    chain: r.get(1)?,
                    site: r.get(2)?,
                    state: r.get(3)?,
                    reason: r.get(4)?,
                    created_at: Timestamp(r.get(5)?).rfc3339(),
                    ended_at: ts(r.get(6)?),
                    steps: Vec::new(),
                })
            })
            .map_err(q("list chain runs"))?
            .collect::<Result<_, _>>()
            .map_err(q("list chain runs"))?;
        let mut steps = conn
            .prepare(
                "SELECT step, hook, delivery_id, state, description, context, target_url, answered_at
                 FROM chain_steps WHERE run_id = ?1 ORDER BY step",
            )
            .map_err(q("list chain steps"))?;
        runs.into_iter()
            .map(|mut run| {
                run.steps = steps
                    .query_map([&run.id], |r| {
                        Ok(ChainStep {
                            step: r.get::<_, i64>(0)? as u32 + 1,
                            hook: r.get(1)?,
                            delivery: r.get(2)?,
                            state: r.get(3)?,
                            description: r.get(4)?,
                            context: r.get(5)?,
                            target_url: r.get(6)?,
                            answered_at: ts(r.get(7)?),
                        })
                    })
                    .map_err(q("list chain steps"))?
                    .collect::<Result<_, _>>()
                    .map_err(q("list chain steps"))?;
                Ok(run)
            })
            .collect()
    }
}
