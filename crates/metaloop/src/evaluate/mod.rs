//! `metaloop evaluate`: decision quality of each verification method against the simulator's
//! ground truth, over scenarios × volumes × seeds, plus an A/A harness for false positives.
//!
//! Every run drives the sans-IO core directly on the simulated spine (no ledger, no mesh):
//! the same decisions the demo makes, thousands of times faster. Simulated humans approve
//! every approval request at once. With `METALOOP_EVALUATE_TRACE` set, each run prints its
//! directives and verdicts to stderr.

pub mod aa;

use anyhow::{Result, anyhow};
use metaloop_core::config::SupervisorConfig;
use metaloop_core::directive::{DirectiveType, Status};
use metaloop_core::supervisor::{Effect, Supervisor};
use metaloop_core::time::Timestamp;
use metaloop_core::verify::{Method, Outcome, Seasonality};
use metaloop_sim::{Scenario, Spine, SpineOptions, Volume};
use serde::Serialize;
use std::collections::BTreeMap;

/// Cycle length, ms.
const CYCLE_MS: i64 = 300_000;

/// What one closed-loop run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub volume: String,
    pub seed: u64,
    pub method: String,
    /// Directives issued by policies (not rollbacks or review requests).
    pub directives: u32,
    pub verified: u32,
    /// Verified directives whose true effect on their target was not positive.
    pub false_verified: u32,
    /// Directives that truly hurt (the simulator's `harmful`).
    pub harmful: u32,
    pub harmful_rolled_back: u32,
    /// Harmful directives still being verified when the run ended (their verdict was not due).
    pub harmful_undecided_at_end: u32,
    /// Harmful directives not rolled back, by their final status.
    pub harmful_kept: BTreeMap<String, u32>,
    /// Cycles from each harmful directive's application to its rollback's publication.
    pub harm_to_rollback_cycles: Vec<f64>,
    pub inconclusive: u32,
    pub knob_reversals: u32,
    /// Expected global autonomy at the start minus at the end (positive: autonomy lost).
    pub autonomy_lost: f64,
    /// Expected global success rate per cycle (the true state of the spine).
    #[serde(skip)]
    pub success: Vec<f64>,
    /// Directives that enabled a failover playbook (correlated's root fix) and others.
    pub root_directives: u32,
    pub other_directives: u32,
    /// drift: the decaying playbook is disabled at the end.
    pub playbook_retired: bool,
    /// Holdout experiments (runs with `experiment_first`), by the truth of the change they
    /// tried and how they ended.
    pub experiments: ExperimentTally,
}

/// How the experiments of a run ended, against the truth of the change each tried:
/// `beneficial` (the true effect on the target reaches the template's minimum effect and
/// does no harm), `useless` (below the minimum, no harm) and `harmful`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExperimentTally {
    pub beneficial: Ends,
    pub useless: Ends,
    pub harmful: Ends,
    /// Promotions of harmful experiments whose rollout was rolled back (its own
    /// verification saw the harm the slice did not).
    pub harmful_rollouts_rolled_back: u32,
}

/// Promoted to the whole domain, abandoned, or still running at the end of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ends {
    pub promoted: u32,
    pub abandoned: u32,
    pub running: u32,
}

impl Ends {
    pub fn add(&mut self, o: &Ends) {
        self.promoted += o.promoted;
        self.abandoned += o.abandoned;
        self.running += o.running;
    }
}

/// The start of every evaluation run (midnight UTC).
pub fn start() -> Timestamp {
    Timestamp::parse_rfc3339(crate::demo::DEMO_START).expect("valid start")
}

/// Cycles a run lasts at a volume: a day, or a week at `low`.
pub fn cycles_for(volume: &Volume) -> u64 {
    if volume.factor() < 0.05 { 7 * 288 } else { 288 }
}

/// The supervisor configuration of an evaluation run; with `experiment_first`, every default
/// policy tries its change on half the incidents before the whole domain.
pub fn config(
    method: Method,
    seed: u64,
    options: &SpineOptions,
    experiment_first: bool,
) -> SupervisorConfig {
    let mut cfg = SupervisorConfig {
        id_seed: seed,
        ..SupervisorConfig::default()
    };
    cfg.verification.method = method;
    // the anchors' tools stop at an inconclusive analysis and wait for a human (Argo
    // Rollouts pauses the rollout); only metaloop's own methods roll back on the lean
    cfg.rollback_inconclusive_leaning_worse =
        !matches!(method, Method::ThresholdCount | Method::Kayenta);
    for p in cfg.policies.iter_mut() {
        p.directive_template.experiment_first = experiment_first;
    }
    cfg.verification.seasonality = if options.diurnal {
        Seasonality::ControlDomains
    } else {
        Seasonality::None
    };
    cfg
}

/// One closed-loop run. `oracle` applies the scenario's best knob settings at the start and
/// runs no supervisor.
pub fn run(
    scenario: Scenario,
    volume: Volume,
    seed: u64,
    method: Method,
    oracle: bool,
    experiment_first: bool,
) -> Result<RunResult> {
    let options = SpineOptions::for_volume(volume);
    let t0 = start();
    let mut spine = Spine::with_options(scenario, seed, t0, &options);
    // experiments get at least two days: a slice gathers evidence at half the pace
    let cycles = if experiment_first {
        cycles_for(&volume).max(576)
    } else {
        cycles_for(&volume)
    };
    let mut out = RunResult {
        scenario: scenario.name().into(),
        volume: volume.name().into(),
        seed,
        method: if oracle {
            "oracle".into()
        } else if experiment_first {
            format!("{}+experiments", method.as_str())
        } else {
            method.as_str().into()
        },
        ..RunResult::default()
    };
    let autonomy0 = spine.expected_global_kpis().autonomy_rate;
    if oracle {
        for (domain, knob, value) in scenario.oracle() {
            spine
                .set_knob(domain, &knob, value)
                .map_err(|e| anyhow!("oracle setting {domain}/{knob}: {e}"))?;
        }
        let mut events = Vec::new();
        for c in 1..=cycles {
            spine.run_until(t0.plus_millis(c as i64 * CYCLE_MS), &mut events);
            events.clear();
            out.success
                .push(spine.expected_global_kpis().overall_success_rate);
        }
        out.autonomy_lost = autonomy0 - spine.expected_global_kpis().autonomy_rate;
        return Ok(out);
    }
    let cfg = config(method, seed, &options, experiment_first);
    let mut sup = Supervisor::new(cfg, t0).map_err(|e| anyhow!(e))?;
    let mut events = Vec::new();
    let mut published_at: BTreeMap<String, u64> = BTreeMap::new();
    for c in 1..=cycles {
        let now = t0.plus_millis(c as i64 * CYCLE_MS);
        spine.run_until(now, &mut events);
        for e in events.drain(..) {
            let _ = sup.ingest(&e);
        }
        sup.tick(now);
        loop {
            let mut acted = false;
            while let Some(effect) = sup.poll_effect() {
                if let Effect::Publish(message) = effect {
                    published_at.insert(message.directive_id.clone(), c);
                    let ack = spine.deliver(&message, now);
                    let _ = sup.ingest(&ack);
                    acted = true;
                }
            }
            // simulated humans approve every request at once (two for CRITICAL)
            let pending: Vec<(String, u32)> = sup
                .pending_approvals()
                .iter()
                .map(|d| (d.directive.id.clone(), d.requirement.approvals))
                .collect();
            for (id, needed) in pending {
                for i in 0..needed.max(1) {
                    let _ = sup.approve(&id, &format!("approver-{i}"), "evaluation", now);
                }
                acted = true;
            }
            if !acted {
                break;
            }
        }
        out.success
            .push(spine.expected_global_kpis().overall_success_rate);
    }
    let state = sup.state();
    if std::env::var_os("METALOOP_EVALUATE_TRACE").is_some() {
        for id in &state.order {
            let d = &state.directives[id];
            eprintln!(
                "{} {} {} {} post_cycles {} pre_series {} post_series {} verdict {:?}",
                d.directive.directive_type,
                d.directive.target_domain,
                d.directive.issued_cycle,
                d.status,
                d.post_cycles,
                d.pre_series.len(),
                d.post_series.len(),
                d.verdict.as_ref().map(|v| (
                    v.outcome,
                    &v.reason,
                    &v.adjustment,
                    (
                        v.target.pre,
                        v.target.post,
                        v.target.effect,
                        v.target.statistic
                    )
                ))
            );
            if let Some(t) = spine.truth(id) {
                eprintln!(
                    "  truth: effect {:.4} harmful {} before {:?} after {:?}",
                    t.effect, t.harmful, t.kpis_before, t.kpis_after
                );
            }
            if std::env::var_os("METALOOP_EVALUATE_TRACE_LOOKS").is_some()
                && spine.truth(id).is_some_and(|t| t.harmful)
            {
                let v = &sup.config().verification;
                for k in [1usize, 3, 6, 12, 24] {
                    if k > d.post_series.len() {
                        break;
                    }
                    let l = metaloop_core::verify::decide(
                        v,
                        &metaloop_core::verify::VerifyInput {
                            target_domain: &d.directive.target_domain,
                            target_kpi: &d.directive.target_kpi,
                            side_effects: &d.directive.side_effects,
                            min_effect: d.directive.min_effect,
                            goals: &state.goals,
                            pre: &d.pre,
                            post: &d.post,
                            pre_series: &d.pre_series,
                            post_series: &d.post_series[..k],
                            controls: &d.controls,
                            post_cycles: 10_000,
                        },
                    );
                    if let Some(l) = l {
                        eprintln!(
                            "  k={k} {} target z {:?} p_worse {:?} guardrails {:?}",
                            l.adjustment,
                            l.target.statistic,
                            l.target.p_worse,
                            l.guardrails
                                .iter()
                                .map(|g| (g.kpi.clone(), g.statistic, g.p_value))
                                .collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }
    for id in &state.order {
        let d = &state.directives[id];
        let dir = &d.directive;
        if dir.rollback_of.is_some() || dir.directive_type == DirectiveType::RequestReview {
            continue;
        }
        out.directives += 1;
        if dir.directive_type == DirectiveType::EnablePlaybook && dir.knob.contains("failover") {
            out.root_directives += 1;
        } else {
            out.other_directives += 1;
        }
        let truth = spine.truth(id);
        let outcome = d.verdict.as_ref().map(|v| v.outcome);
        if dir.experiment.is_some()
            && let Some(t) = truth
        {
            let class = if t.harmful {
                &mut out.experiments.harmful
            } else if t.effect >= dir.min_effect.unwrap_or(0.0) && t.effect > 0.0 {
                &mut out.experiments.beneficial
            } else {
                &mut out.experiments.useless
            };
            let harmful = t.harmful;
            match d.status {
                Status::Verified => {
                    class.promoted += 1;
                    if harmful
                        && state.directives.values().any(|x| {
                            x.directive.promoted_from.as_deref() == Some(id.as_str())
                                && x.status == Status::RolledBack
                        })
                    {
                        out.experiments.harmful_rollouts_rolled_back += 1;
                    }
                }
                s if s.in_flight() => class.running += 1,
                _ => class.abandoned += 1,
            }
        }
        if outcome == Some(Outcome::Verified) {
            out.verified += 1;
            if truth.is_none_or(|t| t.effect <= 0.0) {
                out.false_verified += 1;
            }
        }
        if outcome == Some(Outcome::Inconclusive) {
            out.inconclusive += 1;
        }
        if let Some(t) = truth.filter(|t| t.harmful) {
            out.harmful += 1;
            if let Some(rb) = &d.rolled_back_by
                && let Some(c) = published_at.get(rb)
            {
                out.harmful_rolled_back += 1;
                let applied_cycle = (t.applied_at.millis() - t0.millis()) as f64 / CYCLE_MS as f64;
                out.harm_to_rollback_cycles
                    .push(*c as f64 - applied_cycle.ceil());
            } else if d.status == Status::RolledBack {
                out.harmful_rolled_back += 1;
            } else if d.status.in_flight() {
                out.harmful_undecided_at_end += 1;
            } else {
                *out.harmful_kept
                    .entry(d.status.as_str().to_string())
                    .or_default() += 1;
            }
        }
    }
    out.knob_reversals = state.knob_reversals.values().map(|v| v.len() as u32).sum();
    out.autonomy_lost = autonomy0 - spine.expected_global_kpis().autonomy_rate;
    out.playbook_retired = spine
        .knob("application", "playbook.restart-service.enabled")
        .is_some_and(|v| v == serde_json::json!(false));
    Ok(out)
}

/// Hours from the start until the run's true success rate first comes within `within` of
/// the oracle run's at the same cycle; `None` if it never does.
pub fn hours_to_oracle(run: &[f64], oracle: &[f64], within: f64) -> Option<f64> {
    run.iter()
        .zip(oracle)
        .position(|(r, o)| *r >= o - within)
        .map(|i| (i + 1) as f64 / 12.0)
}

/// The median and 90th percentile of a sample (nearest rank), `None` when empty.
pub fn median_p90(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    Some((at(0.5), at(0.9)))
}
