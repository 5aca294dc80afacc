//! `[[hook]]` tables: each hook's URL, events, sites, statuses, retry schedule, secret,
//! headers and format, validated into a `HookConfig`; and event names (`check_event_name`).

use std::collections::BTreeSet;
use std::time::Duration;

use super::checker::{Checker, placeholder_url};
use super::raw::RawHook;
use super::*;
use crate::model::Status;

pub(super) fn validate_hook(
    c: &mut Checker<'_>,
    i: usize,
    h: &RawHook,
    seen: &mut BTreeSet<String>,
    site_names: &BTreeSet<&str>,
    env: &Env<'_>,
    warnings: &mut Vec<String>,
) -> HookConfig {
    let key = |k: &str| format!("hook[{i}].{k}");
    let name = h.name.get_ref().clone();
    c.name(&h.name, &key("name"), &[]);
    if is_api_hook_name(&name) {
        c.at(
            h.name.span(),
            &key("name"),
            format!("{name:?} is reserved: names api-<number> belong to hooks registered through the API"),
        );
    }
    if !seen.insert(name.clone()) {
        c.at(
            h.name.span(),
            &key("name"),
            format!("duplicate hook name {name:?}"),
        );
    }
    let url = match url::Url::parse(h.url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https" | "nats" | "tls") && u.host().is_some() => u,
        Ok(_) | Err(_) => {
            c.at(
                h.url.span(),
                &key("url"),
                "must be an absolute http:// or https:// URL (or nats:// / tls:// for NATS JetStream)",
            );
            placeholder_url()
        }
    };
    let events = events_of(c, h, &key);
    c.known_sites(h.sites.as_ref(), &key("sites"), site_names);
    let statuses = statuses_of(c, h, &key);
    let (format, cloudevents_mode, template) = super::formats::hook_format(c, h, &key, env);
    let github = super::formats::github_target(c, h, format, &key);
    let environment = super::formats::dora_environment(c, h, format, &key);
    let secret = super::secrets::read_secret(c, h, &key, env, &name, warnings);
    if format == Format::DatadogDora && secret.is_none() {
        let span = h.format.as_ref().map_or(0..0, |f| f.span());
        c.at(
            span,
            &key("secret_file"),
            "format = \"datadog-dora\" needs the Datadog API key in secret_file or secret_env (sent as DD-API-KEY)",
        );
    }
    if github.is_some() && secret.is_none() {
        let span = h.format.as_ref().map_or(0..0, |f| f.span());
        c.at(
            span,
            &key("secret_file"),
            "format = \"github-deployments\" needs the API token in secret_file or secret_env",
        );
    }
    if let (Some(_), Some(s)) = (&github, &h.signature)
        && s.get_ref() != "none"
    {
        c.at(
            s.span(),
            &key("signature"),
            "a github-deployments hook's secret is its API token: it signs nothing",
        );
    }
    let nats = super::nats::nats_target(c, h, &url, format, &key);
    if let (Some(_), Some(s)) = (&nats, &h.signature)
        && s.get_ref() != "none"
    {
        c.at(
            s.span(),
            &key("signature"),
            "a NATS hook's secret is its connection credential (creds, nkey seed or token): it signs nothing",
        );
    }
    let signature = signature_of(
        c,
        h,
        &key,
        secret.as_ref(),
        github.is_some() || nats.is_some() || environment.is_some(),
    );
    let insecure_ssl = h.insecure_ssl.unwrap_or(false);
    if insecure_ssl {
        warnings.push(format!(
            "hook {name}: insecure_ssl = true: TLS certificates of {} are NOT verified",
            url.host_str().unwrap_or("?")
        ));
    }
    let timeout = c.duration(&h.timeout, &key("timeout"), Duration::from_secs(10));
    let retry = retry_of(c, &h.retry, &key("retry"));
    let mut headers = headers_of(c, h, &key, &url);
    // A DORA tool's secret is its API key, sent as a header of the hook's own (so it is
    // recorded as `***`, like any of them).
    if let Some(s) = &secret {
        let header = match format {
            Format::Devlake => Some(("Authorization", format!("Bearer {}", s.first()))),
            Format::DatadogDora => Some(("DD-API-KEY", s.first().to_string())),
            _ => None,
        };
        if let Some((name, value)) = header {
            if http::HeaderValue::from_str(&value).is_err() {
                let span = h.format.as_ref().map_or(0..0, |f| f.span());
                c.at(
                    span,
                    &key("secret_file"),
                    "the API key is not a valid header value (control characters or non-ASCII)",
                );
            }
            headers.push((name.to_string(), value));
        }
    }
    let failing_after = match &h.failing_after {
        None => DEFAULT_FAILING_AFTER,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(n @ 1..=1000) => n,
            _ => {
                c.at(
                    n.span(),
                    &key("failing_after"),
                    "must be 1 to 1000 attempts",
                );
                DEFAULT_FAILING_AFTER
            }
        },
    };
    let disable_after = h
        .disable_after
        .as_ref()
        .map(|d| c.duration(&Some(d.clone()), &key("disable_after"), Duration::MAX));
    HookConfig {
        name,
        url,
        events,
        sites: h.sites.as_ref().map(|s| s.get_ref().clone()),
        hosts: h.hosts.as_ref().map(|s| s.get_ref().clone()),
        statuses,
        format,
        cloudevents_mode,
        template,
        github,
        nats,
        chain: None,
        secret,
        signature,
        insecure_ssl,
        timeout,
        retry,
        headers,
        public_only: false,
        environment,
        failing_after,
        disable_after,
    }
}

/// A known event, a custom name, or an error: a name a small edit away from a known one
/// (`PostDeployments`, `postdeploy`, `StatusChange`) is almost surely a typo, and a hook
/// with it would never fire.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if is_known_event(name) {
        return Ok(());
    }
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(format!(
            "{:?} is not an event name (1 to 100 printable characters)",
            crate::model::cap_text(name, 40)
        ));
    }
    let lower = name.to_ascii_lowercase();
    for known in KNOWN_EVENTS {
        let k = known.to_ascii_lowercase();
        let near = strsim::levenshtein(&lower, &k) <= 3
            || (lower.len() >= 4 && (k.starts_with(&lower) || lower.starts_with(&k)));
        if near {
            return Err(format!(
                "unknown event {name:?}: did you mean \"{known}\"? (a custom event name must not be this close to a known one)"
            ));
        }
    }
    Ok(())
}

/// The hook's `events` (default `PostDeployment`), each checked.
fn events_of(c: &mut Checker<'_>, h: &RawHook, key: &dyn Fn(&str) -> String) -> Vec<String> {
    h.events.as_ref().map_or_else(
        || vec!["PostDeployment".to_string()],
        |e| {
            if e.get_ref().is_empty() {
                c.at(e.span(), &key("events"), "must name at least one event");
            }
            for name in e.get_ref() {
                if let Err(why) = check_event_name(name) {
                    c.at(e.span(), &key("events"), why);
                }
            }
            e.get_ref().clone()
        },
    )
}

/// The hook's `statuses` filter, each a known status.
fn statuses_of(
    c: &mut Checker<'_>,
    h: &RawHook,
    key: &dyn Fn(&str) -> String,
) -> Option<Vec<Status>> {
    h.statuses.as_ref().map(|st| {
        st.get_ref()
            .iter()
            .filter_map(|s| {
                let parsed = Status::parse(s);
                if parsed.is_none() {
                    c.at(
                        st.span(),
                        &key("statuses"),
                        format!("unknown status {s:?}: use pending, building, deploying, success or failed"),
                    );
                }
                parsed
            })
            .collect()
    })
}

/// How the hook signs: its `signature` (default `standard` with a secret), none for a
/// GitHub Deployments or NATS hook (`unsigned`, whose secret is a credential); a `whsec_`
/// secret must be base64.
fn signature_of(
    c: &mut Checker<'_>,
    h: &RawHook,
    key: &dyn Fn(&str) -> String,
    secret: Option<&Secret>,
    unsigned: bool,
) -> SignatureKind {
    let signature = match h
        .signature
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        _ if unsigned => SignatureKind::None,
        None => {
            if secret.is_some() {
                SignatureKind::Standard
            } else {
                SignatureKind::None
            }
        }
        Some(("none", _)) => SignatureKind::None,
        Some((kind @ ("standard" | "github"), span)) => {
            if secret.is_none() {
                c.at(
                    span,
                    &key("signature"),
                    format!("signature {kind:?} needs secret_file or secret_env"),
                );
            }
            if kind == "standard" {
                SignatureKind::Standard
            } else {
                SignatureKind::Github
            }
        }
        Some((other, span)) => {
            c.at(
                span,
                &key("signature"),
                format!("unknown signature {other:?}: use standard, github or none"),
            );
            SignatureKind::None
        }
    };
    if let Some(s) = secret
        && signature == SignatureKind::Standard
    {
        use base64::Engine;
        let bad = s.keys().any(|k| {
            k.strip_prefix("whsec_").is_some_and(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .is_err()
            })
        });
        if bad {
            let span = h
                .secret_file
                .as_ref()
                .or(h.secret_env.as_ref())
                .map_or(0..0, |v| v.span());
            c.at(
                span,
                &key("secret"),
                "a whsec_ secret must be base64 after the prefix",
            );
        }
    }
    signature
}

/// A retry schedule (default `DEFAULT_RETRY`), each a duration: a hook's, `[otlp]`'s.
pub(super) fn retry_of(
    c: &mut Checker<'_>,
    retry: &Option<toml::Spanned<Vec<String>>>,
    key: &str,
) -> Vec<Duration> {
    match retry {
        None => DEFAULT_RETRY
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
        Some(r) => r
            .get_ref()
            .iter()
            .filter_map(|d| {
                let parsed = crate::model::parse_duration(d).ok();
                if parsed.is_none() {
                    c.at(
                        r.span(),
                        key,
                        format!(
                            "{d:?} is not a duration: write e.g. retry = [\"10s\", \"1m\", \"10m\"]"
                        ),
                    );
                }
                parsed
            })
            .collect(),
    }
}

/// The hook's own `headers`, each a valid name and value; an `Authorization` header
/// beside URL credentials is an error.
fn headers_of(
    c: &mut Checker<'_>,
    h: &RawHook,
    key: &dyn Fn(&str) -> String,
    url: &url::Url,
) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if let Some(hs) = &h.headers {
        for (k, v) in hs.get_ref() {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                c.at(
                    hs.span(),
                    &key("headers"),
                    format!("{k:?} is not a valid header name"),
                );
            } else if http::HeaderValue::from_str(v).is_err() {
                // The value may be a credential: it is not quoted.
                c.at(
                    hs.span(),
                    &key("headers"),
                    format!("the value of {k:?} is not a valid header value (control characters or non-ASCII)"),
                );
            }
            if k.eq_ignore_ascii_case("authorization")
                && (!url.username().is_empty() || url.password().is_some())
            {
                c.at(
                    hs.span(),
                    &key("headers"),
                    "an Authorization header and user:pass@ in the url both set the credentials: keep one",
                );
            }
            headers.push((k.clone(), v.clone()));
        }
    }
    headers
}
