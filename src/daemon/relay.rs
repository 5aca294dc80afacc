//! Relay mode (issue 13): a `[[source]]` task consumes a fleet's JetStream stream through
//! a durable pull consumer and turns each message into an event of this deployhook
//! (`events::relayed`), committed with the source message id in one transaction
//! (`Store::commit_relayed`: a message seen twice is dropped); the message is acknowledged
//! only after that commit. One message is in flight at a time (`max_ack_pending = 1`), so
//! each edge's order survives a relay crash: an unacknowledged message comes back before
//! any later one. A message that is no deployhook event is logged (escaped, capped),
//! counted and acknowledged, never retried forever.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::config::SourceConfig;
use crate::events::relayed::Relayed;
use crate::model::Timestamp;
use crate::running::HookView;
use crate::store::Store;
use crate::telemetry::escape;

/// How long an unacknowledged message waits before JetStream sends it again.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Runs one source until `stop`; connection and stream errors are logged and retried
/// (1 s doubling to 30 s).
pub async fn run(
    source: SourceConfig,
    view: watch::Receiver<HookView>,
    store: Store,
    host: String,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut backoff: Option<Duration> = None;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match consume(&source, &view, &store, &host, &mut stop).await {
            Ok(()) => return Ok(()),
            Err(why) => {
                let wait = crate::model::next_backoff(backoff);
                backoff = Some(wait);
                tracing::warn!(source = %source.name, error = %escape(&why), retry_in_s = wait.as_secs(), "relay source interrupted");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Ok(()),
                }
            }
        }
    }
}

async fn consume(
    source: &SourceConfig,
    view: &watch::Receiver<HookView>,
    store: &Store,
    host: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let js = async_nats::jetstream::new(
        crate::deliver::nats::connect(
            &source.url,
            source.secret.as_ref(),
            &format!("deployhook source {}", source.name),
            Duration::from_secs(10),
        )
        .await?,
    );
    let stream = js
        .get_stream(&source.stream)
        .await
        .map_err(|e| format!("stream {}: {e}", source.stream))?;
    let consumer = stream
        .get_or_create_consumer(
            &source.durable,
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(source.durable.clone()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", source.durable))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consuming {}: {e}", source.stream))?;
    tracing::info!(source = %source.name, stream = %source.stream, durable = %source.durable, "relay source consuming");
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => return Ok(()),
            m = messages.next() => match m {
                None => return Err("the consumer's messages ended".into()),
                Some(Err(e)) => return Err(format!("receiving: {e}")),
                Some(Ok(m)) => m,
            },
        };
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let msg_id =
            header("Nats-Msg-Id").unwrap_or_else(|| format!("{}:{sequence}", source.stream));
        let parsed = Relayed::parse(header("X-Deployhook-Event").as_deref(), &msg.payload)
            .and_then(|r| r.published_by(&msg.subject, source.host_token).map(|()| r));
        match parsed {
            Err(why) => {
                crate::metrics::get().relay_skipped(&source.name);
                tracing::warn!(source = %source.name, sequence, subject = %escape(&msg.subject), error = %escape(&why), "a message that is no deployhook event of its publisher: skipped");
            }
            Ok(relayed) => {
                let current = view.borrow().clone();
                let event = relayed.plan(&current, host);
                let deployment = relayed.deployment();
                let hooks: Vec<String> = event.deliveries.iter().map(|d| d.hook.clone()).collect();
                let (store, name, id) = (store.clone(), source.name.clone(), msg_id.clone());
                let fresh = tokio::task::spawn_blocking(move || {
                    store.commit_relayed(&name, &id, &event, deployment.as_ref(), Timestamp::now())
                })
                .await
                .map_err(|e| format!("the commit task failed: {e}"))?
                .map_err(|e| format!("the outbox: {}", crate::telemetry::chain(&e)))?;
                if fresh {
                    for h in &hooks {
                        if let Some(w) = current.wakes.get(h) {
                            w.notify_one();
                        }
                    }
                } else {
                    tracing::debug!(source = %source.name, msg_id = %escape(&msg_id), "a message committed before: dropped");
                }
            }
        }
        msg.ack()
            .await
            .map_err(|e| format!("acknowledging message {sequence}: {e}"))?;
    }
}

/// For `deployhook check`: connects, and counts the stream's messages.
pub async fn probe(source: &SourceConfig) -> Result<u64, String> {
    let client = crate::deliver::nats::connect(
        &source.url,
        source.secret.as_ref(),
        &format!("deployhook check {}", source.name),
        Duration::from_secs(5),
    )
    .await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(&source.stream)
        .await
        .map_err(|e| format!("connected, but stream {}: {e}", source.stream))?;
    let info = stream
        .info()
        .await
        .map_err(|e| format!("stream {}: {e}", source.stream))?;
    Ok(info.state.messages)
}
