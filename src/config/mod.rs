//! The validated configuration. Only this module knows TOML.
//!
//! `parse` turns the text of the file into a `Config` or a list of `ConfigError`s, each
//! with file, line, column and key path, all collected before reporting. `load` adds the
//! I/O: reading the file, the secrets and the machine's host name.

pub mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::model::Status;
use raw::{RawConfig, RawHook, RawSite};

pub const DEFAULT_CONFIG: &str = "/etc/deployhook/deployhook.toml";
/// The `marker` layout's status file, relative to the site's path.
pub const DEFAULT_STATUS_FILE: &str = ".deployhook-status.json";
pub const DEFAULT_RETRY: [u64; 9] = [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub daemon: DaemonConfig,
    pub sites: Vec<SiteConfig>,
    pub hooks: Vec<HookConfig>,
    /// Things worth a warning at start-up (world-readable secrets, `insecure_ssl`).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub host_name: String,
    pub resync: Duration,
    pub history_max_age: Duration,
    pub shutdown_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChoice {
    Auto,
    Releases,
    Kudu,
    Git,
    Marker,
}

impl LayoutChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutChoice::Auto => "auto",
            LayoutChoice::Releases => "releases",
            LayoutChoice::Kudu => "kudu",
            LayoutChoice::Git => "git",
            LayoutChoice::Marker => "marker",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    Inotify,
    Poll,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteConfig {
    pub name: String,
    pub path: PathBuf,
    pub layout: LayoutChoice,
    pub repo: Option<PathBuf>,
    pub branch: Option<String>,
    pub deployer: Option<String>,
    pub settle: Duration,
    pub idle_timeout: Duration,
    /// `marker` layout: the status file.
    pub status_file: PathBuf,
    pub health_url: Option<url::Url>,
    pub health_timeout: Duration,
    pub watch: WatchMode,
    pub poll_interval: Duration,
}

impl SiteConfig {
    /// A site with every default, for code that builds configs (demo, tests).
    pub fn new(name: &str, path: &Path) -> SiteConfig {
        SiteConfig {
            name: name.to_string(),
            path: path.to_path_buf(),
            layout: LayoutChoice::Auto,
            repo: None,
            branch: None,
            deployer: None,
            settle: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(600),
            status_file: path.join(DEFAULT_STATUS_FILE),
            health_url: None,
            health_timeout: Duration::from_secs(120),
            watch: WatchMode::Inotify,
            poll_interval: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Kudu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureKind {
    None,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// GitHub's `X-Hub-Signature-256`.
    Github,
}

/// A signing secret. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The text of the secret, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    pub name: String,
    pub url: url::Url,
    /// Event types, compared case-insensitively.
    pub events: Vec<String>,
    pub sites: Option<Vec<String>>,
    pub statuses: Option<Vec<Status>>,
    pub format: Format,
    pub secret: Option<Secret>,
    pub signature: SignatureKind,
    pub insecure_ssl: bool,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub headers: Vec<(String, String)>,
}

impl HookConfig {
    pub fn wants_event(&self, event: &str) -> bool {
        self.events.iter().any(|e| e.eq_ignore_ascii_case(event))
    }

    pub fn wants_site(&self, site: &str) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == site))
    }

    pub fn wants_status(&self, status: Status) -> bool {
        self.statuses.as_ref().is_none_or(|s| s.contains(&status))
    }

    /// The URL without credentials, for logs and output.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// A URL as it may be shown or logged: no `user:pass@`, and every query value `***`
/// (`?token=…` is a credential as often as not); names of query keys are kept.
pub fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.set_query(None);
        if !keys.is_empty() {
            let mut q = u.query_pairs_mut();
            for k in keys {
                q.append_pair(&k, "***");
            }
        }
    }
    u.to_string()
}

/// One problem in the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

/// Reads and validates the config file.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let env = Env {
        host_name: machine_host_name(),
        state_directory: std::env::var_os("STATE_DIRECTORY").map(PathBuf::from),
        read_file: &|p| std::fs::read_to_string(p),
        read_env: &|k| std::env::var(k).ok(),
        mode_of: &mode_of,
    };
    parse(&text, path, &env).map_err(LoadError::Invalid)
}

/// What `parse` needs from outside the file (so tests can supply it).
pub struct Env<'a> {
    pub host_name: String,
    pub state_directory: Option<PathBuf>,
    pub read_file: &'a dyn Fn(&Path) -> std::io::Result<String>,
    pub read_env: &'a dyn Fn(&str) -> Option<String>,
    pub mode_of: &'a dyn Fn(&Path) -> Option<u32>,
}

fn mode_of(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).ok().map(|m| m.permissions().mode())
}

/// The machine's host name (the UTS namespace's, as `hostname` prints it).
pub fn machine_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
    /// Tables left out after an error in them (so "no [[site]]" is not said as well).
    dropped_tables: usize,
}

impl Checker<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
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

    fn absolute(&mut self, s: &Spanned<String>, key: &str) -> PathBuf {
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

    fn name(&mut self, s: &Spanned<String>, key: &str, extra: &[char]) {
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
        let table = blank_region(&masked, span.clone());
        let caused_by_blanking = message.starts_with("missing field")
            && blanked
                .iter()
                .any(|b| b.start < table.end.max(span.end) && b.end > table.start);
        if !caused_by_blanking {
            let key = key_at(text, span.clone());
            c.at(span.clone(), &key, message);
        }
        let region = blank_region(&masked, span);
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
        return Err(c.errors);
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
    if sites.is_empty() && c.dropped_tables == 0 {
        c.at(0..0, "site", "no [[site]] table: nothing to watch");
    }

    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    let hooks = raw
        .hooks
        .iter()
        .enumerate()
        .map(|(i, h)| validate_hook(&mut c, i, h, &mut seen, &site_names, env, &mut warnings))
        .collect();

    if c.errors.is_empty() {
        Ok(Config {
            file: file.to_path_buf(),
            daemon,
            sites,
            hooks,
            warnings,
        })
    } else {
        Err(c.errors)
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
    if !seen.insert(name.clone()) {
        c.at(
            h.name.span(),
            &key("name"),
            format!("duplicate hook name {name:?}"),
        );
    }
    let url = match url::Url::parse(h.url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        Ok(_) | Err(_) => {
            c.at(
                h.url.span(),
                &key("url"),
                "must be an absolute http:// or https:// URL",
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
    if let Some(sites) = &h.sites {
        for s in sites.get_ref() {
            if !site_names.contains(s.as_str()) {
                c.at(
                    sites.span(),
                    &key("sites"),
                    format!("no [[site]] is named {s:?}"),
                );
            }
        }
    }
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
    let format = match h.format.as_ref() {
        None => Format::Kudu,
        Some(f) if f.get_ref() == "kudu" => Format::Kudu,
        Some(f) => {
            c.at(
                f.span(),
                &key("format"),
                format!(
                    "format {:?} is not implemented in this version (use \"kudu\")",
                    f.get_ref()
                ),
            );
            Format::Kudu
        }
    };
    if let Some(t) = &h.template {
        c.at(
            t.span(),
            &key("template"),
            "not implemented in this version",
        );
    }
    let secret = match (&h.secret_file, &h.secret_env) {
        (Some(f), Some(_)) => {
            c.at(
                f.span(),
                &key("secret_file"),
                "set secret_file or secret_env, not both",
            );
            None
        }
        (Some(f), None) => {
            let path = c.absolute(f, &key("secret_file"));
            match (env.read_file)(&path) {
                Ok(s) if !s.trim().is_empty() => {
                    if (env.mode_of)(&path).is_some_and(|m| m & 0o004 != 0) {
                        warnings.push(format!(
                            "hook {name}: secret file {} is readable by every user; chmod 600 it",
                            path.display()
                        ));
                    }
                    Some(Secret::new(s.trim().to_string()))
                }
                Ok(_) => {
                    c.at(f.span(), &key("secret_file"), "the secret file is empty");
                    None
                }
                Err(e) => {
                    c.at(
                        f.span(),
                        &key("secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, Some(v)) => match (env.read_env)(v.get_ref()) {
            Some(s) if !s.trim().is_empty() => Some(Secret::new(s.trim().to_string())),
            _ => {
                c.at(
                    v.span(),
                    &key("secret_env"),
                    format!("environment variable {} is not set or empty", v.get_ref()),
                );
                None
            }
        },
        (None, None) => None,
    };
    let signature = match h
        .signature
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
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
    if let Some(Secret(s)) = &secret
        && signature == SignatureKind::Standard
        && let Some(b64) = s.strip_prefix("whsec_")
    {
        use base64::Engine;
        if base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_err()
        {
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
        statuses,
        format,
        secret,
        signature,
        insecure_ssl,
        timeout,
        retry,
        headers,
    }
}

/// The events deployhook sends by itself; any other name is a custom event, sent only
/// by `publish`.
pub const KNOWN_EVENTS: [&str; 2] = ["PostDeployment", "StatusChanged"];

/// Whether `name` is a known event (case-insensitive).
pub fn is_known_event(name: &str) -> bool {
    KNOWN_EVENTS.iter().any(|k| k.eq_ignore_ascii_case(name))
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
fn placeholder_url() -> url::Url {
    #[allow(clippy::expect_used)]
    url::Url::parse("http://invalid.invalid/").expect("invariant: a constant, valid URL")
}

/// A map of site name to index, for lookups.
pub fn site_index(config: &Config) -> BTreeMap<String, usize> {
    config
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env<'static> {
        Env {
            host_name: "test-host".into(),
            state_directory: None,
            read_file: &|p| {
                if p == Path::new("/etc/dh/secret") {
                    Ok("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n".into())
                } else {
                    Err(std::io::Error::from(std::io::ErrorKind::NotFound))
                }
            },
            read_env: &|_| None,
            mode_of: &|_| Some(0o644),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new("/etc/dh.toml"), &env()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            r#"
[daemon]
state_dir = "/var/lib/deployhook"
resync = "30s"

[[site]]
name = "shop"
path = "/var/www/shop"
layout = "releases"
settle = "1s"

[[hook]]
name = "ops"
url = "https://user:pw@hooks.example.com/x"
events = ["PostDeployment", "StatusChanged"]
statuses = ["success", "failed"]
secret_file = "/etc/dh/secret"
timeout = "3s"
retry = ["1s", "2s"]
headers = { "X-Env" = "prod" }
"#,
            Path::new("/etc/dh.toml"),
            &env(),
        )
        .map_err(|e| format!("{e:?}"));
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.daemon.host_name, "test-host");
        assert_eq!(c.daemon.resync, Duration::from_secs(30));
        assert_eq!(c.sites[0].settle, Duration::from_secs(1));
        assert_eq!(c.hooks[0].signature, SignatureKind::Standard);
        assert_eq!(c.hooks[0].retry.len(), 2);
        assert_eq!(c.hooks[0].display_url(), "https://hooks.example.com/x");
        assert_eq!(format!("{:?}", c.hooks[0].secret), "Some(***)");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("readable by every user"))
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = errors("[[site]]\nname = \"a\"\npath = \"/x\"\ncolour = \"red\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/dh.toml:4:1: site[0].colour: unknown field `colour`"),
            "{e:?}"
        );
        let e = errors(
            "[daemon]\nresync = \"1s\"\n[[site]]\nname = \"a\"\npath = \"/x\"\n\
             [[site]]\nname = \"b\"\npath = \"/y\"\nsetle = \"1s\"\n",
        );
        assert!(e[0].contains(":9:1: site[1].setle: unknown field"), "{e:?}");
        let e = errors("[daemon]\nresinc = \"1s\"\n");
        assert!(e[0].contains(":2:1: daemon.resinc: unknown field"), "{e:?}");
    }

    #[test]
    fn validation_errors_are_collected_with_lines() {
        let e = errors(
            "[[site]]\nname = \"a b\"\npath = \"relative\"\nidle_timeout = \"soon\"\n\
             [[site]]\nname = \"c\"\npath = \"/c\"\n[[site]]\nname = \"c\"\npath = \"/d\"\n\
             [[hook]]\nname = \"h!\"\nurl = \"ftp://x\"\nsites = [\"nope\"]\n",
        );
        let joined = e.join("\n");
        for want in [
            ":2:8: site[0].name: \"a b\" is not a valid name",
            ":3:8: site[0].path: \"relative\" must be an absolute path",
            ":4:16: site[0].idle_timeout: \"soon\" is not a duration",
            ":9:8: site[2].name: duplicate site name \"c\"",
            ":12:8: hook[0].name: \"h!\" is not a valid name",
            ":13:7: hook[0].url: must be an absolute http:// or https:// URL",
            ":14:9: hook[0].sites: no [[site]] is named \"nope\"",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
    }

    #[test]
    fn signature_without_secret_is_an_error() {
        let e = errors(
            "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nsignature = \"github\"\n",
        );
        assert!(
            e[0].contains("hook[0].signature: signature \"github\" needs secret_file"),
            "{e:?}"
        );
    }

    #[test]
    fn every_error_of_a_file_in_one_run() {
        let e = errors(
            "[daemon]\nresinc = \"1s\"\n[[site]]\nname = \"a\"\npath = \"/a\"\nsetle = \"1s\"\n\
             settle = 5\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nevnts = [\"PostDeployment\"]\n",
        );
        let joined = e.join("\n");
        for want in [
            ":2:1: daemon.resinc: unknown field",
            ":6:1: site[0].setle: unknown field",
            ":7:10: site[0].settle: invalid type",
            ":11:1: hook[0].evnts: unknown field",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        assert_eq!(e.len(), 4, "{joined}");
        // A wrong type on a required key is one error, not two.
        let e = errors("[[site]]\nname = 5\npath = \"/a\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains(":2:8: site[0].name: invalid type"), "{e:?}");
        // An unknown table is one error.
        let e = errors("[[site]]\nname = \"a\"\npath = \"/a\"\n[sitez]\nx = 1\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("sitez"), "{e:?}");
    }

    #[test]
    fn misspelled_events_are_errors_custom_ones_are_not() {
        let cfg = |events: &str| {
            errors(&format!(
                "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nevents = {events}\n"
            ))
        };
        for bad in [
            "PostDeployments",
            "postdeploy",
            "StatusChange",
            "Post-Deployment",
        ] {
            let e = cfg(&format!("[\"{bad}\"]"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].contains("did you mean"), "{bad}: {e:?}");
        }
        assert!(cfg("[\"postdeployment\", \"STATUSCHANGED\"]").is_empty());
        assert!(cfg("[\"BuildStarted\", \"release-notes\"]").is_empty());
    }

    #[test]
    fn authorization_header_with_url_credentials_is_an_error() {
        let e = errors(
            "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"https://u:p@x/\"\nheaders = { Authorization = \"Bearer t\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("keep one"), "{e:?}");
        let e = errors(
            "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"https://x/\"\nheaders = { \"X-Key\" = \"se\\ncret\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(!e[0].contains("se"), "the value is not quoted: {e:?}");
    }

    #[test]
    fn shown_urls_hide_credentials_and_query_values() {
        let u = url::Url::parse("https://user:p%2Bss@hooks.example.com/x?token=abc&env=prod")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            redact_url(&u),
            "https://hooks.example.com/x?token=***&env=***"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Any text, and any valid file with a piece replaced, is a config or errors that
        /// name a line of the file: never a panic.
        #[test]
        fn any_text_is_a_config_or_errors_with_lines(
            junk in "[\\[\\]a-z_=\" .0-9\n{}é\u{1b}]{0,200}",
            cut in 0usize..400,
        ) {
            let valid = "[daemon]\nresync = \"1s\"\n[[site]]\nname = \"a\"\npath = \"/a\"\n\
                         [[hook]]\nname = \"h\"\nurl = \"http://x/\"\nevents = [\"StatusChanged\"]\n";
            let at = valid.char_indices().map(|(i, _)| i).nth(cut % valid.chars().count()).unwrap_or(0);
            for text in [junk.clone(), format!("{}{junk}{}", &valid[..at], &valid[at..])] {
                if let Err(errors) = parse(&text, Path::new("/f.toml"), &env()) {
                    proptest::prop_assert!(!errors.is_empty());
                    for e in errors {
                        proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1, "{}", e);
                    }
                }
            }
        }
    }
}
