//! A hook's health as its worker sees it: the current run of failed attempts (seeded
//! from the outbox at start, so a restart neither repeats nor forgets an episode), and
//! the operational events each attempt makes (`events::ops`): `HookFailing` when the run
//! reaches `failing_after`, `HookRecovered` at the 2xx that ends it, `HookDisabled` at a
//! 410 or after `disable_after` without a 2xx, `DeliveryDead` when retries are used up.

use crate::config::HookConfig;
use crate::events::ops::{
    DELIVERY_DEAD, HOOK_DISABLED, HOOK_FAILING, HOOK_RECOVERED, HookFact, is_operational,
};
use crate::model::Timestamp;
use crate::store::{AttemptRecord, DueDelivery, Outcome};

/// The current run of failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub failures: u32,
    /// When the run's first failed attempt started.
    pub since: Option<Timestamp>,
}

impl Health {
    /// After one attempt decided `outcome`: the outcome to record (a hook failing for
    /// longer than `disable_after` is disabled) and the facts to tell the other hooks.
    pub fn after<'a>(
        &mut self,
        hook: &'a HookConfig,
        host_name: &'a str,
        d: &'a DueDelivery,
        record: &'a AttemptRecord,
        outcome: Outcome,
        now: Timestamp,
    ) -> (Outcome, Vec<HookFact<'a>>) {
        let mut facts = Vec::new();
        let fact = |kind, failures| HookFact {
            kind,
            hook: &hook.name,
            host_name,
            failures_in_a_row: failures,
            last_status: record.response_status,
            last_error: record.error.as_deref(),
            delivery_id: &d.id,
            delivery_event: &d.event,
            reason: None,
            time: now,
        };
        if outcome == Outcome::Delivered {
            if self.failures >= hook.failing_after {
                facts.push(fact(HOOK_RECOVERED, self.failures));
            }
            *self = Health::default();
            return (outcome, facts);
        }
        self.failures = self.failures.saturating_add(1);
        let since = *self.since.get_or_insert(record.started_at);
        if self.failures == hook.failing_after {
            facts.push(fact(HOOK_FAILING, self.failures));
        }
        let outcome = match hook.disable_after {
            Some(limit) if outcome != Outcome::DisableHook && now.since(since) >= limit => {
                Outcome::DisableHook
            }
            _ => outcome,
        };
        if outcome == Outcome::Dead && !is_operational(&d.event) {
            facts.push(fact(DELIVERY_DEAD, self.failures));
        }
        if outcome == Outcome::DisableHook {
            facts.push(HookFact {
                reason: Some(crate::store::disabled_reason(record)),
                ..fact(HOOK_DISABLED, self.failures)
            });
        }
        (outcome, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn attempt(status: u16, at: i64) -> AttemptRecord {
        AttemptRecord {
            started_at: Timestamp::from_unix_seconds(at),
            response_status: Some(status),
            ..AttemptRecord::default()
        }
    }

    fn delivery(event: &str) -> DueDelivery {
        DueDelivery {
            seq: 1,
            id: "msg_1".into(),
            hook: "ci".into(),
            event: event.into(),
            body: Vec::new(),
            headers: Vec::new(),
            attempts: 0,
            next_attempt_at: Timestamp(0),
        }
    }

    fn kinds(facts: &[HookFact<'_>]) -> Vec<&'static str> {
        facts.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn failing_once_per_run_recovered_at_the_2xx_dead_and_disabled() {
        let hook = HookConfig {
            failing_after: 3,
            disable_after: Some(Duration::from_secs(3600)),
            ..HookConfig::new(
                "ci",
                url::Url::parse("http://127.0.0.1:1/").unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let d = delivery("PostDeployment");
        let mut h = Health::default();
        let mut seen = Vec::new();
        for n in 0..5 {
            let r = attempt(500, 100 + n);
            let (o, facts) = h.after(
                &hook,
                "web-1",
                &d,
                &r,
                Outcome::RetryAt(Timestamp(0)),
                Timestamp::from_unix_seconds(100 + n),
            );
            assert!(matches!(o, Outcome::RetryAt(_)));
            seen.extend(kinds(&facts));
        }
        assert_eq!(seen, [HOOK_FAILING], "once, at the third failure");
        assert_eq!(h.failures, 5);
        let ok = attempt(200, 200);
        let (_, facts) = h.after(
            &hook,
            "web-1",
            &d,
            &ok,
            Outcome::Delivered,
            Timestamp::from_unix_seconds(200),
        );
        assert_eq!(kinds(&facts), [HOOK_RECOVERED]);
        assert_eq!(facts[0].failures_in_a_row, 5);
        assert!(
            facts[0]
                .message()
                .contains("recovered after 5 failed attempts"),
            "{}",
            facts[0].message()
        );
        // A dead delivery; an operational event's own death says nothing.
        let r = attempt(500, 300);
        let (_, facts) = h.after(
            &hook,
            "web-1",
            &d,
            &r,
            Outcome::Dead,
            Timestamp::from_unix_seconds(300),
        );
        assert_eq!(kinds(&facts), [DELIVERY_DEAD]);
        let ops = delivery(HOOK_FAILING);
        let (_, facts) = h.after(
            &hook,
            "web-1",
            &ops,
            &r,
            Outcome::Dead,
            Timestamp::from_unix_seconds(301),
        );
        assert!(facts.is_empty());
        // An hour after the run began: disabled.
        let (o, facts) = h.after(
            &hook,
            "web-1",
            &d,
            &r,
            Outcome::RetryAt(Timestamp(0)),
            Timestamp::from_unix_seconds(300 + 3600),
        );
        assert_eq!(o, Outcome::DisableHook);
        assert_eq!(kinds(&facts), [HOOK_FAILING, HOOK_DISABLED]);
        assert!(
            facts[1].message().contains("disable_after"),
            "{}",
            facts[1].message()
        );
        // A 410 disables at once.
        let mut h = Health::default();
        let gone = attempt(410, 10);
        let (_, facts) = h.after(
            &hook,
            "web-1",
            &d,
            &gone,
            Outcome::DisableHook,
            Timestamp::from_unix_seconds(10),
        );
        assert_eq!(kinds(&facts), [HOOK_DISABLED]);
        assert_eq!(facts[0].reason, Some("the receiver answered 410 Gone"));
    }
}
