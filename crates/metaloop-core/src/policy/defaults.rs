//! The default policies: the seed's two, corrected, plus playbook retirement and cascade
//! containment.

use super::{Condition, DirectiveTemplate, MetaPolicy, TargetSelector};
use crate::directive::{DirectiveType, ImpactLevel};
use crate::kpi;
use serde_json::json;
use std::collections::BTreeMap;

/// The policies a supervisor starts with.
pub fn default_policies() -> Vec<MetaPolicy> {
    vec![
        MetaPolicy {
            id: "contain_dependency_cascade".into(),
            name: "Contain a dependency cascade at its root".into(),
            description:
                "One unhealthy node degrades dependents in other domains: fail the root over, \
                          instead of tuning every domain it drags down."
                    .into(),
            condition: Condition {
                all: vec![
                    Condition {
                        pattern: Some("dependency_cascade".into()),
                        ..Default::default()
                    },
                    Condition {
                        min_underperforming_domains: Some(2),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            directive_template: DirectiveTemplate {
                directive_type: DirectiveType::EnablePlaybook,
                action: "enable_failover_playbook".into(),
                target: TargetSelector::PatternRoot,
                subsystem: "executor".into(),
                knob: "playbook.failover-{node}.enabled".into(),
                parameters: json!({ "value": true }),
                target_kpi: kpi::OVERALL_SUCCESS_RATE.into(),
                impact_level: ImpactLevel::Moderate,
                side_effects: BTreeMap::from([(kpi::MEAN_RECOVERY_TIME.into(), 0.25)]),
                min_effect: Some(0.01),
                expected_impact: "the root node fails over; its dependents recover with it".into(),
                experiment_first: false,
                experiment_fraction: None,
            },
            confidence_threshold: 0.70,
            min_evidence: 0.95,
            approval_override: None,
            for_cycles: 1,
            cooldown_cycles: 6,
            priority: 0,
            enabled: true,
            mode: Default::default(),
        },
        MetaPolicy {
            id: "retire_failing_playbook".into(),
            name: "Retire a failing playbook".into(),
            description:
                "A playbook whose autonomous success rate is credibly below 60 % is disabled; \
                          its incidents go to the fallback playbook."
                    .into(),
            condition: Condition {
                playbook_success_below: Some(0.60),
                playbook_min_runs: Some(30),
                playbook_credibility: Some(0.95),
                ..Default::default()
            },
            directive_template: DirectiveTemplate {
                directive_type: DirectiveType::DisablePlaybook,
                action: "retire_playbook".into(),
                target: TargetSelector::FailingPlaybook,
                subsystem: "executor".into(),
                knob: "playbook.{playbook}.enabled".into(),
                parameters: json!({ "value": false }),
                target_kpi: kpi::OVERALL_SUCCESS_RATE.into(),
                impact_level: ImpactLevel::Moderate,
                side_effects: BTreeMap::from([(kpi::MEAN_RECOVERY_TIME.into(), 0.25)]),
                min_effect: Some(0.01),
                expected_impact: "incidents of the failing playbook go to its fallback".into(),
                experiment_first: false,
                experiment_fraction: None,
            },
            confidence_threshold: 0.70,
            min_evidence: 0.95,
            approval_override: None,
            for_cycles: 1,
            cooldown_cycles: 12,
            priority: 1,
            enabled: true,
            mode: Default::default(),
        },
        MetaPolicy {
            id: "improve_success_rate".into(),
            name: "Improve success rate".into(),
            description:
                "Success rate 5 points or more below goal: raise the worst domain's planner \
                          confidence threshold by 0.05, trading some autonomy for success."
                    .into(),
            condition: Condition {
                goal_gap_metric: Some(kpi::OVERALL_SUCCESS_RATE.into()),
                goal_gap_threshold: Some(0.05),
                ..Default::default()
            },
            directive_template: DirectiveTemplate {
                directive_type: DirectiveType::AdjustThreshold,
                action: "increase_playbook_confidence_threshold".into(),
                target: TargetSelector::WorstDomain,
                subsystem: "planner".into(),
                knob: crate::protocol::KNOB_PLANNER_THRESHOLD.into(),
                parameters: json!({ "adjustment": 0.05 }),
                target_kpi: kpi::OVERALL_SUCCESS_RATE.into(),
                impact_level: ImpactLevel::Low,
                side_effects: BTreeMap::from([
                    (kpi::AUTONOMY_RATE.into(), 0.10),
                    (kpi::HUMAN_INTERVENTION_RATE.into(), 0.05),
                    (kpi::MEAN_RECOVERY_TIME.into(), 0.15),
                ]),
                min_effect: Some(0.01),
                expected_impact: "fewer low-confidence autonomous runs fail; more go to humans"
                    .into(),
                experiment_first: false,
                experiment_fraction: None,
            },
            confidence_threshold: 0.70,
            min_evidence: 0.95,
            approval_override: None,
            for_cycles: 2,
            cooldown_cycles: 12,
            priority: 2,
            enabled: true,
            mode: Default::default(),
        },
        MetaPolicy {
            id: "reduce_recovery_latency".into(),
            name: "Reduce recovery latency".into(),
            description:
                "Mean recovery time 10 s or more worse than goal: enable synthetic probes in the \
                          slowest domain so incidents are detected sooner."
                    .into(),
            condition: Condition {
                goal_gap_metric: Some(kpi::MEAN_RECOVERY_TIME.into()),
                goal_gap_threshold: Some(10.0),
                ..Default::default()
            },
            directive_template: DirectiveTemplate {
                directive_type: DirectiveType::EnableProbe,
                action: "enable_synthetic_probe".into(),
                target: TargetSelector::WorstDomain,
                subsystem: "sensing".into(),
                knob: crate::protocol::probe_knob("synthetic"),
                parameters: json!({ "value": true }),
                target_kpi: kpi::MEAN_RECOVERY_TIME.into(),
                impact_level: ImpactLevel::Moderate,
                side_effects: BTreeMap::new(),
                min_effect: Some(0.05),
                expected_impact: "incidents detected sooner, so resolved sooner".into(),
                experiment_first: false,
                experiment_fraction: None,
            },
            confidence_threshold: 0.70,
            min_evidence: 0.95,
            approval_override: None,
            for_cycles: 2,
            cooldown_cycles: 12,
            priority: 3,
            enabled: true,
            mode: Default::default(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        for p in default_policies() {
            p.validate().unwrap();
        }
    }
}
