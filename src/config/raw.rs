//! The TOML file as written: a serde mirror with `deny_unknown_fields` and spans, so
//! that `config::validate` can name the line and key of anything it rejects. Every key
//! is documented here; docs/src/configuration.md and deployhook.toml(5)
//! (`src/cmd/deployhook.toml.5`, whose keys a test checks against these structs) follow
//! this file.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Daemon-wide settings.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// One `[[site]]` table per watched deployment target.
    #[serde(default, rename = "site")]
    pub sites: Vec<RawSite>,
    /// One `[[hook]]` table per receiver.
    #[serde(default, rename = "hook")]
    pub hooks: Vec<RawHook>,
    /// The HTTP API (Kudu's `/api/hooks` and more). Absent: nothing listens.
    pub api: Option<RawApi>,
    /// One `[[source]]` table per stream a relay consumes (relay mode).
    #[serde(default, rename = "source")]
    pub sources: Vec<super::sources::RawSource>,
    /// One `[[chain]]` table per chain of hooks called one after another.
    #[serde(default, rename = "chain")]
    pub chains: Vec<super::chains::RawChain>,
    /// Every finished deployment as an OpenTelemetry span (OTLP/HTTP).
    pub otlp: Option<super::otlp::RawOtlp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `IP:PORT` or `unix:/path/to.sock` (created mode 0660). Default `127.0.0.1:8791`.
    pub listen: Option<Spanned<String>>,
    /// File holding the API token (`Authorization: Bearer <token>`, or Basic with the
    /// token as password). Required when `listen` is not loopback or a unix socket. A
    /// relative path names a systemd credential.
    pub token_file: Option<Spanned<String>>,
    /// The URL the API is reached at from outside (for callback URLs).
    pub public_url: Option<Spanned<String>>,
    /// Let hooks registered through the API target loopback, private and link-local
    /// addresses. Default false.
    pub allow_private_targets: Option<bool>,
    /// Connections served at once. Default 256 (at most a quarter of the file
    /// descriptor limit). At the limit a new connection replaces the oldest one that has
    /// sent nothing yet, or is closed.
    pub max_connections: Option<Spanned<i64>>,
    /// How long a client may take to send a request's headers; also how long a
    /// kept-alive connection may sit idle. Default `10s`.
    pub header_timeout: Option<Spanned<String>>,
    /// How long a request may take, reading its body included (`408` after). Default
    /// `30s`.
    pub request_timeout: Option<Spanned<String>>,
    /// How many hooks may be registered through the API (`409` beyond). Default 100.
    pub max_hooks: Option<Spanned<i64>>,
    /// The largest document `publish` takes, in bytes (`413` beyond). Default 262144.
    pub max_publish_bytes: Option<Spanned<i64>>,
    /// How many bytes of bodies a hook's queue may hold before a publish or redelivery
    /// to it is refused (`429`, `Retry-After`); deployments are always queued. Default
    /// 67108864 (64 MiB).
    pub max_queue_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Directory of the SQLite outbox and history. Default: `$STATE_DIRECTORY` (set by
    /// systemd's `StateDirectory=`), else `/var/lib/deployhook`.
    pub state_dir: Option<Spanned<String>>,
    /// The `hostName` sent in payloads. Default: the machine's host name.
    pub host_name: Option<Spanned<String>>,
    /// How often every site is re-read even without filesystem events. Default `60s`.
    pub resync: Option<Spanned<String>>,
    /// How long delivery history is kept. Default `14d`.
    pub history_max_age: Option<Spanned<String>>,
    /// How long SIGTERM waits for attempts in flight. Default `10s`.
    pub shutdown_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    /// Unique name; letters, digits, `-`, `_` and `.`. Sent as `siteName`.
    pub name: Spanned<String>,
    /// Absolute path of the deployment directory (Capistrano's `deploy_to`).
    pub path: Spanned<String>,
    /// `releases`, `kudu`, `git`, `marker` or `auto` (default).
    pub layout: Option<Spanned<String>>,
    /// Repository to read commit data from. Default: detected (`repo/`, `.dep/repo`,
    /// the release itself, the work tree). For `layout = "git"`, a bare repository that a
    /// post-receive script checks out into `path`.
    pub repo: Option<Spanned<String>>,
    /// Branch whose head marks a Capistrano deploy as pending. Default: the mirror's HEAD.
    pub branch: Option<Spanned<String>>,
    /// `deployer` sent in payloads. Default: taken from the tool (log user, lock user).
    pub deployer: Option<Spanned<String>>,
    /// Quiet time before a plain release counts as finished. Default `2s`.
    pub settle: Option<Spanned<String>>,
    /// A deployment with no change for this long is failed. Default `10m`.
    pub idle_timeout: Option<Spanned<String>>,
    /// `marker` layout: the status file, absolute or relative to `path`. Default
    /// `.deployhook-status.json`.
    pub status_file: Option<Spanned<String>>,
    /// A deployment succeeds only after this URL answers 2xx (any layout).
    pub health_url: Option<Spanned<String>>,
    /// How long `health_url` may fail after the switch before the deployment fails.
    /// Default `2m`.
    pub health_timeout: Option<Spanned<String>>,
    /// `inotify` (default) or `poll` (NFS, some overlay mounts).
    pub watch: Option<Spanned<String>>,
    /// How often `watch = "poll"` looks. Default `2s`.
    pub poll_interval: Option<Spanned<String>>,
    /// The site's repository as DORA tools know it (`devlake`, `datadog-dora`, OTLP's
    /// `vcs.repository.url.full`). Default: its repository's `origin`, credentials removed.
    pub repository_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    /// Unique name; letters, digits, `-` and `_` only.
    pub name: Spanned<String>,
    /// Absolute `http://` or `https://` URL (`user:pass@` is sent as Basic auth), or
    /// `nats://` / `tls://` for NATS JetStream.
    pub url: Spanned<String>,
    /// Event types. Default `["PostDeployment"]`; also `StatusChanged`, and the
    /// operational events `HookFailing`, `HookRecovered`, `HookDisabled`, `DeliveryDead`.
    pub events: Option<Spanned<Vec<String>>>,
    /// Site names this hook wants. Default: all sites.
    pub sites: Option<Spanned<Vec<String>>>,
    /// Host names (`hostName`) this hook wants: for a relay, which edges. Default: all.
    pub hosts: Option<Spanned<Vec<String>>>,
    /// Statuses this hook wants (`pending` … `failed`). Default: all.
    pub statuses: Option<Spanned<Vec<String>>>,
    /// Payload format: `kudu` (default), `cloudevents`, `cdevents`, `slack`, `template`,
    /// `github-deployments`, `devlake`, `datadog-dora`.
    pub format: Option<Spanned<String>>,
    /// `structured` (default) or `binary`, for `cloudevents` and `cdevents`.
    pub cloudevents_mode: Option<Spanned<String>>,
    /// Template file for `format = "template"` (minijinja; `*.json.j2` escapes as JSON).
    pub template: Option<Spanned<String>>,
    /// A `nats://` or `tls://` hook: the subject, with `{hostName}`, `{siteName}` and
    /// `{event}`. Default `deployhook.{hostName}.{siteName}.{event}`.
    pub subject: Option<Spanned<String>>,
    /// `format = "github-deployments"`: the repository, `owner/name`.
    pub repository: Option<Spanned<String>>,
    /// `format = "github-deployments"`: the environment. Default: the site's name.
    /// `devlake`: `PRODUCTION` (default), `STAGING`, `TESTING` or `DEVELOPMENT`;
    /// `datadog-dora`: its `env` (default `production`).
    pub environment: Option<Spanned<String>>,
    /// `format = "github-deployments"`: a status's `log_url` (`{site}` and `{id}` are
    /// replaced by the site's name and the deployment id).
    pub log_url: Option<Spanned<String>>,
    /// `format = "github-deployments"`: a status's `environment_url` (same placeholders).
    pub environment_url: Option<Spanned<String>>,
    /// File holding the signing secret (`whsec_…` base64, or raw bytes); for
    /// `github-deployments`, the API token.
    pub secret_file: Option<Spanned<String>>,
    /// Environment variable holding the signing secret.
    pub secret_env: Option<Spanned<String>>,
    /// `standard` | `github` | `none`. Default: `standard` when a secret is set.
    pub signature: Option<Spanned<String>>,
    /// Accept any TLS certificate (logged loudly at start-up). Default false.
    pub insecure_ssl: Option<bool>,
    /// Time limit of one attempt. Default `10s`.
    pub timeout: Option<Spanned<String>>,
    /// Delays between attempts. Default `["5s","30s","2m","10m","30m","1h","3h","6h","12h"]`.
    pub retry: Option<Spanned<Vec<String>>>,
    /// Extra request headers.
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    /// After this many failed attempts in a row, a `HookFailing` event goes to the other
    /// hooks that want it (once, until a 2xx: then `HookRecovered`). Default 5.
    pub failing_after: Option<Spanned<i64>>,
    /// Disable the hook (as a 410 does, with a `HookDisabled` event) once it has failed
    /// without a 2xx for this long, e.g. `"3d"`. Default: never.
    pub disable_after: Option<Spanned<String>>,
}
