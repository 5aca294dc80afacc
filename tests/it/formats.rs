//! What each receiver gets (issue 12): signing-key rotation, CloudEvents, CDEvents,
//! Slack and templates — each checked by an independent implementation where one exists
//! (the `standardwebhooks` and `cloudevents` SDKs, the CDEvents schemas, JSON parsers).

use crate::support::daemon::Daemon;
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::python;
use crate::support::receiver::{Receiver, Request};

/// A config with one Capistrano site and the given `[[hook]]` tables.
fn config(env: &TestEnv, site: &Site, hooks: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}",
        env.join("state").display(),
        site.root.display()
    )
}

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
