//! DORA's five keys from the outbox (SPEC §9): what each deployment was (`deployments`:
//! its status, times, `rollback`, `previousId`) and which commits each success shipped
//! with their author times (`shipped_commits`, written with the transition). `History`
//! is what is on disk; `report` is pure: the figures of every site over a window.
//!
//! - A **failed change** is a deployment that ended `failed`, or one that succeeded and
//!   was then rolled back (a rollback whose `previousId` is its id). It begins at the
//!   failed deployment's end, or at the rollback's start.
//! - **Recovery**: a failed change's beginning → the end of the next success (a
//!   rollback's included: it restores the service).
//! - **Rework**: rollbacks, and the deployments that start after a failed change began
//!   and end by the next successful forward (non-rollback) deployment, that one included.
//! - **Lead time**: a commit's author time → the end of the first successful deployment
//!   of the site that shipped it (in its range from the previous live commit; the first
//!   deployment deployhook saw ships only its own commit).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Store, StoreError, q};
use crate::model::{Status, Timestamp};

pub(super) const MIGRATE_8: &str = "BEGIN;
    CREATE TABLE shipped_commits (
      site TEXT NOT NULL, serial INTEGER NOT NULL, sha TEXT NOT NULL,
      authored_at INTEGER NOT NULL, ended_at INTEGER NOT NULL,
      PRIMARY KEY (site, serial, sha));
    CREATE INDEX shipped_commits_sha ON shipped_commits (site, sha, ended_at);
    PRAGMA user_version = 8;
    COMMIT;";

/// One finished deployment, as DORA sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub site: String,
    pub serial: u64,
    pub id: String,
    pub status: Status,
    pub rollback: bool,
    pub previous_id: Option<String>,
    /// When it was first seen (received).
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A commit's first shipping: the end of the first successful deployment of its site
/// that shipped it, and its author time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstShipped {
    pub end: Timestamp,
    pub authored: Timestamp,
}

/// Everything DORA needs, read from the outbox (numbers, not text: a long history's
/// hundreds of thousands of commits cost 16 bytes each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub deployments: Vec<Finished>,
    /// Each site's commits, each once (`GROUP BY sha`, the earliest end).
    pub first_shipped: BTreeMap<String, Vec<FirstShipped>>,
}

/// The samples of one site (or of all) in a window, before they are summed up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    pub successful: u64,
    pub failed: u64,
    /// Successful deployments that were rolled back later.
    pub rolled_back: u64,
    pub rollbacks: u64,
    pub rework: u64,
    /// Seconds from each commit's author time to its first successful deployment's end.
    pub lead_times: Vec<f64>,
    /// Seconds from each failed change to the next success.
    pub recoveries: Vec<f64>,
}

impl Samples {
    fn add(&mut self, o: &Samples) {
        self.successful += o.successful;
        self.failed += o.failed;
        self.rolled_back += o.rolled_back;
        self.rollbacks += o.rollbacks;
        self.rework += o.rework;
        self.lead_times.extend_from_slice(&o.lead_times);
        self.recoveries.extend_from_slice(&o.recoveries);
    }

    pub fn deployments(&self) -> u64 {
        self.successful + self.failed
    }

    /// The five keys of these samples over a window of `days`.
    pub fn figures(&self, days: f64) -> Figures {
        let all = self.deployments();
        let ratio = |n: u64| (all > 0).then(|| n as f64 / all as f64);
        Figures {
            deployments: all,
            successful: self.successful,
            failed: self.failed,
            rolled_back: self.rolled_back,
            rollbacks: self.rollbacks,
            per_day: if days > 0.0 {
                self.successful as f64 / days
            } else {
                0.0
            },
            lead_time: Spread::of(&self.lead_times),
            change_failure_rate: ratio(self.failed + self.rolled_back),
            recovery: Spread::of(&self.recoveries),
            rework: self.rework,
            rework_rate: ratio(self.rework),
        }
    }
}

/// A distribution of durations in seconds: how many, median and 90th percentile
/// (linear between the closest ranks).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Spread {
    pub count: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Spread {
            count: v.len() as u64,
            median_seconds: percentile(&v, 0.5),
            p90_seconds: percentile(&v, 0.9),
        }
    }
}

/// The `p` quantile of sorted `v`, interpolated between the closest ranks.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    let last = v.len().checked_sub(1)?;
    let h = last as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
}

/// The five keys, as `dora`, `GET /api/dora` and the console show them.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// Finished deployments (successful and failed; rollbacks are deployments too).
    pub deployments: u64,
    pub successful: u64,
    pub failed: u64,
    /// Successful deployments that a later rollback undid.
    pub rolled_back: u64,
    pub rollbacks: u64,
    /// Deployment frequency: successful deployments per day of the window.
    pub per_day: f64,
    /// Lead time for changes.
    pub lead_time: Spread,
    /// (failed + rolled back) / deployments; `null` without deployments.
    pub change_failure_rate: Option<f64>,
    /// Failed deployment recovery time.
    pub recovery: Spread,
    /// Deployments made to recover from a failed change (rollbacks included).
    pub rework: u64,
    /// Deployment rework rate: rework / deployments; `null` without deployments.
    pub rework_rate: Option<f64>,
}

/// A window: deployments that ended in `[since, until)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl Window {
    /// All of history.
    pub const ALL: Window = Window {
        since: Timestamp(i64::MIN),
        until: Timestamp(i64::MAX),
    };

    fn holds(self, t: Timestamp) -> bool {
        self.since <= t && t < self.until
    }

    pub fn days(self) -> f64 {
        self.until.since(self.since).as_secs_f64() / 86_400.0
    }

    /// The window `since` (default 30 days) to `until` (default now), each a span back
    /// from `now` (`30d`, `12h`) or an RFC 3339 time.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: Timestamp,
    ) -> Result<Window, String> {
        let when = |what: &str, text: &str| {
            Timestamp::parse_rfc3339(text)
                .or_else(|| {
                    crate::model::parse_duration(text)
                        .ok()
                        .map(|d| now.minus(d))
                })
                .ok_or_else(|| {
                    format!(
                        "{what} {:?} is neither a span (30d, 12h) nor an RFC 3339 time",
                        crate::model::cap_text(text, 64)
                    )
                })
        };
        let since = since.map_or(Ok(now.minus(DEFAULT_SPAN)), |t| when("since", t))?;
        let until = until.map_or(Ok(now), |t| when("until", t))?;
        if until <= since {
            return Err("the window is empty: since must be before until".to_string());
        }
        Ok(Window { since, until })
    }
}

/// The window `dora` reports by default: the last 30 days.
pub const DEFAULT_SPAN: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The samples of every site in `window`, by site name.
pub fn samples(history: &History, window: Window) -> BTreeMap<String, Samples> {
    let mut by_site: BTreeMap<&str, Vec<&Finished>> = BTreeMap::new();
    for d in &history.deployments {
        by_site.entry(&d.site).or_default().push(d);
    }
    by_site
        .into_iter()
        .map(|(site, mut ds)| {
            ds.sort_by_key(|d| d.serial);
            let shipped = history
                .first_shipped
                .get(site)
                .map_or(&[][..], Vec::as_slice);
            (site.to_string(), site_samples(&ds, shipped, window))
        })
        .collect()
}

/// Every site's samples summed up.
pub fn total(per_site: &BTreeMap<String, Samples>) -> Samples {
    let mut all = Samples::default();
    for s in per_site.values() {
        all.add(s);
    }
    all
}

/// The figures of each site and of all of them over a window (`dora`, `GET /api/dora`).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// RFC 3339.
    pub since: String,
    pub until: String,
    pub days: f64,
    pub sites: Vec<SiteFigures>,
    /// Every site's samples together.
    pub all: Figures,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SiteFigures {
    pub site: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The report of `history` over `window`.
pub fn report(history: &History, window: Window) -> Report {
    let per_site = samples(history, window);
    let days = window.days();
    Report {
        since: window.since.rfc3339(),
        until: window.until.rfc3339(),
        days,
        all: total(&per_site).figures(days),
        sites: per_site
            .into_iter()
            .map(|(site, s)| SiteFigures {
                site,
                figures: s.figures(days),
            })
            .collect(),
    }
}

/// `1h 10m / 40h 58m (4 commits)`, `2h 5m (1)`, or `-`.
pub fn spread(s: &Spread, p90: bool) -> String {
    let Some(median) = s.median_seconds else {
        return "-".to_string();
    };
    // To the hour from two days on, to the minute from an hour, to the second below.
    let d = |secs: f64| {
        if secs >= 2.0 * 86_400.0 {
            let hours = (secs / 3600.0).round() as u64;
            return format!("{}d {}h", hours / 24, hours % 24);
        }
        let whole = if secs >= 3600.0 {
            (secs / 60.0).round() * 60.0
        } else {
            secs.round()
        };
        crate::model::format_duration(std::time::Duration::from_secs(whole as u64))
    };
    match (p90, s.p90_seconds) {
        (true, Some(p)) => format!("{} / {} ({} commits)", d(median), d(p), s.count),
        _ => format!("{} ({})", d(median), s.count),
    }
}

/// `33% (1 of 3)` or `-`.
pub fn rate(r: Option<f64>, n: u64, of: u64) -> String {
    r.map_or("-".to_string(), |r| {
        format!("{:.0}% ({n} of {of})", r * 100.0)
    })
}

/// A failed change: the deployment, and when the failure began.
struct Change {
    serial: u64,
    began: Timestamp,
}

fn site_samples(ds: &[&Finished], shipped: &[FirstShipped], window: Window) -> Samples {
    let mut s = Samples::default();
    let mut changes: Vec<Change> = Vec::new();
    let mut rolled_back = BTreeSet::new();
    for (i, r) in ds.iter().enumerate() {
        if !r.rollback {
            continue;
        }
        let undone = ds[..i]
            .iter()
            .rev()
            .find(|d| d.status == Status::Success && Some(&d.id) == r.previous_id.as_ref());
        if let Some(d) = undone
            && rolled_back.insert(d.serial)
        {
            changes.push(Change {
                serial: d.serial,
                began: r.start,
            });
        }
    }
    for d in ds.iter().filter(|d| d.status == Status::Failed) {
        changes.push(Change {
            serial: d.serial,
            began: d.end,
        });
    }
    // By end: what follows a failed change is a slice, found by bisection.
    let mut by_end: Vec<&Finished> = ds.to_vec();
    by_end.sort_by_key(|d| (d.end, d.serial));
    let mut rework = BTreeSet::new();
    for c in &changes {
        let from = by_end.partition_point(|d| d.end <= c.began);
        let later = || by_end[from..].iter().filter(|d| d.serial != c.serial);
        if let Some(fix) = later().find(|d| d.status == Status::Success)
            && window.holds(fix.end)
        {
            s.recoveries.push(fix.end.since(c.began).as_secs_f64());
        }
        let forward = later()
            .find(|d| d.status == Status::Success && !d.rollback)
            .map(|d| d.end);
        for d in later().take_while(|d| forward.is_none_or(|f| d.end <= f)) {
            if d.start >= c.began {
                rework.insert(d.serial);
            }
        }
    }
    for d in ds.iter().filter(|d| window.holds(d.end)) {
        match d.status {
            Status::Success => s.successful += 1,
            Status::Failed => s.failed += 1,
            _ => continue,
        }
        s.rolled_back += u64::from(rolled_back.contains(&d.serial));
        s.rollbacks += u64::from(d.rollback);
        s.rework += u64::from(d.rollback || rework.contains(&d.serial));
    }
    s.lead_times = shipped
        .iter()
        .filter(|c| window.holds(c.end))
        .map(|c| c.end.since(c.authored).as_secs_f64())
        .collect();
    s
}

impl Store {
    /// What changes whenever DORA's figures may: the number of deployments and their
    /// newest change (a cache of the figures is good while it is the same).
    pub fn dora_version(&self) -> Result<(i64, i64), StoreError> {
        self.with_read_conn(|c| {
            c.query_row(
                "SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM deployments",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(q("read deployments"))
        })
    }

    /// The finished deployments and shipped commits of `site` (or of every site).
    pub fn dora_history(&self, site: Option<&str>) -> Result<History, StoreError> {
        self.with_read_conn(|c| read_history(c, site))
    }
}

fn read_history(c: &Connection, site: Option<&str>) -> Result<History, StoreError> {
    // Only the fields DORA needs, taken out of each row's JSON by SQLite.
    let mut stmt = c
        .prepare(
            "SELECT site, serial, id, status,
               COALESCE(json_extract(data, '$.rollback'), 0),
               json_extract(data, '$.previous_id'),
               json_extract(data, '$.received'),
               json_extract(data, '$.started'),
               json_extract(data, '$.ended')
             FROM deployments
             WHERE status IN ('success', 'failed') AND (?1 IS NULL OR site = ?1)",
        )
        .map_err(q("read deployments"))?;
    let rows = stmt
        .query_map(params![site], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })
        .map_err(q("read deployments"))?;
    let mut history = History::default();
    for row in rows {
        let (site, serial, id, status, rollback, previous_id, received, started, ended) =
            row.map_err(q("read deployments"))?;
        // A row without an end (written by an older version) cannot be placed in time.
        let (Some(status), Some(end)) = (Status::parse(&status), ended) else {
            continue;
        };
        let received = received.map_or(Timestamp(end), Timestamp);
        history.deployments.push(Finished {
            site,
            serial: u64::try_from(serial).unwrap_or(0),
            id,
            status,
            rollback: rollback != 0,
            previous_id,
            start: started.map_or(received, |s| received.min(Timestamp(s))),
            end: Timestamp(end),
        });
    }
    let mut stmt = c
        .prepare(
            "SELECT site, MIN(ended_at), MIN(authored_at) FROM shipped_commits
             WHERE (?1 IS NULL OR site = ?1) GROUP BY site, sha ORDER BY site",
        )
        .map_err(q("read shipped commits"))?;
    let rows = stmt
        .query_map(params![site], |r| {
            Ok((
                r.get::<_, String>(0)?,
                FirstShipped {
                    end: Timestamp(r.get(1)?),
                    authored: Timestamp(r.get(2)?),
                },
            ))
        })
        .map_err(q("read shipped commits"))?;
    for row in rows {
        let (site, first) = row.map_err(q("read shipped commits"))?;
        match history.first_shipped.last_entry() {
            Some(mut e) if *e.key() == site => e.get_mut().push(first),
            _ => {
                history.first_shipped.insert(site, vec![first]);
            }
        }
    }
    Ok(history)
}

/// Records the commits a successful deployment shipped (inside `commit_inference`).
pub(super) fn write_shipped(
    tx: &Connection,
    site: &str,
    serial: u64,
    ended: Timestamp,
    commits: &[(String, Timestamp)],
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO shipped_commits (site, serial, sha, authored_at, ended_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(q("write shipped commits"))?;
    for (sha, authored) in commits {
        stmt.execute(params![
            site,
            i64::try_from(serial).unwrap_or(i64::MAX),
            sha,
            authored.0,
            ended.0
        ])
        .map_err(q("write shipped commits"))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "dora_tests.rs"]
mod tests;
