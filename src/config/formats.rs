//! A hook's `format` and what goes with it: `cloudevents_mode` and the `template` file,
//! checked at load (a syntax error or an unknown variable is a config error, so a reload
//! with a broken template keeps the old config).

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::Env;
use super::checker::Checker;
use super::raw::RawHook;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Kudu's PostDeployment object (the default).
    Kudu,
    /// CloudEvents 1.0 with the kudu object as data.
    CloudEvents,
    /// CDEvents 0.5.1, carried as CloudEvents.
    CdEvents,
    /// A Slack incoming-webhook body.
    Slack,
    /// A minijinja template (`template`).
    Template,
    /// GitHub's Deployments API (`repository`, `environment`): not a body but a sink.
    GithubDeployments,
    /// Apache DevLake's webhook deployments endpoint (`environment`).
    Devlake,
    /// Datadog's DORA deployment API (`environment`, `DD-API-KEY` from the secret).
    DatadogDora,
    /// OTLP/HTTP protobuf spans (`[otlp]` only, not a `[[hook]]`'s).
    Otlp,
}

/// Where a `github-deployments` hook reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubTarget {
    /// `owner/name`.
    pub repository: String,
    /// Default: the site's name.
    pub environment: Option<String>,
    /// With `{site}` and `{id}` placeholders.
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Kudu => "kudu",
            Format::CloudEvents => "cloudevents",
            Format::CdEvents => "cdevents",
            Format::Slack => "slack",
            Format::Template => "template",
            Format::GithubDeployments => "github-deployments",
            Format::Devlake => "devlake",
            Format::DatadogDora => "datadog-dora",
            Format::Otlp => "otlp",
        }
    }
}

/// CloudEvents' HTTP content modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudEventsMode {
    /// `application/cloudevents+json`: every attribute in the body.
    Structured,
    /// Attributes in `ce-*` headers, the data as the body.
    Binary,
}

/// The largest template file.
const MAX_TEMPLATE: usize = 64 * 1024;

/// Template steps allowed per rendering (minijinja's fuel): a loop that never ends is an
/// error, not a stuck daemon.
const TEMPLATE_FUEL: u64 = 100_000;
/// The most a rendering may write: a body larger than this is an error (the kudu object
/// goes instead), not a request a receiver must swallow.
pub const MAX_TEMPLATE_OUTPUT: usize = 1024 * 1024;

/// What a template may name: the kudu object's keys, and `hook`, `site`, `payload` (the
/// whole object), the keys of an operational event's object (`HookFailing` …: `hookName`
/// to `time`), plus minijinja's own globals. `events::template` builds exactly this: a
/// key an event's object leaves out is null.
pub const TEMPLATE_VARIABLES: [&str; 37] = [
    "id",
    "status",
    "statusText",
    "authorEmail",
    "author",
    "message",
    "progress",
    "deployer",
    "receivedTime",
    "startTime",
    "endTime",
    "lastSuccessEndTime",
    "complete",
    "siteName",
    "hostName",
    "event",
    "branch",
    "release",
    "previousId",
    "rollback",
    "layout",
    "sequence",
    "previousStatus",
    "truncated",
    "commits",
    "commitsTruncated",
    "hook",
    "site",
    "payload",
    "hookName",
    "failuresInARow",
    "lastStatus",
    "lastError",
    "deliveryId",
    "deliveryEvent",
    "reason",
    "time",
];

const TEMPLATE_GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// A template file, read and checked at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub path: PathBuf,
    pub source: String,
}

impl Template {
    /// The environment templates run in: an undefined variable is an error, a file named
    /// `*.json` or `*.json.j2` writes every `{{ value }}` as JSON (quoted and escaped),
    /// and a rendering has a step limit.
    pub fn environment() -> minijinja::Environment<'static> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_auto_escape_callback(minijinja::default_auto_escape_callback);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env
    }

    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "template".into())
    }

    /// Compiles the template and checks that it names only known variables.
    pub fn check(&self) -> Result<(), String> {
        let env = Template::environment();
        let name = self.name();
        let t = env
            .template_from_named_str(&name, &self.source)
            .map_err(|e| describe(&e))?;
        let unknown: BTreeSet<String> = t
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| {
                !TEMPLATE_VARIABLES.contains(&v.as_str()) && !TEMPLATE_GLOBALS.contains(&v.as_str())
            })
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} names unknown variable(s) {}; a template can use {}",
                self.path.display(),
                unknown.into_iter().collect::<Vec<_>>().join(", "),
                TEMPLATE_VARIABLES.join(", ")
            ))
        }
    }
}

/// A minijinja error with where it happened (template line) and what caused it.
pub fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The hook's format, CloudEvents mode and template, checked.
pub(super) fn hook_format(
    c: &mut Checker<'_>,
    h: &RawHook,
    key: &dyn Fn(&str) -> String,
    env: &Env<'_>,
) -> (Format, CloudEventsMode, Option<Template>) {
    let format = match h.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
        None | Some(("kudu", _)) => Format::Kudu,
        Some(("cloudevents", _)) => Format::CloudEvents,
        Some(("cdevents", _)) => Format::CdEvents,
        Some(("slack", _)) => Format::Slack,
        Some(("template", _)) => Format::Template,
        Some(("github-deployments", _)) => Format::GithubDeployments,
        Some(("devlake", _)) => Format::Devlake,
        Some(("datadog-dora", _)) => Format::DatadogDora,
        Some((other, span)) => {
            c.at(
                span,
                &key("format"),
                format!(
                    "unknown format {other:?}: use kudu, cloudevents, cdevents, slack, template, github-deployments, devlake or datadog-dora"
                ),
            );
            Format::Kudu
        }
    };
    let mode = match h
        .cloudevents_mode
        .as_ref()
        .map(|m| (m.get_ref().as_str(), m.span()))
    {
        None | Some(("structured", _)) => CloudEventsMode::Structured,
        Some(("binary", _)) => CloudEventsMode::Binary,
        Some((other, span)) => {
            c.at(
                span,
                &key("cloudevents_mode"),
                format!("unknown cloudevents_mode {other:?}: use structured or binary"),
            );
            CloudEventsMode::Structured
        }
    };
    if let Some(m) = &h.cloudevents_mode
        && !matches!(format, Format::CloudEvents | Format::CdEvents)
    {
        c.at(
            m.span(),
            &key("cloudevents_mode"),
            "only for format = \"cloudevents\" or \"cdevents\"",
        );
    }
    let template = match (&h.template, format) {
        (None, Format::Template) => {
            let span = h.format.as_ref().map_or(0..0, |f| f.span());
            c.at(
                span,
                &key("template"),
                "format = \"template\" needs template = \"/path/to/file.json.j2\"",
            );
            None
        }
        (None, _) => None,
        (Some(t), Format::Template) => read_template(c, t, &key("template"), env),
        (Some(t), _) => {
            c.at(t.span(), &key("template"), "only for format = \"template\"");
            None
        }
    };
    (format, mode, template)
}

/// A `github-deployments` hook's repository, environment and URLs, checked; these keys
/// on another format are errors.
pub(super) fn github_target(
    c: &mut Checker<'_>,
    h: &RawHook,
    format: Format,
    key: &dyn Fn(&str) -> String,
) -> Option<GithubTarget> {
    let keys = [
        ("repository", &h.repository),
        ("environment", &h.environment),
        ("log_url", &h.log_url),
        ("environment_url", &h.environment_url),
    ];
    if format != Format::GithubDeployments {
        for (name, v) in keys {
            let dora = matches!(format, Format::Devlake | Format::DatadogDora);
            if name == "environment" && dora {
                continue;
            }
            if let Some(v) = v {
                c.at(
                    v.span(),
                    &key(name),
                    "only for format = \"github-deployments\"",
                );
            }
        }
        return None;
    }
    let repository = match &h.repository {
        None => {
            let span = h.format.as_ref().map_or(0..0, |f| f.span());
            c.at(
                span,
                &key("repository"),
                "format = \"github-deployments\" needs repository = \"owner/name\"",
            );
            String::new()
        }
        Some(r) => {
            let ok = r.get_ref().split_once('/').is_some_and(|(o, n)| {
                let part = |p: &str| {
                    !p.is_empty()
                        && p.len() <= 100
                        && p.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
                };
                part(o) && part(n) && n != "." && n != ".."
            });
            if !ok {
                c.at(
                    r.span(),
                    &key("repository"),
                    format!(
                        "{:?} is not owner/name",
                        crate::model::cap_text(r.get_ref(), 200)
                    ),
                );
            }
            r.get_ref().clone()
        }
    };
    for (name, v) in &keys[2..] {
        if let Some(v) = v
            && !url::Url::parse(&v.get_ref().replace("{site}", "s").replace("{id}", "i"))
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            c.at(
                v.span(),
                &key(name),
                "must be an absolute http:// or https:// URL",
            );
        }
    }
    if let Some(e) = &h.environment
        && (e.get_ref().trim().is_empty() || e.get_ref().len() > 255)
    {
        c.at(e.span(), &key("environment"), "must be 1 to 255 characters");
    }
    Some(GithubTarget {
        repository,
        environment: h.environment.as_ref().map(|e| e.get_ref().clone()),
        log_url: h.log_url.as_ref().map(|e| e.get_ref().clone()),
        environment_url: h.environment_url.as_ref().map(|e| e.get_ref().clone()),
    })
}

fn read_template(
    c: &mut Checker<'_>,
    t: &toml::Spanned<String>,
    key: &str,
    env: &Env<'_>,
) -> Option<Template> {
    let path = PathBuf::from(t.get_ref());
    if !path.is_absolute() {
        c.at(
            t.span(),
            key,
            format!("{:?} must be an absolute path", t.get_ref()),
        );
        return None;
    }
    let source = match (env.read_file)(&path) {
        Ok(s) if s.len() > MAX_TEMPLATE => {
            c.at(
                t.span(),
                key,
                format!("{} is larger than 64 KiB", path.display()),
            );
            return None;
        }
        Ok(s) => s,
        Err(e) => {
            c.at(
                t.span(),
                key,
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let template = Template { path, source };
    match template.check() {
        Ok(()) => Some(template),
        Err(why) => {
            c.at(t.span(), key, why);
            None
        }
    }
}

/// DevLake's environments.
const DEVLAKE_ENVIRONMENTS: [&str; 4] = ["PRODUCTION", "STAGING", "TESTING", "DEVELOPMENT"];

/// The `environment` of a `devlake` hook (one of DevLake's four, upper case; default
/// `PRODUCTION`) or a `datadog-dora` hook (its `env`; default `production`).
pub(super) fn dora_environment(
    c: &mut Checker<'_>,
    h: &RawHook,
    format: Format,
    key: &dyn Fn(&str) -> String,
) -> Option<String> {
    let given = h.environment.as_ref();
    match format {
        Format::Devlake => {
            let env = given.map_or("PRODUCTION".to_string(), |e| {
                e.get_ref().to_ascii_uppercase()
            });
            if !DEVLAKE_ENVIRONMENTS.contains(&env.as_str()) {
                c.at(
                    given.map_or(0..0, |e| e.span()),
                    &key("environment"),
                    "DevLake takes PRODUCTION, STAGING, TESTING or DEVELOPMENT",
                );
            }
            Some(env)
        }
        Format::DatadogDora => {
            Some(given.map_or("production".to_string(), |e| e.get_ref().clone()))
        }
        _ => None,
    }
}
