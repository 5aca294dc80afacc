//! Validation: the text of a config file to a `Config`, or every problem at once, each
//! with file, line, column and key path. No I/O but through `Env`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawConfig, RawHook, RawSite};
use super::*;
use crate::model::Status;

pub(super) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
    /// Tables left out after an error in them (so "no [[site]]" is not said as well).
    dropped_tables: usize,
}

impl Checker<'_> {
    pub(super) fn at(
        &mut self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(s) => self.parse_duration(s, key).unwrap_or(default),
        }
    }

    fn parse_duration(&mut self, s: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(
                    s.span(),
                    key,
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"2s\", \"10m\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn absolute(&mut self, s: &Spanned<String>, key: &str) -> PathBuf {
        let p = PathBuf::from(s.get_ref());
        if !p.is_absolute() {
            self.at(
                s.span(),
                key,
                format!("{:?} must be an absolute path", s.get_ref()),
            );
        }
        p
    }

    /// Each name in `sites` must be a `[[site]]`'s.
    pub(super) fn known_sites(
        &mut self,
        sites: Option<&Spanned<Vec<String>>>,
        key: &str,
        site_names: &BTreeSet<&str>,
    ) {
        for s in sites.map(|s| s.get_ref().as_slice()).unwrap_or_default() {
            if !site_names.contains(s.as_str()) {
                let span = sites.map_or(0..0, |s| s.span());
                self.at(span, key, format!("no [[site]] is named {s:?}"));
            }
        }
    }

    pub(super) fn name(&mut self, s: &Spanned<String>, key: &str, extra: &[char]) {
        let n = s.get_ref();
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(&c));
        if !ok {
            let allowed = if extra.is_empty() {
                "letters, digits, - and _"
            } else {
                "letters, digits, -, _ and ."
            };
            self.at(
                s.span(),
                key,
                format!("{n:?} is not a valid name: use {allowed} only"),
            );
        }
    }
}

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

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
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

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_boundary(text, offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
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

fn validate_hook(
    c: &mut Checker<'_>,
    i: usize,
    h: &RawHook,
    seen: &mut BTreeSet<String>,
    site_names: &BTreeSet<&str>,
    env: &Env<'_>,
    warnings: &mut Vec<String>,
) -> HookConfig {
    let key = |k: &str| format!("hook[{i}].{k}");
    let name = h.name.get_ref().clone();
    c.name(&h.name, &key("name"), &[]);
    if is_api_hook_name(&name) {
        c.at(
            h.name.span(),
            &key("name"),
            format!("{name:?} is reserved: names api-<number> belong to hooks registered through the API"),
        );
    }
    if !seen.insert(name.clone()) {
        c.at(
            h.name.span(),
            &key("name"),
            format!("duplicate hook name {name:?}"),
        );
    }
    let url = match url::Url::parse(h.url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https" | "nats" | "tls") && u.host().is_some() => u,
        Ok(_) | Err(_) => {
            c.at(
                h.url.span(),
                &key("url"),
                "must be an absolute http:// or https:// URL (or nats:// / tls:// for NATS JetStream)",
            );
            placeholder_url()
        }
    };
    let events = h.events.as_ref().map_or_else(
        || vec!["PostDeployment".to_string()],
        |e| {
            if e.get_ref().is_empty() {
                c.at(e.span(), &key("events"), "must name at least one event");
            }
            for name in e.get_ref() {
                if let Err(why) = check_event_name(name) {
                    c.at(e.span(), &key("events"), why);
                }
            }
            e.get_ref().clone()
        },
    );
    c.known_sites(h.sites.as_ref(), &key("sites"), site_names);
    let statuses = h.statuses.as_ref().map(|st| {
        st.get_ref()
            .iter()
            .filter_map(|s| {
                let parsed = Status::parse(s);
                if parsed.is_none() {
                    c.at(
                        st.span(),
                        &key("statuses"),
                        format!("unknown status {s:?}: use pending, building, deploying, success or failed"),
                    );
                }
                parsed
            })
            .collect()
    });
    let (format, cloudevents_mode, template) = super::formats::hook_format(c, h, &key, env);
    let github = super::formats::github_target(c, h, format, &key);
    let secret = super::secrets::read_secret(c, h, &key, env, &name, warnings);
    if github.is_some() && secret.is_none() {
        let span = h.format.as_ref().map_or(0..0, |f| f.span());
        c.at(
            span,
            &key("secret_file"),
            "format = \"github-deployments\" needs the API token in secret_file or secret_env",
        );
    }
    if let (Some(_), Some(s)) = (&github, &h.signature)
        && s.get_ref() != "none"
    {
        c.at(
            s.span(),
            &key("signature"),
            "a github-deployments hook's secret is its API token: it signs nothing",
        );
    }
    let nats = super::nats::nats_target(c, h, &url, format, &key);
    if let (Some(_), Some(s)) = (&nats, &h.signature)
        && s.get_ref() != "none"
    {
        c.at(
            s.span(),
            &key("signature"),
            "a NATS hook's secret is its connection credential (creds, nkey seed or token): it signs nothing",
        );
    }
    let signature = match h
        .signature
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        _ if github.is_some() || nats.is_some() => SignatureKind::None,
        None => {
            if secret.is_some() {
                SignatureKind::Standard
            } else {
                SignatureKind::None
            }
        }
        Some(("none", _)) => SignatureKind::None,
        Some((kind @ ("standard" | "github"), span)) => {
            if secret.is_none() {
                c.at(
                    span,
                    &key("signature"),
                    format!("signature {kind:?} needs secret_file or secret_env"),
                );
            }
            if kind == "standard" {
                SignatureKind::Standard
            } else {
                SignatureKind::Github
            }
        }
        Some((other, span)) => {
            c.at(
                span,
                &key("signature"),
                format!("unknown signature {other:?}: use standard, github or none"),
            );
            SignatureKind::None
        }
    };
    if let Some(s) = secret.as_ref()
        && signature == SignatureKind::Standard
    {
        use base64::Engine;
        let bad = s.keys().any(|k| {
            k.strip_prefix("whsec_").is_some_and(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .is_err()
            })
        });
        if bad {
            let span = h
                .secret_file
                .as_ref()
                .or(h.secret_env.as_ref())
                .map_or(0..0, |v| v.span());
            c.at(
                span,
                &key("secret"),
                "a whsec_ secret must be base64 after the prefix",
            );
        }
    }
    let insecure_ssl = h.insecure_ssl.unwrap_or(false);
    if insecure_ssl {
        warnings.push(format!(
            "hook {name}: insecure_ssl = true: TLS certificates of {} are NOT verified",
            url.host_str().unwrap_or("?")
        ));
    }
    let timeout = c.duration(&h.timeout, &key("timeout"), Duration::from_secs(10));
    let retry = match &h.retry {
        None => DEFAULT_RETRY
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
        Some(r) => r
            .get_ref()
            .iter()
            .filter_map(|d| {
                let parsed = humantime::parse_duration(d).ok();
                if parsed.is_none() {
                    c.at(r.span(), &key("retry"), format!("{d:?} is not a duration"));
                }
                parsed
            })
            .collect(),
    };
    let mut headers = Vec::new();
    if let Some(hs) = &h.headers {
        for (k, v) in hs.get_ref() {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                c.at(
                    hs.span(),
                    &key("headers"),
                    format!("{k:?} is not a valid header name"),
                );
            } else if http::HeaderValue::from_str(v).is_err() {
                // The value may be a credential: it is not quoted.
                c.at(
                    hs.span(),
                    &key("headers"),
                    format!("the value of {k:?} is not a valid header value (control characters or non-ASCII)"),
                );
            }
            if k.eq_ignore_ascii_case("authorization")
                && (!url.username().is_empty() || url.password().is_some())
            {
                c.at(
                    hs.span(),
                    &key("headers"),
                    "an Authorization header and user:pass@ in the url both set the credentials: keep one",
                );
            }
            headers.push((k.clone(), v.clone()));
        }
    }
    HookConfig {
        name,
        url,
        events,
        sites: h.sites.as_ref().map(|s| s.get_ref().clone()),
        hosts: h.hosts.as_ref().map(|s| s.get_ref().clone()),
        statuses,
        format,
        cloudevents_mode,
        template,
        github,
        nats,
        chain: None,
        secret,
        signature,
        insecure_ssl,
        timeout,
        retry,
        headers,
        public_only: false,
    }
}

/// A known event, a custom name, or an error: a name a small edit away from a known one
/// (`PostDeployments`, `postdeploy`, `StatusChange`) is almost surely a typo, and a hook
/// with it would never fire.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if is_known_event(name) {
        return Ok(());
    }
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(format!(
            "{:?} is not an event name (1 to 100 printable characters)",
            crate::model::cap_text(name, 40)
        ));
    }
    let lower = name.to_ascii_lowercase();
    for known in KNOWN_EVENTS {
        let k = known.to_ascii_lowercase();
        let near = strsim::levenshtein(&lower, &k) <= 3
            || (lower.len() >= 4 && (k.starts_with(&lower) || lower.starts_with(&k)));
        if near {
            return Err(format!(
                "unknown event {name:?}: did you mean \"{known}\"? (a custom event name must not be this close to a known one)"
            ));
        }
    }
    Ok(())
}

/// Stands in for an invalid URL while the remaining keys are validated (the config is
/// rejected anyway).
pub(super) fn placeholder_url() -> url::Url {
    #[allow(clippy::expect_used)]
    url::Url::parse("http://invalid.invalid/").expect("invariant: a constant, valid URL")
}
