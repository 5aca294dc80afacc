//! The `kudu` layout end to end: Kudu's deployments directory, rewritten in place as
//! Kudu does, with reads racing the writes; failures, crash leftovers, placeholders.

use std::io::Write;
use std::path::Path;

use crate::support::daemon::{Daemon, run};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;
use crate::support::sites::app_config as config;

// ---- Kudu -----------------------------------------------------------------------------

fn kudu_xml(id: &str, status: &str, complete: bool, end: Option<&str>) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<deployment>
  <id>{id}</id>
  <author>Sam Roe</author>
  <deployer>GitHub</deployer>
  <authorEmail>sam@example.com</authorEmail>
  <message>Add checkout page</message>
  <progress>step {status}</progress>
  <status>{status}</status>
  <statusText>{status} text</statusText>
  <lastSuccessEndTime />
  <receivedTime>2026-11-20T08:01:02.0000000Z</receivedTime>
  <startTime>2026-11-20T08:01:03.5000000Z</startTime>
  {}
  <complete>{}</complete>
  <is_temp>False</is_temp>
  <is_readonly>False</is_readonly>
</deployment>
"#,
        end.map_or("<endTime />".to_string(), |e| format!(
            "<endTime>{e}</endTime>"
        )),
        if complete { "True" } else { "False" }
    )
}

/// Rewrites a file in place, in two writes with a pause between, as Kudu does (no
/// temp file, no rename), so the daemon can read it half-written.
fn rewrite_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = text.split_at(text.len() / 2);
    f.write_all(a.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    f.flush().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(30));
    f.write_all(b.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
}

fn kudu_site(env: &TestEnv) -> std::path::PathBuf {
    let root = env.join("kudu");
    let deployments = root.join("deployments");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kudu/deployments");
    for id in [
        "2f45d28c063eb367ee76b3c9a4b844b673ca2ad6",
        "9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b",
    ] {
        std::fs::create_dir_all(deployments.join(id)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(
            fixtures.join(id).join("status.xml"),
            deployments.join(id).join("status.xml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::copy(fixtures.join("active"), deployments.join("active"))
        .unwrap_or_else(|e| panic!("{e}"));
    root
}

#[test]
fn kudu_fixture_directory_in_progress_deployment_is_reported_when_it_finishes() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "", &rx.url));
    // The fixture's Building deployment is in progress at first sight: tracked, reported.
    eventually!(
        rx.statuses() == ["building"],
        "building, got {:?}",
        rx.statuses()
    );
    let building = "9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b";
    let file = root.join("deployments").join(building).join("status.xml");
    let fixture = std::fs::read_to_string(&file).unwrap_or_default();
    let done = fixture
        .replace("<status>Building</status>", "<status>Success</status>")
        .replace("<complete>False</complete>", "<complete>True</complete>")
        .replace(
            "<endTime />",
            "<endTime>2024-09-05T08:04:10.2500000Z</endTime>",
        );
    rewrite_in_place(&file, &done);
    std::fs::write(root.join("deployments/active"), building).unwrap_or_else(|e| panic!("{e}"));
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], building);
    assert_eq!(p["status"], "success");
    assert_eq!(p["author"], "Sam Roe");
    assert_eq!(p["authorEmail"], "sam@example.com");
    assert_eq!(p["message"], "Add checkout page");
    assert_eq!(p["deployer"], "GitHub");
    assert_eq!(p["receivedTime"], "2024-09-05T08:01:02.0000000Z");
    assert_eq!(p["startTime"], "2024-09-05T08:01:03.5000000Z");
    assert_eq!(p["endTime"], "2024-09-05T08:04:10.2500000Z");
    assert_eq!(p["lastSuccessEndTime"], "2024-09-05T08:04:10.2500000Z");
    assert_eq!(
        p["previousId"], "2f45d28c063eb367ee76b3c9a4b844b673ca2ad6",
        "the active one"
    );
    assert_eq!(p["layout"], "kudu");
    assert_eq!(p["complete"], true);
    assert_eq!(rx.statuses(), ["building", "success"]);
}

#[test]
fn kudu_pending_building_success_rewritten_in_place_with_racing_reads() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "", &rx.url));
    eventually!(rx.statuses() == ["building"], "the fixture's building one");
    let id = "c0ffee0000000000000000000000000000000001";
    let dir = root.join("deployments").join(id);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("status.xml");
    for (status, n) in [("Pending", 2), ("Building", 3)] {
        for _ in 0..5 {
            rewrite_in_place(&file, &kudu_xml(id, status, false, None));
        }
        eventually!(
            rx.statuses().len() == n,
            "{status}, got {:?}",
            rx.statuses()
        );
    }
    for _ in 0..5 {
        rewrite_in_place(
            &file,
            &kudu_xml(id, "Success", true, Some("2026-11-20T08:05:00.0000000Z")),
        );
    }
    eventually!(
        rx.payloads("PostDeployment").iter().any(|p| p["id"] == id),
        "its PostDeployment"
    );
    d.stop();
    let mine: Vec<String> = rx
        .payloads("StatusChanged")
        .iter()
        .filter(|p| p["id"] == id)
        .map(|p| p["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(mine, ["pending", "building", "success"]);
    let p = rx
        .payloads("PostDeployment")
        .into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or_default();
    assert_eq!(p["progress"], "step Success");
    assert_eq!(p["statusText"], "Success text");
    assert_eq!(p["endTime"], "2026-11-20T08:05:00.0000000Z");
}

#[test]
fn kudu_failed_and_a_crash_left_incomplete_are_both_reported_failed() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let _d = Daemon::start(&env, &config(&env, &root, "idle_timeout = \"1s\"", &rx.url));
    let failed = "bad0000000000000000000000000000000000001";
    std::fs::create_dir_all(root.join("deployments").join(failed))
        .unwrap_or_else(|e| panic!("{e}"));
    rewrite_in_place(
        &root.join("deployments").join(failed).join("status.xml"),
        &kudu_xml(failed, "Failed", true, Some("2026-11-20T08:02:00.0000000Z")),
    );
    // The fixture's Building deployment never completes: Kudu crashed.
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "two PostDeployments, got {:?}",
        rx.payloads("PostDeployment")
    );
    let posts = rx.payloads("PostDeployment");
    let by_id = |id: &str| {
        posts
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let f = by_id(failed);
    assert_eq!(f["status"], "failed");
    assert_eq!(f["statusText"], "Failed text");
    let crashed = by_id("9b1c0e7d2a4f6e8b0c2d4e6f8a0b2c4d6e8f0a1b");
    assert_eq!(crashed["status"], "failed");
    assert!(
        crashed["statusText"]
            .as_str()
            .is_some_and(|t| t.contains("Kudu itself sends no hook")),
        "{crashed}"
    );
}

#[test]
fn kudu_truncated_file_is_not_reported_and_is_warned_about_once_stale() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "idle_timeout = \"1s\"", &rx.url));
    let id = "7777000000000000000000000000000000000001";
    std::fs::create_dir_all(root.join("deployments").join(id)).unwrap_or_else(|e| panic!("{e}"));
    let full = kudu_xml(id, "Building", false, None);
    std::fs::write(
        root.join("deployments").join(id).join("status.xml"),
        &full[..full.len() / 3],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("status.xml has been unreadable");
    assert!(
        rx.payloads("StatusChanged").iter().all(|p| p["id"] != id),
        "never reported"
    );
}

#[test]
fn kudu_temp_placeholders_and_tools_are_not_deployments() {
    let env = TestEnv::new();
    let root = kudu_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, "", &rx.url));
    eventually!(rx.statuses() == ["building"], "the fixture's building one");
    for dir in ["temp-4b1c0e7d", "tools"] {
        std::fs::create_dir_all(root.join("deployments").join(dir))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            root.join("deployments").join(dir).join("status.xml"),
            kudu_xml(dir, "Building", false, None),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // A real one after them shows the daemon has looked.
    let id = "aaaa000000000000000000000000000000000001";
    std::fs::create_dir_all(root.join("deployments").join(id)).unwrap_or_else(|e| panic!("{e}"));
    rewrite_in_place(
        &root.join("deployments").join(id).join("status.xml"),
        &kudu_xml(id, "Pending", false, None),
    );
    eventually!(
        rx.statuses().len() == 2,
        "the real one, got {:?}",
        rx.statuses()
    );
    let ids: Vec<String> = rx
        .payloads("StatusChanged")
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        !ids.iter().any(|i| i.starts_with("temp-") || i == "tools"),
        "{ids:?}"
    );
    let out = run(&env, &["check", "--config", &d.config.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("layout: kudu (found deployments/ with status.xml files)"),
        "{text}"
    );
    assert!(text.contains("deployments: 3"), "{text}");
}
