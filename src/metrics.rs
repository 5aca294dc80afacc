//! The daemon's metrics (SPEC §8), in the Prometheus text format via
//! `prometheus-client`, served at `GET /metrics`. Counters are process-wide (one daemon
//! per process) and moved where the thing happens: a committed transition, a recorded
//! attempt, a site read, a watcher rescan, a reload. Queue depth and the oldest pending
//! delivery's age are read from the outbox at scrape time (`set_queue`).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteStatus {
    site: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookOutcome {
    hook: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabel {
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

type HistogramFamily = Family<HookLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    deployments: Family<SiteStatus, Counter>,
    deliveries: Family<HookOutcome, Counter>,
    attempt_seconds: HistogramFamily,
    queue_depth: Family<HookLabel, Gauge>,
    oldest_pending: Family<HookLabel, Gauge<f64, AtomicU64>>,
    site_reads: Family<SiteLabel, Counter>,
    queue_reads: Family<HookLabel, Counter>,
    site_read_errors: Family<SiteLabel, Counter>,
    api_connections: Family<OutcomeLabel, Counter>,
    api_refused: Family<ReasonLabel, Counter>,
    not_commits: Family<HookLabel, Counter>,
    rescans: Counter,
    reloads: Counter,
    reload_failures: Counter,
    relay_skipped: Family<SourceLabel, Counter>,
    dora: Dora,
    /// Held while the outbox's figures are set and encoded (two scrapes at once would
    /// each clear and fill them).
    scrape: std::sync::Mutex<()>,
}

/// DORA's figures over all of history, set from the outbox at scrape time
/// (`store::dora`): the history is never pruned, so they only grow, as counters must.
struct Dora {
    deployments: Family<SiteOutcome, Counter>,
    rolled_back: Family<SiteLabel, Counter>,
    rework: Family<SiteLabel, Counter>,
    lead_time: Family<SiteLabel, Histogram, fn() -> Histogram>,
    recovery: Family<SiteLabel, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteOutcome {
    site: String,
    outcome: String,
}

fn days_histogram() -> Histogram {
    // 1 minute … ~180 days.
    Histogram::new(exponential_buckets(60.0, 4.0, 10))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

fn attempt_histogram() -> Histogram {
    // 5 ms … ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("deployhook");
        let m = Metrics {
            deployments: Family::default(),
            deliveries: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram as fn() -> Histogram),
            queue_depth: Family::default(),
            oldest_pending: Family::default(),
            site_reads: Family::default(),
            queue_reads: Family::default(),
            site_read_errors: Family::default(),
            api_connections: Family::default(),
            api_refused: Family::default(),
            not_commits: Family::default(),
            rescans: Counter::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            relay_skipped: Family::default(),
            dora: Dora {
                deployments: Family::default(),
                rolled_back: Family::default(),
                rework: Family::default(),
                lead_time: Family::new_with_constructor(days_histogram as fn() -> Histogram),
                recovery: Family::new_with_constructor(days_histogram as fn() -> Histogram),
            },
            scrape: std::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "dora_deployments",
            "Finished deployments in the outbox's history, by site and outcome (success, failed)",
            m.dora.deployments.clone(),
        );
        registry.register(
            "dora_rolled_back",
            "Successful deployments a later rollback undid, by site",
            m.dora.rolled_back.clone(),
        );
        registry.register(
            "dora_rework",
            "Deployments made to recover from a failed change (rollbacks included), by site",
            m.dora.rework.clone(),
        );
        registry.register(
            "lead_time_seconds",
            "Lead time for changes: each commit's author time to the end of the first successful deployment that shipped it, by site",
            m.dora.lead_time.clone(),
        );
        registry.register(
            "recovery_seconds",
            "Failed deployment recovery time: a failure or rollback to the next success, by site",
            m.dora.recovery.clone(),
        );
        registry.register(
            "deployments",
            "Deployment transitions committed, by site and the status reached",
            m.deployments.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts recorded, by hook and outcome (delivered, retry, dead, disabled)",
            m.deliveries.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "How long each delivery attempt took, by hook",
            m.attempt_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Deliveries waiting to be sent, by hook",
            m.queue_depth.clone(),
        );
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest waiting delivery, by hook (0 when none waits)",
            m.oldest_pending.clone(),
        );
        registry.register(
            "site_reads",
            "Reads of a site (snapshot, infer, commit), by site",
            m.site_reads.clone(),
        );
        registry.register(
            "queue_reads",
            "Reads of a hook's queue by its worker (each after a wake-up: a commit, a retry's time, SIGUSR1, the resync), by hook",
            m.queue_reads.clone(),
        );
        registry.register(
            "site_read_errors",
            "Reads of a site that failed (an error other than not found: permissions, too many open files, I/O); the site kept its last state and is read again, by site",
            m.site_read_errors.clone(),
        );
        registry.register(
            "api_connections",
            "API connections by outcome: accepted, evicted (a silent one made room at the limit), refused (every one busy at the limit)",
            m.api_connections.clone(),
        );
        registry.register(
            "api_refused",
            "API requests refused by a storage bound, by reason: hooks_limit (409), body_too_large (413), queue_full (429)",
            m.api_refused.clone(),
        );
        registry.register(
            "github_not_commits",
            "Deployments not sent to a github-deployments hook because their id is no commit SHA, by hook",
            m.not_commits.clone(),
        );
        registry.register(
            "watcher_rescans",
            "Times the watcher asked for every site to be read again (event queue overflow)",
            m.rescans.clone(),
        );
        registry.register("reloads", "Config reloads applied", m.reloads.clone());
        registry.register(
            "reload_failures",
            "Config reloads rejected (the old config kept running)",
            m.reload_failures.clone(),
        );
        registry.register(
            "relay_skipped",
            "Messages a relay source skipped (no deployhook event), by source",
            m.relay_skipped.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn deployment(&self, site: &str, status: &str) {
        self.deployments
            .get_or_create(&SiteStatus {
                site: site.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn attempt(&self, hook: &str, outcome: &str, seconds: f64) {
        self.deliveries
            .get_or_create(&HookOutcome {
                hook: hook.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&HookLabel {
                hook: hook.to_string(),
            })
            .observe(seconds);
    }

    pub fn site_read_error(&self, site: &str) {
        self.site_read_errors
            .get_or_create(&SiteLabel {
                site: site.to_string(),
            })
            .inc();
    }

    pub fn api_refused(&self, reason: &str) {
        self.api_refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn api_connection(&self, outcome: &str) {
        self.api_connections
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn github_not_commit(&self, hook: &str) {
        self.not_commits
            .get_or_create(&HookLabel {
                hook: hook.to_string(),
            })
            .inc();
    }

    pub fn site_read(&self, site: &str) {
        self.site_reads
            .get_or_create(&SiteLabel {
                site: site.to_string(),
            })
            .inc();
    }

    pub fn queue_read(&self, hook: &str) {
        self.queue_reads
            .get_or_create(&HookLabel {
                hook: hook.to_string(),
            })
            .inc();
    }

    pub fn relay_skipped(&self, source: &str) {
        self.relay_skipped
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .inc();
    }

    pub fn rescans(&self, n: u64) {
        self.rescans.inc_by(n);
    }

    pub fn reload(&self, applied: bool) {
        if applied {
            self.reloads.inc();
        } else {
            self.reload_failures.inc();
        }
    }

    /// The queue gauges, as read from the outbox now: (hook, waiting, oldest age in s).
    pub fn set_queue(&self, hooks: &[(String, u64, f64)]) {
        self.queue_depth.clear();
        self.oldest_pending.clear();
        for (hook, waiting, age) in hooks {
            let l = HookLabel { hook: hook.clone() };
            self.queue_depth
                .get_or_create(&l)
                .set(i64::try_from(*waiting).unwrap_or(i64::MAX));
            self.oldest_pending.get_or_create(&l).set(*age);
        }
    }

    /// The text exposition format, with each hook's queue and DORA's figures of every
    /// site (over all of history) as read from the outbox now.
    pub fn encode_with(
        &self,
        queues: &[(String, u64, f64)],
        dora: &std::collections::BTreeMap<String, crate::store::dora::Samples>,
    ) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_queue(queues);
        let d = &self.dora;
        d.deployments.clear();
        d.rolled_back.clear();
        d.rework.clear();
        d.lead_time.clear();
        d.recovery.clear();
        for (site, s) in dora {
            let l = SiteLabel { site: site.clone() };
            for (outcome, n) in [("success", s.successful), ("failed", s.failed)] {
                d.deployments
                    .get_or_create(&SiteOutcome {
                        site: site.clone(),
                        outcome: outcome.to_string(),
                    })
                    .inc_by(n);
            }
            d.rolled_back.get_or_create(&l).inc_by(s.rolled_back);
            d.rework.get_or_create(&l).inc_by(s.rework);
            let lead = d.lead_time.get_or_create(&l);
            s.lead_times.iter().for_each(|v| lead.observe(*v));
            let rec = d.recovery.get_or_create(&l);
            s.recoveries.iter().for_each(|v| rec.observe(*v));
        }
        self.encode()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
