//! The commands beside the daemon (`cli.rs` parses them, `lib.rs` runs them): `admin`
//! (`status`, `reload`, `deliveries`, `hooks list|test|enable`: the outbox read
//! directly), `client` (the CLI's HTTP client of the running daemon's API: `hooks add`,
//! `hooks remove`, `publish`), `check`, `demo`, `listen` (a loopback receiver) and `mark`
//! (`mark` and `wrap`, the marker layout's writers). Commands may import any stage; no
//! stage imports a command.

pub mod admin;
pub mod check;
pub mod client;
pub mod deliveries;
pub mod demo;
pub mod dora;
pub mod listen;
pub mod man;
pub mod mark;
