//! `[otlp]`: every finished deployment as one OpenTelemetry span, decoded by the
//! reference protobuf classes (PyPI `opentelemetry-proto`) with every attribute checked;
//! the headers from a secret sent and never stored; the export durable like a hook's.

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::python;
use crate::support::receiver::Receiver;

/// Decodes an `ExportTraceServiceRequest` (stdin) to JSON with the reference classes.
const DECODE: &str = r#"
import sys
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
req = ExportTraceServiceRequest()
req.ParseFromString(sys.stdin.buffer.read())
print(MessageToJson(req, preserving_proto_field_name=True))
"#;

const API_KEY: &str = "otlp-key-for-tests-0123456789";

/// An OTLP attribute list as a map of key to its value (`string_value`, `bool_value`).
fn attributes(list: &Value) -> std::collections::BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let v = kv["value"]
                .as_object()
                .and_then(|o| o.values().next().cloned());
            (
                kv["key"].as_str().unwrap_or("").to_string(),
                v.unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(tool_py_otlp),
    ignore = "the Python package opentelemetry-proto is needed: pip install opentelemetry-proto"
)]
fn each_finished_deployment_is_one_span_the_reference_classes_decode() {
    if !python::have(
        "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        "opentelemetry-proto",
    ) {
        return;
    }
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let collector = Receiver::start();
    let headers = env.join("otlp.headers");
    std::fs::write(&headers, format!("x-api-key={API_KEY},x-tenant=acme\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = collector.url.trim_end_matches("/hook").to_string();
    let config = format!(
        r#"[daemon]
state_dir = "{state}"
host_name = "web-1"

[[site]]
name = "shop"
path = "{path}"
settle = "300ms"
idle_timeout = "1s"
repository_url = "https://github.com/example/shop"

[otlp]
endpoint = "{endpoint}"
headers_file = "{headers}"
environment = "staging"
"#,
        state = env.join("state").display(),
        path = site.root.display(),
        headers = headers.display(),
    );
    let d = Daemon::start(&env, &config);
    // A deploy that succeeds, then one that stops after its release is made: failed.
    let good = site.cap_deploy("20261120090000", "jane");
    eventually!(collector.requests().len() == 1, "the first span");
    site.commit("b.html", "Broken page");
    site.cap_update();
    let bad = site.cap_create_release("20261120090100");
    site.write_revision("20261120090100", &bad);
    eventually!(collector.requests().len() == 2, "the second span");

    let spans: Vec<(Value, Value)> = collector
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/v1/traces");
            assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
            assert_eq!(r.header("x-api-key"), Some(API_KEY));
            assert_eq!(r.header("x-tenant"), Some("acme"));
            let decoded: Value = serde_json::from_str(&python::run(DECODE, &r.body))
                .unwrap_or_else(|e| panic!("{e}"));
            let rs = &decoded["resource_spans"][0];
            let span = rs["scope_spans"][0]["spans"][0].clone();
            assert_eq!(rs["scope_spans"][0]["scope"]["name"], "deployhook");
            (rs["resource"].clone(), span)
        })
        .collect();

    for (resource, span) in &spans {
        let r = attributes(&resource["attributes"]);
        assert_eq!(r["service.name"], "deployhook");
        assert_eq!(r["host.name"], "web-1");
        assert_eq!(span["name"], "deploy shop");
        assert_eq!(span["kind"], "SPAN_KIND_SERVER");
        // Bytes as base64: 16 and 8 of them.
        assert_eq!(span["trace_id"].as_str().map(str::len), Some(24));
        assert_eq!(span["span_id"].as_str().map(str::len), Some(12));
        let start: u64 = span["start_time_unix_nano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let end: u64 = span["end_time_unix_nano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(start > 1_700_000_000_000_000_000 && start <= end, "{span}");
        // Each transition an event, the first at the span's start, the last at its end.
        let events = span["events"].as_array().cloned().unwrap_or_default();
        let at = |e: &Value| {
            e["time_unix_nano"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
        };
        assert_eq!(events.first().and_then(at), Some(start), "{span}");
        assert_eq!(events.last().and_then(at), Some(end), "{span}");
    }

    let (ok_span, failed_span) = (&spans[0].1, &spans[1].1);
    let a = attributes(&ok_span["attributes"]);
    assert_eq!(a["cicd.pipeline.name"], "shop");
    assert_eq!(a["cicd.pipeline.run.id"], "web-1:shop:1");
    assert_eq!(a["cicd.pipeline.result"], "success");
    assert_eq!(a["vcs.ref.head.revision"], good.as_str());
    assert_eq!(a["vcs.ref.head.name"], "main");
    assert_eq!(
        a["vcs.repository.url.full"],
        "https://github.com/example/shop"
    );
    assert_eq!(a["deployment.environment.name"], "staging");
    assert!(!a.contains_key("error.type"));
    assert_eq!(ok_span["status"]["code"], "STATUS_CODE_OK");
    let names: Vec<&str> = ok_span["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names.last(), Some(&"success"), "{names:?}");

    let f = attributes(&failed_span["attributes"]);
    assert_eq!(f["cicd.pipeline.run.id"], "web-1:shop:2");
    assert_eq!(f["cicd.pipeline.result"], "failure");
    assert_eq!(f["vcs.ref.head.revision"], bad.as_str());
    assert_eq!(f["error.type"], "deployment_failed");
    assert_eq!(failed_span["status"]["code"], "STATUS_CODE_ERROR");
    assert!(
        failed_span["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("idle_timeout")),
        "{failed_span}"
    );
    let names: Vec<&str> = failed_span["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    // pending (the mirror fetched) and building, as the reads saw them; then failed.
    assert!(
        names.len() >= 2 && names.last() == Some(&"failed") && names.contains(&"building"),
        "{failed_span}"
    );

    // The export is a hook like any other: in the delivery log; the headers never stored.
    let (ok, listing) = d.cli(&["deliveries", "list", "--hook", "otlp"]);
    assert!(ok && listing.matches("delivered").count() >= 2, "{listing}");
    assert!(!env.outbox_holds(API_KEY), "the key is stored");
}

#[test]
fn a_broken_otlp_section_names_its_keys() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.join("site")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(env.join("bad.headers"), "x-api-key\n").unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[[site]]\nname = \"shop\"\npath = \"{}\"\n\n\
         [[hook]]\nname = \"otlp\"\nurl = \"http://127.0.0.1:9/\"\n\n\
         [otlp]\nendpoint = \"ftp://collector\"\nheaders_file = \"{}\"\nsites = [\"nope\"]\n",
        env.join("state").display(),
        env.join("site").display(),
        env.join("bad.headers").display()
    );
    let path = env.join("deployhook.toml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    let out = crate::support::daemon::run(&env, &["check", "--config", &path.to_string_lossy()]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for needle in [
        "otlp.endpoint: must be an http:// or https:// URL",
        "otlp.headers_file: entry 1 is not name=value",
        "otlp.sites",
        "[otlp] runs as a hook named \"otlp\"",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}
