//! `[otlp]`: where every finished deployment goes as an OpenTelemetry span (OTLP/HTTP,
//! protobuf). It runs as a hook named `otlp` (format `otlp`), so its export is durable
//! like any hook's: from the outbox, retried, never blocking a read.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::checker::{Checker, placeholder_url};
use super::*;

/// The name the `[otlp]` export runs under.
pub const OTLP_HOOK: &str = "otlp";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// The collector's OTLP/HTTP endpoint, e.g. `http://127.0.0.1:4318` (spans go to
    /// `/v1/traces` under it, as `OTEL_EXPORTER_OTLP_ENDPOINT` says), or the full URL
    /// ending in `/v1/traces`.
    pub endpoint: Spanned<String>,
    /// File holding the request headers (credentials), `name=value` separated by commas
    /// or lines, as `OTEL_EXPORTER_OTLP_HEADERS` writes them. A relative path names a
    /// systemd credential.
    pub headers_file: Option<Spanned<String>>,
    /// Environment variable holding the headers (same form).
    pub headers_env: Option<Spanned<String>>,
    /// `deployment.environment.name` of every span. Default `production`.
    pub environment: Option<Spanned<String>>,
    /// Only these sites' deployments. Default: all.
    pub sites: Option<Spanned<Vec<String>>>,
    /// Time limit of one export. Default `10s`.
    pub timeout: Option<Spanned<String>>,
    /// Delays between attempts. Default: a hook's.
    pub retry: Option<Spanned<Vec<String>>>,
    /// Accept any TLS certificate (logged loudly at start-up). Default false.
    pub insecure_ssl: Option<bool>,
}

/// The headers of a secret in `OTEL_EXPORTER_OTLP_HEADERS` form: `name=value` pairs
/// separated by commas or lines (values percent-decoded). `Err` names the bad entry's
/// position, never its text (a credential).
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, entry) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let bad = || {
            format!(
                "entry {} is not name=value with a valid header name and value",
                n + 1
            )
        };
        let (name, value) = entry.split_once('=').ok_or_else(bad)?;
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| bad())?
            .into_owned();
        let name = name.trim().to_string();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(&value).is_err()
        {
            return Err(bad());
        }
        out.push((name, value));
    }
    Ok(out)
}

pub(super) fn validate_otlp(
    c: &mut Checker<'_>,
    o: &RawOtlp,
    site_names: &BTreeSet<&str>,
    env: &Env<'_>,
    warnings: &mut Vec<String>,
) -> HookConfig {
    let key = |k: &str| match k {
        "secret_file" => "otlp.headers_file".to_string(),
        "secret_env" => "otlp.headers_env".to_string(),
        k => format!("otlp.{k}"),
    };
    let url = match url::Url::parse(o.endpoint.get_ref()) {
        Ok(mut u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if !u.path().ends_with("/v1/traces") {
                let path = format!("{}/v1/traces", u.path().trim_end_matches('/'));
                u.set_path(&path);
            }
            u
        }
        _ => {
            c.at(
                o.endpoint.span(),
                &key("endpoint"),
                "must be an http:// or https:// URL, e.g. http://127.0.0.1:4318",
            );
            placeholder_url()
        }
    };
    let secret = super::secrets::secret_of(
        c,
        (&o.headers_file, &o.headers_env),
        &key,
        env,
        "[otlp]",
        warnings,
    );
    if let Some(s) = &secret
        && s.expose() != super::secrets::UNCHECKED_CREDENTIAL
        && let Err(why) = parse_headers(s.expose())
    {
        let span = o
            .headers_file
            .as_ref()
            .or(o.headers_env.as_ref())
            .map_or(0..0, |v| v.span());
        c.at(span, &key("headers_file"), why);
    }
    c.known_sites(o.sites.as_ref(), &key("sites"), site_names);
    let insecure_ssl = o.insecure_ssl.unwrap_or(false);
    if insecure_ssl {
        warnings.push(format!(
            "[otlp]: insecure_ssl = true: TLS certificates of {} are NOT verified",
            url.host_str().unwrap_or("?")
        ));
    }
    let timeout = c.duration(&o.timeout, &key("timeout"), Duration::from_secs(10));
    let retry = super::hooks::retry_of(c, &o.retry, &key("retry"));
    // The headers go as the hook's own: sent with every export, recorded as `***`.
    let headers = secret
        .as_ref()
        .and_then(|s| parse_headers(s.expose()).ok())
        .unwrap_or_default();
    HookConfig {
        events: vec!["PostDeployment".to_string()],
        headers,
        sites: o.sites.as_ref().map(|s| s.get_ref().clone()),
        format: Format::Otlp,
        secret,
        insecure_ssl,
        timeout,
        retry,
        environment: Some(
            o.environment
                .as_ref()
                .map_or("production".to_string(), |e| e.get_ref().clone()),
        ),
        ..HookConfig::new(OTLP_HOOK, url)
    }
}
