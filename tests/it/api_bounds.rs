//! Nothing from outside can blind the daemon through its API (issue 22): a crowd of idle
//! connections under the fd limit systemd gives, slowloris headers, a body declared
//! 10 GB — site reads, `/healthz` and deliveries go on, and every stuck client gets
//! closed or answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::api::Client;
use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

/// Lets this test process hold many sockets: its soft open files limit up to the hard.
fn raise_own_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur >= want {
            return;
        }
        // Root may raise the hard limit too; anyone may raise the soft one to it.
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised),
            0,
            "this test holds {want} sockets: raise the open files limit (ulimit -n {want})"
        );
    }
}

fn api_config(env: &TestEnv, site: &Site, rx: &Receiver, port: u16, api: &str) -> String {
    format!(
        "{}\n[api]\nlisten = \"127.0.0.1:{port}\"\n{api}\n",
        config(env, site, &rx.url, "")
    )
}

#[test]
fn eleven_hundred_idle_connections_under_a_1024_fd_limit_blind_nothing() {
    raise_own_fd_limit(1300);
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, api_config(&env, &site, &rx, 0, "")).unwrap_or_else(|e| panic!("{e}"));
    // systemd's default: 1024 open files, soft and hard.
    let d = Daemon::start_opts(&env, &cfg, &[], None, Some(1024));
    let port = d.api_port();
    let api = Client::tcp(port);
    eventually!(api.get("/healthz").status == 200, "healthz");

    // 1,100 connections that never speak.
    let idle: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() > 1024, "{} connected", idle.len());
    // A probe still gets through, and a deploy made meanwhile is reported.
    eventually!(
        api.get("/healthz").status == 200,
        "healthz while {} idle connections are held",
        idle.len()
    );
    site.commit("a.html", "During the crowd");
    let sha = site.cap_deploy("20261120100000", "bob");
    eventually!(
        rx.payloads("PostDeployment").len() == 1,
        "the deploy made during the crowd: {:?}",
        rx.statuses()
    );
    assert_eq!(rx.payloads("PostDeployment")[0]["id"], sha);
    let metrics = api.get("/metrics").text();
    assert!(
        metrics.contains("deployhook_api_connections_total{outcome=\"evicted\"}")
            || metrics.contains("deployhook_api_connections_total{outcome=\"refused\"}"),
        "the limit was met: {metrics}"
    );
    drop(idle);
    site.commit("b.html", "After the crowd");
    site.cap_deploy("20261120110000", "carol");
    eventually!(
        rx.payloads("PostDeployment").len() == 2,
        "the deploy after the crowd"
    );
    assert!(!d.has_log("Too many open files"), "{:?}", d.logs());
    d.stop();
}

/// Reads until the server closes the connection (EOF or reset); what it sent.
fn read_to_close(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A publish that declares a body of `length` bytes and sends one; what came back
/// before the server closed.
fn publish_declaring(port: u16, length: u64) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /api/hooks/publish/Custom HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    );
    s.write_all(head.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    read_to_close(s)
}

#[test]
fn slow_headers_are_cut_off_and_a_body_declared_huge_is_answered() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let cfg = env.join("deployhook.toml");
    std::fs::write(
        &cfg,
        api_config(
            &env,
            &site,
            &rx,
            0,
            "header_timeout = \"1s\"\nrequest_timeout = \"2s\"",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start_with(&env, &cfg, &[]);
    let port = d.api_port();
    let api = Client::tcp(port);
    eventually!(api.get("/healthz").status == 200, "healthz");

    // Slowloris: headers that never end are closed after header_timeout.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap_or_else(|e| panic!("{e}"));
            s
        })
        .collect();
    for s in slow {
        read_to_close(s);
    }

    // A body declared 10 GB, one byte sent: answered 413 at once.
    let answer = publish_declaring(port, 10_000_000_000);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("{\"error\":"), "JSON: {answer}");
    // A body declared small that never comes: 408 after request_timeout.
    let answer = publish_declaring(port, 100);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A URI too long is a JSON error like any other.
    let long = api.get(&format!("/api/hooks?x={}", "a".repeat(10_000)));
    assert_eq!(long.status, 414);
    assert!(long.json()["error"].is_string());
    assert_eq!(api.get("/healthz").status, 200);
    d.stop();
}

/// Replaces the config file whole (write aside, rename over) and waits for the verdict.
fn reload_to(d: &Daemon<'_>, text: &str, verdict: &str) {
    let tmp = d.config.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{e}"));
    let before = d.logs().iter().filter(|l| l.contains(verdict)).count();
    std::fs::rename(&tmp, &d.config).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        d.logs().iter().filter(|l| l.contains(verdict)).count() > before,
        "{verdict}: {:?}",
        d.logs()
    );
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn a_reload_never_leaves_an_open_listener_behind() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let rx = Receiver::start();
    let token = env.join("api.token");
    std::fs::write(&token, "s3cret-token\n").unwrap_or_else(|e| panic!("{e}"));
    let base = config(&env, &site, &rx.url, "");
    let public = format!(
        "{base}\n[api]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    let d = Daemon::start(&env, &public);
    let p1 = d.api_port();
    let api = Client::tcp(p1);
    eventually!(api.get("/healthz").status == 200, "healthz");
    assert_eq!(api.get("/api/hooks").status, 401, "the token is required");

    // [api] dropped: the 0.0.0.0 listener is closed at once, not left open tokenless.
    reload_to(&d, &base, "config reloaded");
    assert!(refused(p1), "the old listener still accepts");

    // [api] back, on loopback without a token: it listens there, and only there.
    reload_to(
        &d,
        &format!("{base}\n[api]\nlisten = \"127.0.0.1:0\"\n"),
        "config reloaded",
    );
    let p2 = d.api_port();
    assert_ne!(p1, p2);
    assert_eq!(Client::tcp(p2).get("/api/hooks").status, 200);
    assert!(refused(p1));

    // A listen that cannot be bound: the reload is refused, the running API stays.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let p3 = taken
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    reload_to(
        &d,
        &format!("{base}\n[api]\nlisten = \"127.0.0.1:{p3}\"\n"),
        "reload rejected",
    );
    assert!(d.has_log("cannot listen on 127.0.0.1:"), "{:?}", d.logs());
    assert_eq!(
        Client::tcp(p2).get("/api/hooks").status,
        200,
        "the old API stays"
    );

    // The same port on every address, with a token: the old listener makes way.
    reload_to(
        &d,
        &format!(
            "{base}\n[api]\nlisten = \"0.0.0.0:{p2}\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
        "config reloaded",
    );
    assert_eq!(
        Client::tcp(p2).get("/api/hooks").status,
        401,
        "the token is required"
    );
    d.stop();
}

/// The outbox's size on disk (the database and its WAL).
fn db_bytes(env: &TestEnv) -> u64 {
    ["deployhook.sqlite", "deployhook.sqlite-wal"]
        .iter()
        .map(|f| {
            std::fs::metadata(env.join("state").join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

fn storage_config(env: &TestEnv, port: u16, rxs: &[Receiver], api: &str) -> String {
    let site = env.join("site");
    std::fs::create_dir_all(site.join("releases")).unwrap_or_else(|e| panic!("{e}"));
    let hooks: String = rxs
        .iter()
        .enumerate()
        .map(|(i, rx)| {
            format!(
                "[[hook]]\nname = \"h{i}\"\nurl = \"{}\"\nevents = [\"Custom\"]\nretry = [\"1h\"]\n\n",
                rx.url
            )
        })
        .collect();
    format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{}\"\n\n{hooks}\
         [api]\nlisten = \"127.0.0.1:{port}\"\nallow_private_targets = true\n{api}\n",
        env.join("state").display(),
        site.display()
    )
}

/// A JSON document of about `n` bytes, different for each `tag`.
fn document(n: usize, tag: usize) -> String {
    format!("{{\"tag\": {tag}, \"pad\": \"{}\"}}", "x".repeat(n))
}

#[test]
fn small_requests_never_become_large_disk() {
    let env = TestEnv::new();
    let rxs: Vec<Receiver> = (0..5).map(|_| Receiver::start()).collect();
    let d = Daemon::start(
        &env,
        &storage_config(&env, 0, &rxs, "max_publish_bytes = 1000000"),
    );
    let api = Client::tcp(d.api_port());
    eventually!(api.get("/healthz").status == 200, "healthz");
    let before = db_bytes(&env);

    // 10 publishes of 900 KB to 5 hooks: each body stored once.
    for tag in 0..10 {
        let a = api.post("/api/hooks/publish/Custom", &document(900_000, tag));
        assert_eq!(a.status, 200, "{}", a.text());
    }
    eventually!(
        rxs.iter().all(|rx| rx.requests().len() == 10),
        "every hook got every publish"
    );
    let published = db_bytes(&env) - before;
    eprintln!("10 publishes of 900 KB to 5 hooks: the outbox grew by {published} bytes");
    assert!(
        published < 20_000_000,
        "10 × 900 KB to 5 hooks took {published} bytes"
    );

    // 200 redeliveries of a 900 KB delivery: each refers to the stored body.
    let id = rxs[0].requests()[0]
        .header("x-deployhook-delivery")
        .unwrap_or_default()
        .to_string();
    let before = db_bytes(&env);
    for _ in 0..200 {
        let a = api.post(&format!("/api/deliveries/{id}/redeliver"), "");
        assert_eq!(a.status, 202, "{}", a.text());
    }
    eventually!(rxs[0].requests().len() == 210, "the redeliveries");
    let redelivered = db_bytes(&env) - before;
    eprintln!("200 redeliveries of 900 KB: the outbox grew by {redelivered} bytes");
    assert!(
        redelivered < 10_000_000,
        "200 redeliveries of 900 KB took {redelivered} bytes"
    );

    // A document over max_publish_bytes: 413.
    let a = api.post("/api/hooks/publish/Custom", &document(1_100_000, 99));
    assert_eq!(a.status, 413, "{}", a.text());

    // Hooks registered through the API: at most max_hooks (100).
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..120 {
        let a = api.post_json(
            "/api/hooks",
            &serde_json::json!({"url": format!("http://127.0.0.1:9/h{i}"), "event": "Custom"}),
        );
        *codes.entry(a.status).or_insert(0) += 1;
    }
    assert_eq!(codes, [(201, 100), (409, 20)].into(), "{codes:?}");
    let metrics = api.get("/metrics").text();
    assert!(
        metrics.contains("deployhook_api_refused_total{reason=\"hooks_limit\"} 20"),
        "{metrics}"
    );
    d.stop();
}

#[test]
fn a_full_queue_refuses_publishes_with_retry_after() {
    let env = TestEnv::new();
    let down = Receiver::start();
    down.behave(|b| b.hang = true);
    let d = Daemon::start(
        &env,
        &storage_config(
            &env,
            0,
            std::slice::from_ref(&down),
            "max_queue_bytes = 1000000",
        ),
    );
    let api = Client::tcp(d.api_port());
    eventually!(api.get("/healthz").status == 200, "healthz");
    let mut codes = Vec::new();
    for tag in 0..5 {
        let a = api.post("/api/hooks/publish/Custom", &document(200_000, tag));
        if a.status == 429 {
            assert_eq!(a.header("retry-after"), Some("60"));
            assert!(a.json()["error"].as_str().is_some_and(|e| e.contains("h0")));
        }
        codes.push(a.status);
    }
    assert_eq!(
        codes,
        [200, 200, 200, 200, 429],
        "the fifth would pass 1 MB"
    );
    d.stop();
}
