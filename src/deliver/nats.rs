//! The NATS JetStream sink: a hook whose `url` is `nats://` or `tls://` publishes each
//! delivery to its subject (`X-Deployhook-Subject`, chosen by `events`) with
//! `Nats-Msg-Id` = the delivery id — so JetStream drops a re-send inside the stream's
//! duplicate window — and the usual `X-Deployhook-*` headers. The stream's `PubAck` is
//! the "2xx" (recorded as 200 with the ack as the body); no ack, a timeout or a stream
//! error is a failed attempt under the hook's retry schedule. The connection is made on
//! the first attempt and kept; async-nats reconnects by itself.

use std::time::Instant;

use super::{AttemptRecord, Response, build_headers, recorded_headers};
use crate::config::{HookConfig, Secret};
use crate::events::SUBJECT_HEADER;
use crate::model::Timestamp;
use crate::store::DueDelivery;

/// One hook's connection, made when first needed.
#[derive(Default)]
pub struct Publisher {
    client: Option<async_nats::Client>,
}

/// Connects to `url` with `secret`, waiting at most `timeout` (5 s at most to connect)
/// for the connection and for each request (a PubAck).
pub async fn connect(
    url: &url::Url,
    secret: Option<&Secret>,
    name: &str,
    timeout: std::time::Duration,
) -> Result<async_nats::Client, String> {
    credentials(secret)?
        .name(name)
        .connection_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .request_timeout(Some(timeout))
        .require_tls(url.scheme() == "tls")
        .connect(server(url))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", crate::config::redact_url(url)))
}

/// The connect options a secret makes: a `.creds` file's text, an nkey seed (`SU…`),
/// else a token.
fn credentials(secret: Option<&Secret>) -> Result<async_nats::ConnectOptions, String> {
    Ok(match secret.map(Secret::first) {
        None => async_nats::ConnectOptions::new(),
        Some(s) if s.contains("BEGIN NATS USER JWT") => {
            async_nats::ConnectOptions::with_credentials(s)
                .map_err(|e| format!("the credentials do not parse: {e}"))?
        }
        Some(s) if s.starts_with("SU") && s.len() == 58 => {
            async_nats::ConnectOptions::new().nkey(s.to_string())
        }
        Some(s) => async_nats::ConnectOptions::new().token(s.to_string()),
    })
}

/// The server address of a URL, without credentials (they go as options).
fn server(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(4222);
    let scheme = if url.scheme() == "tls" { "tls" } else { "nats" };
    format!("{scheme}://{host}:{port}")
}

impl Publisher {
    async fn jetstream(
        &mut self,
        hook: &HookConfig,
    ) -> Result<async_nats::jetstream::Context, String> {
        if self.client.is_none() {
            let name = format!("deployhook hook {}", hook.name);
            let client = connect(&hook.url, hook.secret.as_ref(), &name, hook.timeout).await?;
            self.client = Some(client);
        }
        match &self.client {
            Some(c) => Ok(async_nats::jetstream::new(c.clone())),
            None => Err("not connected".into()),
        }
    }

    /// Publishes one attempt of `d`. Never fails: errors become the attempt's record.
    pub async fn send(
        &mut self,
        hook: &HookConfig,
        d: &DueDelivery,
        now: Timestamp,
    ) -> (AttemptRecord, Response) {
        let started = Instant::now();
        let mut headers = build_headers(hook, d, now);
        headers.push(("Nats-Msg-Id".to_string(), d.id.clone()));
        let subject = d
            .headers
            .iter()
            .find(|(k, _)| k == SUBJECT_HEADER)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                hook.nats
                    .as_ref()
                    .map(|n| n.subject_for("_", None, &d.event))
            })
            .unwrap_or_default();
        let mut record = AttemptRecord {
            started_at: now,
            request_headers: recorded_headers(hook, headers.clone()),
            ..AttemptRecord::default()
        };
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in &headers {
            map.append(k.as_str(), v.as_str());
        }
        let outcome = async {
            let js = self.jetstream(hook).await?;
            let ack = js
                .publish_with_headers(subject.clone(), map, d.body.clone().into())
                .await
                .map_err(|e| format!("publishing to {subject}: {e}"))?;
            tokio::time::timeout(hook.timeout, ack)
                .await
                .map_err(|_| format!("no PubAck for {subject} within {:?}", hook.timeout))?
                .map_err(|e| format!("no PubAck for {subject}: {e}"))
        };
        let response = match outcome.await {
            Ok(ack) => {
                record.response_status = Some(200);
                record.response_body = serde_json::to_vec(&serde_json::json!({
                    "stream": ack.stream,
                    "seq": ack.sequence,
                    "duplicate": ack.duplicate,
                }))
                .unwrap_or_default();
                Response::Status {
                    code: 200,
                    retry_after: None,
                }
            }
            Err(why) => {
                record.error = Some(why);
                Response::Error
            }
        };
        record.duration = started.elapsed();
        (record, response)
    }
}

/// For `deployhook check`: connects, and names the stream that captures `subject`.
pub async fn probe(hook: &HookConfig, subject: &str) -> Result<String, String> {
    let mut p = Publisher::default();
    let js = p.jetstream(hook).await?;
    match tokio::time::timeout(hook.timeout, js.stream_by_subject(subject.to_string())).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!(
            "connected, but no JetStream stream captures {subject}: {e}"
        )),
        Err(_) => Err(format!(
            "connected, but JetStream did not answer within {:?}",
            hook.timeout
        )),
    }
}
