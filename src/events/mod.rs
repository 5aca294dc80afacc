//! Events: turns the transitions `infer` found into events, and renders one body per
//! hook that wants each (`plan`), for `store` to commit with the transitions. A hook's
//! `format` picks its renderer (`kudu.rs`: Kudu's PostDeployment object, the default);
//! the formats issue adds more renderers here, beside it.

pub mod kudu;

use crate::config::{Format, HookConfig};
use crate::infer::model::Transition;
use crate::store::{NewDelivery, NewEvent};

pub use kudu::{Context, POST_DEPLOYMENT, STATUS_CHANGED, events_of};

/// The events (with one delivery per matching hook) that `transitions` make.
pub fn plan(
    transitions: &[Transition],
    hooks: &[HookConfig],
    cx: kudu::Context<'_>,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for t in transitions {
        for kind in kudu::events_of(t) {
            let p = kudu::kudu(t, kind, cx);
            let body = kudu::body(&p);
            let deliveries = hooks
                .iter()
                .filter(|h| h.wants_event(kind) && h.wants_site(cx.site) && h.wants_status(t.to))
                .map(|h| NewDelivery {
                    hook: h.name.clone(),
                    body: render(h, &body),
                })
                .collect();
            events.push(NewEvent {
                kind: kind.to_string(),
                site: Some(cx.site.to_string()),
                status: Some(t.to),
                deployment_serial: Some(t.deployment.serial),
                payload: body,
                deliveries,
            });
        }
    }
    events
}

/// The body of one delivery for `hook`, in its format. `kudu_body` is the kudu object
/// already serialised (the event's own payload), shared by every kudu hook.
/// A published event (`POST /api/hooks/publish/{eventType}`): `body` goes to every
/// hook of that event type (compared case-insensitively), in its format.
pub fn plan_published(kind: &str, body: &[u8], hooks: &[HookConfig]) -> NewEvent {
    NewEvent {
        kind: kind.to_string(),
        site: None,
        status: None,
        deployment_serial: None,
        payload: body.to_vec(),
        deliveries: hooks
            .iter()
            .filter(|h| h.wants_event(kind))
            .map(|h| NewDelivery {
                hook: h.name.clone(),
                body: render(h, body),
            })
            .collect(),
    }
}

/// A `ping` event for one hook (`hooks test`, `POST /api/hooks/{id}/ping`).
pub fn ping_body(hook: &str, host_name: &str, now: crate::model::Timestamp) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": "ping",
        "hook": hook,
        "hostName": host_name,
        "time": now.rfc3339(),
    }))
    .unwrap_or_default()
}

fn render(hook: &HookConfig, kudu_body: &[u8]) -> Vec<u8> {
    match hook.format {
        Format::Kudu => kudu_body.to_vec(),
    }
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
}
