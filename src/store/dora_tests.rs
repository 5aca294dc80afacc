//! The five keys on a hand-made history, every figure computed by hand.

use super::*;

const H: i64 = 3_600_000_000;
const M: i64 = 60_000_000;

fn dep(serial: u64, id: &str, status: Status, start: i64, end: i64) -> Finished {
    Finished {
        site: "shop".into(),
        serial,
        id: id.into(),
        status,
        rollback: false,
        previous_id: None,
        start: Timestamp(start),
        end: Timestamp(end),
    }
}

/// A commit first shipped by a deployment that ended at `end`.
fn first(end: i64, authored: i64) -> FirstShipped {
    FirstShipped {
        end: Timestamp(end),
        authored: Timestamp(authored),
    }
}

/// A success (c1), a failure (c3), its fix (c4, shipping c2..c4), then a success (c5)
/// rolled back to c4, and a forward fix (c6).
fn history() -> History {
    let mut rollback = dep(5, "c4", Status::Success, 50 * H, 50 * H + 2 * M);
    rollback.rollback = true;
    rollback.previous_id = Some("c5".into());
    History {
        deployments: vec![
            dep(1, "c1", Status::Success, 0, 10 * M),
            dep(2, "c3", Status::Failed, 24 * H, 24 * H + 5 * M),
            dep(3, "c4", Status::Success, 26 * H, 26 * H + 10 * M),
            dep(4, "c5", Status::Success, 48 * H, 48 * H + 10 * M),
            rollback,
            dep(6, "c6", Status::Success, 52 * H, 52 * H + 10 * M),
        ],
        // c1 by 1; c2..c4 by 3 (the fix ships the failure's commits too); c5 by 4 (the
        // forward fix 6 ships it again: it counts once, see the store test); c6 by 6.
        first_shipped: [(
            "shop".to_string(),
            vec![
                first(10 * M, -48 * H),
                first(26 * H + 10 * M, 2 * H),
                first(26 * H + 10 * M, 3 * H),
                first(26 * H + 10 * M, 25 * H),
                first(48 * H + 10 * M, 47 * H),
                first(52 * H + 10 * M, 51 * H),
            ],
        )]
        .into(),
    }
}

#[test]
fn every_figure_matches_the_hand_computed_table() {
    let s = samples(&history(), Window::ALL);
    let shop = &s["shop"];
    assert_eq!(
        (
            shop.successful,
            shop.failed,
            shop.rolled_back,
            shop.rollbacks
        ),
        (5, 1, 1, 1)
    );
    // Lead times: c1 48h10m, c2 24h10m, c3 23h10m, c4 1h10m, c5 1h10m, c6 1h10m.
    let mut lead = shop.lead_times.clone();
    lead.sort_by(f64::total_cmp);
    let h = |hours: i64, minutes: i64| ((hours * H + minutes * M) / 1_000_000) as f64;
    assert_eq!(
        lead,
        vec![
            h(1, 10),
            h(1, 10),
            h(1, 10),
            h(23, 10),
            h(24, 10),
            h(48, 10)
        ]
    );
    // Recoveries: c3 failed at 24h05m → c4 ends 26h10m (2h05m); c5 rolled back at 50h →
    // the rollback ends 50h02m (2m).
    let mut rec = shop.recoveries.clone();
    rec.sort_by(f64::total_cmp);
    assert_eq!(rec, vec![h(0, 2), h(2, 5)]);
    // Rework: the fix of the failure (3), the rollback (5) and the forward fix (6).
    assert_eq!(shop.rework, 3);
    let f = shop.figures(2.0);
    assert_eq!(f.deployments, 6);
    assert_eq!(f.per_day, 2.5);
    assert_eq!(f.change_failure_rate, Some(2.0 / 6.0));
    assert_eq!(f.rework_rate, Some(3.0 / 6.0));
    // Median of six: between 1h10m and 23h10m = 12h10m; p90: rank 4.5 → 24h10m + ½·24h.
    assert_eq!(f.lead_time.median_seconds, Some(h(12, 10)));
    assert_eq!(f.lead_time.p90_seconds, Some(h(36, 10)));
    assert_eq!(f.recovery.count, 2);
    assert_eq!(f.recovery.median_seconds, Some((h(0, 2) + h(2, 5)) / 2.0));
}

#[test]
fn a_window_counts_what_ended_in_it() {
    let w = Window {
        since: Timestamp(25 * H),
        until: Timestamp(49 * H),
    };
    let s = &samples(&history(), w)["shop"];
    // Deployments 3 and 4 ended in it; c2, c3, c4 (by 3) and c5 (by 4) were first shipped in it.
    assert_eq!(
        (s.successful, s.failed, s.rolled_back, s.rework),
        (2, 0, 1, 1)
    );
    assert_eq!(s.lead_times.len(), 4);
    assert_eq!(s.recoveries.len(), 1, "the failure's recovery ended in it");
    assert!(samples(&History::default(), w).is_empty());
    let none = Samples::default().figures(30.0);
    assert_eq!(
        (none.change_failure_rate, none.lead_time.median_seconds),
        (None, None)
    );
}

#[test]
fn a_failure_not_yet_recovered_has_no_recovery_and_its_retries_are_rework() {
    let h = History {
        deployments: vec![
            dep(1, "a", Status::Success, 0, M),
            dep(2, "b", Status::Failed, H, H + M),
            dep(3, "b", Status::Failed, 2 * H, 2 * H + M),
        ],
        first_shipped: BTreeMap::new(),
    };
    let s = &samples(&h, Window::ALL)["shop"];
    assert!(s.recoveries.is_empty());
    // Deployment 3 started after 2 failed (rework); 2 started after nothing failed.
    assert_eq!((s.failed, s.rework), (2, 1));
}

#[test]
fn percentiles_interpolate_between_ranks() {
    assert_eq!(percentile(&[], 0.5), None);
    assert_eq!(percentile(&[4.0], 0.9), Some(4.0));
    assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
    assert_eq!(percentile(&[0.0, 10.0], 0.9), Some(9.0));
}

#[test]
fn the_history_is_read_back_from_the_outbox_each_commit_at_its_first_shipping() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let c5 = ("c5".to_string(), Timestamp(47 * H));
    store.with_conn(|c| {
        write_shipped(c, "shop", 4, Timestamp(48 * H), std::slice::from_ref(&c5))
            .unwrap_or_else(|e| panic!("{e}"));
        write_shipped(
            c,
            "shop",
            6,
            Timestamp(52 * H),
            &[c5.clone(), ("c6".into(), Timestamp(51 * H))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        write_shipped(c, "blog", 1, Timestamp(5), std::slice::from_ref(&c5))
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let h = store
        .dora_history(Some("shop"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut shop = h.first_shipped["shop"].clone();
    shop.sort_by_key(|f| f.end);
    assert_eq!(shop, vec![first(48 * H, 47 * H), first(52 * H, 51 * H)]);
    assert_eq!(h.first_shipped.len(), 1, "only the site asked for");
    let all = store.dora_history(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        all.first_shipped["blog"],
        vec![first(5, 47 * H)],
        "per site"
    );
}
