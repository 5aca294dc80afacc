//! The daemon's side of the API's listener: its settings and limits from the config, the
//! open files limit raised for it, and what a reload does to it (`follow_api`): `[api]`
//! dropped closes it at once, a new address binds while the old one serves, a bind that
//! fails refuses the reload — never a listener whose rules no longer match the config.

use tokio::sync::watch as channel;

use crate::api::{self, ApiHandle};
use crate::config::{self, Config};
use crate::store::Store;
use crate::telemetry::chain;

fn api_limits(a: &config::ApiConfig) -> api::Limits {
    api::Limits {
        max_connections: a.max_connections,
        header_timeout: a.header_timeout,
        request_timeout: a.request_timeout,
    }
}

/// Raises the soft limit of open files to the hard limit (systemd gives 1024 soft): a
/// crowd of connections must not leave site reads without descriptors.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise the open files limit");
        }
    }
}

fn api_settings(config: &Config) -> api::Settings {
    api::Settings {
        token: config.api.as_ref().and_then(|a| a.token.clone()),
        allow_private_targets: config.api.as_ref().is_some_and(|a| a.allow_private_targets),
        host_name: config.daemon.host_name.clone(),
        callback_base: config.callback_base(),
        max_hooks: config
            .api
            .as_ref()
            .map_or(config::types::DEFAULT_API_MAX_HOOKS, |a| a.max_hooks),
        max_publish_bytes: config
            .api
            .as_ref()
            .map_or(config::types::DEFAULT_API_MAX_PUBLISH_BYTES, |a| {
                a.max_publish_bytes
            }),
        max_queue_bytes: config
            .api
            .as_ref()
            .map_or(config::types::DEFAULT_API_MAX_QUEUE_BYTES, |a| {
                a.max_queue_bytes
            }),
    }
}

/// After a reload: the new token and settings apply at once (`follow_api` has already
/// moved, opened or closed the listener).
pub(super) fn reconfigure_api(api: Option<&ApiHandle>, config: &Config) {
    if let Some(a) = api {
        a.settings.send_replace(api_settings(config));
    }
}

/// Binds `a` and serves the API under `config`'s settings and limits.
pub(super) async fn start_api(
    a: &config::ApiConfig,
    config: &Config,
    store: &Store,
    shutdown: &channel::Receiver<bool>,
) -> Result<ApiHandle, api::ApiError> {
    api::start(
        &a.listen,
        store,
        api_settings(config),
        api_limits(a),
        shutdown.clone(),
    )
    .await
}

/// Makes the running API what the reloaded `config` says, before anything else of the
/// reload applies: `[api]` dropped closes the listener now; a new `listen` or new limits
/// close the old one and bind the new; `[api]` added binds. A bind that fails reopens
/// the old listener and refuses the reload (the old config stays), saying why.
pub(super) async fn follow_api(
    api: &mut Option<ApiHandle>,
    old: &Config,
    config: &Config,
    store: &Store,
    shutdown: &channel::Receiver<bool>,
) -> Result<(), String> {
    let wanted = config.api.as_ref().map(|a| (&a.listen, api_limits(a)));
    let running = api.as_ref().map(|a| (&a.listen, a.configured));
    if wanted == running {
        return Ok(());
    }
    let Some(new) = &config.api else {
        close_api(api).await;
        return Ok(());
    };
    // The new listener first, the old one still serving: a bind that fails leaves it
    // untouched. Only where the two want the same address is the old one closed first.
    let opened = match start_api(new, config, store, shutdown).await {
        Ok(handle) => handle,
        Err(e) if same_address(api.as_ref(), &new.listen) => {
            tracing::debug!(error = %chain(&e), "the new API address is the running one's: closing that first");
            close_api(api).await;
            match start_api(new, config, store, shutdown).await {
                Ok(handle) => handle,
                Err(e) => {
                    let why = chain(&e);
                    if let Some(prev) = &old.api {
                        match start_api(prev, old, store, shutdown).await {
                            Ok(handle) => {
                                let _ = handle.ready.send(true);
                                *api = Some(handle);
                            }
                            Err(e) => {
                                tracing::error!(error = %chain(&e), "the API cannot listen again where it did: it is down until a reload or restart")
                            }
                        }
                    }
                    return Err(why);
                }
            }
        }
        Err(e) => return Err(chain(&e)),
    };
    close_api(api).await;
    let _ = opened.ready.send(true);
    *api = Some(opened);
    Ok(())
}

/// Closes the running API's listener, if any, and waits until its socket is released.
async fn close_api(api: &mut Option<ApiHandle>) {
    if let Some(a) = api.take() {
        let listen = a.listen.to_string();
        a.shut().await;
        tracing::info!(listen = %listen, "API listener closed (the reloaded config drops or moves it)");
    }
}

/// Whether binding `new` may fail only because `old` holds it: the same port (any IP,
/// so `0.0.0.0:P` and `127.0.0.1:P` conflict) or the same socket path.
fn same_address(old: Option<&ApiHandle>, new: &config::Listen) -> bool {
    let Some(old) = old else {
        return false;
    };
    match (&old.listen, new) {
        (config::Listen::Tcp(_), config::Listen::Tcp(b)) => {
            b.port() != 0 && old.bound.is_some_and(|a| a.port() == b.port())
        }
        (config::Listen::Unix(a), config::Listen::Unix(b)) => a == b,
        _ => false,
    }
}

/// The file in the state directory that says where the running API listens (the address
/// really bound: a `listen` port 0 picks one), for `status` and the CLI's API client.
pub const ADDRESS_FILE: &str = "api.address";

/// Writes (or, without an API, removes) `ADDRESS_FILE`, atomically.
pub fn record_address(state_dir: &std::path::Path, api: Option<&ApiHandle>) {
    let path = state_dir.join(ADDRESS_FILE);
    let Some(addr) = api.and_then(|a| a.bound) else {
        let _ = std::fs::remove_file(&path);
        return;
    };
    let tmp = state_dir.join(format!(".{ADDRESS_FILE}.tmp"));
    let written =
        std::fs::write(&tmp, format!("{addr}\n")).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write {ADDRESS_FILE}: `status` and the CLI will not see the API's address");
    }
}
