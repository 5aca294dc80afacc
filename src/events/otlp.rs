//! The `otlp` format (`[otlp]`): a finished deployment as one OpenTelemetry span,
//! OTLP/HTTP protobuf (`ExportTraceServiceRequest`, from `opentelemetry-proto`'s types).
//! `cicd.pipeline.run.server` per OTel's CI/CD conventions: from the deployment's first
//! transition to its end, with `cicd.pipeline.*`, `vcs.*`, `deployment.environment.name`
//! and `error.type` on failure; each transition a span event; resource `service.name =
//! deployhook`, `host.name`. Its ids come from the deployment, so a rendering again says
//! the same span.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use sha2::{Digest, Sha256};

use super::dora::deployment_key;
use super::{DeploymentEvent, POST_DEPLOYMENT, Rendered, transition_time};
use crate::config::HookConfig;
use crate::model::{Status as DeployStatus, Timestamp, is_full_sha};

/// The content type of an OTLP/HTTP protobuf request.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn nanos(t: Timestamp) -> u64 {
    u64::try_from(t.0).unwrap_or(0).saturating_mul(1000)
}

/// The first `n` bytes of SHA-256 over `what` and the deployment's key.
fn id_of(what: &str, key: &str, n: usize) -> Vec<u8> {
    let digest = Sha256::digest(format!("{what}\n{key}").as_bytes());
    digest[..n].to_vec()
}

/// The span of a finished deployment; `None` for any other event.
pub fn render(hook: &HookConfig, ev: &DeploymentEvent<'_>) -> Option<Rendered> {
    let t = ev.transition;
    let d = &t.deployment;
    if ev.kind != POST_DEPLOYMENT {
        return None;
    }
    let key = deployment_key(ev.cx.host_name, ev.cx.site, d.serial);
    // Every transition, the one that ended it last.
    let mut transitions: Vec<(Timestamp, DeployStatus)> =
        ev.cx.history.get(&d.serial).cloned().unwrap_or_default();
    transitions.push((transition_time(t), t.to));
    let start = transitions
        .iter()
        .map(|(at, _)| *at)
        .chain([d.received])
        .min()
        .unwrap_or(d.received);
    let end = d.ended.unwrap_or(d.last_change).max(start);
    let ok = t.to == DeployStatus::Success;
    let mut attributes = vec![
        text("cicd.pipeline.name", ev.cx.site),
        text("cicd.pipeline.run.id", key.clone()),
        text(
            "cicd.pipeline.result",
            if ok { "success" } else { "failure" },
        ),
        text(
            "deployment.environment.name",
            hook.environment.as_deref().unwrap_or("production"),
        ),
        text("deployhook.deployment.id", d.id.clone()),
        kv(
            "deployhook.rollback",
            any_value::Value::BoolValue(d.rollback),
        ),
    ];
    if is_full_sha(&d.id) {
        attributes.push(text("vcs.ref.head.revision", d.id.clone()));
    }
    if let Some(b) = &d.branch {
        attributes.push(text("vcs.ref.head.name", b.clone()));
    }
    if let Some(url) = ev.cx.repository_url {
        attributes.push(text("vcs.repository.url.full", url));
    }
    if let Some(r) = &d.release {
        attributes.push(text("deployhook.release", r.clone()));
    }
    if !ok {
        attributes.push(text("error.type", "deployment_failed"));
    }
    let span = Span {
        trace_id: id_of("trace", &key, 16),
        span_id: id_of("span", &key, 8),
        name: format!("deploy {}", ev.cx.site),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: nanos(start),
        end_time_unix_nano: nanos(end),
        attributes,
        events: transitions
            .iter()
            .map(|(at, status)| span::Event {
                time_unix_nano: nanos(*at),
                name: status.as_str().to_string(),
                ..Default::default()
            })
            .collect(),
        status: Some(Status {
            code: if ok {
                status::StatusCode::Ok
            } else {
                status::StatusCode::Error
            } as i32,
            message: if ok {
                String::new()
            } else {
                crate::model::cap_text(&d.status_text, 1024)
            },
        }),
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "deployhook"),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                    text("host.name", ev.cx.host_name),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "deployhook".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Some(Rendered {
        body: request.encode_to_vec(),
        headers: vec![("Content-Type".to_string(), CONTENT_TYPE.to_string())],
    })
}
