//! The scenarios: parameter sets of the model, each built to test one thing about the
//! supervisor. The numbers are calibrated with the analytic model (`kpis::expected`); see the
//! crate's calibration tests for the values they produce.

use crate::domain::{Detection, DomainSpec};
use crate::health::{FaultScript, HealthSpec, NodeSpec};
use crate::human::{HumanTeam, Overload};
use crate::planner::Planner;
use crate::playbook::{Playbook, Quality, failover_playbook};
use metaloop_core::protocol::{KNOB_PLANNER_THRESHOLD, playbook_knob};
use metaloop_core::time::Timestamp;
use std::fmt;
use std::str::FromStr;

/// A named situation the simulated spine can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Success below target; raising the threshold 0.70 → 0.75 is the right move.
    Seed,
    /// An application playbook decays; disabling it is the right move.
    Drift,
    /// Nothing any directive does changes anything.
    Noise,
    /// Raising a threshold overloads the human team after a delay.
    BadDirective,
    /// One infrastructure fault degrades application and security too.
    Correlated,
    /// Like seed, but the human approver never answers.
    ApproverAway,
}

impl Scenario {
    /// Every scenario, in a stable order.
    pub const ALL: [Scenario; 6] = [
        Scenario::Seed,
        Scenario::Drift,
        Scenario::Noise,
        Scenario::BadDirective,
        Scenario::Correlated,
        Scenario::ApproverAway,
    ];

    /// The scenario's name as used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Seed => "seed",
            Scenario::Drift => "drift",
            Scenario::Noise => "noise",
            Scenario::BadDirective => "bad-directive",
            Scenario::Correlated => "correlated",
            Scenario::ApproverAway => "approver-away",
        }
    }

    /// One sentence on what the scenario is and what the right response is.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Seed => {
                "success 87 % against a 95 % target in every domain; raising a domain's planner threshold 0.70 -> 0.75 is the right move (a further raise buys little success for much autonomy)"
            }
            Scenario::Drift => {
                "healthy domains, but application playbook restart-service decays from 20 to 50 minutes in; disabling it (its fallback redeploy-service is sound) is the right move"
            }
            Scenario::Noise => {
                "no directive changes anything (no confidence mass near any allowed threshold, probes and fallbacks equivalent): every directive is a false positive"
            }
            Scenario::BadDirective => {
                "like seed, but the human team is small: 2 minutes after a threshold rises above 0.70 it overloads, so the raise truly hurts success and recovery time"
            }
            Scenario::Correlated => {
                "healthy domains until infrastructure/db-primary degrades 20 minutes in and drags application and security down; enabling infrastructure playbook failover-db-primary is the one root fix"
            }
            Scenario::ApproverAway => {
                "the seed model, but the human approver never answers: approvals must time out and fail safe"
            }
        }
    }

    /// The best knob settings, known to the model: `(domain, knob, value)` to apply from the
    /// start (with [`crate::Spine::set_knob`]) for an oracle run to compare a supervisor with.
    ///
    /// - `seed`, `approver-away`: planner threshold 0.75 in every domain. Not the most
    ///   successful threshold (success keeps rising up to 0.97 at 0.94, where nothing is
    ///   autonomous) but the knee of the success/autonomy frontier: 0.91 success at 0.66
    ///   autonomy, best for any exchange rate between about 0.16 and 0.42 success points per
    ///   autonomy point (the default 0.70 is best for none).
    /// - `bad-directive`: nothing to change: the default 0.70 has the best success of every
    ///   threshold, since any raise overloads the small human team.
    /// - `drift`: disable application playbook `restart-service`; its fallback
    ///   `redeploy-service` is sound. Once the decay is under way it raises success at every
    ///   threshold (by 0.13 at 0.70); before (the first 20 minutes) it costs 2.6 s of mean
    ///   recovery time, `redeploy-service` running 10 s longer, and no success.
    /// - `noise`: nothing to change: no knob changes anything.
    /// - `correlated`: enable infrastructure playbook `failover-db-primary`, which repairs the
    ///   fault one minute after it hits and its dependents a minute later.
    pub fn oracle(self) -> Vec<(&'static str, String, serde_json::Value)> {
        match self {
            Scenario::Seed | Scenario::ApproverAway => [INFRASTRUCTURE, APPLICATION, SECURITY]
                .into_iter()
                .map(|d| {
                    (
                        d,
                        KNOB_PLANNER_THRESHOLD.to_string(),
                        serde_json::json!(0.75),
                    )
                })
                .collect(),
            Scenario::BadDirective | Scenario::Noise => Vec::new(),
            Scenario::Drift => vec![(
                APPLICATION,
                playbook_knob(DRIFTING_PLAYBOOK),
                serde_json::json!(false),
            )],
            Scenario::Correlated => vec![(
                INFRASTRUCTURE,
                playbook_knob(&failover_playbook("db-primary")),
                serde_json::json!(true),
            )],
        }
    }

    /// A small number identifying the scenario in the random seed.
    pub(crate) fn index(self) -> u8 {
        match self {
            Scenario::Seed => 0,
            Scenario::Drift => 1,
            Scenario::Noise => 2,
            Scenario::BadDirective => 3,
            Scenario::Correlated => 4,
            Scenario::ApproverAway => 5,
        }
    }

    /// The model's parameters for this scenario, with scripted times relative to `start`.
    pub(crate) fn world(self, start: Timestamp) -> World {
        match self {
            Scenario::Seed => seed_world(false),
            Scenario::ApproverAway => seed_world(false).without_approver(),
            Scenario::BadDirective => seed_world(true),
            Scenario::Drift => drift_world(start),
            Scenario::Noise => noise_world(),
            Scenario::Correlated => correlated_world(start),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not one of `Scenario::ALL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario '{0}' (valid: {valid})", valid = valid_names())]
pub struct UnknownScenario(pub String);

fn valid_names() -> String {
    Scenario::ALL.map(Scenario::name).join(", ")
}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_string()))
    }
}

/// Everything the spine simulates, before any knob is turned.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) domains: Vec<DomainSpec>,
    pub(crate) health: HealthSpec,
    pub(crate) approver_present: bool,
}

impl World {
    fn without_approver(mut self) -> Self {
        self.approver_present = false;
        self
    }
}

/// Domain names in dependency order.
pub(crate) const INFRASTRUCTURE: &str = "infrastructure";
pub(crate) const APPLICATION: &str = "application";
pub(crate) const SECURITY: &str = "security";

/// The application playbook that decays in `drift`.
pub(crate) const DRIFTING_PLAYBOOK: &str = "restart-service";

const MINUTE_MS: i64 = 60_000;

/// `(confidence, weight, autonomous success)` of the seed's planner.
const SEED_BANDS: [(f64, f64, f64); 6] = [
    (0.55, 0.17, 0.55),
    (0.65, 0.10, 0.60),
    (0.72, 0.07, 0.30),
    (0.78, 0.07, 0.80),
    (0.85, 0.25, 0.87),
    (0.93, 0.34, 0.90),
];

/// A healthier planner for `drift`: same confidence mass, better autonomous success.
const DRIFT_BANDS: [(f64, f64, f64); 6] = [
    (0.55, 0.17, 0.70),
    (0.65, 0.10, 0.75),
    (0.72, 0.07, 0.70),
    (0.78, 0.07, 0.88),
    (0.85, 0.25, 0.94),
    (0.93, 0.34, 0.96),
];

/// `noise`: no confidence mass inside the allowed threshold range [0.5, 0.95], so no
/// threshold a directive can set moves any incident between planner and human.
const NOISE_BANDS: [(f64, f64, f64); 4] = [
    (0.30, 0.08, 0.80),
    (0.45, 0.14, 0.85),
    (0.96, 0.40, 0.85),
    (0.98, 0.38, 0.88),
];

/// `correlated`: a mature planner that meets the goals while healthy.
const CORRELATED_BANDS: [(f64, f64, f64); 6] = [
    (0.55, 0.08, 0.75),
    (0.65, 0.10, 0.80),
    (0.72, 0.07, 0.90),
    (0.78, 0.08, 0.94),
    (0.85, 0.30, 0.965),
    (0.93, 0.37, 0.975),
];

fn seed_humans() -> HumanTeam {
    HumanTeam {
        success: 0.97,
        exec_mean_s: 55.0,
        override_prob: 0.096,
        overload: None,
    }
}

fn seed_detection() -> Detection {
    Detection {
        without_probe_s: 12.0,
        with_probe_s: 2.0,
    }
}

/// The incident mix and playbooks of each domain (failovers included).
fn playbooks(domain: &str) -> Vec<Playbook> {
    match domain {
        INFRASTRUCTURE => vec![
            Playbook::new("reboot-node", 0.60, 1.0, 20.0, "drain-node"),
            Playbook::new("drain-node", 0.40, 0.98, 15.0, "reboot-node"),
            Playbook::failover("db-primary"),
        ],
        APPLICATION => vec![
            Playbook::new("restart-service", 0.40, 1.0, 16.0, "redeploy-service"),
            Playbook::new("scale-out", 0.35, 0.98, 15.0, "restart-service"),
            Playbook::new("redeploy-service", 0.25, 1.0, 26.0, "restart-service"),
        ],
        _ => vec![
            Playbook::new("revoke-token", 0.55, 1.0, 14.0, "isolate-host"),
            Playbook::new("isolate-host", 0.45, 0.97, 23.0, "revoke-token"),
        ],
    }
}

fn incidents_per_300s(domain: &str) -> f64 {
    match domain {
        INFRASTRUCTURE => 250.0,
        APPLICATION => 400.0,
        _ => 150.0,
    }
}

fn domain(
    name: &str,
    bands: &[(f64, f64, f64)],
    humans: HumanTeam,
    detection: Detection,
) -> DomainSpec {
    DomainSpec {
        name: name.to_string(),
        incidents_per_300s: incidents_per_300s(name),
        playbooks: playbooks(name),
        planner: Planner::new(bands),
        humans,
        detection,
        threshold: 0.70,
        probe_enabled: false,
        compliance: (97.0, 0.8),
        trust_exceptions_per_hour: 1.0,
    }
}

/// The health graph every scenario shares; only `correlated` scripts a fault in it.
fn health(fault: Option<FaultScript>) -> HealthSpec {
    HealthSpec {
        nodes: vec![
            NodeSpec::new(INFRASTRUCTURE, "db-primary", &[]),
            NodeSpec::new(INFRASTRUCTURE, "network", &[]),
            NodeSpec::new(APPLICATION, "api-gateway", &["infrastructure/db-primary"]),
            NodeSpec::new(SECURITY, "authz", &["infrastructure/db-primary"]),
        ],
        fault,
        cascade_delay_ms: MINUTE_MS,
        failover_delay_ms: MINUTE_MS,
        fault_penalty: 0.25,
        fault_rate_factor: 1.5,
    }
}

fn all_domains(f: impl Fn(&str) -> DomainSpec) -> Vec<DomainSpec> {
    [INFRASTRUCTURE, APPLICATION, SECURITY]
        .into_iter()
        .map(f)
        .collect()
}

fn seed_world(small_team: bool) -> World {
    let humans = HumanTeam {
        overload: small_team.then_some(Overload {
            threshold_limit: 0.70,
            delay_ms: 2 * MINUTE_MS,
            success: 0.70,
            exec_factor: 2.0,
        }),
        ..seed_humans()
    };
    World {
        domains: all_domains(|name| domain(name, &SEED_BANDS, humans.clone(), seed_detection())),
        health: health(None),
        approver_present: true,
    }
}

fn drift_world(start: Timestamp) -> World {
    let mut domains =
        all_domains(|name| domain(name, &DRIFT_BANDS, seed_humans(), seed_detection()));
    let app = domains
        .iter_mut()
        .find(|d| d.name == APPLICATION)
        .expect("application domain");
    for p in &mut app.playbooks {
        match p.name.as_str() {
            DRIFTING_PLAYBOOK => {
                p.quality = Quality::Linear {
                    from: 1.0,
                    to: 0.45,
                    begin: start.plus_millis(20 * MINUTE_MS),
                    end: start.plus_millis(50 * MINUTE_MS),
                }
            }
            "redeploy-service" => {
                p.quality = Quality::Constant(1.0);
                p.exec_mean_s = 26.0;
            }
            _ => {}
        }
    }
    World {
        domains,
        health: health(None),
        approver_present: true,
    }
}

fn noise_world() -> World {
    let humans = HumanTeam {
        success: 0.97,
        exec_mean_s: 57.0,
        override_prob: 0.08,
        overload: None,
    };
    // the probe detects no faster than the alerting it would replace
    let detection = Detection {
        without_probe_s: 12.0,
        with_probe_s: 12.0,
    };
    let domains = all_domains(|name| {
        let mut d = domain(name, &NOISE_BANDS, humans.clone(), detection.clone());
        for p in d.playbooks.iter_mut().filter(|p| p.share > 0.0) {
            // every fallback is as good as its primary
            p.quality = Quality::Constant(1.0);
            p.exec_mean_s = 18.0;
        }
        d
    });
    World {
        domains,
        health: health(None),
        approver_present: true,
    }
}

fn correlated_world(start: Timestamp) -> World {
    let humans = HumanTeam {
        success: 0.98,
        exec_mean_s: 55.0,
        override_prob: 0.06,
        overload: None,
    };
    let domains = all_domains(|name| {
        let mut d = domain(name, &CORRELATED_BANDS, humans.clone(), seed_detection());
        d.probe_enabled = true;
        d
    });
    let fault = FaultScript {
        root: "infrastructure/db-primary".to_string(),
        at: start.plus_millis(20 * MINUTE_MS),
    };
    World {
        domains,
        health: health(Some(fault)),
        approver_present: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
            assert!(!s.description().is_empty());
        }
        let err = "sead".parse::<Scenario>().unwrap_err().to_string();
        assert!(
            err.contains("'sead'")
                && err.contains("bad-directive")
                && err.contains("approver-away"),
            "{err}"
        );
    }

    #[test]
    fn every_scenario_sees_the_high_volume_natively() {
        for s in Scenario::ALL {
            let per_hour: f64 = s
                .world(Timestamp(0))
                .domains
                .iter()
                .map(|d| d.incidents_per_300s * 12.0)
                .sum();
            assert_eq!(per_hour, crate::HIGH_INCIDENTS_PER_HOUR, "{s}");
        }
    }

    #[test]
    fn shares_and_weights_are_distributions() {
        for s in Scenario::ALL {
            for d in s.world(Timestamp(0)).domains {
                let shares: f64 = d.incident_playbooks().map(|(_, p)| p.share).sum();
                assert!(
                    (shares - 1.0).abs() < 1e-9,
                    "{s} {} shares {shares}",
                    d.name
                );
                let weights: f64 = d.planner.bands.iter().map(|b| b.weight).sum();
                assert!(
                    (weights - 1.0).abs() < 1e-9,
                    "{s} {} weights {weights}",
                    d.name
                );
                for (_, p) in d.incident_playbooks() {
                    let fallback = p
                        .fallback
                        .as_deref()
                        .expect("incident playbooks have a fallback");
                    assert!(d.playbook_index(fallback).is_some(), "{fallback}");
                }
            }
        }
    }
}
