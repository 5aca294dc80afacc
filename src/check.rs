//! `deployhook check`: validates the config and explains, per site, the detected
//! layout and the state it infers right now (from a cold start, as the daemon's first
//! look would). Reads only; prints to stdout; never shows secrets.

use std::path::Path;

use crate::config::{self, LayoutChoice, WatchMode};
use crate::infer::{self, model::SiteState, model::Timestamp};
use crate::snapshot::kudu::KuduEntry;
use crate::snapshot::marker::MarkerFile;
use crate::snapshot::{self, Current, LayoutSnapshot, Reader};
use crate::telemetry::{chain, escape};

/// Returns true when the config is valid and every site can be read.
pub fn run(path: &Path) -> bool {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return false;
        }
    };
    let _ = snapshot::git::allow_foreign_owners();
    println!("config {}: valid", path.display());
    for w in &config.warnings {
        println!("warning: {w}");
    }
    println!(
        "state_dir {}  host_name {}",
        config.daemon.state_dir.display(),
        config.daemon.host_name
    );
    let mut ok = true;
    let now = Timestamp::now();
    for site in &config.sites {
        println!("\nsite {}  {}", site.name, site.path.display());
        let mut reader = Reader::new(site.clone());
        let (snap, warnings) = reader.read(now);
        let why = match site.layout {
            LayoutChoice::Auto => snapshot::detect_layout(&site.path).1,
            _ => "set in the config".to_string(),
        };
        match &snap.layout {
            LayoutSnapshot::Missing { path } => {
                println!(
                    "  error: {} does not exist (the daemon waits for it to appear)",
                    path.display()
                );
                ok = false;
                continue;
            }
            LayoutSnapshot::Unreadable { path, reason } => {
                println!("  error: cannot read {}: {reason}", path.display());
                ok = false;
                continue;
            }
            LayoutSnapshot::Releases(r) => {
                println!("  layout: releases ({why}), flavour {}", r.flavour.as_str());
                let current = match &r.current {
                    Current::Absent => "no current symlink".to_string(),
                    Current::Release(n) => format!("releases/{n}"),
                    Current::Dangling(n) => format!("releases/{n} (DANGLING)"),
                    Current::Outside(t) => format!("{t} (outside releases/)"),
                };
                println!("  current -> {}", escape(&current));
                println!("  releases: {}", r.releases.len());
                if let Some(log) = &r.revisions_log {
                    println!("  revisions.log: {} lines", log.entries.len());
                }
            }
            LayoutSnapshot::Kudu(k) => {
                let not_ready = k
                    .deployments
                    .values()
                    .filter(|e| matches!(e, KuduEntry::NotReady { .. }))
                    .count();
                println!("  layout: kudu ({why})");
                println!(
                    "  deployments: {} ({not_ready} not readable right now); active: {}",
                    k.deployments.len(),
                    k.active.as_deref().unwrap_or("none")
                );
            }
            LayoutSnapshot::Git(g) => {
                println!("  layout: git ({why})");
                match &g.error {
                    Some(e) => {
                        println!("  error: cannot read the repository: {}", escape(e));
                        ok = false;
                    }
                    None => println!(
                        "  branch {} at {}; HEAD {}; tracked files match: {}",
                        g.branch.as_deref().unwrap_or("?"),
                        g.branch_commit.as_deref().unwrap_or("?"),
                        g.head_commit.as_deref().unwrap_or("?"),
                        if g.tree_matches { "yes" } else { "no" }
                    ),
                }
            }
            LayoutSnapshot::Marker(m) => {
                println!("  layout: marker ({why})");
                let file = site.status_file.display();
                match &m.file {
                    MarkerFile::Absent => {
                        println!("  status file {file}: absent (nothing deployed yet)")
                    }
                    MarkerFile::NotReady { reason, .. } => {
                        println!("  status file {file}: unreadable ({})", escape(reason))
                    }
                    MarkerFile::Ready { marker, status, .. } => println!(
                        "  status file {file}: {status}, id {}",
                        marker.id.as_deref().or(m.head.as_deref()).unwrap_or("-")
                    ),
                }
            }
        }
        if let Some(h) = &site.health_url {
            println!(
                "  health_url {} (health_timeout {})",
                crate::config::redact_url(h),
                humantime::format_duration(site.health_timeout)
            );
        }
        match site.watch {
            WatchMode::Inotify => println!("  watch: inotify (non-recursive)"),
            WatchMode::Poll => println!(
                "  watch: poll every {}",
                humantime::format_duration(site.poll_interval)
            ),
        }
        for w in &warnings {
            println!("  warning: {}", escape(&w.message));
        }
        let inference = infer::infer(&SiteState::default(), &snap, now, &site.params());
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
                    println!("  live: {}{}", live.id, escape(&commit));
                } else {
                    println!(
                        "  live: release {} id {}{}",
                        live.release,
                        live.id,
                        escape(&commit)
                    );
                }
            }
            None => println!("  live: nothing yet"),
        }
        if inference.state.active.is_empty() {
            println!("  in progress: nothing");
        }
        for d in &inference.state.active {
            println!(
                "  in progress: {} (release {}) is {}",
                d.id,
                d.release.as_deref().unwrap_or("-"),
                d.status
            );
        }
        for a in &inference.anomalies {
            println!("  note: {}", escape(&a.message));
        }
    }
    for h in &config.hooks {
        println!(
            "\nhook {}  {}\n  events {:?}  sites {}  statuses {}  format kudu  signature {:?}{}  timeout {}",
            h.name,
            h.display_url(),
            h.events,
            h.sites.as_ref().map_or("all".into(), |s| format!("{s:?}")),
            h.statuses.as_ref().map_or("all".into(), |s| format!(
                "{:?}",
                s.iter().map(|x| x.as_str()).collect::<Vec<_>>()
            )),
            h.signature,
            if h.secret.is_some() {
                " (secret set)"
            } else {
                ""
            },
            humantime::format_duration(h.timeout)
        );
        if h.insecure_ssl {
            println!("  warning: insecure_ssl = true: TLS certificates are not verified");
        }
    }
    ok
}
