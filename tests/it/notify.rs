//! systemd's notify protocol on a real `NOTIFY_SOCKET`: `READY=1` after the first
//! reconcile, a `STATUS=` summary, `WATCHDOG=1` from the loop when `WATCHDOG_USEC` is
//! set and none while the loop is stuck, `RELOADING=1` then `READY=1` on SIGHUP,
//! `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

#[test]
fn ready_watchdog_reloading_and_stopping_reach_the_notify_socket() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let rx = Receiver::start();
    let sock_path = env.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("{e}"));
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(msg.lines().map(str::to_string));
        }
    });
    let messages = || got.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let count = |m: &str| messages().iter().filter(|l| *l == m).count();
    let path = env.join("deployhook.toml");
    std::fs::write(&path, config(&env, &site, &rx.url, "")).unwrap_or_else(|e| panic!("{e}"));
    let sock_str = sock_path.to_string_lossy().into_owned();
    let stall = env.join("stall");
    let stall_str = stall.to_string_lossy().into_owned();
    let d = Daemon::start_with(
        &env,
        &path,
        &[
            ("NOTIFY_SOCKET", &sock_str),
            ("WATCHDOG_USEC", "400000"),
            ("DEPLOYHOOK_DEBUG_STALL_FILE", &stall_str),
        ],
    );
    eventually!(count("READY=1") == 1, "READY=1: {:?}", messages());
    eventually!(
        messages()
            .iter()
            .any(|l| l == "STATUS=1 site; no deliveries waiting"),
        "a STATUS= summary: {:?}",
        messages()
    );
    eventually!(
        count("WATCHDOG=1") >= 3,
        "WATCHDOG=1 pings: {:?}",
        messages()
    );

    // A stuck loop (debug builds block it while the file exists) stops the pings: the
    // watchdog must not be fed by anything but the loop.
    std::fs::write(&stall, "").unwrap_or_else(|e| panic!("{e}"));
    let stalled = "STATUS=debug: the loop is stalled";
    eventually!(count(stalled) == 1, "the loop stalls: {:?}", messages());
    // Silence is a property over time: the one window this suite keeps, six ping
    // periods (200 ms each) after the daemon said it stalled; every ping it sent before
    // came before that message on the same socket.
    let pings_after_stall = || {
        messages()
            .iter()
            .skip_while(|l| *l != stalled)
            .filter(|l| *l == "WATCHDOG=1")
            .count()
    };
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(
        pings_after_stall(),
        0,
        "no WATCHDOG=1 while the loop is stuck (pings every 200 ms otherwise): {:?}",
        messages()
    );
    let stuck_at = count("WATCHDOG=1");
    std::fs::remove_file(&stall).unwrap_or_else(|e| panic!("{e}"));
    eventually!(
        count("WATCHDOG=1") >= stuck_at + 2,
        "pings resume with the loop: {:?}",
        messages()
    );
    d.signal(1);
    eventually!(count("RELOADING=1") == 1, "RELOADING=1: {:?}", messages());
    eventually!(
        count("READY=1") == 2,
        "READY=1 after the reload: {:?}",
        messages()
    );
    assert!(
        messages().iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 comes with MONOTONIC_USEC: {:?}",
        messages()
    );
    assert_eq!(d.stop(), Some(0));
    eventually!(count("STOPPING=1") == 1, "STOPPING=1: {:?}", messages());
}

#[test]
fn a_notify_socket_that_is_never_read_never_stops_sigterm() {
    let env = TestEnv::new();
    let site = Site::plain(&env);
    let rx = Receiver::start();
    // systemd not reading: its queue (net.unix.max_dgram_qlen, 10 here) fills up.
    let sock_path = env.join("notify.sock");
    let _sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("{e}"));
    let path = env.join("deployhook.toml");
    std::fs::write(&path, config(&env, &site, &rx.url, "")).unwrap_or_else(|e| panic!("{e}"));
    let sock_str = sock_path.to_string_lossy().into_owned();
    let d = Daemon::start_with(
        &env,
        &path,
        &[("NOTIFY_SOCKET", &sock_str), ("WATCHDOG_USEC", "100000")],
    );
    // The queue is full: a message was dropped rather than waited for.
    d.wait_log("sd_notify: message dropped");
    let code = d.stop_within(std::time::Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
