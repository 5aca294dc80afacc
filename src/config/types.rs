//! The validated configuration: what the rest of the daemon reads. Every duration,
//! path, URL and choice has been checked; defaults are filled in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::formats::{CloudEventsMode, Format, GithubTarget, Template};
use super::{Secret, redact_url};
use crate::model::Status;

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
    /// `[[chain]]`: hooks called one after another (their hooks have `chain` set).
    pub chains: Vec<super::chains::ChainConfig>,
    /// `[[source]]`: streams a relay consumes.
    pub sources: Vec<super::sources::SourceConfig>,
    /// `[api]`: `None` when absent (nothing listens).
    pub api: Option<ApiConfig>,
    /// Things worth a warning at start-up (world-readable secrets, `insecure_ssl`).
    pub warnings: Vec<String>,
}

impl Config {
    /// `[api] public_url` without a trailing slash: the base of chain callback URLs.
    pub fn callback_base(&self) -> Option<String> {
        self.api
            .as_ref()
            .and_then(|a| a.public_url.as_ref())
            .map(|u| u.as_str().trim_end_matches('/').to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub host_name: String,
    pub resync: Duration,
    pub history_max_age: Duration,
    pub shutdown_timeout: Duration,
}

/// Where the API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

pub const DEFAULT_API_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8791);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: Listen,
    /// Required for a TCP address that is not loopback.
    pub token: Option<Secret>,
    pub public_url: Option<url::Url>,
    pub allow_private_targets: bool,
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub max_hooks: usize,
    pub max_publish_bytes: usize,
    pub max_queue_bytes: u64,
}

/// `[api]` defaults.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_API_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub const DEFAULT_API_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const DEFAULT_API_MAX_HOOKS: usize = 100;
pub const DEFAULT_API_MAX_PUBLISH_BYTES: usize = 256 * 1024;
pub const DEFAULT_API_MAX_QUEUE_BYTES: u64 = 64 * 1024 * 1024;

impl ApiConfig {
    /// Loopback, no token, private targets refused: for code that builds configs.
    pub fn new(listen: Listen) -> ApiConfig {
        ApiConfig {
            listen,
            token: None,
            public_url: None,
            allow_private_targets: false,
            max_connections: DEFAULT_API_MAX_CONNECTIONS,
            header_timeout: DEFAULT_API_HEADER_TIMEOUT,
            request_timeout: DEFAULT_API_REQUEST_TIMEOUT,
            max_hooks: DEFAULT_API_MAX_HOOKS,
            max_publish_bytes: DEFAULT_API_MAX_PUBLISH_BYTES,
            max_queue_bytes: DEFAULT_API_MAX_QUEUE_BYTES,
        }
    }
}

/// Hook names of this form belong to hooks registered through the API.
pub fn is_api_hook_name(name: &str) -> bool {
    name.strip_prefix("api-")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
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
    /// The repository's URL for DORA tools; `None`: its `origin`'s.
    pub repository_url: Option<String>,
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
            repository_url: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureKind {
    None,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// GitHub's `X-Hub-Signature-256`.
    Github,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    pub name: String,
    pub url: url::Url,
    /// Event types, compared case-insensitively.
    pub events: Vec<String>,
    pub sites: Option<Vec<String>>,
    /// Host names (`hostName`) it wants; `None`: all.
    pub hosts: Option<Vec<String>>,
    pub statuses: Option<Vec<Status>>,
    pub format: Format,
    pub cloudevents_mode: CloudEventsMode,
    /// `format = "template"`: the template, read and checked at load.
    pub template: Option<Template>,
    /// `format = "github-deployments"`: where it reports.
    pub github: Option<GithubTarget>,
    /// A `nats://` or `tls://` hook: where it publishes.
    pub nats: Option<super::nats::NatsTarget>,
    /// The chain this hook belongs to: it is called only by that chain.
    pub chain: Option<String>,
    pub secret: Option<Secret>,
    pub signature: SignatureKind,
    pub insecure_ssl: bool,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub headers: Vec<(String, String)>,
    /// Refuse to connect to loopback, private and link-local addresses (hooks
    /// registered through the API, unless `api.allow_private_targets`).
    pub public_only: bool,
    /// `devlake` and `datadog-dora`: the environment deployments are reported in.
    pub environment: Option<String>,
    /// Failed attempts in a row that make a `HookFailing` event.
    pub failing_after: u32,
    /// How long the hook may fail without a 2xx before it is disabled.
    pub disable_after: Option<Duration>,
}

impl HookConfig {
    /// A hook with every default (`PostDeployment`, kudu, no secret, 10 s, the default
    /// retry schedule), for code that builds configs (demo, tests, benches).
    pub fn new(name: &str, url: url::Url) -> HookConfig {
        HookConfig {
            name: name.to_string(),
            url,
            events: vec!["PostDeployment".to_string()],
            sites: None,
            hosts: None,
            statuses: None,
            format: Format::Kudu,
            cloudevents_mode: CloudEventsMode::Structured,
            template: None,
            github: None,
            nats: None,
            chain: None,
            secret: None,
            signature: SignatureKind::None,
            insecure_ssl: false,
            timeout: Duration::from_secs(10),
            retry: DEFAULT_RETRY
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            headers: Vec::new(),
            public_only: false,
            environment: None,
            failing_after: DEFAULT_FAILING_AFTER,
            disable_after: None,
        }
    }

    /// Whether the hook takes any JSON document (published and operational events), not
    /// only deployments (a GitHub Deployments sink).
    pub fn takes_documents(&self) -> bool {
        !matches!(
            self.format,
            Format::GithubDeployments | Format::Devlake | Format::DatadogDora | Format::Otlp
        )
    }

    pub fn wants_event(&self, event: &str) -> bool {
        self.events.iter().any(|e| e.eq_ignore_ascii_case(event))
    }

    pub fn wants_site(&self, site: &str) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == site))
    }

    pub fn wants_host(&self, host: &str) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|h| h.iter().any(|x| x == host))
    }

    pub fn wants_status(&self, status: Status) -> bool {
        self.statuses.as_ref().is_none_or(|s| s.contains(&status))
    }

    /// The URL without credentials, for logs and output.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
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

/// The events deployhook sends by itself; any other name is a custom event, sent only
/// by `publish`.
pub const KNOWN_EVENTS: [&str; 6] = [
    "PostDeployment",
    "StatusChanged",
    "HookFailing",
    "HookRecovered",
    "HookDisabled",
    "DeliveryDead",
];

/// `failing_after`'s default.
pub const DEFAULT_FAILING_AFTER: u32 = 5;

/// Whether `name` is a known event (case-insensitive).
pub fn is_known_event(name: &str) -> bool {
    KNOWN_EVENTS.iter().any(|k| k.eq_ignore_ascii_case(name))
}
