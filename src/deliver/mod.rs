//! Delivery: turns transitions into events and deliveries (`plan`), and runs one worker
//! per hook that sends its queue in order (`run_hook`). Only this module knows reqwest.
//!
//! Stages of one attempt, each a function: `build_request` (headers, signature) →
//! `send_attempt` (one HTTP request, never follows redirects) → `retry::decide` (pure) →
//! `Store::commit_attempt`. A worker reads only the outbox, so a restart resumes exactly
//! where the database says: unsent and in-flight deliveries are sent again.

pub mod payload;
pub mod retry;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};

use crate::config::{HookConfig, SignatureKind};
use crate::infer::model::Transition;
use crate::model::Timestamp;
use crate::store::{AttemptRecord, DeliveryUpdate, DueDelivery, NewDelivery, NewEvent, Store};
use retry::{Decision, Response};

/// How often an idle worker looks at the outbox without being woken.
const IDLE_RECHECK: Duration = Duration::from_secs(2);

pub const USER_AGENT: &str = concat!("deployhook/", env!("CARGO_PKG_VERSION"));

/// The events (with one delivery per matching hook) that `transitions` make.
pub fn plan(
    transitions: &[Transition],
    hooks: &[HookConfig],
    cx: payload::Context<'_>,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for t in transitions {
        for kind in payload::events_of(t) {
            let p = payload::kudu(t, kind, cx);
            let body = payload::body(&p);
            let deliveries = hooks
                .iter()
                .filter(|h| h.wants_event(kind) && h.wants_site(cx.site) && h.wants_status(t.to))
                .map(|h| NewDelivery {
                    hook: h.name.clone(),
                    body: body.clone(),
                })
                .collect();
            events.push(NewEvent {
                kind: kind.to_string(),
                site: Some(cx.site.to_string()),
                status: Some(t.to),
                deployment_serial: Some(t.deployment.serial),
                payload: body,
                deliveries,
            });
        }
    }
    events
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot build the HTTP client of hook {hook}")]
    BuildClient {
        hook: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Installs the TLS crypto provider (ring) once per process.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client of one hook: TLS verified unless `insecure_ssl`, redirects not
/// followed, connect and total timeouts, proxies from `HTTPS_PROXY`/`NO_PROXY`.
pub fn client_for(hook: &HookConfig) -> Result<reqwest::Client, DeliverError> {
    init_tls();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5).min(hook.timeout))
        .timeout(hook.timeout)
        .danger_accept_invalid_certs(hook.insecure_ssl)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|source| DeliverError::BuildClient {
            hook: hook.name.clone(),
            source,
        })
}

/// One GET of a site's `health_url`: `Ok` for a 2xx, else why not.
pub async fn probe_health(client: &reqwest::Client, url: &url::Url) -> Result<u16, String> {
    match client.get(url.clone()).send().await {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(describe_error(&e)),
    }
}

/// The client for health checks: TLS verified, no redirects, 5 s per request.
pub fn health_client() -> Result<reqwest::Client, DeliverError> {
    init_tls();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|source| DeliverError::BuildClient {
            hook: "(health check)".into(),
            source,
        })
}

/// The headers of one attempt (without credentials, which go as Basic auth).
pub fn build_headers(
    hook: &HookConfig,
    delivery_id: &str,
    event: &str,
    body: &[u8],
    now: Timestamp,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            "Content-Type".to_string(),
            "application/json; charset=utf-8".to_string(),
        ),
        ("User-Agent".to_string(), USER_AGENT.to_string()),
        ("X-Deployhook-Event".to_string(), event.to_string()),
        ("X-Deployhook-Delivery".to_string(), delivery_id.to_string()),
    ];
    if let Some(secret) = &hook.secret {
        match hook.signature {
            SignatureKind::Standard => {
                let ts = now.unix_seconds();
                headers.push(("webhook-id".into(), delivery_id.to_string()));
                headers.push(("webhook-timestamp".into(), ts.to_string()));
                headers.push((
                    "webhook-signature".into(),
                    sign::standard(secret, delivery_id, ts, body),
                ));
            }
            SignatureKind::Github => {
                headers.push(("X-Hub-Signature-256".into(), sign::github(secret, body)));
            }
            SignatureKind::None => {}
        }
    }
    for (k, v) in &hook.headers {
        headers.push((k.clone(), v.clone()));
    }
    headers
}

/// Sends one attempt of `d`. Never fails: errors become the attempt's record.
pub async fn send_attempt(
    client: &reqwest::Client,
    hook: &HookConfig,
    d: &DueDelivery,
    now: Timestamp,
) -> (AttemptRecord, Response) {
    let headers = build_headers(hook, &d.id, &d.event, &d.body, now);
    // `user:pass@` in the URL goes as Basic auth: reqwest takes it out of the URL and
    // percent-decodes it.
    let mut req = client.post(hook.url.clone()).body(d.body.clone());
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let started = Instant::now();
    let mut record = AttemptRecord {
        started_at: now,
        request_headers: recorded_headers(hook, headers),
        ..AttemptRecord::default()
    };
    let response = match req.send().await {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry::parse_retry_after);
            record.response_status = Some(code);
            record.response_headers = resp
                .headers()
                .iter()
                .take(MAX_RESPONSE_HEADERS)
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes());
                    (k.to_string(), crate::model::cap_text(&v, 1024))
                })
                .collect();
            match read_capped_body(&mut resp, MAX_RESPONSE_BODY).await {
                Ok(b) => record.response_body = b,
                Err((b, e)) => {
                    record.response_body = b;
                    record.error =
                        Some(format!("reading the response body: {}", describe_error(&e)));
                }
            }
            // Dropping `resp` here, unread, closes the connection: an endless body is
            // never read past the cap.
            drop(resp);
            Response::Status { code, retry_after }
        }
        Err(e) => {
            record.error = Some(describe_error(&e));
            Response::Error
        }
    };
    record.duration = started.elapsed();
    (record, response)
}

/// At most this much of a response body is read; the rest is never read.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// At most this many response headers are recorded.
const MAX_RESPONSE_HEADERS: usize = 100;

/// Reads at most `cap` bytes of a response body, chunk by chunk. On an error, what was
/// read so far comes back with it.
async fn read_capped_body(
    resp: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, (Vec<u8>, reqwest::Error)> {
    let mut body = Vec::new();
    while body.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => return Err((body, e)),
        }
    }
    Ok(body)
}

/// The request headers as they are recorded in the history: the values of the hook's
/// own `headers` (API keys, tokens) are `***`; `Authorization` is never recorded.
fn recorded_headers(hook: &HookConfig, headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .map(|(k, v)| {
            if hook.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(&k)) {
                (k, "***".to_string())
            } else {
                (k, v)
            }
        })
        .collect()
}

/// An error's chain without the URL (which may carry credentials).
fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// What a hook worker shares with the daemon.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Store,
    /// Poked after a commit that may have queued deliveries.
    pub wake: Arc<Notify>,
    /// Global cap on attempts in flight.
    pub in_flight: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

/// One hook's worker: sends its deliveries in order, forever.
pub async fn run_hook(hook: HookConfig, mut cx: WorkerContext) -> Result<(), DeliverError> {
    let client = client_for(&hook)?;
    // The wait after a failing store (a full disk): 1 s, doubling up to 30 s, reset by a
    // success; one log line per step.
    let mut store_backoff: Option<Duration> = None;
    let next_backoff = |b: &mut Option<Duration>| {
        let w = crate::store::next_backoff(*b);
        *b = Some(w);
        w
    };
    loop {
        if *cx.shutdown.borrow() {
            return Ok(());
        }
        let store = cx.store.clone();
        let name = hook.name.clone();
        let head = tokio::task::spawn_blocking(move || {
            match store.hook_disabled(&name) {
                Ok(Some(_)) => return Ok(None),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            store.next_delivery(&name)
        })
        .await
        .unwrap_or(Ok(None));
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                let w = next_backoff(&mut store_backoff);
                tracing::error!(hook = %hook.name, error = %crate::telemetry::chain(&e), retry_in_s = w.as_secs(), "cannot read the outbox");
                wait(&mut cx, w).await;
                continue;
            }
        };
        let Some(d) = head else {
            // Also look again now and then: `redeliver` and `hooks enable` write the
            // outbox from another process.
            wait(&mut cx, IDLE_RECHECK).await;
            continue;
        };
        let now = Timestamp::now();
        if d.next_attempt_at > now {
            wait(&mut cx, d.next_attempt_at.since(now)).await;
            continue;
        }
        let in_flight = cx.in_flight.clone();
        let Ok(permit) = in_flight.acquire_owned().await else {
            return Ok(());
        };
        let (record, response) = send_attempt(&client, &hook, &d, now).await;
        let attempts = d.attempts + 1;
        let decision = retry::decide(
            &hook.retry,
            attempts,
            &response,
            Timestamp::now(),
            fastrand::f64() * 2.0 - 1.0,
        );
        log_attempt(&hook, &d, attempts, &record, &decision);
        let update = match decision {
            Decision::Delivered => DeliveryUpdate::Delivered,
            Decision::RetryAt(t) => DeliveryUpdate::RetryAt(t),
            Decision::Dead => DeliveryUpdate::Dead,
            Decision::DisableHook => DeliveryUpdate::DisableHook,
        };
        drop(permit);
        let store = cx.store.clone();
        let saved = tokio::task::spawn_blocking(move || {
            store.commit_attempt(&d, &record, &update, Timestamp::now())
        })
        .await;
        if let Ok(Err(e)) = saved {
            let w = next_backoff(&mut store_backoff);
            tracing::error!(hook = %hook.name, error = %crate::telemetry::chain(&e), retry_in_s = w.as_secs(), "cannot record the attempt; it will be repeated");
            wait(&mut cx, w).await;
        } else {
            store_backoff = None;
        }
    }
}

fn log_attempt(
    hook: &HookConfig,
    d: &DueDelivery,
    attempt: u32,
    record: &AttemptRecord,
    decision: &Decision,
) {
    let status = record.response_status.map(i64::from).unwrap_or(-1);
    let ms = record.duration.as_millis() as u64;
    let error = crate::telemetry::escape(record.error.as_deref().unwrap_or(""));
    let error = error.as_str();
    match decision {
        Decision::Delivered => {
            tracing::info!(hook = %hook.name, delivery = %d.id, attempt, status, ms, event = %d.event, "delivered")
        }
        Decision::RetryAt(t) => {
            tracing::warn!(hook = %hook.name, delivery = %d.id, attempt, status, ms, error, retry_at = %t.rfc3339(), "attempt failed; will retry")
        }
        Decision::Dead => {
            tracing::error!(hook = %hook.name, delivery = %d.id, attempt, status, error, "delivery is dead: the retry schedule is used up")
        }
        Decision::DisableHook => {
            tracing::error!(hook = %hook.name, delivery = %d.id, "the receiver answered 410 Gone: hook disabled")
        }
    }
}

/// Sleeps until woken, for at most `max`, or until shutdown.
async fn wait(cx: &mut WorkerContext, max: Duration) {
    tokio::select! {
        _ = cx.wake.notified() => {}
        _ = tokio::time::sleep(max) => {}
        _ = cx.shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, HookConfig};
    use crate::infer::model::Deployment;
    use crate::model::Status;

    fn hook(
        name: &str,
        events: &[&str],
        sites: Option<&[&str]>,
        statuses: Option<&[Status]>,
    ) -> HookConfig {
        HookConfig {
            name: name.into(),
            url: url::Url::parse("http://127.0.0.1:1/").unwrap_or_else(|e| panic!("{e}")),
            events: events.iter().map(|e| e.to_string()).collect(),
            sites: sites.map(|s| s.iter().map(|x| x.to_string()).collect()),
            statuses: statuses.map(|s| s.to_vec()),
            format: Format::Kudu,
            secret: None,
            signature: SignatureKind::None,
            insecure_ssl: false,
            timeout: Duration::from_secs(1),
            retry: vec![],
            headers: vec![],
        }
    }

    fn transition(to: Status) -> Transition {
        Transition {
            deployment: Deployment {
                serial: 1,
                key: "1".into(),
                release: Some("1".into()),
                id: "abc".into(),
                status: to,
                announced: true,
                status_text: String::new(),
                commit: None,
                deployer: None,
                branch: None,
                received: Timestamp(0),
                started: None,
                ended: None,
                previous_id: None,
                rollback: false,
                last_change: Timestamp(0),
                fingerprint: String::new(),
                lock_seen: false,
                progress: String::new(),
                done_at: None,
                switched_away: None,
            },
            from: None,
            to,
            sequence: 1,
            last_success_end: None,
        }
    }

    fn routed(events: &[NewEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .flat_map(|e| {
                e.deliveries
                    .iter()
                    .map(move |d| (e.kind.clone(), d.hook.clone()))
            })
            .collect()
    }

    #[test]
    fn plan_routes_by_event_site_and_status() {
        let hooks = [
            hook("post", &["PostDeployment"], None, None),
            hook("changes", &["statuschanged"], None, None),
            hook(
                "failures",
                &["PostDeployment", "StatusChanged"],
                None,
                Some(&[Status::Failed]),
            ),
            hook("other-site", &["PostDeployment"], Some(&["blog"]), None),
        ];
        let cx = payload::Context {
            site: "shop",
            host_name: "h",
            layout: "releases",
        };
        let building = plan(&[transition(Status::Building)], &hooks, cx);
        assert_eq!(
            routed(&building),
            [("StatusChanged".into(), "changes".into())]
        );
        let failed = plan(&[transition(Status::Failed)], &hooks, cx);
        assert_eq!(
            routed(&failed),
            [
                ("StatusChanged".to_string(), "changes".to_string()),
                ("StatusChanged".into(), "failures".into()),
                ("PostDeployment".into(), "post".into()),
                ("PostDeployment".into(), "failures".into()),
            ]
        );
        // Events are recorded even when no hook wants them.
        assert_eq!(building.len(), 1);
        assert!(
            plan(&[transition(Status::Success)], &hooks[3..], cx)
                .iter()
                .all(|e| e.deliveries.is_empty())
        );
    }
}
