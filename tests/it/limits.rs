//! Bounds and hygiene, through the real binary: a receiver's endless answer, huge
//! fields, a config that would silently never work, credentials never stored or shown,
//! private state, writers that refuse what they cannot do, and a full disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::{TestEnv, wait_until};
use crate::support::receiver::Receiver;
use crate::support::sites::{hook_url, rss_kib, sites_config, write_atomic};

// ---- Bounded everything ----------------------------------------------------------------

/// A receiver that answers `500` with a chunked body that never ends; returns its URL
/// and a counter of the bytes it managed to send before the client hung up.
fn endless_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                let chunk = format!("10000\r\n{}\r\n", "E".repeat(0x10000));
                // At most 8 GiB: the test fails long before, if the client keeps reading.
                for _ in 0..131_072 {
                    if s.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (format!("http://{addr}/hook"), sent)
}

#[test]
fn an_endless_response_body_is_read_up_to_64_kib() {
    use std::sync::atomic::Ordering;
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let (url, sent) = endless_receiver();
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[("shop", &site.root, "")],
            &format!("url = \"{url}\"\ntimeout = \"30s\""),
        ),
    );
    site.plain_deploy("1");
    d.wait_log("attempt failed; will retry");
    let cfg = d.config.to_str().unwrap_or("").to_string();
    let out = run(&env, &["deliveries", "list", "--config", &cfg]);
    // The first delivery in the hook's order is the one attempted.
    let shows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with("msg_"))
        .map(|id| {
            let show = run(&env, &["deliveries", "show", id, "--config", &cfg]);
            String::from_utf8_lossy(&show.stdout).into_owned()
        })
        .collect();
    let show = shows
        .iter()
        .find(|t| t.contains("< HTTP 500"))
        .unwrap_or_else(|| panic!("no attempt recorded: {shows:?}"));
    let text = show;
    let body_line = text
        .lines()
        .find(|l| l.starts_with("  < EEE"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(body_line.len(), 4 + 64 * 1024, "exactly 64 KiB recorded");
    // The connection was dropped after the cap: what the server could push is what the
    // socket buffers hold, not the gigabytes a 30 s read would take.
    let pushed = sent.load(Ordering::Relaxed);
    assert!(pushed < 64 * 1024 * 1024, "{pushed} bytes were sent");
    let rss = rss_kib(d.pid());
    assert!(rss > 0 && rss < 100 * 1024, "RSS {rss} KiB");
}

/// A `marker` site at `<env>/marker`, watched by a daemon that sends everything to `rx`.
fn marker_daemon<'a>(env: &'a TestEnv, rx: &Receiver) -> (PathBuf, Daemon<'a>) {
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(
        env,
        &sites_config(env, &[("m", &marker, "layout = \"marker\"")], &hook_url(rx)),
    );
    (marker, d)
}

#[test]
fn huge_fields_are_refused_or_capped_and_marked() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    let (marker, d) = marker_daemon(&env, &rx);
    let file = marker.join(".deployhook-status.json");
    // 10 MB: over the 1 MiB cap for a status file, refused.
    let huge = serde_json::json!({"status": "building", "id": "abc1234", "message": "m".repeat(10_000_000)});
    write_atomic(&file, huge.to_string().as_bytes());
    d.wait_log("larger than 1 MiB");
    // 900 KB: read, and the message capped at 64 KiB, marked.
    let big = serde_json::json!({"status": "success", "id": "abc1234", "message": "m".repeat(900_000), "author": "a".repeat(5000)});
    write_atomic(&file, big.to_string().as_bytes());
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the deployment is reported"
    );
    let bodies: Vec<usize> = rx.requests().iter().map(|r| r.body.len()).collect();
    assert!(bodies.iter().all(|n| *n < 80 * 1024), "{bodies:?}");
    let p = &rx.payloads("PostDeployment")[0];
    let message = p["message"].as_str().unwrap_or("");
    assert!(
        message.len() <= 64 * 1024 && message.ends_with("…[truncated]"),
        "message of {} bytes",
        message.len()
    );
    assert_eq!(p["truncated"], serde_json::json!(["author", "message"]));
    let db = std::fs::metadata(env.join("state/deployhook.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(db < 8 * 1024 * 1024, "database {db} bytes");
}

// ---- Strict config ---------------------------------------------------------------------

#[test]
fn a_misspelled_event_fails_check_with_did_you_mean() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let cfg = sites_config(
        &env,
        &[("shop", &site.root, "")],
        "url = \"http://127.0.0.1:9/\"",
    )
    .replace(
        "events = [\"StatusChanged\", \"PostDeployment\"]",
        "events = [\"PostDeployments\", \"release-notes\"]",
    )
    .replace("retry = [\"100ms\"]", "retri = [\"1s\"]\ntimeout = 5");
    let path = env.join("deployhook.toml");
    std::fs::write(&path, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&env, &["check", "--config", path.to_str().unwrap_or("")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("did you mean \"PostDeployment\""), "{text}");
    // Every error in the same run.
    assert!(text.contains("hook[0].retri: unknown field"), "{text}");
    assert!(text.contains("hook[0].timeout: invalid type"), "{text}");

    // A custom event alone is valid, and check says it is sent only by publish.
    let ok = cfg
        .replace("\"PostDeployments\", ", "")
        .replace("retri = [\"1s\"]\ntimeout = 5", "");
    std::fs::write(&path, &ok).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&env, &["check", "--config", path.to_str().unwrap_or("")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sent only by publish"), "{text}");
}

#[test]
fn authorization_in_headers_with_url_credentials_is_a_config_error() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let cfg = sites_config(
        &env,
        &[("shop", &site.root, "")],
        "url = \"http://u:p@127.0.0.1:9/\"\nheaders = { Authorization = \"Bearer abc\" }",
    );
    let path = env.join("deployhook.toml");
    std::fs::write(&path, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&env, &["check", "--config", path.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("keep one"), "{text}");
}

// ---- Credentials hygiene ---------------------------------------------------------------

#[test]
fn header_values_and_url_tokens_are_never_stored_or_shown() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let rx = Receiver::start();
    let url = format!("{}?token=URLTOKEN42&env=prod", rx.url);
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[("shop", &site.root, "")],
            &format!("url = \"{url}\"\nheaders = {{ \"X-Api-Key\" = \"HEADERKEY42\" }}"),
        ),
    );
    site.plain_deploy("1");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the deployment is reported"
    );
    // The receiver got both.
    let r = &rx.requests()[0];
    assert_eq!(r.header("x-api-key"), Some("HEADERKEY42"));
    let cfg = d.config.to_str().unwrap_or("").to_string();
    let list = run(&env, &["deliveries", "list", "--config", &cfg]);
    let id = String::from_utf8_lossy(&list.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("msg_"))
        .map(str::to_string)
        .unwrap_or_default();
    let mut shown = String::new();
    for args in [
        vec!["deliveries", "show", id.as_str(), "--config", &cfg],
        vec!["hooks", "list", "--config", &cfg],
        vec!["check", "--config", &cfg],
        vec!["status", "--config", &cfg],
    ] {
        let out = run(&env, &args);
        shown.push_str(&String::from_utf8_lossy(&out.stdout));
        shown.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    shown.push_str(&d.logs().join("\n"));
    assert!(shown.contains("X-Api-Key: ***"), "{shown}");
    assert!(shown.contains("token=***"), "{shown}");
    assert!(!shown.contains("HEADERKEY42"), "{shown}");
    assert!(!shown.contains("URLTOKEN42"), "{shown}");
    let db = std::fs::read(env.join("state/deployhook.sqlite")).unwrap_or_default();
    let wal = std::fs::read(env.join("state/deployhook.sqlite-wal")).unwrap_or_default();
    for (name, bytes) in [("database", db), ("WAL", wal)] {
        assert!(
            !bytes.windows(11).any(|w| w == b"HEADERKEY42"),
            "the header value is stored in the {name}"
        );
    }
}

#[test]
fn the_state_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let rx = Receiver::start();
    // A state dir left world-readable by an earlier version or by hand.
    std::fs::create_dir_all(env.join("state")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(env.join("state"), std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    site.plain_deploy("1");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the deployment is reported"
    );
    let mode = |p: &str| {
        std::fs::metadata(env.join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode("state"), 0o700);
    assert_eq!(mode("state/deployhook.sqlite"), 0o600);
    assert_eq!(mode("state/deployhook.sqlite-wal"), 0o600);
    assert!(d.has_log("permissions tightened from 0755 to 0700"));
}

// ---- Writers refuse what they can't do ----------------------------------------------------

#[test]
fn mark_and_wrap_refuse_a_site_that_is_not_a_marker_site() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let cfg = crate::support::deploy::config(&env, &site, "http://127.0.0.1:9/", "");
    let path = env.join("deployhook.toml");
    std::fs::write(&path, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let cfg = path.to_str().unwrap_or("");
    for args in [
        vec!["mark", "success", "--site", "shop", "--config", cfg],
        vec!["wrap", "--site", "shop", "--config", cfg, "--", "true"],
    ] {
        let out = run(&env, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("marker site only"), "{err}");
    }
    assert!(
        !site.root.join(".deployhook-status.json").exists(),
        "no status file was written"
    );
}

#[test]
fn wrap_names_the_program_not_its_arguments() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    let (_marker, d) = marker_daemon(&env, &rx);
    let out = run(
        &env,
        &[
            "wrap",
            "--site",
            "m",
            "--config",
            d.config.to_str().unwrap_or(""),
            "--",
            "sh",
            "-c",
            "sleep 1; echo deploying with TOKEN-SECRET-99 >/dev/null; echo done",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the wrapped deployment"
    );
    let texts: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["statusText"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(texts.iter().any(|t| t == "running sh"), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("TOKEN-SECRET-99")),
        "{texts:?}"
    );
}

// ---- A full disk ---------------------------------------------------------------------

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with a loud message) where mounting is not allowed; under `CI` that fails.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(Tmpfs(dir.to_path_buf()));
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs to fill up (needs root and mount(8)); CI must run this test"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs to fill up (run the tests as root to include it)");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
#[cfg_attr(
    not(tool_root),
    ignore = "root is needed to mount a tmpfs and fill it up"
)]
fn a_full_disk_backs_off_and_loses_nothing() {
    let env = TestEnv::new();
    let Some(_mount) = Tmpfs::mount(&env.join("state"), "2m") else {
        return;
    };
    let site = Site::plain(&env);
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    site.plain_deploy("1");
    eventually!(rx.payloads("PostDeployment").len() == 1, "the first deploy");
    let filler = fill(&env.join("state"));
    site.commit("a.txt", "while the disk is full");
    let sha = site.plain_deploy("2");
    // Each failed commit is one line, and the waits between them grow.
    wait_until(
        || {
            d.logs()
                .iter()
                .filter(|l| l.contains("cannot commit"))
                .count()
                >= 3
        },
        std::time::Duration::from_secs(30),
        || format!("three failed commits: {:?}", d.logs()),
    );
    let waits: Vec<String> = d
        .logs()
        .iter()
        .filter(|l| l.contains("cannot commit"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("retry_in_s=").map(str::to_string))
        })
        .collect();
    assert_eq!(waits[..3], ["1", "2", "4"], "{waits:?}");
    // The deploy made while the disk is full is not reported before it is committed.
    // (The first deploy's delivery may arrive twice: an attempt whose record cannot be
    // written is repeated, with the same delivery id — at least once, never lost.)
    assert!(
        !rx.payloads("PostDeployment")
            .iter()
            .any(|p| p["id"] == sha.as_str()),
        "nothing is reported while nothing can be committed"
    );
    std::fs::remove_file(filler).unwrap_or_else(|e| panic!("{e}"));
    wait_until(
        || {
            rx.payloads("PostDeployment")
                .iter()
                .any(|p| p["id"] == sha.as_str())
        },
        std::time::Duration::from_secs(40),
        || {
            format!(
                "the deploy made while the disk was full: {:?}",
                rx.statuses()
            )
        },
    );
    assert!(d.has_log("commits work again"));
    drop(d);
}
