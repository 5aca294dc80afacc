//! Validation: the text of a config file to a `Config`, or every problem at once, each
//! with file, line, column and key path. No I/O but through `Env`.

use std::collections::{BTreeMap, BTreeSet};

use serde_path_to_error::Segment;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::checker::Checker;
use super::hooks::validate_hook;
use super::raw::{RawConfig, RawSite};
use super::*;

/// How many errors one run reports at most (a file of garbage has no end of them).
const MAX_ERRORS: usize = 50;

/// Deserializes the file, collecting every unknown key and every value of the wrong type
/// in one run. The file is parsed once into `toml`'s spanned tree; each `[[site]]`,
/// `[[hook]]`, `[[source]]` and `[[chain]]` table is deserialized on its own, and the
/// rest of the file as one. Serde stops at the first error: a path-tracking deserializer
/// (`serde_path_to_error`) says where it is, that key is taken out of the tree, and the
/// part is deserialized again, so every error is found. A part that cannot be mended (a
/// missing field) is dropped. A `missing field` error caused by a key taken out is not
/// reported twice. `None` when the file is not TOML at all.
fn deserialize_all(c: &mut Checker<'_>) -> Option<RawConfig> {
    let root = match DeTable::parse(c.text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            c.at(span, "(file)", e.message().trim().to_string());
            return None;
        }
    };
    let span = root.span();
    let mut top = root.into_inner();
    // The arrays of tables, each element on its own (an array's index in its key path).
    let mut arrays = BTreeMap::new();
    for name in ["site", "hook", "source", "chain"] {
        let is_array = top
            .get(name)
            .is_some_and(|v| matches!(v.get_ref(), DeValue::Array(_)));
        if is_array && let Some((_, value)) = top.remove_entry(name) {
            arrays.insert(name, value.into_inner());
        }
    }
    let mut raw: RawConfig = deserialize_part(c, "", Spanned::new(span, DeValue::Table(top)))?;
    raw.sites = elements(c, &mut arrays, "site");
    raw.hooks = elements(c, &mut arrays, "hook");
    raw.sources = elements(c, &mut arrays, "source");
    raw.chains = elements(c, &mut arrays, "chain");
    Some(raw)
}

/// Each element of the array of tables `name`, deserialized on its own; one that
/// cannot be is dropped (and counted).
fn elements<T: serde::de::DeserializeOwned>(
    c: &mut Checker<'_>,
    arrays: &mut BTreeMap<&str, DeValue<'_>>,
    name: &str,
) -> Vec<T> {
    let Some(DeValue::Array(items)) = arrays.remove(name) else {
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let part = deserialize_part(c, &format!("{name}[{i}]"), item);
            if part.is_none() {
                c.dropped_tables += 1;
            }
            part
        })
        .collect()
}

/// Deserializes one part of the file (a table, an element of an array of tables), taking
/// out each key serde stops at; `None` when what is wrong cannot be taken out.
fn deserialize_part<T: serde::de::DeserializeOwned>(
    c: &mut Checker<'_>,
    prefix: &str,
    mut value: Spanned<DeValue<'_>>,
) -> Option<T> {
    let mut taken_out: Vec<String> = Vec::new();
    for _ in 0..MAX_ERRORS {
        let e = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(
            value.clone(),
        )) {
            Ok(part) => return Some(part),
            Err(e) => e,
        };
        // `toml::Spanned`'s own fields are not keys of the file.
        let path: Vec<Segment> = e
            .path()
            .iter()
            .filter(|s| !matches!(s, Segment::Map { key } if key.starts_with("$__")))
            .cloned()
            .collect();
        let e = e.into_inner();
        let message = e.message().trim().to_string();
        // `missing field `x`` at the table a key `x` was taken out of: said already.
        let caused_by_taking_out = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
            .is_some_and(|field| {
                let mut key = path.clone();
                key.push(Segment::Map {
                    key: field.to_string(),
                });
                taken_out.contains(&key_path(prefix, &key))
            });
        let key = key_path(prefix, &path);
        let (message, meant) = with_suggestion(message);
        // A key that was meant (`pth` for `path`) is not reported missing as well.
        if let Some(meant) = meant {
            let mut at = path.clone();
            at.pop();
            at.push(Segment::Map { key: meant });
            taken_out.push(key_path(prefix, &at));
        }
        if !caused_by_taking_out {
            let span = e
                .span()
                .or_else(|| span_of(&value, &path))
                .unwrap_or_else(|| value.span());
            c.at(span, &key, message);
        }
        if !take_out(&mut value, &path) {
            return None;
        }
        taken_out.push(key);
    }
    None
}

/// serde's "unknown field `pth`, expected one of `name`, `path`, …" with "did you mean
/// `path`?" put first when one valid key is near (as for event names), and that key.
fn with_suggestion(message: String) -> (String, Option<String>) {
    let Some((head, list)) = message.split_once(", expected one of ") else {
        return (message, None);
    };
    let Some(unknown) = head
        .strip_prefix("unknown field `")
        .and_then(|u| u.strip_suffix('`'))
    else {
        return (message, None);
    };
    let near = list
        .split(", ")
        .map(|k| k.trim().trim_matches('`'))
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) || k.starts_with(unknown) && unknown.len() >= 4)
        .min_by_key(|(d, _)| *d);
    match near {
        Some((_, k)) => (
            format!("{head}: did you mean `{k}`? (expected one of {list})"),
            Some(k.to_string()),
        ),
        None => (message, None),
    }
}

/// `site[1].settle`, from the part's prefix and a path within it.
fn key_path(prefix: &str, path: &[Segment]) -> String {
    let mut key = prefix.to_string();
    for segment in path {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    if key.is_empty() {
        "(file)".to_string()
    } else {
        key
    }
}

/// The value at `path` in `value`.
fn value_at<'v, 'i>(
    value: &'v Spanned<DeValue<'i>>,
    path: &[Segment],
) -> Option<&'v Spanned<DeValue<'i>>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = match (value.get_ref(), first) {
        (DeValue::Table(t), Segment::Map { key }) => t.get(key.as_str())?,
        (DeValue::Array(a), Segment::Seq { index }) => a.get(*index)?,
        _ => return None,
    };
    value_at(next, rest)
}

/// Where the key (or value) at `path` is written.
fn span_of(value: &Spanned<DeValue<'_>>, path: &[Segment]) -> Option<std::ops::Range<usize>> {
    let (last, parent) = path.split_last()?;
    let parent = value_at(value, parent)?;
    match (parent.get_ref(), last) {
        (DeValue::Table(t), Segment::Map { key }) => {
            t.get_key_value(key.as_str()).map(|(k, _)| k.span())
        }
        (DeValue::Array(a), Segment::Seq { index }) => a.get(*index).map(Spanned::span),
        _ => None,
    }
}

/// Takes the innermost key of `path` out of `value`; false when there is none.
fn take_out(value: &mut Spanned<DeValue<'_>>, path: &[Segment]) -> bool {
    let Some(last_key) = path.iter().rposition(|s| matches!(s, Segment::Map { .. })) else {
        return false;
    };
    let mut at = value;
    for segment in &path[..last_key] {
        at = match (at.get_mut(), segment) {
            (DeValue::Table(t), Segment::Map { key }) => match t.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (DeValue::Array(a), Segment::Seq { index }) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (at.get_mut(), &path[last_key]) {
        (DeValue::Table(t), Segment::Map { key }) => t.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// Validates the text of a config file. I/O only through `env`.
pub fn parse(text: &str, file: &Path, env: &Env<'_>) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker {
        file,
        text,
        errors: Vec::new(),
        dropped_tables: 0,
    };
    let Some(raw) = deserialize_all(&mut c) else {
        let mut errors = c.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    };

    let d = &raw.daemon;
    let daemon = DaemonConfig {
        state_dir: match &d.state_dir {
            Some(s) => c.absolute(s, "daemon.state_dir"),
            None => env
                .state_directory
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/deployhook")),
        },
        host_name: d
            .host_name
            .as_ref()
            .map_or(env.host_name.clone(), |h| h.get_ref().clone()),
        resync: c.duration(&d.resync, "daemon.resync", Duration::from_secs(60)),
        history_max_age: c.duration(
            &d.history_max_age,
            "daemon.history_max_age",
            Duration::from_secs(14 * 86400),
        ),
        shutdown_timeout: c.duration(
            &d.shutdown_timeout,
            "daemon.shutdown_timeout",
            Duration::from_secs(10),
        ),
    };
    if daemon.resync.is_zero()
        && let Some(r) = &d.resync
    {
        c.at(r.span(), "daemon.resync", "must be more than zero");
    }

    let mut seen = BTreeSet::new();
    let sites: Vec<SiteConfig> = raw
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| validate_site(&mut c, i, s, &mut seen))
        .collect();
    let site_names: BTreeSet<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    if sites.is_empty() && c.dropped_tables == 0 && raw.sources.is_empty() {
        c.at(
            0..0,
            "site",
            "no [[site]] table: nothing to watch (a relay has a [[source]] instead)",
        );
    }

    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    let mut hooks: Vec<HookConfig> = raw
        .hooks
        .iter()
        .enumerate()
        .map(|(i, h)| validate_hook(&mut c, i, h, &mut seen, &site_names, env, &mut warnings))
        .collect();

    if let Some(o) = &raw.otlp {
        if seen.contains(super::otlp::OTLP_HOOK) {
            c.at(
                o.endpoint.span(),
                "otlp",
                "[otlp] runs as a hook named \"otlp\": rename the [[hook]] of that name",
            );
        }
        hooks.push(super::otlp::validate_otlp(
            &mut c,
            o,
            &site_names,
            env,
            &mut warnings,
        ));
    }
    let api = raw
        .api
        .as_ref()
        .map(|a| super::api::validate_api(&mut c, a, env, &mut warnings));
    let sources = super::sources::validate_sources(&mut c, &raw.sources, env, &mut warnings);
    let chains =
        super::chains::validate_chains(&mut c, &raw.chains, &mut hooks, &site_names, api.as_ref());

    if c.errors.is_empty() {
        Ok(Config {
            file: file.to_path_buf(),
            daemon,
            sites,
            hooks,
            chains,
            sources,
            api,
            warnings,
        })
    } else {
        // In the order of the file, as an editor walks them.
        let mut errors = c.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        Err(errors)
    }
}

fn validate_site(
    c: &mut Checker<'_>,
    i: usize,
    s: &RawSite,
    seen: &mut BTreeSet<String>,
) -> SiteConfig {
    let key = |k: &str| format!("site[{i}].{k}");
    c.name(&s.name, &key("name"), &['.']);
    if !seen.insert(s.name.get_ref().clone()) {
        c.at(
            s.name.span(),
            &key("name"),
            format!("duplicate site name {:?}", s.name.get_ref()),
        );
    }
    let layout = match s.layout.as_ref().map(|l| (l.get_ref().as_str(), l.span())) {
        None | Some(("auto", _)) => LayoutChoice::Auto,
        Some(("releases", _)) => LayoutChoice::Releases,
        Some(("kudu", _)) => LayoutChoice::Kudu,
        Some(("git", _)) => LayoutChoice::Git,
        Some(("marker", _)) => LayoutChoice::Marker,
        Some((other, span)) => {
            c.at(
                span,
                &key("layout"),
                format!("unknown layout {other:?}: use releases, kudu, git, marker or auto"),
            );
            LayoutChoice::Auto
        }
    };
    let watch = match s.watch.as_ref().map(|w| (w.get_ref().as_str(), w.span())) {
        None | Some(("inotify", _)) => WatchMode::Inotify,
        Some(("poll", _)) => WatchMode::Poll,
        Some((other, span)) => {
            c.at(
                span,
                &key("watch"),
                format!("unknown watch {other:?}: use inotify or poll"),
            );
            WatchMode::Inotify
        }
    };
    let poll_interval = c.duration(
        &s.poll_interval,
        &key("poll_interval"),
        Duration::from_secs(2),
    );
    if poll_interval.is_zero()
        && let Some(pi) = &s.poll_interval
    {
        c.at(pi.span(), &key("poll_interval"), "must be more than zero");
    }
    let health_url = s
        .health_url
        .as_ref()
        .and_then(|h| match url::Url::parse(h.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                c.at(
                    h.span(),
                    &key("health_url"),
                    "must be an absolute http:// or https:// URL",
                );
                None
            }
        });
    let health_timeout = c.duration(
        &s.health_timeout,
        &key("health_timeout"),
        Duration::from_secs(120),
    );
    let settle = c.duration(&s.settle, &key("settle"), Duration::from_secs(2));
    let idle_timeout = c.duration(
        &s.idle_timeout,
        &key("idle_timeout"),
        Duration::from_secs(600),
    );
    if let Some(it) = &s.idle_timeout
        && idle_timeout <= settle
    {
        c.at(
            it.span(),
            &key("idle_timeout"),
            "must be longer than settle",
        );
    }
    let path = c.absolute(&s.path, &key("path"));
    SiteConfig {
        name: s.name.get_ref().clone(),
        status_file: s.status_file.as_ref().map_or_else(
            || path.join(DEFAULT_STATUS_FILE),
            |f| {
                let p = PathBuf::from(f.get_ref());
                if p.is_absolute() { p } else { path.join(p) }
            },
        ),
        path,
        layout,
        repo: s.repo.as_ref().map(|r| c.absolute(r, &key("repo"))),
        branch: s.branch.as_ref().map(|b| b.get_ref().clone()),
        deployer: s.deployer.as_ref().map(|b| b.get_ref().clone()),
        settle,
        idle_timeout,
        health_url,
        health_timeout,
        watch,
        poll_interval,
        repository_url: s.repository_url.as_ref().and_then(|u| {
            match url::Url::parse(u.get_ref()) {
                Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
                    c.at(
                        u.span(),
                        &key("repository_url"),
                        "must not hold credentials: it is sent to DORA tools as written",
                    );
                    None
                }
                Ok(_) => Some(u.get_ref().clone()),
                // scp-like `git@host:owner/name.git` is how git writes many remotes.
                Err(_)
                    if u.get_ref().contains(':') && !u.get_ref().contains(char::is_whitespace) =>
                {
                    Some(u.get_ref().clone())
                }
                Err(_) => {
                    c.at(
                        u.span(),
                        &key("repository_url"),
                        "must be a URL (https://github.com/owner/name) or git@host:owner/name",
                    );
                    None
                }
            }
        }),
    }
}
