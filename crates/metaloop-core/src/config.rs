//! The supervisor's configuration.

use crate::alert::AlertConfig;
use crate::goal::{Goal, default_goals};
use crate::pipeline::ApprovalMatrix;
use crate::policy::{MetaPolicy, default_policies};
use crate::snapshot::SnapshotBuilder;
use crate::verify::{Outcome, VerifyConfig};
use serde::{Deserialize, Serialize};

/// Everything the core needs to decide; validated before use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// `production`, `staging`, …: selects approval rules.
    pub environment: String,
    /// Seconds between cycles.
    pub cycle_seconds: i64,
    pub goals: Vec<Goal>,
    pub policies: Vec<MetaPolicy>,
    pub approval: ApprovalMatrix,
    pub snapshot: SnapshotBuilder,
    pub verification: VerifyConfig,
    pub alerts: AlertConfig,
    /// Seconds a published directive may wait for its ack before it is recorded and alerted.
    pub ack_timeout_seconds: i64,
    /// Verdicts that trigger a rollback of the directive.
    pub rollback_on: Vec<Outcome>,
    /// An `inconclusive` verdict (not in `rollback_on`) whose estimates lean worse — the
    /// target's estimated effect below zero, or a guardrail's estimated degradation beyond
    /// its tolerance — rolls the change back as well as asking humans to review it: a change
    /// that could not prove itself and looks harmful does not stay while they decide.
    pub rollback_inconclusive_leaning_worse: bool,
    /// Seed of the directive and snapshot ids (uuid v7), so runs are reproducible.
    pub id_seed: u64,
    /// The supervisor's name in the ledger.
    pub actor: String,
    /// How often a policy may reverse a knob's last change.
    pub flap: FlapBudget,
    /// Shadow mode for the whole supervisor: every decision is recorded as a would-have
    /// (shadow) directive and nothing is published.
    pub shadow: bool,
}

/// Flap control: a policy may reverse a knob's last change at most `max_reversals` times in
/// `window_cycles` cycles (rollbacks, which restore a value known to be safe, are never held
/// back but do count).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlapBudget {
    pub max_reversals: u32,
    pub window_cycles: u64,
}

impl Default for FlapBudget {
    fn default() -> Self {
        FlapBudget {
            max_reversals: 1,
            window_cycles: 12,
        }
    }
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            environment: "production".into(),
            cycle_seconds: 300,
            goals: default_goals(),
            policies: default_policies(),
            approval: ApprovalMatrix::default(),
            snapshot: SnapshotBuilder::default(),
            verification: VerifyConfig::default(),
            alerts: AlertConfig::default(),
            ack_timeout_seconds: 600,
            rollback_on: vec![Outcome::Degraded, Outcome::NoEffect],
            rollback_inconclusive_leaning_worse: true,
            id_seed: 0,
            actor: "metaloop".into(),
            flap: FlapBudget::default(),
            shadow: false,
        }
    }
}

impl SupervisorConfig {
    /// How long after a change its domain's data is left out of both windows, ms.
    pub fn settle_millis(&self) -> i64 {
        i64::from(self.verification.settle_cycles) * self.cycle_seconds * 1000
    }

    /// Checks the configuration; the error names the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.environment.trim().is_empty() {
            return Err("environment must not be empty".into());
        }
        if self.cycle_seconds <= 0 {
            return Err(format!(
                "cycle_seconds must be positive, got {}",
                self.cycle_seconds
            ));
        }
        if self.ack_timeout_seconds <= 0 {
            return Err(format!(
                "ack_timeout_seconds must be positive, got {}",
                self.ack_timeout_seconds
            ));
        }
        let mut kpis = Vec::new();
        for g in &self.goals {
            if !g.target.is_finite() {
                return Err(format!("goal {}: target must be a finite number", g.kpi));
            }
            if kpis.contains(&&g.kpi) {
                return Err(format!("goal {} appears twice", g.kpi));
            }
            kpis.push(&g.kpi);
        }
        let mut ids = Vec::new();
        for p in &self.policies {
            p.validate()?;
            p.validate_against(&self.goals)?;
            if ids.contains(&&p.id) {
                return Err(format!("policy {} appears twice", p.id));
            }
            ids.push(&p.id);
        }
        if self.rollback_on.contains(&Outcome::Verified) {
            return Err("rollback_on must not contain verified".into());
        }
        self.approval.validate()?;
        self.verification.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directive::ImpactLevel;

    #[test]
    fn default_config_is_valid() {
        SupervisorConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |f: &dyn Fn(&mut SupervisorConfig), needle: &str| {
            let mut c = SupervisorConfig::default();
            f(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(needle), "expected {needle:?} in {err:?}");
        };
        bad(&|c| c.cycle_seconds = 0, "cycle_seconds");
        bad(&|c| c.environment = " ".into(), "environment");
        bad(&|c| c.ack_timeout_seconds = -1, "ack_timeout_seconds");
        bad(&|c| c.rollback_on.push(Outcome::Verified), "rollback_on");
        bad(&|c| c.verification.alpha = 0.7, "verification.alpha");
        bad(&|c| c.verification.min_cycles = 0, "min_cycles");
        bad(&|c| c.approval.ttl_seconds = 0, "ttl_seconds");
        bad(
            &|c| {
                c.approval
                    .rules
                    .retain(|r| r.impact != ImpactLevel::Critical)
            },
            "CRITICAL",
        );
        bad(&|c| c.goals.push(c.goals[0].clone()), "appears twice");
        bad(&|c| c.policies.push(c.policies[0].clone()), "appears twice");
        bad(
            &|c| c.policies[0].confidence_threshold = 1.5,
            "confidence_threshold",
        );
        bad(
            &|c| c.policies[1].directive_template.target_kpi = "happiness".into(),
            "happiness",
        );
        bad(
            &|c| {
                c.policies[2].directive_template.parameters =
                    serde_json::json!({"adjustment": "lots"})
            },
            "adjustment",
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err =
            serde_json::from_str::<SupervisorConfig>(r#"{"enviroment": "staging"}"#).unwrap_err();
        assert!(err.to_string().contains("enviroment"), "{err}");
    }
}
