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

/// Decodes `data` into the payload of `event_type`: unknown fields refused, every value within
/// the ranges of [`metaloop_core::protocol::validate_data`].
pub fn decode_data(event_type: &str, json: &str) -> Result<EventData, String> {
    let data = match event_type {
        "recovery.succeeded" | "recovery.failed" => {
            let r: Recovery = decode(event_type, json)?;
            if event_type == "recovery.succeeded" {
                EventData::RecoverySucceeded(r)
            } else {
                EventData::RecoveryFailed(r)
            }
        }
        "decision.made" => EventData::DecisionMade(decode::<Decision>(event_type, json)?),
        "health.changed" => EventData::HealthChanged(decode::<HealthChange>(event_type, json)?),
        "trust.exception" => EventData::TrustException(decode::<TrustException>(event_type, json)?),
        "compliance.scored" => {
            EventData::ComplianceScored(decode::<ComplianceScore>(event_type, json)?)
        }
        "kpi.reported" => EventData::KpiReported(decode::<KpiReport>(event_type, json)?),
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
    // the value ranges the supervisor holds events to (docs/PROTOCOL.md §2)
    metaloop_core::protocol::validate_data(&data).map_err(|e| e.to_string())?;
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
