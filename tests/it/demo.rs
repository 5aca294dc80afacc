//! The README.md's first command: `deployhook demo` runs a real deploy end to end.

use crate::support::daemon::run;
use crate::support::env::TestEnv;

#[test]
fn demo_reports_a_capistrano_deploy_with_valid_signatures() {
    let env = TestEnv::new();
    let o = run(&env, &["demo"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "StatusChanged         new -> pending",
        "pending -> building",
        "building -> deploying",
        "deploying -> success",
        "event=PostDeployment",
        "\"author\": \"Jane Doe\"",
        "\"message\": \"Add checkout page\"",
        "\"complete\": true",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("INVALID"), "{stdout}");
    assert_eq!(stdout.matches("signature=valid").count(), 1);
    assert_eq!(stdout.matches("signature valid").count(), 4);
    // The scratch directory is cleaned up.
    let left: Vec<_> = std::fs::read_dir(env.path())
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("deployhook-demo")
                })
                .count()
        })
        .into_iter()
        .collect();
    assert_eq!(left, [0]);
}
