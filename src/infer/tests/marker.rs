//! Rows of the `marker` layout (SPEC §2.4).

use super::*;

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

    #[test]
    fn equivalence_marker() {
        assert_equivalent(
            live(),
            vec![
                (1, m(Building, Some("b"), 1)),
                (2, m(Deploying, Some("b"), 2)),
                (3, m(Success, Some("b"), 3)),
            ],
        );
    }
}
