//! The hand-off: a site read that committed deliveries gives them to their hooks'
//! workers with the wake-up, so the worker sends without reading the outbox first.
//!
//! The outbox stays the truth. A worker takes handed deliveries only when they continue
//! what it already holds (`Known`): each carries the hook's newest other pending delivery
//! at its commit (`Queued::prev`), and hand-offs arrive in commit order (they are made
//! before the writing connection is let go). Anything else — a gap, a worker that has not
//! read its queue yet, a head waiting for its retry, a hand-off dropped because the worker
//! was busy — and the worker reads the outbox, as it does after any other wake-up.

use std::sync::Mutex;

use crate::store::{DueDelivery, Queued};

/// At most this many deliveries wait in one hook's hand-off; past it they are dropped and
/// the worker reads the outbox instead (a worker stuck on a slow receiver).
const MAX_HANDED: usize = 64;

/// One hook's hand-off, shared by the daemon's reads and the hook's workers.
#[derive(Default)]
pub struct Handoff(Mutex<Handed>);

#[derive(Default)]
struct Handed {
    rows: Vec<Queued>,
    dropped: bool,
}

impl Handoff {
    /// Hands `q` over (the caller then wakes the worker).
    pub fn hand(&self, q: Queued) {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if h.rows.len() >= MAX_HANDED {
            h.rows.clear();
            h.dropped = true;
        } else if !h.dropped {
            h.rows.push(q);
        }
    }

    /// Everything handed since the last take, and whether some was dropped.
    fn take(&self) -> (Vec<Queued>, bool) {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut h.rows), std::mem::take(&mut h.dropped))
    }
}

/// What a worker knows of its queue beyond the batch it holds: nothing (it must read the
/// outbox), or that it holds every pending delivery through `seq` (`None`: there was
/// none when it last read).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Known(Option<Option<i64>>);

impl Known {
    /// The worker let its batch go (a retry waits, the hook is disabled, a store error):
    /// only a read of the outbox tells it its queue again.
    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }

    /// The worker read its queue (the hook enabled) and holds `rows`.
    pub(crate) fn read(&mut self, rows: &[DueDelivery]) {
        let newest = rows.iter().map(|d| d.seq).max();
        self.0 = Some(self.0.flatten().max(newest));
    }

    /// The deliveries handed to `handoff` that continue what the worker holds, in order;
    /// `None` (nothing handed, or a gap): read the outbox.
    pub(crate) fn take(&mut self, handoff: &Handoff) -> Option<Vec<DueDelivery>> {
        let (handed, dropped) = handoff.take();
        if dropped {
            self.forget();
        }
        let mut through = self.0?;
        let mut rows = Vec::new();
        for q in handed {
            if through.is_some_and(|t| q.delivery.seq <= t) {
                continue; // already read from the outbox
            }
            let continues = match q.prev {
                None => true,
                Some(p) => through.is_some_and(|t| p <= t),
            };
            if !continues {
                self.forget();
                return None;
            }
            through = Some(q.delivery.seq);
            rows.push(q.delivery);
        }
        self.0 = Some(through);
        (!rows.is_empty()).then_some(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn due(seq: i64) -> DueDelivery {
        DueDelivery {
            seq,
            id: format!("d{seq}"),
            hook: "h".into(),
            event: "PostDeployment".into(),
            body: Vec::new(),
            headers: Vec::new(),
            attempts: 0,
            next_attempt_at: Timestamp(0),
        }
    }

    fn queued(seq: i64, prev: Option<i64>) -> Queued {
        Queued {
            delivery: due(seq),
            prev,
        }
    }

    fn seqs(rows: Option<Vec<DueDelivery>>) -> Option<Vec<i64>> {
        rows.map(|r| r.iter().map(|d| d.seq).collect())
    }

    #[test]
    fn a_worker_that_has_not_read_its_queue_reads_it() {
        let h = Handoff::default();
        h.hand(queued(1, None));
        let mut known = Known::default();
        assert_eq!(seqs(known.take(&h)), None);
        // What was handed is gone: the read finds it.
        assert_eq!(h.take().0.len(), 0);
    }

    #[test]
    fn hand_offs_that_continue_the_queue_are_taken_in_order() {
        let h = Handoff::default();
        let mut known = Known::default();
        known.read(&[due(3), due(4)]);
        h.hand(queued(7, Some(4)));
        h.hand(queued(9, Some(7)));
        assert_eq!(seqs(known.take(&h)), Some(vec![7, 9]));
        // Everything sent and recorded: the next one has nothing pending before it.
        h.hand(queued(12, None));
        assert_eq!(seqs(known.take(&h)), Some(vec![12]));
        assert_eq!(known, Known(Some(Some(12))));
    }

    #[test]
    fn a_gap_means_a_read() {
        let h = Handoff::default();
        let mut known = Known::default();
        known.read(&[]);
        // 5 is pending and was never handed (the API, another process): read.
        h.hand(queued(6, Some(5)));
        assert_eq!(seqs(known.take(&h)), None);
        assert_eq!(known, Known(None));
        // Until a read, nothing is taken.
        h.hand(queued(8, None));
        assert_eq!(seqs(known.take(&h)), None);
    }

    #[test]
    fn what_a_read_already_holds_is_not_taken_twice() {
        let h = Handoff::default();
        let mut known = Known::default();
        h.hand(queued(5, None));
        h.hand(queued(6, Some(5)));
        // The worker read the outbox after both commits, before taking the hand-off.
        known.read(&[due(5), due(6)]);
        assert_eq!(seqs(known.take(&h)), None);
        h.hand(queued(7, Some(6)));
        assert_eq!(seqs(known.take(&h)), Some(vec![7]));
    }

    #[test]
    fn a_head_waiting_for_its_retry_is_never_overtaken() {
        let h = Handoff::default();
        let mut known = Known::default();
        known.read(&[due(2)]);
        // 2 failed and waits: the worker lets its batch go.
        known.forget();
        h.hand(queued(3, Some(2)));
        assert_eq!(seqs(known.take(&h)), None);
    }

    #[test]
    fn a_full_hand_off_is_dropped_and_the_outbox_read() {
        let h = Handoff::default();
        let mut known = Known::default();
        known.read(&[]);
        for seq in 1..=(MAX_HANDED as i64 + 1) {
            h.hand(queued(seq, (seq > 1).then_some(seq - 1)));
        }
        assert_eq!(seqs(known.take(&h)), None);
        assert_eq!(known, Known(None));
    }
}
