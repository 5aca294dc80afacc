//! The HTTP API (SPEC §6), served with axum when `[api]` is present: Kudu's
//! `/api/hooks` (runtime hooks, stored in SQLite), publish, ping and `/healthz`. Every
//! route answers with and without the `/api` prefix; errors are `{"error": "..."}`.
//!
//! The API never runs a hook itself. A change of the runtime hooks is written to the
//! store, then handed to the daemon loop (`LoopRequest::ApiHooks`), which reconciles
//! the workers against config + runtime hooks like after a reload, and publishes the
//! hooks it runs (`HookView`) for the next publish or ping. Published events go through
//! the outbox like any other event.

mod auth;
mod chains;
mod console;
mod deliveries;
mod dora;
mod history;
mod hooks;
mod serve;
#[cfg(test)]
mod tests;

pub use serve::Limits;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, oneshot, watch};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Listen, Secret};
use crate::store::Store;
use crate::store::api_hooks::ApiHook;

/// Request URIs longer than this are refused with `414`.
pub const MAX_URI: usize = 8 * 1024;
/// Request bodies larger than this are refused with `413`.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long `/healthz` waits for the daemon loop to answer.
const LOOP_ANSWER: Duration = Duration::from_secs(2);

/// What the API needs from the config; replaced on a reload.
#[derive(Clone, Debug)]
pub struct Settings {
    pub token: Option<Secret>,
    pub allow_private_targets: bool,
    pub host_name: String,
    /// `public_url`: the base of the next chain step's callback URL.
    pub callback_base: Option<String>,
    /// How many hooks may be registered through the API.
    pub max_hooks: usize,
    /// The largest document `publish` takes.
    pub max_publish_bytes: usize,
    /// How many bytes a hook's queue may hold before a publish or redelivery to it is
    /// refused.
    pub max_queue_bytes: u64,
}

/// How long a client refused for a full queue is told to wait (`Retry-After`).
const QUEUE_FULL_RETRY_AFTER_S: u64 = 60;

/// A refusal for a full queue: `429` with `Retry-After`, counted.
pub(crate) fn queue_full(hook: &str, max: u64) -> Response {
    crate::metrics::get().api_refused("queue_full");
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "the queue of hook {hook} holds its limit of {max} bytes (api.max_queue_bytes): try again when it has drained"
        ),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&QUEUE_FULL_RETRY_AFTER_S.to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

pub use crate::running::HookView;

/// Asks of the daemon loop.
pub enum LoopRequest {
    /// The runtime hooks are now these: reconcile, then answer.
    ApiHooks(Vec<ApiHook>, oneshot::Sender<()>),
    /// Answer when the loop gets to it (`/healthz`).
    Ping(oneshot::Sender<()>),
}

/// The daemon's side of the API.
pub struct ApiHandle {
    pub settings: watch::Sender<Settings>,
    pub view: watch::Sender<HookView>,
    pub requests: mpsc::Receiver<LoopRequest>,
    /// Set once the first reconcile is done.
    pub ready: watch::Sender<bool>,
    pub listen: Listen,
    /// Closes this API's listener (a reload that drops or moves `[api]`).
    stop: watch::Sender<bool>,
    /// The connection limit in force (the configured one, at most a quarter of the file
    /// descriptor limit).
    pub limits: Limits,
    /// The limits as configured (what a reload compares).
    pub configured: Limits,
    /// The accept loop, which owns the listener.
    pub server: Option<tokio::task::JoinHandle<()>>,
    /// The TCP address really bound (a `listen` port 0 picks one).
    pub bound: Option<std::net::SocketAddr>,
}

impl ApiHandle {
    /// Closes the listener: no new connection is accepted (requests in flight end).
    pub fn close(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolves if the server ends while this handle still wants it (it runs until
    /// closed: an end is a failure), with why; pending once it has ended.
    pub async fn ended(&mut self) -> String {
        server_ended(&mut self.server).await
    }

    /// Closes the listener and waits until its socket is released, so the address can
    /// be bound again at once.
    pub async fn shut(mut self) {
        self.close();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// Resolves when the server task `server` ends, with why (and forgets it); pending when
/// there is none.
pub async fn server_ended(server: &mut Option<tokio::task::JoinHandle<()>>) -> String {
    let Some(task) = server.as_mut() else {
        return std::future::pending().await;
    };
    let why = match task.await {
        Ok(()) => "it ended".to_string(),
        Err(e) if e.is_panic() => "it panicked (a bug: please report it)".to_string(),
        Err(e) => e.to_string(),
    };
    *server = None;
    why
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    store: Store,
    settings: watch::Receiver<Settings>,
    view: watch::Receiver<HookView>,
    to_loop: mpsc::Sender<LoopRequest>,
    /// Hook changes and publishes one at a time, so the loop sees them in order and a
    /// publish never plans a delivery for a hook being deleted.
    mutate: Arc<tokio::sync::Mutex<()>>,
    ready: watch::Receiver<bool>,
    /// How long one request may take, reading its body included.
    request_timeout: Duration,
    /// The web console's sessions and CSRF secret.
    console: Arc<console::Console>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {listen}")]
    Bind {
        listen: String,
        #[source]
        source: std::io::Error,
    },
}

/// An answer with a status and `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    Problem::new(status, message).into_response()
}

/// Every error answer's body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorOut {
    /// What went wrong, in a sentence.
    error: String,
}

/// An error answer (`{"error": "..."}`), as a handler's `Err`.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ErrorOut {
            error: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Binds `listen` (a failure is fatal at start) and serves the API until `shutdown`.
/// Returns the daemon's handle; the server runs as a task.
pub async fn start(
    listen: &Listen,
    store: &Store,
    settings: Settings,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<ApiHandle, ApiError> {
    let bind_error = |source| ApiError::Bind {
        listen: listen.to_string(),
        source,
    };
    let bound = match listen {
        Listen::Tcp(addr) => Bound::Tcp(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(bind_error)?,
        ),
        Listen::Unix(path) => Bound::Unix(bind_unix(path).map_err(bind_error)?),
    };
    let (settings_tx, settings_rx) = watch::channel(settings);
    let (view_tx, view_rx) = watch::channel(HookView::default());
    let (ready_tx, ready_rx) = watch::channel(false);
    let (to_loop, requests) = mpsc::channel(16);
    let api = Api {
        store: store.clone(),
        settings: settings_rx,
        view: view_rx,
        to_loop,
        mutate: Arc::new(tokio::sync::Mutex::new(())),
        ready: ready_rx,
        request_timeout: limits.request_timeout,
        console: Arc::new(console::Console::new()),
    };
    let app = router(api);
    let configured = limits;
    let limits = Limits {
        max_connections: limits.max_connections.min(fd_budget()),
        ..limits
    };
    // This API's own stop (a reload), or the daemon's shutdown.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut own_stop = stop_rx.clone();
    let (either_tx, either_rx) = watch::channel(false);
    // This API's own stop (a reload) or the daemon's shutdown stops the server.
    let stopped = async move {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            _ = own_stop.wait_for(|s| *s) => {}
        }
        let _ = either_tx.send(true);
    };
    // The address really bound (a `listen` port 0 picks one): what clients and tests use.
    let bound_addr = match &bound {
        Bound::Tcp(l) => l.local_addr().ok(),
        Bound::Unix(_) => None,
    };
    let address = bound_addr.map_or_else(|| listen.to_string(), |a| a.to_string());
    tracing::info!(listen = %listen, address = %address, max_connections = limits.max_connections, "API listening");
    // One task: the accept loop and what stops it; the daemon's loop hears its end.
    let server = tokio::spawn(async move {
        let serve = async move {
            match bound {
                Bound::Tcp(l) => serve::serve(l, app, limits, either_rx).await,
                Bound::Unix(l) => serve::serve(l, app, limits, either_rx).await,
            }
        };
        tokio::join!(stopped, serve);
    });
    Ok(ApiHandle {
        settings: settings_tx,
        view: view_tx,
        requests,
        ready: ready_tx,
        listen: listen.clone(),
        stop: stop_tx,
        limits,
        configured,
        server: Some(server),
        bound: bound_addr,
    })
}

/// A quarter of the file descriptor limit: what the API may hold at most, so site
/// reads, the outbox and deliveries always have descriptors left.
fn fd_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        return 256;
    }
    usize::try_from(lim.rlim_cur / 4)
        .unwrap_or(usize::MAX)
        .max(16)
}

/// A unix socket at `path`, mode 0660 (a stale socket from an earlier run is replaced;
/// any other file there is not).
fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Every documented route, without the `/api` prefix: the router and the OpenAPI
/// description come from the same handlers (`#[utoipa::path]`), so they cannot drift.
fn documented() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(hooks::list, hooks::subscribe))
        .routes(routes!(hooks::get_one, hooks::remove))
        .routes(routes!(hooks::ping))
        .routes(routes!(hooks::publish))
        .routes(routes!(history::hook_deliveries))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::retry))
        .routes(routes!(dora::get))
        .routes(routes!(history::deployments))
        .routes(routes!(history::deployment))
        .routes(routes!(history::delivery))
        .routes(routes!(history::redeliver))
        .routes(routes!(chains::callback))
        .routes(routes!(chains::list))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "deployhook",
        description = "Kudu-compatible hooks API of deployhook. Every route also answers without the /api prefix. Errors are {\"error\": \"...\"}."
    ),
    modifiers(&TokenAuth)
)]
struct ApiDoc;

/// The token (Bearer, or Basic with the token as password) on every route but
/// `/healthz`.
struct TokenAuth;

impl utoipa::Modify for TokenAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

fn router(api: Api) -> Router {
    let (prefixed, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api", documented())
        .split_for_parts();
    let (plain, _) = documented().split_for_parts();
    let doc = Arc::new(doc.to_json().unwrap_or_else(|_| "{}".to_string()));
    let serve_doc = move || {
        let doc = doc.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                doc.as_str().to_string(),
            )
        }
    };
    Router::new()
        .merge(prefixed)
        .merge(plain)
        .merge(console::routes())
        .route("/api/openapi.json", get(serve_doc.clone()))
        .route("/openapi.json", get(serve_doc))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(api.clone(), bounded))
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Bounds a request: a declared body over `MAX_BODY` is `413` before anything is read,
/// and a request (its body read included) that takes longer than `request_timeout` is
/// `408`: a client that declares 10 GB and sends one byte gets an answer.
async fn bounded(
    axum::extract::State(api): axum::extract::State<Api>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().to_string().len() > MAX_URI {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("the URI is longer than {MAX_URI} bytes"),
        );
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        );
    }
    match tokio::time::timeout(api.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long (request_timeout)",
        ),
    }
}

/// Makes every error answer JSON: axum's own rejections (a path or query it cannot
/// decode) are plain text; their text becomes `{"error": ...}`.
async fn json_errors(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    // (A console page is HTML whatever its status.)
    if !(resp.status().is_client_error() || resp.status().is_server_error()) || is_json {
        return resp;
    }
    let status = resp.status();
    let text = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let text = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        crate::model::cap_text(text.trim(), 1024)
    };
    error(status, text)
}

/// `200` once the first reconcile is done and the daemon loop answers; `503` otherwise.
#[utoipa::path(get, path = "/healthz", tag = "health", summary = "200 once the first reconcile is done and the daemon loop answers",
    security(()),
    responses((status = 200, description = "OK", body = HealthOut), (status = 503, description = "Not ready", body = ErrorOut)))]
async fn healthz(axum::extract::State(api): axum::extract::State<Api>) -> Response {
    if !*api.ready.borrow() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the first reconcile is not done",
        );
    }
    let (tx, rx) = oneshot::channel();
    let answered = api.to_loop.try_send(LoopRequest::Ping(tx)).is_ok()
        && matches!(tokio::time::timeout(LOOP_ANSWER, rx).await, Ok(Ok(())));
    if answered {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon loop does not answer",
        )
    }
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct HealthOut {
    status: String,
}

/// `GET /metrics`: the Prometheus text format (OpenMetrics), with each running hook's
/// queue read from the outbox now.
#[utoipa::path(get, path = "/metrics", tag = "health", summary = "Metrics in the Prometheus text format (OpenMetrics)",
    responses((status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "No token or a wrong one", body = ErrorOut)))]
async fn metrics(axum::extract::State(api): axum::extract::State<Api>) -> Response {
    let hooks = api.hook_names();
    let read = api
        .blocking(move |s| {
            let now = crate::model::Timestamp::now();
            let queues = hooks
                .into_iter()
                .map(|h| {
                    let sum = s.hook_summary(&h)?;
                    let age = sum
                        .oldest_pending
                        .map_or(0.0, |t| now.since(t).as_secs_f64());
                    Ok((h, sum.pending, age))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((queues, dora_samples(s)?))
        })
        .await;
    match read {
        Ok((queues, dora)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            crate::metrics::get().encode_with(&queues, &dora),
        )
            .into_response(),
        Err(p) => p.into_response(),
    }
}

/// DORA's samples over all of history, for `/metrics`: computed again only when a
/// deployment changed since the last scrape.
fn dora_samples(
    s: &crate::store::Store,
) -> Result<
    std::sync::Arc<std::collections::BTreeMap<String, crate::store::dora::Samples>>,
    crate::store::StoreError,
> {
    type Cached = (
        (i64, i64),
        std::sync::Arc<std::collections::BTreeMap<String, crate::store::dora::Samples>>,
    );
    static CACHE: std::sync::Mutex<Option<Cached>> = std::sync::Mutex::new(None);
    let version = s.dora_version()?;
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((v, samples)) = cache.as_ref()
        && *v == version
    {
        return Ok(samples.clone());
    }
    let samples = std::sync::Arc::new(crate::store::dora::samples(
        &s.dora_history(None)?,
        crate::store::dora::Window::ALL,
    ));
    *cache = Some((version, samples.clone()));
    Ok(samples)
}

impl Api {
    /// The names of the hooks that run now (the config's, then the API's).
    pub(crate) fn hook_names(&self) -> Vec<String> {
        self.view
            .borrow()
            .hooks
            .iter()
            .map(|h| h.name.clone())
            .collect()
    }

    /// Wakes the workers of `hooks`: something of theirs is due now.
    pub(crate) fn wake(&self, hooks: &[String]) {
        let view = self.view.borrow();
        for h in hooks {
            if let Some(w) = view.wakes.get(h) {
                w.notify_one();
            }
        }
    }

    /// Retries every delivery `filter` matches (`Store::retry_matching`, within
    /// `max_queue_bytes`, one change at a time) and wakes the hooks that got something:
    /// for `POST /api/deliveries/retry` and the console's form alike.
    pub(crate) async fn retry_matching(
        &self,
        filter: crate::store::query::DeliveryFilter,
    ) -> Result<crate::store::query::RetryCount, Problem> {
        let _one_at_a_time = self.mutate.lock().await;
        let max = self.settings.borrow().max_queue_bytes;
        let now = crate::model::Timestamp::now();
        let n = self
            .blocking(move |s| s.retry_matching(&filter, Some(max), now))
            .await?;
        self.wake(&n.hooks);
        Ok(n)
    }

    /// Runs a store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, Problem> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let text = crate::telemetry::chain(&e);
                tracing::error!(error = %crate::telemetry::escape(&text), "API: the store failed");
                Err(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the outbox cannot be read or written; see the daemon's log",
                ))
            }
            Err(_) => Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )),
        }
    }

    /// Hands the runtime hooks to the loop and waits until it runs them.
    async fn hooks_changed(&self, hooks: Vec<ApiHook>) {
        let (tx, rx) = oneshot::channel();
        if self
            .to_loop
            .send(LoopRequest::ApiHooks(hooks, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}
