//! Delivery as HTTP clients see it: `deployhook listen` printing requests and checking
//! the signatures of `hooks test`, proxies from the environment (and `NO_PROXY`), a
//! password with `+` and `&` sent exactly.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::delivery::{config, deploy, hook, out, site};
use crate::support::daemon::{Daemon, run};
use crate::support::deploy::Site;
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

#[test]
fn listen_prints_requests_and_checks_signatures_of_hooks_test() {
    use std::io::BufRead;
    let env = TestEnv::new();
    std::fs::write(
        env.join("s.secret"),
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut listener = crate::support::daemon::command(&env)
        .args(["listen", "--port", "0", "--secret-file"])
        .arg(env.join("s.secret"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = listener
        .stdout
        .take()
        .unwrap_or_else(|| panic!("no stdout"));
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
        }
    });
    let text = || lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
    eventually!(
        text().contains("listening on"),
        "listen to start: {}",
        text()
    );
    let url = text()
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_default()
        .to_string();
    let site = Site::plain(&env);
    let cfg = env.join("deployhook.toml");
    std::fs::write(
        &cfg,
        config(
            &env,
            &site,
            &hook(
                "h",
                &format!("{url}hook"),
                &format!("secret_file = \"{}\"", env.join("s.secret").display()),
            ),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = run(
        &env,
        &["hooks", "test", "h", "--config", cfg.to_str().unwrap_or("")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("HTTP 200"), "{}", out(&o));
    eventually!(
        text().contains("event=ping"),
        "the ping printed: {}",
        text()
    );
    assert!(text().contains("signature=valid"), "{}", text());
    assert!(text().contains("\"event\": \"ping\""), "{}", text());
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
fn proxies_from_the_environment_are_honoured_and_no_proxy_bypasses_them() {
    // The "proxy" is the loopback receiver: a proxied plain-HTTP request reaches it with
    // the target in absolute form. No name is resolved and nothing leaves the machine.
    let env = TestEnv::new();
    let site = site(&env);
    let proxy = Receiver::start();
    let proxy_url = proxy.url.trim_end_matches("/hook").to_string();
    let hooks = format!(
        "{}{}",
        hook("via-proxy", "http://hooks.example.invalid/a", ""),
        hook("direct", "http://direct.example.invalid/b", "retry = []")
    );
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config(&env, &site, &hooks)).unwrap_or_else(|e| panic!("{e}"));
    let d = Daemon::start_with(
        &env,
        &cfg,
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "direct.example.invalid"),
        ],
    );
    deploy(&site, 1);
    eventually!(!proxy.requests().is_empty(), "the proxied request");
    d.wait_log("delivery is dead");
    let hosts: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| r.header("host").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        hosts,
        ["hooks.example.invalid"],
        "only the hook not in NO_PROXY went through the proxy"
    );
}

#[test]
fn a_password_with_plus_and_ampersand_is_sent_exactly() {
    let env = TestEnv::new();
    let site = site(&env);
    let rx = Receiver::start();
    // `+` and `&` are literal in a URL's userinfo: a form decoder would turn `+` into a
    // space and cut at `&`.
    let url = rx.url_with_credentials("deploy", "p+ss&word");
    let _d = Daemon::start(&env, &config(&env, &site, &hook("h", &url, "")));
    deploy(&site, 1);
    eventually!(!rx.requests().is_empty(), "a request");
    assert_eq!(
        rx.requests()[0].header("authorization"),
        Some(format!("Basic {}", STANDARD.encode("deploy:p+ss&word")).as_str())
    );
}
