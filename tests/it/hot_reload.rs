//! Reload from the file: an edit of the config file reloads like SIGHUP (validated
//! first, the old config kept on error, an attempt in flight not aborted), and so do an
//! editor's write-then-rename and a Kubernetes ConfigMap's `..data` symlink swap.
//! `deployhook reload` validates before it signals, and reports the daemon's verdict
//! (which alone can read systemd credentials).

use std::path::Path;

use crate::support::daemon::{self, Daemon};
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn count_logs(d: &Daemon<'_>, needle: &str) -> usize {
    d.logs().iter().filter(|l| l.contains(needle)).count()
}

fn with_hook(cfg: &str, name: &str, url: &str) -> String {
    format!("{cfg}\n[[hook]]\nname = \"{name}\"\nurl = \"{url}\"\nevents = [\"PostDeployment\"]\n")
}

#[test]
fn an_edit_of_the_config_file_reloads_it_without_aborting_an_attempt_in_flight() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let slow = Receiver::start();
    slow.behave(|b| b.delay = Some(std::time::Duration::from_secs(2)));
    let added = Receiver::start();
    let cfg = config(&env, &site, &slow.url, "");
    let d = Daemon::start(&env, &cfg);
    site.commit("a.html", "In flight during the edit");
    site.cap_deploy("20261120100000", "bob");
    eventually!(!slow.requests().is_empty(), "an attempt in flight");

    // Edited in place: a new hook.
    write(&d.config, &with_hook(&cfg, "added", &added.url));
    d.wait_log("config file changed: reloading");
    d.wait_log("config reloaded");
    assert!(d.has_log("hook worker started hook=added"));
    // Only the attempt in flight is slow.
    slow.behave(|b| b.delay = None);
    eventually!(
        slow.payloads("PostDeployment").len() == 1,
        "the attempt in flight completes"
    );

    site.commit("b.html", "After the edit");
    site.cap_deploy("20261120110000", "carol");
    eventually!(
        added.payloads("PostDeployment").len() == 1,
        "the new hook gets the next deploy"
    );

    // A broken edit, saved as editors do (write a temp file, rename it over).
    let broken = with_hook(&cfg, "added", &added.url).replace("[[site]]", "colour = 1\n[[site]]");
    let tmp = env.join("deployhook.toml.swp");
    write(&tmp, &broken);
    std::fs::rename(&tmp, &d.config).unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("reload rejected");
    assert!(d.has_log("colour: unknown field"), "{:?}", d.logs());
    site.commit("c.html", "After the broken edit");
    site.cap_deploy("20261120120000", "dave");
    eventually!(
        added.payloads("PostDeployment").len() == 2,
        "the running config keeps delivering"
    );
    eventually!(
        slow.payloads("PostDeployment").len() == 3,
        "to both hooks: {:?}",
        slow.statuses()
    );
    let ids: Vec<String> = slow
        .requests()
        .iter()
        .filter_map(|r| r.header("x-deployhook-delivery").map(str::to_string))
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "nothing sent twice: {ids:?}");
    assert_eq!(
        count_logs(&d, "config reloaded"),
        1,
        "one reload per edit: {:?}",
        d.logs()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_configmap_data_swap_reloads() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let old = Receiver::start();
    let new = Receiver::start();
    // What the kubelet makes of a ConfigMap volume.
    let dir = env.join("configmap");
    let first = dir.join("..2026_12_01_10_00_00.000000001");
    std::fs::create_dir_all(&first).unwrap_or_else(|e| panic!("{e}"));
    write(
        &first.join("deployhook.toml"),
        &config(&env, &site, &old.url, ""),
    );
    let link = |target: &str, at: &Path| {
        std::os::unix::fs::symlink(target, at).unwrap_or_else(|e| panic!("{e}"))
    };
    link("..2026_12_01_10_00_00.000000001", &dir.join("..data"));
    link("..data/deployhook.toml", &dir.join("deployhook.toml"));
    let d = Daemon::start_with(&env, &dir.join("deployhook.toml"), &[]);

    // The swap: a new timestamped directory, `..data_tmp` pointing at it renamed over
    // `..data`, the old directory removed.
    let second = dir.join("..2026_12_01_10_05_00.000000002");
    std::fs::create_dir_all(&second).unwrap_or_else(|e| panic!("{e}"));
    write(
        &second.join("deployhook.toml"),
        &config(&env, &site, &new.url, ""),
    );
    link("..2026_12_01_10_05_00.000000002", &dir.join("..data_tmp"));
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&first).unwrap_or_else(|e| panic!("{e}"));
    d.wait_log("config reloaded");

    site.commit("a.html", "After the swap");
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        new.payloads("PostDeployment").len() == 1,
        "the hook of the new ConfigMap gets it"
    );
    assert!(old.payloads("PostDeployment").is_empty());

    // And the next swap too (the watch follows the new directory).
    let third = dir.join("..2026_12_01_10_10_00.000000003");
    std::fs::create_dir_all(&third).unwrap_or_else(|e| panic!("{e}"));
    write(
        &third.join("deployhook.toml"),
        &config(&env, &site, &old.url, ""),
    );
    link("..2026_12_01_10_10_00.000000003", &dir.join("..data_tmp"));
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&second).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        count_logs(&d, "config reloaded") == 2,
        "the second swap reloads: {:?}",
        d.logs()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn deployhook_reload_validates_before_it_signals() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let rx = Receiver::start();
    let cfg = config(&env, &site, &rx.url, "");
    let d = Daemon::start(&env, &cfg);
    let config_arg = d.config.to_string_lossy().into_owned();

    // Unchanged file: only the signal can make this reload; the daemon is found by
    // the pid in its lock file.
    let out = daemon::run(&env, &["reload", "--config", &config_arg]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("pid {}) reloaded it", d.pid())),
        "{out:?}"
    );
    d.wait_log("config reloaded");

    // A broken config in another file: reported with its line, and no signal sent.
    let broken = env.join("broken.toml");
    write(&broken, &cfg.replace("[[hook]]", "colour = 1\n[[hook]]"));
    let out = daemon::run(
        &env,
        &[
            "reload",
            "--config",
            &broken.to_string_lossy(),
            "--pid",
            &d.pid().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("colour: unknown field"), "{err}");
    // A sentinel: one more reload by signal. Once it is answered, the daemon's count of
    // reloads (its answer file) says whether the broken one signalled too.
    let out = daemon::run(&env, &["reload", "--config", &config_arg]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let answer = std::fs::read_to_string(env.join("state").join("reload.status"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answer,
        format!("{} 2 ok\n", d.pid()),
        "two reloads, the broken config's not among them: {:?}",
        d.logs()
    );
    assert_eq!(d.stop(), Some(0));

    // No daemon: says so and fails.
    let out = daemon::run(&env, &["reload", "--config", &config_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running daemon"));
}

/// The daemon is the judge: a config `deployhook reload` cannot fully check (the
/// credential it names is readable only by the service, as under `ExecReload=`) but the
/// daemon rejects makes the command fail with the daemon's errors.
#[test]
fn deployhook_reload_fails_when_the_daemon_rejects_the_config() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    let rx = Receiver::start();
    let creds = env.join("credentials");
    std::fs::create_dir_all(&creds).unwrap_or_else(|e| panic!("{e}"));
    write(&creds.join("hook-secret"), "s3cret-s3cret-s3cret\n");
    let cfg = format!(
        "{}secret_file = \"hook-secret\"\n",
        config(&env, &site, &rx.url, "")
    );
    let path = env.join("deployhook.toml");
    write(&path, &cfg);
    let creds_str = creds.to_string_lossy().into_owned();
    let d = Daemon::start_with(&env, &path, &[("CREDENTIALS_DIRECTORY", &creds_str)]);
    let config_arg = path.to_string_lossy().into_owned();

    let out = daemon::run(&env, &["reload", "--config", &config_arg]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    d.wait_log("config reloaded");

    std::fs::remove_file(creds.join("hook-secret")).unwrap_or_else(|e| panic!("{e}"));
    let out = daemon::run(&env, &["reload", "--config", &config_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains("rejected the config and keeps running the old one")
            && err.contains("hook-secret"),
        "{err}"
    );
    d.wait_log("reload rejected");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_config_written_in_two_halves_is_read_only_when_finished() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let one = Receiver::start();
    let two = Receiver::start();
    let cfg = with_hook(&config(&env, &site, &one.url, ""), "two", &two.url);
    let d = Daemon::start(&env, &cfg);

    // Rewritten in place by a slow writer: the first half (without hook `two`), a pause
    // longer than any quiet period, a deploy in the pause, then the rest.
    let new_text = format!("# edited\n{cfg}");
    let cut = new_text
        .find("[[hook]]\nname = \"two\"")
        .unwrap_or_else(|| panic!("{new_text}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&d.config)
        .unwrap_or_else(|e| panic!("{e}"));
    use std::io::Write;
    f.write_all(&new_text.as_bytes()[..cut])
        .and_then(|()| f.flush())
        .unwrap_or_else(|e| panic!("{e}"));
    // The writer's own pause (part of the scenario, not a wait for the daemon).
    std::thread::sleep(std::time::Duration::from_millis(600));
    site.commit("a.html", "Deployed while the config is half-written");
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        one.payloads("PostDeployment").len() == 1,
        "the deploy in the pause"
    );
    f.write_all(&new_text.as_bytes()[cut..])
        .unwrap_or_else(|e| panic!("{e}"));
    drop(f);
    d.wait_log("config reloaded");
    eventually!(
        two.payloads("PostDeployment").len() == 1,
        "the deploy went to the hooks of the whole file"
    );
    assert_eq!(
        count_logs(&d, "config file changed: reloading"),
        1,
        "read once, when finished: {:?}",
        d.logs()
    );
    assert!(!d.has_log("reload rejected"), "{:?}", d.logs());
}
