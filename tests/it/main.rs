//! The one integration-test binary: the real `deployhook` binary against real temp
//! dirs, real git repositories and a real loopback receiver.

#[macro_use]
mod support;

mod api;
mod api_bounds;
mod api_cli;
mod api_history;
mod api_readme;
mod api_schema;
mod bad_input;
mod chains;
mod check;
mod commits;
mod console;
mod delivery;
mod delivery_cli;
mod delivery_http;
mod demo;
mod docs;
mod dora;
mod dora_formats;
mod formats;
mod git_layout;
mod github;
mod glitches;
mod hostile;
mod hot_reload;
mod idle;
mod kudu;
mod limits;
mod marker;
mod nats;
mod nats_cluster;
mod notify;
mod ops_events;
mod otlp;
mod readme_formats;
mod real_tools;
mod recipes;
mod relay;
mod releases;
mod reload;
mod templates;
mod tidy;
mod troubleshooting;
mod watching;
