//! Operational events: what happens to the hooks themselves — `HookFailing` (N failed
//! attempts in a row, once per run of failures), `HookRecovered` (the 2xx that ends such a
//! run), `HookDisabled` (a 410, or failing for `disable_after`), `DeliveryDead` (a
//! delivery whose retries are used up). The hook worker that sees one plans it here, for
//! every *other* hook that wants it, and commits it with the attempt (one transaction).

use serde_json::json;

use super::{Rendered, addressed, other, slack};
use crate::config::{Format, HookConfig};
use crate::model::Timestamp;
use crate::store::{NewEvent, new_delivery_id};

pub const HOOK_FAILING: &str = "HookFailing";
pub const HOOK_RECOVERED: &str = "HookRecovered";
pub const HOOK_DISABLED: &str = "HookDisabled";
pub const DELIVERY_DEAD: &str = "DeliveryDead";

/// Whether `event` is an operational one (its deliveries dying raise no `DeliveryDead`:
/// two failing hooks would otherwise tell each other forever).
pub fn is_operational(event: &str) -> bool {
    [HOOK_FAILING, HOOK_RECOVERED, HOOK_DISABLED, DELIVERY_DEAD]
        .iter()
        .any(|e| e.eq_ignore_ascii_case(event))
}

/// What happened to a hook, as its worker saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookFact<'a> {
    /// One of the four event names.
    pub kind: &'static str,
    /// The hook it is about.
    pub hook: &'a str,
    pub host_name: &'a str,
    pub failures_in_a_row: u32,
    /// The last attempt's HTTP status, or why it got none.
    pub last_status: Option<u16>,
    pub last_error: Option<&'a str>,
    /// The delivery that died, or whose attempt made the event.
    pub delivery_id: &'a str,
    pub delivery_event: &'a str,
    /// Why the hook was disabled (`HookDisabled`).
    pub reason: Option<&'a str>,
    pub time: Timestamp,
}

impl HookFact<'_> {
    /// The event in words, for people (Slack's text, a template's `message`).
    pub fn message(&self) -> String {
        let last = match (self.last_status, self.last_error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => crate::model::cap_text(e, 200),
            (None, None) => "no answer".to_string(),
        };
        let hook = &self.hook;
        let host = &self.host_name;
        match self.kind {
            HOOK_FAILING => format!(
                "hook {hook} on {host} is failing: {} in a row (last: {last})",
                crate::model::count_of(
                    self.failures_in_a_row as usize,
                    "attempt failed",
                    "attempts failed"
                )
            ),
            HOOK_RECOVERED => format!(
                "hook {hook} on {host} has recovered after {}",
                crate::model::count_of(
                    self.failures_in_a_row as usize,
                    "failed attempt",
                    "failed attempts"
                )
            ),
            HOOK_DISABLED => format!(
                "hook {hook} on {host} is disabled: {} (deployhook hooks enable {hook} starts it again)",
                self.reason.unwrap_or("it kept failing")
            ),
            _ => format!(
                "a {} delivery of hook {hook} on {host} is dead: its retries are used up (last: {last}); deployhook deliveries redeliver {} sends it again",
                self.delivery_event, self.delivery_id
            ),
        }
    }

    /// The event's JSON object (the body of a `kudu` hook, a template's `payload`).
    pub fn object(&self) -> serde_json::Value {
        json!({
            "event": self.kind,
            "hookName": self.hook,
            "hostName": self.host_name,
            "time": self.time.rfc3339(),
            "message": self.message(),
            "failuresInARow": self.failures_in_a_row,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "deliveryId": self.delivery_id,
            "deliveryEvent": self.delivery_event,
            "reason": self.reason,
        })
    }
}

/// The event `fact` makes, with one delivery per hook that wants it — never to the hook
/// it is about, nor to a chain's step or a GitHub Deployments sink (which take
/// deployments only).
pub fn plan(fact: &HookFact<'_>, hooks: &[HookConfig]) -> NewEvent {
    let object = fact.object();
    let body = serde_json::to_vec(&object).unwrap_or_default();
    let deliveries = hooks
        .iter()
        .filter(|h| h.name != fact.hook && h.chain.is_none())
        .filter(|h| h.wants_event(fact.kind) && h.takes_documents())
        .map(|h| {
            let id = new_delivery_id();
            let r = match h.format {
                Format::Slack => Rendered::plain(slack::text(&fact.message())),
                Format::Template => super::template::render_object(h, &body, ""),
                _ => other(h, fact.kind, &body, fact.host_name, &id, fact.time),
            };
            addressed(h, r, fact.host_name, None, fact.kind).into_delivery(id, &h.name)
        })
        .collect();
    NewEvent {
        kind: fact.kind.to_string(),
        site: None,
        status: None,
        deployment_serial: None,
        payload: body,
        chains: Vec::new(),
        deliveries,
    }
}
