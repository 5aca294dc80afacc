//! The real tools, not their file operations: Debian's `capistrano` (cap 3, on SSHKit's
//! local backend, so no SSH) and `ansible` (`community.general.deploy_helper` with the
//! git module cloning into the release), each deploying a real git repository while the
//! daemon watches. For a success and for a failure, every StatusChanged and
//! PostDeployment of one deployment carries one id: the deployed commit's SHA.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::daemon::Daemon;
use crate::support::env::TestEnv;
use crate::support::git::{self, git};
use crate::support::receiver::Receiver;
use crate::support::tools::have;

/// The daemon's config: one site, one hook for both events; a failure is found by
/// silence after `idle_timeout`.
fn config(env: &TestEnv, root: &Path, hook_url: &str) -> String {
    format!(
        r#"[daemon]
state_dir = "{state}"
host_name = "test-host"

[[site]]
name = "shop"
path = "{root}"
idle_timeout = "4s"

[[hook]]
name = "all"
url = "{hook_url}"
events = ["StatusChanged", "PostDeployment"]
retry = ["100ms"]
"#,
        state = env.join("state").display(),
        root = root.display(),
    )
}

/// Every payload, in arrival order, as (event, status, id, release).
fn payloads(rx: &Receiver) -> Vec<(String, String, String, String)> {
    rx.requests()
        .iter()
        .map(|r| r.json())
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
            (s("event"), s("status"), s("id"), s("release"))
        })
        .collect()
}

/// Waits for the PostDeployment of `release`, then checks that one deployment was
/// reported about it, under one id, `sha`: its StatusChanged payloads in increasing
/// order ending in `end` (a pending one before the release existed included), one
/// PostDeployment.
fn assert_one_id(rx: &Receiver, release: &str, sha: &str, end: &str) {
    eventually!(
        payloads(rx)
            .iter()
            .any(|p| p.0 == "PostDeployment" && p.3 == release),
        "the PostDeployment of {release}: {:?}",
        payloads(rx)
    );
    let all = payloads(rx);
    let about: Vec<_> = all.iter().filter(|p| p.3 == release).collect();
    assert!(
        about.iter().all(|p| p.2 == sha),
        "one deployment, one id ({sha}): {all:?}"
    );
    let of_sha: Vec<_> = all.iter().filter(|p| p.2 == sha).collect();
    assert!(
        of_sha.iter().all(|p| p.3 == release || p.3.is_empty()),
        "the id names this release's deployment only: {all:?}"
    );
    let posts: Vec<_> = of_sha.iter().filter(|p| p.0 == "PostDeployment").collect();
    assert_eq!(posts.len(), 1, "{all:?}");
    assert_eq!(posts[0].1, end, "{all:?}");
    let order = ["pending", "building", "deploying", "success", "failed"];
    let rank = |s: &str| order.iter().position(|o| *o == s).unwrap_or(99);
    let changed: Vec<&str> = of_sha
        .iter()
        .filter(|p| p.0 == "StatusChanged")
        .map(|p| p.1.as_str())
        .collect();
    assert!(changed.len() >= 2, "more than the end: {changed:?}");
    assert!(
        changed.windows(2).all(|w| rank(w[0]) < rank(w[1])),
        "{changed:?}"
    );
    assert_eq!(changed.last(), Some(&end), "{changed:?}");
}

fn run(cmd: &mut Command, what: &str) -> bool {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        eprintln!(
            "{what} failed (as a failure test wants, or not):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

// ---- Capistrano ---------------------------------------------------------------------

struct Cap {
    project: PathBuf,
    home: PathBuf,
}

impl Cap {
    /// A Capistrano project deploying `src` to `deploy_to` on this machine.
    fn new(env: &TestEnv, src: &Path, deploy_to: &Path) -> Cap {
        let project = env.join("cap");
        std::fs::create_dir_all(project.join("config/deploy")).unwrap_or_else(|e| panic!("{e}"));
        let write = |p: &str, text: String| {
            std::fs::write(project.join(p), text).unwrap_or_else(|e| panic!("{e}"))
        };
        write(
            "Capfile",
            "require \"capistrano/setup\"\nrequire \"capistrano/deploy\"\n\
             require \"capistrano/scm/git\"\ninstall_plugin Capistrano::SCM::Git\n"
                .into(),
        );
        write(
            "config/deploy.rb",
            format!(
                r#"set :application, "shop"
set :repo_url, "{src}"
set :branch, "main"
set :deploy_to, "{deploy_to}"
set :pty, false
# Every command runs on this machine: no SSH.
set :sshkit_backend, SSHKit::Backend::Local
# The test names each release (two deploys may fall in one second).
Capistrano::DSL::Paths.send(:define_method, :now) {{ ENV.fetch("RELEASE") }}

task :fail_if_asked do
  on roles(:app) do
    execute :false if ENV["FAIL"] == "1"
  end
end
after "deploy:updated", "fail_if_asked"
"#,
                src = src.display(),
                deploy_to = deploy_to.display()
            ),
        );
        write(
            "config/deploy/production.rb",
            "server \"localhost\", roles: %w[app]\n".into(),
        );
        Cap {
            project,
            home: env.join("home"),
        }
    }

    /// `cap production deploy` of a release named `release`; whether it succeeded.
    fn deploy(&self, release: &str, fail: bool) -> bool {
        run(
            Command::new("cap")
                .args(["production", "deploy"])
                .current_dir(&self.project)
                .env("HOME", &self.home)
                .env("USER", "alice")
                .env("RELEASE", release)
                .env("FAIL", if fail { "1" } else { "0" })
                .env("GIT_CONFIG_NOSYSTEM", "1"),
            "cap production deploy",
        )
    }
}

#[test]
#[cfg_attr(
    not(tool_cap),
    ignore = "Capistrano is needed: apt-get install capistrano"
)]
fn capistrano_success_and_failure_each_carry_one_id_the_sha() {
    if !have("cap", "capistrano") {
        return;
    }
    let env = TestEnv::new();
    let src = env.join("src");
    git::init_source(&src);
    let root = env.join("site");
    let cap = Cap::new(&env, &src, &root);
    assert!(cap.deploy("20270101000000", false), "the first deploy");
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, &rx.url));

    let sha = git::commit(&src, "checkout.html", "<h1>checkout</h1>\n", "Add checkout");
    assert!(cap.deploy("20270101000100", false));
    assert_one_id(&rx, "20270101000100", &sha, "success");

    let sha = git::commit(&src, "broken.html", "<h1>oops</h1>\n", "Break the build");
    assert!(!cap.deploy("20270101000200", true), "the deploy fails");
    assert_one_id(&rx, "20270101000200", &sha, "failed");
    d.stop();
    // Nothing else was reported: no other id, no other release.
    let ids: std::collections::BTreeSet<String> = payloads(&rx).into_iter().map(|p| p.2).collect();
    assert_eq!(ids.len(), 2, "{:?}", payloads(&rx));
}

// ---- Ansible deploy_helper ------------------------------------------------------------

/// The playbook of deploy_helper's documentation: initialise, clone into the new
/// release, mark it unfinished, (fail when asked,) finalize.
fn playbook(env: &TestEnv, src: &Path, root: &Path) -> PathBuf {
    let path = env.join("deploy.yml");
    std::fs::write(
        &path,
        format!(
            r#"- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Initialise the deploy root
      community.general.deploy_helper:
        path: "{root}"
        release: "{{{{ release }}}}"
    - name: Clone the project into the new release
      ansible.builtin.git:
        repo: "{src}"
        dest: "{{{{ deploy_helper.new_release_path }}}}"
        version: main
    - name: Mark the release unfinished
      ansible.builtin.file:
        path: "{{{{ deploy_helper.new_release_path }}}}/{{{{ deploy_helper.unfinished_filename }}}}"
        state: touch
    - name: Fail when asked
      ansible.builtin.command: "false"
      when: fail | bool
    - name: Finalize
      community.general.deploy_helper:
        path: "{root}"
        release: "{{{{ deploy_helper.new_release }}}}"
        state: finalize
"#,
            root = root.display(),
            src = src.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

fn ansible_deploy(env: &TestEnv, playbook: &Path, release: &str, fail: bool) -> bool {
    let home = env.join("home");
    run(
        Command::new("ansible-playbook")
            .args(["-i", "localhost,", "-e"])
            .arg(format!("release={release} fail={fail}"))
            .arg(playbook)
            .env("HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join(".ansible/tmp"))
            .env("ANSIBLE_LOCALHOST_WARNING", "false")
            .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1"),
        "ansible-playbook",
    )
}

#[test]
#[cfg_attr(
    not(tool_ansible),
    ignore = "Ansible is needed: apt-get install ansible"
)]
fn ansible_deploy_helper_success_and_failure_each_carry_one_id_the_sha() {
    if !have("ansible-playbook", "ansible") {
        return;
    }
    let env = TestEnv::new();
    let src = env.join("src");
    git::init_source(&src);
    let root = env.join("site");
    let book = playbook(&env, &src, &root);
    assert!(ansible_deploy(&env, &book, "20270101000000", false));
    let rx = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &root, &rx.url));

    let sha = git::commit(&src, "checkout.html", "<h1>checkout</h1>\n", "Add checkout");
    assert!(ansible_deploy(&env, &book, "20270101000100", false));
    assert_one_id(&rx, "20270101000100", &sha, "success");
    assert_eq!(
        git(
            &root.join("releases/20270101000100"),
            &["rev-parse", "HEAD"]
        ),
        sha,
        "the release is a clone of the commit"
    );

    let sha = git::commit(&src, "broken.html", "<h1>oops</h1>\n", "Break the build");
    assert!(!ansible_deploy(&env, &book, "20270101000200", true));
    assert_one_id(&rx, "20270101000200", &sha, "failed");
    d.stop();
    let ids: std::collections::BTreeSet<String> = payloads(&rx).into_iter().map(|p| p.2).collect();
    assert_eq!(ids.len(), 2, "{:?}", payloads(&rx));
}
