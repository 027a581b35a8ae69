//! What every behaviour test starts from: virtual times and directives.

use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::time::Timestamp;

/// The tests' common start, 2026-01-01T00:00:00Z, plus whole minutes.
pub fn minutes(m: i64) -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .plus_millis(m * 60_000)
}

/// A directive with the fields tests care about.
pub fn directive(
    id: &str,
    domain: &str,
    knob: &str,
    action: &str,
    parameters: serde_json::Value,
    kpi: &str,
) -> DirectiveMessage {
    DirectiveMessage {
        directive_id: id.to_string(),
        directive_type: "ADJUST_THRESHOLD".to_string(),
        target_domain: domain.to_string(),
        target_subsystem: "planner".to_string(),
        knob: knob.to_string(),
        action: action.to_string(),
        parameters,
        target_kpi: kpi.to_string(),
        rollback_of: None,
        justification: "test".to_string(),
    }
}
