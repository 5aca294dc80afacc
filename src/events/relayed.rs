//! Relayed events (relay mode, issue 13): a message a `[[source]]` consumed from a
//! fleet's stream — an edge's kudu object, bare or as a structured CloudEvent's `data` —
//! becomes an event of this deployhook with one delivery per hook that wants it (by
//! event, `siteName`, `hostName` and `status`). A full kudu object is turned back into the
//! `Transition` it was made from (its deployment keyed by the edge's `receivedTime`), so
//! every format renders it as on the edge and a deployment's end starts the relay's
//! chains; anything less (a custom event, a partial object) is sent as a published event
//! is (`events::other`: as is, or in a `dev.deployhook.<event>` CloudEvent), and to no
//! `github-deployments` hook.

use serde_json::{Map, Value};

use std::collections::BTreeMap;

use super::{Context, DeploymentEvent, addressed};
use crate::config::Format;
use crate::infer::model::{Deployment, Transition};
use crate::model::{CommitInfo, CommitRange, CommitSummary, Status, Timestamp};
use crate::running::HookView;
use crate::store::{NewDelivery, NewEvent, new_delivery_id};

/// What an edge's message says, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Relayed {
    pub kind: String,
    pub object: Map<String, Value>,
}

/// Caps what an edge sends as an edge caps what it reads: `message` and `statusText` at
/// 64 KiB, every other text at 1 KiB, `commits` at 20 entries of capped fields; other
/// values (numbers, booleans) are kept, nested objects other than `commits` dropped.
fn cap_object(object: &mut Map<String, Value>) {
    use crate::model::{cap_text, caps};
    let cap_value = |key: &str, v: &mut Value| match v {
        Value::String(s) => {
            let max = if matches!(key, "message" | "statusText") {
                caps::MESSAGE
            } else {
                caps::SHORT
            };
            if s.len() > max {
                *s = cap_text(s, max);
            }
        }
        Value::Array(_) | Value::Object(_) => *v = Value::Null,
        _ => {}
    };
    for (key, v) in object.iter_mut() {
        if key == "commits"
            && let Value::Array(list) = v
        {
            list.truncate(20);
            for c in list.iter_mut() {
                match c {
                    Value::Object(o) => {
                        for (k, f) in o.iter_mut() {
                            cap_value(k, f);
                        }
                    }
                    other => *other = Value::Null,
                }
            }
            continue;
        }
        if key == "truncated" {
            continue;
        }
        cap_value(key, v);
    }
}

impl Relayed {
    /// Parses a message: `kind` from its `X-Deployhook-Event` header, else the object's
    /// `event`. An error says why it is no deployhook event.
    pub fn parse(kind: Option<&str>, body: &[u8]) -> Result<Relayed, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let v = match v {
            Value::Object(o) if o.contains_key("specversion") => {
                o.get("data").cloned().unwrap_or(Value::Null)
            }
            other => other,
        };
        let Value::Object(mut object) = v else {
            return Err("the body is not a JSON object (a kudu object)".into());
        };
        cap_object(&mut object);
        let kind = kind
            .map(str::to_string)
            .or_else(|| {
                object
                    .get("event")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .filter(|k| !k.is_empty() && k.len() <= 100)
            .ok_or("no event type (X-Deployhook-Event or the object's event)")?;
        Ok(Relayed { kind, object })
    }

    /// Whether the edge this message names (`hostName`) is the one that published it:
    /// the `host_token`th token of `subject` (1-based; 0 checks nothing).
    pub fn published_by(&self, subject: &str, host_token: usize) -> Result<(), String> {
        if host_token == 0 {
            return Ok(());
        }
        let from = subject.split('.').nth(host_token - 1).unwrap_or("");
        let says = crate::config::nats::token(self.host());
        if from == says {
            Ok(())
        } else {
            Err(format!(
                "hostName {:?} is not the edge that published it ({from:?}, subject token {host_token})",
                crate::model::cap_text(self.host(), 100)
            ))
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.object.get(key).and_then(Value::as_str)
    }

    pub fn host(&self) -> &str {
        self.text("hostName").unwrap_or("")
    }

    pub fn site(&self) -> &str {
        self.text("siteName").unwrap_or("")
    }

    pub fn status(&self) -> Option<Status> {
        self.text("status").and_then(Status::parse)
    }

    /// The deployment an edge's deployment event describes, for the relay's
    /// `/api/deployments` (its site is `<hostName>/<siteName>`, its key the edge's
    /// `receivedTime`); `None` for other events.
    pub fn deployment(&self) -> Option<Deployment> {
        if !matches!(
            self.kind.as_str(),
            super::POST_DEPLOYMENT | super::STATUS_CHANGED
        ) {
            return None;
        }
        let id = self.text("id").filter(|i| !i.is_empty())?.to_string();
        let received_text = self.text("receivedTime")?;
        let time = |k: &str| self.text(k).and_then(Timestamp::parse_rfc3339);
        let received = Timestamp::parse_rfc3339(received_text)?;
        let author = self.text("author");
        Some(Deployment {
            serial: 0,
            key: received_text.to_string(),
            release: self.text("release").map(str::to_string),
            id,
            status: self.status()?,
            announced: true,
            status_text: self.text("statusText").unwrap_or("").to_string(),
            commit: author.map(|a| CommitInfo {
                author: a.to_string(),
                email: self.text("authorEmail").unwrap_or("").to_string(),
                message: self.text("message").unwrap_or("").to_string(),
                time: received,
            }),
            deployer: self.text("deployer").map(str::to_string),
            branch: self.text("branch").map(str::to_string),
            received,
            started: time("startTime"),
            ended: time("endTime"),
            previous_id: self.text("previousId").map(str::to_string),
            rollback: self
                .object
                .get("rollback")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            last_change: time("endTime").unwrap_or(received),
            fingerprint: String::new(),
            lock_seen: false,
            progress: self.text("progress").unwrap_or("").to_string(),
            done_at: None,
            switched_away: None,
            id_known: true,
            hold_until: None,
            pending_seen: false,
        })
    }

    /// The transition an edge's deployment event was made from: its deployment keyed and
    /// numbered by the edge's `receivedTime` (the same for all of that deployment's
    /// events), `from` its `previousStatus`.
    fn transition(&self) -> Option<Transition> {
        let mut deployment = self.deployment()?;
        deployment.serial = u64::try_from(deployment.received.0).unwrap_or(0);
        Some(Transition {
            to: self.status()?,
            from: self.text("previousStatus").and_then(Status::parse),
            sequence: self
                .object
                .get("sequence")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            last_success_end: self
                .text("lastSuccessEndTime")
                .and_then(Timestamp::parse_rfc3339),
            deployment,
        })
    }

    /// The edge's `commits`, if it sent them.
    fn commits(&self) -> Option<CommitRange> {
        let commits: Vec<CommitSummary> =
            serde_json::from_value(self.object.get("commits")?.clone()).ok()?;
        Some(CommitRange {
            commits,
            truncated: self
                .object
                .get("commitsTruncated")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            shipped: Vec::new(),
        })
    }

    /// The event and its deliveries for the hooks of `view` (and the chain runs a
    /// deployment's end starts).
    pub fn plan(&self, view: &HookView, relay_host: &str) -> NewEvent {
        let body = serde_json::to_vec(&self.object).unwrap_or_default();
        let transition = self.transition();
        let mut commits = BTreeMap::new();
        if let (Some(t), Some(c)) = (&transition, self.commits()) {
            commits.insert(t.deployment.serial, c);
        }
        let cx = Context {
            site: self.site(),
            host_name: self.host(),
            layout: self.text("layout").unwrap_or("relayed"),
            commits: &commits,
            chains: &view.chains,
            callback_base: view.callback_base.as_deref(),
            // An edge's repository and earlier transitions are not known here.
            repository_url: None,
            history: &super::NO_HISTORY,
        };
        let payload = transition
            .as_ref()
            .map(|t| super::kudu::kudu(t, &self.kind, cx));
        let mut deliveries: Vec<NewDelivery> = view
            .hooks
            .iter()
            .filter(|h| h.chain.is_none())
            .filter(|h| {
                h.wants_event(&self.kind) && h.wants_site(self.site()) && h.wants_host(self.host())
            })
            .filter(|h| self.status().is_none_or(|s| h.wants_status(s)))
            .filter_map(|h| {
                let id = new_delivery_id();
                let r = match (&transition, &payload) {
                    (Some(t), Some(p)) => {
                        let ev = DeploymentEvent {
                            transition: t,
                            kind: &self.kind,
                            cx,
                            payload: p,
                            kudu_body: &body,
                        };
                        super::render(h, &ev, &id)?
                    }
                    // No full deployment event: as a published event is sent.
                    _ if h.format == Format::GithubDeployments => return None,
                    _ => {
                        let host = if self.host().is_empty() {
                            relay_host
                        } else {
                            self.host()
                        };
                        super::other(h, &self.kind, &body, host, &id, Timestamp::now())
                    }
                };
                let r = addressed(h, r, self.host(), Some(self.site()), &self.kind);
                Some(r.into_delivery(id, &h.name))
            })
            .collect();
        let chains = match &transition {
            Some(t) if self.kind == super::POST_DEPLOYMENT => {
                super::start_chains(cx, t.to, &body, &mut deliveries)
            }
            _ => Vec::new(),
        };
        NewEvent {
            kind: self.kind.clone(),
            site: Some(format!("{}/{}", self.host(), self.site())),
            status: self.status(),
            deployment_serial: None,
            payload: body,
            deliveries,
            chains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kudu_object_bare_or_in_a_cloudevent_is_an_event() {
        let bare = br#"{"id":"abc","status":"success","siteName":"shop","hostName":"edge-1","event":"PostDeployment"}"#;
        let r = Relayed::parse(Some("PostDeployment"), bare).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.host(), r.site(), r.status()),
            ("edge-1", "shop", Some(Status::Success))
        );
        let ce = br#"{"specversion":"1.0","id":"x","type":"t","source":"s","data":{"siteName":"shop","event":"StatusChanged"}}"#;
        assert_eq!(
            Relayed::parse(None, ce).map(|r| r.kind).ok().as_deref(),
            Some("StatusChanged")
        );
        assert!(Relayed::parse(None, b"[1,2]").is_err());
        assert!(Relayed::parse(None, b"{}").is_err(), "no event type");
        assert!(Relayed::parse(None, b"\xff").is_err());
    }
}
