//! Test support: a hermetic environment, git helpers, the receiver, the daemon process
//! and each tool's deploy, done with the tool's own file operations.

// Helpers are shared by the topic files; not every topic uses each one.
#![allow(dead_code)]

/// Polls `$cond` until it holds or 10 s pass; then panics with `$what`.
macro_rules! eventually {
    ($cond:expr, $($what:tt)+) => {
        $crate::support::env::wait_until(|| $cond, std::time::Duration::from_secs(10), || format!($($what)+))
    };
}

pub mod api;
pub mod daemon;
pub mod deploy;
pub mod env;
pub mod git;
pub mod github;
pub mod nats;
pub mod netns;
pub mod python;
pub mod receiver;
pub mod sites;
pub mod tools;
