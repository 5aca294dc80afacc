//! Tests of the outbox: migrations, commits, pruning, history, backoff.

use super::*;
use crate::model::next_backoff;

/// A failing write backs off 1 s, 2 s, 4 s, … up to 30 s.
#[test]
fn failed_commits_back_off_up_to_30s() {
    let mut b = None::<Duration>;
    let mut seen = Vec::new();
    for _ in 0..8 {
        b = Some(next_backoff(b));
        seen.extend(b.map(|w| w.as_secs()));
    }
    assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
}

/// An event with one delivery to `hook`.
fn event(hook: &str) -> NewEvent {
    NewEvent {
        kind: "PostDeployment".into(),
        site: None,
        status: None,
        deployment_serial: None,
        payload: b"{}".to_vec(),
        chains: Vec::new(),
        deliveries: vec![NewDelivery::new(hook, b"{}".to_vec())],
    }
}

#[test]
fn pruning_drops_old_finished_history_and_keeps_anything_pending() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let day = 86_400_000_000;
    store
        .commit_events(&[event("done"), event("waiting")], Timestamp(day))
        .unwrap_or_else(|e| panic!("{e}"));
    let done = store
        .next_delivery("done")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("queued"));
    store
        .commit_attempt(
            &done,
            &AttemptRecord {
                response_status: Some(200),
                ..AttemptRecord::default()
            },
            &Outcome::Delivered,
            Timestamp(day),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let max_age = Duration::from_secs(14 * 86_400);
    assert_eq!(
        store.prune(max_age, Timestamp(10 * day)).unwrap_or(9),
        0,
        "not old yet"
    );
    assert_eq!(store.prune(max_age, Timestamp(20 * day)).unwrap_or(9), 1);
    let left = store.list_deliveries(None, false, 10).unwrap_or_default();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].hook, "waiting",
        "a pending delivery is never pruned"
    );
}

#[test]
fn attempts_keep_at_most_64_kib_of_a_response_body_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let ev = NewEvent {
        kind: "PostDeployment".into(),
        site: Some("s".into()),
        status: None,
        deployment_serial: None,
        payload: b"{}".to_vec(),
        chains: Vec::new(),
        deliveries: vec![NewDelivery {
            headers: vec![("ce-id".into(), "x".into())],
            ..NewDelivery::new("h", b"{}".to_vec())
        }],
    };
    let ids = store
        .commit_events(&[ev], Timestamp(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let due = store
        .next_delivery("h")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("queued"));
    assert_eq!(due.id, ids[0]);
    assert_eq!(
        due.headers,
        [("ce-id".to_string(), "x".to_string())],
        "a format's own headers come back with the delivery"
    );
    let redelivered = store
        .redeliver(&due.id, Timestamp(1))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("redelivered"));
    let again = store
        .next_deliveries("h", 2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again[1].id, redelivered);
    assert_eq!(again[1].headers, due.headers, "a redelivery keeps them");
    let record = AttemptRecord {
        response_status: Some(500),
        response_body: vec![b'x'; 200 * 1024],
        ..AttemptRecord::default()
    };
    store
        .commit_attempt(&due, &record, &Outcome::RetryAt(Timestamp(9)), Timestamp(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let detail = store
        .delivery_detail(&due.id)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(
        detail.attempts[0].attempt.response_body.len(),
        MAX_STORED_BODY
    );
    assert_eq!(detail.row.state, DeliveryState::Pending);
    assert_eq!(detail.next_attempt_at, Timestamp(9));
    drop(store);
    // Reopening migrates nothing again and keeps the outbox.
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store
            .list_deliveries(None, false, 10)
            .map(|r| r.len())
            .unwrap_or(0),
        2,
        "the delivery and its redelivery survive the reopen"
    );
}

/// Attempt records go without their own fsync (a SIGKILL keeps them: they are in the
/// WAL), and the connection is back at `synchronous=FULL` for what a read commits.
#[test]
fn attempts_are_recorded_without_fsync_and_the_outbox_keeps_full() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    store
        .commit_events(&[event("h")], Timestamp(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let d = store
        .next_delivery("h")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("queued"));
    store
        .commit_attempts(
            &[AttemptResult {
                delivery: d,
                record: AttemptRecord::default(),
                outcome: Outcome::Delivered,
                also: Vec::new(),
            }],
            Timestamp(2),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let sync: i64 = store.with_conn(|c| {
        c.pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap_or(-1)
    });
    assert_eq!(sync, 2, "synchronous=FULL (2) again after the attempts");
    // What was recorded is there for another connection (the WAL has it).
    let other = Store::open_read_only(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let left = other.list_deliveries(None, false, 10).unwrap_or_default();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, DeliveryState::Delivered);
}
