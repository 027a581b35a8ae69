//! A domain of the spine: its incident mix, playbooks, planner, humans and probes, the knobs
//! metaloop may turn, and the conditions (faults, overload, drift) it runs under.

use crate::human::HumanTeam;
use crate::planner::{ConfidenceBand, Planner, acts_autonomously};
use crate::playbook::Playbook;
use metaloop_core::time::Timestamp;

/// The only probe of the model: a synthetic check that speeds up detection.
pub const PROBE_SYNTHETIC: &str = "synthetic";

/// The coefficient of variation of every simulated duration (detection and execution).
pub(crate) const DURATION_CV: f64 = 0.5;

/// Detection delay with and without the synthetic probe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detection {
    /// Mean detection delay without the probe, seconds.
    pub(crate) without_probe_s: f64,
    /// Mean detection delay with the probe, seconds.
    pub(crate) with_probe_s: f64,
}

/// The fixed description of a domain (its knobs' defaults included).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DomainSpec {
    /// `infrastructure`, `application`, `security`.
    pub(crate) name: String,
    /// Mean number of incidents per 300 s while healthy.
    pub(crate) incidents_per_300s: f64,
    pub(crate) playbooks: Vec<Playbook>,
    pub(crate) planner: Planner,
    pub(crate) humans: HumanTeam,
    pub(crate) detection: Detection,
    /// Default of `planner.confidence_threshold`.
    pub(crate) threshold: f64,
    /// Default of `probe.synthetic.enabled`.
    pub(crate) probe_enabled: bool,
    /// Mean and standard deviation of `compliance.scored`.
    pub(crate) compliance: (f64, f64),
    /// Mean `trust.exception` events per hour.
    pub(crate) trust_exceptions_per_hour: f64,
}

impl DomainSpec {
    /// Index of a playbook by name.
    pub(crate) fn playbook_index(&self, name: &str) -> Option<usize> {
        self.playbooks.iter().position(|p| p.name == name)
    }

    /// The knobs as they are when the simulation starts.
    pub(crate) fn default_knobs(&self) -> Knobs {
        Knobs {
            threshold: self.threshold,
            playbook_enabled: self.playbooks.iter().map(|p| p.enabled).collect(),
            probe_enabled: self.probe_enabled,
            review_band: 0.0,
        }
    }

    /// Incident playbooks (share > 0) in the order incidents pick them.
    pub(crate) fn incident_playbooks(&self) -> impl Iterator<Item = (usize, &Playbook)> {
        self.playbooks
            .iter()
            .enumerate()
            .filter(|(_, p)| p.share > 0.0)
    }
}

/// The knobs metaloop can turn in one domain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Knobs {
    /// `planner.confidence_threshold`.
    pub(crate) threshold: f64,
    /// `playbook.<name>.enabled`, indexed like `DomainSpec::playbooks`.
    pub(crate) playbook_enabled: Vec<bool>,
    /// `probe.synthetic.enabled`.
    pub(crate) probe_enabled: bool,
    /// `planner.review_band`: incidents whose confidence is this close below the threshold
    /// run the planner's playbook once a human approves it, instead of being handled by hand.
    pub(crate) review_band: f64,
}

impl Knobs {
    /// The playbook that runs for an incident planned for `planned`: itself when enabled,
    /// else its fallback when that is enabled, else none (a human handles it by hand).
    pub(crate) fn effective_playbook(&self, spec: &DomainSpec, planned: usize) -> Option<usize> {
        if self.playbook_enabled[planned] {
            return Some(planned);
        }
        let fallback = spec.playbooks[planned].fallback.as_deref()?;
        let index = spec.playbook_index(fallback)?;
        self.playbook_enabled[index].then_some(index)
    }
}

/// What the environment does to a domain at some moment (as opposed to the knobs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Conditions {
    /// The moment playbook qualities are evaluated at.
    pub(crate) at: Timestamp,
    /// Fraction of success lost to a degraded health-graph node, 0 when healthy.
    pub(crate) fault_penalty: f64,
    /// True while the human team is overloaded.
    pub(crate) overloaded: bool,
    /// Multiplies every success probability (the hour's difficulty; 1 without a daily cycle).
    pub(crate) success_factor: f64,
    /// Multiplies every execution time (the hour's difficulty; 1 without a daily cycle).
    pub(crate) exec_factor: f64,
}

impl Conditions {
    /// Conditions at `at` with no fault, no overload and no daily cycle.
    #[cfg(test)]
    pub(crate) fn calm(at: Timestamp) -> Self {
        Conditions {
            at,
            fault_penalty: 0.0,
            overloaded: false,
            success_factor: 1.0,
            exec_factor: 1.0,
        }
    }
}

/// A human's approval of the planner's playbook takes this fraction of the time the human
/// would take to handle the incident by hand.
pub(crate) const REVIEW_DELAY_FRACTION: f64 = 0.25;

/// A domain's spec, knobs and conditions together: everything an incident's fate depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Situation<'a> {
    pub(crate) spec: &'a DomainSpec,
    pub(crate) knobs: &'a Knobs,
    pub(crate) conditions: Conditions,
}

impl Situation<'_> {
    /// True when the planner acts alone on an incident of `band`.
    pub(crate) fn acts_autonomously(&self, band: &ConfidenceBand) -> bool {
        acts_autonomously(band.confidence, self.knobs.threshold)
    }

    /// True when an incident of `band` falls in the review band: below the threshold by at
    /// most `planner.review_band`, so a human approves the planner's playbook rather than
    /// handling the incident by hand.
    pub(crate) fn reviewed(&self, band: &ConfidenceBand) -> bool {
        !self.acts_autonomously(band)
            && band.confidence >= self.knobs.threshold - self.knobs.review_band - 1e-9
    }

    /// Mean wait for a human's approval of a reviewed incident, seconds.
    pub(crate) fn review_delay_s(&self) -> f64 {
        REVIEW_DELAY_FRACTION
            * self.spec.humans.exec_mean_s(self.conditions.overloaded)
            * self.conditions.exec_factor
    }

    /// Success probability when `playbook` runs without a human for an incident of `band`.
    pub(crate) fn autonomous_success(&self, band: &ConfidenceBand, playbook: usize) -> f64 {
        let quality = self.spec.playbooks[playbook].quality.at(self.conditions.at);
        let c = &self.conditions;
        (band.success * quality * (1.0 - c.fault_penalty) * c.success_factor).clamp(0.0, 1.0)
    }

    /// Mean execution time when `playbook` runs without a human, seconds.
    pub(crate) fn autonomous_exec_mean_s(&self, playbook: usize) -> f64 {
        self.spec.playbooks[playbook].exec_mean_s * self.conditions.exec_factor
    }

    /// Success probability of a human-handled incident.
    pub(crate) fn human_success(&self) -> f64 {
        let h = self.spec.humans.success(self.conditions.overloaded);
        let c = &self.conditions;
        (h * (1.0 - c.fault_penalty) * c.success_factor).clamp(0.0, 1.0)
    }

    /// Mean execution time of a human-handled incident, seconds.
    pub(crate) fn human_exec_mean_s(&self) -> f64 {
        self.spec.humans.exec_mean_s(self.conditions.overloaded) * self.conditions.exec_factor
    }

    /// Probability that a human overrides an autonomous decision.
    pub(crate) fn override_prob(&self) -> f64 {
        self.spec.humans.override_prob
    }

    /// Mean detection delay, seconds.
    pub(crate) fn detection_mean_s(&self) -> f64 {
        if self.knobs.probe_enabled {
            self.spec.detection.with_probe_s
        } else {
            self.spec.detection.without_probe_s
        }
    }
}

/// A domain small enough to integrate by hand, for unit tests.
#[cfg(test)]
pub(crate) mod toy {
    use super::*;

    /// A domain small enough to integrate by hand.
    pub(crate) fn spec() -> DomainSpec {
        DomainSpec {
            name: "toy".into(),
            incidents_per_300s: 100.0,
            playbooks: vec![
                Playbook::new("a", 0.5, 1.0, 10.0, "b"),
                Playbook::new("b", 0.5, 0.8, 20.0, "a"),
            ],
            planner: Planner::new(&[(0.6, 0.4, 0.5), (0.9, 0.6, 0.9)]),
            humans: HumanTeam {
                success: 0.95,
                exec_mean_s: 50.0,
                override_prob: 0.1,
                overload: None,
            },
            detection: Detection {
                without_probe_s: 5.0,
                with_probe_s: 1.0,
            },
            threshold: 0.7,
            probe_enabled: false,
            compliance: (97.0, 0.8),
            trust_exceptions_per_hour: 1.0,
        }
    }
}
