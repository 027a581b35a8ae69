//! `metaloop bench policies`: how long CEL conditions take — compiling and checking N
//! policies, and evaluating all of them against one D-domain snapshot per cycle (the
//! variables built once, each policy in its own scope), as p50/p99 over repeated cycles.

use crate::outln;
use metaloop_core::goal::default_goals;
use metaloop_core::policy::Condition;
use metaloop_core::policy::expression::{self, Variables};
use metaloop_core::protocol::{EventData, Recovery};
use metaloop_core::snapshot::{CrossDomainSnapshot, DomainSnapshot, PlaybookSummary};
use std::time::Instant;

/// Arguments of `metaloop bench policies`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policies with CEL conditions.
    #[arg(long, default_value_t = 1_000)]
    pub policies: usize,
    /// Domains in the snapshot.
    #[arg(long, default_value_t = 100)]
    pub domains: usize,
    /// Cycles measured.
    #[arg(long, default_value_t = 50)]
    pub cycles: usize,
}

/// A snapshot with `n` domains, each with every built-in KPI, a few playbooks and a window
/// that gives the evidence variables something to compute.
fn snapshot(n: usize) -> CrossDomainSnapshot {
    let mut snap = CrossDomainSnapshot {
        cycle: 100,
        coverage: 1.0,
        ..Default::default()
    };
    for i in 0..n {
        let name = format!("d{i}");
        let mut d = DomainSnapshot::default();
        let success = 0.80 + 0.15 * (i % 10) as f64 / 10.0;
        for (k, v) in [
            ("overall_success_rate", success),
            ("mean_recovery_time_seconds", 20.0 + (i % 30) as f64),
            ("autonomy_rate", 0.7 + 0.02 * (i % 10) as f64),
            ("human_intervention_rate", 0.1),
            ("compliance_score", 96.0),
        ] {
            d.kpis.insert(k.into(), v);
            d.samples.insert(k.into(), 400);
            d.drift.insert(k.into(), -0.01 * (i % 7) as f64);
        }
        for p in 0..5 {
            d.playbooks.insert(
                format!("pb{p}"),
                PlaybookSummary {
                    runs: 80,
                    success_rate: Some(success),
                    autonomous_runs: 60,
                    autonomous_success_rate: Some(success - 0.02),
                },
            );
        }
        d.trust_exceptions = (i % 4) as u64;
        for k in 0..400 {
            let r = Recovery {
                domain: name.clone(),
                incident_id: format!("{i}-{k}"),
                playbook: "pb0".into(),
                duration_s: 20.0 + (k % 30) as f64,
                autonomous: true,
                human_override: false,
                experiment: None,
            };
            d.window.observe(&if (k as f64) < success * 400.0 {
                EventData::RecoverySucceeded(r)
            } else {
                EventData::RecoveryFailed(r)
            });
        }
        snap.global_window.merge(&d.window);
        if success < 0.9 {
            snap.analysis
                .underperforming
                .insert(name.clone(), vec!["overall_success_rate".into()]);
        }
        snap.domains.insert(name, d);
    }
    snap.global_kpis.insert("overall_success_rate".into(), 0.87);
    snap.goal_gaps.insert("overall_success_rate".into(), 0.08);
    snap
}

/// The i-th policy's expression: five shapes, constants varied so that each is its own
/// program.
fn expression_for(i: usize, domains: usize) -> String {
    let d = i % domains.max(1);
    match i % 5 {
        0 => format!(
            "domains.d{d}.kpis.overall_success_rate < 0.{} && domains.d{d}.evidence_missed.overall_success_rate > 0.95",
            80 + i % 19
        ),
        1 => format!(
            "domains.exists(d, domains[d].drift.overall_success_rate < -0.05 && domains[d].samples.overall_success_rate > {})",
            i % 500
        ),
        2 => format!(
            "global.goal_gaps.overall_success_rate > 0.0{} && size(global.underperforming) >= 2 && policy.score > 0.5",
            i % 9
        ),
        3 => format!(
            "patterns.exists(p, p.kind == 'dependency_cascade') || domains.d{d}.trust_exceptions > {}",
            i % 6
        ),
        _ => format!(
            "domains.all(d, domains[d].kpis.mean_recovery_time_seconds < {}.0)",
            30 + i % 40
        ),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the benchmark; returns the exit code.
pub fn exec(args: &Args) -> u8 {
    if args.policies == 0 || args.domains == 0 || args.cycles == 0 {
        eprintln!("error: --policies, --domains and --cycles must be at least 1");
        return 2;
    }
    let goals = default_goals();
    let snap = snapshot(args.domains);
    let sources: Vec<String> = (0..args.policies)
        .map(|i| expression_for(i, args.domains))
        .collect();
    let t = Instant::now();
    let mut conditions = Vec::new();
    for s in &sources {
        let c = Condition {
            expression: Some(s.clone()),
            ..Default::default()
        };
        if let Err(e) = c.validate() {
            eprintln!("error: {s}: {e}");
            return 1;
        }
        conditions.push(c);
    }
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let track = Default::default();
    let mut times = Vec::new();
    let mut vars_times = Vec::new();
    let mut held = 0;
    for _ in 0..args.cycles {
        let t = Instant::now();
        let vars = Variables::of(&snap, &goals);
        let root = vars.context();
        vars_times.push(t.elapsed().as_secs_f64() * 1e3);
        held = 0;
        for (i, c) in conditions.iter().enumerate() {
            let mut ctx = root.new_inner_scope();
            ctx.add_variable_from_value("policy", expression::policy_value(&sources[i], 3, &track));
            held += usize::from(c.evaluate_in(&snap, &goals, Some(&ctx)).holds);
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    vars_times.sort_by(f64::total_cmp);
    outln!(
        "CEL conditions: {} policies against a {}-domain snapshot ({} cycles)",
        args.policies,
        args.domains,
        args.cycles
    );
    outln!(
        "  compile and check all:            {compile_ms:>9.2} ms ({:.1} µs each)",
        compile_ms * 1e3 / args.policies as f64
    );
    outln!(
        "  variables per cycle, p50 / p99:   {:>9.2} / {:.2} ms",
        percentile(&vars_times, 0.5),
        percentile(&vars_times, 0.99)
    );
    outln!(
        "  one cycle's evaluation, p50 / p99: {:>8.2} / {:.2} ms (variables included; {:.1} µs per policy at p50)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 0.5) * 1e3 / args.policies as f64
    );
    outln!("  conditions that held: {held} of {}", args.policies);
    0
}
