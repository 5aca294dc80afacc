//! Rows of the `git` layout (SPEC §2.3).

use super::*;

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

    #[test]
    fn equivalence_git() {
        assert_equivalent(
            live(),
            vec![
                (1, g("b", "a", false)),
                (2, g("b", "b", true)),
                (5, g("b", "b", true)),
            ],
        );
    }
}
