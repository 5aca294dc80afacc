//! Rows of the `releases` layout (SPEC §2.1): Capistrano, Deployer, deploy_helper,
//! plain; first sight, idle timeouts, bad input, and the equivalence rule per flavour.

use super::*;

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
fn a_change_seen_late_does_not_restart_the_idle_clock_from_the_read() {
    // Files written inside the release make no event: the read at the deadline is the
    // first to see the directory changed at t+300. The deadline is t+300+600, not the
    // read's time + 600.
    let (s, st) = cap_live();
    let s = s.release("200", 2);
    let out = full(&st, &s, 2);
    assert_eq!(out.wake_at, Some(t(602)));
    let s = s.release("200", 300);
    let out = full(&out.state, &s, 602);
    assert!(out.transitions.is_empty());
    assert_eq!(out.wake_at, Some(t(900)));
    let out = full(&out.state, &s, 900);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].to, Failed);
    assert_eq!(out.transitions[0].deployment.ended, Some(t(900)));
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
fn dep_lock_starts_a_deployment_held_until_its_commit_is_known() {
    let (s, st) = dep_live();
    let s = s.lock("carol");
    // Nothing is sent yet: its id (the commit its release will carry) is not known.
    let st = check(&st, &s, 1, &[]);
    assert_eq!(st.active.len(), 1);
    assert!(!st.active[0].id_known);
    assert_eq!(st.active[0].deployer.as_deref(), Some("carol"));
}

#[test]
fn dep_full_deploy_uses_releases_log_and_finishes_when_the_lock_goes() {
    let (s, st) = dep_live();
    let s = s.lock("carol");
    let st = check(&st, &s, 1, &[]);
    let s = s
        .releases_log("2", "carol", 1)
        .release("2", 2)
        .release_link(Some("2"));
    // The lock's `pending` goes out first, with the commit the release carries.
    let out = full(&st, &s, 2);
    assert_eq!(out.transitions.len(), 2);
    assert_eq!(out.transitions[0].to, Pending);
    assert_eq!(out.transitions[0].deployment.id, sha_of("2"));
    let d = &out.transitions[1].deployment;
    assert_eq!(out.transitions[1].from, Some(Pending));
    assert_eq!(out.transitions[1].to, Building);
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
    let st = check(&st, &s.clone().lock("carol"), 1, &[]);
    // It goes out with the only id it ever had.
    check(
        &st,
        &s,
        2,
        &[
            ("pending-1", None, Pending),
            ("pending-1", Some(Pending), Failed),
        ],
    );
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
    // Held for `settle`: a REVISION being written may still become readable.
    let out = full(&st, &s, 1);
    assert!(out.transitions.is_empty());
    assert_eq!(out.wake_at, Some(t(3)));
    let out = full(&out.state, &s, 3);
    assert_eq!(out.transitions[0].deployment.id, "200");
    assert_eq!(out.transitions[0].deployment.commit, None);
}

// ---- one deployment, one id ------------------------------------------------------

#[test]
fn release_without_revision_is_held_until_its_revision_is_written() {
    // Capistrano's own order without a mirror to read: the archive, then `REVISION`.
    let (s, st) = plain_live();
    let s = s.release("200", 1).revision("200", Revision::Missing);
    let out = full(&st, &s, 1);
    assert!(out.transitions.is_empty(), "{:?}", out.transitions);
    assert_eq!(out.wake_at, Some(t(3)));
    let s = s.release("200", 2);
    let out = full(&out.state, &s, 2);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].to, Building);
    assert_eq!(out.transitions[0].deployment.id, sha_of("200"));
    assert_eq!(out.transitions[0].deployment.started, Some(t(1)));
}

#[test]
fn release_whose_commit_never_shows_keeps_its_name_as_id_to_the_end() {
    let (s, st) = plain_live();
    let s = s.release("200", 1).revision("200", Revision::Missing);
    let st = check(&st, &s, 1, &[]);
    let out = full(&st, &s, 3);
    assert_eq!(out.transitions[0].deployment.id, "200");
    // A REVISION written later does not change the id of a deployment already sent.
    let s = s.release("200", 4).current("200");
    let out = full(&out.state, &s, 4);
    let out = full(&out.state, &s, 7);
    let ids: Vec<&str> = out
        .transitions
        .iter()
        .map(|t| t.deployment.id.as_str())
        .collect();
    assert_eq!(ids, ["200"], "{:?}", out.transitions);
    assert_eq!(out.transitions[0].to, Success);
}

#[test]
fn cap_release_takes_the_mirror_head_when_no_revision_is_written_yet() {
    // A redeploy of the commit the mirror already has: no pending, no REVISION yet.
    let (s, st) = cap_live();
    let s = s.release("200", 1).revision("200", Revision::Missing);
    let out = full(&st, &s, 1);
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(out.transitions[0].to, Building);
    assert_eq!(out.transitions[0].deployment.id, sha_of("100"));
}

// ---- equivalence rule ---------------------------------------------------------------

fn snaps(steps: Vec<(i64, S)>) -> Vec<(i64, Snapshot)> {
    steps.into_iter().map(|(n, s)| (n, s.snap())).collect()
}

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

#[test]
fn equivalence_capistrano() {
    assert_equivalent(cap_live().1, snaps(cap_steps()));
}

#[test]
fn equivalence_deployer() {
    assert_equivalent(dep_live().1, snaps(dep_steps()));
}

#[test]
fn equivalence_plain() {
    assert_equivalent(plain_live().1, snaps(plain_steps()));
}
