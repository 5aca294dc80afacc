//! `[[source]]` (relay mode, issue 13): a central deployhook consumes a fleet's events
//! from a NATS JetStream stream (`kind = "nats"`, `url`, `stream`, `durable` consumer
//! name; the secret is the connection's credential) and treats each as an event of its
//! own.

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{Env, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Unique name; letters, digits, `-` and `_` only.
    pub name: Spanned<String>,
    /// `nats` (the only kind).
    pub kind: Spanned<String>,
    /// `nats://host:4222` or `tls://…`.
    pub url: Spanned<String>,
    /// The JetStream stream the fleet's edges publish into.
    pub stream: Spanned<String>,
    /// The name the relay keeps its position in the stream under (its first start takes
    /// over an existing durable consumer's of that name).
    pub durable: Spanned<String>,
    /// File holding the credential (a `.creds` file, an nkey seed, or a token).
    pub secret_file: Option<Spanned<String>>,
    /// Environment variable holding the credential.
    pub secret_env: Option<Spanned<String>>,
    /// Which dot-separated token of a message's subject names the edge that published
    /// it (1-based). Default 2, the edges' default subject
    /// `deployhook.{hostName}.{siteName}.{event}`. A message whose `hostName` is not that
    /// token is skipped: per-edge publish permissions then stop one edge reporting as
    /// another. 0 turns the check off.
    pub host_token: Option<Spanned<i64>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    pub name: String,
    pub url: url::Url,
    pub stream: String,
    pub durable: String,
    pub secret: Option<Secret>,
    /// The subject token naming the publishing edge (1-based; 0: not checked).
    pub host_token: usize,
}

pub(super) fn validate_sources(
    c: &mut Checker<'_>,
    raw: &[RawSource],
    env: &Env<'_>,
    warnings: &mut Vec<String>,
) -> Vec<SourceConfig> {
    let mut names = std::collections::BTreeSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let key = |k: &str| format!("source[{i}].{k}");
            c.name(&r.name, &key("name"), &[]);
            if !names.insert(r.name.get_ref().clone()) {
                c.at(
                    r.name.span(),
                    &key("name"),
                    format!("duplicate source name {:?}", r.name.get_ref()),
                );
            }
            if r.kind.get_ref() != "nats" {
                c.at(
                    r.kind.span(),
                    &key("kind"),
                    format!("unknown kind {:?}: use nats", r.kind.get_ref()),
                );
            }
            let url = match url::Url::parse(r.url.get_ref()) {
                Ok(u) if matches!(u.scheme(), "nats" | "tls") && u.host().is_some() => u,
                _ => {
                    c.at(
                        r.url.span(),
                        &key("url"),
                        "must be nats://host:port or tls://host:port",
                    );
                    super::checker::placeholder_url()
                }
            };
            c.name(&r.stream, &key("stream"), &[]);
            c.name(&r.durable, &key("durable"), &[]);
            let owner = format!("source {}", r.name.get_ref());
            let secret = super::secrets::secret_of(
                c,
                (&r.secret_file, &r.secret_env),
                &key,
                env,
                &owner,
                warnings,
            );
            let host_token = match &r.host_token {
                None => 2,
                Some(n) => match usize::try_from(*n.get_ref()) {
                    Ok(0) => {
                        warnings.push(format!(
                            "{owner}: host_token = 0: an edge's hostName is not checked against its subject, so any edge may report as another"
                        ));
                        0
                    }
                    Ok(n) if n <= 16 => n,
                    _ => {
                        c.at(
                            n.span(),
                            &key("host_token"),
                            format!("{} is not a subject token position from 0 to 16", n.get_ref()),
                        );
                        2
                    }
                },
            };
            SourceConfig {
                name: r.name.get_ref().clone(),
                url,
                stream: r.stream.get_ref().clone(),
                durable: r.durable.get_ref().clone(),
                secret,
                host_token,
            }
        })
        .collect()
}
