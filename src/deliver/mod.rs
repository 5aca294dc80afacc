//! Delivery: one worker per hook sends its queue from the outbox, in order (`run_hook`).
//! Only this module knows reqwest (the health probe's GETs included).
//!
//! Stages of one attempt, each a function: `build_headers` (headers, signature) →
//! `send` (one HTTP request, never following redirects; or the GitHub Deployments sink,
//! `github.rs`) → `retry::decide` (pure) →
//! `Store::commit_attempt`. A worker sends only committed outbox rows (read, or handed over
//! by the read that committed them, `handoff.rs`), so a restart resumes exactly where the
//! database says: unsent and in-flight deliveries are sent again.

pub mod github;
pub mod guard;
mod handoff;
mod health;
pub mod hook_health;

pub use handoff::Handoff;
pub use health::{health_client, probe_health};
pub mod nats;
pub mod retry;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use crate::config::{Format, HookConfig, SignatureKind};
use crate::model::Timestamp;
use crate::store::{AttemptRecord, AttemptResult, DueDelivery, Outcome, Store, StoreError};
use retry::Response;

pub const USER_AGENT: &str = concat!("deployhook/", env!("CARGO_PKG_VERSION"));

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
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5).min(hook.timeout))
        .timeout(hook.timeout)
        .danger_accept_invalid_certs(hook.insecure_ssl)
        .user_agent(USER_AGENT);
    if hook.public_only {
        // Connect only to the addresses the guard checked: no proxy in between.
        builder = builder
            .dns_resolver(std::sync::Arc::new(guard::PublicOnly))
            .no_proxy();
    }
    builder.build().map_err(|source| DeliverError::BuildClient {
        hook: hook.name.clone(),
        source,
    })
}

/// The headers of one attempt of `d` (without credentials, which go as Basic auth): ours,
/// then the format's own (a content type replaces ours), the signature, the hook's.
pub fn build_headers(hook: &HookConfig, d: &DueDelivery, now: Timestamp) -> Vec<(String, String)> {
    let (delivery_id, body) = (d.id.as_str(), d.body.as_slice());
    let own_type = d
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    let mut headers = Vec::new();
    if !own_type {
        headers.push((
            "Content-Type".to_string(),
            "application/json; charset=utf-8".to_string(),
        ));
    }
    headers.extend([
        ("User-Agent".to_string(), USER_AGENT.to_string()),
        ("X-Deployhook-Event".to_string(), d.event.clone()),
        ("X-Deployhook-Delivery".to_string(), delivery_id.to_string()),
    ]);
    headers.extend(d.headers.iter().cloned());
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

/// How a hook's deliveries leave: HTTP (reqwest), or a NATS connection.
pub struct Sink {
    http: reqwest::Client,
    nats: nats::Publisher,
}

impl Sink {
    pub fn for_hook(hook: &HookConfig) -> Result<Sink, DeliverError> {
        Ok(Sink {
            http: client_for(hook)?,
            nats: nats::Publisher::default(),
        })
    }
}

/// Sends one attempt of `d` the way its hook says: a JetStream publish for a NATS hook
/// (`nats.rs`), the API's create and status for `github-deployments` (`github.rs`), else
/// one POST of the body.
pub async fn send(
    sink: &mut Sink,
    hook: &HookConfig,
    d: &DueDelivery,
    store: &Store,
    now: Timestamp,
) -> (AttemptRecord, Response) {
    if hook.nats.is_some() {
        sink.nats.send(hook, d, now).await
    } else if hook.format == Format::GithubDeployments {
        github::send(&sink.http, hook, d, store, now).await
    } else {
        send_attempt(&sink.http, hook, d, now).await
    }
}

/// Sends one attempt of `d`. Never fails: errors become the attempt's record.
pub async fn send_attempt(
    client: &reqwest::Client,
    hook: &HookConfig,
    d: &DueDelivery,
    now: Timestamp,
) -> (AttemptRecord, Response) {
    if hook.public_only
        && let Some(why) = guard::refuse_literal(&hook.url)
    {
        let record = AttemptRecord {
            started_at: now,
            error: Some(why),
            ..AttemptRecord::default()
        };
        return (record, Response::Error);
    }
    let headers = build_headers(hook, d, now);
    // `user:pass@` in the URL goes as Basic auth: reqwest takes it out of the URL and
    // percent-decodes it.
    let req = client.post(hook.url.clone()).body(d.body.clone());
    exchange(hook, req, headers, now).await
}

/// Sends `req` with `headers`; records the request's headers (as `recorded_headers`
/// shows them), the response's status, headers and capped body, or the error.
pub(crate) async fn exchange(
    hook: &HookConfig,
    mut req: reqwest::RequestBuilder,
    headers: Vec<(String, String)>,
    now: Timestamp,
) -> (AttemptRecord, Response) {
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
                .and_then(|v| retry::parse_retry_after(v, now));
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
pub(crate) fn recorded_headers(
    hook: &HookConfig,
    headers: Vec<(String, String)>,
) -> Vec<(String, String)> {
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

/// What went wrong with a request, in a few words (`connection refused`, `timed out`)
/// or as the chain of its causes — never the request's own text (it names the URL, and
/// so its credentials).
fn describe_error(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let short = match io.kind() {
                ErrorKind::ConnectionRefused => Some("connection refused"),
                ErrorKind::ConnectionReset => Some("connection reset"),
                ErrorKind::ConnectionAborted => Some("connection aborted"),
                ErrorKind::TimedOut => Some("timed out"),
                _ => None,
            };
            if let Some(short) = short {
                return short.to_string();
            }
        }
        source = s.source();
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{kind}: {}", crate::telemetry::chain(cause)),
        None => kind.to_string(),
    }
}

/// What a hook worker shares with the daemon.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Store,
    /// Records attempts, several hooks' at once.
    pub recorder: Recorder,
    /// Poked after a commit that may have queued deliveries.
    pub wake: Arc<Notify>,
    /// What a site read committed for this hook, handed over with the wake-up.
    pub handoff: Arc<Handoff>,
    /// Global cap on attempts in flight.
    pub in_flight: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    /// The hooks that run now: who gets this hook's operational events, and their
    /// wake-ups.
    pub view: watch::Receiver<crate::running::HookView>,
}

/// How many of a hook's pending deliveries one queue read takes.
const BATCH: usize = 32;

/// How many attempts one transaction records at most.
const MAX_BATCH: usize = 256;

type RecordRequest = (AttemptResult, oneshot::Sender<Result<(), StoreError>>);

/// The way to the recorder: each worker sends its attempt and waits until it is recorded.
#[derive(Clone)]
pub struct Recorder(mpsc::Sender<RecordRequest>);

impl Recorder {
    /// A recorder and the receiving end `run_recorder` takes.
    pub fn new() -> (Recorder, mpsc::Receiver<RecordRequest>) {
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        (Recorder(tx), rx)
    }

    /// Records one attempt; returns once it is committed (or failed to be).
    pub async fn record(&self, result: AttemptResult) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        if self.0.send((result, done)).await.is_err() {
            return Err(StoreError::Closed);
        }
        answer.await.unwrap_or(Err(StoreError::Closed))
    }
}

/// Group commit: takes every attempt waiting (up to 256) and records them in one
/// transaction, then answers each worker. Ends when every worker is gone.
pub async fn run_recorder(
    store: Store,
    mut rx: mpsc::Receiver<RecordRequest>,
) -> Result<(), DeliverError> {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let (results, answers): (Vec<AttemptResult>, Vec<_>) = batch.into_iter().unzip();
        let store = store.clone();
        let committed =
            tokio::task::spawn_blocking(move || store.commit_attempts(&results, Timestamp::now()))
                .await
                .unwrap_or(Err(StoreError::Closed));
        for answer in answers {
            let _ = answer.send(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(e.again()),
            });
        }
    }
    Ok(())
}

/// One hook's worker: sends its deliveries in order, forever.
pub async fn run_hook(hook: HookConfig, mut cx: WorkerContext) -> Result<(), DeliverError> {
    let mut sink = Sink::for_hook(&hook)?;
    // The wait after a failing store (a full disk): 1 s, doubling up to 30 s, reset by a
    // success; one log line per step.
    let mut store_backoff: Option<Duration> = None;
    let next_backoff = |b: &mut Option<Duration>| {
        let w = crate::model::next_backoff(*b);
        *b = Some(w);
        w
    };
    // The head of the queue and the deliveries after it, read in one query: after a
    // delivery is done (delivered or dead) the next one goes without another read.
    let mut batch: std::collections::VecDeque<DueDelivery> = std::collections::VecDeque::new();
    // Whether a hand-off can be taken without reading the outbox (`handoff.rs`).
    let mut known = handoff::Known::default();
    // The run of failures so far (a restart goes on counting where it stopped).
    let mut health = {
        let store = cx.store.clone();
        let name = hook.name.clone();
        match tokio::task::spawn_blocking(move || store.failure_run(&name)).await {
            Ok(Ok((failures, since))) => hook_health::Health { failures, since },
            _ => hook_health::Health::default(),
        }
    };
    loop {
        if *cx.shutdown.borrow() {
            return Ok(());
        }
        if batch.is_empty()
            && let Some(handed) = known.take(&cx.handoff)
        {
            batch.extend(handed);
        } else if batch.is_empty() {
            let store = cx.store.clone();
            let name = hook.name.clone();
            let read = tokio::task::spawn_blocking(move || {
                match store.hook_disabled(&name) {
                    Ok(Some(_)) => return Ok(None),
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
                crate::metrics::get().queue_read(&name);
                store.next_deliveries(&name, BATCH).map(Some)
            })
            .await
            .unwrap_or(Ok(None));
            match read {
                Ok(Some(ds)) => {
                    known.read(&ds);
                    batch.extend(ds);
                }
                // Disabled (or the read was cancelled): nothing is sent until a read
                // finds it enabled.
                Ok(None) => known.forget(),
                Err(e) => {
                    known.forget();
                    let w = next_backoff(&mut store_backoff);
                    tracing::error!(hook = %hook.name, error = %crate::telemetry::chain(&e), retry_in_s = w.as_secs(), "cannot read the outbox");
                    wait(&mut cx, Some(w)).await;
                    continue;
                }
            }
        }
        let Some(d) = batch.front().cloned() else {
            // Idle: no timer. A commit wakes it (a read's, the API's, the relay's), and
            // what another process writes (`deliveries retry`, `redeliver`, `hooks
            // enable`) through the daemon's SIGUSR1, or the resync at the latest.
            wait(&mut cx, None).await;
            continue;
        };
        let now = Timestamp::now();
        if d.next_attempt_at > now {
            batch.clear();
            known.forget();
            // Until it is due, or woken (`deliveries retry` may have made it due now).
            wait(&mut cx, Some(d.next_attempt_at.since(now))).await;
            continue;
        }
        let in_flight = cx.in_flight.clone();
        let Ok(permit) = in_flight.acquire_owned().await else {
            return Ok(());
        };
        let (record, response) = send(&mut sink, &hook, &d, &cx.store, now).await;
        let attempts = d.attempts + 1;
        let decision = retry::decide(
            &hook.retry,
            attempts,
            &response,
            Timestamp::now(),
            fastrand::f64() * 2.0 - 1.0,
        );
        // The hooks that run now, read in place (no copy per attempt): who gets the
        // operational events this attempt makes.
        let (update, also) = {
            let view = cx.view.borrow();
            let (update, facts) = health.after(
                &hook,
                &view.host_name,
                &d,
                &record,
                decision,
                Timestamp::now(),
            );
            let also: Vec<_> = facts
                .iter()
                .map(|f| crate::events::ops::plan(f, &view.hooks))
                .collect();
            (update, also)
        };
        log_attempt(&hook, &d, attempts, &record, &update);
        let told: Vec<String> = also
            .iter()
            .flat_map(|e| e.deliveries.iter().map(|x| x.hook.clone()))
            .collect();
        let took = record.duration.as_secs_f64();
        drop(permit);
        // Recorded (with other hooks' attempts, in one transaction) before this hook's
        // next attempt; its operational events in the same transaction.
        let saved = cx
            .recorder
            .record(AttemptResult {
                delivery: d,
                record,
                outcome: update,
                also,
            })
            .await;
        if saved.is_ok() && !told.is_empty() {
            let view = cx.view.borrow();
            for name in &told {
                if let Some(w) = view.wakes.get(name) {
                    w.notify_one();
                }
            }
        }
        if let Err(e) = saved {
            batch.clear();
            known.forget();
            let w = next_backoff(&mut store_backoff);
            tracing::error!(hook = %hook.name, error = %crate::telemetry::chain(&e), retry_in_s = w.as_secs(), "cannot record the attempt; it will be repeated");
            wait(&mut cx, Some(w)).await;
        } else {
            store_backoff = None;
            let outcome = match update {
                Outcome::Delivered => "delivered",
                Outcome::RetryAt(_) => "retry",
                Outcome::Dead => "dead",
                Outcome::DisableHook => "disabled",
            };
            crate::metrics::get().attempt(&hook.name, outcome, took);
            match update {
                // Done: the next one in the batch goes now.
                Outcome::Delivered | Outcome::Dead => {
                    batch.pop_front();
                }
                // Waits, or the hook is disabled: read the queue again.
                Outcome::RetryAt(_) | Outcome::DisableHook => {
                    batch.clear();
                    known.forget();
                }
            }
        }
    }
}

fn log_attempt(
    hook: &HookConfig,
    d: &DueDelivery,
    attempt: u32,
    record: &AttemptRecord,
    decision: &Outcome,
) {
    // No answer: no status at all (never a made-up -1), and the error says why.
    let status = record.response_status.map(u64::from);
    let ms = record.duration.as_millis() as u64;
    let error = record.error.as_deref().map(crate::telemetry::escape);
    let error = error.as_deref();
    match decision {
        Outcome::Delivered => {
            tracing::info!(hook = %hook.name, delivery = %d.id, attempt, status, ms, event = %d.event, "delivered")
        }
        Outcome::RetryAt(t) => {
            tracing::warn!(hook = %hook.name, delivery = %d.id, attempt, status, ms, error, retry_at = %t.rfc3339(), "attempt failed; will retry")
        }
        Outcome::Dead => {
            tracing::error!(hook = %hook.name, delivery = %d.id, attempt, status, error, "delivery is dead: the retry schedule is used up")
        }
        Outcome::DisableHook => {
            tracing::error!(hook = %hook.name, delivery = %d.id, "the receiver answered 410 Gone: hook disabled")
        }
    }
}

/// Sleeps until woken, for at most `max` (no limit: `None`), or until shutdown.
async fn wait(cx: &mut WorkerContext, max: Option<Duration>) {
    let timer = async {
        match max {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cx.wake.notified() => {}
        _ = timer => {}
        _ = cx.shutdown.changed() => {}
    }
}
