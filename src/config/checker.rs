//! `Checker`: collects every problem of a config file, each with file, line, column and
//! key path, so all are reported at once. Every room of `config` validates through it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;

pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) errors: Vec<ConfigError>,
    /// Tables left out after an error in them (so "no [[site]]" is not said as well).
    pub(super) dropped_tables: usize,
}

impl Checker<'_> {
    pub(super) fn at(
        &mut self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(s) => self.parse_duration(s, key).unwrap_or(default),
        }
    }

    fn parse_duration(&mut self, s: &Spanned<String>, key: &str) -> Option<Duration> {
        match crate::model::parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(
                    s.span(),
                    key,
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"2s\", \"10m\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn absolute(&mut self, s: &Spanned<String>, key: &str) -> PathBuf {
        let p = PathBuf::from(s.get_ref());
        if !p.is_absolute() {
            self.at(
                s.span(),
                key,
                format!("{:?} must be an absolute path", s.get_ref()),
            );
        }
        p
    }

    /// Each name in `sites` must be a `[[site]]`'s.
    pub(super) fn known_sites(
        &mut self,
        sites: Option<&Spanned<Vec<String>>>,
        key: &str,
        site_names: &BTreeSet<&str>,
    ) {
        for s in sites.map(|s| s.get_ref().as_slice()).unwrap_or_default() {
            if !site_names.contains(s.as_str()) {
                let span = sites.map_or(0..0, |s| s.span());
                self.at(span, key, format!("no [[site]] is named {s:?}"));
            }
        }
    }

    pub(super) fn name(&mut self, s: &Spanned<String>, key: &str, extra: &[char]) {
        let n = s.get_ref();
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(&c));
        if !ok {
            let allowed = if extra.is_empty() {
                "letters, digits, - and _"
            } else {
                "letters, digits, -, _ and ."
            };
            self.at(
                s.span(),
                key,
                format!("{n:?} is not a valid name: use {allowed} only"),
            );
        }
    }
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_boundary(text, offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The nearest char boundary at or before byte `i`.
pub(super) fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Stands in for an invalid URL while the remaining keys are validated (the config is
/// rejected anyway).
pub(super) fn placeholder_url() -> url::Url {
    #[allow(clippy::expect_used)]
    url::Url::parse("http://invalid.invalid/").expect("invariant: a constant, valid URL")
}
