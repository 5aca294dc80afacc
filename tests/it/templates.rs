//! Chat and observability receivers (issue 12): the `slack` format's body, and the
//! `template` format — every template shipped in `packaging/templates/` rendered from a
//! real deploy to JSON that parses, and a broken template refused by `check` and by a
//! reload (the old one keeps rendering).

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::{Site, shop_config as config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

/// A commit message a body must carry through its escaping intact.
const HOSTILE: &str = "Fix \"quotes\", a \\ backslash, <!channel> & {{ braces }}";

fn template_hook(name: &str, url: &str, template: &str, extra: &str) -> String {
    format!(
        "[[hook]]\nname = \"{name}\"\nurl = \"{url}\"\nformat = \"template\"\n\
         template = \"{template}\"\nretry = [\"100ms\"]\n{extra}\n"
    )
}

fn shipped(name: &str) -> String {
    format!("{}/packaging/templates/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn site(env: &TestEnv) -> Site {
    let site = Site::capistrano(env);
    site.cap_deploy("20261120090000", "alice");
    site
}

#[test]
fn slack_bodies_carry_site_status_commit_author_and_the_rollback_marker_escaped() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let hooks = format!(
        "[[hook]]\nname = \"ops-slack\"\nurl = \"{}\"\nformat = \"slack\"\n",
        rx.url
    );
    let _d = Daemon::start(&env, &config(&env, &site, &hooks));
    site.commit("a.html", HOSTILE);
    let sha = site.cap_deploy("20261120100000", "bob");
    eventually!(rx.requests().len() == 1, "the deploy's message");
    site.cap_rollback("20261120090000", "carol");
    eventually!(rx.requests().len() == 2, "the rollback's message");

    let deployed = rx.requests()[0].json();
    let text = deployed["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("shop") && text.contains("success") && text.contains(":white_check_mark:"),
        "the fallback text names site and status: {text}"
    );
    let blocks = deployed["blocks"].as_array().cloned().unwrap_or_default();
    assert!(
        (2..=50).contains(&blocks.len()),
        "Slack takes 1 to 50 blocks: {deployed}"
    );
    for b in &blocks {
        assert!(
            ["section", "context", "header"].contains(&b["type"].as_str().unwrap_or("")),
            "{b}"
        );
    }
    let fields: Vec<String> = blocks[1]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "mrkdwn");
            f["text"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert!(fields.len() <= 10, "a section holds at most 10 fields");
    let all = fields.join("\n");
    assert!(all.contains(&sha[..12]), "the short SHA: {all}");
    assert!(
        all.contains("Fix \"quotes\", a \\ backslash, &lt;!channel&gt; &amp; {{ braces }}"),
        "the commit message, mrkdwn-escaped (no @channel): {all}"
    );
    assert!(all.contains("*Deployer*\nbob"), "the deployer: {all}");
    assert!(all.contains("*Author*\n"), "the author: {all}");

    let rolled = rx.requests()[1].json();
    assert!(
        rolled["text"]
            .as_str()
            .is_some_and(|t| t.contains("(rollback)")),
        "the rollback marker: {rolled}"
    );
}

#[test]
fn every_shipped_template_renders_a_real_deploy_to_json_that_parses() {
    let env = TestEnv::new();
    let site = site(&env);
    let names = [
        "teams.json.j2",
        "discord.json.j2",
        "grafana-annotation.json.j2",
        "datadog-event.json.j2",
    ];
    let shipped_now: Vec<String> = std::fs::read_dir(shipped(""))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".j2"))
        .collect();
    for n in &shipped_now {
        assert!(names.contains(&n.as_str()), "{n} is shipped but not tested");
    }
    let receivers: Vec<Receiver> = names.iter().map(|_| Receiver::start()).collect();
    let hooks: String = names
        .iter()
        .zip(&receivers)
        .enumerate()
        .map(|(i, (n, rx))| template_hook(&format!("t{i}"), &rx.url, &shipped(n), ""))
        .collect();
    let out = run(
        &env,
        &[
            "check",
            "--config",
            &write(&env, &config(&env, &site, &hooks)),
        ],
    );
    assert!(
        out.status.success(),
        "check accepts every shipped template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _d = Daemon::start(&env, &config(&env, &site, &hooks));
    site.commit("a.html", HOSTILE);
    let sha = site.cap_deploy("20261120100000", "bob");
    // Level-triggered: a rollback before the deploy is seen would be no change at all.
    eventually!(
        receivers.iter().all(|rx| rx.requests().len() == 1),
        "the deploy"
    );
    site.cap_rollback("20261120090000", "carol");
    for (n, rx) in names.iter().zip(&receivers) {
        eventually!(rx.requests().len() == 2, "{n}: the deploy and the rollback");
        for r in rx.requests() {
            assert_eq!(
                r.header("content-type"),
                Some("application/json; charset=utf-8")
            );
            // `json()` panics, naming the body, when it does not parse.
            let _ = r.json();
        }
    }
    let body = |i: usize| receivers[i].requests()[0].json();
    let teams = body(0);
    let card = &teams["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["text"], "Deployment of shop: success");
    assert_eq!(card["body"][0]["color"], "Good");
    assert!(
        card["body"][1]["facts"][0]["value"]
            .as_str()
            .is_some_and(|v| v.starts_with(&sha[..12]) && v.contains(HOSTILE)),
        "{card}"
    );
    let discord = body(1);
    assert_eq!(discord["embeds"][0]["title"], "Deployment of shop: success");
    assert_eq!(discord["embeds"][0]["color"], 3066993);
    assert_eq!(discord["embeds"][0]["description"], HOSTILE);
    let grafana = body(2);
    assert_eq!(
        grafana["tags"],
        serde_json::json!(["deploy", "shop", "success", "test-host"])
    );
    let datadog = body(3);
    assert_eq!(datadog["alert_type"], "success");
    assert_eq!(datadog["host"], "test-host");
    assert_eq!(
        datadog["tags"],
        serde_json::json!(["site:shop", "status:success", "source:deployhook"])
    );
    let rolled = receivers[1].requests()[1].json();
    assert!(
        rolled["embeds"][0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Rollback of shop")),
        "{rolled}"
    );
}

fn write(env: &TestEnv, text: &str) -> String {
    let path = env.join("check.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

#[test]
fn a_broken_template_is_refused_by_check_and_by_a_reload_which_keeps_the_old_one() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    let template = env.join("notify.json.j2");
    std::fs::write(&template, "{\"said\": {{ \"deployed \" ~ id }}}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let hooks = template_hook("t", &rx.url, &template.display().to_string(), "");
    let cfg = config(&env, &site, &hooks);

    for (broken, says) in [
        ("{\"said\": {{ id }\n", "syntax error"),
        (
            "{\"said\": {{ commit_sha }}}\n",
            "unknown variable(s) commit_sha",
        ),
        ("{% for x in %}", "syntax error"),
    ] {
        std::fs::write(&template, broken).unwrap_or_else(|e| panic!("{e}"));
        let out = run(&env, &["check", "--config", &write(&env, &cfg)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "check refuses {broken:?}");
        assert!(
            err.contains("hook[0].template") && err.contains(says),
            "the error names the key and the fault ({says}): {err}"
        );
    }

    std::fs::write(&template, "{\"said\": {{ \"deployed \" ~ id }}}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(&env, &cfg);
    std::fs::write(&template, "{\"said\": {{ id }\n").unwrap_or_else(|e| panic!("{e}"));
    d.signal(1);
    d.wait_log("reload rejected");
    let sha = {
        site.commit("a.html", "After a broken reload");
        site.cap_deploy("20261120100000", "bob")
    };
    eventually!(rx.requests().len() == 1, "the old template still renders");
    assert_eq!(
        rx.requests()[0].json(),
        serde_json::json!({ "said": format!("deployed {sha}") })
    );
}
