//! The `template` format: the hook's minijinja template (read and checked at load, see
//! `config::formats`) renders the body. The context is the kudu object's keys, plus
//! `hook` (the hook's name), `site` and `payload` (the whole object); a key the object
//! leaves out is there as null, so a template never meets an undefined variable.

use serde_json::{Map, Value};

use super::{DeploymentEvent, Rendered};
use crate::config::formats::{MAX_TEMPLATE_OUTPUT, Template, describe};
use crate::config::{HookConfig, TEMPLATE_VARIABLES};

/// The context a template of `hook` renders an event with.
pub fn context(hook: &HookConfig, ev: &DeploymentEvent<'_>) -> Value {
    object_context(hook, ev.kudu_body, ev.cx.site)
}

/// The context of a kudu object (`kudu_body`) of `site`.
fn object_context(hook: &HookConfig, kudu_body: &[u8], site: &str) -> Value {
    let object: Map<String, Value> = serde_json::from_slice(kudu_body).unwrap_or_default();
    let mut cx = Map::new();
    for name in TEMPLATE_VARIABLES {
        cx.insert(name.to_string(), Value::Null);
    }
    for (k, v) in &object {
        cx.insert(k.clone(), v.clone());
    }
    if !object.contains_key("truncated") {
        cx.insert("truncated".into(), Value::Array(Vec::new()));
    }
    if !object.contains_key("commitsTruncated") {
        cx.insert("commitsTruncated".into(), Value::Bool(false));
    }
    cx.insert("hook".into(), hook.name.clone().into());
    cx.insert("site".into(), site.into());
    cx.insert("payload".into(), Value::Object(object));
    Value::Object(cx)
}

/// The rendered body. A template that fails at run time (a filter given a value it
/// cannot take) is logged, and the kudu object goes instead: the event is not lost.
pub fn render(hook: &HookConfig, ev: &DeploymentEvent<'_>) -> Rendered {
    render_object(hook, ev.kudu_body, ev.cx.site)
}

/// `render` for a kudu object alone (a relayed event).
pub fn render_object(hook: &HookConfig, kudu_body: &[u8], site: &str) -> Rendered {
    let Some(t) = &hook.template else {
        return Rendered::plain(kudu_body.to_vec());
    };
    match render_template(t, &object_context(hook, kudu_body, site)) {
        Ok(text) => Rendered::plain(text.into_bytes()),
        Err(why) => {
            tracing::error!(hook = %hook.name, template = %t.path.display(), error = %crate::telemetry::escape(&why), "the template failed; the kudu object is sent instead");
            Rendered::plain(kudu_body.to_vec())
        }
    }
}

/// Renders `template` with `context` in the environment it was checked in (strict
/// undefined, JSON auto-escape for `*.json` and `*.json.j2`, a step limit), the output
/// capped at `MAX_TEMPLATE_OUTPUT`.
pub fn render_template(template: &Template, context: &Value) -> Result<String, String> {
    let env = Template::environment();
    let name = template.name();
    let t = env
        .template_from_named_str(&name, &template.source)
        .map_err(|e| describe(&e))?;
    let mut out = CappedWriter(Vec::new());
    t.render_captured_to(
        minijinja::Value::from(minijinja::value::Serde(context)),
        &mut out,
    )
    .map_err(|e| describe(&e))?;
    String::from_utf8(out.0).map_err(|e| e.to_string())
}

/// A buffer that refuses to grow past `MAX_TEMPLATE_OUTPUT`.
struct CappedWriter(Vec<u8>);

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_TEMPLATE_OUTPUT {
            return Err(std::io::Error::other(format!(
                "the rendered body is over {} KiB",
                MAX_TEMPLATE_OUTPUT / 1024
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn template(name: &str, source: &str) -> Template {
        Template {
            path: PathBuf::from(format!("/t/{name}")),
            source: source.to_string(),
        }
    }

    #[test]
    fn json_templates_escape_values_and_renders_are_bounded() {
        let t = template("a.json.j2", "{\"m\": {{ message }}}");
        assert_eq!(t.check(), Ok(()));
        let out = render_template(&t, &serde_json::json!({"message": "say \"hi\" \\ <b>"}));
        assert_eq!(out.as_deref(), Ok("{\"m\": \"say \\\"hi\\\" \\\\ <b>\"}"));
        // A loop that would run forever runs out of fuel.
        let spin = template("b.txt", "{% for i in range(1000000) %}{{ i }}{% endfor %}");
        assert!(render_template(&spin, &serde_json::json!({})).is_err());
        // A body that would be huge is refused, not sent.
        let big = template(
            "c.txt",
            "{% for i in range(5000) %}{{ message * 100 }}{% endfor %}",
        );
        let err = render_template(&big, &serde_json::json!({"message": "xxxxxxxxxx"}))
            .err()
            .unwrap_or_default();
        assert!(err.contains("over 1024 KiB"), "{err}");
    }
}
