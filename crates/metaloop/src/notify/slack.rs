//! Slack incoming-webhook messages: `{"text": …, "blocks": [...]}` with mrkdwn.
//!
//! `text` is the plain fallback Slack shows in notifications (`<title>: <text>`). The blocks:
//!
//! 1. `header` — an emoji and a title for the kind (`:raised_hand: Approval needed`, …);
//! 2. `section` — the message text, mrkdwn-escaped;
//! 3. for approval and review requests about a directive: a `section` with the commands
//!    `metaloop directives approve <id>` and `metaloop directives reject <id>`;
//! 4. a `section` with the structured fields (at most 10), when there are any;
//! 5. a `context` line: `metaloop · <kind> · <time> · <subject>`.

use super::message::{Message, MessageKind, field};
use serde_json::{Value, json};

/// Slack's limit for a section's text.
const SECTION_LIMIT: usize = 3000;
/// Slack's limit for a header's text.
const HEADER_LIMIT: usize = 150;
/// Slack's limit for the number of fields in a section.
const FIELDS_LIMIT: usize = 10;
/// Slack's limit for one field's text.
const FIELD_LIMIT: usize = 2000;

/// The emoji and title shown for a kind.
pub fn title(m: &Message) -> String {
    match m.kind {
        MessageKind::Summary => ":bar_chart: Cycle summary".into(),
        MessageKind::ApprovalRequest => ":raised_hand: Approval needed".into(),
        MessageKind::Published => ":rocket: Directive published".into(),
        MessageKind::Applied => ":gear: Directive applied".into(),
        MessageKind::Verdict => ":mag: Verification verdict".into(),
        MessageKind::Rollback => ":rewind: Directive rolled back".into(),
        MessageKind::Expired => ":hourglass: Approval expired".into(),
        MessageKind::ReviewRequest => ":eyes: Review requested".into(),
        MessageKind::AlertFiring => {
            let severity = m.fields.get(field::SEVERITY).map_or("warning", |s| s);
            let icon = if severity == "critical" {
                ":rotating_light:"
            } else {
                ":warning:"
            };
            format!("{icon} Alert firing ({severity})")
        }
        MessageKind::AlertResolved => ":white_check_mark: Alert resolved".into(),
        MessageKind::Checkpoint => ":lock: Ledger checkpoint".into(),
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `limit` characters, marking the cut with `…`.
fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)})
}

/// The incoming-webhook payload for `m`.
pub fn payload(m: &Message) -> Value {
    let title = title(m);
    let mut blocks = vec![
        json!({"type": "header",
               "text": {"type": "plain_text", "text": truncate(&title, HEADER_LIMIT), "emoji": true}}),
        json!({"type": "section", "text": mrkdwn(&escape(&m.text))}),
    ];
    if matches!(
        m.kind,
        MessageKind::ApprovalRequest | MessageKind::ReviewRequest
    ) && let Some(id) = &m.subject
    {
        let id = escape(id);
        blocks.push(json!({"type": "section", "text": mrkdwn(&format!(
            "*Approve:* `metaloop directives approve {id}`\n*Reject:* `metaloop directives reject {id}`"
        ))}));
    }
    if !m.fields.is_empty() {
        let fields: Vec<Value> = m
            .fields
            .iter()
            .take(FIELDS_LIMIT)
            .map(|(k, v)| {
                json!({"type": "mrkdwn",
                       "text": truncate(&format!("*{}*\n{}", escape(k), escape(v)), FIELD_LIMIT)})
            })
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut context = format!("metaloop · {} · {}", m.kind.as_str(), m.time.to_rfc3339());
    if let Some(s) = &m.subject {
        context.push_str(&format!(" · `{}`", escape(s)));
    }
    blocks.push(json!({"type": "context", "elements": [mrkdwn(&context)]}));
    let plain = title
        .split_once(' ')
        .map_or(title.as_str(), |(_, rest)| rest)
        .to_string();
    json!({"text": truncate(&format!("{plain}: {}", m.text), SECTION_LIMIT), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use metaloop_core::time::Timestamp;

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
    }

    #[test]
    fn long_text_is_cut_to_slack_limits() {
        let m = Message::new(MessageKind::Summary, Timestamp(0), "x".repeat(5000));
        let p = payload(&m);
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), SECTION_LIMIT);
        assert!(section.ends_with('…'));
    }
}
