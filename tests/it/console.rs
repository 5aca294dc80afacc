//! The web console in a real browser: Debian's `chromium`, headless, driven by
//! `playwright-core` (`console_browser.js`), loopback only. A deploy made by the test is
//! shown (its hostile commit message as text); without the token nothing of it is; a
//! deploy made while the page is open appears without a reload; redeliver and "retry
//! every failure matching" work from the page and the receivers get them; with
//! JavaScript off the read views still work. Screenshots of each view (desktop and a
//! phone's width) go to `$CARGO_TARGET_TMPDIR/console/`.

use std::time::Duration;

use crate::support::api::Client;
use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, shop_config};
use crate::support::env::{TestEnv, wait_until};
use crate::support::netns;
use crate::support::receiver::Receiver;

const TOKEN: &str = "console-test-token";
const MESSAGE: &str = "First deploy <script>alert(1)</script> <img src=x onerror=alert(2)>";
const SECOND: &str = "Second deploy, while the page is open";

#[test]
#[cfg_attr(
    not(tool_browser),
    ignore = "chromium and playwright-core are needed: apt-get install chromium; npm install -g playwright-core@1.57"
)]
fn the_console_in_a_real_browser() {
    if !netns::have("chromium", &["--version"], "apt-get install chromium") {
        return;
    }
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let ops = Receiver::start();
    let flaky = Receiver::start();
    // Its first deploy dies (two 503s); everything after is answered.
    flaky.behave(|b| b.statuses = [503, 503].into());
    std::fs::write(env.join("token"), format!("{TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    let hooks = format!(
        "[[hook]]\nname = \"ops\"\nurl = \"{}\"\n\n\
         [[hook]]\nname = \"flaky\"\nurl = \"{}\"\nretry = [\"100ms\"]\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        ops.url,
        flaky.url,
        env.join("token").display()
    );
    let d = Daemon::start(&env, &shop_config(&env, &site, &hooks));
    let port = d.api_port();
    site.commit("a.html", MESSAGE);
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        ops.payloads("PostDeployment").len() == 1,
        "the first deploy"
    );
    let api = Client::tcp(port).with_token(TOKEN);
    eventually!(
        api.get("/api/deliveries?hook=flaky&outcome=dead")
            .json()
            .as_array()
            .is_some_and(|l| l.len() == 1),
        "flaky's first delivery dead"
    );

    // The page asks for a second deploy (a file), the test makes it, then says so.
    let (ask, done) = (env.join("deploy-now"), env.join("deployed"));
    let deployer = {
        let (ask, done, root, src) = (
            ask.clone(),
            done.clone(),
            site.root.clone(),
            site.src.clone(),
        );
        std::thread::spawn(move || {
            wait_until(
                || ask.exists(),
                Duration::from_secs(120),
                || "the page asking for the second deploy".to_string(),
            );
            let site = Site { root, src };
            site.commit("b.html", SECOND);
            site.cap_deploy("20261120110000", "carol");
            std::fs::write(&done, "").unwrap_or_else(|e| panic!("{e}"));
        })
    };
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("{e}"));
    let npm_root = std::process::Command::new("npm")
        .args(["root", "-g"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let out = std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/console_browser.js"
        ))
        .env("NODE_PATH", &npm_root)
        .env("BASE", format!("http://127.0.0.1:{port}"))
        .env("TOKEN", TOKEN)
        .env("SHOTS", &shots)
        .env(
            "DEPLOY",
            format!(
                "touch '{}' && while [ ! -e '{}' ]; do sleep 0.05; done",
                ask.display(),
                done.display()
            ),
        )
        .env("MESSAGE", MESSAGE)
        .env("SECOND", SECOND)
        .env("HOME", env.join("home"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let facts: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no facts from the browser:\n{stdout}\n{stderr}"));
    let _ = deployer.join();
    let report = format!("{facts:#}\n{stderr}");

    assert_eq!(facts["errors"], serde_json::json!([]), "{report}");
    // Without the token: the login page, nothing of the deploy.
    assert_eq!(facts["anon_url"], "/ui/login", "{report}");
    assert_eq!(facts["anon_shows_deploy"], false, "{report}");
    // With it: the deploy, its message as text; no script of it ran.
    assert_eq!(facts["after_login"], "/", "{report}");
    assert_eq!(facts["message_text"], MESSAGE, "{report}");
    assert_eq!(facts["images_in_messages"], 0, "{report}");
    assert_eq!(facts["dialogs"], 0, "{report}");
    assert_eq!(
        facts["scripts"], 1,
        "only the console's own script: {report}"
    );
    // Live.
    assert_eq!(facts["live_without_reload"], true, "{report}");
    // One deployment's page: its transitions, ending in success (how many depends on
    // how many reads saw the deploy: a busy machine may see it only done), the commit
    // it shipped, and what went to each hook.
    assert!(
        facts["deployment_transitions"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{report}"
    );
    assert!(
        facts["deployment_last_transition"]
            .as_str()
            .is_some_and(|t| t.contains("success")),
        "{report}"
    );
    assert_eq!(facts["deployment_commits"], 1, "{report}");
    // The DORA page: one site, its deploys counted (the first deploy and the second).
    assert_eq!(facts["dora_rows"], 1, "{report}");
    assert!(
        facts["dora_first_row"]
            .as_str()
            .is_some_and(|r| r.contains("shop") && r.contains("0% (0 of 2)")),
        "{report}"
    );
    assert_eq!(facts["deployment_deliveries"], 2, "{report}");
    // A ping sent from the page arrives.
    assert_eq!(facts["after_ping"], "/ui/deliveries?hook=ops", "{report}");
    eventually!(
        ops.requests()
            .iter()
            .any(|r| r.header("x-deployhook-event") == Some("ping")),
        "the ping at ops"
    );
    // The log, a delivery, a redelivery that arrives.
    assert!(
        facts["log_rows"].as_u64().is_some_and(|n| n >= 2),
        "{report}"
    );
    assert_eq!(facts["detail_has_body"], true, "{report}");
    assert_eq!(facts["after_redeliver"], "/ui/deliveries", "{report}");
    eventually!(
        ops.payloads("PostDeployment").len() == 3,
        "two deploys and the redelivery at ops: {}",
        ops.requests().len()
    );
    // Retry every dead one of flaky: one, confirmed, and flaky gets it.
    assert_eq!(facts["dead_rows"], 1, "{report}");
    assert!(
        facts["confirm_text"]
            .as_str()
            .is_some_and(|t| t.contains("1 delivery matches")),
        "{report}"
    );
    assert!(
        facts["after_retry"]
            .as_str()
            .is_some_and(|t| t.contains("retried=1")),
        "{report}"
    );
    eventually!(
        flaky
            .requests()
            .iter()
            .filter(|r| r.answered == 200 && r.json()["message"] == MESSAGE)
            .count()
            == 1,
        "the dead delivery sent again and answered"
    );
    // JavaScript off.
    assert_eq!(facts["nojs_shows_deploy"], true, "{report}");
    for name in [
        "login",
        "overview",
        "deployment",
        "deliveries",
        "delivery",
        "retry",
    ] {
        for size in ["desktop", "phone"] {
            let shot = shots.join(format!("{name}-{size}.png"));
            assert!(
                std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
                "{}",
                shot.display()
            );
        }
    }
    drop(d);
}
