//! What each receiver gets (issue 12): signing-key rotation, CloudEvents, CDEvents,
//! Slack and templates — each checked by an independent implementation where one exists
//! (the `standardwebhooks` and `cloudevents` SDKs, the CDEvents schemas, JSON parsers).

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, shop_config as config};
use crate::support::env::TestEnv;
use crate::support::python;
use crate::support::receiver::{Receiver, Request};

fn hook(name: &str, url: &str, extra: &str) -> String {
    format!("[[hook]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

/// A Capistrano site with one live release.
fn site(env: &TestEnv) -> Site {
    let site = Site::capistrano(env);
    site.cap_deploy("20261120090000", "alice");
    site
}

fn deploy(site: &Site, n: u32) -> String {
    site.commit(&format!("f{n}.html"), &format!("Change {n}"));
    site.cap_deploy(&format!("2026112010{n:04}"), "bob")
}

/// The request's headers and body as JSON, for a Python checker's stdin.
fn request_json(r: &Request) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "headers": r.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "body": String::from_utf8_lossy(&r.body),
    }))
    .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(tool_py_standardwebhooks),
    ignore = "the Python package standardwebhooks is needed: pip install standardwebhooks"
)]
fn two_secrets_give_two_signatures_each_verified_by_the_reference_library() {
    if !python::have("standardwebhooks", "standardwebhooks") {
        return;
    }
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let new = "whsec_bmV3LXNlY3JldC1rZXktZm9yLXJvdGF0aW9uIQ==";
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let file = env.join("rotating.secret");
    std::fs::write(&file, format!("{new}\n{old}\n")).unwrap_or_else(|e| panic!("{e}"));
    let hooks = hook(
        "std",
        &rx.url,
        &format!("secret_file = \"{}\"", file.display()),
    );
    let d = Daemon::start(&env, &config(&env, &site, &hooks));
    deploy(&site, 1);
    eventually!(!rx.requests().is_empty(), "the hook is called");
    let r = rx.requests()[0].clone();
    let sigs = r
        .header("webhook-signature")
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        sigs.split(' ').count(),
        2,
        "one signature per secret: {sigs}"
    );
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
req = json.load(sys.stdin)
for secret in sys.argv[1:]:
    Webhook(secret).verify(req["body"], req["headers"])
    print("verified")
"#;
    let out = python::run_args(script, &[new, old], &request_json(&r));
    assert_eq!(out.lines().count(), 2, "{out}");
    // A receiver that already moved to a third key does not verify.
    let stranger = "whsec_c3RyYW5nZXItc2VjcmV0LW5vdC1pbi10aGUtZmlsZQ==";
    assert!(
        python::fails_args(script, &[stranger], &request_json(&r)),
        "a key not in the file must not verify"
    );
    let logs = d.logs().join("\n");
    assert!(
        !logs.contains(new) && !logs.contains(old),
        "secrets never logged"
    );
}

/// The CloudEvent the `cloudevents` SDK (PyPI, ≥ 2.2) parses from a request, as JSON:
/// the mode is forced (`argv[1]`), so a structured body sent as binary fails.
const PARSE_CLOUDEVENT: &str = r#"
import json, sys
from cloudevents.core.bindings import http
req = json.load(sys.stdin)
msg = http.HTTPMessage(headers=req["headers"], body=req["body"].encode())
ev = (http.from_structured_event if sys.argv[1] == "structured" else http.from_binary_event)(msg)
a = ev.get_attributes()
a["time"] = a["time"].isoformat()
print(json.dumps({"attributes": a, "data": ev.get_data()}))
"#;

fn parse_cloudevent(mode: &str, r: &Request) -> serde_json::Value {
    let out = python::run_args(PARSE_CLOUDEVENT, &[mode], &request_json(r));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
#[cfg_attr(
    not(tool_py_cloudevents),
    ignore = "the Python package cloudevents (2.2 or later) is needed: pip install cloudevents"
)]
fn cloudevents_in_both_modes_are_parsed_by_the_cloudevents_sdk_with_a_stable_id() {
    if !python::have("cloudevents.core.bindings.http", "cloudevents") {
        return;
    }
    let env = TestEnv::new();
    let site = site(&env);
    let structured = Receiver::start();
    // The first attempt fails: the retry must carry the same event id.
    structured.behave(|b| b.statuses.push_back(503));
    let binary = Receiver::start();
    let hooks = [
        hook(
            "ce-structured",
            &structured.url,
            "format = \"cloudevents\"\nretry = [\"100ms\"]",
        ),
        hook(
            "ce-binary",
            &binary.url,
            "format = \"cloudevents\"\ncloudevents_mode = \"binary\"",
        ),
    ]
    .concat();
    let _d = Daemon::start(&env, &config(&env, &site, &hooks));
    let sha = deploy(&site, 1);
    eventually!(
        structured.requests().len() == 2 && binary.requests().len() == 1,
        "a failed and a retried structured request, one binary: {} and {}",
        structured.requests().len(),
        binary.requests().len()
    );

    let tries = structured.requests();
    assert_eq!(
        tries[0].header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let first = parse_cloudevent("structured", &tries[0]);
    let retry = parse_cloudevent("structured", &tries[1]);
    assert_eq!(
        first["attributes"]["id"], retry["attributes"]["id"],
        "a retry is the same event"
    );
    assert_eq!(
        first["attributes"]["id"].as_str(),
        tries[0].header("x-deployhook-delivery"),
        "the event id is the delivery id"
    );
    let b = binary.requests()[0].clone();
    assert!(
        b.header("ce-id").is_some()
            && b.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
        "binary mode: attributes in headers, the kudu object as the body: {:?}",
        b.headers
    );
    let bin = parse_cloudevent("binary", &b);
    for ev in [&first, &bin] {
        let a = &ev["attributes"];
        assert_eq!(a["specversion"], "1.0");
        assert_eq!(a["source"], "deployhook://test-host/shop");
        assert_eq!(a["type"], "dev.deployhook.deployment.success");
        assert_eq!(
            a["subject"],
            sha.as_str(),
            "the subject is the deployment id"
        );
        assert!(
            a["time"].as_str().is_some_and(|t| t.starts_with("20")),
            "{a}"
        );
        assert_eq!(ev["data"]["status"], "success");
        assert_eq!(ev["data"]["siteName"], "shop");
        assert_eq!(ev["data"]["id"], sha.as_str());
    }
    assert_ne!(
        first["attributes"]["id"], bin["attributes"]["id"],
        "each hook's delivery is its own event"
    );
    // The SDK refuses a binary body parsed as structured: the modes really differ.
    assert!(python::fails_args(
        PARSE_CLOUDEVENT,
        &["structured"],
        &request_json(&b)
    ));
}

/// Validates each `{"type", "cdevent"}` of stdin against the vendored CDEvents 0.5.1
/// schema of its type (with the `links/` schemas they refer to); prints the types.
const VALIDATE_CDEVENTS: &str = r#"
import json, pathlib, sys
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
root = pathlib.Path(sys.argv[1])
docs = [json.loads(p.read_text()) for p in sorted(root.glob("**/*.json"))]
registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
by_type = {d["properties"]["context"]["properties"]["type"]["enum"][0]: d
           for d in docs if "context" in d.get("properties", {})}
for item in json.load(sys.stdin):
    schema = by_type[item["type"]]
    Draft202012Validator(schema, registry=registry,
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(item["cdevent"])
    print(item["type"])
"#;

fn schemas_dir() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cdevents-0.5.1/schemas"
    )
    .to_string()
}

/// The CDEvent type and body of a request of a `cdevents` hook in either mode.
fn cdevent_of(r: &Request) -> (String, serde_json::Value) {
    match r.header("ce-type") {
        Some(t) => (t.to_string(), r.json()),
        None => {
            let ev = r.json();
            (
                ev["type"].as_str().unwrap_or("").to_string(),
                ev["data"].clone(),
            )
        }
    }
}

#[test]
#[cfg_attr(
    not(tool_py_jsonschema),
    ignore = "the Python package jsonschema is needed: pip install jsonschema"
)]
fn cdevents_for_deploy_rollback_and_a_kudu_pipeline_are_valid_against_the_schemas() {
    if !python::have("jsonschema", "jsonschema") {
        return;
    }
    let env = TestEnv::new();
    let site = site(&env);
    let kudu = crate::support::sites::kudu_site(&env, "kudu-app");
    let structured = Receiver::start();
    let binary = Receiver::start();
    let every = "format = \"cdevents\"\nevents = [\"StatusChanged\", \"PostDeployment\"]";
    let hooks = [
        hook("cd-structured", &structured.url, every),
        hook(
            "cd-binary",
            &binary.url,
            &format!("{every}\ncloudevents_mode = \"binary\""),
        ),
    ]
    .concat();
    let cfg = config(&env, &site, &hooks).replacen(
        "[[hook]]",
        &format!(
            "[[site]]\nname = \"app\"\npath = \"{}\"\nlayout = \"kudu\"\nsettle = \"300ms\"\n\n[[hook]]",
            kudu.display()
        ),
        1,
    );
    let _d = Daemon::start(&env, &cfg);
    let types =
        |rx: &Receiver| -> Vec<String> { rx.requests().iter().map(|r| cdevent_of(r).0).collect() };
    let has = |rx: &Receiver, t: &str| types(rx).iter().any(|x| x.ends_with(t));

    let first = deploy(&site, 1);
    eventually!(
        has(&structured, "service.deployed.0.3.0"),
        "deployed: {:?}",
        types(&structured)
    );
    deploy(&site, 2);
    eventually!(
        types(&structured)
            .iter()
            .filter(|t| t.ends_with("service.deployed.0.3.0"))
            .count()
            == 2,
        "the second deploy: {:?}",
        types(&structured)
    );
    site.cap_rollback("20261120100001", "carol");
    eventually!(
        has(&structured, "service.rolledback.0.3.0"),
        "rolled back: {:?}",
        types(&structured)
    );
    let id = "feed000000000000000000000000000000000001";
    let dir = kudu.join("deployments").join(id);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let received = "2026-11-20T08:01:02.0000000Z";
    for (status, complete, cdevent) in [
        ("Pending", false, "pipelinerun.queued.0.3.0"),
        ("Building", false, "pipelinerun.started.0.3.0"),
        ("Failed", true, "pipelinerun.finished.0.3.0"),
    ] {
        crate::support::sites::write_atomic(
            &dir.join("status.xml"),
            crate::support::sites::kudu_xml(id, status, complete, received, "").as_bytes(),
        );
        eventually!(
            structured.requests().iter().any(
                |r| cdevent_of(r).1["subject"]["content"]["pipelineName"] == "app"
                    && cdevent_of(r).0.ends_with(cdevent)
            ),
            "{status}: {:?}",
            types(&structured)
        );
    }
    eventually!(
        binary.requests().len() == structured.requests().len(),
        "the binary hook gets as many: {:?} vs {:?}",
        types(&binary),
        types(&structured)
    );

    let items: Vec<serde_json::Value> = structured
        .requests()
        .iter()
        .chain(binary.requests().iter())
        .map(|r| {
            let (t, cdevent) = cdevent_of(r);
            serde_json::json!({"type": t, "cdevent": cdevent})
        })
        .collect();
    let input = serde_json::to_vec(&items).unwrap_or_default();
    let out = python::run_args(VALIDATE_CDEVENTS, &[&schemas_dir()], &input);
    assert_eq!(out.lines().count(), items.len(), "every body validated");
    let seen: std::collections::BTreeSet<&str> = out.lines().collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "dev.cdevents.pipelinerun.finished.0.3.0",
            "dev.cdevents.pipelinerun.queued.0.3.0",
            "dev.cdevents.pipelinerun.started.0.3.0",
            "dev.cdevents.service.deployed.0.3.0",
            "dev.cdevents.service.rolledback.0.3.0",
        ]
    );
    // The facts a CD tool keys on.
    let deployed = structured
        .requests()
        .iter()
        .map(cdevent_of)
        .find(|(t, _)| t.ends_with("service.deployed.0.3.0"))
        .map(|(_, c)| c)
        .unwrap_or_default();
    assert_eq!(deployed["context"]["specversion"], "0.5.1");
    assert_eq!(deployed["context"]["source"], "deployhook://test-host/shop");
    assert_eq!(deployed["subject"]["content"]["environment"]["id"], "shop");
    assert_eq!(
        deployed["subject"]["content"]["artifactId"],
        format!("pkg:generic/shop@{first}")
    );
    let failed = structured
        .requests()
        .iter()
        .map(cdevent_of)
        .filter(|(t, c)| {
            t.ends_with("pipelinerun.finished.0.3.0")
                && c["subject"]["content"]["pipelineName"] == "app"
        })
        .map(|(_, c)| c)
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "one finished event for the failure");
    assert_eq!(failed[0]["subject"]["content"]["outcome"], "failure");
    // A schema that rejects: a body with a wrong outcome does not validate.
    let mut bad = failed[0].clone();
    bad["subject"]["content"]["outcome"] = "meh".into();
    let bad_input = serde_json::to_vec(&serde_json::json!([
        {"type": "dev.cdevents.pipelinerun.finished.0.3.0", "cdevent": bad}
    ]))
    .unwrap_or_default();
    assert!(python::fails_args(
        VALIDATE_CDEVENTS,
        &[&schemas_dir()],
        &bad_input
    ));
}
