//! deployhook: watches deployment directories and git repositories, infers each
//! deployment's state and delivers webhooks about it.
//!
//! The data path, in order: `watch` (a filesystem event only marks a site dirty) →
//! `snapshot` (read a site) → `infer` (pure: previous state + snapshot → transitions) →
//! `store` (state, transitions, events and deliveries in one SQLite transaction) →
//! `deliver` (one worker per hook sends its queue). `daemon` wires them; `config`,
//! `cli`, `check`, `demo`, `listen` and `telemetry` stand beside the path.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod config;
pub mod daemon;
pub mod deliver;
pub mod infer;
pub mod snapshot;
pub mod store;
pub mod watch;

pub mod check;
pub mod cli;
pub mod demo;
pub mod listen;
pub mod telemetry;

use cli::{Cli, Command, exit};
use telemetry::chain;

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let default_level = match cli.command {
        Command::Demo => "warn",
        _ => "info",
    };
    telemetry::init(
        cli.log_format,
        cli.log_level.as_deref().unwrap_or(default_level),
    );
    match cli.command {
        Command::Check => {
            if check::run(&cli.config) {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Command::Run => block_on(async {
            daemon::run_from_config_file(cli.config.clone())
                .await
                .map_err(|e| chain(&e))
        }),
        Command::Demo => block_on(async { demo::run().await.map_err(|e| chain(&e)) }),
    }
}

fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => exit::OK,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}
