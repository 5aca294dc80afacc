//! What changed in a deploy (issue 12): payloads carry `commits` — the commits between
//! the previous live release and this one, newest first, at most 20, with
//! `commitsTruncated` — read from the site's real git repository.

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

fn shas(p: &serde_json::Value) -> Vec<String> {
    p["commits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["sha"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_deploy_lists_the_commits_it_brought_capped_at_20_and_a_rollback_none() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let slack = Receiver::start();
    let extra = format!(
        "\n[[hook]]\nname = \"slack\"\nurl = \"{}\"\nformat = \"slack\"\n",
        slack.url
    );
    let _d = Daemon::start(&env, &(config(&env, &site, &rx.url, "") + &extra));

    let mut made = Vec::new();
    for n in 1..=3 {
        made.push(site.commit(
            &format!("f{n}.html"),
            &format!("Change {n} & <more>\n\nThe body of change {n}"),
        ));
    }
    let sha = site.cap_deploy("20261120100000", "bob");
    assert_eq!(sha, made[2]);
    eventually!(rx.payloads("PostDeployment").len() == 1, "the deploy");
    let p = &rx.payloads("PostDeployment")[0];
    made.reverse();
    assert_eq!(shas(p), made, "newest first: {p}");
    assert_eq!(p["commitsTruncated"], false);
    assert_eq!(
        p["commits"][0]["message"], "Change 3 & <more>",
        "the first line only"
    );
    assert!(
        p["commits"][0]["author"]
            .as_str()
            .is_some_and(|a| !a.is_empty())
    );
    eventually!(slack.requests().len() == 1, "the Slack message");
    let text = String::from_utf8_lossy(&slack.requests()[0].body).into_owned();
    assert!(
        text.contains("*Changes*") && text.contains("Change 1 &amp; &lt;more&gt;"),
        "Slack lists the changes, escaped: {text}"
    );

    for n in 0..25 {
        site.commit(&format!("g{n}.html"), &format!("Small change {n}"));
    }
    site.cap_deploy("20261120110000", "bob");
    eventually!(rx.payloads("PostDeployment").len() == 2, "the big deploy");
    let p = &rx.payloads("PostDeployment")[1];
    assert_eq!(shas(p).len(), 20, "{p}");
    assert_eq!(p["commitsTruncated"], true);
    assert_eq!(p["commits"][0]["message"], "Small change 24");
    eventually!(slack.requests().len() == 2, "the second Slack message");
    let text = String::from_utf8_lossy(&slack.requests()[1].body).into_owned();
    assert!(text.contains("…and 15+ more"), "{text}");

    site.cap_rollback("20261120100000", "carol");
    eventually!(rx.payloads("PostDeployment").len() == 3, "the rollback");
    let p = &rx.payloads("PostDeployment")[2];
    assert_eq!(p["rollback"], true);
    assert_eq!(
        p["commits"],
        serde_json::json!([]),
        "a rollback brings no new commit: {p}"
    );
}

#[test]
fn without_a_repository_there_is_no_commits_key() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    site.plain_deploy("20261120090000");
    let rx = Receiver::start();
    let _d = Daemon::start(&env, &config(&env, &site, &rx.url, ""));
    site.plain_deploy("20261120100000");
    eventually!(rx.payloads("PostDeployment").len() == 1, "the deploy");
    let p = &rx.payloads("PostDeployment")[0];
    assert!(p["commits"].is_null(), "{p}");
    assert!(p["commitsTruncated"].is_null(), "{p}");
}
