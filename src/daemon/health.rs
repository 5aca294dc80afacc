//! The health probe of a site with a `health_url`: GETs it every second while a
//! deployment waits for it (the HTTP itself is `deliver`'s), records the result for the
//! next read of the site, and marks the site dirty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::deliver;
use crate::model::Timestamp;
use crate::snapshot::Health;
use crate::watch::Dirty;

/// What one probe needs.
pub struct Probe {
    pub url: url::Url,
    /// The site's index, to mark it dirty.
    pub site: usize,
    pub health: Arc<Mutex<Health>>,
    /// Whether a deployment of the site waits for a 2xx.
    pub wanted: Arc<AtomicBool>,
    pub dirty: Arc<Dirty>,
}

pub async fn run(p: Probe, mut stop: watch::Receiver<bool>) -> Result<(), deliver::DeliverError> {
    let client = deliver::health_client()?;
    loop {
        let pause = if p.wanted.load(Ordering::Relaxed) {
            let result = deliver::probe_health(&client, &p.url).await;
            let now = Timestamp::now();
            {
                let mut h = p.health.lock().unwrap_or_else(|e| e.into_inner());
                h.last_checked = Some(now);
                match result {
                    Ok(_) => {
                        h.last_ok = Some(now);
                        h.last_error = None;
                    }
                    Err(e) => h.last_error = Some(e),
                }
            }
            p.dirty.mark(p.site);
            Duration::from_secs(1)
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}
