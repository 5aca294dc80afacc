//! The README's Formats section as printed: every `[[hook]]` snippet (its URL pointed at
//! a loopback receiver or the GitHub stand-in, the templates' install path at
//! `packaging/templates/`, the token's at a temp file) is
//! accepted by `deployhook check` and, after a real deploy, sends a body with the keys
//! of the sample that follows it (`"…"` stands for keys left out; `type`, `source`,
//! `specversion` and content types must match exactly). The own-template example is
//! rendered too.

use serde_json::Value;

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::github::FakeGithub;
use crate::support::receiver::Receiver;

const MARKER: &str = "<!-- The blocks below are run as printed by tests/it/readme_formats.rs. -->";
const INSTALLED: &str = "/usr/share/deployhook/templates/";
const GITHUB_TOKEN: &str = "/etc/deployhook/github.token";

/// The fenced blocks (language, text) of the README's Formats section.
fn blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/hooks.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let section = readme
        .split_once(MARKER)
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .unwrap_or_else(|| panic!("docs/src/hooks.md lost its Formats marker"))
        .0;
    let mut out = Vec::new();
    let mut rest = section;
    while let Some((_, after)) = rest.split_once("\n```") {
        let Some((lang, after)) = after.split_once('\n') else {
            break;
        };
        let Some((body, after)) = after.split_once("\n```") else {
            break;
        };
        out.push((lang.to_string(), body.to_string()));
        rest = after;
    }
    out
}

/// Where `real` lacks the shape of `sample`.
fn shape(sample: &Value, real: &Value, path: &str, faults: &mut Vec<String>) {
    match (sample, real) {
        (Value::Object(s), Value::Object(r)) => {
            let open = s.contains_key("…");
            for k in s.keys().filter(|k| *k != "…") {
                match r.get(k) {
                    None => faults.push(format!("{path}.{k}: in the sample, not sent")),
                    Some(v) => {
                        let exact = ["type", "source", "specversion", "datacontenttype"]
                            .contains(&k.as_str())
                            || k == "customDataContentType";
                        if exact && s[k].is_string() && s[k] != *v {
                            faults.push(format!("{path}.{k}: sample {} but sent {v}", s[k]));
                        }
                        shape(&s[k], v, &format!("{path}.{k}"), faults);
                    }
                }
            }
            if !open {
                for k in r.keys().filter(|k| !s.contains_key(*k)) {
                    faults.push(format!("{path}.{k}: sent, not in the sample"));
                }
            }
        }
        (Value::Array(s), Value::Array(r)) => {
            if !s.is_empty() && r.is_empty() {
                faults.push(format!("{path}: sent empty"));
            }
            for (i, (a, b)) in s.iter().zip(r).enumerate() {
                shape(a, b, &format!("{path}[{i}]"), faults);
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        _ => faults.push(format!("{path}: sample {sample}, sent {real}")),
    }
}

/// The snippet with its URL replaced by `url`, the install path by the repository's and
/// the GitHub token's path by `token`.
fn localise(snippet: &str, url: &str, token: &str) -> String {
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/templates/");
    snippet
        .lines()
        .map(|l| {
            if l.starts_with("url = ") {
                format!("url = \"{url}\"")
            } else {
                l.replace(INSTALLED, templates).replace(GITHUB_TOKEN, token)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_format_snippets_work_as_printed_and_send_bodies_shaped_like_the_samples() {
    let blocks = blocks();
    let mut pairs: Vec<(String, Value)> = Vec::new();
    let mut own_template = None;
    for (i, (lang, text)) in blocks.iter().enumerate() {
        match lang.as_str() {
            "toml" => {
                let sample = blocks
                    .get(i + 1)
                    .filter(|(l, _)| l == "json")
                    .map(|(_, t)| {
                        serde_json::from_str(t)
                            .unwrap_or_else(|e| panic!("the sample after {text} is not JSON: {e}"))
                    })
                    .unwrap_or_else(|| panic!("no ```json sample after {text}"));
                pairs.push((text.clone(), sample));
            }
            "jinja" => own_template = Some(text.clone()),
            _ => {}
        }
    }
    assert_eq!(
        pairs.len(),
        5,
        "cloudevents, cdevents, slack, a template and github-deployments: {pairs:?}"
    );
    let is_github = |snippet: &str| snippet.contains("format = \"github-deployments\"");
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let token = env.join("github.token");
    std::fs::write(&token, "ghp_readme\n").unwrap_or_else(|e| panic!("{e}"));
    let token = token.display().to_string();
    let github = FakeGithub::start();
    let receivers: Vec<Receiver> = (0..=pairs.len()).map(|_| Receiver::start()).collect();
    let mut hooks: String = pairs
        .iter()
        .zip(&receivers)
        .map(|((snippet, _), rx)| {
            let url = if is_github(snippet) {
                &github.url
            } else {
                &rx.url
            };
            format!("{}\n\n", localise(snippet, url, &token))
        })
        .collect();
    let own = env.join("notify.json.j2");
    std::fs::write(
        &own,
        own_template.unwrap_or_else(|| panic!("no ```jinja example")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    hooks.push_str(&format!(
        "[[hook]]\nname = \"own\"\nurl = \"{}\"\nformat = \"template\"\ntemplate = \"{}\"\n",
        receivers[pairs.len()].url,
        own.display()
    ));
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"build-01\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}",
        env.join("state").display(),
        site.root.display()
    );
    let path = env.join("deployhook.toml");
    std::fs::write(&path, &config).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&env, &["check", "--config", &path.display().to_string()]);
    assert!(
        out.status.success(),
        "check accepts the README's snippets: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _d = Daemon::start(&env, &config);
    site.commit("header.html", "Fix header");
    let sha = site.cap_deploy("20261120091402", "alice");
    let last_is_success = |rx: &Receiver| {
        rx.requests().last().is_some_and(|r| {
            let b = String::from_utf8_lossy(&r.body).into_owned();
            b.contains("success")
        })
    };
    let github_done = || {
        github
            .accepted_statuses()
            .last()
            .is_some_and(|(_, s)| s == "success")
    };
    eventually!(
        github_done()
            && receivers
                .iter()
                .zip(&pairs)
                .all(|(rx, (snippet, _))| is_github(snippet) || last_is_success(rx))
            && last_is_success(&receivers[pairs.len()]),
        "every hook gets the success: {:?}",
        receivers
            .iter()
            .map(|r| r.requests().len())
            .collect::<Vec<_>>()
    );
    for ((snippet, sample), rx) in pairs.iter().zip(&receivers) {
        let sent = if is_github(snippet) {
            github
                .requests()
                .iter()
                .rev()
                .find(|r| r.is_status())
                .map(|r| r.body.clone())
                .unwrap_or_default()
        } else {
            rx.requests().last().map(|r| r.json()).unwrap_or_default()
        };
        let mut faults = Vec::new();
        shape(sample, &sent, "", &mut faults);
        assert!(
            faults.is_empty(),
            "{snippet}\nsends a body unlike the README's sample: {faults:#?}\nsent: {}",
            serde_json::to_string_pretty(&sent).unwrap_or_default()
        );
    }
    let mine = receivers[pairs.len()].requests()[0].json();
    assert_eq!(
        mine["text"],
        format!("shop is success at {} by Jane Doe", &sha[..7])
    );
}
