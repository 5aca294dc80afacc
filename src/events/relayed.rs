//! Relayed events (relay mode, issue 13): a message a `[[source]]` consumed from a
//! fleet's stream — an edge's kudu object, bare or as a structured CloudEvent's `data` —
//! becomes an event of this deployhook with one delivery per hook that wants it (by
//! event, `siteName`, `hostName` and `status`). The kudu object is all there is (no
//! `Transition`): `kudu` and `template` hooks get what they would get on the edge,
//! `cloudevents`/`cdevents` hooks a `dev.deployhook.deployment.<status>` CloudEvent, `slack`
//! hooks a short message; `github-deployments` hooks and chains are not fed by relayed
//! events.

use serde_json::{Map, Value, json};

use super::{Rendered, addressed, cloudevents, template};
use crate::config::{Format, HookConfig};
use crate::infer::model::Deployment;
use crate::model::{CommitInfo, Status, Timestamp};
use crate::store::{NewEvent, new_delivery_id};

/// What an edge's message says, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Relayed {
    pub kind: String,
    pub object: Map<String, Value>,
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
        let Value::Object(object) = v else {
            return Err("the body is not a JSON object (a kudu object)".into());
        };
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
        })
    }

    /// The event and its deliveries for `hooks`.
    pub fn plan(&self, hooks: &[HookConfig], relay_host: &str) -> NewEvent {
        let body = serde_json::to_vec(&self.object).unwrap_or_default();
        let deliveries = hooks
            .iter()
            .filter(|h| h.chain.is_none() && h.format != Format::GithubDeployments)
            .filter(|h| {
                h.wants_event(&self.kind) && h.wants_site(self.site()) && h.wants_host(self.host())
            })
            .filter(|h| self.status().is_none_or(|s| h.wants_status(s)))
            .map(|h| {
                let id = new_delivery_id();
                let r = self.render(h, &body, &id, relay_host);
                addressed(h, r, self.host(), Some(self.site()), &self.kind)
                    .into_delivery(id, &h.name)
            })
            .collect();
        NewEvent {
            kind: self.kind.clone(),
            site: Some(format!("{}/{}", self.host(), self.site())),
            status: self.status(),
            deployment_serial: None,
            payload: body,
            deliveries,
            chains: Vec::new(),
        }
    }

    fn render(&self, hook: &HookConfig, body: &[u8], id: &str, relay_host: &str) -> Rendered {
        match hook.format {
            Format::Kudu | Format::GithubDeployments => Rendered::plain(body.to_vec()),
            Format::Template => template::render_object(hook, body, self.site()),
            Format::CloudEvents | Format::CdEvents => {
                let host = if self.host().is_empty() {
                    relay_host
                } else {
                    self.host()
                };
                let kind = match self.status() {
                    Some(s) => format!("dev.deployhook.deployment.{}", s.as_str()),
                    None => format!("dev.deployhook.{}", self.kind),
                };
                let time = self
                    .text("endTime")
                    .or(self.text("receivedTime"))
                    .map_or_else(|| Timestamp::now().rfc3339(), str::to_string);
                let attributes = cloudevents::Attributes {
                    id: id.to_string(),
                    source: cloudevents::source(host, Some(self.site())),
                    kind,
                    subject: self.text("id").map(str::to_string),
                    time,
                };
                cloudevents::envelope(hook.cloudevents_mode, &attributes, body)
            }
            Format::Slack => Rendered::plain(self.slack()),
        }
    }

    fn slack(&self) -> Vec<u8> {
        let status = self.status();
        let emoji = status.map_or(":information_source:", super::slack::emoji);
        let short: String = self.text("id").unwrap_or("").chars().take(12).collect();
        let line = |v: Option<&str>| super::slack::escape(v.unwrap_or("-"), 200);
        let text = format!(
            "{emoji} {}: deployment {} on {} — `{}` {} ({})",
            line(Some(self.site())),
            status.map_or("?", |s| s.as_str()),
            line(Some(self.host())),
            super::slack::escape(&short, 12),
            line(self.text("message").and_then(|m| m.lines().next())),
            line(self.text("author")),
        );
        serde_json::to_vec(&json!({ "text": text })).unwrap_or_default()
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
