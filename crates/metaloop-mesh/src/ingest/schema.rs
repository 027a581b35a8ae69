//! The schema check: a CloudEvent's `type` and `data` against the spine protocol
//! (`metaloop_core::protocol`).

use crate::envelope::{CloudEvent, Data, MEDIA_TYPE_JSON};
use metaloop_core::protocol::{
    ComplianceScore, Decision, DirectiveApplied, DirectiveRefused, EventData, HealthChange,
    KpiReport, Recovery, TrustException,
};
use metaloop_core::time::Timestamp;
use serde::de::DeserializeOwned;

/// The CloudEvents types a spine sends to metaloop.
pub const INBOUND_TYPES: [&str; 9] = [
    "recovery.succeeded",
    "recovery.failed",
    "decision.made",
    "health.changed",
    "trust.exception",
    "compliance.scored",
    "kpi.reported",
    "meta.directive.applied",
    "meta.directive.refused",
];

fn decode<T: DeserializeOwned>(event_type: &str, json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("data does not match {event_type}: {e}"))
}

fn check_range(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), String> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "data.{field} is {value}; it must be within [{lo}, {hi}]"
        ))
    }
}

/// Decodes `data` into the payload of `event_type`, unknown fields refused, numbers in range.
pub fn decode_data(event_type: &str, json: &str) -> Result<EventData, String> {
    let data = match event_type {
        "recovery.succeeded" | "recovery.failed" => {
            let r: Recovery = decode(event_type, json)?;
            check_range("duration_s", r.duration_s, 0.0, f64::MAX)?;
            if event_type == "recovery.succeeded" {
                EventData::RecoverySucceeded(r)
            } else {
                EventData::RecoveryFailed(r)
            }
        }
        "decision.made" => {
            let d: Decision = decode(event_type, json)?;
            check_range("confidence", d.confidence, 0.0, 1.0)?;
            EventData::DecisionMade(d)
        }
        "health.changed" => EventData::HealthChanged(decode::<HealthChange>(event_type, json)?),
        "trust.exception" => EventData::TrustException(decode::<TrustException>(event_type, json)?),
        "compliance.scored" => {
            let c: ComplianceScore = decode(event_type, json)?;
            check_range("score", c.score, 0.0, 100.0)?;
            EventData::ComplianceScored(c)
        }
        "kpi.reported" => {
            let k: KpiReport = decode(event_type, json)?;
            check_range("value", k.value, f64::MIN, f64::MAX)?;
            EventData::KpiReported(k)
        }
        "meta.directive.applied" => {
            EventData::DirectiveApplied(decode::<DirectiveApplied>(event_type, json)?)
        }
        "meta.directive.refused" => {
            EventData::DirectiveRefused(decode::<DirectiveRefused>(event_type, json)?)
        }
        other => {
            return Err(format!(
                "unknown event type {other:?}; a spine sends one of {}",
                INBOUND_TYPES.join(", ")
            ));
        }
    };
    if data.domain().is_empty() {
        return Err("data.domain is empty".into());
    }
    Ok(data)
}

/// The checked parts of a spine event.
pub(crate) struct SchemaChecked {
    pub data: EventData,
    pub time: Timestamp,
}

/// True for `application/json` and `…+json` media types (parameters ignored).
fn is_json_media_type(ct: &str) -> bool {
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == MEDIA_TYPE_JSON || media.ends_with("+json")
}

/// The whole schema check of one event.
pub(crate) fn check(event: &CloudEvent) -> Result<SchemaChecked, String> {
    if !INBOUND_TYPES.contains(&event.event_type.as_str()) {
        return Err(format!(
            "unknown event type {:?}; a spine sends one of {}",
            event.event_type,
            INBOUND_TYPES.join(", ")
        ));
    }
    if let Some(ct) = &event.datacontenttype
        && !is_json_media_type(ct)
    {
        return Err(format!("datacontenttype {ct:?} is not application/json"));
    }
    let json = match &event.data {
        Some(Data::Json(j)) => j.value(),
        Some(Data::Binary(_)) => {
            return Err("data_base64 is not accepted: data must be a JSON object".into());
        }
        None => return Err("data is missing".into()),
    };
    let data = decode_data(&event.event_type, json)?;
    let time = match event.time.as_deref() {
        None => return Err("time is missing (it is required on spine events)".into()),
        Some(t) => Timestamp::parse_rfc3339(t)
            .ok_or_else(|| format!("time {t:?} is not an RFC 3339 timestamp"))?,
    };
    Ok(SchemaChecked { data, time })
}
