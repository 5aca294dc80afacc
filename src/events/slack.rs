//! The `slack` format: a Slack incoming-webhook body, `text` (the notification's
//! fallback) and `blocks` with site, status, commit, author, deployer, duration, the
//! rollback marker and the first commits the deployment brought. Text from a site
//! (commit messages, names) is escaped for Slack's mrkdwn (`&`, `<`, `>`) and capped, so
//! it cannot mention `@channel` or break the body.

use serde_json::{Value, json};

use super::DeploymentEvent;
use crate::model::{Status, cap_text};

/// How many of a deployment's commits the message lists.
const SHOWN_COMMITS: usize = 5;

pub fn emoji(status: Status) -> &'static str {
    match status {
        Status::Pending => ":hourglass_flowing_sand:",
        Status::Building => ":hammer_and_wrench:",
        Status::Deploying => ":rocket:",
        Status::Success => ":white_check_mark:",
        Status::Failed => ":x:",
    }
}

/// A message in words (an operational event), as Slack's `text`.
pub fn text(message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "text": escape(message, 3000) })).unwrap_or_default()
}

/// Slack's control characters escaped, and at most `max` characters.
fn escape(text: &str, max: usize) -> String {
    cap_text(text, max)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `1m 45s`, `3s`, `2h 5m`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

pub fn body(ev: &DeploymentEvent<'_>) -> Vec<u8> {
    let t = ev.transition;
    let d = &t.deployment;
    let p = ev.payload;
    let site = escape(ev.cx.site, 100);
    let rollback = if d.rollback { " (rollback)" } else { "" };
    let text = format!(
        "{} {site}: deployment {}{rollback} on {}",
        emoji(t.to),
        t.to.as_str(),
        escape(ev.cx.host_name, 100)
    );
    let short: String = d.id.chars().take(12).collect();
    let commit = match &p.message {
        Some(m) => format!(
            "`{}` {}",
            escape(&short, 12),
            escape(m.lines().next().unwrap_or(""), 200)
        ),
        None => format!("`{}`", escape(&short, 12)),
    };
    let mut fields = vec![
        field("Site", &site),
        field(
            "Status",
            &format!("{} {}{rollback}", emoji(t.to), t.to.as_str()),
        ),
        field("Commit", &commit),
    ];
    if let Some(a) = &p.author {
        fields.push(field("Author", &escape(a, 100)));
    }
    if let Some(dep) = &p.deployer {
        fields.push(field("Deployer", &escape(dep, 100)));
    }
    if let (Some(start), Some(end)) = (d.started, d.ended) {
        fields.push(field(
            "Duration",
            &duration(end.since(start).as_secs() as i64),
        ));
    }
    if let Some(b) = &p.branch {
        fields.push(field("Branch", &escape(b, 100)));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{text}*")}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(commits) = p.commits.as_ref().filter(|c| !c.is_empty()) {
        let mut lines: Vec<String> = commits
            .iter()
            .take(SHOWN_COMMITS)
            .map(|c| {
                let sha: String = c.sha.chars().take(7).collect();
                format!(
                    "• `{}` {} ({})",
                    escape(&sha, 7),
                    escape(&c.message, 80),
                    escape(&c.author, 40)
                )
            })
            .collect();
        let more = commits.len().saturating_sub(SHOWN_COMMITS);
        if more > 0 || p.commits_truncated == Some(true) {
            let plus = if p.commits_truncated == Some(true) {
                "+"
            } else {
                ""
            };
            lines.push(format!("…and {more}{plus} more"));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Changes*\n{}", lines.join("\n"))}}));
    }
    if t.to == Status::Failed && !d.status_text.is_empty() {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": escape(&d.status_text, 1000)}
        ]}));
    }
    serde_json::to_vec(&json!({ "text": text, "blocks": blocks })).unwrap_or_default()
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")})
}

/// The `ping` of a Slack hook: a body Slack accepts.
pub fn ping(hook: &str, host_name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "text": format!(":wave: deployhook on {} says hello (hook {})", escape(host_name, 100), escape(hook, 100)),
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_escapes() {
        assert_eq!(duration(3), "3s");
        assert_eq!(duration(105), "1m 45s");
        assert_eq!(duration(7500), "2h 5m");
        assert_eq!(escape("<!channel> & co", 100), "&lt;!channel&gt; &amp; co");
    }
}
