//! The command line (clap derive). Every command has `--help`; exit codes are listed in
//! `exit` and in the long help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG;
use crate::telemetry::LogFormat;

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Failure: invalid config, a fatal runtime error, a check that found problems.
    pub const FAILURE: u8 = 1;
    /// Usage error (bad arguments), as clap reports it.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "deployhook",
    version,
    about = "Watches deployment directories and git repositories, infers each deployment's state and delivers webhooks about it",
    after_long_help = "Exit codes: 0 success, 1 failure (invalid config, fatal error, check found problems), 2 usage error.\n\nQuick look: `deployhook demo` runs a real deploy against a scratch site and prints the payloads."
)]
pub struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "DEPLOYHOOK_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Log format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

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
    /// Run a self-contained demo: scratch site, real daemon, real local receiver, a real
    /// Capistrano-style deploy; prints the payloads received. Needs `git` and `tar`.
    Demo,
}
