//! The command line (clap derive). Every command has `--help`; exit codes are listed in
//! `exit` and in the long help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG;
use crate::telemetry::{LogFormat, LogOutput};

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Failure: invalid config, a fatal runtime error, a check that found problems.
    pub const FAILURE: u8 = 1;
    /// Usage error (bad arguments), as clap reports it.
    pub const USAGE: u8 = 2;
    /// `status`: the daemon is not running (as `systemctl is-active` and LSB say).
    pub const NOT_RUNNING: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "deployhook",
    version,
    about = "Watches deployment directories and git repositories, infers each deployment's state and delivers webhooks about it",
    after_long_help = "Exit codes: 0 success, 1 failure (invalid config, fatal error, check found problems), 2 usage error, 3 `status`: the daemon is not running.\n\nQuick look: `deployhook demo` runs a real deploy against a scratch site and prints the payloads."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Where logs go: stderr (the journal, under systemd) or stdout (the image's default,
    /// for a container's log collector).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DEPLOYHOOK_LOG_OUTPUT",
        default_value = "stderr"
    )]
    pub log_output: LogOutput,

    /// Log level or filter (`info`, `debug`, `deployhook=debug`); `RUST_LOG` wins.
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The config file, on every command that reads it (and only there).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, short, global = true, env = "DEPLOYHOOK_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the sites, infer deployments, deliver webhooks.
    ///
    /// SIGHUP reloads the config (a config that fails validation is rejected and the
    /// running one stays); SIGTERM or SIGINT drains attempts in flight and exits 0.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the config and show, per site, the detected layout and current state.
    ///
    /// Exits 0 when the config is valid and every site can be read, 1 otherwise.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the config, then ask the running daemon to reload it (SIGHUP).
    ///
    /// A config that fails validation is reported and the daemon is not signalled (exit
    /// 1), so the unit's `ExecReload=` makes `systemctl reload` fail visibly. The daemon
    /// is found by its lock in `state_dir`, or by `--pid` (systemd passes `$MAINPID`).
    Reload {
        /// The daemon's pid (default: the one in its lock file in `state_dir`).
        #[arg(long, env = "MAINPID")]
        pid: Option<i32>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a self-contained demo: scratch site, real daemon, real local receiver, a real
    /// Capistrano-style deploy; prints the payloads received. Needs `git` and `tar`.
    Demo,
    /// Show each site's live and in-progress deployments, and each hook's queue depth,
    /// oldest pending delivery, last outcome and whether it is disabled.
    ///
    /// Reads the outbox directly (read-only), whether or not the daemon runs. Exits 0
    /// when the daemon is running, 3 when it is not (as `systemctl is-active`), 1 when
    /// the config or the outbox cannot be read.
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List, inspect and redeliver deliveries.
    Deliveries(DeliveriesCmd),
    /// The five DORA keys of each site over a window, from the outbox: deployment
    /// frequency, lead time for changes, change failure rate, failed deployment recovery
    /// time and deployment rework rate.
    ///
    /// Reads the outbox directly (read-only), whether or not the daemon runs.
    Dora {
        /// Only this site (a `[[site]]` name).
        #[arg(long)]
        site: Option<String>,
        /// The window's start: a span back from now (`30d`, `12h`) or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// The window's end: a span back from now or an RFC 3339 time (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Print the API's JSON (`GET /api/dora`) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Send a JSON document to every hook of an event type, through the running
    /// daemon's API (needs `[api]`), durably like any other event.
    Publish {
        /// The event type (case-insensitive), e.g. `PostDeployment` or a custom one.
        event: String,
        /// The JSON document; `-` (the default) reads standard input.
        #[arg(default_value = "-")]
        file: std::path::PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List, test, add, remove and re-enable hooks.
    Hooks(HooksCmd),
    /// Write a `marker` site's status file (atomically), e.g. from a deploy script.
    Mark {
        /// pending, building, deploying, success or failed.
        #[arg(value_parser = parse_status)]
        status: crate::model::Status,
        /// The site (a `[[site]]` name in the config).
        #[arg(long)]
        site: String,
        /// The commit (default: the deployment in progress, else the repository's HEAD).
        #[arg(long)]
        id: Option<String>,
        /// The deployment's message (default: the commit's subject).
        #[arg(long)]
        message: Option<String>,
        /// Who deploys (default: the commit's author).
        #[arg(long)]
        deployer: Option<String>,
        /// A line about where the deployment is, e.g. `migrating the database`.
        #[arg(long)]
        status_text: Option<String>,
        /// Progress as the deploy tool says it, e.g. `3/5` or `60%`.
        #[arg(long)]
        progress: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a command as a deployment of a `marker` site: `building` at start, then
    /// `success` or `failed` by its exit status, with its last output line as statusText.
    ///
    /// Output, signals (INT, TERM, HUP, QUIT, USR1, USR2) and the exit status pass
    /// through; a command killed by signal N exits 128+N.
    Wrap {
        /// The site (a `[[site]]` name in the config, `layout = "marker"`).
        #[arg(long)]
        site: String,
        /// The commit (default: the repository's HEAD).
        #[arg(long)]
        id: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true)]
        command: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print a shell completion script, e.g. `deployhook completions bash >
    /// /usr/share/bash-completion/completions/deployhook`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write the man pages (roff): deployhook(1), one per command (deployhook-run(1), …)
    /// and deployhook.toml(5); without `--dir`, print deployhook(1).
    Man {
        /// The directory to write every page into.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A local receiver for setting up hooks: prints each request (event, delivery id,
    /// signature valid/invalid, pretty JSON) and answers 200 (or --status).
    Listen {
        /// Port to listen on (0: any free port).
        #[arg(long, short, default_value_t = 9000)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// File holding the hook's secret, to check signatures.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// HTTP status to answer.
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
}

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl Command {
    /// The config file the command reads; the default one for those that read none.
    pub fn config_path(&self) -> PathBuf {
        match self {
            Command::Run { config }
            | Command::Check { config }
            | Command::Reload { config, .. }
            | Command::Status { config }
            | Command::Publish { config, .. }
            | Command::Mark { config, .. }
            | Command::Wrap { config, .. }
            | Command::Dora { config, .. }
            | Command::Deliveries(DeliveriesCmd { config, .. })
            | Command::Hooks(HooksCmd { config, .. }) => config.config.clone(),
            Command::Demo
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Listen { .. } => PathBuf::from(DEFAULT_CONFIG),
        }
    }
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(s: CompletionShell) -> Self {
        match s {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct DeliveriesCmd {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    pub command: Deliveries,
}

#[derive(Debug, clap::Args)]
pub struct HooksCmd {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    pub command: Hooks,
}

#[derive(Debug, Subcommand)]
pub enum Deliveries {
    /// Deliveries, newest first, filtered by hook, event, outcome, HTTP status and time.
    List {
        #[command(flatten)]
        filter: DeliveryFilterArgs,
        /// Only dead ones and ones being retried (the same as `--outcome retrying,dead`).
        #[arg(long)]
        failed: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One delivery: the request (secrets as `***`) and every attempt's response.
    Show {
        /// The delivery's id (`msg_…`, as `deliveries list` shows it).
        id: String,
    },
    /// Queue a new delivery with the same payload (sent by the daemon).
    Redeliver {
        /// The delivery's id (`msg_…`).
        id: String,
    },
    /// Retry deliveries now: one by id, or every failure the filters match. A waiting or
    /// retrying one becomes due now; a dead one is queued again as a new delivery (its
    /// history stays). The running daemon sends them within a second.
    Retry {
        /// One delivery (`msg_…`).
        #[arg(conflicts_with_all = ["hook", "event", "outcome", "http_status", "since", "until"])]
        id: Option<String>,
        #[command(flatten)]
        filter: DeliveryFilterArgs,
    },
}

/// The filters of `deliveries list` and `deliveries retry`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryFilterArgs {
    /// Only this hook's (a config hook's name, or `api-N`).
    #[arg(long)]
    pub hook: Option<String>,
    /// Only this event type's (case-insensitive), e.g. `PostDeployment`.
    #[arg(long)]
    pub event: Option<String>,
    /// Only these outcomes (comma-separated): delivered, retrying, waiting, dead,
    /// cancelled.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub outcome: Vec<OutcomeArg>,
    /// Only those whose last attempt got this HTTP status.
    #[arg(long)]
    pub http_status: Option<u16>,
    /// Only those created in this last span, e.g. `1h`, `30m`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Only those created before this long ago, e.g. `10m`.
    #[arg(long)]
    pub until: Option<String>,
}

/// What became of a delivery (`--outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutcomeArg {
    Delivered,
    Retrying,
    Waiting,
    Dead,
    Cancelled,
}

impl From<OutcomeArg> for crate::store::query::DeliveryOutcome {
    fn from(o: OutcomeArg) -> Self {
        use crate::store::query::DeliveryOutcome as Outcome;
        match o {
            OutcomeArg::Delivered => Outcome::Delivered,
            OutcomeArg::Retrying => Outcome::Retrying,
            OutcomeArg::Waiting => Outcome::Waiting,
            OutcomeArg::Dead => Outcome::Dead,
            OutcomeArg::Cancelled => Outcome::Cancelled,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Hooks {
    /// The hooks in the config and those registered through the API (secrets never
    /// shown).
    List,
    /// Send a `ping` event to a hook now and print the answer; exits 1 unless 2xx.
    Test {
        /// The hook's name (as `hooks list` shows it).
        name: String,
    },
    /// Re-enable a hook that a `410 Gone` disabled.
    Enable {
        /// The hook's name.
        name: String,
    },
    /// Register a hook with the running daemon (through its API; needs `[api]`).
    ///
    /// The same URL and event again gives the same hook; the same URL with another event
    /// is refused. Hooks registered this way must call public addresses unless
    /// `api.allow_private_targets = true`.
    Add {
        /// The receiver's URL (http:// or https://).
        url: String,
        /// The event type (case-insensitive).
        #[arg(long, default_value = "PostDeployment")]
        event: String,
        /// Accept any TLS certificate from this receiver.
        #[arg(long)]
        insecure_ssl: bool,
    },
    /// Remove a hook registered through the API (its waiting deliveries are cancelled).
    /// Hooks from the config file are removed there.
    Remove {
        /// The hook's id (as `hooks add` or `hooks list` shows it).
        id: String,
    },
}

fn parse_status(s: &str) -> Result<crate::model::Status, String> {
    crate::model::Status::parse(s).ok_or_else(|| {
        format!("{s:?} is not a status: use pending, building, deploying, success or failed")
    })
}
