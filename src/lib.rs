//! deployhook: watches deployment directories and git repositories, infers each
//! deployment's state and delivers webhooks about it.
//!
//! The data path, in order: `watch` (a filesystem event only marks a site dirty) →
//! `snapshot` (read a site) → `infer` (pure: previous state + snapshot → transitions) →
//! `store` (state, transitions, events and deliveries in one SQLite transaction) →
//! `deliver` (one worker per hook sends its queue). `daemon` wires them; `config`,
//! `cli`, `cmd` (the commands) and `telemetry` stand beside the path.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod model;

pub mod config;
pub mod daemon;
pub mod deliver;
pub mod events;
pub mod infer;
pub mod running;
pub mod snapshot;
pub mod store;
pub mod watch;

pub mod api;
pub mod cli;
pub mod cmd;
pub mod metrics;
pub mod telemetry;

use cli::{Cli, Command, Deliveries, Hooks, exit};
use cmd::{admin, check, client, deliveries, demo, listen, mark};
use telemetry::chain;

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let default_level = match cli.command {
        Command::Demo => "warn",
        _ => "info",
    };
    telemetry::init(
        cli.log_format,
        cli.log_output,
        cli.log_level.as_deref().unwrap_or(default_level),
    );
    let config = cli.command.config_path();
    match cli.command {
        Command::Check { .. } => {
            if check::run(&config) {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        Command::Run { .. } => block_on(async {
            daemon::run_from_config_file(config.clone())
                .await
                .map_err(|e| chain(&e))
        }),
        Command::Demo => block_on(async { demo::run().await.map_err(|e| chain(&e)) }),
        Command::Listen {
            port,
            bind,
            secret_file,
            status,
        } => {
            let secret = match secret_file.map(std::fs::read_to_string).transpose() {
                Ok(s) => s.map(|s| config::Secret::new(s.trim().to_string())),
                Err(e) => {
                    eprintln!("error: cannot read the secret file: {e}");
                    return exit::FAILURE;
                }
            };
            block_on(async move {
                listen::run(bind, port, secret, status)
                    .await
                    .map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))
            })
        }
        Command::Mark {
            status,
            site,
            id,
            message,
            deployer,
            status_text,
            progress,
            ..
        } => {
            let fields = mark::Fields {
                id,
                deployer,
                message,
                status_text,
                progress,
            };
            match mark::mark(&config, &site, status, fields) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: {}", chain(&e));
                    exit::FAILURE
                }
            }
        }
        Command::Wrap {
            site, id, command, ..
        } => match mark::wrap(&config, &site, id, &command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {}", chain(&e));
                exit::FAILURE
            }
        },
        Command::Reload { pid, .. } => {
            admin_result(admin::reload(&config, pid, &mut std::io::stdout()))
        }
        Command::Status { .. } => match admin::status(&config, &mut std::io::stdout()) {
            Ok(true) => exit::OK,
            Ok(false) => exit::NOT_RUNNING,
            Err(e) => admin_result(Err(e)),
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(
                clap_complete::Shell::from(shell),
                &mut cmd,
                "deployhook",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        Command::Man { dir } => match cmd::man::run(dir.as_deref(), &mut std::io::stdout()) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: cannot write the man pages: {e}");
                exit::FAILURE
            }
        },
        Command::Deliveries(d) => {
            let out = &mut std::io::stdout();
            admin_result(match d.command {
                Deliveries::List {
                    filter,
                    failed,
                    limit,
                } => deliveries::list(&config, &filter, failed, limit, out),
                Deliveries::Show { id } => deliveries::show(&config, &id, out),
                Deliveries::Redeliver { id } => deliveries::redeliver(&config, &id, out),
                Deliveries::Retry { id, filter } => {
                    deliveries::retry(&config, id.as_deref(), &filter, out)
                }
            })
        }
        Command::Dora {
            site,
            since,
            until,
            json,
            ..
        } => admin_result(cmd::dora::run(
            &config,
            site.as_deref(),
            Some(&since),
            until.as_deref(),
            json,
            &mut std::io::stdout(),
        )),
        Command::Publish { event, file, .. } => {
            let out = &mut std::io::stdout();
            admin_result(admin::load(&config).and_then(|c| {
                // Said before standard input is read (which would wait for it).
                client::api_of(&c)?;
                let body = admin::read_input(&file)?;
                client::publish(&c, &event, body, out)
            }))
        }
        Command::Hooks(h) => {
            let out = &mut std::io::stdout();
            match h.command {
                Hooks::List => admin_result(admin::hooks_list(&config, out)),
                Hooks::Enable { name } => admin_result(admin::hooks_enable(&config, &name, out)),
                Hooks::Add {
                    url,
                    event,
                    insecure_ssl,
                } => admin_result(
                    admin::load(&config)
                        .and_then(|c| client::hooks_add(&c, &url, &event, insecure_ssl, out)),
                ),
                Hooks::Remove { id } => admin_result(
                    admin::load(&config).and_then(|c| client::hooks_remove(&c, &id, out)),
                ),
                Hooks::Test { name } => match admin::hooks_test(&config, &name, out) {
                    Ok(true) => exit::OK,
                    Ok(false) => exit::FAILURE,
                    Err(e) => admin_result(Err(e)),
                },
            }
        }
    }
}

fn admin_result(r: Result<(), admin::Failed>) -> u8 {
    match r {
        Ok(()) => exit::OK,
        Err(admin::Failed(e)) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
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
    let result = rt.block_on(f);
    // A read stuck in the kernel (a hung mount) must not keep the process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            // Once, on stderr (the journal, under systemd).
            eprintln!("error: {}", telemetry::escape_multiline(&e));
            exit::FAILURE
        }
    }
}
