//! Partial windows: events folded apart from the supervisor (by an ingest worker) and merged
//! into the open cycle in one step. Windows are sums (counts, sums of squares, sketch bins),
//! so merging a partial gives the same counts and bins as folding its events one by one. The
//! floating-point sums keep what rounding loses until the cycle closes and are then rounded
//! once ([`crate::kpi::ScoreStats`]), so the closed cycle's sums are the same to the bit
//! however its events were split and in whatever order they were merged. Only a custom KPI's
//! `last` value depends on the order: it is the value merged last.
//!
//! What a window cannot hold travels as events, folded in order by the supervisor itself:
//! directive acks and refusals (they change directives) and health changes (the health graph
//! depends on their order).

use super::validate_event;
use super::{InputError, Supervisor};
use crate::kpi::{ArmWindows, DomainWindow};
use crate::protocol::{Arm, EventData, SpineEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Events folded apart from the supervisor, to be merged into its open cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// KPI windows by domain.
    #[serde(default)]
    pub windows: BTreeMap<String, DomainWindow>,
    /// Experiment arms by (directive id, domain): the supervisor keeps only those of its
    /// running experiments in their own domain, as it does for events it folds itself.
    #[serde(default)]
    pub arms: Vec<PartialArms>,
    /// Acks, refusals and health changes, in the order they were taken.
    #[serde(default)]
    pub events: Vec<SpineEvent>,
}

/// One experiment's arms in one domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialArms {
    pub id: String,
    pub domain: String,
    pub arms: ArmWindows,
}

/// What a merge took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Events folded (window events plus the events taken one by one).
    pub accepted: u64,
    /// Events the supervisor refused, with why (an ack for an unknown directive, …).
    pub refused: Vec<(String, String)>,
}

/// The experiment arm an event reports on, if any.
pub(super) fn experiment_arm(data: &EventData) -> Option<&crate::protocol::ExperimentArm> {
    match data {
        EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => r.experiment.as_ref(),
        EventData::DecisionMade(d) => d.experiment.as_ref(),
        _ => None,
    }
}

impl Partial {
    /// Folds one event in, as [`Supervisor::ingest`] would; an invalid event is refused
    /// here and changes nothing.
    pub fn observe(&mut self, event: &SpineEvent) -> Result<(), InputError> {
        validate_event(event)?;
        match &event.data {
            EventData::DirectiveApplied(_)
            | EventData::DirectiveRefused(_)
            | EventData::HealthChanged(_) => self.events.push(event.clone()),
            data => {
                self.windows
                    .entry(data.domain().to_string())
                    .or_default()
                    .observe(data);
                if let Some(tag) = experiment_arm(data) {
                    let i = match self
                        .arms
                        .iter()
                        .position(|a| a.id == tag.id && a.domain == data.domain())
                    {
                        Some(i) => i,
                        None => {
                            self.arms.push(PartialArms {
                                id: tag.id.clone(),
                                domain: data.domain().to_string(),
                                arms: ArmWindows::default(),
                            });
                            self.arms.len() - 1
                        }
                    };
                    match tag.arm {
                        Arm::Control => self.arms[i].arms.control.observe(data),
                        Arm::Treatment => self.arms[i].arms.treatment.observe(data),
                    }
                }
            }
        }
        Ok(())
    }

    /// The checks [`Partial::observe`] makes, without folding the event in.
    pub fn check(event: &SpineEvent) -> Result<(), InputError> {
        validate_event(event)
    }

    /// Events in it.
    pub fn len(&self) -> u64 {
        self.windows.values().map(|w| w.events).sum::<u64>() + self.events.len() as u64
    }

    /// True when it holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Supervisor {
    /// Merges a partial into the open cycle: its windows added to the open windows, the arms
    /// of this supervisor's running experiments kept, and its events folded in order.
    pub fn merge_partial(&mut self, partial: &Partial) -> Merged {
        let mut merged = Merged::default();
        for (domain, w) in &partial.windows {
            self.open.entry(domain.clone()).or_default().merge_open(w);
            merged.accepted += w.events;
        }
        for a in &partial.arms {
            if let Some(ds) = self.state.directives.get(&a.id)
                && ds.directive.directive_type
                    == crate::directive::DirectiveType::ScheduleExperiment
                && ds.directive.target_domain == a.domain
                && ds.status.in_flight()
            {
                let arms = self.open_arms.entry(a.id.clone()).or_default();
                arms.control.merge_open(&a.arms.control);
                arms.treatment.merge_open(&a.arms.treatment);
            }
        }
        self.counters.accepted += merged.accepted;
        for ev in &partial.events {
            match self.ingest(ev) {
                Ok(()) => merged.accepted += 1,
                Err(e) => merged.refused.push((ev.id.clone(), e.to_string())),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SupervisorConfig;
    use crate::protocol::{
        Decision, ExperimentArm, HealthChange, HealthState, KpiReport, Recovery,
    };

    fn recovery(domain: &str, playbook: String, duration_s: f64, autonomous: bool) -> Recovery {
        Recovery {
            domain: domain.into(),
            incident_id: "i".into(),
            playbook,
            duration_s,
            autonomous,
            human_override: false,
            experiment: None,
        }
    }
    use crate::time::Timestamp;

    fn events(n: usize, seed: u64) -> Vec<SpineEvent> {
        let mut rng = seed;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng >> 33
        };
        let t0 = Timestamp::from_secs(1_767_225_600);
        (0..n)
            .map(|i| {
                let domain = ["application", "network", "storage"][next() as usize % 3].to_string();
                let r = next();
                let data = match r % 5 {
                    0 | 1 => {
                        let rec = recovery(
                            &domain,
                            format!("pb-{}", next() % 3),
                            (next() % 600) as f64 / 7.0,
                            next() % 2 == 0,
                        );
                        if r % 5 == 0 {
                            EventData::RecoverySucceeded(rec)
                        } else {
                            EventData::RecoveryFailed(rec)
                        }
                    }
                    2 => EventData::DecisionMade(Decision {
                        domain: domain.clone(),
                        decision_id: "d".into(),
                        confidence: 0.9,
                        autonomous: next() % 4 != 0,
                        approved_by_human: false,
                        overridden: next() % 9 == 0,
                        experiment: None,
                    }),
                    3 => EventData::KpiReported(KpiReport {
                        domain: domain.clone(),
                        name: "queue_depth".into(),
                        value: (next() % 1000) as f64 / 3.0,
                    }),
                    _ => EventData::HealthChanged(HealthChange {
                        domain: domain.clone(),
                        node: format!("node-{}", next() % 4),
                        state: if next() % 2 == 0 {
                            HealthState::Healthy
                        } else {
                            HealthState::Degraded
                        },
                        depends_on: vec![],
                    }),
                };
                SpineEvent {
                    id: format!("e{i}"),
                    source: "urn:spine:test".into(),
                    time: t0.plus_millis(i as i64 * 10),
                    data,
                }
            })
            .collect()
    }

    /// Folding events one by one and merging them as partials (split among workers, in any
    /// grouping) close the same cycle: same counts and bins, and once the cycle's sums are
    /// settled, the same sums to the bit.
    #[test]
    fn merged_partials_close_the_cycle_that_folding_one_by_one_closes() {
        let start = Timestamp::from_secs(1_767_225_600);
        for seed in 1..=20u64 {
            let evs = events(500, seed);
            let mut direct = Supervisor::new(SupervisorConfig::default(), start).unwrap();
            for e in &evs {
                direct.ingest(e).unwrap();
            }
            let mut via = Supervisor::new(SupervisorConfig::default(), start).unwrap();
            // three workers, each taking every third event, flushing every 37 events
            let mut taken = 0;
            for w in 0..3 {
                let mine: Vec<&SpineEvent> = evs.iter().skip(w).step_by(3).collect();
                for chunk in mine.chunks(37) {
                    let mut p = Partial::default();
                    for e in chunk {
                        p.observe(e).unwrap();
                    }
                    let m = via.merge_partial(&p);
                    assert!(m.refused.is_empty());
                    taken += m.accepted;
                }
            }
            assert_eq!(taken, evs.len() as u64);
            assert_eq!(via.counters().accepted, direct.counters().accepted);
            assert_eq!(
                direct.open.keys().collect::<Vec<_>>(),
                via.open.keys().collect::<Vec<_>>()
            );
            for (d, a) in &direct.open {
                let b = &via.open[d];
                assert_eq!(a.success, b.success, "{d}");
                assert_eq!(a.autonomy, b.autonomy, "{d}");
                assert_eq!(a.intervention, b.intervention, "{d}");
                assert_eq!(a.playbooks, b.playbooks, "{d}");
                assert_eq!(a.events, b.events, "{d}");
                assert_eq!(a.recovery.count, b.recovery.count, "{d}");
                assert_eq!(a.recovery.quantile(0.95), b.recovery.quantile(0.95), "{d}");
                let (ma, mb) = (a.recovery.mean().unwrap(), b.recovery.mean().unwrap());
                assert!(
                    (ma - mb).abs() <= 1e-9 * ma.abs().max(1.0),
                    "{d}: {ma} vs {mb}"
                );
                let (ka, kb) = (&a.custom["queue_depth"], &b.custom["queue_depth"]);
                assert_eq!(ka.count, kb.count);
                assert!((ka.mean().unwrap() - kb.mean().unwrap()).abs() < 1e-9);
                // settled as the cycle closes: bit for bit
                let (mut a, mut b) = (a.clone(), b.clone());
                a.settle();
                b.settle();
                assert_eq!(a.recovery, b.recovery, "{d}");
                assert_eq!(a.compliance, b.compliance, "{d}");
                // (`last` is the value merged last: it depends on the order)
                for (k, x) in &a.custom {
                    let y = &b.custom[k];
                    assert_eq!(
                        (x.count, x.sum, x.sum_sq),
                        (y.count, y.sum, y.sum_sq),
                        "{d} {k}"
                    );
                }
            }
            // health changes are folded one by one, in each worker's order
            assert_eq!(direct.open_health.nodes.len(), via.open_health.nodes.len());
        }
    }

    #[test]
    fn arms_of_experiments_not_running_here_are_dropped_and_invalid_events_refused() {
        let start = Timestamp::from_secs(1_767_225_600);
        let mut sup = Supervisor::new(SupervisorConfig::default(), start).unwrap();
        let mut rec = recovery("application", "pb".into(), 30.0, true);
        rec.experiment = Some(ExperimentArm {
            id: "no-such-experiment".into(),
            arm: Arm::Treatment,
        });
        let ev = SpineEvent {
            id: "a".into(),
            source: "urn:spine:test".into(),
            time: start,
            data: EventData::RecoverySucceeded(rec),
        };
        let mut p = Partial::default();
        p.observe(&ev).unwrap();
        assert_eq!(p.arms.len(), 1);
        let m = sup.merge_partial(&p);
        assert_eq!(m.accepted, 1);
        assert!(
            sup.open_arms.is_empty(),
            "an unknown experiment's arm is not kept"
        );

        let mut bad = ev.clone();
        if let EventData::RecoverySucceeded(r) = &mut bad.data {
            r.duration_s = f64::NAN;
        }
        assert!(p.observe(&bad).is_err());
        assert_eq!(p.len(), 1, "a refused event changes nothing");
    }
}
