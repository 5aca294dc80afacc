//! The commands that talk to the running daemon's API: `hooks add`, `hooks remove`,
//! `publish`. The address and token come from the config's `[api]`; a daemon that does
//! not listen is said plainly.

use std::io::Write;
use std::time::Duration;

use super::admin::Failed;
use crate::config::{ApiConfig, Config, Listen};

type Result<T> = std::result::Result<T, Failed>;

/// An answer: status and JSON body (`Value::Null` when the body is not JSON).
struct Answer {
    status: u16,
    body: serde_json::Value,
}

/// The config's `[api]`, or why the command cannot run without it.
pub fn api_of(config: &Config) -> Result<&ApiConfig> {
    config.api.as_ref().ok_or_else(|| {
        Failed(format!(
            "{} has no [api] table: `hooks add`, `hooks remove` and `publish` talk to the running daemon's API; add [api] and restart the daemon",
            config.file.display()
        ))
    })
}

/// Where the running daemon's API really listens: `listen`, or — for a TCP `listen` with
/// port 0 — the address the daemon bound, from its state directory.
fn bound_listen(config: &Config, listen: &Listen) -> Listen {
    match listen {
        Listen::Tcp(addr) if addr.port() == 0 => {
            let file = config
                .daemon
                .state_dir
                .join(crate::daemon::listener::ADDRESS_FILE);
            std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .map_or_else(|| listen.clone(), Listen::Tcp)
        }
        other => other.clone(),
    }
}

/// The base URL and client for `listen` (a wildcard address is reached on loopback).
fn client_for(listen: &Listen) -> Result<(String, reqwest::Client)> {
    crate::deliver::init_tls();
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    let (base, builder) = match listen {
        Listen::Tcp(addr) => {
            let mut addr = *addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            (format!("http://{addr}"), builder)
        }
        Listen::Unix(path) => (
            "http://deployhook".to_string(),
            builder.unix_socket(path.clone()),
        ),
    };
    let client = builder
        .build()
        .map_err(|e| Failed(format!("cannot build the HTTP client: {e}")))?;
    Ok((base, client))
}

fn call(
    config: &Config,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer> {
    let api = api_of(config)?;
    let (base, client) = client_for(&bound_listen(config, &api.listen))?;
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = &api.token {
        req = req.bearer_auth(t.first());
    }
    if let Some(b) = body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                Failed(format!(
                    "no daemon is listening on {} (is `deployhook run` running with this config?)",
                    api.listen
                ))
            } else {
                Failed(format!("the API at {} did not answer: {e}", api.listen))
            }
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        })
    })
}

/// The API's `{"error": ...}`, or the status.
fn refused(a: &Answer) -> Failed {
    let why = a.body["error"]
        .as_str()
        .map_or_else(|| format!("HTTP {}", a.status), crate::telemetry::escape);
    Failed(format!("the daemon refused: {why}"))
}

/// `deployhook hooks add URL [--event E] [--insecure-ssl]`.
pub fn hooks_add(
    config: &Config,
    url: &str,
    event: &str,
    insecure_ssl: bool,
    out: &mut impl Write,
) -> Result<()> {
    let body = serde_json::json!({"url": url, "event": event, "insecure_ssl": insecure_ssl});
    let a = call(
        config,
        reqwest::Method::POST,
        "/api/hooks",
        Some(body.to_string().into_bytes()),
    )?;
    if a.status != 201 {
        return Err(refused(&a));
    }
    // The name every other command and view uses: `api-<id>`.
    let _ = writeln!(
        out,
        "hook api-{}: {} ({})",
        a.body["id"].as_str().unwrap_or("?"),
        a.body["url"].as_str().unwrap_or("?"),
        a.body["event"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `deployhook hooks remove ID`.
pub fn hooks_remove(config: &Config, id: &str, out: &mut impl Write) -> Result<()> {
    // `api-2` (as `hooks list` shows it) or `2` (the API's id).
    let id = id.strip_prefix("api-").unwrap_or(id);
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Failed(format!("{id:?} is not a hook id")));
    }
    let a = call(
        config,
        reqwest::Method::DELETE,
        &format!("/api/hooks/{id}"),
        None,
    )?;
    if a.status != 200 {
        return Err(refused(&a));
    }
    match a.body["cancelled"].as_u64() {
        Some(n) => {
            let _ = writeln!(
                out,
                "hook api-{id} removed; {n} waiting deliveries cancelled"
            );
        }
        None => {
            let _ = writeln!(out, "no hook {id} (nothing to remove)");
        }
    }
    Ok(())
}

/// `deployhook publish EVENT [FILE|-]`: the JSON in FILE (or stdin) to every hook of
/// EVENT.
pub fn publish(config: &Config, event: &str, body: Vec<u8>, out: &mut impl Write) -> Result<()> {
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Err(Failed("the body to publish is not JSON".to_string()));
    }
    if let Err(why) = crate::config::check_event_name(event) {
        return Err(Failed(why));
    }
    let path = format!(
        "/api/hooks/publish/{}",
        url::form_urlencoded::byte_serialize(event.as_bytes()).collect::<String>()
    );
    let a = call(config, reqwest::Method::POST, &path, Some(body))?;
    if a.status != 200 {
        return Err(refused(&a));
    }
    let n = a.body["deliveries"].as_array().map_or(0, Vec::len);
    let queued = crate::model::count_of(n, "delivery", "deliveries");
    let _ = writeln!(out, "published {event}: {queued} queued");
    Ok(())
}
