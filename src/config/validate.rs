//! Validation: the text of a config file to a `Config`, or every problem at once, each
//! with file, line, column and key path. No I/O but through `Env`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::{Checker, floor_boundary};
use super::hooks::validate_hook;
use super::raw::{RawConfig, RawSite};
use super::*;

/// How many errors one run reports at most (a file of garbage has no end of them).
const MAX_ERRORS: usize = 50;

/// Deserializes the file, collecting every unknown key and every value of the wrong type
/// in one run: serde stops at the first, so each one found is recorded, its line (or
/// its whole table, for a table header) is blanked out with spaces — offsets, and so
/// lines and columns, stay as they are — and the file is read again. A `missing field`
/// error caused by a blanked line is not reported twice. `None` when the file is not
/// TOML at all, or its errors cannot be stepped over.
fn deserialize_all(c: &mut Checker<'_>) -> Option<RawConfig> {
    let text = c.text;
    if let Err(e) = text.parse::<toml::Table>() {
        let span = e.span().unwrap_or(0..0);
        c.at(span, "(file)", e.message().trim().to_string());
        return None;
    }
    let mut masked = text.to_string();
    let mut blanked: Vec<std::ops::Range<usize>> = Vec::new();
    for _ in 0..MAX_ERRORS {
        let e = match toml::from_str::<RawConfig>(&masked) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let Some(span) = e.span() else {
            c.at(0..0, "(file)", e.message().trim().to_string());
            return None;
        };
        let message = e.message().trim().to_string();
        // The lines (or the table) the error sits in: what is blanked next.
        let region = blank_region(&masked, span.clone());
        let caused_by_blanking = message.starts_with("missing field")
            && blanked
                .iter()
                .any(|b| b.start < region.end.max(span.end) && b.end > region.start);
        if !caused_by_blanking {
            let key = key_at(text, span.clone());
            c.at(span.clone(), &key, message);
        }
        if region.is_empty() || masked[region.clone()].trim().is_empty() {
            return None;
        }
        // Multi-byte characters become several spaces, so byte offsets stay put.
        let spaces: String = masked[region.clone()]
            .chars()
            .map(|ch| {
                if ch == '\n' {
                    "\n".to_string()
                } else {
                    " ".repeat(ch.len_utf8())
                }
            })
            .collect();
        if masked[region.clone()].trim_start().starts_with('[') {
            c.dropped_tables += 1;
        }
        masked.replace_range(region.clone(), &spaces);
        blanked.push(region);
    }
    None
}

/// The text to blank out after an error at `span`: the whole lines it touches, or, when
/// it sits in a table header (or spans a whole table), the table up to the next header.
fn blank_region(text: &str, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let start = floor_boundary(text, span.start.min(text.len()));
    let end = floor_boundary(text, span.end.min(text.len()).max(start));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let first_line = text[line_start..line_end].trim_start();
    if first_line.starts_with('[') {
        // The table: its header and every line up to the next header.
        let after_header = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i + 1);
        let mut pos = after_header;
        while pos < text.len() {
            let next = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
            if text[pos..next].trim_start().starts_with('[') {
                break;
            }
            pos = next;
        }
        line_start..pos.max(line_end)
    } else {
        line_start..line_end
    }
}

/// The key path of the key or value at `span`: `site[1].settle`.
fn key_at(text: &str, span: std::ops::Range<usize>) -> String {
    let start = floor_boundary(text, span.start.min(text.len()));
    let end = floor_boundary(text, span.end.min(text.len()).max(start));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    if line.trim_start().starts_with('[') {
        let name = line.trim().trim_matches(|ch| ch == '[' || ch == ']').trim();
        return name.to_string();
    }
    let key = match line.find('=') {
        Some(eq) if line_start + eq < start => line[..eq].trim(),
        _ => text[start..end].trim(),
    };
    let key = key.trim_matches('"');
    if key.is_empty() || key.contains('\n') {
        return "(file)".to_string();
    }
    table_path_at(text, line_start, key)
}

/// `key` qualified by the table it sits in at `offset`: `site[1].colour`, `daemon.x`.
fn table_path_at(text: &str, offset: usize, key: &str) -> String {
    let before = &text[..floor_boundary(text, offset.min(text.len()))];
    let header = before.lines().map(str::trim).rfind(|l| l.starts_with('['));
    match header {
        Some(h) if h.starts_with("[[") => {
            let name = h.trim_matches(|c| c == '[' || c == ']').trim();
            let index = before
                .lines()
                .filter(|l| l.trim() == h)
                .count()
                .saturating_sub(1);
            format!("{name}[{index}].{key}")
        }
        Some(h) => format!("{}.{key}", h.trim_matches(|c| c == '[' || c == ']').trim()),
        None => key.to_string(),
    }
}

/// Validates the text of a config file. I/O only through `env`.
pub fn parse(text: &str, file: &Path, env: &Env<'_>) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker {
        file,
        text,
        errors: Vec::new(),
        dropped_tables: 0,
    };
    let Some(raw) = deserialize_all(&mut c) else {
        let mut errors = c.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    };

    let d = &raw.daemon;
    let daemon = DaemonConfig {
        state_dir: match &d.state_dir {
            Some(s) => c.absolute(s, "daemon.state_dir"),
            None => env
                .state_directory
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/deployhook")),
        },
        host_name: d
            .host_name
            .as_ref()
            .map_or(env.host_name.clone(), |h| h.get_ref().clone()),
        resync: c.duration(&d.resync, "daemon.resync", Duration::from_secs(60)),
        history_max_age: c.duration(
            &d.history_max_age,
            "daemon.history_max_age",
            Duration::from_secs(14 * 86400),
        ),
        shutdown_timeout: c.duration(
            &d.shutdown_timeout,
            "daemon.shutdown_timeout",
            Duration::from_secs(10),
        ),
    };
    if daemon.resync.is_zero()
        && let Some(r) = &d.resync
    {
        c.at(r.span(), "daemon.resync", "must be more than zero");
    }

    let mut seen = BTreeSet::new();
    let sites: Vec<SiteConfig> = raw
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| validate_site(&mut c, i, s, &mut seen))
        .collect();
    let site_names: BTreeSet<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    if sites.is_empty() && c.dropped_tables == 0 && raw.sources.is_empty() {
        c.at(
            0..0,
            "site",
            "no [[site]] table: nothing to watch (a relay has a [[source]] instead)",
        );
    }

    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    let mut hooks: Vec<HookConfig> = raw
        .hooks
        .iter()
        .enumerate()
        .map(|(i, h)| validate_hook(&mut c, i, h, &mut seen, &site_names, env, &mut warnings))
        .collect();

    let api = raw
        .api
        .as_ref()
        .map(|a| super::api::validate_api(&mut c, a, env, &mut warnings));
    let sources = super::sources::validate_sources(&mut c, &raw.sources, env, &mut warnings);
    let chains =
        super::chains::validate_chains(&mut c, &raw.chains, &mut hooks, &site_names, api.as_ref());

    if c.errors.is_empty() {
        Ok(Config {
            file: file.to_path_buf(),
            daemon,
            sites,
            hooks,
            chains,
            sources,
            api,
            warnings,
        })
    } else {
        // In the order of the file, as an editor walks them.
        let mut errors = c.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

fn validate_site(
    c: &mut Checker<'_>,
    i: usize,
    s: &RawSite,
    seen: &mut BTreeSet<String>,
) -> SiteConfig {
    let key = |k: &str| format!("site[{i}].{k}");
    c.name(&s.name, &key("name"), &['.']);
    if !seen.insert(s.name.get_ref().clone()) {
        c.at(
            s.name.span(),
            &key("name"),
            format!("duplicate site name {:?}", s.name.get_ref()),
        );
    }
    let layout = match s.layout.as_ref().map(|l| (l.get_ref().as_str(), l.span())) {
        None | Some(("auto", _)) => LayoutChoice::Auto,
        Some(("releases", _)) => LayoutChoice::Releases,
        Some(("kudu", _)) => LayoutChoice::Kudu,
        Some(("git", _)) => LayoutChoice::Git,
        Some(("marker", _)) => LayoutChoice::Marker,
        Some((other, span)) => {
            c.at(
                span,
                &key("layout"),
                format!("unknown layout {other:?}: use releases, kudu, git, marker or auto"),
            );
            LayoutChoice::Auto
        }
    };
    let watch = match s.watch.as_ref().map(|w| (w.get_ref().as_str(), w.span())) {
        None | Some(("inotify", _)) => WatchMode::Inotify,
        Some(("poll", _)) => WatchMode::Poll,
        Some((other, span)) => {
            c.at(
                span,
                &key("watch"),
                format!("unknown watch {other:?}: use inotify or poll"),
            );
            WatchMode::Inotify
        }
    };
    let poll_interval = c.duration(
        &s.poll_interval,
        &key("poll_interval"),
        Duration::from_secs(2),
    );
    if poll_interval.is_zero()
        && let Some(pi) = &s.poll_interval
    {
        c.at(pi.span(), &key("poll_interval"), "must be more than zero");
    }
    let health_url = s
        .health_url
        .as_ref()
        .and_then(|h| match url::Url::parse(h.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                c.at(
                    h.span(),
                    &key("health_url"),
                    "must be an absolute http:// or https:// URL",
                );
                None
            }
        });
    let health_timeout = c.duration(
        &s.health_timeout,
        &key("health_timeout"),
        Duration::from_secs(120),
    );
    let settle = c.duration(&s.settle, &key("settle"), Duration::from_secs(2));
    let idle_timeout = c.duration(
        &s.idle_timeout,
        &key("idle_timeout"),
        Duration::from_secs(600),
    );
    if let Some(it) = &s.idle_timeout
        && idle_timeout <= settle
    {
        c.at(
            it.span(),
            &key("idle_timeout"),
            "must be longer than settle",
        );
    }
    let path = c.absolute(&s.path, &key("path"));
    SiteConfig {
        name: s.name.get_ref().clone(),
        status_file: s.status_file.as_ref().map_or_else(
            || path.join(DEFAULT_STATUS_FILE),
            |f| {
                let p = PathBuf::from(f.get_ref());
                if p.is_absolute() { p } else { path.join(p) }
            },
        ),
        path,
        layout,
        repo: s.repo.as_ref().map(|r| c.absolute(r, &key("repo"))),
        branch: s.branch.as_ref().map(|b| b.get_ref().clone()),
        deployer: s.deployer.as_ref().map(|b| b.get_ref().clone()),
        settle,
        idle_timeout,
        health_url,
        health_timeout,
        watch,
        poll_interval,
    }
}
