//! Table tests of `infer`: one named test per row of SPEC §2.1, per flavour, all
//! through `check(prev, snapshot, now, expected)`, plus the equivalence rule.

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

fn params() -> Params {
    Params {
        settle: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(600),
        deployer: None,
        branch: None,
        health_timeout: None,
    }
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

// ---- first sight ------------------------------------------------------------------

#[test]
fn first_sight_live_release_is_the_baseline_not_reported() {
    let (_, st) = cap_live();
    assert_eq!(st.live.as_ref().map(|l| l.release.as_str()), Some("100"));
    assert!(st.active.is_empty());
}

#[test]
fn first_sight_tracks_a_release_in_progress_and_ignores_stale_leftovers() {
    let s = plain()
        .release("050", -90_000) // an old leftover that never went live
        .release("100", -5000)
        .current("100")
        .release("200", -10)
        .unfinished("200");
    let st = check(&SiteState::default(), &s, 0, &[("200", None, Building)]);
    assert_eq!(st.active.len(), 1);
}

#[test]
fn first_sight_of_a_missing_directory_reports_the_first_deploy() {
    let missing = Snapshot {
        taken_at: t(0),
        layout: LayoutSnapshot::Missing {
            path: "/srv/shop".into(),
        },
        health: None,
    };
    let out = infer(&SiteState::default(), &missing, t(0), &params());
    assert!(out.transitions.is_empty());
    assert_eq!(out.anomalies.len(), 1);
    let s = cap()
        .release("100", 5)
        .current("100")
        .deployed("100", "alice");
    check(&out.state, &s, 10, &[("100", None, Success)]);
}

// ---- Capistrano -------------------------------------------------------------------

#[test]
fn cap_pending_when_the_mirror_moves_to_a_commit_no_release_carries() {
    let (s, st) = cap_live();
    let s = s.repo_head(&sha_of("200"));
    let st = check(&st, &s, 1, &[(&sha_of("200"), None, Pending)]);
    assert_eq!(st.active[0].branch.as_deref(), Some("main"));
}

#[test]
fn cap_mirror_moving_to_a_commit_a_release_carries_is_not_pending() {
    let (s, _) = cap_live();
    let s = s.release("090", -9000);
    let st = check(&SiteState::default(), &s, 0, &[]);
    check(&st, &s.repo_head(&sha_of("090")), 1, &[]);
}

#[test]
fn cap_building_when_a_release_newer_than_current_appears() {
    let (s, st) = cap_live();
    let s = s.repo_head(&sha_of("200"));
    let st = check(&st, &s, 1, &[(&sha_of("200"), None, Pending)]);
    let s = s.release("200", 2);
    let st = check(&st, &s, 2, &[("200", Some(Pending), Building)]);
    assert_eq!(st.active[0].id, sha_of("200"));
}

#[test]
fn cap_building_keeps_the_pending_id_until_revision_is_written() {
    let (s, st) = cap_live();
    let s = s.repo_head(&sha_of("200"));
    let st = check(&st, &s, 1, &[(&sha_of("200"), None, Pending)]);
    let s = s.release("200", 2).revision("200", Revision::Missing);
    let st = check(&st, &s, 2, &[("200", Some(Pending), Building)]);
    assert_eq!(st.active[0].id, sha_of("200"));
}

#[test]
fn cap_deploying_when_current_switches_before_the_log_line() {
    let (s, st) = cap_live();
    let s = s.release("200", 2);
    let st = check(&st, &s, 2, &[("200", None, Building)]);
    let s = s.current("200");
    let st = check(&st, &s, 3, &[("200", Some(Building), Deploying)]);
    // No settle for Capistrano: it waits for its log line.
    check(&st, &s, 60, &[]);
}

#[test]
fn cap_success_on_the_revisions_log_line() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200");
    let st = check(&st, &s, 3, &[("200", None, Deploying)]);
    let s = s.deployed("200", "bob");
    let out = full(&st, &s, 4);
    assert_eq!(out.transitions.len(), 1);
    let tr = &out.transitions[0];
    assert_eq!((tr.from, tr.to), (Some(Deploying), Success));
    assert_eq!(tr.deployment.deployer.as_deref(), Some("bob"));
    assert_eq!(tr.deployment.branch.as_deref(), Some("main"));
    assert_eq!(
        tr.deployment.previous_id.as_deref(),
        Some(sha_of("100").as_str())
    );
    assert_eq!(tr.deployment.ended, Some(t(4)));
    assert_eq!(tr.last_success_end, Some(t(4)));
    assert_eq!(
        out.state.live.as_ref().map(|l| l.release.as_str()),
        Some("200")
    );
    assert!(out.state.active.is_empty());
}

#[test]
fn cap_fast_deploy_seen_once_skips_states() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200").deployed("200", "bob");
    let out = full(&st, &s, 3);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].from, None);
    assert_eq!(out.transitions[0].to, Success);
    assert_eq!(out.transitions[0].deployment.received, t(3));
    assert_eq!(out.transitions[0].deployment.started, Some(t(3)));
}

#[test]
fn cap_a_half_written_log_line_is_not_ready() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200");
    let st = check(&st, &s, 3, &[("200", None, Deploying)]);
    let mut partial = s.clone();
    if let Some(log) = partial.0.revisions_log.as_mut() {
        log.partial_tail = true;
    }
    let st = check(&st, &partial, 4, &[]);
    check(
        &st,
        &s.deployed("200", "bob"),
        5,
        &[("200", Some(Deploying), Success)],
    );
}

#[test]
fn cap_garbage_log_line_is_an_anomaly_not_a_deployment() {
    let (s, st) = cap_live();
    let s = s.garbage("\u{1b}[31mnot a log line");
    let out = full(&st, &s, 1);
    assert!(out.transitions.is_empty());
    assert_eq!(out.anomalies.len(), 1);
    assert!(out.anomalies[0].message.contains("revisions.log line 2"));
    // Seen once: the next read does not repeat it.
    assert!(full(&out.state, &s, 2).anomalies.is_empty());
}

#[test]
fn cap_rollback_is_a_new_deployment_and_leaves_the_live_one_alone() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200").deployed("200", "bob");
    let st = check(&st, &s, 3, &[("200", None, Success)]);
    let s = s.current("100");
    let st = check(&st, &s, 10, &[("100", None, Deploying)]);
    let s = s.rolled_back("100", "bob");
    let out = full(&st, &s, 11);
    assert_eq!(out.transitions.len(), 1);
    let tr = &out.transitions[0];
    assert_eq!((tr.from, tr.to), (Some(Deploying), Success));
    assert!(tr.deployment.rollback);
    assert_eq!(tr.deployment.id, sha_of("100"));
    assert_eq!(
        tr.deployment.previous_id.as_deref(),
        Some(sha_of("200").as_str())
    );
    // Release 100 succeeded before, so lastSuccessEndTime is now.
    assert_eq!(tr.last_success_end, Some(t(11)));
    assert_eq!(
        out.state.live.as_ref().map(|l| l.release.as_str()),
        Some("100")
    );
}

#[test]
fn cap_rollback_then_cleanup_of_the_rolled_back_release_is_not_a_deployment() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200").deployed("200", "bob");
    let st = check(&st, &s, 3, &[("200", None, Success)]);
    let s = s.current("100").rolled_back("100", "bob").without("200");
    let st = check(&st, &s, 10, &[("100", None, Success)]);
    check(&st, &s, 20, &[]);
}

#[test]
fn cap_two_deploys_back_to_back() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200").deployed("200", "bob");
    let st = check(&st, &s, 3, &[("200", None, Success)]);
    let s = s.release("300", 4);
    let st = check(&st, &s, 4, &[("300", None, Building)]);
    let s = s.current("300").deployed("300", "bob");
    let st = check(&st, &s, 5, &[("300", Some(Building), Success)]);
    assert_eq!(st.live.as_ref().map(|l| l.release.as_str()), Some("300"));
    assert_eq!(st.sequence, 3);
}

#[test]
fn cap_redeploy_of_the_same_commit_is_a_new_deployment() {
    let (s, st) = cap_live();
    let s = s.release_sha("200", 2, &sha_of("100"));
    let out = full(&st, &s, 2);
    assert_eq!(out.transitions.len(), 1);
    let tr = &out.transitions[0];
    assert_eq!(tr.deployment.id, sha_of("100"));
    assert_eq!(tr.deployment.release.as_deref(), Some("200"));
    // The baseline was not a reported success: no lastSuccessEndTime yet.
    assert_eq!(tr.last_success_end, None);
    let s = s.current("200").deployed("200", "bob");
    let out = full(&out.state, &s, 3);
    assert_eq!(out.transitions[0].to, Success);
    let s = s.release_sha("300", 4, &sha_of("100"));
    let out = full(&out.state, &s, 4);
    assert_eq!(out.transitions[0].to, Building);
    assert_eq!(out.transitions[0].last_success_end, Some(t(3)));
}

#[test]
fn cap_release_deleted_before_the_switch_fails() {
    let (s, st) = cap_live();
    let s2 = s.clone().release("200", 2);
    let st = check(&st, &s2, 2, &[("200", None, Building)]);
    let out = full(&st, &s, 3);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].to, Failed);
    assert!(
        out.transitions[0]
            .deployment
            .status_text
            .contains("removed before it went live")
    );
    assert_eq!(
        out.state.live.as_ref().map(|l| l.release.as_str()),
        Some("100")
    );
}

#[test]
fn cap_superseded_while_deploying_fails_and_the_new_one_goes_on() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200");
    let st = check(&st, &s, 2, &[("200", None, Deploying)]);
    let s = s.release("300", 3).current("300");
    // The read that sees the switch may have read the log before 200's line: the next
    // read decides.
    let st = check(&st, &s, 3, &[("300", None, Deploying)]);
    check(&st, &s, 4, &[("200", Some(Deploying), Failed)]);
}

#[test]
fn cap_switch_seen_before_the_log_line_read_with_it_is_not_a_failure() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200");
    let st = check(&st, &s, 2, &[("200", None, Deploying)]);
    // 200's log line was written, then 300 switched; this read took the log first.
    let torn = s.clone().release("300", 3).current("300");
    let st = check(&st, &torn, 3, &[("300", None, Deploying)]);
    let s = torn.deployed("200", "alice");
    check(&st, &s, 4, &[("200", Some(Deploying), Success)]);
}

#[test]
fn cleanup_of_old_releases_is_not_a_deployment() {
    let (s, _) = cap_live();
    let with_old = s.clone().release("050", -9000).release("060", -8000);
    let st = check(&SiteState::default(), &with_old, 0, &[]);
    check(&st, &s, 1, &[]);
}

// ---- idle timeout -----------------------------------------------------------------

#[test]
fn failed_by_idle_timeout_when_a_release_never_goes_live() {
    let (s, st) = cap_live();
    let s = s.release("200", 2);
    let out = full(&st, &s, 2);
    assert_eq!(out.wake_at, Some(t(602)));
    let st = check(&out.state, &s, 601, &[]);
    let out = full(&st, &s, 602);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].to, Failed);
    assert!(
        out.transitions[0]
            .deployment
            .status_text
            .contains("idle_timeout")
    );
    assert!(out.state.active.is_empty());
}

#[test]
fn failed_by_idle_timeout_when_the_log_line_never_comes() {
    let (s, st) = cap_live();
    let s = s.release("200", 2).current("200");
    let st = check(&st, &s, 2, &[("200", None, Deploying)]);
    check(&st, &s, 602, &[("200", Some(Deploying), Failed)]);
}

#[test]
fn change_in_the_release_postpones_the_idle_timeout() {
    let (s, st) = cap_live();
    let s = s.release("200", 2);
    let st = check(&st, &s, 2, &[("200", None, Building)]);
    let s = s.release("200", 500); // touched at t+500
    let st = check(&st, &s, 500, &[]);
    check(&st, &s, 700, &[]);
}

// ---- Deployer ---------------------------------------------------------------------

fn dep_live() -> (S, SiteState) {
    let s = dep().release("1", -5000).current("1");
    let st = check(&SiteState::default(), &s, 0, &[]);
    (s, st)
}

#[test]
fn dep_pending_when_the_lock_appears() {
    let (s, st) = dep_live();
    let s = s.lock("carol");
    let st = check(&st, &s, 1, &[("pending-1", None, Pending)]);
    assert_eq!(st.active[0].deployer.as_deref(), Some("carol"));
}

#[test]
fn dep_full_deploy_uses_releases_log_and_finishes_when_the_lock_goes() {
    let (s, st) = dep_live();
    let s = s.lock("carol");
    let st = check(&st, &s, 1, &[("pending-1", None, Pending)]);
    let s = s
        .releases_log("2", "carol", 1)
        .release("2", 2)
        .release_link(Some("2"));
    let out = full(&st, &s, 2);
    assert_eq!(out.transitions.len(), 1);
    let d = &out.transitions[0].deployment;
    assert_eq!(out.transitions[0].to, Building);
    assert_eq!(d.id, sha_of("2"));
    assert_eq!(d.deployer.as_deref(), Some("carol"));
    assert_eq!(d.started, Some(t(1)));
    let s = s.release_link(None).current("2");
    let st = check(&out.state, &s, 3, &[("2", Some(Building), Deploying)]);
    let s = s.unlock();
    check(&st, &s, 4, &[("2", Some(Deploying), Success)]);
}

#[test]
fn dep_lock_removed_while_release_still_points_at_it_fails() {
    let (s, st) = dep_live();
    let s = s.lock("carol").release("2", 2).release_link(Some("2"));
    let st = check(&st, &s, 2, &[("2", None, Building)]);
    let s = s.unlock();
    let out = full(&st, &s, 3);
    assert_eq!(out.transitions[0].to, Failed);
    assert!(
        out.transitions[0]
            .deployment
            .status_text
            .contains("deploy lock")
    );
}

#[test]
fn dep_lock_removed_before_any_release_fails_the_pending_deployment() {
    let (s, st) = dep_live();
    let st = check(
        &st,
        &s.clone().lock("carol"),
        1,
        &[("pending-1", None, Pending)],
    );
    check(&st, &s, 2, &[("pending-1", Some(Pending), Failed)]);
}

#[test]
fn dep_rollback_to_an_older_release_succeeds_after_settle() {
    let (s, st) = dep_live();
    let s = s.lock("carol").release("2", 2).current("2");
    let st = check(&st, &s, 2, &[("2", None, Deploying)]);
    let s = s.unlock();
    let st = check(&st, &s, 3, &[("2", Some(Deploying), Success)]);
    let s = s.current("1");
    let out = full(&st, &s, 10);
    assert_eq!(out.transitions[0].to, Deploying);
    assert!(out.transitions[0].deployment.rollback);
    assert_eq!(out.wake_at, Some(t(12)));
    check(&out.state, &s, 12, &[("1", Some(Deploying), Success)]);
}

// ---- plain and Ansible deploy_helper ------------------------------------------------

fn plain_live() -> (S, SiteState) {
    let s = plain().release("100", -5000).current("100");
    let st = check(&SiteState::default(), &s, 0, &[]);
    (s, st)
}

#[test]
fn ansible_unfinished_release_builds_then_finalize_succeeds_after_settle() {
    let (s, st) = plain_live();
    let s = s.release("200", 1).unfinished("200");
    let st = check(&st, &s, 1, &[("200", None, Building)]);
    // finalize: DEPLOY_UNFINISHED removed, current switched via current.DEPLOY_UNFINISHED.
    let s = s.release("200", 5).current("200");
    let out = full(&st, &s, 5);
    assert_eq!(out.transitions[0].to, Deploying);
    assert_eq!(out.wake_at, Some(t(7)));
    let st = check(&out.state, &s, 6, &[]);
    check(&st, &s, 7, &[("200", Some(Deploying), Success)]);
}

#[test]
fn ansible_switched_but_still_unfinished_keeps_deploying() {
    let (s, st) = plain_live();
    let s = s.release("200", 1).unfinished("200").current("200");
    let st = check(&st, &s, 1, &[("200", None, Deploying)]);
    check(&st, &s, 30, &[]);
}

#[test]
fn ansible_unfinished_release_cleaned_by_the_next_deploy_fails() {
    let (s, st) = plain_live();
    let broken = s.clone().release("200", 1).unfinished("200");
    let st = check(&st, &broken, 1, &[("200", None, Building)]);
    let next = s.release("300", 50);
    check(
        &st,
        &next,
        50,
        &[("200", Some(Building), Failed), ("300", None, Building)],
    );
}

#[test]
fn plain_release_succeeds_once_quiet_for_settle() {
    let (s, st) = plain_live();
    let s = s.release("200", 1).current("200");
    let st = check(&st, &s, 1, &[("200", None, Deploying)]);
    let s = s.release("200", 2); // still being written at t+2
    let st = check(&st, &s, 2, &[]);
    let st = check(&st, &s, 3, &[]);
    check(&st, &s, 4, &[("200", Some(Deploying), Success)]);
}

// ---- bad input ----------------------------------------------------------------------

#[test]
fn dangling_current_is_an_anomaly_and_reports_nothing() {
    let (s, st) = cap_live();
    let s = s.current_raw(Current::Dangling("999".into()));
    let out = full(&st, &s, 1);
    assert!(out.transitions.is_empty());
    assert!(out.anomalies[0].message.contains("does not exist"));
}

#[test]
fn current_outside_releases_is_an_anomaly_and_reports_nothing() {
    let (s, st) = cap_live();
    let s = s.current_raw(Current::Outside("/tmp/elsewhere".into()));
    let out = full(&st, &s, 1);
    assert!(out.transitions.is_empty());
    assert!(out.anomalies[0].message.contains("outside releases/"));
}

#[test]
fn unreadable_revision_is_reported_with_the_release_name_as_id() {
    let (s, st) = plain_live();
    let s = s
        .release("200", 1)
        .revision("200", Revision::Unreadable("not UTF-8 text".into()))
        .current("200");
    let out = full(&st, &s, 1);
    assert_eq!(out.transitions[0].deployment.id, "200");
    assert_eq!(out.transitions[0].deployment.commit, None);
}

// ---- equivalence rule ---------------------------------------------------------------

fn cap_steps() -> Vec<(i64, S)> {
    let (base, _) = cap_live();
    let p = base.clone().repo_head(&sha_of("200"));
    let b = p.clone().release("200", 2);
    let d = b.clone().current("200");
    let done = d.clone().deployed("200", "bob");
    vec![(1, p), (2, b), (3, d), (4, done)]
}

fn dep_steps() -> Vec<(i64, S)> {
    let (base, _) = dep_live();
    let l = base.clone().lock("carol");
    let b = l
        .clone()
        .releases_log("2", "carol", 1)
        .release("2", 2)
        .release_link(Some("2"));
    let d = b.clone().release_link(None).current("2");
    let done = d.clone().unlock();
    vec![(1, l), (2, b), (3, d), (4, done)]
}

fn plain_steps() -> Vec<(i64, S)> {
    let (base, _) = plain_live();
    let b = base.clone().release("200", 1).unfinished("200");
    let d = base.release("200", 2).current("200");
    vec![(1, b), (2, d.clone()), (10, d)]
}

/// Feeding every intermediate snapshot, or only the final one, ends in the same live
/// release, with nothing in progress and the deployment reported as terminal once.
fn assert_equivalent(base: SiteState, steps: Vec<(i64, S)>) {
    let mut st = base.clone();
    let mut every = Vec::new();
    for (now, s) in &steps {
        let out = full(&st, s, *now);
        every.extend(out.transitions);
        st = out.state;
    }
    let (last_now, last) = steps.last().cloned().unwrap_or((0, plain()));
    // Only the final snapshot (read again after settle, as the daemon's wake-up does).
    let once = full(&base, &last, last_now);
    let mut final_only = once.transitions.clone();
    let again = full(&once.state, &last, last_now + 10);
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
    let cold = full(&SiteState::default(), &last, last_now);
    assert!(cold.transitions.is_empty());
    assert_eq!(cold.state.live, st.live);
}

#[test]
fn equivalence_capistrano() {
    assert_equivalent(cap_live().1, cap_steps());
}

#[test]
fn equivalence_deployer() {
    assert_equivalent(dep_live().1, dep_steps());
}

#[test]
fn equivalence_plain() {
    assert_equivalent(plain_live().1, plain_steps());
}

// ---- kudu -----------------------------------------------------------------------------

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

mod kudu_rows {
    use super::*;
    use crate::snapshot::kudu::{KuduEntry, KuduSnapshot, KuduStatus};

    fn entry(id: &str, status: Status, complete: bool, received: i64, modified: i64) -> KuduEntry {
        KuduEntry::Ready {
            status: Box::new(KuduStatus {
                id: id.into(),
                status: Some(status),
                author: Some("Sam Roe".into()),
                message: Some("m".into()),
                received_time: Some(t(received)),
                end_time: complete.then(|| t(modified)),
                complete,
                ..KuduStatus::default()
            }),
            modified: t(modified),
        }
    }

    fn snap(entries: &[(&str, KuduEntry)], active: Option<&str>) -> Snapshot {
        Snapshot {
            taken_at: t(0),
            layout: LayoutSnapshot::Kudu(Box::new(KuduSnapshot {
                deployments: entries
                    .iter()
                    .map(|(k, e)| (k.to_string(), e.clone()))
                    .collect(),
                active: active.map(str::to_string),
            })),
            health: None,
        }
    }

    use super::by_id as run;

    fn live() -> SiteState {
        let s = snap(&[("a", entry("a", Success, true, -900, -800))], Some("a"));
        let (st, tr) = run(&SiteState::default(), &s, 0);
        assert!(tr.is_empty(), "the baseline is not reported");
        st
    }

    #[test]
    fn kudu_statuses_come_from_the_file_in_order() {
        let st = live();
        let (st, tr) = run(
            &st,
            &snap(
                &[
                    ("a", entry("a", Success, true, -900, -800)),
                    ("b", entry("b", Pending, false, 1, 1)),
                ],
                Some("a"),
            ),
            1,
        );
        assert_eq!(tr, [("b".to_string(), None, Pending)]);
        let (st, tr) = run(
            &st,
            &snap(
                &[
                    ("a", entry("a", Success, true, -900, -800)),
                    ("b", entry("b", Building, false, 1, 2)),
                ],
                Some("a"),
            ),
            2,
        );
        assert_eq!(tr, [("b".to_string(), Some(Pending), Building)]);
        let out = infer(
            &st,
            &snap(
                &[
                    ("a", entry("a", Success, true, -900, -800)),
                    ("b", entry("b", Success, true, 1, 3)),
                ],
                Some("b"),
            ),
            t(4),
            &params(),
        );
        assert_eq!(out.transitions.len(), 1);
        let tr = &out.transitions[0];
        assert_eq!(tr.to, Success);
        assert_eq!(tr.deployment.ended, Some(t(3)), "endTime from the file");
        assert_eq!(tr.deployment.received, t(1), "receivedTime from the file");
        assert_eq!(tr.deployment.previous_id.as_deref(), Some("a"));
        assert_eq!(out.state.live.as_ref().map(|l| l.id.as_str()), Some("b"));
    }

    #[test]
    fn kudu_success_without_complete_is_not_terminal_yet() {
        let st = live();
        let (_, tr) = run(
            &st,
            &snap(&[("b", entry("b", Success, false, 1, 1))], Some("a")),
            1,
        );
        assert_eq!(tr, [("b".to_string(), None, Deploying)]);
    }

    #[test]
    fn kudu_incomplete_and_idle_fails_saying_kudu_sends_nothing() {
        let st = live();
        let s = snap(&[("b", entry("b", Building, false, 1, 1))], Some("a"));
        let (st, _) = run(&st, &s, 1);
        let out = infer(&st, &s, t(601), &params());
        assert_eq!(out.transitions[0].to, Failed);
        assert!(
            out.transitions[0]
                .deployment
                .status_text
                .contains("Kudu itself sends no hook")
        );
    }

    #[test]
    fn kudu_redeploy_of_the_same_id_is_a_new_deployment() {
        let st = live();
        let (_, tr) = run(
            &st,
            &snap(&[("a", entry("a", Pending, false, 5, 5))], Some("a")),
            5,
        );
        assert_eq!(tr, [("a".to_string(), None, Pending)]);
    }

    #[test]
    fn kudu_half_written_file_is_retried_not_reported() {
        let st = live();
        let half = KuduEntry::NotReady {
            reason: "EOF".into(),
            modified: t(1),
        };
        let (st, tr) = run(&st, &snap(&[("b", half)], Some("a")), 1);
        assert!(tr.is_empty());
        let (_, tr) = run(
            &st,
            &snap(&[("b", entry("b", Building, false, 1, 2))], Some("a")),
            2,
        );
        assert_eq!(tr, [("b".to_string(), None, Building)]);
    }

    #[test]
    fn kudu_deployment_removed_before_completing_fails() {
        let st = live();
        let (st, _) = run(
            &st,
            &snap(&[("b", entry("b", Building, false, 1, 1))], Some("a")),
            1,
        );
        let (_, tr) = run(&st, &snap(&[], Some("a")), 2);
        assert_eq!(tr, [("b".to_string(), Some(Building), Failed)]);
    }
}

// ---- git ------------------------------------------------------------------------------

mod git_rows {
    use super::*;
    use crate::snapshot::git::GitSite;

    fn g(commit: &str, head: &str, matches: bool) -> Snapshot {
        Snapshot {
            taken_at: t(0),
            layout: LayoutSnapshot::Git(Box::new(GitSite {
                branch: Some("main".into()),
                branch_commit: Some(commit.into()),
                head_commit: Some(head.into()),
                tree_matches: matches,
                commit: None,
                error: None,
            })),
            health: None,
        }
    }

    fn statuses(
        prev: &SiteState,
        s: &Snapshot,
        now: i64,
    ) -> (SiteState, Vec<(Option<Status>, Status)>) {
        let out = infer(prev, s, t(now), &params());
        (
            out.state,
            out.transitions.iter().map(|t| (t.from, t.to)).collect(),
        )
    }

    fn live() -> SiteState {
        let (st, tr) = statuses(&SiteState::default(), &g("a", "a", true), 0);
        assert!(tr.is_empty());
        st
    }

    #[test]
    fn git_push_is_pending_and_deploying_then_success_after_settle() {
        let (st, tr) = statuses(&live(), &g("b", "b", true), 1);
        assert_eq!(tr, [(None, Pending), (Some(Pending), Deploying)]);
        let (st, tr) = statuses(&st, &g("b", "b", true), 2);
        assert!(tr.is_empty(), "not quiet for settle yet");
        let (st, tr) = statuses(&st, &g("b", "b", true), 3);
        assert_eq!(tr, [(Some(Deploying), Success)]);
        assert_eq!(st.live.as_ref().map(|l| l.id.as_str()), Some("b"));
    }

    #[test]
    fn git_tree_not_matching_past_idle_timeout_fails() {
        let (st, _) = statuses(&live(), &g("b", "a", false), 1);
        let (_, tr) = statuses(&st, &g("b", "a", false), 601);
        assert_eq!(tr, [(Some(Deploying), Failed)]);
    }

    #[test]
    fn git_same_commit_again_is_nothing() {
        let st = live();
        let (st, tr) = statuses(&st, &g("a", "a", true), 5);
        assert!(tr.is_empty());
        assert!(st.active.is_empty());
    }

    #[test]
    fn git_branch_moving_on_before_settling_supersedes() {
        let (st, _) = statuses(&live(), &g("b", "b", true), 1);
        let out = infer(&st, &g("c", "c", true), t(1), &params());
        let tr: Vec<_> = out
            .transitions
            .iter()
            .map(|t| (t.deployment.id.as_str(), t.to))
            .collect();
        assert_eq!(tr, [("b", Failed), ("c", Pending), ("c", Deploying)]);
    }
}

// ---- marker -----------------------------------------------------------------------------

mod marker_rows {
    use super::*;
    use crate::snapshot::marker::{Marker, MarkerFile, MarkerSnapshot};

    fn m(status: Status, id: Option<&str>, version: i64) -> Snapshot {
        Snapshot {
            taken_at: t(0),
            layout: LayoutSnapshot::Marker(Box::new(MarkerSnapshot {
                file: MarkerFile::Ready {
                    marker: Marker {
                        status: status.as_str().into(),
                        id: id.map(str::to_string),
                        deployer: Some("ci".into()),
                        ..Marker::default()
                    },
                    status,
                    modified: t(version),
                    fingerprint: format!("v{version}"),
                },
                head: None,
                commit: None,
            })),
            health: None,
        }
    }

    use super::by_id as run;

    fn live() -> SiteState {
        let (st, tr) = run(&SiteState::default(), &m(Success, Some("a"), -100), 0);
        assert!(
            tr.is_empty(),
            "a terminal marker at first sight is the baseline"
        );
        st
    }

    #[test]
    fn marker_statuses_as_written() {
        let (st, tr) = run(&live(), &m(Building, Some("b"), 1), 1);
        assert_eq!(tr, [("b".to_string(), None, Building)]);
        let (_, tr) = run(&st, &m(Success, Some("b"), 2), 2);
        assert_eq!(tr, [("b".to_string(), Some(Building), Success)]);
    }

    #[test]
    fn marker_rewrite_after_terminal_is_a_new_deployment_of_the_same_id() {
        let (st, _) = run(&live(), &m(Building, Some("b"), 1), 1);
        let (st, _) = run(&st, &m(Success, Some("b"), 2), 2);
        let (st, tr) = run(&st, &m(Building, Some("b"), 3), 3);
        assert_eq!(tr, [("b".to_string(), None, Building)]);
        assert_eq!(st.next_serial, 2);
    }

    #[test]
    fn marker_status_going_backwards_restarts() {
        let (st, _) = run(&live(), &m(Deploying, Some("b"), 1), 1);
        let (_, tr) = run(&st, &m(Building, Some("b"), 2), 2);
        assert_eq!(
            tr,
            [
                ("b".to_string(), Some(Deploying), Failed),
                ("b".to_string(), None, Building)
            ]
        );
    }

    #[test]
    fn marker_unchanged_file_reports_nothing_and_idle_fails() {
        let s = m(Building, Some("b"), 1);
        let (st, _) = run(&live(), &s, 1);
        let (st, tr) = run(&st, &s, 300);
        assert!(tr.is_empty());
        let (_, tr) = run(&st, &s, 601);
        assert_eq!(tr, [("b".to_string(), Some(Building), Failed)]);
    }
}

// ---- health gate --------------------------------------------------------------------------

mod health_rows {
    use super::*;
    use crate::snapshot::Health;

    fn with_health(s: &S, h: Option<Health>) -> Snapshot {
        let mut snap = s.snap();
        snap.health = h;
        snap
    }

    fn hp() -> Params {
        Params {
            health_timeout: Some(Duration::from_secs(60)),
            ..params()
        }
    }

    #[test]
    fn success_waits_for_a_2xx_seen_after_the_layout_said_done() {
        let (s, st) = cap_live();
        let s = s.release("200", 2).current("200").deployed("200", "bob");
        let stale = Health {
            last_ok: Some(t(-5)),
            ..Health::default()
        };
        let out = infer(&st, &with_health(&s, Some(stale)), t(3), &hp());
        assert_eq!(
            out.transitions[0].to, Deploying,
            "a 2xx from before does not count"
        );
        assert_eq!(out.wake_at, Some(t(63)));
        let fresh = Health {
            last_ok: Some(t(4)),
            ..Health::default()
        };
        let out = infer(&out.state, &with_health(&s, Some(fresh)), t(4), &hp());
        assert_eq!(out.transitions.len(), 1);
        assert_eq!(
            out.transitions[0].to, Success,
            "the consumed log line still counts"
        );
    }

    #[test]
    fn no_2xx_within_health_timeout_fails_with_the_last_error() {
        let (s, st) = cap_live();
        let s = s.release("200", 2).current("200").deployed("200", "bob");
        let bad = Health {
            last_error: Some("HTTP 502".into()),
            ..Health::default()
        };
        let out = infer(&st, &with_health(&s, Some(bad.clone())), t(3), &hp());
        let out = infer(&out.state, &with_health(&s, Some(bad)), t(63), &hp());
        assert_eq!(out.transitions[0].to, Failed);
        assert!(
            out.transitions[0]
                .deployment
                .status_text
                .contains("HTTP 502")
        );
    }
}
