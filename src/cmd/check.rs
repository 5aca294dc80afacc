//! `deployhook check`: validates the config and explains, per site, the detected
//! layout and the state it infers right now (from a cold start, as the daemon's first
//! look would). Reads only; prints to stdout; never shows secrets.

use std::path::Path;

/// Prints one line with everything in it escaped: paths, names, ids and texts come from
/// the site and its repository, and must not drive the terminal or forge lines.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::telemetry::escape(&format!($($arg)*)))
    };
}

use crate::config::{self, Format, LayoutChoice, WatchMode};
use crate::infer::{self, model::SiteState};
use crate::model::Timestamp;
use crate::snapshot::kudu::KuduEntry;
use crate::snapshot::marker::MarkerFile;
use crate::snapshot::{self, Current, LayoutSnapshot, Reader};
use crate::telemetry::chain;

/// Returns true when the config is valid and every site can be read.
pub fn run(path: &Path) -> bool {
    let config = match config::load_for_check(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return false;
        }
    };
    let _ = snapshot::git::allow_foreign_owners();
    say!("config {}: the file parses", path.display());
    for w in &config.warnings {
        say!("warning: {w}");
    }
    say!(
        "state_dir {}  host_name {}",
        config.daemon.state_dir.display(),
        config.daemon.host_name
    );
    let now = Timestamp::now();
    let mut ok = true;
    for site in &config.sites {
        ok &= check_site(site, now);
    }
    for h in &config.hooks {
        ok &= check_hook(h, &config);
    }
    for src in &config.sources {
        check_source(src);
    }
    for ch in &config.chains {
        check_chain(ch, &config);
    }
    println!();
    // The verdict comes last: never "valid" above an error.
    if ok {
        say!("config {}: valid", path.display());
    } else {
        say!("config {}: has errors (above)", path.display());
    }
    ok
}

/// What the daemon would see of `site` now; `false` on an error.
fn check_site(site: &config::SiteConfig, now: Timestamp) -> bool {
    let mut ok = true;
    println!();
    say!("site {}  {}", site.name, site.path.display());
    let mut reader = Reader::new(site.clone());
    let (snap, warnings) = match reader.read(now) {
        Ok(read) => read,
        Err(e) => {
            say!("  error: {e}");
            return false;
        }
    };
    let why = match site.layout {
        LayoutChoice::Auto => snapshot::detect_layout(&site.path).1,
        _ => "set in the config".to_string(),
    };
    match &snap.layout {
        LayoutSnapshot::Missing { path } => {
            say!(
                "  error: {} does not exist (the daemon waits for it to appear)",
                path.display()
            );
            return false;
        }
        LayoutSnapshot::Releases(r) => {
            say!("  layout: releases ({why}), flavour {}", r.flavour.as_str());
            let current = match &r.current {
                Current::Absent => "no current symlink".to_string(),
                Current::Release(n) => format!("releases/{n}"),
                Current::Dangling(n) => format!("releases/{n} (DANGLING)"),
                Current::Outside(t) => format!("{t} (outside releases/)"),
            };
            say!("  current -> {}", (&current));
            say!("  releases: {}", r.releases.len());
            if let Some(log) = &r.revisions_log {
                say!(
                    "  revisions.log: {}",
                    crate::model::count_of(log.total(), "line", "lines")
                );
            }
        }
        LayoutSnapshot::Kudu(k) => {
            let not_ready = k
                .deployments
                .values()
                .filter(|e| matches!(e, KuduEntry::NotReady { .. }))
                .count();
            say!("  layout: kudu ({why})");
            say!(
                "  deployments: {} ({not_ready} not readable right now); active: {}",
                k.deployments.len(),
                k.active.as_deref().unwrap_or("none")
            );
        }
        LayoutSnapshot::Git(g) => {
            say!("  layout: git ({why})");
            match &g.error {
                Some(e) => {
                    say!("  error: cannot read the repository: {}", (e));
                    ok = false;
                }
                None => say!(
                    "  branch {} at {}; HEAD {}; tracked files match: {}",
                    g.branch.as_deref().unwrap_or("?"),
                    g.branch_commit.as_deref().unwrap_or("?"),
                    g.head_commit.as_deref().unwrap_or("?"),
                    if g.tree_matches { "yes" } else { "no" }
                ),
            }
        }
        LayoutSnapshot::Marker(m) => {
            say!("  layout: marker ({why})");
            let file = site.status_file.display();
            match &m.file {
                MarkerFile::Absent => {
                    say!("  status file {file}: absent (nothing deployed yet)")
                }
                MarkerFile::NotReady { reason, .. } => {
                    say!("  status file {file}: unreadable ({})", (reason))
                }
                MarkerFile::Ready { marker, status, .. } => say!(
                    "  status file {file}: {status}, id {}",
                    marker.id.as_deref().or(m.head.as_deref()).unwrap_or("-")
                ),
            }
        }
    }
    if let Some(h) = &site.health_url {
        say!(
            "  health_url {} (health_timeout {})",
            crate::config::redact_url(h),
            crate::model::format_duration(site.health_timeout)
        );
    }
    match site.watch {
        WatchMode::Inotify => say!("  watch: inotify (non-recursive)"),
        WatchMode::Poll => say!(
            "  watch: poll every {}",
            crate::model::format_duration(site.poll_interval)
        ),
    }
    for w in &warnings {
        say!("  warning: {}", (&w.message));
    }
    let inference = infer::infer(
        &SiteState::default(),
        &snap,
        now,
        &infer::model::Params::of(site),
    );
    match &inference.state.live {
        Some(live) => {
            let commit = match &snap.layout {
                LayoutSnapshot::Releases(r) => r
                    .releases
                    .get(&live.release)
                    .and_then(|rel| rel.commit.as_ref())
                    .map(|c| {
                        format!(
                            " — {} <{}>: {}",
                            c.author,
                            c.email,
                            c.message.lines().next().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            if live.release == live.id {
                say!("  live: {}{}", live.id, (&commit));
            } else {
                say!(
                    "  live: release {} id {}{}",
                    live.release,
                    live.id,
                    (&commit)
                );
            }
        }
        None => say!("  live: nothing yet"),
    }
    if inference.state.active.is_empty() {
        say!("  in progress: nothing");
    }
    for d in &inference.state.active {
        say!(
            "  in progress: {} (release {}) is {}",
            d.id,
            d.release.as_deref().unwrap_or("-"),
            d.status
        );
    }
    for a in &inference.anomalies {
        say!("  note: {}", (&a.message));
    }
    ok
}

/// What `h` is and will do; `false` on an error.
fn check_hook(h: &config::HookConfig, config: &config::Config) -> bool {
    println!();
    say!("hook {}  {}", h.name, h.display_url());
    let custom: Vec<&str> = h
        .events
        .iter()
        .filter(|e| !crate::config::is_known_event(e))
        .map(String::as_str)
        .collect();
    if !custom.is_empty() {
        say!(
            "  custom events {:?}: sent only by publish (deployhook publish, POST /api/hooks/publish/EVENT)",
            custom
        );
    }
    say!(
        "  events {:?}  sites {}  statuses {}  format {}  signature {}{}  timeout {}",
        h.events,
        h.sites.as_ref().map_or("all".into(), |s| format!("{s:?}")),
        h.statuses.as_ref().map_or("all".into(), |s| format!(
            "{:?}",
            s.iter().map(|x| x.as_str()).collect::<Vec<_>>()
        )),
        h.format.as_str(),
        match h.signature {
            config::SignatureKind::None => "none",
            config::SignatureKind::Standard => "standard",
            config::SignatureKind::Github => "github",
        },
        if h.secret.is_some() {
            " (secret set)"
        } else {
            ""
        },
        crate::model::format_duration(h.timeout)
    );
    match h.format {
        Format::CloudEvents | Format::CdEvents => say!(
            "  cloudevents_mode {}",
            match h.cloudevents_mode {
                config::CloudEventsMode::Structured => "structured",
                config::CloudEventsMode::Binary => "binary",
            }
        ),
        Format::Template => {
            if let Some(t) = &h.template {
                say!("  template {} (checked)", t.path.display())
            }
        }
        Format::GithubDeployments => {
            if let Some(g) = &h.github {
                say!(
                    "  repository {}  environment {}  (the secret is the API token)",
                    g.repository,
                    g.environment.as_deref().unwrap_or("the site's name")
                )
            }
        }
        Format::Devlake | Format::DatadogDora => say!(
            "  environment {}{}",
            h.environment.as_deref().unwrap_or("-"),
            if h.format == Format::DatadogDora {
                "  (the secret is the API key, sent as DD-API-KEY)"
            } else {
                "  (a secret is sent as Authorization: Bearer)"
            }
        ),
        Format::Otlp => say!(
            "  OTLP/HTTP protobuf spans, environment {}{}",
            h.environment.as_deref().unwrap_or("-"),
            if h.secret.is_some() {
                "  (headers set)"
            } else {
                ""
            }
        ),
        Format::Kudu | Format::Slack => {}
    }
    if let Some(n) = &h.nats {
        let site = config.sites.first().map(|s| s.name.as_str());
        let subject = n.subject_for(&config.daemon.host_name, site, "PostDeployment");
        let probe = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(crate::deliver::nats::probe(h, &subject)));
        match probe {
            Ok(stream) => say!("  NATS: connected; stream {stream} captures {subject}"),
            Err(why) => say!("  warning: NATS: {why}"),
        }
    }
    if let Some(chain) = &h.chain {
        say!("  in chain {chain}: called only by that chain, never by an event on its own");
    }
    if h.insecure_ssl {
        say!("  warning: insecure_ssl = true: TLS certificates are not verified");
    }
    true
}

/// Whether a relay `[[source]]` can be reached (a warning if not).
fn check_source(src: &config::sources::SourceConfig) {
    println!();
    say!(
        "source {}  nats {}  stream {}  durable consumer {}",
        src.name,
        crate::config::redact_url(&src.url),
        src.stream,
        src.durable
    );
    let probe = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(crate::daemon::relay::probe(src)));
    match probe {
        Ok(n) => say!("  connected; the stream holds {n} messages"),
        Err(why) => say!("  warning: {why}"),
    }
}

/// What a `[[chain]]` calls, in order.
fn check_chain(ch: &config::ChainConfig, config: &config::Config) {
    println!();
    say!(
        "chain {}  on {} of {}: {}  (callback_timeout {})",
        ch.name,
        ch.on.as_str(),
        ch.sites
            .as_ref()
            .map_or("every site".into(), |s| s.join(", ")),
        ch.hooks.join(" → "),
        crate::model::format_duration(ch.callback_timeout)
    );
    if let Some(base) = config.api.as_ref().and_then(|a| a.public_url.as_ref()) {
        say!(
            "  receivers call back {}/api/callbacks/<token>",
            base.as_str().trim_end_matches('/')
        );
    }
}
