//! The `cloudevents` format: CloudEvents 1.0 over HTTP (SPEC §3), structured
//! (`application/cloudevents+json`, every attribute in the body) or binary (`ce-*`
//! headers, the data as the body). Also the envelope `cdevents` uses.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value};

use super::{DeploymentEvent, Rendered};
use crate::config::CloudEventsMode;

pub const SPEC_VERSION: &str = "1.0";
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// A CloudEvent's context attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub subject: Option<String>,
    pub time: String,
}

/// What a URI path segment or authority may not hold unencoded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `deployhook://<hostName>/<site>` (or `deployhook://<hostName>` for events of no
/// site), each part percent-encoded.
pub fn source(host_name: &str, site: Option<&str>) -> String {
    let host = utf8_percent_encode(host_name, SEGMENT);
    match site {
        Some(s) => format!("deployhook://{host}/{}", utf8_percent_encode(s, SEGMENT)),
        None => format!("deployhook://{host}"),
    }
}

/// The CloudEvent of a deployment event: `dev.deployhook.deployment.<status>` with the
/// kudu object as data.
pub fn deployment(mode: CloudEventsMode, ev: &DeploymentEvent<'_>, id: &str) -> Rendered {
    let attributes = Attributes {
        id: id.to_string(),
        source: source(ev.cx.host_name, Some(ev.cx.site)),
        kind: format!("dev.deployhook.deployment.{}", ev.transition.to.as_str()),
        subject: Some(ev.transition.deployment.id.clone()),
        time: super::transition_time(ev.transition).rfc3339(),
    };
    envelope(mode, &attributes, ev.kudu_body)
}

/// `data` (JSON, or anything else as `data_base64`) in a CloudEvent of `mode`.
pub fn envelope(mode: CloudEventsMode, a: &Attributes, data: &[u8]) -> Rendered {
    let json: Option<Value> = serde_json::from_slice(data).ok();
    match mode {
        CloudEventsMode::Structured => {
            let mut o = Map::new();
            o.insert("specversion".into(), SPEC_VERSION.into());
            o.insert("id".into(), a.id.clone().into());
            o.insert("source".into(), a.source.clone().into());
            o.insert("type".into(), a.kind.clone().into());
            if let Some(s) = &a.subject {
                o.insert("subject".into(), s.clone().into());
            }
            o.insert("time".into(), a.time.clone().into());
            match json {
                Some(v) => {
                    o.insert("datacontenttype".into(), "application/json".into());
                    o.insert("data".into(), v);
                }
                None => {
                    use base64::Engine;
                    o.insert("datacontenttype".into(), "application/octet-stream".into());
                    o.insert(
                        "data_base64".into(),
                        base64::engine::general_purpose::STANDARD
                            .encode(data)
                            .into(),
                    );
                }
            }
            Rendered {
                body: serde_json::to_vec(&Value::Object(o)).unwrap_or_default(),
                headers: vec![("Content-Type".into(), STRUCTURED_CONTENT_TYPE.into())],
            }
        }
        CloudEventsMode::Binary => {
            let mut headers = vec![
                ("ce-specversion".to_string(), SPEC_VERSION.to_string()),
                ("ce-id".into(), header_value(&a.id)),
                ("ce-source".into(), header_value(&a.source)),
                ("ce-type".into(), header_value(&a.kind)),
            ];
            if let Some(s) = &a.subject {
                headers.push(("ce-subject".into(), header_value(s)));
            }
            headers.push(("ce-time".into(), header_value(&a.time)));
            let content_type = if json.is_some() {
                "application/json; charset=utf-8"
            } else {
                "application/octet-stream"
            };
            headers.push(("Content-Type".into(), content_type.into()));
            Rendered {
                body: data.to_vec(),
                headers,
            }
        }
    }
}

/// What a `ce-*` header value may not hold unencoded (the HTTP binding, §3.1.3.2):
/// anything outside printable ASCII, space, `"` and `%`.
const HEADER: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

fn header_value(v: &str) -> String {
    utf8_percent_encode(v, HEADER).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_header_values_are_percent_encoded_and_sources_are_uris() {
        assert_eq!(header_value("a b\"c%d€\n"), "a%20b%22c%25d%E2%82%AC%0A");
        assert_eq!(
            source("build-01", Some("shop")),
            "deployhook://build-01/shop"
        );
        assert_eq!(source("a b/c", None), "deployhook://a%20b%2Fc");
    }

    #[test]
    fn data_that_is_not_json_goes_as_base64() {
        let a = Attributes {
            id: "x".into(),
            source: "deployhook://h".into(),
            kind: "dev.deployhook.custom".into(),
            subject: None,
            time: "2026-01-01T00:00:00Z".into(),
        };
        let r = envelope(CloudEventsMode::Structured, &a, b"not json");
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(v["data_base64"], "bm90IGpzb24=");
        assert!(v.get("data").is_none());
    }
}
