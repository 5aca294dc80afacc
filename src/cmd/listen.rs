//! A small webhook receiver on loopback, for people setting up hooks (`deployhook
//! listen`) and for `deployhook demo`: it answers every request with a fixed status and
//! passes what it received on, and can check Standard Webhooks and GitHub signatures.

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Secret;
use crate::deliver::sign;
use crate::telemetry::{escape, escape_multiline};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Some(true/false)` when the request carries a signature and a secret is known.
    pub fn signature_valid(&self, secret: Option<&Secret>) -> Option<bool> {
        let secret = secret?;
        if let Some(sig) = self.header("webhook-signature") {
            let id = self.header("webhook-id").unwrap_or_default();
            let ts = self
                .header("webhook-timestamp")
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or_default();
            return Some(sign::verify_standard(secret, id, ts, &self.body, sig));
        }
        self.header("x-hub-signature-256")
            .map(|sig| sign::verify_github(secret, &self.body, sig))
    }

    /// One line: event, status change, id, signature.
    pub fn summary(&self, secret: Option<&Secret>) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
        let signature = match self.signature_valid(secret) {
            Some(true) => "valid",
            Some(false) => "INVALID",
            None => "none",
        };
        escape(&format!(
            "{:<15} {:>9} -> {:<9} id {}  seq {}  signature {signature}",
            self.header("x-deployhook-event").unwrap_or("-"),
            field("previousStatus").replace('-', "new"),
            field("status"),
            field("id"),
            v.get("sequence").map_or("-".to_string(), |s| s.to_string()),
        ))
    }

    /// A human-readable account: event, delivery id, signature, pretty JSON body.
    pub fn describe(&self, secret: Option<&Secret>) -> String {
        let event = self.header("x-deployhook-event").unwrap_or("-");
        let delivery = self.header("x-deployhook-delivery").unwrap_or("-");
        let signature = match self.signature_valid(secret) {
            Some(true) => "valid",
            Some(false) => "INVALID",
            None if self.header("webhook-signature").is_some()
                || self.header("x-hub-signature-256").is_some() =>
            {
                "not checked (no --secret-file)"
            }
            None => "none",
        };
        let body = match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        };
        format!(
            "{}\n{}",
            escape(&format!(
                "{} {}  event={event} delivery={delivery} signature={signature}",
                self.method, self.path
            )),
            escape_multiline(&body)
        )
    }
}

#[derive(Clone)]
struct Shared {
    answer: StatusCode,
    tx: mpsc::UnboundedSender<Received>,
}

async fn receive(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = shared.tx.send(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    shared.answer
}

/// Serves on `listener` until `shutdown` resolves, answering `answer` to every request.
pub async fn serve(
    listener: TcpListener,
    answer: u16,
    tx: mpsc::UnboundedSender<Received>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let answer = StatusCode::from_u16(answer).unwrap_or(StatusCode::OK);
    let app = Router::new()
        .fallback(receive)
        .with_state(Shared { answer, tx });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `deployhook listen`: prints every request until Ctrl-C.
pub async fn run(
    bind: std::net::IpAddr,
    port: u16,
    secret: Option<Secret>,
    answer: u16,
) -> std::io::Result<()> {
    let listener = TcpListener::bind((bind, port)).await?;
    let addr = listener.local_addr()?;
    println!(
        "listening on http://{addr}/ (answering {answer}{})",
        if secret.is_some() {
            ", checking signatures"
        } else {
            ""
        }
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(serve(listener, answer, tx, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    while let Some(r) = rx.recv().await {
        println!("{}\n", r.describe(secret.as_ref()));
    }
    server.await.unwrap_or(Ok(()))
}
