//! The `cdevents` format: CDEvents 0.5.1 (the CD Foundation's vocabulary), carried as
//! CloudEvents (SPEC §3). A StatusChanged event is a pipeline run's
//! `queued` / `started` / `finished`; a PostDeployment event is `service.deployed` (or
//! `service.rolledback`) when it succeeded. Validated against the spec's published
//! schemas in the tests (`tests/fixtures/cdevents-0.5.1/`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::cloudevents::{self, Attributes};
use super::{DeploymentEvent, Rendered};
use crate::config::HookConfig;
use crate::model::Status;

pub const SPEC_VERSION: &str = "0.5.1";
pub const SERVICE_DEPLOYED: &str = "dev.cdevents.service.deployed.0.3.0";
pub const SERVICE_ROLLEDBACK: &str = "dev.cdevents.service.rolledback.0.3.0";
pub const PIPELINERUN_QUEUED: &str = "dev.cdevents.pipelinerun.queued.0.3.0";
pub const PIPELINERUN_STARTED: &str = "dev.cdevents.pipelinerun.started.0.3.0";
pub const PIPELINERUN_FINISHED: &str = "dev.cdevents.pipelinerun.finished.0.3.0";

/// Which CDEvent an event of a deployment is, if any.
pub fn event_type(
    ev: &DeploymentEvent<'_>,
    hook_wants_status_changed: bool,
) -> Option<&'static str> {
    let t = ev.transition;
    if ev.kind == super::POST_DEPLOYMENT {
        return match t.to {
            Status::Success if t.deployment.rollback => Some(SERVICE_ROLLEDBACK),
            Status::Success => Some(SERVICE_DEPLOYED),
            // A failure is the pipeline run's `finished`, which StatusChanged already
            // sends to a hook that has both.
            _ if hook_wants_status_changed => None,
            _ => Some(PIPELINERUN_FINISHED),
        };
    }
    match t.to {
        Status::Pending => Some(PIPELINERUN_QUEUED),
        Status::Building => Some(PIPELINERUN_STARTED),
        // Deploying without building first: the run starts now; after building it
        // already has.
        Status::Deploying if t.from != Some(Status::Building) => Some(PIPELINERUN_STARTED),
        Status::Deploying => None,
        Status::Success | Status::Failed => Some(PIPELINERUN_FINISHED),
    }
}

/// A purl's version: everything but letters and digits percent-encoded (`.`, `-`, `_`,
/// `~` kept).
const PURL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `pkg:generic/<site>@<commit or deployment id>`.
pub fn artifact_id(site: &str, version: &str) -> String {
    format!(
        "pkg:generic/{}@{}",
        utf8_percent_encode(&site.to_ascii_lowercase(), PURL),
        utf8_percent_encode(version, PURL)
    )
}

/// The CDEvent of a deployment event for `hook`, in a CloudEvent of the hook's mode;
/// `None` when the event has no CDEvent (see `event_type`).
pub fn render(hook: &HookConfig, ev: &DeploymentEvent<'_>, id: &str) -> Option<Rendered> {
    let kind = event_type(ev, hook.wants_event(super::STATUS_CHANGED))?;
    let t = ev.transition;
    let d = &t.deployment;
    let source = cloudevents::source(ev.cx.host_name, Some(ev.cx.site));
    let time = super::transition_time(t).rfc3339();
    let run_id = format!("{}/{}", ev.cx.site, d.serial);
    let run_uri = format!("{source}/deployments/{}", d.serial);
    let (subject_id, content) = match kind {
        SERVICE_DEPLOYED | SERVICE_ROLLEDBACK => (
            ev.cx.site.to_string(),
            json!({
                "environment": { "id": ev.cx.site, "source": source },
                "artifactId": artifact_id(ev.cx.site, &d.id),
            }),
        ),
        PIPELINERUN_FINISHED => {
            let success = t.to == Status::Success;
            let mut c = json!({
                "pipelineName": ev.cx.site,
                "uri": run_uri,
                "outcome": if success { "success" } else { "failure" },
            });
            if !success && !d.status_text.is_empty() {
                c["errors"] = Value::from(d.status_text.clone());
            }
            (run_id, c)
        }
        _ => (
            run_id,
            json!({ "pipelineName": ev.cx.site, "uri": run_uri }),
        ),
    };
    let cdevent = json!({
        "context": {
            "specversion": SPEC_VERSION,
            "id": id,
            "source": source,
            "type": kind,
            "timestamp": time,
        },
        "subject": {
            "id": subject_id,
            "source": source,
            "content": content,
        },
        "customData": serde_json::from_slice::<Value>(ev.kudu_body).unwrap_or(Value::Null),
        "customDataContentType": "application/json",
    });
    let attributes = Attributes {
        id: id.to_string(),
        source,
        kind: kind.to_string(),
        subject: Some(subject_id),
        time,
    };
    let body = serde_json::to_vec(&cdevent).unwrap_or_default();
    Some(cloudevents::envelope(
        hook.cloudevents_mode,
        &attributes,
        &body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_ids_are_package_urls() {
        assert_eq!(artifact_id("Shop", "2f45d28"), "pkg:generic/shop@2f45d28");
        assert_eq!(artifact_id("shop", "v1/2 b"), "pkg:generic/shop@v1%2F2%20b");
    }
}
