//! Alertmanager: alerts POSTed to `<url>/api/v2/alerts` as a JSON array of postable alerts.
//!
//! ```json
//! [{"labels": {"alertname": "goal_gap_not_closed", "severity": "warning",
//!              "key": "goal_gap_not_closed:autonomy_rate", "service": "metaloop"},
//!   "annotations": {"summary": "…", "description": "…"},
//!   "startsAt": "2026-01-01T00:25:00Z"}]
//! ```
//!
//! `alertname` is the alert kind (the key up to the first `:`), `key` the alert's unique key;
//! `environment` is added when the notifier knows it. A resolved alert is sent with the same
//! labels and `startsAt` as when it fired, plus `endsAt`. Only alert messages go to this
//! channel.
//!
//! Alertmanager resolves an alert by itself when it has not heard of it for its
//! `resolve_timeout` (5 minutes by default), so, as Prometheus does, the channel re-sends
//! every alert still firing every `alert_resend_interval` (1 minute by default).

use super::message::{Message, MessageKind, alert_kind_name, field};
use serde::Serialize;
use std::collections::BTreeMap;

/// One alert in Alertmanager's v2 `postableAlerts` format.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

/// The alerts this channel has told Alertmanager are firing.
#[derive(Debug, Default)]
pub struct Tracker {
    environment: Option<String>,
    firing: BTreeMap<String, PostableAlert>,
}

impl Tracker {
    /// A tracker whose alerts carry `environment` as a label, when given.
    pub fn new(environment: Option<String>) -> Tracker {
        Tracker {
            environment,
            firing: BTreeMap::new(),
        }
    }

    fn labels(&self, key: &str, m: &Message) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert(
            "alertname".to_string(),
            m.fields
                .get(field::ALERT_KIND)
                .cloned()
                .unwrap_or_else(|| alert_kind_name(key).to_string()),
        );
        labels.insert(
            "severity".to_string(),
            m.fields
                .get(field::SEVERITY)
                .cloned()
                .unwrap_or_else(|| "warning".into()),
        );
        labels.insert("key".to_string(), key.to_string());
        labels.insert("service".to_string(), "metaloop".to_string());
        if let Some(env) = &self.environment {
            labels.insert("environment".to_string(), env.clone());
        }
        labels
    }

    /// The alert to post for `m`, updating what is firing; `None` for messages that are not
    /// alerts (or carry no key).
    pub fn apply(&mut self, m: &Message) -> Option<PostableAlert> {
        let key = m.alert_key()?;
        match m.kind {
            MessageKind::AlertFiring => {
                let mut annotations = BTreeMap::new();
                annotations.insert("summary".to_string(), m.text.clone());
                annotations.insert("description".to_string(), description(key, m));
                let alert = PostableAlert {
                    labels: self.labels(key, m),
                    annotations,
                    starts_at: m.time.to_rfc3339(),
                    ends_at: None,
                };
                self.firing.insert(key.to_string(), alert.clone());
                Some(alert)
            }
            MessageKind::AlertResolved => {
                let ends_at = m.time.to_rfc3339();
                let mut alert = self.firing.remove(key).unwrap_or_else(|| {
                    // fired before a restart: same labels (they depend on the key only)
                    let mut annotations = BTreeMap::new();
                    annotations.insert("summary".to_string(), m.text.clone());
                    PostableAlert {
                        labels: self.labels(key, m),
                        annotations,
                        starts_at: ends_at.clone(),
                        ends_at: None,
                    }
                });
                alert
                    .annotations
                    .insert("description".to_string(), description(key, m));
                alert.ends_at = Some(ends_at);
                Some(alert)
            }
            _ => None,
        }
    }

    /// Every alert still firing, for the periodic re-send.
    pub fn firing(&self) -> Vec<PostableAlert> {
        self.firing.values().cloned().collect()
    }
}

fn description(key: &str, m: &Message) -> String {
    let mut d = format!("{} (alert {key}", m.text);
    if let Some(c) = m.fields.get(field::SINCE_CYCLE) {
        d.push_str(&format!(", firing since cycle {c}"));
    }
    d.push(')');
    d
}

/// `<url>/api/v2/alerts`, unless `url` already ends with that path.
pub fn endpoint(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        base.to_string()
    } else {
        format!("{base}/api/v2/alerts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metaloop_core::time::Timestamp;

    #[test]
    fn resolved_alert_keeps_labels_and_start() {
        let mut t = Tracker::new(Some("production".into()));
        let fire = Message::from(&metaloop_core::supervisor::Notification {
            kind: metaloop_core::supervisor::NotificationKind::AlertFiring,
            time: Timestamp::from_secs(60),
            text: "Alert x.".into(),
            subject: Some("compliance_below_threshold:security".into()),
        });
        let a = t.apply(&fire).unwrap();
        assert_eq!(a.labels["alertname"], "compliance_below_threshold");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["environment"], "production");
        assert_eq!(t.firing().len(), 1);
        let r = t
            .apply(&Message::alert_resolved(
                "compliance_below_threshold:security",
                Timestamp::from_secs(120),
            ))
            .unwrap();
        assert_eq!(r.labels, a.labels);
        assert_eq!(r.starts_at, "1970-01-01T00:01:00Z");
        assert_eq!(r.ends_at.as_deref(), Some("1970-01-01T00:02:00Z"));
        assert!(t.firing().is_empty());
    }

    #[test]
    fn endpoint_appends_the_api_path_once() {
        assert_eq!(endpoint("http://am:9093/"), "http://am:9093/api/v2/alerts");
        assert_eq!(
            endpoint("http://am:9093/api/v2/alerts"),
            "http://am:9093/api/v2/alerts"
        );
    }
}
