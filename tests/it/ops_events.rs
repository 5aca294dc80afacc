//! Operational events across a receiver outage: `HookFailing` once the run of failures
//! reaches `failing_after`, `DeliveryDead` when a delivery's retries are used up,
//! `HookRecovered` at the next 2xx, `HookDisabled` at a 410 — in that order, in words for
//! a Slack hook, and never to the hook they are about (which asked for them all).

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

const OPS: [&str; 4] = [
    "HookFailing",
    "DeliveryDead",
    "HookRecovered",
    "HookDisabled",
];

#[test]
fn operational_events_arrive_in_order_and_never_at_the_hook_they_are_about() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let (ci, ops, audit) = (Receiver::start(), Receiver::start(), Receiver::start());
    ci.behave(|b| b.statuses = [500, 500, 500, 500].into());
    let config = format!(
        r#"[daemon]
state_dir = "{state}"
host_name = "web-1"

[[site]]
name = "shop"
path = "{path}"
settle = "300ms"

# Wants everything, its own troubles included: those never come to it.
[[hook]]
name = "ci"
url = "{ci}"
events = ["PostDeployment", "HookFailing", "HookRecovered", "HookDisabled", "DeliveryDead"]
retry = ["100ms", "100ms", "100ms"]
failing_after = 3

[[hook]]
name = "ops"
url = "{ops}"
format = "slack"
events = ["HookFailing", "HookRecovered", "HookDisabled", "DeliveryDead"]

[[hook]]
name = "audit"
url = "{audit}"
events = ["HookFailing", "HookRecovered", "HookDisabled", "DeliveryDead"]
"#,
        state = env.join("state").display(),
        path = site.root.display(),
        ci = ci.url,
        ops = ops.url,
        audit = audit.url,
    );
    let d = Daemon::start(&env, &config);
    let audited = || -> Vec<String> {
        audit
            .requests()
            .iter()
            .map(|r| r.event().to_string())
            .collect()
    };

    // Four 500s: failing at the third, dead at the fourth (retries used up).
    let sha = site.cap_deploy("20261120090000", "jane");
    eventually!(
        audited().len() == 2,
        "failing and dead, got {:?}",
        audited()
    );
    // The next deploy's delivery gets a 200: recovered.
    site.commit("b.txt", "second");
    site.cap_deploy("20261120090100", "jane");
    eventually!(audited().len() == 3, "recovered, got {:?}", audited());
    // A 410: the hook is disabled.
    ci.behave(|b| b.statuses = [410].into());
    site.commit("c.txt", "third");
    site.cap_deploy("20261120090200", "jane");
    eventually!(audited().len() == 4, "disabled, got {:?}", audited());
    assert_eq!(audited(), OPS);

    let events: Vec<serde_json::Value> = audit.requests().iter().map(|r| r.json()).collect();
    for (e, kind) in events.iter().zip(OPS) {
        assert_eq!(e["event"], kind);
        assert_eq!(e["hookName"], "ci");
        assert_eq!(e["hostName"], "web-1");
    }
    assert_eq!(events[0]["failuresInARow"], 3);
    assert_eq!(events[0]["lastStatus"], 500);
    assert_eq!(events[1]["deliveryEvent"], "PostDeployment");
    assert_eq!(events[2]["failuresInARow"], 4, "recovered after all four");
    assert_eq!(events[3]["reason"], "the receiver answered 410 Gone");
    assert_eq!(events[3]["lastStatus"], 410);

    // In words for Slack, in the same order.
    let texts: Vec<String> = ops
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(
        texts[0],
        "hook ci on web-1 is failing: 3 attempts failed in a row (last: HTTP 500)"
    );
    assert!(
        texts[1].starts_with("a PostDeployment delivery of hook ci on web-1 is dead"),
        "{}",
        texts[1]
    );
    assert_eq!(
        texts[2],
        "hook ci on web-1 has recovered after 4 failed attempts"
    );
    assert!(
        texts[3].starts_with("hook ci on web-1 is disabled: the receiver answered 410 Gone"),
        "{}",
        texts[3]
    );

    // ci saw only deployments: 4 + 1 + 1 attempts, none of them about itself.
    let seen: Vec<String> = ci
        .requests()
        .iter()
        .map(|r| r.event().to_string())
        .collect();
    assert_eq!(seen, ["PostDeployment"; 6], "{seen:?}");
    assert_eq!(ci.requests()[0].json()["id"], sha.as_str());
    let (ok, status) = d.cli(&["status"]);
    assert!(
        ok && status.contains("hook ci: DISABLED (the receiver answered 410 Gone)"),
        "{status}"
    );
}
