//! `metaloop evaluate`: runs scenarios × volumes × seeds × methods in parallel on all cores
//! and prints one row per cell, then the A/A false-positive rates.

use crate::evaluate::{self, RunResult, aa};
use crate::outln;
use anyhow::{Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use metaloop_core::verify::Method;
use metaloop_sim::{Scenario, Volume};
use rayon::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The command's arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// A small matrix for CI: 2 seeds, 200 A/A sequences per volume.
    #[arg(long)]
    pub quick: bool,
    /// Seeds per cell (default 20; 2 with --quick).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Scenarios, comma-separated (default: seed, drift, noise, bad-directive, correlated).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Volumes, comma-separated (default: high, medium, low).
    #[arg(long, value_delimiter = ',')]
    pub volumes: Vec<String>,
    /// Methods, comma-separated (default: metaloop, fixed, naive, threshold-count, kayenta).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// A/A sequences per volume (default 10000; 200 with --quick; 0 skips the harness).
    #[arg(long)]
    pub aa: Option<u64>,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Holdout experiments instead: every default policy tries its change on half the
    /// incidents first; reports how the experiments ended against the truth of their change
    /// (default volumes: medium, low — the spines with a daily cycle).
    #[arg(long)]
    pub experiments: bool,
}

fn parse_method(s: &str) -> Result<Method> {
    Method::ALL
        .into_iter()
        .find(|m| m.as_str() == s.replace('-', "_"))
        .ok_or_else(|| {
            anyhow!(
                "unknown method '{s}' (valid: metaloop, fixed, naive, threshold-count, kayenta)"
            )
        })
}

/// The values named in `given`, or `default` when none are.
fn parse_list<T: Copy>(
    given: &[String],
    default: &[T],
    parse: impl Fn(&str) -> Result<T>,
) -> Result<Vec<T>> {
    if given.is_empty() {
        return Ok(default.to_vec());
    }
    given.iter().map(|s| parse(s)).collect()
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} {{elapsed}} (eta {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

/// One cell of the table: every seed of a scenario × volume × method.
fn cell(runs: &[&RunResult], oracle: &BTreeMap<(String, String, u64), Vec<f64>>) -> Value {
    let sum = |f: &dyn Fn(&RunResult) -> u32| runs.iter().map(|r| f(r)).sum::<u32>();
    let harm: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.harm_to_rollback_cycles.iter().copied())
        .collect();
    let hours: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let o = oracle.get(&(r.scenario.clone(), r.volume.clone(), r.seed))?;
            // a run that never gets there counts as the whole run
            Some(
                evaluate::hours_to_oracle(&r.success, o, 0.01)
                    .unwrap_or(r.success.len() as f64 / 12.0),
            )
        })
        .collect();
    let n = runs.len().max(1) as f64;
    let (directives, verified, harmful) = (
        sum(&|r| r.directives),
        sum(&|r| r.verified),
        sum(&|r| r.harmful),
    );
    json!({
        "runs": runs.len(),
        "directives": directives,
        "verified": verified,
        "false_verified": sum(&|r| r.false_verified),
        "inconclusive": sum(&|r| r.inconclusive),
        "harmful": harmful,
        "harmful_rolled_back": sum(&|r| r.harmful_rolled_back),
        "harmful_undecided_at_end": sum(&|r| r.harmful_undecided_at_end),
        "harmful_kept": runs.iter().fold(BTreeMap::<String, u32>::new(), |mut m, r| {
            for (k, v) in &r.harmful_kept {
                *m.entry(k.clone()).or_default() += v;
            }
            m
        }),
        "harm_to_rollback_cycles": evaluate::median_p90(&harm).map(|(m, p)| json!({"median": m, "p90": p})),
        "hours_to_oracle_median": evaluate::median_p90(&hours).map(|(m, _)| m),
        "knob_reversals_per_run": sum(&|r| r.knob_reversals) as f64 / n,
        "autonomy_lost": runs.iter().map(|r| r.autonomy_lost).sum::<f64>() / n,
        "root_directives": sum(&|r| r.root_directives),
        "other_directives": sum(&|r| r.other_directives),
        "playbook_retired": runs.iter().filter(|r| r.playbook_retired).count(),
    })
}

fn fmt_opt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// Runs the command; returns the report it printed.
pub fn exec(args: &EvaluateArgs) -> Result<Value> {
    let seeds = args.seeds.unwrap_or(if args.quick { 2 } else { 20 });
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if args.experiments {
        return experiments(args, seeds);
    }
    let scenarios = parse_list(
        &args.scenarios,
        &[
            Scenario::Seed,
            Scenario::Drift,
            Scenario::Noise,
            Scenario::BadDirective,
            Scenario::Correlated,
        ],
        |s| s.parse::<Scenario>().map_err(|e| anyhow!("{e}")),
    )?;
    let volumes = parse_list(&args.volumes, &Volume::NAMED, |s| {
        s.parse::<Volume>().map_err(|e| anyhow!("{e}"))
    })?;
    let methods = parse_list(&args.methods, &Method::ALL, parse_method)?;
    let aa_n = args.aa.unwrap_or(if args.quick { 200 } else { 10_000 });

    // every closed-loop run, and one oracle run per scenario × volume × seed
    let mut jobs: Vec<(Scenario, Volume, u64, Method, bool)> = Vec::new();
    for &s in &scenarios {
        for &v in &volumes {
            for seed in 1..=seeds {
                jobs.push((s, v, seed, Method::Metaloop, true));
                for &m in &methods {
                    jobs.push((s, v, seed, m, false));
                }
            }
        }
    }
    let started = std::time::Instant::now();
    let bar = progress(jobs.len() as u64, "runs");
    let results: Vec<RunResult> = jobs
        .par_iter()
        .map(|&(s, v, seed, m, oracle)| {
            let r = evaluate::run(s, v, seed, m, oracle, false);
            bar.inc(1);
            r
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let runs_secs = started.elapsed().as_secs_f64();

    let oracle: BTreeMap<(String, String, u64), Vec<f64>> = results
        .iter()
        .filter(|r| r.method == "oracle")
        .map(|r| {
            (
                (r.scenario.clone(), r.volume.clone(), r.seed),
                r.success.clone(),
            )
        })
        .collect();
    let mut cells = Vec::new();
    for &s in &scenarios {
        for &v in &volumes {
            for &m in &methods {
                let runs: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| {
                        r.scenario == s.name() && r.volume == v.name() && r.method == m.as_str()
                    })
                    .collect();
                let mut c = cell(&runs, &oracle);
                c["scenario"] = json!(s.name());
                c["volume"] = json!(v.name());
                c["method"] = json!(m.as_str());
                cells.push(c);
            }
        }
    }

    // the A/A harness
    let started_aa = std::time::Instant::now();
    let mut aa_rows = Vec::new();
    if aa_n > 0 {
        let bar = progress(aa_n * volumes.len() as u64, "A/A");
        for &v in &volumes {
            let outcomes: Vec<Vec<aa::AaOutcome>> = (0..aa_n)
                .into_par_iter()
                .map(|i| {
                    let o = aa::sequence(&v, 1_000_003 * (i + 1), &methods);
                    bar.inc(1);
                    o
                })
                .collect();
            for (j, m) in methods.iter().enumerate() {
                let fv = outcomes
                    .iter()
                    .filter(|o| o[j] == aa::AaOutcome::FalseVerified)
                    .count();
                let fd = outcomes
                    .iter()
                    .filter(|o| o[j] == aa::AaOutcome::FalseDegraded)
                    .count();
                let n = aa_n as f64;
                aa_rows.push(json!({
                    "volume": v.name(), "method": m.as_str(), "sequences": aa_n,
                    "false_verified_rate": fv as f64 / n,
                    "false_degraded_rate": fd as f64 / n,
                    "monte_carlo_se_at_alpha": (0.01f64 * 0.99 / n).sqrt(),
                }));
            }
        }
        bar.finish_and_clear();
    }
    let aa_secs = started_aa.elapsed().as_secs_f64();
    let report = json!({
        "seeds": seeds,
        "cycles": {"high": 288, "medium": 288, "low": 2016},
        "cells": cells,
        "aa": {"looks": aa::LOOKS, "pre_cycles": aa::PRE_CYCLES, "rows": aa_rows},
        "seconds": {"runs": runs_secs, "aa": aa_secs},
        "threads": rayon::current_num_threads(),
    });
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    Ok(report)
}

/// `--experiments`: scenarios × volumes × seeds with experiment-first policies.
fn experiments(args: &EvaluateArgs, seeds: u64) -> Result<Value> {
    let scenarios = parse_list(
        &args.scenarios,
        &[
            Scenario::Seed,
            Scenario::Drift,
            Scenario::Noise,
            Scenario::BadDirective,
            Scenario::Correlated,
        ],
        |s| s.parse::<Scenario>().map_err(|e| anyhow!("{e}")),
    )?;
    let volumes = parse_list(&args.volumes, &[Volume::Medium, Volume::Low], |s| {
        s.parse::<Volume>().map_err(|e| anyhow!("{e}"))
    })?;
    let mut jobs = Vec::new();
    for &s in &scenarios {
        for &v in &volumes {
            for seed in 1..=seeds {
                jobs.push((s, v, seed));
            }
        }
    }
    let started = std::time::Instant::now();
    let bar = progress(jobs.len() as u64, "runs");
    let results: Vec<RunResult> = jobs
        .par_iter()
        .map(|&(s, v, seed)| {
            let r = evaluate::run(s, v, seed, Method::Metaloop, false, true);
            bar.inc(1);
            r
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let mut rows = Vec::new();
    for &s in &scenarios {
        for &v in &volumes {
            let mut t = evaluate::ExperimentTally::default();
            for r in results
                .iter()
                .filter(|r| r.scenario == s.name() && r.volume == v.name())
            {
                t.beneficial.add(&r.experiments.beneficial);
                t.useless.add(&r.experiments.useless);
                t.harmful.add(&r.experiments.harmful);
                t.harmful_rollouts_rolled_back += r.experiments.harmful_rollouts_rolled_back;
            }
            rows.push(json!({"scenario": s.name(), "volume": v.name(), "experiments": t}));
        }
    }
    let report = json!({
        "seeds": seeds,
        "fraction": metaloop_core::policy::template::DEFAULT_EXPERIMENT_FRACTION,
        "rows": rows,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Holdout experiments ({seeds} seeds per row; half the incidents treated): how each ended, by the truth of the change it tried\n"
        );
        println!(
            "{:<14} {:<7} {:>26} {:>26} {:>26} {:>18}",
            "scenario",
            "volume",
            "beneficial prom/aband/run",
            "useless prom/aband/run",
            "harmful prom/aband/run",
            "rollout rolled back"
        );
        for r in &rows {
            let e = &r["experiments"];
            let f = |k: &str| {
                format!(
                    "{}/{}/{}",
                    e[k]["promoted"], e[k]["abandoned"], e[k]["running"]
                )
            };
            println!(
                "{:<14} {:<7} {:>26} {:>26} {:>26} {:>18}",
                r["scenario"].as_str().unwrap_or("?"),
                r["volume"].as_str().unwrap_or("?"),
                f("beneficial"),
                f("useless"),
                f("harmful"),
                e["harmful_rollouts_rolled_back"]
            );
        }
        println!("\n{:.0} s", report["seconds"].as_f64().unwrap_or(0.0));
    }
    Ok(report)
}

fn print_tables(report: &Value) {
    outln!(
        "{:<14} {:<7} {:<16} {:>5} {:>5} {:>6} {:>5} {:>8} {:>5} {:>12} {:>8} {:>7} {:>8} {:>6}",
        "scenario",
        "volume",
        "method",
        "dirs",
        "verif",
        "falseV",
        "harm",
        "rolledbk",
        "open",
        "h→rb med/p90",
        "h→oracle",
        "revers",
        "autoLost",
        "incon"
    );
    for c in report["cells"].as_array().into_iter().flatten() {
        let harm = &c["harm_to_rollback_cycles"];
        let h2r = if harm.is_null() {
            "-".to_string()
        } else {
            format!(
                "{}/{}",
                fmt_opt(&harm["median"], 0),
                fmt_opt(&harm["p90"], 0)
            )
        };
        let extra = match c["scenario"].as_str() {
            Some("correlated") => format!(
                "  root {} other {}",
                c["root_directives"], c["other_directives"]
            ),
            Some("drift") => format!("  retired {}/{}", c["playbook_retired"], c["runs"]),
            _ => String::new(),
        };
        outln!(
            "{:<14} {:<7} {:<16} {:>5} {:>5} {:>6} {:>5} {:>8} {:>5} {:>12} {:>8} {:>7} {:>8} {:>6}{}",
            c["scenario"].as_str().unwrap_or(""),
            c["volume"].as_str().unwrap_or(""),
            c["method"].as_str().unwrap_or(""),
            c["directives"].to_string(),
            c["verified"].to_string(),
            c["false_verified"].to_string(),
            c["harmful"].to_string(),
            c["harmful_rolled_back"].to_string(),
            c["harmful_undecided_at_end"].to_string(),
            h2r,
            fmt_opt(&c["hours_to_oracle_median"], 1),
            fmt_opt(&c["knob_reversals_per_run"], 2),
            fmt_opt(&c["autonomy_lost"], 3),
            c["inconclusive"].to_string(),
            extra
        );
    }
    outln!();
    outln!(
        "A/A: {} looks per sequence, {} pre cycles",
        report["aa"]["looks"],
        report["aa"]["pre_cycles"]
    );
    outln!(
        "{:<7} {:<16} {:>9} {:>12} {:>12}",
        "volume",
        "method",
        "sequences",
        "falseVerif",
        "falseDegr"
    );
    for r in report["aa"]["rows"].as_array().into_iter().flatten() {
        outln!(
            "{:<7} {:<16} {:>9} {:>12} {:>12}",
            r["volume"].as_str().unwrap_or(""),
            r["method"].as_str().unwrap_or(""),
            r["sequences"],
            fmt_opt(&r["false_verified_rate"], 4),
            fmt_opt(&r["false_degraded_rate"], 4)
        );
    }
    outln!(
        "\n{} threads; runs {:.1} s, A/A {:.1} s",
        report["threads"],
        report["seconds"]["runs"].as_f64().unwrap_or(0.0),
        report["seconds"]["aa"].as_f64().unwrap_or(0.0)
    );
}
