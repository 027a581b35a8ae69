//! Volume, the daily cycle and bursts: incident counts, the hour-of-day pattern of arrivals
//! and difficulty, overdispersed success counts, the global expectation, and the guarantee
//! that the default spine is the spine it always was.

mod setup;

use metaloop_core::protocol::{EventData, SpineEvent};
use metaloop_core::time::Timestamp;
use metaloop_sim::{
    BURST_MEAN_SIZE, DIURNAL_EXEC_RISE, DIURNAL_HARDEST_HOUR, DIURNAL_PEAK_HOUR,
    DIURNAL_RATE_AMPLITUDE, DIURNAL_SUCCESS_DROP, ExpectedKpis, Scenario, Spine, SpineOptions,
    Volume,
};
use serde_json::json;
use setup::{directive, minutes};
use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::sync::OnceLock;

const HOUR_MIN: i64 = 60;
const DAY_MIN: i64 = 24 * HOUR_MIN;
const CYCLE_MS: i64 = 300_000;
/// Native incidents per 300 s of infrastructure, application, security.
const NATIVE_RATES: [(&str, f64); 3] = [
    ("infrastructure", 250.0),
    ("application", 400.0),
    ("security", 150.0),
];
/// Variance of a count of clustered incidents over its mean: `E[K²]/E[K]` for cluster sizes
/// `K = 1 + Geometric` of mean 3 (variance 6, so `E[K²] = 15`).
const CLUSTER_VARIANCE_RATIO: f64 = 5.0;

/// FNV-1a, a digest that cannot change under us.
fn fnv(text: &str, mut h: u64) -> u64 {
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A digest of everything the simulation decided in a stream (not of how events serialise).
fn digest(events: &[SpineEvent]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for e in events {
        let what = match &e.data {
            EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => format!(
                "{} {} {} {} {} {}",
                r.incident_id,
                r.playbook,
                r.duration_s.to_bits(),
                r.autonomous,
                r.human_override,
                matches!(e.data, EventData::RecoverySucceeded(_))
            ),
            EventData::DecisionMade(d) => format!(
                "{} {} {} {}",
                d.decision_id,
                d.confidence.to_bits(),
                d.autonomous,
                d.overridden
            ),
            EventData::HealthChanged(c) => format!("{} {:?}", c.node, c.state),
            EventData::TrustException(t) => format!("{} {}", t.policy, t.severity),
            EventData::ComplianceScored(c) => format!("{}", c.score.to_bits()),
            EventData::KpiReported(k) => format!("{} {}", k.name, k.value.to_bits()),
            EventData::DirectiveApplied(a) => format!("{} {}", a.previous, a.current),
            EventData::DirectiveRefused(r) => r.reason.clone(),
        };
        h = fnv(
            &format!("{}|{}|{}|{what}\n", e.id, e.source, e.time.millis()),
            h,
        );
    }
    h
}

/// 90 minutes of a scenario, two directives delivered at 30.
fn fingerprint_run(mut spine: Spine) -> (usize, u64, u64) {
    let mut out = Vec::new();
    spine.run_until(minutes(30), &mut out);
    let failover = directive(
        "d1",
        "infrastructure",
        "playbook.failover-db-primary.enabled",
        "set",
        json!({"value": true}),
        "overall_success_rate",
    );
    out.push(spine.deliver(&failover, minutes(30)));
    let raise = directive(
        "d2",
        "application",
        "planner.confidence_threshold",
        "adjust",
        json!({"adjustment": 0.05}),
        "overall_success_rate",
    );
    out.push(spine.deliver(&raise, minutes(30)));
    spine.run_until(minutes(90), &mut out);
    let truths: String = spine
        .truths()
        .map(|t| {
            format!(
                "{} {} {} {} {}\n",
                t.directive_id,
                t.before.to_bits(),
                t.after.to_bits(),
                t.harmful,
                t.kpis_after.mean_recovery_time_seconds.to_bits()
            )
        })
        .collect();
    (out.len(), digest(&out), fnv(&truths, 0xcbf2_9ce4_8422_2325))
}

#[test]
fn spine_new_is_unchanged_bit_for_bit() {
    // recorded from the spine before volumes, the daily cycle and bursts existed
    let pinned = [
        (
            Scenario::Seed,
            29001,
            0xe7dd3cf76f343c44,
            0x9640deeb95237385,
        ),
        (
            Scenario::Drift,
            28737,
            0x244a6a741b97714c,
            0x5553c97665a96eaf,
        ),
        (
            Scenario::Noise,
            28457,
            0x344d3409b1427384,
            0xd3fdc63ac70ba0b4,
        ),
        (
            Scenario::BadDirective,
            29064,
            0xead63486554d397e,
            0x98a01aec3d608057,
        ),
        (
            Scenario::Correlated,
            30618,
            0x3cbb118ff634de5e,
            0x27907f2402a02e18,
        ),
        (
            Scenario::ApproverAway,
            28825,
            0x4c323a46c0e3cc91,
            0x9640deeb95237385,
        ),
    ];
    for (scenario, events, stream, truths) in pinned {
        let got = fingerprint_run(Spine::new(scenario, 42, minutes(0)));
        assert_eq!(got, (events, stream, truths), "{scenario}");
        let with_defaults = Spine::with_options(scenario, 42, minutes(0), &SpineOptions::default());
        assert_eq!(fingerprint_run(with_defaults), got, "{scenario}");
    }
}

/// One window's incidents (by the moment they started) in one domain.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    incidents: f64,
    succeeded: f64,
    duration_sum: f64,
    duration_sq: f64,
}

impl Window {
    fn add(&mut self, other: &Window) {
        self.incidents += other.incidents;
        self.succeeded += other.succeeded;
        self.duration_sum += other.duration_sum;
        self.duration_sq += other.duration_sq;
    }

    fn success(&self) -> f64 {
        self.succeeded / self.incidents
    }

    fn mean_duration(&self) -> f64 {
        self.duration_sum / self.incidents
    }

    fn duration_se(&self) -> f64 {
        let n = self.incidents;
        let var = (self.duration_sq - self.duration_sum * self.duration_sum / n) / (n - 1.0);
        (var / n).sqrt()
    }
}

/// A long run cut into 5-minute cycles: each domain's incidents by the cycle they started in,
/// and the spine's expected global KPIs at the start of every cycle.
struct Run {
    cycles: usize,
    domains: BTreeMap<String, Vec<Window>>,
    expected: Vec<ExpectedKpis>,
}

impl Run {
    fn simulate(scenario: Scenario, seed: u64, options: SpineOptions, days: i64) -> Run {
        let mut spine = Spine::with_options(scenario, seed, minutes(0), &options);
        let cycles = (days * DAY_MIN / 5) as usize;
        let mut domains: BTreeMap<String, Vec<Window>> = spine
            .domains()
            .into_iter()
            .map(|d| (d, vec![Window::default(); cycles]))
            .collect();
        let mut expected = Vec::with_capacity(cycles);
        let mut events = Vec::new();
        // half an hour more, so that the last cycles' incidents have all recovered
        for c in 0..cycles as i64 + 6 {
            if c < cycles as i64 {
                expected.push(spine.expected_global_kpis());
            }
            spine.run_until(minutes(5 * (c + 1)), &mut events);
            for e in events.drain(..) {
                let (EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r)) = &e.data
                else {
                    continue;
                };
                let duration_ms = (r.duration_s * 1000.0).round() as i64;
                let started = e.time.millis() - duration_ms - minutes(0).millis();
                let cycle = started.div_euclid(CYCLE_MS) as usize;
                if cycle >= cycles {
                    continue;
                }
                let w = &mut domains.get_mut(&r.domain).unwrap()[cycle];
                w.incidents += 1.0;
                w.succeeded += matches!(e.data, EventData::RecoverySucceeded(_)) as u8 as f64;
                w.duration_sum += r.duration_s;
                w.duration_sq += r.duration_s * r.duration_s;
            }
        }
        Run {
            cycles,
            domains,
            expected,
        }
    }

    /// Every domain's incidents over the cycles `keep` selects.
    fn pooled(&self, keep: impl Fn(usize) -> bool) -> Window {
        let mut total = Window::default();
        for windows in self.domains.values() {
            for (c, w) in windows.iter().enumerate().filter(|(c, _)| keep(*c)) {
                let _ = c;
                total.add(w);
            }
        }
        total
    }

    fn incidents(&self, domain: &str) -> f64 {
        self.domains[domain].iter().map(|w| w.incidents).sum()
    }
}

/// Hour of day (fractional) at the middle of cycle `c`.
fn cycle_hour(c: usize) -> f64 {
    ((c as f64 + 0.5) * 5.0 / 60.0) % 24.0
}

/// The rate multiplier at hour `h`, written out from the documented formula.
fn rate(h: f64) -> f64 {
    1.0 + DIURNAL_RATE_AMPLITUDE * (2.0 * PI * (h - DIURNAL_PEAK_HOUR) / 24.0).cos()
}

/// How hard hour `h` is, 0 to 1, from the documented formula.
fn hardness(h: f64) -> f64 {
    (1.0 + (2.0 * PI * (h - DIURNAL_HARDEST_HOUR) / 24.0).cos()) / 2.0
}

/// `∫ f` over [a, b] by the midpoint rule on 10,000 intervals.
fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    let n = 10_000;
    let dx = (b - a) / n as f64;
    (0..n).map(|i| f(a + (i as f64 + 0.5) * dx)).sum::<f64>() * dx
}

/// Ten days at Medium with the daily cycle and bursts (seed scenario).
fn medium_days() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        Run::simulate(
            Scenario::Seed,
            21,
            SpineOptions::for_volume(Volume::Medium),
            10,
        )
    })
}

/// Ten days at Medium with bursts but no daily cycle (seed scenario), or with neither.
fn steady_days(bursts: bool) -> &'static Run {
    static WITH: OnceLock<Run> = OnceLock::new();
    static WITHOUT: OnceLock<Run> = OnceLock::new();
    let options = SpineOptions {
        volume: Volume::Medium,
        diurnal: false,
        bursts,
    };
    let cell = if bursts { &WITH } else { &WITHOUT };
    cell.get_or_init(|| Run::simulate(Scenario::Seed, 22, options, 10))
}

#[test]
fn volumes_give_their_incidents_per_hour() {
    for (volume, days, per_hour) in [
        (Volume::Medium, 2, 960.0),
        (Volume::Low, 10, 96.0),
        (Volume::PerHour(200.0), 5, 200.0),
    ] {
        let options = SpineOptions::for_volume(volume);
        assert!(options.diurnal && options.bursts);
        let run = if volume == Volume::Medium {
            medium_days()
        } else {
            &Run::simulate(Scenario::Seed, 23, options, days)
        };
        let days = run.cycles as f64 / 288.0;
        let hours = 24.0 * days;
        // whole days, so the daily cycle averages out; clustered arrivals make the count's
        // variance 5 times its mean
        let mean = per_hour * hours;
        let se = (CLUSTER_VARIANCE_RATIO * mean).sqrt();
        let total: f64 = NATIVE_RATES.iter().map(|(d, _)| run.incidents(d)).sum();
        println!(
            "{volume}: {:.1} incidents an hour over {days} days, expected {per_hour} ± {:.1} (4 se)",
            total / hours,
            4.0 * se / hours
        );
        assert!(
            (total - mean).abs() < 4.0 * se,
            "{volume}: {:.1} incidents an hour, expected {per_hour} ± {:.1}",
            total / hours,
            4.0 * se / hours
        );
        // every domain scaled in proportion to its native rate
        for (domain, native) in NATIVE_RATES {
            let mean = mean * native / 800.0;
            let se = (CLUSTER_VARIANCE_RATIO * mean).sqrt();
            let n = run.incidents(domain);
            assert!(
                (n - mean).abs() < 4.0 * se,
                "{volume} {domain}: {n} incidents, expected {mean:.0} ± {:.0}",
                4.0 * se
            );
        }
    }
}

#[test]
fn arrivals_follow_the_hour_of_day() {
    let run = medium_days();
    let in_hours = |a: f64, b: f64| move |c: usize| (a..b).contains(&cycle_hour(c));
    let day = run.pooled(in_hours(12.0, 16.0)).incidents;
    let night = run.pooled(in_hours(0.0, 4.0)).incidents;
    let want = integrate(rate, 12.0, 16.0) / integrate(rate, 0.0, 4.0);
    // closed form: (4 + 0.6·(24/π)·sin(π/6)) / (4 − 0.6·(24/π)·sin(π/6))
    let closed = (4.0 + 0.6 * 24.0 / PI * 0.5) / (4.0 - 0.6 * 24.0 / PI * 0.5);
    assert!((want - closed).abs() < 1e-6, "{want} vs {closed}");
    // log of a ratio of two clustered counts: variance 5/N₁ + 5/N₂
    let se = (CLUSTER_VARIANCE_RATIO / day + CLUSTER_VARIANCE_RATIO / night).sqrt();
    let got = day / night;
    println!("12–16 h over 0–4 h: {day} / {night} = {got:.3}, expected {want:.3} (log se {se:.4})");
    assert!(
        (got.ln() - want.ln()).abs() < 4.0 * se,
        "12–16 h over 0–4 h: {got:.3}, expected {want:.3} (log se {se:.4})"
    );
}

#[test]
fn night_incidents_are_harder_by_the_formula() {
    let run = medium_days();
    // the difficulty-free success of the seed, pooled over domains
    let base = Spine::new(Scenario::Seed, 1, minutes(0))
        .expected_global_kpis()
        .overall_success_rate;
    let spine = Spine::with_options(
        Scenario::Seed,
        1,
        minutes(0),
        &SpineOptions::for_volume(Volume::Medium),
    );
    // a window of hours holds whole clusters: the widest success dispersion of any domain
    let dispersion = spine
        .domains()
        .iter()
        .map(|d| spine.success_dispersion(d, 4 * 3_600_000).unwrap())
        .fold(1.0, f64::max);
    let expect = |a: f64, b: f64| {
        let weight = integrate(rate, a, b);
        let success = integrate(
            |h| rate(h) * (1.0 - DIURNAL_SUCCESS_DROP * hardness(h)),
            a,
            b,
        );
        base * success / weight
    };
    let window = |a: f64, b: f64| run.pooled(move |c| (a..b).contains(&cycle_hour(c)));
    let (night, day) = (window(0.0, 4.0), window(12.0, 16.0));
    let (want_night, want_day) = (expect(0.0, 4.0), expect(12.0, 16.0));
    let se = |p: f64, n: f64| (dispersion * p * (1.0 - p) / n).sqrt();
    let (se_night, se_day) = (se(want_night, night.incidents), se(want_day, day.incidents));
    for (label, w, want, se) in [
        ("night", night, want_night, se_night),
        ("day", day, want_day, se_day),
    ] {
        assert!(
            (w.success() - want).abs() < 4.0 * se,
            "{label}: success {:.4}, expected {want:.4} (se {se:.4})",
            w.success()
        );
    }
    let gap = day.success() - night.success();
    println!(
        "success night {:.4} (expected {want_night:.4} ± {se_night:.4}), day {:.4} (expected {want_day:.4} ± {se_day:.4}); recovery night {:.2} s, day {:.2} s",
        night.success(),
        day.success(),
        night.mean_duration(),
        day.mean_duration()
    );
    let want_gap = want_day - want_night;
    let se_gap = (se_night * se_night + se_day * se_day).sqrt();
    assert!(
        want_gap > 0.03 && (gap - want_gap).abs() < 4.0 * se_gap,
        "day − night success {gap:.4}, expected {want_gap:.4} (se {se_gap:.4})"
    );
    assert!(gap > 4.0 * se_gap, "night is measurably harder: {gap:.4}");
    // execution is slower at night: recovery times against the spine's expectation, which
    // only the daily cycle moves here
    let expected_duration = |a: f64, b: f64| {
        let (mut num, mut den) = (0.0, 0.0);
        for (c, k) in run.expected.iter().enumerate() {
            if (a..b).contains(&cycle_hour(c)) {
                num += rate(cycle_hour(c)) * k.mean_recovery_time_seconds;
                den += rate(cycle_hour(c));
            }
        }
        num / den
    };
    for (label, w, a, b) in [("night", night, 0.0, 4.0), ("day", day, 12.0, 16.0)] {
        let want = expected_duration(a, b);
        assert!(
            (w.mean_duration() - want).abs() < 4.0 * w.duration_se(),
            "{label}: recovery {:.2} s, expected {want:.2} s (se {:.3})",
            w.mean_duration(),
            w.duration_se()
        );
    }
    assert!(
        night.mean_duration() > day.mean_duration() + 4.0,
        "night {:.1} s, day {:.1} s (execution up to {} % slower)",
        night.mean_duration(),
        day.mean_duration(),
        DIURNAL_EXEC_RISE * 100.0
    );
}

/// `Σ (S − pN)² / Σ p(1 − p)N` over cycles and domains, with its standard error (delta method
/// for a ratio of sums), and the analytic dispersion weighted the same way.
fn dispersion(run: &Run, spine: &Spine) -> (f64, f64, f64) {
    let (mut num, mut den, mut analytic) = (0.0, 0.0, 0.0);
    let mut terms = Vec::new();
    for (domain, windows) in &run.domains {
        let p = spine.expected_kpis(domain).unwrap().overall_success_rate;
        let d = spine.success_dispersion(domain, CYCLE_MS).unwrap();
        for w in windows {
            let a = (w.succeeded - p * w.incidents).powi(2);
            let b = p * (1.0 - p) * w.incidents;
            num += a;
            den += b;
            analytic += d * b;
            terms.push((a, b));
        }
    }
    let ratio = num / den;
    let se = terms
        .iter()
        .map(|(a, b)| (a - ratio * b).powi(2))
        .sum::<f64>()
        .sqrt()
        / den;
    (ratio, se, analytic / den)
}

#[test]
fn bursts_make_per_cycle_success_counts_overdispersed() {
    let options = SpineOptions {
        volume: Volume::Medium,
        diurnal: false,
        bursts: true,
    };
    let spine = Spine::with_options(Scenario::Seed, 22, minutes(0), &options);
    let (got, se, want) = dispersion(steady_days(true), &spine);
    assert!(
        (got - want).abs() < 4.0 * se,
        "dispersion {got:.3} ± {se:.3}, analytic {want:.3}"
    );
    assert!(
        got > 1.3 && want > 1.45,
        "dispersion {got:.3}, analytic {want:.3}"
    );
    println!("dispersion {got:.3} ± {se:.3}, analytic {want:.3}");

    let spine = Spine::with_options(
        Scenario::Seed,
        22,
        minutes(0),
        &SpineOptions {
            bursts: false,
            ..options
        },
    );
    let (got, se, want) = dispersion(steady_days(false), &spine);
    println!("without bursts: dispersion {got:.3} ± {se:.3}");
    assert_eq!(want, 1.0);
    assert!(
        (got - 1.0).abs() < 4.0 * se && se < 0.05,
        "independent incidents: dispersion {got:.3} ± {se:.3}"
    );
}

#[test]
fn global_expectation_matches_a_long_run_without_the_daily_cycle() {
    for bursts in [false, true] {
        let run = steady_days(bursts);
        let want = run.expected[0];
        assert!(run.expected.iter().all(|k| *k == want), "steady state");
        let all = run.pooled(|_| true);
        // clusters inflate the variance of a long run's success count by the long-window
        // dispersion (whole clusters), at most 1 + 4·correlation; bounded by 2 here
        let inflation = if bursts { 2.0 } else { 1.0 };
        let p = want.overall_success_rate;
        let se = (inflation * p * (1.0 - p) / all.incidents).sqrt();
        println!(
            "bursts {bursts}: success {:.4} over {} incidents, expected {p:.4} (se {se:.4})",
            all.success(),
            all.incidents
        );
        assert!(
            (all.success() - p).abs() < 4.0 * se,
            "bursts {bursts}: success {:.4}, expected {p:.4} (se {se:.4})",
            all.success()
        );
        assert!(
            (all.mean_duration() - want.mean_recovery_time_seconds).abs() < 4.0 * all.duration_se(),
            "bursts {bursts}: recovery {:.3}, expected {:.3}",
            all.mean_duration(),
            want.mean_recovery_time_seconds
        );
    }
}

#[test]
fn global_expectation_is_the_incident_weighted_mean() {
    let weighted = |spine: &Spine, weights: &[f64; 3]| {
        let total: f64 = weights.iter().sum();
        let mut k = [0.0; 5];
        for ((domain, _), w) in NATIVE_RATES.iter().zip(weights) {
            let e = spine.expected_kpis(domain).unwrap();
            k[0] += w * e.overall_success_rate / total;
            k[1] += w * e.mean_recovery_time_seconds / total;
            k[2] += w * e.autonomy_rate / total;
            k[3] += w * e.human_intervention_rate / total;
            k[4] += e.compliance_score / 3.0;
        }
        k
    };
    let check = |spine: &Spine, weights: &[f64; 3], label: &str| {
        let g = spine.expected_global_kpis();
        let got = [
            g.overall_success_rate,
            g.mean_recovery_time_seconds,
            g.autonomy_rate,
            g.human_intervention_rate,
            g.compliance_score,
        ];
        for (a, b) in got.iter().zip(weighted(spine, weights)) {
            assert!((a - b).abs() < 1e-12, "{label}: {got:?}");
        }
    };
    let native = NATIVE_RATES.map(|(_, r)| r);
    // the daily cycle moves every domain's rate alike: the native rates weigh them all day
    let mut spine = Spine::with_options(
        Scenario::Drift,
        3,
        minutes(0),
        &SpineOptions::for_volume(Volume::Low),
    );
    let mut last = spine.expected_global_kpis();
    for hour in [3, 9, 15, 21] {
        spine.run_until(minutes(hour * HOUR_MIN), &mut Vec::new());
        check(&spine, &native, &format!("drift at {hour} h"));
        let now = spine.expected_global_kpis();
        assert_ne!(now, last, "the hour and the drift move the expectation");
        last = now;
    }
    // a fault raises the rate of the domains it reaches: at 20.5 minutes only infrastructure
    // is degraded (the cascade takes a minute), at 25 all three are
    let mut spine = Spine::with_options(
        Scenario::Correlated,
        3,
        minutes(0),
        &SpineOptions::for_volume(Volume::Medium),
    );
    spine.run_until(minutes(20).plus_millis(30_000), &mut Vec::new());
    check(
        &spine,
        &[375.0, 400.0, 150.0],
        "correlated, infrastructure degraded",
    );
    spine.run_until(minutes(25), &mut Vec::new());
    check(&spine, &native.map(|r| 1.5 * r), "correlated, all degraded");
}

/// An hour of a spine with options, a directive delivered at 30 minutes, in steps.
fn stream(seed: u64, options: SpineOptions, step_min: i64) -> Vec<SpineEvent> {
    let mut spine = Spine::with_options(Scenario::Correlated, seed, minutes(0), &options);
    let mut out = Vec::new();
    let mut t = 0;
    while t < 3 * HOUR_MIN {
        t = (t + step_min).min(3 * HOUR_MIN);
        spine.run_until(minutes(t), &mut out);
        if t == 30 {
            let d = directive(
                "d1",
                "infrastructure",
                "playbook.failover-db-primary.enabled",
                "set",
                json!({"value": true}),
                "overall_success_rate",
            );
            out.push(spine.deliver(&d, minutes(30)));
        }
    }
    out
}

#[test]
fn same_seed_and_options_give_identical_streams_however_sliced() {
    for volume in [Volume::Medium, Volume::Low, Volume::PerHour(200.0)] {
        let options = SpineOptions::for_volume(volume);
        let a = stream(7, options, 5);
        assert!(a.len() > 100, "{volume}: {} events", a.len());
        assert_eq!(digest(&a), digest(&stream(7, options, 5)), "{volume}");
        assert_eq!(digest(&a), digest(&stream(7, options, 1)), "{volume}");
        assert_eq!(digest(&a), digest(&stream(7, options, 30)), "{volume}");
    }
}

#[test]
fn seeds_and_options_change_the_stream() {
    let medium = SpineOptions::for_volume(Volume::Medium);
    let base = digest(&stream(7, medium, 30));
    assert_ne!(base, digest(&stream(8, medium, 30)));
    for other in [
        SpineOptions {
            diurnal: false,
            ..medium
        },
        SpineOptions {
            bursts: false,
            ..medium
        },
        SpineOptions::for_volume(Volume::Low),
    ] {
        assert_ne!(base, digest(&stream(7, other, 30)), "{other:?}");
    }
}

/// Start times and confidences of a domain's incidents, in order.
fn arrivals(spine: &mut Spine, domain: &str, until: Timestamp) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    spine.run_until(until, &mut out);
    out.iter()
        .filter_map(|e| match &e.data {
            EventData::DecisionMade(d) if d.domain == domain => {
                Some((e.time.millis(), d.confidence.to_bits()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn knobs_move_no_arrival_and_no_cluster() {
    // the probe shortens detection, so decisions come earlier: compare arrival order and
    // confidence, which a knob must not change, and the count
    let options = SpineOptions::for_volume(Volume::Medium);
    let mut plain = Spine::with_options(Scenario::Seed, 5, minutes(0), &options);
    let mut turned = Spine::with_options(Scenario::Seed, 5, minutes(0), &options);
    turned
        .set_knob("application", "planner.confidence_threshold", json!(0.9))
        .unwrap();
    let a = arrivals(&mut plain, "application", minutes(6 * HOUR_MIN));
    let b = arrivals(&mut turned, "application", minutes(6 * HOUR_MIN));
    assert!(a.len() > 1000, "{}", a.len());
    assert_eq!(a, b, "same incidents, same draws");
}

#[test]
fn a_zero_volume_has_no_incidents() {
    let mut spine = Spine::with_options(
        Scenario::Seed,
        1,
        minutes(0),
        &SpineOptions::for_volume(Volume::PerHour(0.0)),
    );
    let mut out = Vec::new();
    spine.run_until(minutes(DAY_MIN), &mut out);
    assert!(out.iter().all(|e| !matches!(
        e.data,
        EventData::DecisionMade(_) | EventData::RecoverySucceeded(_) | EventData::RecoveryFailed(_)
    )));
    // the initial health of the 4 nodes, 2 reports per domain per cycle, trust exceptions
    assert_eq!(out.len(), 4 + 3 * 288 * 2 + trust_exceptions(&out));
}

#[test]
#[should_panic(expected = "volume -1/h is not a finite incident rate at least 0")]
fn a_negative_volume_is_refused() {
    Spine::with_options(
        Scenario::Seed,
        1,
        minutes(0),
        &SpineOptions::for_volume(Volume::PerHour(-1.0)),
    );
}

fn trust_exceptions(events: &[SpineEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.data, EventData::TrustException(_)))
        .count()
}

#[test]
fn the_constants_are_the_documented_ones() {
    assert_eq!(BURST_MEAN_SIZE, 3.0);
    assert_eq!(
        (
            DIURNAL_RATE_AMPLITUDE,
            DIURNAL_PEAK_HOUR,
            DIURNAL_HARDEST_HOUR
        ),
        (0.6, 14.0, 3.0)
    );
    assert_eq!((DIURNAL_SUCCESS_DROP, DIURNAL_EXEC_RISE), (0.04, 0.2));
}
