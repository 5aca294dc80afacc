//! Events: turns the transitions `infer` found into events, and renders one body per
//! hook that wants each (`plan`), for `store` to commit with the transitions. A hook's
//! `format` picks its renderer (`render`): `kudu.rs` (Kudu's PostDeployment object, the
//! default), `cloudevents.rs`, `cdevents.rs`, `slack.rs`, `template.rs`, `github.rs`.
//! Each delivery's id is chosen here, so a format can carry it (CloudEvents' `id`).

pub mod cdevents;
pub mod chains;
pub mod cloudevents;
pub mod dora;
pub mod github;
pub mod kudu;
pub mod ops;
pub mod otlp;
pub mod relayed;
pub mod slack;
pub mod template;

use crate::config::{Format, HookConfig};
use crate::infer::model::Transition;
use crate::model::{Status, Timestamp};
use crate::store::chains::NewChainRun;
use crate::store::{NewDelivery, NewEvent, new_delivery_id};

pub use kudu::{
    Context, KuduPayload, NO_COMMITS, NO_HISTORY, POST_DEPLOYMENT, STATUS_CHANGED, events_of,
};

/// A delivery's body and the headers its format adds (a content type, `ce-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Rendered {
    /// A body with no headers of its own (JSON, the default content type).
    pub fn plain(body: Vec<u8>) -> Rendered {
        Rendered {
            body,
            headers: Vec::new(),
        }
    }

    pub(crate) fn into_delivery(self, id: String, hook: &str) -> NewDelivery {
        NewDelivery {
            id,
            hook: hook.to_string(),
            body: self.body,
            headers: self.headers,
        }
    }
}

/// One event of one transition, as every renderer sees it.
#[derive(Clone, Copy, Debug)]
pub struct DeploymentEvent<'a> {
    pub transition: &'a Transition,
    /// `PostDeployment` or `StatusChanged`.
    pub kind: &'a str,
    pub cx: Context<'a>,
    pub payload: &'a KuduPayload,
    /// `payload` serialised: the event's own record, and the kudu format's body.
    pub kudu_body: &'a [u8],
}

/// When the transition happened: the deployment's end for a terminal status, its start
/// for building, when it was received for pending, else when it last changed.
pub fn transition_time(t: &Transition) -> Timestamp {
    let d = &t.deployment;
    match t.to {
        Status::Pending => d.received,
        Status::Building => d.started.unwrap_or(d.last_change),
        Status::Deploying => d.last_change,
        Status::Success | Status::Failed => d.ended.unwrap_or(d.last_change),
    }
}

/// The events (with one delivery per matching hook) that `transitions` make.
pub fn plan(transitions: &[Transition], hooks: &[HookConfig], cx: Context<'_>) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for t in transitions {
        for kind in kudu::events_of(t) {
            let p = kudu::kudu(t, kind, cx);
            let body = kudu::body(&p);
            let ev = DeploymentEvent {
                transition: t,
                kind,
                cx,
                payload: &p,
                kudu_body: &body,
            };
            let mut deliveries: Vec<NewDelivery> = hooks
                .iter()
                // A chained hook is called only by its chain.
                .filter(|h| h.chain.is_none())
                .filter(|h| h.wants_event(kind) && h.wants_site(cx.site) && h.wants_status(t.to))
                .filter(|h| h.wants_host(cx.host_name))
                .filter_map(|h| {
                    let id = new_delivery_id();
                    render(h, &ev, &id).map(|r| {
                        addressed(h, r, cx.host_name, Some(cx.site), kind)
                            .into_delivery(id, &h.name)
                    })
                })
                .collect();
            let chains = if kind == POST_DEPLOYMENT {
                start_chains(cx, t.to, &body, &mut deliveries)
            } else {
                Vec::new()
            };
            events.push(NewEvent {
                kind: kind.to_string(),
                site: Some(cx.site.to_string()),
                status: Some(t.to),
                deployment_serial: Some(t.deployment.serial),
                payload: body,
                chains,
                deliveries,
            });
        }
    }
    events
}

/// The header that names a NATS hook's subject for this event (`X-Deployhook-Subject`,
/// also a header of the published message); other hooks' deliveries are unchanged.
pub(crate) fn addressed(
    hook: &HookConfig,
    mut r: Rendered,
    host: &str,
    site: Option<&str>,
    event: &str,
) -> Rendered {
    if let Some(n) = &hook.nats {
        r.headers
            .push((SUBJECT_HEADER.to_string(), n.subject_for(host, site, event)));
    }
    r
}

/// The header of a NATS delivery that holds its subject.
pub const SUBJECT_HEADER: &str = "X-Deployhook-Subject";

/// The runs of the chains a deployment's end starts: each one's first step is a
/// delivery of the kudu object with `callback_url` (added to `deliveries`).
pub(crate) fn start_chains(
    cx: Context<'_>,
    status: Status,
    body: &[u8],
    deliveries: &mut Vec<NewDelivery>,
) -> Vec<NewChainRun> {
    let Some(base) = cx.callback_base else {
        return Vec::new();
    };
    cx.chains
        .iter()
        .filter(|c| c.wants(cx.site, status))
        .filter_map(|c| {
            let first = c.hooks.first()?;
            let token = match chains::new_token() {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(chain = %c.name, error = %e, "cannot make a callback token: this chain run is not started");
                    return None;
                }
            };
            let id = new_delivery_id();
            let step = chains::step_body(body, base, &token, &c.name, 0, c.hooks.len());
            deliveries.push(Rendered::plain(step).into_delivery(id.clone(), first));
            Some(NewChainRun {
                id: format!("run_{}", &new_delivery_id()[4..]),
                chain: c.name.clone(),
                hooks: c.hooks.clone(),
                payload: body.to_vec(),
                timeout: c.callback_timeout,
                delivery_id: id,
                token,
            })
        })
        .collect()
}

/// The body of one delivery of a deployment event for `hook`, in its format; `None`
/// when the format has nothing to say about this event (CDEvents has no event for
/// `deploying` after `building`).
pub fn render(hook: &HookConfig, ev: &DeploymentEvent<'_>, id: &str) -> Option<Rendered> {
    match hook.format {
        Format::Kudu => Some(Rendered::plain(ev.kudu_body.to_vec())),
        Format::CloudEvents => Some(cloudevents::deployment(hook.cloudevents_mode, ev, id)),
        Format::CdEvents => cdevents::render(hook, ev, id),
        Format::Slack => Some(Rendered::plain(slack::body(ev))),
        Format::Template => Some(template::render(hook, ev)),
        Format::GithubDeployments => github::render(hook, ev),
        Format::Devlake => dora::devlake(hook, ev),
        Format::DatadogDora => dora::datadog(hook, ev),
        Format::Otlp => otlp::render(hook, ev),
    }
}

/// A published event (`POST /api/hooks/publish/{eventType}`): `body` goes to every
/// hook of that event type (compared case-insensitively) as given — in a CloudEvent
/// (`dev.deployhook.<eventType>`) for `cloudevents` and `cdevents` hooks.
pub fn plan_published(kind: &str, body: &[u8], hooks: &[HookConfig], host_name: &str) -> NewEvent {
    let now = Timestamp::now();
    NewEvent {
        kind: kind.to_string(),
        site: None,
        status: None,
        deployment_serial: None,
        payload: body.to_vec(),
        chains: Vec::new(),
        deliveries: hooks
            .iter()
            // GitHub's Deployments API takes deployments, not documents.
            .filter(|h| h.wants_event(kind) && h.takes_documents() && h.chain.is_none())
            .map(|h| {
                let id = new_delivery_id();
                let r = other(h, kind, body, host_name, &id, now);
                addressed(h, r, host_name, None, kind).into_delivery(id, &h.name)
            })
            .collect(),
    }
}

/// An event that is not a deployment's (published, `ping`) for `hook`.
pub(crate) fn other(
    hook: &HookConfig,
    kind: &str,
    body: &[u8],
    host_name: &str,
    id: &str,
    now: Timestamp,
) -> Rendered {
    match hook.format {
        Format::CloudEvents | Format::CdEvents => {
            let attributes = cloudevents::Attributes {
                id: id.to_string(),
                source: cloudevents::source(host_name, None),
                kind: format!("dev.deployhook.{kind}"),
                subject: None,
                time: now.rfc3339(),
            };
            cloudevents::envelope(hook.cloudevents_mode, &attributes, body)
        }
        Format::Kudu
        | Format::Slack
        | Format::Template
        | Format::GithubDeployments
        | Format::Devlake
        | Format::DatadogDora
        | Format::Otlp => Rendered::plain(body.to_vec()),
    }
}

/// A `ping` event's delivery to `hook` (`hooks test`, `POST /api/hooks/{id}/ping`): a
/// small JSON object, in a body the hook's receiver accepts (a Slack text, a
/// CloudEvent; a `github-deployments` sink reads the repository instead).
pub fn ping(hook: &HookConfig, host_name: &str, now: Timestamp) -> NewDelivery {
    let id = new_delivery_id();
    let rendered = match hook.format {
        Format::Slack => Rendered::plain(slack::ping(&hook.name, host_name)),
        _ => {
            let body = serde_json::to_vec(&serde_json::json!({
                "event": "ping",
                "hook": hook.name,
                "hostName": host_name,
                "time": now.rfc3339(),
            }))
            .unwrap_or_default();
            other(hook, "ping", &body, host_name, &id, now)
        }
    };
    let rendered = addressed(hook, rendered, host_name, None, "ping");
    rendered.into_delivery(id, &hook.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HookConfig;
    use crate::infer::model::Deployment;
    use crate::model::Status;
    use crate::model::Timestamp;
    use std::time::Duration;

    fn hook(
        name: &str,
        events: &[&str],
        sites: Option<&[&str]>,
        statuses: Option<&[Status]>,
    ) -> HookConfig {
        HookConfig {
            events: events.iter().map(|e| e.to_string()).collect(),
            sites: sites.map(|s| s.iter().map(|x| x.to_string()).collect()),
            statuses: statuses.map(|s| s.to_vec()),
            timeout: Duration::from_secs(1),
            retry: vec![],
            ..HookConfig::new(
                name,
                url::Url::parse("http://127.0.0.1:1/").unwrap_or_else(|e| panic!("{e}")),
            )
        }
    }

    fn transition(to: Status) -> Transition {
        Transition {
            deployment: Deployment {
                serial: 1,
                key: "1".into(),
                release: Some("1".into()),
                id: "abc".into(),
                status: to,
                announced: true,
                status_text: String::new(),
                commit: None,
                deployer: None,
                branch: None,
                received: Timestamp(0),
                started: None,
                ended: None,
                previous_id: None,
                rollback: false,
                last_change: Timestamp(0),
                fingerprint: String::new(),
                lock_seen: false,
                progress: String::new(),
                done_at: None,
                switched_away: None,
                id_known: true,
                hold_until: None,
                pending_seen: false,
            },
            from: None,
            to,
            sequence: 1,
            last_success_end: None,
        }
    }

    fn routed(events: &[NewEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .flat_map(|e| {
                e.deliveries
                    .iter()
                    .map(move |d| (e.kind.clone(), d.hook.clone()))
            })
            .collect()
    }

    #[test]
    fn plan_routes_by_event_site_and_status() {
        let hooks = [
            hook("post", &["PostDeployment"], None, None),
            hook("changes", &["statuschanged"], None, None),
            hook(
                "failures",
                &["PostDeployment", "StatusChanged"],
                None,
                Some(&[Status::Failed]),
            ),
            hook("other-site", &["PostDeployment"], Some(&["blog"]), None),
        ];
        let cx = Context {
            site: "shop",
            host_name: "h",
            layout: "releases",
            commits: &kudu::NO_COMMITS,
            chains: &[],
            callback_base: None,
            repository_url: None,
            history: &NO_HISTORY,
        };
        let building = plan(&[transition(Status::Building)], &hooks, cx);
        assert_eq!(
            routed(&building),
            [("StatusChanged".into(), "changes".into())]
        );
        let failed = plan(&[transition(Status::Failed)], &hooks, cx);
        assert_eq!(
            routed(&failed),
            [
                ("StatusChanged".to_string(), "changes".to_string()),
                ("StatusChanged".into(), "failures".into()),
                ("PostDeployment".into(), "post".into()),
                ("PostDeployment".into(), "failures".into()),
            ]
        );
        // Events are recorded even when no hook wants them.
        assert_eq!(building.len(), 1);
        assert!(
            plan(&[transition(Status::Success)], &hooks[3..], cx)
                .iter()
                .all(|e| e.deliveries.is_empty())
        );
    }

    #[test]
    fn dora_tools_get_finished_deployments_of_commits_only() {
        let mut devlake = hook("devlake", &["PostDeployment"], None, None);
        devlake.format = Format::Devlake;
        devlake.environment = Some("PRODUCTION".into());
        let mut datadog = hook("datadog", &["PostDeployment"], None, None);
        datadog.format = Format::DatadogDora;
        let cx = Context {
            site: "shop",
            host_name: "h",
            layout: "releases",
            commits: &kudu::NO_COMMITS,
            chains: &[],
            callback_base: None,
            repository_url: Some("https://example.com/shop"),
            history: &NO_HISTORY,
        };
        let hooks = [devlake, datadog];
        let mut failed = transition(Status::Failed);
        failed.deployment.id = "a".repeat(40);
        let events = plan(&[failed], &hooks, cx);
        let post: Vec<_> = events
            .iter()
            .filter(|e| e.kind == POST_DEPLOYMENT)
            .collect();
        // DevLake hears of the failure; Datadog counts deployments, not failures.
        assert_eq!(post[0].deliveries.len(), 1);
        let body: serde_json::Value =
            serde_json::from_slice(&post[0].deliveries[0].body).unwrap_or_default();
        assert_eq!(body["result"], "FAILURE");
        assert_eq!(
            body["deploymentCommits"][0]["repoUrl"],
            "https://example.com/shop"
        );
        // Not a commit (a release name): DevLake cannot take it; no status change either.
        let events = plan(&[transition(Status::Success)], &hooks, cx);
        let bodies: Vec<&str> = events
            .iter()
            .flat_map(|e| e.deliveries.iter().map(|d| d.hook.as_str()))
            .collect();
        assert_eq!(bodies, ["datadog"]);
    }
}
