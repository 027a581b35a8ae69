//! `metaloop bench cycle`: how long one supervisor cycle takes — `Supervisor::tick`, the
//! whole cycle (snapshot → verification → strategy → pipeline → alerts → summary, its
//! records encoded) with its effects drained (writing them is the ledger writer's work,
//! `bench ledger`) — for a grid of domains × policies, as p50/p99 over repeated cycles, and
//! how it grows with domains and with event volume.
//!
//! Each domain reports the 5 built-in KPIs (recoveries, decisions, compliance) and 5 custom
//! ones (`kpi.reported`), so 10 KPIs. The policies are the defaults cloned under distinct
//! ids. A fifth of the domains succeed too rarely, one in ten has a failing playbook, a fifth
//! recover slowly and every hundred domains hold one dependency cascade, so conditions hold,
//! directives are proposed, published, acknowledged, verified and rolled back while the
//! cycles are measured. Ingestion and acks happen between cycles and are not timed.

use crate::outln;
use metaloop_core::protocol::{
    ComplianceScore, Decision, DirectiveApplied, DirectiveMessage, EventData, HealthChange,
    HealthState, KpiReport, Recovery, SpineEvent,
};
use metaloop_core::time::Timestamp;
use metaloop_core::{Effect, Supervisor, SupervisorConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Arguments of `metaloop bench cycle`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domains, comma-separated: one row of cells per value.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub domains: Vec<usize>,
    /// Policies (the defaults cloned under distinct ids), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub policies: Vec<usize>,
    /// Cycles measured per cell (cells of 1,000 domains or more measure a quarter of them,
    /// at least 5).
    #[arg(long, default_value_t = 100)]
    pub cycles: usize,
    /// Cycles run before measuring. The default reaches the steady state: every domain has
    /// had a directive, most are being verified, every policy's condition holds and pre
    /// windows are at their longest (after a few dozen cycles the cycle is still getting
    /// slower).
    #[arg(long, default_value_t = 300)]
    pub warmup: usize,
    /// Events per domain per cycle, comma-separated: the grid runs with the first value; each
    /// further value reruns one cell (100 domains, or the nearest, × the most policies) to
    /// show the cycle does not grow with event volume.
    #[arg(long, value_delimiter = ',', default_value = "20,200")]
    pub events_per_domain: Vec<usize>,
    /// One JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Custom KPIs each domain reports through `kpi.reported`.
const CUSTOM_KPIS: [&str; 5] = [
    "queue_depth",
    "error_budget_burn",
    "change_failure_rate",
    "alert_noise",
    "capacity_headroom",
];

/// Observations a verification baseline needs, and a hold lasts for, in the benchmark.
const BASELINE_SAMPLES: u64 = 100;

/// Cells with at least this many domains measure fewer cycles.
const LARGE_CELL: usize = 1_000;

/// One measured cell.
#[derive(Debug, Clone, serde::Serialize)]
struct Cell {
    domains: usize,
    policies: usize,
    events_per_domain: usize,
    cycles: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Building the records' payloads as JSON values too, as the daemon does for its API
    /// views (not part of the cycle above).
    values_p50_ms: f64,
    values_p99_ms: f64,
    /// Median canonical text of a cycle's records, KiB.
    record_kib: f64,
    /// Directives proposed by the end of the run, and those still being verified.
    directives: usize,
    verifying: usize,
    /// Policies whose condition held in the last measured cycle.
    holding: usize,
}

/// The simulated spine of the benchmark: per-domain profiles, knob values for acks, and the
/// events of one cycle.
struct Spine {
    domains: Vec<String>,
    rng: ChaCha8Rng,
    knobs: BTreeMap<String, serde_json::Value>,
    pending_acks: Vec<DirectiveMessage>,
    seq: u64,
}

/// What a domain is like: (success rate, mean recovery seconds, has a failing playbook).
fn profile(i: usize) -> (f64, f64, bool) {
    let success = if i % 10 < 2 { 0.72 } else { 0.93 };
    let seconds = if (2..4).contains(&(i % 10)) {
        120.0
    } else {
        25.0
    };
    (success, seconds, i % 10 == 4)
}

impl Spine {
    fn new(domains: usize) -> Spine {
        Spine {
            domains: (0..domains).map(|i| format!("d{i:04}")).collect(),
            rng: ChaCha8Rng::seed_from_u64(7),
            knobs: BTreeMap::new(),
            pending_acks: Vec::new(),
            seq: 0,
        }
    }

    fn event(&mut self, time: Timestamp, data: EventData) -> SpineEvent {
        self.seq += 1;
        SpineEvent {
            id: format!("e{}", self.seq),
            source: "urn:spine:bench".into(),
            time,
            data,
        }
    }

    /// The health changes of the first cycle: every hundred domains, the first one's
    /// database goes down and two nodes of the next two domains degrade with it.
    fn cascades(&mut self, time: Timestamp) -> Vec<SpineEvent> {
        let mut out = Vec::new();
        for root in (0..self.domains.len()).step_by(100) {
            if root + 2 >= self.domains.len() {
                break;
            }
            let db = format!("{}/db", self.domains[root]);
            let changes = [
                (root, "db", HealthState::Down, vec![]),
                (root + 1, "api", HealthState::Degraded, vec![db.clone()]),
                (root + 2, "auth", HealthState::Degraded, vec![db]),
            ];
            for (d, node, state, depends_on) in changes {
                let data = EventData::HealthChanged(HealthChange {
                    domain: self.domains[d].clone(),
                    node: node.into(),
                    state,
                    depends_on,
                });
                out.push(self.event(time, data));
            }
        }
        out
    }

    /// One cycle's events, `per_domain` for each domain, spread over `[start, end)`; the acks
    /// of the directives published by the last cycle come first.
    fn cycle_events(
        &mut self,
        start: Timestamp,
        end: Timestamp,
        per_domain: usize,
    ) -> Vec<SpineEvent> {
        let mut out = Vec::with_capacity(self.domains.len() * per_domain + 8);
        let span = (end.millis() - start.millis()).max(1);
        for m in std::mem::take(&mut self.pending_acks) {
            let ack = self.ack(&m);
            out.push(self.event(start.plus_millis(1), ack));
        }
        for i in 0..self.domains.len() {
            let domain = self.domains[i].clone();
            let (success, seconds, flaky) = profile(i);
            // 5 custom KPIs and 1 compliance score; a tenth decisions; the rest recoveries
            let decisions = per_domain / 10;
            let recoveries = per_domain.saturating_sub(CUSTOM_KPIS.len() + 1 + decisions);
            for (k, name) in CUSTOM_KPIS.iter().enumerate() {
                let value = 10.0 * (k + 1) as f64 + self.rng.random_range(-1.0..1.0);
                let t = start.plus_millis(self.rng.random_range(0..span));
                let data = EventData::KpiReported(KpiReport {
                    domain: domain.clone(),
                    name: (*name).into(),
                    value,
                });
                out.push(self.event(t, data));
            }
            let score = if i % 10 == 5 { 90.0 } else { 98.0 };
            let data = EventData::ComplianceScored(ComplianceScore {
                domain: domain.clone(),
                score,
            });
            out.push(self.event(start.plus_millis(span / 2), data));
            for _ in 0..decisions {
                let autonomous = self.rng.random_bool(0.8);
                let data = EventData::DecisionMade(Decision {
                    domain: domain.clone(),
                    decision_id: format!("q{}", self.seq),
                    confidence: self.rng.random_range(0.5..1.0),
                    autonomous,
                    approved_by_human: !autonomous,
                    overridden: self.rng.random_bool(0.05),
                    experiment: None,
                });
                let t = start.plus_millis(self.rng.random_range(0..span));
                out.push(self.event(t, data));
            }
            for _ in 0..recoveries {
                let playbook = if flaky && self.rng.random_bool(0.5) {
                    "restart-flaky"
                } else {
                    "restart-pod"
                };
                let p = if playbook == "restart-flaky" {
                    0.35
                } else {
                    success
                };
                let autonomous = self.rng.random_bool(0.8);
                let r = Recovery {
                    domain: domain.clone(),
                    incident_id: format!("i{}", self.seq),
                    playbook: playbook.into(),
                    duration_s: seconds * self.rng.random_range(0.5..1.5),
                    autonomous,
                    human_override: !autonomous && self.rng.random_bool(0.3),
                    experiment: None,
                };
                let data = if self.rng.random_bool(p) {
                    EventData::RecoverySucceeded(r)
                } else {
                    EventData::RecoveryFailed(r)
                };
                let t = start.plus_millis(self.rng.random_range(0..span));
                out.push(self.event(t, data));
            }
        }
        out
    }

    /// Ingests the events of the cycle `sup` closes next (the cascades first, in the first
    /// cycle) and returns when it ends.
    fn feed(&mut self, sup: &mut Supervisor, first: bool, per_domain: usize) -> Timestamp {
        let from = sup
            .next_cycle_at()
            .plus_millis(-sup.config().cycle_seconds * 1000);
        let end = sup.next_cycle_at();
        let mut events = if first {
            self.cascades(from)
        } else {
            Vec::new()
        };
        events.extend(self.cycle_events(from, end, per_domain));
        for e in &events {
            // an ack may come for a directive a later cycle already ended: not an error here
            let _ = sup.ingest(e);
        }
        end
    }

    /// The spine's ack of a published directive: the knob's value before and after.
    fn ack(&mut self, m: &DirectiveMessage) -> EventData {
        let key = format!("{}/{}", m.target_domain, m.knob);
        let previous = self.knobs.get(&key).cloned().unwrap_or_else(|| {
            match (m.parameters.get("value"), m.knob.as_str()) {
                (Some(serde_json::Value::Bool(b)), _) => serde_json::Value::Bool(!b),
                (Some(_), _) | (None, _) => serde_json::json!(0.70),
            }
        });
        let current = match (m.parameters.get("adjustment"), m.parameters.get("value")) {
            (Some(a), _) => {
                let v = previous.as_f64().unwrap_or(0.70) + a.as_f64().unwrap_or(0.0);
                serde_json::json!((v * 100.0).round() / 100.0)
            }
            (None, Some(v)) => v.clone(),
            (None, None) => previous.clone(),
        };
        self.knobs.insert(key, current.clone());
        EventData::DirectiveApplied(DirectiveApplied {
            directive_id: m.directive_id.clone(),
            domain: m.target_domain.clone(),
            knob: m.knob.clone(),
            previous,
            current,
        })
    }
}

/// The benchmark's supervisor, with `policy_count` policies.
fn supervisor(policy_count: usize) -> Result<Supervisor, String> {
    let mut cfg = SupervisorConfig {
        // staging: MODERATE directives publish without waiting for a human
        environment: "staging".into(),
        policies: policies(policy_count),
        ..Default::default()
    };
    // baselines and holds of BASELINE_SAMPLES observations instead of 2,000, so that at 20
    // events per domain directives are proposed within the warm-up
    cfg.verification.min_baseline_samples = BASELINE_SAMPLES;
    cfg.verification.control_hold_samples = BASELINE_SAMPLES;
    Supervisor::new(cfg, Timestamp::from_secs(1_767_225_600))
}

/// The default policies cloned until there are `n`, each under its own id.
fn policies(n: usize) -> Vec<metaloop_core::policy::MetaPolicy> {
    let defaults = metaloop_core::policy::default_policies();
    (0..n)
        .map(|i| {
            let mut p = defaults[i % defaults.len()].clone();
            if i >= defaults.len() {
                p.id = format!("{}_{}", p.id, i / defaults.len());
            }
            p
        })
        .collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs one cell: warm-up cycles, then `cycles` timed ones.
fn run_cell(
    domains: usize,
    policy_count: usize,
    per_domain: usize,
    warmup: usize,
    cycles: usize,
) -> Result<Cell, String> {
    let mut sup = supervisor(policy_count)?;
    let mut spine = Spine::new(domains);
    let label = format!("{domains} domains × {policy_count} policies × {per_domain} events");
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut times = Vec::with_capacity(cycles);
    let mut values = Vec::with_capacity(cycles);
    let mut record_bytes = Vec::with_capacity(cycles);
    let mut encoded: Vec<String> = Vec::new();
    let mut holding = 0;
    for c in 0..warmup + cycles {
        let end = spine.feed(&mut sup, c == 0, per_domain);
        let t = Instant::now();
        sup.tick(end);
        // drained as the daemon drains them, each record's payload encoded to the canonical
        // text its ledger hashes and stores; writing (and freeing) them is the ledger's work,
        // measured by `bench ledger`
        let mut drained = Vec::new();
        let mut bytes = 0;
        while let Some(effect) = sup.poll_effect() {
            if let Effect::Record(e) = &effect {
                let text = metaloop_ledger::to_canonical_string(&e.payload)
                    .map_err(|err| format!("{}: {err}", e.action))?;
                bytes += text.len();
                encoded.push(text);
            }
            drained.push(effect);
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        // the JSON values of the same payloads, which the daemon builds as well for its API
        // views and the ledger's appended records: timed apart
        let t = Instant::now();
        for effect in &drained {
            if let Effect::Record(e) = effect {
                e.payload.value();
            }
        }
        let values_ms = t.elapsed().as_secs_f64() * 1e3;
        encoded.clear();
        let mut published = Vec::new();
        let mut strategy = None;
        for effect in drained {
            match effect {
                Effect::Publish(m) => published.push(m),
                Effect::Record(e) if e.action == "strategy.evaluated" => strategy = Some(e),
                _ => {}
            }
        }
        spine.pending_acks = published;
        if c >= warmup {
            times.push(ms);
            values.push(values_ms);
            record_bytes.push(bytes as f64);
            holding = strategy.map_or(0, |e| count_holding(&e.payload));
        }
        if tty {
            eprint!("\r  {label}: cycle {}/{} ", c + 1, warmup + cycles);
            let _ = std::io::stderr().flush();
        }
    }
    if tty {
        eprintln!();
    } else {
        eprintln!(
            "  {label}: {} cycles in {:.1} s",
            warmup + cycles,
            started.elapsed().as_secs_f64()
        );
    }
    let state = sup.state();
    let verifying = state
        .directives
        .values()
        .filter(|d| d.status == metaloop_core::directive::Status::Verifying)
        .count();
    times.sort_by(f64::total_cmp);
    values.sort_by(f64::total_cmp);
    record_bytes.sort_by(f64::total_cmp);
    Ok(Cell {
        domains,
        policies: policy_count,
        events_per_domain: per_domain,
        cycles,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: times.last().copied().unwrap_or(0.0),
        values_p50_ms: percentile(&values, 0.5),
        values_p99_ms: percentile(&values, 0.99),
        record_kib: percentile(&record_bytes, 0.5) / 1024.0,
        directives: state.directives.len(),
        verifying,
        holding,
    })
}

/// Policies whose condition held, from a `strategy.evaluated` payload.
fn count_holding(payload: &serde_json::Value) -> usize {
    metaloop_core::record::strategy_evaluations(payload)
        .filter(|e| e.condition["holds"].as_bool() == Some(true))
        .count()
}

/// Cycles measured in a cell of `domains` domains.
fn cycles_for(domains: usize, cycles: usize) -> usize {
    if domains >= LARGE_CELL {
        (cycles / 4).max(5).min(cycles)
    } else {
        cycles
    }
}

/// `b / a`, or NaN when either is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => b / a,
        _ => f64::NAN,
    }
}

/// How a cycle's latency grew from one cell to another.
#[derive(Debug, Clone, serde::Serialize)]
struct Growth {
    from: (usize, usize, usize),
    to: (usize, usize, usize),
    p50_ratio: f64,
    p99_ratio: f64,
}

impl Growth {
    fn between(a: &Cell, b: &Cell) -> Growth {
        Growth {
            from: (a.domains, a.policies, a.events_per_domain),
            to: (b.domains, b.policies, b.events_per_domain),
            p50_ratio: ratio(Some(a.p50_ms), Some(b.p50_ms)),
            p99_ratio: ratio(Some(a.p99_ms), Some(b.p99_ms)),
        }
    }
}

/// Everything measured.
#[derive(Debug, serde::Serialize)]
struct Report {
    build: &'static str,
    warmup_cycles: usize,
    baseline_samples: u64,
    cells: Vec<Cell>,
    /// The volume cells: one cell of the grid rerun at each further event volume.
    volume: Vec<Cell>,
    /// Each step of the domain list, at every policy count.
    domain_growth: Vec<Growth>,
    /// The grid's cell against each of its volume cells.
    volume_growth: Vec<Growth>,
    seconds: f64,
}

/// Measures the grid, then the volume cells (the cell nearest 100 domains with the most
/// policies, at each further event volume).
fn measure(args: &Args) -> Result<Report, String> {
    let started = Instant::now();
    let events = args.events_per_domain[0];
    let mut cells = Vec::new();
    for &d in &args.domains {
        for &p in &args.policies {
            cells.push(run_cell(
                d,
                p,
                events,
                args.warmup,
                cycles_for(d, args.cycles),
            )?);
        }
    }
    let domains = *args
        .domains
        .iter()
        .min_by_key(|d| d.abs_diff(100))
        .expect("checked non-empty");
    let policies = *args.policies.iter().max().expect("checked non-empty");
    let mut volume = Vec::new();
    for &e in &args.events_per_domain[1..] {
        let cycles = cycles_for(domains, args.cycles);
        volume.push(run_cell(domains, policies, e, args.warmup, cycles)?);
    }
    let find = |d: usize, p: usize| cells.iter().find(|c| c.domains == d && c.policies == p);
    let mut domain_growth = Vec::new();
    for w in args.domains.windows(2) {
        for &p in &args.policies {
            if let (Some(a), Some(b)) = (find(w[0], p), find(w[1], p)) {
                domain_growth.push(Growth::between(a, b));
            }
        }
    }
    let volume_growth = match find(domains, policies) {
        Some(base) => volume.iter().map(|c| Growth::between(base, c)).collect(),
        None => Vec::new(),
    };
    Ok(Report {
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        warmup_cycles: args.warmup,
        baseline_samples: BASELINE_SAMPLES,
        cells,
        volume,
        domain_growth,
        volume_growth,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Prints the report as a table and ratios.
fn print_text(r: &Report, args: &Args) {
    outln!(
        "One supervisor cycle (Supervisor::tick, its effects drained and its records' payloads encoded to the canonical JSON the ledger hashes and stores; freed after the clock stops, as the ledger writer frees them), {} build: 10 KPIs per domain (5 built-in, 5 custom), the default policies cloned, {} events per domain per cycle, {} warm-up cycles; verification baselines and holds of {} observations",
        r.build,
        args.events_per_domain[0],
        r.warmup_cycles,
        r.baseline_samples
    );
    if args.domains.iter().any(|d| *d >= LARGE_CELL) {
        outln!(
            "  cells of {LARGE_CELL}+ domains measure {} cycles instead of {}",
            cycles_for(LARGE_CELL, args.cycles),
            args.cycles
        );
    }
    outln!("  p99 of fewer than 100 cycles is their slowest");
    outln!();
    outln!(
        "  {:>8} {:>9} {:>7} {:>7} {:>10} {:>10} {:>8} {:>16} {:>11} {:>8}",
        "domains",
        "policies",
        "events",
        "cycles",
        "p50 ms",
        "p99 ms",
        "KiB",
        "values p50/p99",
        "directives",
        "holding"
    );
    for c in r.cells.iter().chain(&r.volume) {
        outln!(
            "  {:>8} {:>9} {:>7} {:>7} {:>10.2} {:>10.2} {:>8.0} {:>16} {:>11} {:>8}",
            c.domains,
            c.policies,
            c.events_per_domain,
            c.cycles,
            c.p50_ms,
            c.p99_ms,
            c.record_kib,
            format!("{:.2}/{:.2}", c.values_p50_ms, c.values_p99_ms),
            format!("{} ({})", c.directives, c.verifying),
            c.holding
        );
    }
    outln!(
        "  (KiB: the canonical text of a cycle's records, median; values: building the same payloads as JSON values too, as the daemon does for its API views, timed apart from the cycle, ms; directives: proposed by the end (of them still being verified); holding: policies whose condition held in the last cycle)"
    );
    outln!();
    if !r.domain_growth.is_empty() {
        outln!("Growth with domains (linear: the ratio of the domain counts):");
        for g in &r.domain_growth {
            outln!(
                "  {:>5} → {:<5} domains, {:>5} policies: p50 ×{:.1}, p99 ×{:.1}",
                g.from.0,
                g.to.0,
                g.from.1,
                g.p50_ratio,
                g.p99_ratio
            );
        }
    }
    if !r.volume_growth.is_empty() {
        outln!("Growth with event volume (flat: ×1.0):");
        for g in &r.volume_growth {
            outln!(
                "  {} domains, {} policies, {} → {} events per domain: p50 ×{:.2}, p99 ×{:.2}",
                g.from.0,
                g.from.1,
                g.from.2,
                g.to.2,
                g.p50_ratio,
                g.p99_ratio
            );
        }
    }
    outln!("({:.0} s in all)", r.seconds);
}

/// Runs the benchmark; returns the exit code.
pub fn exec(args: &Args) -> u8 {
    let bad = args.domains.is_empty()
        || args.policies.is_empty()
        || args.events_per_domain.is_empty()
        || args.domains.contains(&0)
        || args.policies.contains(&0)
        || args.cycles == 0;
    if bad {
        eprintln!("error: --domains, --policies and --cycles must be at least 1");
        return 2;
    }
    if let Some(e) = args.events_per_domain.iter().find(|e| **e < 10) {
        eprintln!(
            "error: --events-per-domain must be at least 10 (5 custom KPIs, a compliance score and some recoveries), got {e}"
        );
        return 2;
    }
    let report = match measure(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        print_text(&report, args);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of a busy run (snapshots, strategy evaluations with a thousand-odd
    /// members, proposals, publications, acks, verdicts, rollbacks, alerts) is written to the
    /// same canonical text from its typed body as through a JSON value, and its payload as a
    /// value is what the whole body's `payload` member is.
    #[test]
    fn records_encode_to_the_same_text_typed_and_through_values() {
        let mut sup = supervisor(40).unwrap();
        let mut spine = Spine::new(30);
        let mut actions = std::collections::BTreeSet::new();
        for c in 0..200 {
            let end = spine.feed(&mut sup, c == 0, 20);
            sup.tick(end);
            let mut published = Vec::new();
            while let Some(effect) = sup.poll_effect() {
                match effect {
                    Effect::Record(e) => {
                        let typed = metaloop_ledger::to_canonical_string(&e.payload).unwrap();
                        let body = e.payload.body().expect("made from a body").clone();
                        let whole = serde_json::to_value(&body).unwrap();
                        let expected = whole.get("payload").cloned().unwrap_or_default();
                        assert_eq!(e.payload.value(), &expected, "{}", e.action);
                        let through_value =
                            metaloop_ledger::to_canonical_json(e.payload.value()).unwrap();
                        assert_eq!(typed, through_value, "{}", e.action);
                        // and it reads back as the same body (a snapshot without its merged
                        // windows, which are not written)
                        let mut body = body;
                        if let metaloop_core::record::RecordBody::Snapshot { snapshot, .. } =
                            &mut body
                        {
                            let s = std::sync::Arc::make_mut(snapshot);
                            s.global_window = Default::default();
                            for d in s.domains.values_mut() {
                                d.window = Default::default();
                            }
                        }
                        let back = metaloop_core::record::RecordBody::from_entry(
                            &e.action,
                            &serde_json::from_str(&typed).unwrap(),
                        )
                        .unwrap();
                        assert_eq!(back, body, "{}", e.action);
                        actions.insert(e.action.clone());
                    }
                    Effect::Publish(m) => published.push(m),
                    Effect::Notify(_) => {}
                }
            }
            spine.pending_acks = published;
        }
        for a in [
            "snapshot.built",
            "strategy.evaluated",
            "directive.proposed",
            "directive.published",
            "directive.applied",
            "verification.verdict",
            "learning.track_record",
            "directive.rolled_back",
            "alert.fired",
            "cycle.summary",
        ] {
            assert!(actions.contains(a), "{a} not seen in {actions:?}");
        }
    }
}
