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
    /// Config file.
    #[arg(long, short, global = true, env = "DEPLOYHOOK_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the sites, infer deployments, deliver webhooks.
    ///
    /// SIGHUP reloads the config (a config that fails validation is rejected and the
    /// running one stays); SIGTERM or SIGINT drains attempts in flight and exits 0.
    Run,
    /// Validate the config and show, per site, the detected layout and current state.
    ///
    /// Exits 0 when the config is valid and every site can be read, 1 otherwise.
    Check,
    /// Validate the config, then ask the running daemon to reload it (SIGHUP).
    ///
    /// A config that fails validation is reported and the daemon is not signalled (exit
    /// 1), so the unit's `ExecReload=` makes `systemctl reload` fail visibly. The daemon
    /// is found by its lock in `state_dir`, or by `--pid` (systemd passes `$MAINPID`).
    Reload {
        /// The daemon's pid.
        #[arg(long, env = "MAINPID")]
        pid: Option<i32>,
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
    Status,
    /// List, inspect and redeliver deliveries.
    #[command(subcommand)]
    Deliveries(Deliveries),
    /// Send a JSON document to every hook of an event type, through the running
    /// daemon's API (needs `[api]`), durably like any other event.
    Publish {
        /// The event type (case-insensitive), e.g. `PostDeployment` or a custom one.
        event: String,
        /// The JSON document; `-` (the default) reads standard input.
        #[arg(default_value = "-")]
        file: std::path::PathBuf,
    },
    /// List, test, add, remove and re-enable hooks.
    #[command(subcommand)]
    Hooks(Hooks),
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
        #[arg(long)]
        message: Option<String>,
        #[arg(long)]
        deployer: Option<String>,
        #[arg(long)]
        status_text: Option<String>,
        #[arg(long)]
        progress: Option<String>,
    },
    /// Run a command as a deployment of a `marker` site: `building` at start, then
    /// `success` or `failed` by its exit status, with its last output line as statusText.
    ///
    /// Output, signals (INT, TERM, HUP, QUIT, USR1, USR2) and the exit status pass
    /// through; a command killed by signal N exits 128+N.
    Wrap {
        #[arg(long)]
        site: String,
        /// The commit (default: the repository's HEAD).
        #[arg(long)]
        id: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `deployhook man > deployhook.1`.
    Man,
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

#[derive(Debug, Subcommand)]
pub enum Deliveries {
    /// Deliveries, newest first.
    List {
        /// Only this hook's.
        #[arg(long)]
        hook: Option<String>,
        /// Only dead ones and ones being retried.
        #[arg(long)]
        failed: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One delivery: the request and every attempt's response.
    Show { id: String },
    /// Queue a new delivery with the same payload (sent by the daemon).
    Redeliver { id: String },
    /// Make waiting deliveries due now (all, one hook's, or one), instead of at their
    /// scheduled retry; the running daemon sends them within a second.
    Retry {
        /// One delivery (`msg_…`).
        #[arg(conflicts_with = "hook")]
        id: Option<String>,
        /// Every waiting delivery of this hook.
        #[arg(long)]
        hook: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Hooks {
    /// The hooks in the config and those registered through the API (secrets never
    /// shown).
    List,
    /// Send a `ping` event to a hook now and print the answer; exits 1 unless 2xx.
    Test { name: String },
    /// Re-enable a hook that a `410 Gone` disabled.
    Enable { name: String },
    /// Register a hook with the running daemon (through its API; needs `[api]`).
    ///
    /// The same URL and event again gives the same hook; the same URL with another event
    /// is refused. Hooks registered this way must call public addresses unless
    /// `api.allow_private_targets = true`.
    Add {
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
    Remove { id: String },
}

fn parse_status(s: &str) -> Result<crate::model::Status, String> {
    crate::model::Status::parse(s).ok_or_else(|| {
        format!("{s:?} is not a status: use pending, building, deploying, success or failed")
    })
}
