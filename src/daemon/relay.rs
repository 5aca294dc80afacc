//! Relay mode (issue 13): a `[[source]]` task reads a fleet's JetStream stream in order
//! (a durable pull consumer made again at every start from where it stopped), and turns each message into an event of
//! this deployhook (`events::relayed`). What is ready is committed as one batch — each
//! event with its source message id (a message id seen twice is dropped) and the stream
//! sequence reached (`Store::commit_relayed_batch`) — so a relay killed at any point
//! resumes right after its last commit: nothing lost, nothing twice, each edge's order the
//! stream's, many messages per transaction. A message that is no deployhook event is
//! logged (escaped, capped), counted and passed.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::config::SourceConfig;
use crate::events::relayed::Relayed;
use crate::model::Timestamp;
use crate::running::HookView;
use crate::store::Store;
use crate::store::relay::RelayedMessage;
use crate::telemetry::escape;

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

/// How many messages one transaction commits at most.
const MAX_BATCH: usize = 256;

async fn consume(
    source: &SourceConfig,
    view: &watch::Receiver<HookView>,
    store: &Store,
    host: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    use futures_util::FutureExt;
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
    // Where this relay stopped, from its own outbox; the first time, where the durable
    // consumer of earlier versions had acknowledged up to, else the stream's start.
    let key = source.durable.clone();
    let position = {
        let (store, key) = (store.clone(), key.clone());
        tokio::task::spawn_blocking(move || store.source_position(&key))
            .await
            .map_err(|e| format!("the position task failed: {e}"))?
            .map_err(|e| format!("the outbox: {}", crate::telemetry::chain(&e)))?
    };
    let start = match position {
        Some(p) => p + 1,
        None => match stream.consumer_info(&source.durable).await {
            Ok(info) => info.ack_floor.stream_sequence + 1,
            Err(_) => 1,
        },
    };
    // The durable consumer is made again from that position at every start: replicated
    // like the stream (it survives the loss of a node), in stream order, nothing to
    // acknowledge (the position is the relay's own). A config change of the deliver
    // policy needs the old one gone first.
    let _ = stream.delete_consumer(&source.durable).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(source.durable.clone()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("consumer {} of {}: {e}", source.durable, source.stream))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consuming {}: {e}", source.stream))?;
    tracing::info!(source = %source.name, stream = %source.stream, from_sequence = start, "relay source consuming");
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return Ok(()),
            m = messages.next() => m,
        };
        // What is ready now joins it: one transaction for the batch.
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                None => return Err("the consumer's messages ended".into()),
                Some(Err(e)) => return Err(format!("receiving: {e}")),
                Some(Ok(m)) => batch.push(m),
            }
            if batch.len() < MAX_BATCH {
                next = messages.next().now_or_never();
            }
        }
        let current = view.borrow().clone();
        let mut items = Vec::with_capacity(batch.len());
        let mut last = 0;
        for msg in &batch {
            let header = |name: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            last = last.max(sequence);
            let msg_id =
                header("Nats-Msg-Id").unwrap_or_else(|| format!("{}:{sequence}", source.stream));
            let parsed = Relayed::parse(header("X-Deployhook-Event").as_deref(), &msg.payload)
                .and_then(|r| r.published_by(&msg.subject, source.host_token).map(|()| r));
            let event = match parsed {
                Err(why) => {
                    crate::metrics::get().relay_skipped(&source.name);
                    tracing::warn!(source = %source.name, sequence, subject = %escape(&msg.subject), error = %escape(&why), "a message that is no deployhook event of its publisher: skipped");
                    None
                }
                Ok(relayed) => Some((relayed.plan(&current, host), relayed.deployment())),
            };
            items.push(RelayedMessage { msg_id, event });
        }
        let hooks: Vec<Vec<String>> = items
            .iter()
            .map(|m| {
                m.event.as_ref().map_or_else(Vec::new, |(e, _)| {
                    e.deliveries.iter().map(|d| d.hook.clone()).collect()
                })
            })
            .collect();
        let (store2, key2) = (store.clone(), key.clone());
        let fresh = tokio::task::spawn_blocking(move || {
            store2.commit_relayed_batch(&key2, &items, last, Timestamp::now())
        })
        .await
        .map_err(|e| format!("the commit task failed: {e}"))?
        .map_err(|e| format!("the outbox: {}", crate::telemetry::chain(&e)))?;
        for (new, hooks) in fresh.iter().zip(&hooks) {
            if *new {
                for h in hooks {
                    if let Some(w) = current.wakes.get(h) {
                        w.notify_one();
                    }
                }
            }
        }
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
