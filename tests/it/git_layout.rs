//! The `git` layout end to end: `git push` with `updateInstead`, refused pushes,
//! `pack-refs` and `gc`, a force-push, and a bare repository with a post-receive hook.

use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::git::{self, git};
use crate::support::receiver::Receiver;
use crate::support::sites::app_config as config;

// ---- git push-to-deploy -----------------------------------------------------------------

/// A non-bare repository that accepts pushes into its checked-out branch, and a clone to
/// push from.
fn push_site(env: &TestEnv) -> (std::path::PathBuf, std::path::PathBuf) {
    let app = env.join("app");
    git::init_source(&app);
    git(
        &app,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
    let dev = env.join("dev");
    git(env.path(), &["clone", "-q", "app", "dev"]);
    (app, dev)
}

#[test]
fn git_push_with_update_instead_is_pending_deploying_success_with_author_data() {
    let env = TestEnv::new();
    let (app, dev) = push_site(&env);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &app, "", &rx.url));
    let sha = git::commit(
        &dev,
        "checkout.html",
        "<h1>checkout</h1>\n",
        "Add checkout page",
    );
    git(&dev, &["push", "-q", "origin", "main"]);
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(rx.statuses(), ["pending", "deploying", "success"]);
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], sha);
    assert_eq!(p["author"], "Jane Doe");
    assert_eq!(p["authorEmail"], "jane@example.com");
    assert_eq!(p["message"], "Add checkout page");
    assert_eq!(p["branch"], "main");
    assert_eq!(p["layout"], "git");
    assert!(app.join("checkout.html").exists());
}

#[test]
fn git_refused_push_pack_refs_and_gc_are_not_deployments_and_force_push_is() {
    let env = TestEnv::new();
    let (app, dev) = push_site(&env);
    let first = git(&app, &["rev-parse", "HEAD"]);
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &app, "", &rx.url));

    // A dirty work tree: updateInstead refuses the push.
    std::fs::write(app.join("index.html"), "edited on the server\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let second = git::commit(&dev, "b.html", "b\n", "Second");
    let refused = std::process::Command::new("git")
        .args(["push", "-q", "origin", "main"])
        .current_dir(&dev)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!refused.status.success(), "the push must be refused");
    git(&app, &["checkout", "--", "index.html"]);

    // Housekeeping moves refs around but deploys nothing.
    git(&app, &["pack-refs", "--all"]);
    git(&app, &["gc", "-q"]);

    // The same commit pushed again, now accepted: exactly one deployment.
    git(&dev, &["push", "-q", "origin", "main"]);
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the accepted push"
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], second);

    // A force-push back to the first commit is a new deployment.
    git(
        &dev,
        &["push", "-q", "-f", "origin", &format!("{first}:main")],
    );
    eventually!(rx.payloads("PostDeployment").len() == 2, "the force-push");
    d.stop();
    let p = &rx.payloads("PostDeployment")[1];
    assert_eq!(p["id"], first);
    assert_eq!(p["previousId"], second);
    assert_eq!(
        rx.statuses(),
        [
            "pending",
            "deploying",
            "success",
            "pending",
            "deploying",
            "success"
        ]
    );
}

#[test]
fn git_bare_repository_checked_out_by_a_post_receive_hook() {
    let env = TestEnv::new();
    let bare = env.join("app.git");
    let deploy = env.join("www");
    std::fs::create_dir_all(&deploy).unwrap_or_else(|e| panic!("{e}"));
    git::init_source(&env.join("dev"));
    git(env.path(), &["clone", "-q", "--bare", "dev", "app.git"]);
    let hook = bare.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nGIT_WORK_TREE='{}' git --git-dir='{}' checkout -q -f main\n",
            deploy.display(),
            bare.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    git(
        &env.join("dev"),
        &["remote", "add", "origin", bare.to_str().unwrap_or("")],
    );
    // The first deploy, as the hook does it: the baseline.
    git(
        env.path(),
        &[
            "--git-dir",
            bare.to_str().unwrap_or(""),
            "--work-tree",
            deploy.to_str().unwrap_or(""),
            "checkout",
            "-q",
            "-f",
            "main",
        ],
    );

    let rx = Receiver::start();
    let extra = format!("layout = \"git\"\nrepo = \"{}\"", bare.display());
    let d = Daemon::start(&env, &config(&env, &deploy, &extra, &rx.url));
    let sha = git::commit(&env.join("dev"), "shop.html", "shop\n", "Add the shop");
    git(&env.join("dev"), &["push", "-q", "origin", "main"]);
    eventually!(rx.payloads("PostDeployment").len() == 1, "a PostDeployment");
    d.stop();
    assert_eq!(rx.statuses(), ["pending", "deploying", "success"]);
    let p = &rx.payloads("PostDeployment")[0];
    assert_eq!(p["id"], sha);
    assert_eq!(p["message"], "Add the shop");
    assert!(deploy.join("shop.html").exists());
}
