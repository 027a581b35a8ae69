//! The approval matrix: which impact levels need which approvals in which environment.

use crate::directive::ImpactLevel;
use serde::{Deserialize, Serialize};

/// What a directive needs before it may be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Distinct approvers needed (0 = published automatically).
    pub approvals: u32,
    /// Whether humans are notified when it is published automatically.
    pub notify: bool,
    /// Whether an approval must carry a review note.
    pub review_note: bool,
}

/// The rule for one impact level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    pub impact: ImpactLevel,
    /// Approvals needed in the listed environments.
    pub approvals: u32,
    /// Environments where `approvals` apply; empty means every environment.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Approvals needed elsewhere.
    #[serde(default)]
    pub approvals_elsewhere: u32,
    #[serde(default)]
    pub notify: bool,
    #[serde(default)]
    pub review_note: bool,
}

/// Impact × environment → requirement, plus the approval time-to-live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalMatrix {
    pub rules: Vec<ApprovalRule>,
    /// How long a pending approval stays open, seconds.
    pub ttl_seconds: i64,
}

impl Default for ApprovalMatrix {
    /// The seed's matrix: MINIMAL auto; LOW auto + notify; MODERATE one approval in
    /// production, auto + notify elsewhere; HIGH always one approval; CRITICAL two distinct
    /// approvers with a review note. Approvals expire after 30 minutes.
    fn default() -> Self {
        let rule =
            |impact, approvals, envs: &[&str], elsewhere, notify, review_note| ApprovalRule {
                impact,
                approvals,
                environments: envs.iter().map(|s| s.to_string()).collect(),
                approvals_elsewhere: elsewhere,
                notify,
                review_note,
            };
        ApprovalMatrix {
            rules: vec![
                rule(ImpactLevel::Minimal, 0, &[], 0, false, false),
                rule(ImpactLevel::Low, 0, &[], 0, true, false),
                rule(ImpactLevel::Moderate, 1, &["production"], 0, true, false),
                rule(ImpactLevel::High, 1, &[], 1, true, false),
                rule(ImpactLevel::Critical, 2, &[], 2, true, true),
            ],
            ttl_seconds: 1800,
        }
    }
}

impl ApprovalMatrix {
    /// The requirement for `impact` in `environment`. An impact level without a rule needs
    /// the strictest rule at or below it, and never less than one approval above LOW.
    pub fn requirement(&self, impact: ImpactLevel, environment: &str) -> Requirement {
        let rule = self
            .rules
            .iter()
            .filter(|r| r.impact <= impact)
            .max_by_key(|r| r.impact);
        let Some(rule) = rule else {
            return Requirement {
                approvals: 1,
                notify: true,
                review_note: false,
            };
        };
        let applies =
            rule.environments.is_empty() || rule.environments.iter().any(|e| e == environment);
        let mut approvals = if applies {
            rule.approvals
        } else {
            rule.approvals_elsewhere
        };
        if rule.impact < impact && impact > ImpactLevel::Low {
            approvals = approvals.max(1);
        }
        Requirement {
            approvals,
            notify: rule.notify || approvals > 0,
            review_note: rule.review_note,
        }
    }

    /// Checks the matrix for mistakes a config file could make.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl_seconds <= 0 {
            return Err(format!(
                "approval ttl_seconds must be positive, got {}",
                self.ttl_seconds
            ));
        }
        let mut seen = Vec::new();
        for r in &self.rules {
            if seen.contains(&r.impact) {
                return Err(format!("approval rule for {} appears twice", r.impact));
            }
            seen.push(r.impact);
        }
        let critical = self.requirement(ImpactLevel::Critical, "production");
        if critical.approvals < 2 || !critical.review_note {
            return Err("CRITICAL directives must need two approvers and a review note".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matrix_follows_the_seed() {
        let m = ApprovalMatrix::default();
        let req = |i, e| m.requirement(i, e);
        assert_eq!(req(ImpactLevel::Minimal, "production").approvals, 0);
        assert!(!req(ImpactLevel::Minimal, "production").notify);
        assert_eq!(req(ImpactLevel::Low, "production").approvals, 0);
        assert!(req(ImpactLevel::Low, "production").notify);
        assert_eq!(req(ImpactLevel::Moderate, "production").approvals, 1);
        assert_eq!(req(ImpactLevel::Moderate, "staging").approvals, 0);
        assert!(req(ImpactLevel::Moderate, "staging").notify);
        assert_eq!(req(ImpactLevel::High, "staging").approvals, 1);
        let c = req(ImpactLevel::Critical, "staging");
        assert_eq!((c.approvals, c.review_note), (2, true));
        assert!(m.validate().is_ok());
    }

    #[test]
    fn missing_rules_never_lower_the_bar() {
        let m = ApprovalMatrix {
            rules: vec![ApprovalRule {
                impact: ImpactLevel::Minimal,
                approvals: 0,
                environments: vec![],
                approvals_elsewhere: 0,
                notify: false,
                review_note: false,
            }],
            ttl_seconds: 60,
        };
        assert_eq!(m.requirement(ImpactLevel::High, "production").approvals, 1);
        assert!(
            m.validate().is_err(),
            "critical without two approvers is refused"
        );
    }
}
