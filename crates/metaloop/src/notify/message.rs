//! What the channels send: a core [`Notification`] plus structured fields, and the kinds
//! the core does not emit itself (ledger checkpoints).

use metaloop_core::alert::{Alert, AlertKind, Severity};
use metaloop_core::supervisor::{Notification, NotificationKind};
use metaloop_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a message is about: every [`NotificationKind`], plus `checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Summary,
    ApprovalRequest,
    Published,
    Applied,
    Verdict,
    Rollback,
    Expired,
    ReviewRequest,
    AlertFiring,
    AlertResolved,
    /// A signed ledger checkpoint was made.
    Checkpoint,
}

impl MessageKind {
    /// The snake_case name, as in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Summary => "summary",
            MessageKind::ApprovalRequest => "approval_request",
            MessageKind::Published => "published",
            MessageKind::Applied => "applied",
            MessageKind::Verdict => "verdict",
            MessageKind::Rollback => "rollback",
            MessageKind::Expired => "expired",
            MessageKind::ReviewRequest => "review_request",
            MessageKind::AlertFiring => "alert_firing",
            MessageKind::AlertResolved => "alert_resolved",
            MessageKind::Checkpoint => "checkpoint",
        }
    }

    /// Whether this is an alert event (firing or resolved).
    pub fn is_alert(self) -> bool {
        matches!(self, MessageKind::AlertFiring | MessageKind::AlertResolved)
    }
}

impl From<NotificationKind> for MessageKind {
    fn from(k: NotificationKind) -> Self {
        match k {
            NotificationKind::Summary => MessageKind::Summary,
            NotificationKind::ApprovalRequest => MessageKind::ApprovalRequest,
            NotificationKind::Published => MessageKind::Published,
            NotificationKind::Applied => MessageKind::Applied,
            NotificationKind::Verdict => MessageKind::Verdict,
            NotificationKind::Rollback => MessageKind::Rollback,
            NotificationKind::Expired => MessageKind::Expired,
            NotificationKind::ReviewRequest => MessageKind::ReviewRequest,
            NotificationKind::AlertFiring => MessageKind::AlertFiring,
            NotificationKind::AlertResolved => MessageKind::AlertResolved,
        }
    }
}

/// Field names the notifier itself fills in for alerts.
pub mod field {
    /// The alert kind, e.g. `goal_gap_not_closed` (the part of the key before `:`).
    pub const ALERT_KIND: &str = "alert_kind";
    /// `warning` or `critical`.
    pub const SEVERITY: &str = "severity";
    /// Cycle the alert started firing.
    pub const SINCE_CYCLE: &str = "since_cycle";
    /// Checkpoint: records covered, 1..=seq.
    pub const SEQ: &str = "seq";
    /// Checkpoint: hash of the last record covered, hex.
    pub const HEAD: &str = "head";
    /// Checkpoint: signing key id.
    pub const KEY_ID: &str = "key_id";
}

/// One message for human channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub kind: MessageKind,
    /// When it happened (the supervisor's clock, virtual in the demo).
    pub time: Timestamp,
    /// The human text, as the core wrote it.
    pub text: String,
    /// The directive id or alert key it is about.
    pub subject: Option<String>,
    /// Structured details (alert kind and severity, checkpoint head, …).
    pub fields: BTreeMap<String, String>,
}

impl Message {
    /// A message with no subject and no fields.
    pub fn new(kind: MessageKind, time: Timestamp, text: impl Into<String>) -> Message {
        Message {
            kind,
            time,
            text: text.into(),
            subject: None,
            fields: BTreeMap::new(),
        }
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Message {
        self.subject = Some(subject.into());
        self
    }

    /// Adds one structured field.
    pub fn with_field(mut self, name: impl Into<String>, value: impl ToString) -> Message {
        self.fields.insert(name.into(), value.to_string());
        self
    }

    /// A firing alert with its kind, severity and first cycle as fields.
    pub fn alert_firing(alert: &Alert, time: Timestamp) -> Message {
        Message::new(
            MessageKind::AlertFiring,
            time,
            format!("Alert {}: {}.", alert.kind.as_str(), alert.message),
        )
        .with_subject(alert.key.clone())
        .with_field(field::ALERT_KIND, alert.kind.as_str())
        .with_field(field::SEVERITY, severity_name(alert.severity))
        .with_field(field::SINCE_CYCLE, alert.since_cycle)
    }

    /// A resolved alert, by its key.
    pub fn alert_resolved(key: &str, time: Timestamp) -> Message {
        alert_fields(
            Message::new(
                MessageKind::AlertResolved,
                time,
                format!("Resolved: {key}."),
            )
            .with_subject(key),
        )
    }

    /// A signed ledger checkpoint covering records `1..=seq`.
    pub fn checkpoint(time: Timestamp, seq: u64, head: &str, key_id: &str) -> Message {
        let short = head.get(..16).unwrap_or(head);
        Message::new(
            MessageKind::Checkpoint,
            time,
            format!("Ledger checkpoint: records 1..={seq} signed by key {key_id}, head {short}."),
        )
        .with_field(field::SEQ, seq)
        .with_field(field::HEAD, head)
        .with_field(field::KEY_ID, key_id)
    }

    /// The alert key (the subject) of an alert message.
    pub fn alert_key(&self) -> Option<&str> {
        self.kind
            .is_alert()
            .then_some(self.subject.as_deref())
            .flatten()
    }
}

impl From<&Notification> for Message {
    fn from(n: &Notification) -> Self {
        let m = Message {
            kind: n.kind.into(),
            time: n.time,
            text: n.text.clone(),
            subject: n.subject.clone(),
            fields: BTreeMap::new(),
        };
        if m.kind.is_alert() {
            alert_fields(m)
        } else {
            m
        }
    }
}

impl From<Notification> for Message {
    fn from(n: Notification) -> Self {
        Message::from(&n)
    }
}

/// The snake_case severity name.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

const ALERT_KINDS: [AlertKind; 6] = [
    AlertKind::VerificationFailures,
    AlertKind::GoalGapNotClosed,
    AlertKind::SystemicPatternPersisting,
    AlertKind::ComplianceBelowThreshold,
    AlertKind::DirectiveNoAck,
    AlertKind::RollbackFailed,
];

/// The alert kind named by the part of `key` before the first `:`.
pub fn alert_kind_name(key: &str) -> &str {
    key.split(':').next().unwrap_or(key)
}

/// The severity the core gives alerts of this kind (see `Supervisor::evaluate_alerts`); used
/// when a notification carries only the key.
fn default_severity(kind: AlertKind) -> Severity {
    match kind {
        AlertKind::GoalGapNotClosed => Severity::Warning,
        AlertKind::VerificationFailures
        | AlertKind::SystemicPatternPersisting
        | AlertKind::ComplianceBelowThreshold
        | AlertKind::DirectiveNoAck
        | AlertKind::RollbackFailed => Severity::Critical,
    }
}

/// Fills `alert_kind` and `severity` from the key when they are not set yet.
fn alert_fields(mut m: Message) -> Message {
    let Some(key) = m.subject.clone() else {
        return m;
    };
    let name = alert_kind_name(&key).to_string();
    let kind = ALERT_KINDS.iter().copied().find(|k| k.as_str() == name);
    m.fields
        .entry(field::SEVERITY.into())
        .or_insert_with(|| severity_name(kind.map_or(Severity::Warning, default_severity)).into());
    m.fields.entry(field::ALERT_KIND.into()).or_insert(name);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_notification_gets_kind_and_severity_from_its_key() {
        let n = Notification {
            kind: NotificationKind::AlertFiring,
            time: Timestamp::from_secs(60),
            text: "Alert goal_gap_not_closed: autonomy_rate has missed its target.".into(),
            subject: Some("goal_gap_not_closed:autonomy_rate".into()),
        };
        let m = Message::from(&n);
        assert_eq!(m.fields[field::ALERT_KIND], "goal_gap_not_closed");
        assert_eq!(m.fields[field::SEVERITY], "warning");
        let r = Message::alert_resolved("directive_no_ack:0190", Timestamp(0));
        assert_eq!(r.fields[field::ALERT_KIND], "directive_no_ack");
        assert_eq!(r.fields[field::SEVERITY], "critical");
    }

    #[test]
    fn every_alert_kind_is_known() {
        for k in ALERT_KINDS {
            assert_eq!(alert_kind_name(&format!("{}:x", k.as_str())), k.as_str());
        }
    }
}
