//! `[api]`: where the HTTP API listens, its token, and whether hooks registered through
//! it may target private addresses.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::checker::Checker;
use super::raw::RawApi;
use super::secrets::read_secret_file;
use super::types::{
    DEFAULT_API_HEADER_TIMEOUT, DEFAULT_API_MAX_CONNECTIONS, DEFAULT_API_MAX_HOOKS,
    DEFAULT_API_MAX_PUBLISH_BYTES, DEFAULT_API_MAX_QUEUE_BYTES, DEFAULT_API_REQUEST_TIMEOUT,
};
use super::{ApiConfig, DEFAULT_API_LISTEN, Env, Listen};

pub(super) fn validate_api(
    c: &mut Checker<'_>,
    a: &RawApi,
    env: &Env<'_>,
    warnings: &mut Vec<String>,
) -> ApiConfig {
    let default = Listen::Tcp(SocketAddr::from(DEFAULT_API_LISTEN));
    let listen = match &a.listen {
        None => default,
        Some(l) => match parse_listen(l.get_ref()) {
            Ok(listen) => listen,
            Err(why) => {
                c.at(l.span(), "api.listen", why);
                default
            }
        },
    };
    let token = a
        .token_file
        .as_ref()
        .and_then(|f| read_secret_file(c, f, "api.token_file", env, "api", warnings));
    if let Listen::Tcp(addr) = &listen
        && !addr.ip().is_loopback()
        && a.token_file.is_none()
    {
        let span = a.listen.as_ref().map_or(0..0, |l| l.span());
        c.at(
            span,
            "api.listen",
            format!("{addr} is not a loopback address: set api.token_file, so that only clients with the token are served"),
        );
    }
    if token.is_none() && a.token_file.is_none() && matches!(listen, Listen::Tcp(_)) {
        warnings.push(format!(
            "api: {listen} has no token_file: every local user can register hooks and publish events"
        ));
    }
    let public_url = a
        .public_url
        .as_ref()
        .and_then(|u| match url::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            _ => {
                c.at(
                    u.span(),
                    "api.public_url",
                    "must be an absolute http:// or https:// URL",
                );
                None
            }
        });
    let allow_private_targets = a.allow_private_targets.unwrap_or(false);
    if allow_private_targets {
        warnings.push(
            "api: allow_private_targets = true: hooks registered through the API may call loopback and private addresses"
                .to_string(),
        );
    }
    let max_connections = count(
        c,
        &a.max_connections,
        "api.max_connections",
        1..=65_536,
        DEFAULT_API_MAX_CONNECTIONS as u64,
    ) as usize;
    let max_hooks = count(
        c,
        &a.max_hooks,
        "api.max_hooks",
        0..=100_000,
        DEFAULT_API_MAX_HOOKS as u64,
    ) as usize;
    let max_publish_bytes = count(
        c,
        &a.max_publish_bytes,
        "api.max_publish_bytes",
        1..=(1024 * 1024),
        DEFAULT_API_MAX_PUBLISH_BYTES as u64,
    ) as usize;
    let max_queue_bytes = count(
        c,
        &a.max_queue_bytes,
        "api.max_queue_bytes",
        1024..=(1 << 40),
        DEFAULT_API_MAX_QUEUE_BYTES,
    );
    let header_timeout = c.duration(
        &a.header_timeout,
        "api.header_timeout",
        DEFAULT_API_HEADER_TIMEOUT,
    );
    let request_timeout = c.duration(
        &a.request_timeout,
        "api.request_timeout",
        DEFAULT_API_REQUEST_TIMEOUT,
    );
    ApiConfig {
        listen,
        token,
        public_url,
        allow_private_targets,
        max_connections,
        header_timeout,
        request_timeout,
        max_hooks,
        max_publish_bytes,
        max_queue_bytes,
    }
}

/// A whole number in `range`, or the default with an error naming the key.
fn count(
    c: &mut Checker<'_>,
    v: &Option<toml::Spanned<i64>>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> u64 {
    let Some(n) = v else {
        return default;
    };
    match u64::try_from(*n.get_ref()) {
        Ok(x) if range.contains(&x) => x,
        _ => {
            c.at(
                n.span(),
                key,
                format!(
                    "{} is out of range: write a whole number from {} to {} (e.g. {default})",
                    n.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or `unix:/absolute/path`.
pub fn parse_listen(text: &str) -> Result<Listen, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        let p = PathBuf::from(path);
        if !p.is_absolute() {
            return Err(format!(
                "{text:?}: the socket path must be absolute (unix:/run/deployhook/api.sock)"
            ));
        }
        return Ok(Listen::Unix(p));
    }
    text.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
        format!("{text:?} is not an address: write IP:PORT (127.0.0.1:8791, [::1]:8791) or unix:/path/to.sock")
    })
}
