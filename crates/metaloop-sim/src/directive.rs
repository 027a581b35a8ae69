//! Directives as the simulated spine's planner receives them: which knob, what new value,
//! and why one is refused.

use crate::domain::{DomainSpec, Knobs, PROBE_SYNTHETIC};
use crate::planner::{REVIEW_BAND_RANGE, THRESHOLD_RANGE, quantize_threshold};
use metaloop_core::protocol::{DirectiveMessage, KNOB_PLANNER_REVIEW_BAND, KNOB_PLANNER_THRESHOLD};
use serde_json::Value;

/// Why the spine refused a directive; its text is the `reason` of `meta.directive.refused`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The target domain does not exist.
    #[error("unknown domain '{domain}' (known: {known})")]
    UnknownDomain { domain: String, known: String },
    /// The knob name matches no knob pattern.
    #[error(
        "unknown knob '{knob}' in domain {domain} (known: planner.confidence_threshold, planner.review_band, playbook.<name>.enabled, probe.<name>.enabled)"
    )]
    UnknownKnob { domain: String, knob: String },
    /// `playbook.<name>.enabled` names no playbook of the domain.
    #[error("unknown playbook '{playbook}' in domain {domain} (known: {known})")]
    UnknownPlaybook {
        domain: String,
        playbook: String,
        known: String,
    },
    /// `probe.<name>.enabled` names no probe of the domain.
    #[error("unknown probe '{probe}' in domain {domain} (known: {PROBE_SYNTHETIC})")]
    UnknownProbe { domain: String, probe: String },
    /// The action is neither `adjust` nor `set`.
    #[error("unknown action '{action}' (expected 'adjust' or 'set')")]
    UnknownAction { action: String },
    /// `adjust` on an on/off knob.
    #[error("action 'adjust' does not apply to boolean knob {knob} (use 'set')")]
    AdjustOnBoolean { knob: String },
    /// A parameter is missing or has the wrong type.
    #[error("parameters.{field} must be {expected}, got {got}")]
    BadParameter {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
    /// The threshold would leave its allowed range.
    #[error("value {value} out of range [{}, {}] for planner.confidence_threshold", THRESHOLD_RANGE.0, THRESHOLD_RANGE.1)]
    ThresholdOutOfRange { value: f64 },
    /// The review band would leave its allowed range.
    #[error("value {value} out of range [{}, {}] for planner.review_band", REVIEW_BAND_RANGE.0, REVIEW_BAND_RANGE.1)]
    ReviewBandOutOfRange { value: f64 },
    /// An experiment already runs in the domain.
    #[error("experiment {id} already runs in domain {domain} (one at a time)")]
    ExperimentRunning { domain: String, id: String },
    /// Disabling the playbook would leave some incidents with no playbook at all.
    #[error(
        "disabling playbook {playbook} would leave incidents planned for {stranded} with no enabled playbook (their fallback is disabled)"
    )]
    NoPlaybookLeft { playbook: String, stranded: String },
}

/// A knob of one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Knob {
    Threshold,
    ReviewBand,
    Playbook(usize),
    Probe,
}

/// A validated change: the knobs after it, and the knob's value before and after as JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KnobChange {
    pub(crate) knob: Knob,
    pub(crate) knobs: Knobs,
    pub(crate) previous: Value,
    pub(crate) current: Value,
}

/// Resolves a knob name in a domain.
pub(crate) fn parse_knob(spec: &DomainSpec, knob: &str) -> Result<Knob, Refusal> {
    if knob == KNOB_PLANNER_THRESHOLD {
        return Ok(Knob::Threshold);
    }
    if knob == KNOB_PLANNER_REVIEW_BAND {
        return Ok(Knob::ReviewBand);
    }
    if let Some(name) = knob
        .strip_prefix("playbook.")
        .and_then(|k| k.strip_suffix(".enabled"))
    {
        return spec
            .playbook_index(name)
            .map(Knob::Playbook)
            .ok_or_else(|| Refusal::UnknownPlaybook {
                domain: spec.name.clone(),
                playbook: name.to_string(),
                known: spec
                    .playbooks
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
    }
    if let Some(name) = knob
        .strip_prefix("probe.")
        .and_then(|k| k.strip_suffix(".enabled"))
    {
        if name == PROBE_SYNTHETIC {
            return Ok(Knob::Probe);
        }
        return Err(Refusal::UnknownProbe {
            domain: spec.name.clone(),
            probe: name.to_string(),
        });
    }
    Err(Refusal::UnknownKnob {
        domain: spec.name.clone(),
        knob: knob.to_string(),
    })
}

/// Reads the current value of a knob as JSON.
pub(crate) fn knob_value(knobs: &Knobs, knob: Knob) -> Value {
    match knob {
        Knob::Threshold => Value::from(knobs.threshold),
        Knob::ReviewBand => Value::from(knobs.review_band),
        Knob::Playbook(i) => Value::from(knobs.playbook_enabled[i]),
        Knob::Probe => Value::from(knobs.probe_enabled),
    }
}

/// Validates a directive against a domain and computes the change it makes.
pub(crate) fn interpret(
    spec: &DomainSpec,
    knobs: &Knobs,
    d: &DirectiveMessage,
) -> Result<KnobChange, Refusal> {
    interpret_action(spec, knobs, &d.knob, &d.action, &d.parameters)
}

/// Validates `action` (`adjust` or `set`) with `parameters` on `knob` of a domain and computes
/// the change it makes.
pub(crate) fn interpret_action(
    spec: &DomainSpec,
    knobs: &Knobs,
    knob_name: &str,
    action: &str,
    parameters: &Value,
) -> Result<KnobChange, Refusal> {
    let knob = parse_knob(spec, knob_name)?;
    if action != "adjust" && action != "set" {
        return Err(Refusal::UnknownAction {
            action: action.to_string(),
        });
    }
    let mut next = knobs.clone();
    match knob {
        Knob::Threshold => {
            let value = if action == "adjust" {
                knobs.threshold + number(parameters, "adjustment")?
            } else {
                number(parameters, "value")?
            };
            let value = quantize_threshold(value);
            if !(THRESHOLD_RANGE.0..=THRESHOLD_RANGE.1).contains(&value) {
                return Err(Refusal::ThresholdOutOfRange { value });
            }
            next.threshold = value;
        }
        Knob::ReviewBand => {
            let value = if action == "adjust" {
                knobs.review_band + number(parameters, "adjustment")?
            } else {
                number(parameters, "value")?
            };
            let value = quantize_threshold(value);
            if !(REVIEW_BAND_RANGE.0..=REVIEW_BAND_RANGE.1).contains(&value) {
                return Err(Refusal::ReviewBandOutOfRange { value });
            }
            next.review_band = value;
        }
        Knob::Playbook(i) => {
            next.playbook_enabled[i] = switch(knob_name, action, parameters)?;
            let stranded: Vec<&str> = spec
                .incident_playbooks()
                .filter(|(p, _)| next.effective_playbook(spec, *p).is_none())
                .map(|(_, p)| p.name.as_str())
                .collect();
            if !stranded.is_empty() {
                return Err(Refusal::NoPlaybookLeft {
                    playbook: spec.playbooks[i].name.clone(),
                    stranded: stranded.join(", "),
                });
            }
        }
        Knob::Probe => next.probe_enabled = switch(knob_name, action, parameters)?,
    }
    Ok(KnobChange {
        knob,
        previous: knob_value(knobs, knob),
        current: knob_value(&next, knob),
        knobs: next,
    })
}

pub(crate) fn number(parameters: &Value, field: &'static str) -> Result<f64, Refusal> {
    match parameters.get(field).and_then(Value::as_f64) {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(Refusal::BadParameter {
            field,
            expected: "a number",
            got: shown(parameters.get(field)),
        }),
    }
}

fn switch(knob: &str, action: &str, parameters: &Value) -> Result<bool, Refusal> {
    if action == "adjust" {
        return Err(Refusal::AdjustOnBoolean {
            knob: knob.to_string(),
        });
    }
    parameters
        .get("value")
        .and_then(Value::as_bool)
        .ok_or_else(|| Refusal::BadParameter {
            field: "value",
            expected: "true or false",
            got: shown(parameters.get("value")),
        })
}

fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "nothing".to_string(), Value::to_string)
}
