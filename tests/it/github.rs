//! `format = "github-deployments"` (issue 12) against a loopback stand-in for GitHub's
//! API: one deployment created per deployhook deployment, its statuses in order, a
//! `422` and a `5xx` retried on the schedule, a create whose answer was lost (and a
//! SIGKILL) never creating a second one — and every request checked against GitHub's
//! published OpenAPI description (`@octokit/openapi`, the operations used vendored in
//! `tests/fixtures/github-openapi/`).

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::github::{FakeGithub, GhRequest};
use crate::support::python;

const TOKEN: &str = "ghp_0123456789abcdefTESTTOKEN";

fn config(env: &TestEnv, site: &Site, gh: &FakeGithub, extra: &str) -> String {
    let token = env.join("github.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"build-01\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\nsettle = \"300ms\"\n\n\
         [[hook]]\nname = \"github\"\nurl = \"{}\"\nformat = \"github-deployments\"\n\
         repository = \"acme/shop\"\nenvironment = \"production\"\n\
         log_url = \"https://ci.example.com/{{site}}/{{id}}\"\n\
         secret_file = \"{}\"\nevents = [\"StatusChanged\"]\nretry = [\"100ms\", \"200ms\", \"300ms\"]\n{extra}\n",
        env.join("state").display(),
        site.root.display(),
        gh.url,
        token.display()
    )
}

/// Checks each request (method, path, query, body on stdin) against the vendored
/// OpenAPI description: the path and method exist, query names are declared, path
/// parameters have their type, the body validates against the request schema.
const CHECK_OPENAPI: &str = r#"
import json, re, sys
from jsonschema import Draft4Validator
spec = json.load(open(sys.argv[1]))
def route(path):
    for template, ops in spec["paths"].items():
        names = re.findall(r"{(\w+)}", template)
        rx = "^" + re.sub(r"{\w+}", "([^/]+)", template) + "$"
        m = re.match(rx, path)
        if m:
            return template, ops, dict(zip(names, m.groups()))
    raise SystemExit(f"no such path in the description: {path}")
for r in json.load(sys.stdin):
    template, ops, params = route(r["path"])
    op = ops.get(r["method"].lower())
    if op is None:
        raise SystemExit(f"{r['method']} {template}: no such operation")
    declared = {p["name"]: p for p in op.get("parameters", [])}
    for name, value in params.items():
        if declared[name]["schema"].get("type") == "integer" and not value.isdigit():
            raise SystemExit(f"{template}: {name}={value} is not an integer")
    for pair in filter(None, r["query"].split("&")):
        name = pair.split("=")[0]
        if declared.get(name, {}).get("in") != "query":
            raise SystemExit(f"{template}: undeclared query parameter {name}")
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        Draft4Validator(schema).validate(r["body"])
        for key in schema.get("required", []):
            assert key in r["body"], f"{template}: {key} missing"
    print(op["operationId"])
"#;

fn openapi() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/github-openapi/api.github.com.deployments.json"
    )
    .to_string()
}

fn check_against_openapi(requests: &[GhRequest]) -> Vec<String> {
    let input = serde_json::to_vec(
        &requests
            .iter()
            .map(|r| {
                serde_json::json!({
                    "method": r.method,
                    "path": r.path.trim_start_matches("/api/v3"),
                    "query": r.query,
                    "body": r.body,
                })
            })
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    python::run_args(CHECK_OPENAPI, &[&openapi()], &input)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[cfg_attr(
    not(tool_py_jsonschema),
    ignore = "the Python package jsonschema is needed: pip install jsonschema"
)]
fn one_deployment_is_created_then_its_statuses_in_order_with_failures_retried() {
    if !python::have("jsonschema", "jsonschema") {
        return;
    }
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let gh = FakeGithub::start();
    gh.behave(|b| {
        b.create_failures.push_back(422);
        b.status_failures.push_back(502);
    });
    let d = Daemon::start(&env, &config(&env, &site, &gh, ""));
    site.commit("a.html", "Fix header");
    let sha = site.cap_deploy("20261120100000", "bob");
    eventually!(
        gh.accepted_statuses()
            .last()
            .is_some_and(|(_, s)| s == "success"),
        "the success status: {:?}",
        gh.accepted_statuses()
    );

    let deployments = gh.deployments();
    assert_eq!(deployments.len(), 1, "one deployment: {deployments:?}");
    let id = deployments[0]["id"].to_string();
    let states: Vec<String> = gh
        .accepted_statuses()
        .into_iter()
        .map(|(dep, state)| {
            assert_eq!(dep, id, "every status is the created deployment's");
            state
        })
        .collect();
    // In order, each once; a loaded machine may see the deploy in fewer reads (no
    // pending or building), never out of order.
    let order = ["queued", "in_progress", "success"];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap_or(usize::MAX))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1])
            && states.last().map(String::as_str) == Some("success"),
        "statuses in order, each once, ending in success: {states:?}"
    );
    let requests = gh.requests();
    let creates: Vec<&GhRequest> = requests.iter().filter(|r| r.is_create()).collect();
    assert_eq!(
        creates.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [422, 201],
        "the 422 was retried"
    );
    assert!(
        requests.iter().any(|r| r.is_status() && r.answered == 502),
        "a 502 on a status, retried"
    );
    let create = &creates[1].body;
    assert_eq!(create["ref"], sha.as_str());
    assert_eq!(create["auto_merge"], false);
    assert_eq!(create["required_contexts"], serde_json::json!([]));
    assert_eq!(create["environment"], "production");
    let last = requests
        .iter()
        .rev()
        .find(|r| r.is_status())
        .map(|r| r.body.clone());
    let last = last.unwrap_or_default();
    assert_eq!(
        last["log_url"],
        format!("https://ci.example.com/shop/{sha}")
    );
    assert!(
        last["description"]
            .as_str()
            .is_some_and(|s| s.chars().count() <= 140),
        "{last}"
    );
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
    }
    // `hooks test` checks the token by reading the repository.
    let out = crate::support::daemon::run(
        &env,
        &[
            "hooks",
            "test",
            "github",
            "--config",
            &d.config.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually!(
        gh.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v3/repos/acme/shop"),
        "the ping reads the repository"
    );
    let requests = gh.requests();
    let operations = check_against_openapi(&requests);
    assert_eq!(operations.len(), requests.len(), "every request checked");
    assert!(operations.contains(&"repos/get".to_string()));
    assert!(operations.contains(&"repos/create-deployment".to_string()));
    assert!(operations.contains(&"repos/create-deployment-status".to_string()));
    assert!(
        !d.logs().join("\n").contains(TOKEN),
        "the token is never logged"
    );
}

#[test]
#[cfg_attr(
    not(tool_py_jsonschema),
    ignore = "the Python package jsonschema is needed: pip install jsonschema"
)]
fn a_create_whose_answer_is_lost_and_a_sigkill_never_make_a_second_deployment() {
    if !python::have("jsonschema", "jsonschema") {
        return;
    }
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let gh = FakeGithub::start();
    // GitHub makes the deployment, but its answer comes after the hook's timeout.
    gh.behave(|b| b.create_then_hang = Some(std::time::Duration::from_secs(3)));
    let cfg = config(&env, &site, &gh, "timeout = \"1s\"");
    let d = Daemon::start(&env, &cfg);
    site.commit("a.html", "Fix header");
    site.cap_deploy("20261120100000", "bob");
    eventually!(gh.deployments().len() == 1, "the create reached GitHub");
    d.kill();
    let d = Daemon::start_with(&env, &env.join("deployhook.toml"), &[]);
    eventually!(
        gh.accepted_statuses()
            .last()
            .is_some_and(|(_, s)| s == "success"),
        "the success status after the restart: {:?}",
        gh.accepted_statuses()
    );
    assert_eq!(gh.deployments().len(), 1, "no second deployment");
    let id = gh.deployments()[0]["id"].to_string();
    assert!(
        gh.accepted_statuses().iter().all(|(dep, _)| *dep == id),
        "{:?}",
        gh.accepted_statuses()
    );
    assert!(
        gh.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/deployments")),
        "the lost create was looked for"
    );
    let operations = check_against_openapi(&gh.requests());
    assert!(operations.contains(&"repos/list-deployments".to_string()));
    drop(d);
}

#[test]
fn a_release_whose_revision_is_written_late_is_one_deployment_of_its_sha() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    site.plain_deploy("20270101000000");
    let gh = FakeGithub::start();
    // Settle at its default: a first transition waits that long for the commit.
    let cfg = config(&env, &site, &gh, "").replace("settle = \"300ms\"", "settle = \"2s\"");
    let d = Daemon::start(&env, &cfg);
    let sha = site.commit("a.html", "Fix header");
    // Capistrano's own order: the code archived into the release, then REVISION.
    let release = site.release_dir("20270101000100");
    std::fs::create_dir_all(&release).unwrap_or_else(|e| panic!("{e}"));
    let archive = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive main | tar -x -f - -C '{}'",
            site.src.display(),
            release.display()
        ))
        .status()
        .is_ok_and(|s| s.success());
    assert!(archive, "git archive | tar -x");
    // The tool's own pause before it writes REVISION (part of the scenario).
    std::thread::sleep(std::time::Duration::from_millis(500));
    site.write_revision("20270101000100", &sha);
    let tmp = site.root.join(".current.tmp");
    std::os::unix::fs::symlink("releases/20270101000100", &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        gh.accepted_statuses()
            .last()
            .is_some_and(|(_, s)| s == "success"),
        "the success status: {:?}",
        gh.accepted_statuses()
    );
    let deployments = gh.deployments();
    assert_eq!(deployments.len(), 1, "one deployment: {deployments:?}");
    assert_eq!(deployments[0]["ref"], sha.as_str(), "ref is the SHA");
    let creates: Vec<GhRequest> = gh
        .requests()
        .into_iter()
        .filter(|r| r.is_create())
        .collect();
    assert!(
        creates.iter().all(|r| r.body["ref"] == sha.as_str()),
        "never a release name as ref: {:?}",
        creates
            .iter()
            .map(|r| r.body["ref"].clone())
            .collect::<Vec<_>>()
    );

    // A release that never says its commit is no GitHub deployment: not sent, said.
    let bare = site.release_dir("20270101000200");
    std::fs::create_dir_all(&bare).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(bare.join("index.html"), "v3").unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("the deployment's id is no commit SHA");
    assert_eq!(gh.deployments().len(), 1, "{:?}", gh.deployments());
    d.stop();
}
