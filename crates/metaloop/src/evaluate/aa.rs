//! The A/A harness: sequences in which nothing changes, examined every cycle for 288 cycles
//! by each method; any verdict that claims a change (verified or degraded) is a false
//! positive.
//!
//! Simulating the whole spine 10,000 times per volume would take hours, so the sequences are
//! drawn from the simulator's own model of one cycle, with its published constants: the
//! application domain as the target and infrastructure and security as controls, their
//! incident rates at the volume, the daily cycle of rate and difficulty
//! (`metaloop_sim::DIURNAL_*`) and bursts whose incidents share their fate
//! (`metaloop_sim::BURST_*`), exactly as `metaloop-sim` draws them per cluster.

use metaloop_core::goal::default_goals;
use metaloop_core::kpi::{CycleWindows, DomainWindow, RateCounts};
use metaloop_core::time::Timestamp;
use metaloop_core::verify::series::{Control, CycleSummary, PreStats};
use metaloop_core::verify::{Method, Outcome, Seasonality, VerifyConfig, VerifyInput, decide_with};
use metaloop_sim::{
    BURST_HARD_PROBABILITY, BURST_MEAN_SIZE, BURST_SHARED_FATE, DIURNAL_HARDEST_HOUR,
    DIURNAL_PEAK_HOUR, DIURNAL_RATE_AMPLITUDE, DIURNAL_SUCCESS_DROP, Volume,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Geometric, Poisson};
use std::collections::BTreeMap;
use std::f64::consts::PI;

/// Cycles of every A/A pre window.
pub const PRE_CYCLES: usize = 24;
/// Looks per A/A sequence.
pub const LOOKS: u32 = 288;

/// Domains of the A/A spine: (name, incidents per 5 minutes at `high`, success probability).
const DOMAINS: [(&str, f64, f64); 3] = [
    ("infrastructure", 250.0, 0.87),
    ("application", 400.0, 0.87),
    ("security", 150.0, 0.87),
];
const TARGET: &str = "application";

/// The result of one A/A sequence under one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AaOutcome {
    /// A change was claimed: an improvement.
    FalseVerified,
    /// A change was claimed: a degradation.
    FalseDegraded,
    /// No change claimed (no effect, inconclusive, or still undecided at the end).
    Quiet,
}

fn one_cycle(rng: &mut ChaCha8Rng, volume: &Volume, hour: f64, bursts: bool) -> CycleWindows {
    let rate = 1.0 + DIURNAL_RATE_AMPLITUDE * (2.0 * PI * (hour - DIURNAL_PEAK_HOUR) / 24.0).cos();
    let hard = (1.0 + (2.0 * PI * (hour - DIURNAL_HARDEST_HOUR) / 24.0).cos()) / 2.0;
    let mut domains = BTreeMap::new();
    for (name, per_cycle, p0) in DOMAINS {
        let p = p0 * (1.0 - DIURNAL_SUCCESS_DROP * hard);
        let lambda = per_cycle * volume.factor() * rate;
        let mut w = DomainWindow::default();
        let mut counts = RateCounts::default();
        let clusters = if bursts {
            lambda / BURST_MEAN_SIZE
        } else {
            lambda
        };
        let n_clusters = if clusters > 0.0 {
            Poisson::new(clusters).map_or(0.0, |d| d.sample(rng)) as u64
        } else {
            0
        };
        let geometric = Geometric::new(1.0 / BURST_MEAN_SIZE).expect("valid p");
        for _ in 0..n_clusters {
            let size = if bursts { 1 + geometric.sample(rng) } else { 1 };
            let hard_cluster = rng.random::<f64>() < BURST_HARD_PROBABILITY;
            for _ in 0..size {
                let mut u: f64 = rng.random();
                if bursts && rng.random::<f64>() < BURST_SHARED_FATE {
                    let h = BURST_HARD_PROBABILITY;
                    u = if hard_cluster {
                        1.0 - h + h * u
                    } else {
                        (1.0 - h) * u
                    };
                }
                counts.observe(u < p);
            }
        }
        w.success = counts;
        domains.insert(name.to_string(), w);
    }
    CycleWindows {
        domains,
        ..CycleWindows::default()
    }
}

/// Runs one A/A sequence: a pre window, then looks every cycle until a verdict or `LOOKS`.
pub fn sequence(volume: &Volume, seed: u64, methods: &[Method]) -> Vec<AaOutcome> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start_hour = rng.random::<f64>() * 24.0;
    let total = PRE_CYCLES + LOOKS as usize;
    let cycles: Vec<CycleWindows> = (0..total)
        .map(|i| {
            let hour = (start_hour + (i as f64 + 0.5) / 12.0) % 24.0;
            let mut c = one_cycle(&mut rng, volume, hour, volume.factor() < 1.0);
            c.cycle = i as u64 + 1;
            c.start = Timestamp(i as i64 * 300_000);
            c.end = Timestamp((i as i64 + 1) * 300_000);
            c
        })
        .collect();
    let summaries: Vec<std::sync::Arc<CycleSummary>> = cycles
        .iter()
        .map(|c| std::sync::Arc::new(CycleSummary::of(c)))
        .collect();
    let goals = default_goals();
    let side_effects = BTreeMap::new();
    let controls: Vec<Control> = DOMAINS
        .iter()
        .filter(|d| d.0 != TARGET)
        .map(|d| Control::new(d.0))
        .collect();
    let mut pre = DomainWindow::default();
    for c in &cycles[..PRE_CYCLES] {
        pre.merge(&c.domains[TARGET]);
    }
    methods
        .iter()
        .map(|&method| {
            let cfg = VerifyConfig {
                method,
                seasonality: if volume.factor() < 1.0 {
                    Seasonality::ControlDomains
                } else {
                    Seasonality::None
                },
                ..VerifyConfig::default()
            };
            let mut post = DomainWindow::default();
            // the pre window's statistics and the post cycles folded so far, kept from look
            // to look as the supervisor keeps them
            let mut memo = PreStats::default();
            for k in 1..=LOOKS {
                let i = PRE_CYCLES + k as usize - 1;
                post.merge(&cycles[i].domains[TARGET]);
                let input = VerifyInput {
                    target_domain: TARGET,
                    target_kpi: metaloop_core::kpi::OVERALL_SUCCESS_RATE,
                    side_effects: &side_effects,
                    min_effect: Some(0.01),
                    goals: &goals,
                    pre: &pre,
                    post: &post,
                    pre_series: &summaries[..PRE_CYCLES],
                    post_series: &summaries[PRE_CYCLES..=i],
                    controls: &controls,
                    post_cycles: k,
                };
                if let Some(v) = decide_with(&cfg, &input, &mut memo) {
                    return match v.outcome {
                        Outcome::Verified => AaOutcome::FalseVerified,
                        Outcome::Degraded => AaOutcome::FalseDegraded,
                        _ => AaOutcome::Quiet,
                    };
                }
            }
            AaOutcome::Quiet
        })
        .collect()
}
