//! The `deployhook` binary: parse the command line, run it, map the result to an exit
//! code. Everything else lives in the library.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = deployhook::cli::Cli::parse();
    std::process::ExitCode::from(deployhook::run(cli))
}
