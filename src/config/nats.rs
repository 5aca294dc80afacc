//! A hook whose `url` is `nats://` or `tls://` publishes to NATS JetStream (SPEC §3):
//! its `subject` (a template of `{hostName}`, `{siteName}`, `{event}`; default
//! `deployhook.{hostName}.{siteName}.{event}`) is checked here, and its secret is the
//! connection's credential (a `.creds` file's text, an nkey seed, or a token) — it signs
//! nothing.

use super::Format;
use super::checker::Checker;
use super::raw::RawHook;

pub const DEFAULT_SUBJECT: &str = "deployhook.{hostName}.{siteName}.{event}";
const PLACEHOLDERS: [&str; 3] = ["{hostName}", "{siteName}", "{event}"];

/// Where a NATS hook publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsTarget {
    /// The subject template.
    pub subject: String,
}

impl NatsTarget {
    /// The subject of one event: each placeholder's value escaped into one token (bytes
    /// outside letters, digits, `-` and `_` as `%XX`, so `.`, `*`, `>` and spaces never
    /// reach the subject; an empty value is `_`).
    pub fn subject_for(&self, host: &str, site: Option<&str>, event: &str) -> String {
        self.subject
            .replace("{hostName}", &token(host))
            .replace("{siteName}", &token(site.unwrap_or("")))
            .replace("{event}", &token(event))
    }
}

/// `v` as one subject token: `%XX` for every byte but letters, digits, `-` and `_`.
pub fn token(v: &str) -> String {
    if v.is_empty() {
        return "_".into();
    }
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A NATS hook's target, checked; `None` for an HTTP hook (where `subject` is an error).
pub(super) fn nats_target(
    c: &mut Checker<'_>,
    h: &RawHook,
    url: &url::Url,
    format: Format,
    key: &dyn Fn(&str) -> String,
) -> Option<NatsTarget> {
    if !matches!(url.scheme(), "nats" | "tls") {
        if let Some(s) = &h.subject {
            c.at(
                s.span(),
                &key("subject"),
                "only for a nats:// or tls:// url",
            );
        }
        return None;
    }
    if format == Format::GithubDeployments {
        c.at(
            h.url.span(),
            &key("url"),
            "a github-deployments hook calls GitHub's API: its url is http(s)",
        );
    }
    let subject = h
        .subject
        .as_ref()
        .map_or(DEFAULT_SUBJECT.to_string(), |s| s.get_ref().clone());
    let mut literal = subject.clone();
    for p in PLACEHOLDERS {
        literal = literal.replace(p, "x");
    }
    let ok = !literal.is_empty()
        && literal.len() <= 255
        && literal.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && t.chars()
                    .all(|ch| ch.is_ascii_graphic() && ch != '{' && ch != '}')
        });
    if !ok {
        let span = h.subject.as_ref().map_or(h.url.span(), |s| s.span());
        c.at(
            span,
            &key("subject"),
            format!(
                "{:?} is not a NATS subject: dot-separated tokens of printable characters, no wildcards; placeholders {{hostName}}, {{siteName}}, {{event}}",
                crate::model::cap_text(&subject, 200)
            ),
        );
    }
    Some(NatsTarget { subject })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_escape_each_value_into_one_token() {
        let t = NatsTarget {
            subject: DEFAULT_SUBJECT.into(),
        };
        assert_eq!(
            t.subject_for("build-01", Some("shop"), "PostDeployment"),
            "deployhook.build-01.shop.PostDeployment"
        );
        assert_eq!(
            t.subject_for("a.b c", Some("s>*"), "x"),
            "deployhook.a%2Eb%20c.s%3E%2A.x"
        );
        assert_eq!(t.subject_for("h", None, "ping"), "deployhook.h._.ping");
    }
}
