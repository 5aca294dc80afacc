//! Each tool's deploy, done with the same file operations the tool does (SPEC §2.1):
//! `git archive` into the release, `ln -s` + rename for the switch, appended log lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::env::TestEnv;
use super::git::{self, git};

/// A deployment directory plus the source repository its releases come from.
pub struct Site {
    pub root: PathBuf,
    pub src: PathBuf,
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(line.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
}

fn sh(script: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "sh -c {script:?} failed (install tar/coreutils)");
}

impl Site {
    fn new(env: &TestEnv) -> Site {
        let src = env.join("src");
        git::init_source(&src);
        let root = env.join("site");
        std::fs::create_dir_all(root.join("releases")).unwrap_or_else(|e| panic!("{e}"));
        Site { root, src }
    }

    pub fn release_dir(&self, name: &str) -> PathBuf {
        self.root.join("releases").join(name)
    }

    /// A new commit in the source repository; returns its SHA.
    pub fn commit(&self, file: &str, message: &str) -> String {
        git::commit(&self.src, file, &format!("{message}\n"), message)
    }

    /// `git archive <rev> | tar -x` from `repo` into the release.
    fn archive(&self, repo: &Path, rev: &str, name: &str) -> String {
        let dir = self.release_dir(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        sh(&format!(
            "git -c safe.directory='*' -C '{}' archive {rev} | tar -x -f - -C '{}'",
            repo.display(),
            dir.display()
        ));
        git(repo, &["rev-parse", rev])
    }

    // ---- Capistrano ----

    /// A Capistrano site: `repo/` is a bare mirror of the source.
    pub fn capistrano(env: &TestEnv) -> Site {
        let site = Site::new(env);
        git(env.path(), &["clone", "-q", "--mirror", "src", "site/repo"]);
        site
    }

    /// git:update — the mirror fetches.
    pub fn cap_update(&self) {
        git(&self.root.join("repo"), &["remote", "update", "--prune"]);
    }

    /// git:create_release — mkdir + `git archive | tar -x`.
    pub fn cap_create_release(&self, name: &str) -> String {
        self.archive(&self.root.join("repo"), "main", name)
    }

    /// deploy:set_current_revision.
    pub fn write_revision(&self, name: &str, sha: &str) {
        std::fs::write(self.release_dir(name).join("REVISION"), format!("{sha}\n"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// deploy:symlink:release — `ln -s <release> releases/current; mv releases/current <root>`.
    pub fn cap_switch(&self, name: &str) {
        let tmp = self.root.join("releases").join("current");
        std::os::unix::fs::symlink(self.release_dir(name), &tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, self.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// deploy:log_revision.
    pub fn cap_log(&self, name: &str, sha: &str, user: &str) {
        append(
            &self.root.join("revisions.log"),
            &format!("Branch main (at {sha}) deployed as release {name} by {user}\n"),
        );
    }

    /// A whole `cap deploy`, no pauses.
    pub fn cap_deploy(&self, name: &str, user: &str) -> String {
        self.cap_update();
        let sha = self.cap_create_release(name);
        self.write_revision(name, &sha);
        self.cap_switch(name);
        self.cap_log(name, &sha, user);
        sha
    }

    /// `cap deploy:rollback`.
    pub fn cap_rollback(&self, to: &str, user: &str) {
        self.cap_switch(to);
        append(
            &self.root.join("revisions.log"),
            &format!("{user} rolled back to release {to}\n"),
        );
    }

    // ---- Deployer ----

    /// A Deployer site: `.dep/repo` is its bare mirror.
    pub fn deployer(env: &TestEnv) -> Site {
        let site = Site::new(env);
        std::fs::create_dir_all(site.root.join(".dep")).unwrap_or_else(|e| panic!("{e}"));
        git(
            env.path(),
            &["clone", "-q", "--mirror", "src", "site/.dep/repo"],
        );
        site
    }

    /// deploy:lock.
    pub fn dep_lock(&self, user: &str) {
        std::fs::write(self.root.join(".dep/deploy.lock"), format!("{user}\n"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// deploy:unlock.
    pub fn dep_unlock(&self) {
        std::fs::remove_file(self.root.join(".dep/deploy.lock")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// deploy:release + deploy:update_code: the releases_log line, the release dir, the
    /// `release` symlink (relative), the code and `REVISION`.
    pub fn dep_release(&self, name: &str, user: &str) -> String {
        git(
            &self.root.join(".dep/repo"),
            &["remote", "update", "--prune"],
        );
        append(
            &self.root.join(".dep/releases_log"),
            &format!(
                "{{\"created_at\":\"2026-11-20T10:00:00+01:00\",\"release_name\":\"{name}\",\"user\":\"{user}\",\"target\":\"main\"}}\n"
            ),
        );
        std::fs::create_dir_all(self.release_dir(name)).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(format!("releases/{name}"), self.root.join("release"))
            .unwrap_or_else(|e| panic!("{e}"));
        let sha = self.archive(&self.root.join(".dep/repo"), "main", name);
        self.write_revision(name, &sha);
        sha
    }

    /// deploy:symlink — `mv -T release current`.
    pub fn dep_switch(&self) {
        std::fs::rename(self.root.join("release"), self.root.join("current"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // ---- Ansible deploy_helper / plain ----

    /// A plain site (also deploy_helper's): no mirror, releases are git clones.
    pub fn plain(env: &TestEnv) -> Site {
        Site::new(env)
    }

    /// Another plain site, at `<env>/<name>`, sharing the source repository.
    pub fn plain_at(env: &TestEnv, name: &str) -> Site {
        let src = env.join("src");
        if !src.join(".git").exists() {
            git::init_source(&src);
        }
        let root = env.join(name);
        std::fs::create_dir_all(root.join("releases")).unwrap_or_else(|e| panic!("{e}"));
        Site { root, src }
    }

    /// The playbook's `git` task into the new release, then the DEPLOY_UNFINISHED marker.
    pub fn ansible_create(&self, name: &str) -> String {
        let dir = self.release_dir(name);
        git(
            &self.root.join("releases"),
            &["clone", "-q", self.src.to_str().unwrap_or_default(), name],
        );
        std::fs::write(dir.join("DEPLOY_UNFINISHED"), "").unwrap_or_else(|e| panic!("{e}"));
        git(&dir, &["rev-parse", "HEAD"])
    }

    /// deploy_helper state=finalize: remove the marker, then `current.DEPLOY_UNFINISHED`
    /// renamed over `current`.
    pub fn ansible_finalize(&self, name: &str) {
        std::fs::remove_file(self.release_dir(name).join("DEPLOY_UNFINISHED"))
            .unwrap_or_else(|e| panic!("{e}"));
        let tmp = self.root.join("current.DEPLOY_UNFINISHED");
        std::os::unix::fs::symlink(self.release_dir(name), &tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, self.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A plain release: extract, write `REVISION`, then switch with `ln -s` + rename.
    pub fn plain_deploy(&self, name: &str) -> String {
        let sha = self.archive(&self.src, "main", name);
        self.write_revision(name, &sha);
        let tmp = self.root.join(".current.tmp");
        std::os::unix::fs::symlink(format!("releases/{name}"), &tmp)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, self.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
        sha
    }
}

/// A config for one site and one hook that wants every event.
pub fn config(env: &TestEnv, site: &Site, hook_url: &str, extra_site: &str) -> String {
    format!(
        r#"[daemon]
state_dir = "{state}"
host_name = "test-host"

[[site]]
name = "shop"
path = "{root}"
settle = "300ms"
{extra_site}

[[hook]]
name = "all"
url = "{hook_url}"
events = ["StatusChanged", "PostDeployment"]
retry = ["100ms", "200ms"]
"#,
        state = env.join("state").display(),
        root = site.root.display(),
    )
}

/// A config with site `shop` at `site` (host `test-host`) and the given `[[hook]]` tables.
pub fn shop_config(env: &TestEnv, site: &Site, hooks: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}",
        env.join("state").display(),
        site.root.display()
    )
}
