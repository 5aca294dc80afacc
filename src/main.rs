//! The `deployhook` binary: parse the command line, run it, map the result to an exit
//! code. Everything else lives in the library.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    // At most two malloc arenas: glibc gives each thread that allocates its own (up to
    // eight per core), and what every short-lived read on the blocking pool freed stays
    // held in them.
    #[cfg(target_env = "gnu")]
    // SAFETY: called first, before any other thread exists; it only sets a malloc
    // tunable.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = deployhook::cli::Cli::parse();
    std::process::ExitCode::from(deployhook::run(cli))
}
