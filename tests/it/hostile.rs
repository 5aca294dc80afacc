//! Hostile input, through the real binary: nothing from a site, a repository or a
//! receiver can panic the daemon, block it, bloat it, or write itself raw into a log or
//! a terminal; and the config refuses what would silently never work.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::{TestEnv, wait_until};
use crate::support::receiver::Receiver;

/// A config with several sites (name, path, extra keys) and one hook for every event.
fn sites_config(env: &TestEnv, sites: &[(&str, &Path, &str)], hook: &str) -> String {
    let mut s = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\n",
        env.join("state").display()
    );
    for (name, path, extra) in sites {
        s.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\npath = \"{}\"\nsettle = \"300ms\"\n{extra}\n",
            path.display()
        ));
    }
    s.push_str(&format!(
        "\n[[hook]]\nname = \"all\"\nevents = [\"StatusChanged\", \"PostDeployment\"]\nretry = [\"100ms\"]\n{hook}\n"
    ));
    s
}

fn hook_url(rx: &Receiver) -> String {
    format!("url = \"{}\"", rx.url)
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Writes `content` to `path` atomically (temp file, rename), as deploy tools do.
fn write_atomic(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{e}"));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn kudu_xml(id: &str, status: &str, complete: bool, received: &str, extra: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<deployment>\n  <id>{id}</id>\n  \
         <author>Sam Roe</author>\n  <authorEmail>sam@example.com</authorEmail>\n  \
         <message>Add checkout page</message>\n  <status>{status}</status>\n  \
         <receivedTime>{received}</receivedTime>\n  {extra}\n  \
         <complete>{}</complete>\n</deployment>\n",
        if complete { "True" } else { "False" }
    )
}

fn kudu_deploy(root: &Path, id: &str, received: &str, extra: &str) {
    let dir = root.join("deployments").join(id);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    write_atomic(
        &dir.join("status.xml"),
        kudu_xml(id, "Success", true, received, extra).as_bytes(),
    );
    write_atomic(&root.join("deployments/active"), id.as_bytes());
}

fn kudu_site(env: &TestEnv, name: &str) -> PathBuf {
    let root = env.join(name);
    std::fs::create_dir_all(root.join("deployments")).unwrap_or_else(|e| panic!("{e}"));
    root
}

// ---- Nothing from disk stops a site ----------------------------------------------------

#[test]
fn a_pre_1970_kudu_time_does_not_stop_the_site() {
    let env = TestEnv::new();
    let root = kudu_site(&env, "kudu");
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &sites_config(&env, &[("app", &root, "layout = \"kudu\"")], &hook_url(&rx)),
    );
    kudu_deploy(&root, "aaaa1111", "1970-01-01T00:00:00+01:00", "");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the pre-1970 deployment is reported"
    );
    assert_eq!(
        rx.payloads("PostDeployment")[0]["receivedTime"],
        "1969-12-31T23:00:00.0000000Z"
    );
    kudu_deploy(&root, "bbbb2222", "2026-11-20T08:01:02Z", "");
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "a later valid deployment is reported too"
    );
    assert_eq!(rx.payloads("PostDeployment")[1]["id"], "bbbb2222");
    assert!(!d.has_log("panic"), "{:?}", d.logs());
}

#[test]
fn a_non_ascii_deployer_time_does_not_stop_the_site() {
    let env = TestEnv::new();
    let site = Site::deployer(&env);
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    // A releases_log line whose created_at would be cut inside 'é'.
    site.dep_lock("alice");
    let log = site.root.join(".dep/releases_log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(
        b"{\"created_at\":\"a\xc3\xa912345\",\"release_name\":\"1\",\"user\":\"alice\",\"target\":\"main\"}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    site.dep_unlock();
    site.dep_lock("bob");
    let sha = site.dep_release("2", "bob");
    site.dep_switch();
    site.dep_unlock();
    eventually!(
        rx.payloads("PostDeployment")
            .iter()
            .any(|p| p["id"] == sha.as_str() && p["status"] == "success"),
        "the valid deployment after the odd line is reported"
    );
    assert!(!d.has_log("panic"), "{:?}", d.logs());
}

#[test]
fn fifos_in_sites_are_anomalies_and_other_sites_keep_reporting() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    // One site per file a layout reads, each with a FIFO in its place.
    let cap = Site::capistrano(&env);
    std::fs::remove_file(cap.root.join("revisions.log")).ok();
    mkfifo(&cap.root.join("revisions.log"));
    let plain = env.join("plain");
    std::fs::create_dir_all(plain.join("releases/20261120090000"))
        .unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&plain.join("releases/20261120090000/REVISION"));
    let kudu = kudu_site(&env, "kudu");
    std::fs::create_dir_all(kudu.join("deployments/x1")).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&kudu.join("deployments/x1/status.xml"));
    mkfifo(&kudu.join("deployments/active"));
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&marker.join(".deployhook-status.json"));
    let dep = env.join("dep");
    std::fs::create_dir_all(dep.join(".dep")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dep.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&dep.join(".dep/deploy.lock"));
    mkfifo(&dep.join(".dep/releases_log"));
    // The healthy site.
    let good = Site::plain_at(&env, "good");
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[
                ("cap", &cap.root, "layout = \"releases\""),
                ("plain", &plain, "layout = \"releases\""),
                ("kudu", &kudu, "layout = \"kudu\""),
                ("marker", &marker, "layout = \"marker\""),
                ("dep", &dep, "layout = \"releases\""),
                ("good", &good.root, "layout = \"releases\""),
            ],
            &hook_url(&rx),
        ),
    );
    let sha = good.plain_deploy("1");
    eventually!(
        rx.payloads("PostDeployment")
            .iter()
            .any(|p| p["siteName"] == "good" && p["id"] == sha.as_str()),
        "the healthy site's deploy is reported"
    );
    for file in [
        "revisions.log",
        "REVISION",
        "status.xml",
        "deployments/active",
        ".deployhook-status.json",
        "deploy.lock",
        "releases_log",
    ] {
        eventually!(
            d.logs()
                .iter()
                .any(|l| l.contains(file) && l.contains("not a regular file (a FIFO)")),
            "an anomaly naming {file}"
        );
    }
    assert_eq!(d.stop(), Some(0), "SIGTERM is honoured");
}

#[test]
fn a_revision_linked_to_dev_zero_is_not_followed() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    site.plain_deploy("1");
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    let dir = site.release_dir("2");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("REVISION")).unwrap_or_else(|e| panic!("{e}"));
    let tmp = site.root.join(".current.tmp");
    std::os::unix::fs::symlink("releases/2", &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, site.root.join("current")).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the deployment is reported"
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], "2");
    assert!(d.has_log("is a symlink, which is not followed"));
    // Every resync would re-read it: the daemon stays small.
    let rss = rss_kib(d.pid());
    assert!(rss > 0 && rss < 100 * 1024, "RSS {rss} KiB");
}

#[test]
fn a_flood_of_entries_in_releases_with_the_deploy_racing_the_reads_is_exact() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    // Old junk (a day old: not a deploy in progress when the daemon first looks).
    let day_ago = libc::timespec {
        tv_sec: libc::time_t::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .saturating_sub(86_400),
        )
        .unwrap_or(0),
        tv_nsec: 0,
    };
    for i in 0..30_000 {
        let dir = site.root.join(format!("releases/junk-{i:05}"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: a valid path and two valid timespecs.
        let rc =
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [day_ago, day_ago].as_ptr(), 0) };
        assert_eq!(rc, 0);
    }
    let rx = Receiver::start();
    let d = Daemon::start(
        &env,
        &crate::support::deploy::config(&env, &site, &rx.url, ""),
    );
    // Each read lists 30,000 entries: the deploys race the reads.
    let slow = std::time::Duration::from_secs(60);
    site.commit("a.txt", "first after the flood");
    let first = site.cap_deploy("20261120100000", "bob");
    wait_until(
        || rx.payloads("PostDeployment").len() == 1,
        slow,
        || {
            format!(
                "the first deploy's PostDeployment: {:?}",
                rx.statuses().iter().take(20).collect::<Vec<_>>()
            )
        },
    );
    site.commit("b.txt", "second after the flood");
    let second = site.cap_deploy("20261120110000", "carol");
    wait_until(
        || rx.payloads("PostDeployment").len() == 2,
        slow,
        || {
            format!(
                "the second deploy's PostDeployment: {:?}",
                rx.statuses().iter().take(20).collect::<Vec<_>>()
            )
        },
    );
    let posts = rx.payloads("PostDeployment");
    assert_eq!(
        posts
            .iter()
            .map(|p| (
                p["id"].as_str().unwrap_or(""),
                p["status"].as_str().unwrap_or("")
            ))
            .collect::<Vec<_>>(),
        [(first.as_str(), "success"), (second.as_str(), "success")]
    );
    assert!(
        !rx.statuses().iter().any(|s| s == "failed"),
        "{:?}",
        rx.statuses()
    );
    drop(d);
}

// ---- Never echo, always escape -----------------------------------------------------------

#[test]
fn a_status_xml_linked_to_a_secret_is_neither_followed_nor_quoted() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let secret = env.join("secret");
    std::fs::write(&secret, "root:SECRET-CONTENT-1234:0:0::/root:/bin/sh\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let root = kudu_site(&env, "kudu");
    kudu_deploy(&root, "aaaa1111", "2026-11-20T08:01:02Z", "");
    std::fs::create_dir_all(root.join("deployments/x")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&secret, root.join("deployments/x/status.xml"))
        .unwrap_or_else(|e| panic!("{e}"));
    // And a regular file that is not XML at all: the parser's complaint is cut short.
    std::fs::create_dir_all(root.join("deployments/y")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        root.join("deployments/y/status.xml"),
        format!(
            "<deployment><status>{}</status>",
            "SECRET-CONTENT-1234 ".repeat(500)
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rx = Receiver::start();
    let cfg = sites_config(
        &env,
        &[("app", &root, "layout = \"kudu\"\nidle_timeout = \"1s\"")],
        &hook_url(&rx),
    );
    let d = Daemon::start(&env, &cfg);
    d.wait_log("not followed");
    let out = run(
        &env,
        &["check", "--config", d.config.to_str().unwrap_or("")],
    );
    let all = format!(
        "{}{}{}",
        d.logs().join("\n"),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("SECRET-CONTENT-1234:0:0"),
        "the secret file is quoted:\n{all}"
    );
    assert!(
        all.matches("SECRET-CONTENT-1234").count() <= 6,
        "at most a short excerpt of a bad file is quoted:\n{all}"
    );
}

const EVIL: &str = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\nFAKE LOG LINE";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "raw escapes in {what}:\n{text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("FAKE LOG LINE")),
        "a forged line in {what}:\n{text}"
    );
}

#[test]
fn escapes_in_names_ids_and_texts_are_escaped_everywhere() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    // A release name, a Kudu deployment directory and a marker id, each with escapes.
    let plain = Site::plain_at(&env, "plain");
    let kudu = kudu_site(&env, "kudu");
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[
                ("plain", &plain.root, "layout = \"releases\""),
                ("kudu", &kudu, "layout = \"kudu\""),
                ("marker", &marker, "layout = \"marker\""),
            ],
            &hook_url(&rx),
        ),
    );
    plain.plain_deploy(&format!("20261120{EVIL}"));
    let dir = kudu.join("deployments").join(EVIL);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    write_atomic(
        &dir.join("status.xml"),
        kudu_xml(
            "",
            "Failed",
            true,
            "2026-11-20T08:01:02Z",
            &format!("<statusText>{EVIL}</statusText>"),
        )
        .as_bytes(),
    );
    let marker_json = serde_json::json!({"status": "failed", "id": EVIL, "statusText": EVIL});
    write_atomic(
        &marker.join(".deployhook-status.json"),
        marker_json.to_string().as_bytes(),
    );
    eventually!(
        rx.payloads("PostDeployment").len() == 3,
        "the three deployments"
    );
    let cfg = d.config.to_str().unwrap_or("").to_string();
    for args in [
        vec!["status", "--config", &cfg],
        vec!["check", "--config", &cfg],
        vec!["deliveries", "list", "--config", &cfg],
    ] {
        let out = run(&env, &args);
        assert_clean(&args[0..2].join(" "), &String::from_utf8_lossy(&out.stdout));
        assert_clean(&args[0..2].join(" "), &String::from_utf8_lossy(&out.stderr));
    }
    let logs = d.logs().join("\n");
    assert_clean("the daemon log", &logs);
    // The escaped text is there, visibly.
    assert!(logs.contains("\\u{1b}[2J\\nFAKE LOG LINE"), "{logs}");
    // Hook-controlled text is a field of a fixed message, and failures are warnings.
    assert!(
        d.logs().iter().any(|l| l.contains("WARN")
            && l.contains("deployment failed")
            && l.contains("status_text=")),
        "{logs}"
    );
}

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

#[test]
fn huge_fields_are_refused_or_capped_and_marked() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[("m", &marker, "layout = \"marker\"")],
            &hook_url(&rx),
        ),
    );
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
    let marker = env.join("marker");
    std::fs::create_dir_all(&marker).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[("m", &marker, "layout = \"marker\"")],
            &hook_url(&rx),
        ),
    );
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
    assert!(
        rx.payloads("PostDeployment").len() == 1,
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

#[test]
fn a_read_stuck_in_libgit2_holds_up_no_other_site_and_not_shutdown() {
    let env = TestEnv::new();
    let rx = Receiver::start();
    // A git site whose .git/index is a FIFO: libgit2 blocks opening it, forever.
    let stuck = env.join("stuck");
    crate::support::git::init_source(&stuck);
    std::fs::remove_file(stuck.join(".git/index")).unwrap_or_else(|e| panic!("{e}"));
    mkfifo(&stuck.join(".git/index"));
    let good = Site::plain_at(&env, "good");
    let d = Daemon::start(
        &env,
        &sites_config(
            &env,
            &[
                ("stuck", &stuck, "layout = \"git\""),
                ("good", &good.root, "layout = \"releases\""),
            ],
            &hook_url(&rx),
        ),
    );
    d.wait_log("the first read of this site has not finished");
    let sha = good.plain_deploy("1");
    eventually!(
        rx.payloads("PostDeployment")
            .iter()
            .any(|p| p["siteName"] == "good" && p["id"] == sha.as_str()),
        "the other site's deploy is reported"
    );
    assert_eq!(d.stop(), Some(0), "SIGTERM is honoured");
}
