//! Table tests of `infer`: one named test per row of SPEC §2, per layout and flavour,
//! all through `check(prev, snapshot, now, expected)`, and the equivalence rule for every
//! layout (`assert_equivalent`). The rows live in one file per layout.

mod git;
mod health;
mod kudu;
mod marker;
mod releases;

use std::time::Duration;

use super::infer;
use super::model::{Params, SiteState};
use crate::model::{CommitInfo, Status, Timestamp};
use crate::snapshot::{
    Current, DeployerFiles, Flavour, LayoutSnapshot, LogEntry, Release, ReleasesLogEntry,
    ReleasesSnapshot, Revision, RevisionsLog, Snapshot,
};
use Status::*;

const T0: i64 = 1_800_000_000;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(T0 + secs)
}

/// Settle 2 s, idle timeout 10 min: the defaults.
fn params() -> Params {
    Params::default()
}

/// A snapshot builder.
#[derive(Clone)]
struct S(ReleasesSnapshot);

fn site(flavour: Flavour) -> S {
    let mut s = ReleasesSnapshot::empty(flavour);
    if flavour == Flavour::Capistrano {
        s.revisions_log = Some(RevisionsLog::default());
    }
    if flavour == Flavour::Deployer {
        s.deployer = Some(DeployerFiles::default());
    }
    S(s)
}

fn cap() -> S {
    site(Flavour::Capistrano)
}
fn dep() -> S {
    site(Flavour::Deployer)
}
fn plain() -> S {
    site(Flavour::Plain)
}

fn sha_of(release: &str) -> String {
    format!("{:0>40}", release)
}

impl S {
    /// A release with `REVISION` = a SHA derived from its name, modified at `at`.
    fn release(mut self, name: &str, at: i64) -> Self {
        self.0.releases.insert(
            name.into(),
            Release {
                name: name.into(),
                revision: Revision::Sha(sha_of(name)),
                unfinished: false,
                bad: false,
                modified: t(at),
                commit: Some(CommitInfo {
                    author: "Jane Doe".into(),
                    email: "jane@example.com".into(),
                    message: format!("commit of {name}"),
                    time: t(-100),
                }),
            },
        );
        self
    }
    fn release_sha(mut self, name: &str, at: i64, sha: &str) -> Self {
        self = self.release(name, at);
        if let Some(r) = self.0.releases.get_mut(name) {
            r.revision = Revision::Sha(sha.into());
        }
        self
    }
    fn revision(mut self, name: &str, rev: Revision) -> Self {
        if let Some(r) = self.0.releases.get_mut(name) {
            r.revision = rev;
            r.commit = None;
        }
        self
    }
    fn unfinished(mut self, name: &str) -> Self {
        if let Some(r) = self.0.releases.get_mut(name) {
            r.unfinished = true;
        }
        self
    }
    fn without(mut self, name: &str) -> Self {
        self.0.releases.remove(name);
        self
    }
    fn current(mut self, name: &str) -> Self {
        self.0.current = Current::Release(name.into());
        self
    }
    fn current_raw(mut self, c: Current) -> Self {
        self.0.current = c;
        self
    }
    fn deployed(mut self, release: &str, user: &str) -> Self {
        if let Some(log) = self.0.revisions_log.as_mut() {
            log.entries.push(LogEntry::Deployed {
                branch: "main".into(),
                sha: sha_of(release),
                release: release.into(),
                user: user.into(),
            });
        }
        self
    }
    fn rolled_back(mut self, release: &str, user: &str) -> Self {
        if let Some(log) = self.0.revisions_log.as_mut() {
            log.entries.push(LogEntry::RolledBack {
                user: user.into(),
                release: release.into(),
            });
        }
        self
    }
    fn garbage(mut self, line: &str) -> Self {
        if let Some(log) = self.0.revisions_log.as_mut() {
            log.entries.push(LogEntry::Garbage(line.into()));
        }
        self
    }
    fn repo_head(mut self, sha: &str) -> Self {
        self.0.repo_head = Some(sha.into());
        self.0.repo_branch = Some("main".into());
        self
    }
    fn lock(mut self, user: &str) -> Self {
        if let Some(d) = self.0.deployer.as_mut() {
            d.lock = Some(user.into());
        }
        self
    }
    fn unlock(mut self) -> Self {
        if let Some(d) = self.0.deployer.as_mut() {
            d.lock = None;
        }
        self
    }
    fn release_link(mut self, name: Option<&str>) -> Self {
        if let Some(d) = self.0.deployer.as_mut() {
            d.release_link = name.map(str::to_string);
        }
        self
    }
    fn releases_log(mut self, name: &str, user: &str, created: i64) -> Self {
        if let Some(d) = self.0.deployer.as_mut() {
            d.releases_log.push(ReleasesLogEntry {
                release_name: name.into(),
                created_at: Some(t(created)),
                user: Some(user.into()),
                target: Some("main".into()),
            });
        }
        self
    }
    fn snap(&self) -> Snapshot {
        Snapshot {
            taken_at: t(0),
            layout: LayoutSnapshot::Releases(Box::new(self.0.clone())),
            health: None,
        }
    }
}

/// One expected transition: (release, or id while pending; from; to).
type Exp<'a> = (&'a str, Option<Status>, Status);

/// Runs `infer` once and compares the transitions with `expected`; returns the state.
fn check(prev: &SiteState, s: &S, now: i64, expected: &[Exp<'_>]) -> SiteState {
    let out = infer(prev, &s.snap(), t(now), &params());
    let got: Vec<(String, Option<Status>, Status)> = out
        .transitions
        .iter()
        .map(|tr| {
            let label = tr
                .deployment
                .release
                .clone()
                .unwrap_or_else(|| tr.deployment.id.clone());
            (label, tr.from, tr.to)
        })
        .collect();
    let want: Vec<(String, Option<Status>, Status)> = expected
        .iter()
        .map(|(l, f, to)| (l.to_string(), *f, *to))
        .collect();
    assert_eq!(got, want, "at t+{now}s");
    // Invariants that hold for every row.
    let again = infer(&out.state, &s.snap(), t(now), &params());
    assert!(
        again.transitions.is_empty(),
        "the same snapshot twice must not report again: {:?}",
        again.transitions
    );
    let seqs: Vec<u64> = out.transitions.iter().map(|t| t.sequence).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    out.state
}

fn full(prev: &SiteState, s: &S, now: i64) -> super::model::Inference {
    infer(prev, &s.snap(), t(now), &params())
}

/// A Capistrano site with release "100" live, as the daemon's first look saw it.
fn cap_live() -> (S, SiteState) {
    let s = cap()
        .release("100", -5000)
        .current("100")
        .deployed("100", "alice")
        .repo_head(&sha_of("100"));
    let st = check(&SiteState::default(), &s, 0, &[]);
    (s, st)
}

/// Feeding every intermediate snapshot, or only the final one, ends in the same live
/// release, with nothing in progress and the deployment reported as terminal once.
fn assert_equivalent(base: SiteState, steps: Vec<(i64, Snapshot)>) {
    let mut st = base.clone();
    let mut every = Vec::new();
    for (now, s) in &steps {
        let out = infer(&st, s, t(*now), &params());
        every.extend(out.transitions);
        st = out.state;
    }
    let Some((last_now, last)) = steps.last().cloned() else {
        panic!("no steps")
    };
    // Only the final snapshot (read again after settle, as the daemon's wake-up does).
    let once = infer(&base, &last, t(last_now), &params());
    let mut final_only = once.transitions.clone();
    let again = infer(&once.state, &last, t(last_now + 10), &params());
    final_only.extend(again.transitions);
    for (name, ts, st) in [
        ("every", &every, &st),
        ("final only", &final_only, &again.state),
    ] {
        let terminal: Vec<_> = ts.iter().filter(|t| t.to.is_terminal()).collect();
        assert_eq!(terminal.len(), 1, "{name}: {ts:?}");
        assert_eq!(terminal[0].to, Success, "{name}");
        assert!(st.active.is_empty(), "{name}");
        let serials: std::collections::BTreeSet<u64> =
            ts.iter().map(|t| t.deployment.serial).collect();
        assert_eq!(serials.len(), 1, "{name}: one deployment, never two");
    }
    assert_eq!(st.live, again.state.live);
    // From a cold start the final snapshot is the baseline: nothing is reported.
    let cold = infer(&SiteState::default(), &last, t(last_now), &params());
    assert!(cold.transitions.is_empty());
    assert_eq!(cold.state.live, st.live);
}

/// Runs `infer` once; the new state and the transitions as (id, from, to).
fn by_id(
    prev: &SiteState,
    s: &Snapshot,
    now: i64,
) -> (SiteState, Vec<(String, Option<Status>, Status)>) {
    let out = infer(prev, s, t(now), &params());
    let tr = out
        .transitions
        .iter()
        .map(|t| (t.deployment.id.clone(), t.from, t.to))
        .collect();
    (out.state, tr)
}
