//! `deployhook deliveries list|show|redeliver|retry`: the delivery log from the outbox,
//! with the filters the API and console share (`store::query::DeliveryFilter`).

use std::io::Write;

use super::admin::{Failed, load, lock_held, poke_daemon, say};
use crate::cli::DeliveryFilterArgs;
use crate::config::{self, Config};
use crate::model::Timestamp;
use crate::store::query::{DeliveryFilter, DeliveryOutcome};
use crate::store::{DeliveryState, Store};
use crate::telemetry::{escape, escape_multiline};

type Result<T> = std::result::Result<T, Failed>;

/// `deployhook deliveries retry [ID | filters]`: a waiting or retrying delivery becomes due
/// now; a dead one is queued again as a new delivery. The running daemon sends them.
pub fn retry(
    path: &std::path::Path,
    id: Option<&str>,
    args: &DeliveryFilterArgs,
    out: &mut impl Write,
) -> Result<()> {
    let config = load(path)?;
    let store = Store::open_shared(&config.daemon.state_dir)?;
    let now = Timestamp::now();
    if let Some(id) = id {
        let n = store.retry_now(Some(id), None, now)?;
        if n == 0 {
            return Err(Failed(format!(
                "no waiting delivery {id} (a dead one is sent again with `deployhook deliveries redeliver {id}`)"
            )));
        }
        say!(out, "{id} made due now; {}", poke_daemon(&config));
        return Ok(());
    }
    let filter = filter_of(&store, Some(&config), args)?
        .for_retry()
        .map_err(Failed)?;
    let n = store.retry_matching(&filter, None, now)?;
    let when = if n.matched > 0 {
        poke_daemon(&config)
    } else {
        "nothing to send".to_string()
    };
    say!(
        out,
        "{} matched: {} made due now, {} dead queued again as new deliveries; {when}",
        crate::model::count_of(n.matched, "delivery", "deliveries"),
        n.due,
        n.queued_again
    );
    Ok(())
}

/// The store's filter from the command line's, refusing a hook nobody knows.
fn filter_of(
    store: &Store,
    config: Option<&Config>,
    args: &DeliveryFilterArgs,
) -> Result<DeliveryFilter> {
    if let Some(hook) = &args.hook {
        let mut known: Vec<String> = config
            .map(|c| c.hooks.iter().map(|h| h.name.clone()).collect())
            .unwrap_or_default();
        known.extend(store.api_hooks()?.iter().map(|h| h.name()));
        known.extend(store.hook_names()?);
        known.sort();
        known.dedup();
        if !known.contains(hook) {
            return Err(Failed(format!(
                "no hook named {} (hooks: {})",
                escape(hook),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    let now = Timestamp::now();
    let ago = |what: &str, text: &Option<String>| -> Result<Option<Timestamp>> {
        text.as_deref()
            .map(|t| {
                crate::model::parse_duration(t)
                    .map(|d| now.minus(d))
                    .map_err(|e| {
                        Failed(format!(
                            "--{what} {t:?} is not a duration ({e}); write e.g. 1h, 30m, 7d"
                        ))
                    })
            })
            .transpose()
    };
    Ok(DeliveryFilter {
        hook: args.hook.clone(),
        event: args.event.clone(),
        outcomes: args.outcome.iter().map(|&o| o.into()).collect(),
        http_status: args.http_status,
        since: ago("since", &args.since)?,
        until: ago("until", &args.until)?,
        site: None,
        deployment: None,
    })
}

/// The state directory for a read-only look at the outbox: the config's, or — the file
/// on disk having errors while a daemon runs on it — the running daemon's (said on
/// stderr; the listing is still the running daemon's truth).
fn outbox_dir(path: &std::path::Path) -> Result<std::path::PathBuf> {
    match load(path) {
        Ok(c) => Ok(c.daemon.state_dir),
        Err(e) => {
            let dir = config::state_dir_of(path);
            if !lock_held(&dir) {
                return Err(e);
            }
            eprintln!(
                "note: {} has errors; showing the running daemon's outbox in {}",
                path.display(),
                dir.display()
            );
            Ok(dir)
        }
    }
}

/// `deployhook deliveries list`.
pub fn list(
    path: &std::path::Path,
    args: &DeliveryFilterArgs,
    failed: bool,
    limit: usize,
    out: &mut impl Write,
) -> Result<()> {
    let store = Store::open_read_only(&outbox_dir(path)?)?;
    let config = load(path).ok();
    let mut filter = filter_of(&store, config.as_ref(), args)?;
    if failed {
        filter
            .outcomes
            .extend([DeliveryOutcome::Retrying, DeliveryOutcome::Dead]);
    }
    let rows = store.find_deliveries(&filter, limit)?;
    say!(
        out,
        "{:<28} {:<16} {:<15} {:<9} {:>8}  {:<24}  last",
        "delivery",
        "hook",
        "event",
        "state",
        "attempts",
        "created"
    );
    for r in rows {
        let last = match (r.last_status, &r.last_error) {
            (Some(code), _) => format!("HTTP {code}"),
            (None, Some(e)) => escape(e),
            (None, None) => "-".into(),
        };
        let created = r.created_at.rfc3339();
        say!(
            out,
            "{:<28} {:<16} {:<15} {:<9} {:>8}  {:<24}  {last}",
            r.id,
            r.hook,
            r.event,
            r.state,
            r.attempts,
            &created[..created.len().min(19)]
        );
    }
    Ok(())
}

/// `deployhook deliveries show ID`: the request and every attempt's response.
pub fn show(path: &std::path::Path, id: &str, out: &mut impl Write) -> Result<()> {
    let store = Store::open_read_only(&outbox_dir(path)?)?;
    let d = store
        .delivery_detail(id)?
        .ok_or_else(|| Failed(format!("no delivery {id}")))?;
    let r = &d.row;
    say!(
        out,
        "delivery {}  hook {}  event {}  state {}  attempts {}  created {}",
        r.id,
        r.hook,
        r.event,
        r.state,
        r.attempts,
        r.created_at.rfc3339()
    );
    if r.state == DeliveryState::Pending && r.attempts > 0 {
        say!(out, "next attempt at {}", d.next_attempt_at.rfc3339());
    }
    let shown = crate::events::chains::redact_callback(&d.body);
    let body = match serde_json::from_slice::<serde_json::Value>(&shown) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&d.body).into_owned(),
    };
    let _ = writeln!(out);
    say!(out, "request body:");
    let _ = writeln!(out, "{}", escape_multiline(&body));
    for row in &d.attempts {
        let a = &row.attempt;
        let _ = writeln!(out);
        say!(
            out,
            "attempt {} at {} ({} ms)",
            row.n,
            a.started_at.rfc3339(),
            a.duration.as_millis()
        );
        for (k, v) in &a.request_headers {
            say!(out, "  > {k}: {}", escape(v));
        }
        match a.response_status {
            Some(code) => {
                say!(out, "  < HTTP {code}");
                for (k, v) in &a.response_headers {
                    say!(out, "  < {k}: {}", escape(v));
                }
                if !a.response_body.is_empty() {
                    say!(
                        out,
                        "  < {}",
                        escape(&String::from_utf8_lossy(&a.response_body))
                    );
                }
            }
            None => {
                say!(out, "  no response");
            }
        }
        if let Some(e) = &a.error {
            say!(out, "  error: {}", escape(e));
        }
    }
    Ok(())
}

/// `deployhook deliveries redeliver ID`: a new delivery with the same payload.
pub fn redeliver(path: &std::path::Path, id: &str, out: &mut impl Write) -> Result<()> {
    let config = load(path)?;
    let store = Store::open_shared(&config.daemon.state_dir)?;
    let new = store
        .redeliver(id, Timestamp::now())?
        .ok_or_else(|| Failed(format!("no delivery {id}")))?;
    say!(
        out,
        "queued {new} (a redelivery of {id}); {}",
        poke_daemon(&config)
    );
    Ok(())
}
