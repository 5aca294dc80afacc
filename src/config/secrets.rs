//! Secrets: the `Secret` newtype (prints `***`), reading a hook's secret from a file or
//! the environment, and URLs redacted for display.

use std::fmt;

use super::Env;
use super::checker::Checker;
use super::raw::RawHook;

/// A signing secret. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The text of the secret, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secrets a secret file holds, one per line, newest first (key rotation):
    /// blank lines and surrounding white space are not part of them.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.lines().map(str::trim).filter(|l| !l.is_empty())
    }

    /// The newest secret (the first line).
    pub fn first(&self) -> &str {
        self.keys().next().unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL as it may be shown or logged: no `user:pass@`, and every query value `***`
/// (`?token=…` is a credential as often as not); names of query keys are kept.
pub fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.set_query(None);
        if !keys.is_empty() {
            let mut q = u.query_pairs_mut();
            for k in keys {
                q.append_pair(&k, "***");
            }
        }
    }
    u.to_string()
}

/// The hook's signing secret, from `secret_file` or `secret_env` (never inline). A
/// secret file readable by every user is a warning; an empty or unreadable one an error.
pub(super) fn read_secret(
    c: &mut Checker<'_>,
    h: &RawHook,
    key: &dyn Fn(&str) -> String,
    env: &Env<'_>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<Secret> {
    let owner = format!("hook {name}");
    secret_of(
        c,
        (&h.secret_file, &h.secret_env),
        key,
        env,
        &owner,
        warnings,
    )
}

/// A secret from `secret_file` or `secret_env` (at most one of them), for `owner`.
pub(super) fn secret_of(
    c: &mut Checker<'_>,
    (file, var): (
        &Option<toml::Spanned<String>>,
        &Option<toml::Spanned<String>>,
    ),
    key: &dyn Fn(&str) -> String,
    env: &Env<'_>,
    owner: &str,
    warnings: &mut Vec<String>,
) -> Option<Secret> {
    match (file, var) {
        (Some(f), Some(_)) => {
            c.at(
                f.span(),
                &key("secret_file"),
                "set secret_file or secret_env, not both",
            );
            None
        }
        (Some(f), None) => read_secret_file(c, f, &key("secret_file"), env, owner, warnings),
        (None, Some(v)) => match (env.read_env)(v.get_ref()) {
            Some(s) if !s.trim().is_empty() => Some(Secret::new(s.trim().to_string())),
            _ => {
                c.at(
                    v.span(),
                    &key("secret_env"),
                    format!("environment variable {} is not set or empty", v.get_ref()),
                );
                None
            }
        },
        (None, None) => None,
    }
}

/// What stands for a systemd credential that only the service can read (`check` run
/// by hand): present, its content unknown.
pub(super) const UNCHECKED_CREDENTIAL: &str = "unchecked systemd credential";

/// A secret from a file (a hook's `secret_file`, the API's `token_file`). A relative
/// path names a systemd credential (`LoadCredential=NAME:…`), read from
/// `$CREDENTIALS_DIRECTORY`. A file readable by every user is a warning; an empty or
/// unreadable one an error. `owner` names what the secret is for, in warnings.
pub(super) fn read_secret_file(
    c: &mut Checker<'_>,
    f: &toml::Spanned<String>,
    key: &str,
    env: &Env<'_>,
    owner: &str,
    warnings: &mut Vec<String>,
) -> Option<Secret> {
    let given = std::path::PathBuf::from(f.get_ref());
    let path = match (&env.credentials_directory, given.is_absolute()) {
        (_, true) => given,
        (Some(dir), false) => dir.join(&given),
        (None, false) if env.credentials_unchecked => {
            warnings.push(format!(
                "{owner}: {key} {:?} names a systemd credential (LoadCredential=), which only the service can read; not checked here",
                f.get_ref()
            ));
            return Some(Secret::new(UNCHECKED_CREDENTIAL));
        }
        (None, false) => {
            c.at(
                f.span(),
                key,
                format!(
                    "{:?} is relative: use an absolute path, or a credential name with systemd's LoadCredential= (read from $CREDENTIALS_DIRECTORY, which is not set)",
                    f.get_ref()
                ),
            );
            return None;
        }
    };
    match (env.read_file)(&path) {
        Ok(s) if !s.trim().is_empty() => {
            if (env.mode_of)(&path).is_some_and(|m| m & 0o004 != 0) {
                warnings.push(format!(
                    "{owner}: {} is readable by every user; chmod 600 it",
                    path.display()
                ));
            }
            Some(Secret::new(s.trim().to_string()))
        }
        Ok(_) => {
            c.at(f.span(), key, format!("{} is empty", path.display()));
            None
        }
        Err(e) => {
            c.at(
                f.span(),
                key,
                format!("cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}
