//! Rows of the `kudu` layout (SPEC §2.2).

use super::*;

// ---- kudu -----------------------------------------------------------------------------

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
    fn kudu_finished_file_rewritten_in_place_is_not_a_new_deployment() {
        let st = live();
        let done = || ("b", entry("b", Success, true, 1, 2));
        let (st, tr) = run(&st, &snap(&[done()], Some("b")), 2);
        assert_eq!(tr, [("b".to_string(), None, Success)]);
        // Kudu rewrites the file in place: one read sees it half-written.
        let half = KuduEntry::NotReady {
            reason: "EOF".into(),
            modified: t(3),
        };
        let (st, tr) = run(&st, &snap(&[("b", half)], Some("b")), 3);
        assert!(tr.is_empty());
        let (_, tr) = run(&st, &snap(&[done()], Some("b")), 4);
        assert!(tr.is_empty(), "reported again: {tr:?}");
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

    #[test]
    fn equivalence_kudu() {
        let a = ("a", entry("a", Success, true, -900, -800));
        assert_equivalent(
            live(),
            vec![
                (
                    1,
                    snap(
                        &[a.clone(), ("b", entry("b", Pending, false, 1, 1))],
                        Some("a"),
                    ),
                ),
                (
                    2,
                    snap(
                        &[a.clone(), ("b", entry("b", Building, false, 1, 2))],
                        Some("a"),
                    ),
                ),
                (
                    3,
                    snap(
                        &[a.clone(), ("b", entry("b", Deploying, false, 1, 3))],
                        Some("a"),
                    ),
                ),
                (
                    4,
                    snap(&[a, ("b", entry("b", Success, true, 1, 4))], Some("b")),
                ),
            ],
        );
    }
}
