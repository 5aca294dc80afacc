//! `[[chain]]` (SPEC §5, Docker Hub's webhook chains): hooks called one after another,
//! each only after the previous one's receiver called back `success`. Checked here: the
//! hooks exist, are `kudu` hooks, belong to one chain only (a chained hook is called
//! only by its chain), and the API has a `public_url` for the callback URLs.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{ApiConfig, Format, HookConfig};
use crate::model::Status;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    /// Unique name; letters, digits, `-` and `_` only.
    pub name: Spanned<String>,
    /// Site names whose deployments start the chain. Default: all sites.
    pub sites: Option<Spanned<Vec<String>>>,
    /// The status that starts it: `success` (default) or `failed`.
    pub on: Option<Spanned<String>>,
    /// The hooks, in order (at least one).
    pub hooks: Spanned<Vec<String>>,
    /// How long a step waits for its callback after its delivery. Default `1h`.
    pub callback_timeout: Option<Spanned<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    pub name: String,
    pub sites: Option<Vec<String>>,
    pub on: Status,
    pub hooks: Vec<String>,
    pub callback_timeout: Duration,
}

impl ChainConfig {
    pub fn wants(&self, site: &str, status: Status) -> bool {
        self.on == status
            && self
                .sites
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == site))
    }
}

/// Checks the chains against the hooks, sites and API; marks each chained hook.
pub(super) fn validate_chains(
    c: &mut Checker<'_>,
    raw: &[RawChain],
    hooks: &mut [HookConfig],
    site_names: &BTreeSet<&str>,
    api: Option<&ApiConfig>,
) -> Vec<ChainConfig> {
    let mut names = BTreeSet::new();
    let mut chains = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |k: &str| format!("chain[{i}].{k}");
        let name = r.name.get_ref().clone();
        c.name(&r.name, &key("name"), &[]);
        if !names.insert(name.clone()) {
            c.at(
                r.name.span(),
                &key("name"),
                format!("duplicate chain name {name:?}"),
            );
        }
        if api.is_none_or(|a| a.public_url.is_none()) {
            c.at(
                r.name.span(),
                &key("name"),
                "a chain needs [api] with public_url: its receivers call <public_url>/api/callbacks/<token>",
            );
        }
        let on = match r.on.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
            None | Some(("success", _)) => Status::Success,
            Some(("failed", _)) => Status::Failed,
            Some((other, span)) => {
                c.at(
                    span,
                    &key("on"),
                    format!("{other:?}: a chain starts on success or failed"),
                );
                Status::Success
            }
        };
        c.known_sites(r.sites.as_ref(), &key("sites"), site_names);
        if r.hooks.get_ref().is_empty() {
            c.at(
                r.hooks.span(),
                &key("hooks"),
                "a chain needs at least one hook",
            );
        }
        for h in r.hooks.get_ref() {
            match hooks.iter_mut().find(|x| x.name == *h) {
                None => c.at(r.hooks.span(), &key("hooks"), format!("no [[hook]] is named {h:?}")),
                Some(hook) if hook.chain.is_some() => c.at(
                    r.hooks.span(),
                    &key("hooks"),
                    format!("hook {h:?} is already in chain {:?}: a hook belongs to one chain", hook.chain.as_deref().unwrap_or("")),
                ),
                Some(hook) if hook.nats.is_some() => c.at(
                    r.hooks.span(),
                    &key("hooks"),
                    format!("hook {h:?} publishes to NATS: a chain's hooks are HTTP receivers that call back"),
                ),
                Some(hook) if hook.format != Format::Kudu => c.at(
                    r.hooks.span(),
                    &key("hooks"),
                    format!("hook {h:?} has format {:?}: a chain's hooks get the kudu object with callback_url", hook.format.as_str()),
                ),
                Some(hook) => hook.chain = Some(name.clone()),
            }
        }
        let callback_timeout = c.duration(
            &r.callback_timeout,
            &key("callback_timeout"),
            Duration::from_secs(3600),
        );
        chains.push(ChainConfig {
            name,
            sites: r.sites.as_ref().map(|s| s.get_ref().clone()),
            on,
            hooks: r.hooks.get_ref().clone(),
            callback_timeout,
        });
    }
    chains
}
