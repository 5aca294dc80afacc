//! The `template` format: the hook's minijinja template (read and checked at load, see
//! `config::formats`) renders the body. The context is the kudu object's keys, plus
//! `hook` (the hook's name), `site` and `payload` (the whole object); a key the object
//! leaves out is there as null, so a template never meets an undefined variable.

use serde_json::{Map, Value};

use super::{DeploymentEvent, Rendered};
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
    match t.render(&object_context(hook, kudu_body, site)) {
        Ok(text) => Rendered::plain(text.into_bytes()),
        Err(why) => {
            tracing::error!(hook = %hook.name, template = %t.path.display(), error = %crate::telemetry::escape(&why), "the template failed; the kudu object is sent instead");
            Rendered::plain(kudu_body.to_vec())
        }
    }
}
