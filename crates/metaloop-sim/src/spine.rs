//! The simulated spine: domains driven by a discrete-event agenda on virtual time, speaking
//! only the spine protocol, and recording the ground truth of every directive it applies.

use crate::agenda::{Agenda, Happening};
use crate::burst::{self, BURST_MEAN_SIZE, Stratum};
use crate::directive::{self, Knob, KnobChange, Refusal};
use crate::diurnal::{self, PEAK_RATE_MULTIPLIER};
use crate::domain::{Conditions, DomainSpec, Knobs, Situation};
use crate::health::{HealthGraph, Transition};
use crate::incident::{self, Outcome, to_millis};
use crate::kpis::{self, ExpectedKpis};
use crate::options::SpineOptions;
use crate::playbook::failover_playbook;
use crate::scenario::Scenario;
use crate::truth::{self, Truth};
use metaloop_core::protocol::{
    Arm, ComplianceScore, Decision, DirectiveApplied, DirectiveMessage, DirectiveRefused,
    EventData, ExperimentArm, HealthChange, HealthState, KpiReport, Recovery, SpineEvent,
    TrustException,
};
use metaloop_core::time::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Period of `compliance.scored` and `kpi.reported` per domain.
pub const REPORT_PERIOD_MS: i64 = 300_000;

/// Name of the custom KPI each domain reports every period: human-handled incidents open.
pub const HUMAN_QUEUE_DEPTH: &str = "human_queue_depth";

/// Source of refusals for directives that name no known domain.
pub const SPINE_SOURCE: &str = "urn:spine";

/// Playbook name reported when no playbook was available and a human recovered by hand.
pub const MANUAL_PLAYBOOK: &str = "manual";

/// ChaCha stream of domain `i`'s daily-cycle thinning draws is this plus `i`; of its cluster
/// draws, `BURST_STREAMS + i`. Apart from the incident (`2i`) and auxiliary (`2i + 1`)
/// streams, so that spines without the options draw exactly as before.
const DIURNAL_STREAMS: u64 = 1 << 32;
const BURST_STREAMS: u64 = 2 << 32;

const TRUST_POLICIES: [&str; 4] = [
    "least-privilege",
    "change-window",
    "data-residency",
    "separation-of-duties",
];

/// One domain's live state.
#[derive(Debug)]
struct DomainState {
    spec: DomainSpec,
    knobs: Knobs,
    /// `urn:spine:<domain>`.
    source: String,
    /// Draws of incidents and their arrivals.
    incident_rng: ChaCha8Rng,
    /// Draws of reports and trust exceptions.
    aux_rng: ChaCha8Rng,
    /// Draws that thin arrivals to the hour's rate (daily cycle only).
    diurnal_rng: ChaCha8Rng,
    /// Draws of cluster sizes, gaps, strata and shared fates (bursts only).
    burst_rng: ChaCha8Rng,
    /// Events emitted so far (ids are `<domain>-<n>`).
    events: u64,
    incidents: u64,
    /// Bumped when the incident rate changes; arrivals of older epochs are dropped.
    epoch: u64,
    /// Since when the threshold has been above the human team's overload limit.
    raised_at: Option<Timestamp>,
    /// Resolution times (ms) of human-handled incidents still open.
    human_open: BinaryHeap<Reverse<i64>>,
    /// The experiment running in the domain, if any.
    experiment: Option<Experiment>,
}

/// A `SCHEDULE_EXPERIMENT` in effect: a hash-chosen `fraction` of the domain's incidents run
/// with the candidate knobs (the treatment arm), the others with the domain's own.
#[derive(Debug, Clone)]
struct Experiment {
    /// Index into `Spine::experiment_ids`.
    index: usize,
    knob: String,
    fraction: f64,
    knobs: Knobs,
}

/// A uniform number in [0, 1) from an experiment id and an incident number (FNV-1a, then the
/// SplitMix64 finaliser): the arm assignment any adapter can reproduce.
pub fn arm_hash(experiment_id: &str, incident: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in experiment_id.bytes().chain(incident.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The simulated spine of one scenario, deterministic from its seed.
#[derive(Debug)]
pub struct Spine {
    scenario: Scenario,
    options: SpineOptions,
    start: Timestamp,
    now: Timestamp,
    started: bool,
    domains: Vec<DomainState>,
    health: HealthGraph,
    agenda: Agenda,
    truths: Vec<Truth>,
    truth_index: BTreeMap<String, usize>,
    acks: BTreeMap<String, SpineEvent>,
    spine_events: u64,
    approver_present: bool,
    /// Ids of the experiments started, in order.
    experiment_ids: Vec<String>,
}

impl Spine {
    /// A spine in `scenario`, its clock at `start`, its randomness derived from `seed` and the
    /// scenario: the scenarios' native volume, steady over the day, incidents independent.
    pub fn new(scenario: Scenario, seed: u64, start: Timestamp) -> Spine {
        Spine::with_options(scenario, seed, start, &SpineOptions::default())
    }

    /// A spine in `scenario` with `options` (volume, daily cycle, bursts), its clock at
    /// `start`, its randomness derived from `seed` and the scenario. With the default options
    /// it is exactly [`Spine::new`]; the options draw from random streams of their own, so the
    /// incidents themselves are drawn from the same stream either way.
    ///
    /// # Panics
    ///
    /// When the volume is not a finite rate at least 0 (see [`crate::Volume::is_valid`]).
    pub fn with_options(
        scenario: Scenario,
        seed: u64,
        start: Timestamp,
        options: &SpineOptions,
    ) -> Spine {
        assert!(
            options.volume.is_valid(),
            "volume {} is not a finite incident rate at least 0",
            options.volume
        );
        let world = scenario.world(start);
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8] = scenario.index();
        key[16..].copy_from_slice(b"metaloop-sim/v1\0");
        let domains = world
            .domains
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut incident_rng = ChaCha8Rng::from_seed(key);
                incident_rng.set_stream(2 * i as u64);
                let mut aux_rng = ChaCha8Rng::from_seed(key);
                aux_rng.set_stream(2 * i as u64 + 1);
                let mut diurnal_rng = ChaCha8Rng::from_seed(key);
                diurnal_rng.set_stream(DIURNAL_STREAMS + i as u64);
                let mut burst_rng = ChaCha8Rng::from_seed(key);
                burst_rng.set_stream(BURST_STREAMS + i as u64);
                DomainState {
                    knobs: spec.default_knobs(),
                    source: format!("urn:spine:{}", spec.name),
                    spec,
                    incident_rng,
                    aux_rng,
                    diurnal_rng,
                    burst_rng,
                    events: 0,
                    incidents: 0,
                    epoch: 0,
                    raised_at: None,
                    human_open: BinaryHeap::new(),
                    experiment: None,
                }
            })
            .collect();
        let mut spine = Spine {
            scenario,
            options: *options,
            start,
            now: start,
            started: false,
            domains,
            health: HealthGraph::new(world.health),
            agenda: Agenda::default(),
            truths: Vec::new(),
            truth_index: BTreeMap::new(),
            acks: BTreeMap::new(),
            spine_events: 0,
            approver_present: world.approver_present,
            experiment_ids: Vec::new(),
        };
        for d in 0..spine.domains.len() {
            spine.schedule_arrival(d, start.millis());
            spine.agenda.schedule(
                start.millis() + REPORT_PERIOD_MS,
                Happening::Report { domain: d },
            );
            spine.schedule_trust_exception(d, start.millis());
        }
        if let Some((node, at)) = spine.health.fault() {
            spine
                .agenda
                .schedule(at.millis(), Happening::Health(Transition::Fault(node)));
        }
        spine
    }

    /// The scenario being simulated.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The options the spine was made with.
    pub fn options(&self) -> &SpineOptions {
        &self.options
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Generates every event with time in (now, until], in time order, appending to `out`;
    /// advances the clock. The first call also emits the initial `health.changed` of every
    /// node (all healthy), stamped with the start time.
    pub fn run_until(&mut self, until: Timestamp, out: &mut Vec<SpineEvent>) {
        if !self.started {
            self.started = true;
            for node in 0..self.health.nodes().len() {
                self.emit_health(node, self.start.millis(), out);
            }
        }
        while let Some((at, happening)) = self.agenda.pop_due(until.millis()) {
            self.happen(at, happening, out);
        }
        self.now = self.now.max(until);
    }

    /// Applies a directive at `now` and returns the acknowledgement:
    /// `meta.directive.applied` with the knob's previous and current values, or
    /// `meta.directive.refused` with the reason.
    ///
    /// `now` is meant to be the clock after `run_until(now)`; an earlier `now` counts as the
    /// clock. The change affects incidents that start after the clock (those already under
    /// way finish as they started). Delivering a directive id again returns the first
    /// acknowledgement unchanged and changes nothing.
    pub fn deliver(&mut self, directive: &DirectiveMessage, now: Timestamp) -> SpineEvent {
        if let Some(ack) = self.acks.get(&directive.directive_id) {
            return ack.clone();
        }
        let at = now.max(self.now);
        let result = if directive.directive_type == "SCHEDULE_EXPERIMENT" {
            self.start_experiment(directive, at)
        } else {
            self.apply(directive, at)
        };
        let ack = match result {
            Ok((domain, applied)) => {
                self.event(domain, at.millis(), EventData::DirectiveApplied(applied))
            }
            Err(reason) => {
                let refused = EventData::DirectiveRefused(DirectiveRefused {
                    directive_id: directive.directive_id.clone(),
                    domain: directive.target_domain.clone(),
                    reason: reason.to_string(),
                });
                match self.domain_index(&directive.target_domain) {
                    Some(d) => self.event(d, at.millis(), refused),
                    None => {
                        self.spine_events += 1;
                        SpineEvent {
                            id: format!("spine-{}", self.spine_events),
                            source: SPINE_SOURCE.to_string(),
                            time: at,
                            data: refused,
                        }
                    }
                }
            }
        };
        self.acks
            .insert(directive.directive_id.clone(), ack.clone());
        ack
    }

    /// The ground truth of an applied directive.
    pub fn truth(&self, directive_id: &str) -> Option<&Truth> {
        self.truth_index.get(directive_id).map(|&i| &self.truths[i])
    }

    /// The ground truth of every applied directive, in order of application.
    pub fn truths(&self) -> impl Iterator<Item = &Truth> {
        self.truths.iter()
    }

    /// False in approver-away: the simulated human approver never answers.
    pub fn approver_present(&self) -> bool {
        self.approver_present
    }

    /// The domains, in dependency order (infrastructure first).
    pub fn domains(&self) -> Vec<String> {
        self.domains.iter().map(|d| d.spec.name.clone()).collect()
    }

    /// The current value of a knob, or `None` for an unknown domain or knob.
    pub fn knob(&self, domain: &str, knob: &str) -> Option<serde_json::Value> {
        let d = &self.domains[self.domain_index(domain)?];
        let k = directive::parse_knob(&d.spec, knob).ok()?;
        Some(directive::knob_value(&d.knobs, k))
    }

    /// The playbooks of a domain (including ones incidents never pick, such as failovers).
    pub fn playbooks(&self, domain: &str) -> Option<Vec<String>> {
        let d = &self.domains[self.domain_index(domain)?];
        Some(d.spec.playbooks.iter().map(|p| p.name.clone()).collect())
    }

    /// Analytic expected KPIs of a domain in the current state: the incidents that start now
    /// have exactly these expectations.
    pub fn expected_kpis(&self, domain: &str) -> Option<ExpectedKpis> {
        Some(self.current_kpis(self.domain_index(domain)?))
    }

    /// Incident-weighted expected global KPIs now: each domain's [`Spine::expected_kpis`]
    /// weighted by its current incident rate, as metaloop pools recoveries and decisions
    /// across domains; the compliance score is the plain mean over domains, since every domain
    /// reports it once per period whatever its incidents. The true state of the spine at
    /// this moment.
    pub fn expected_global_kpis(&self) -> ExpectedKpis {
        let mut weight = 0.0;
        let mut sum = ExpectedKpis {
            overall_success_rate: 0.0,
            mean_recovery_time_seconds: 0.0,
            autonomy_rate: 0.0,
            human_intervention_rate: 0.0,
            compliance_score: 0.0,
        };
        for d in 0..self.domains.len() {
            let k = self.current_kpis(d);
            // the volume and the hour's rate multiply every domain alike and cancel out
            let w = self.domains[d].spec.incidents_per_300s * self.health_rate_factor(d);
            weight += w;
            sum.overall_success_rate += w * k.overall_success_rate;
            sum.mean_recovery_time_seconds += w * k.mean_recovery_time_seconds;
            sum.autonomy_rate += w * k.autonomy_rate;
            sum.human_intervention_rate += w * k.human_intervention_rate;
            sum.compliance_score += k.compliance_score;
        }
        ExpectedKpis {
            overall_success_rate: sum.overall_success_rate / weight,
            mean_recovery_time_seconds: sum.mean_recovery_time_seconds / weight,
            autonomy_rate: sum.autonomy_rate / weight,
            human_intervention_rate: sum.human_intervention_rate / weight,
            compliance_score: sum.compliance_score / self.domains.len() as f64,
        }
    }

    /// Analytic variance of a domain's count of successful recoveries among the incidents
    /// starting in a window of `window_ms`, as a multiple of the binomial variance that treats
    /// those incidents as independent, in the current state: 1 without bursts; with bursts,
    /// `1 + c·n`, `c` the success correlation of two incidents of a cluster and `n` the mean
    /// number of other incidents of its cluster that start in an incident's window.
    pub fn success_dispersion(&self, domain: &str, window_ms: i64) -> Option<f64> {
        let d = self.domain_index(domain)?;
        if !self.options.bursts {
            return Some(1.0);
        }
        let state = &self.domains[d];
        let profile = kpis::success_profile(&Situation {
            spec: &state.spec,
            knobs: &state.knobs,
            conditions: self.current_conditions(d, self.now),
        });
        Some(burst::dispersion(
            burst::success_correlation(&profile),
            window_ms,
        ))
    }

    /// Sets a knob at the current time as a `set` directive would (same validation, same
    /// consequences such as a failover starting or a small team overloading), without an
    /// acknowledgement and without recording a truth: for runs that apply known settings
    /// directly, such as [`Scenario::oracle`]'s.
    pub fn set_knob(
        &mut self,
        domain: &str,
        knob: &str,
        value: serde_json::Value,
    ) -> Result<(), Refusal> {
        let d = self.domain_or_refusal(domain)?;
        let parameters = serde_json::json!({ "value": value });
        let state = &self.domains[d];
        let change =
            directive::interpret_action(&state.spec, &state.knobs, knob, "set", &parameters)?;
        self.change_knobs(d, &change, self.now);
        Ok(())
    }

    /// The state of a health-graph node (`domain/node`).
    pub fn node_state(&self, id: &str) -> Option<HealthState> {
        Some(self.health.state(self.health.index_of_id(id)?))
    }

    fn domain_index(&self, name: &str) -> Option<usize> {
        self.domains.iter().position(|d| d.spec.name == name)
    }

    fn domain_or_refusal(&self, name: &str) -> Result<usize, Refusal> {
        self.domain_index(name)
            .ok_or_else(|| Refusal::UnknownDomain {
                domain: name.to_string(),
                known: self.domains().join(", "),
            })
    }

    fn current_kpis(&self, d: usize) -> ExpectedKpis {
        let state = &self.domains[d];
        kpis::expected(&Situation {
            spec: &state.spec,
            knobs: &state.knobs,
            conditions: self.current_conditions(d, self.now),
        })
    }

    /// What the hour of `at` multiplies success probabilities and execution times by.
    fn daily_factors(&self, at: Timestamp) -> (f64, f64) {
        if self.options.diurnal {
            (diurnal::success_factor(at), diurnal::exec_factor(at))
        } else {
            (1.0, 1.0)
        }
    }

    /// Conditions of a domain at `at`, as incidents starting then experience them.
    fn current_conditions(&self, d: usize, at: Timestamp) -> Conditions {
        let state = &self.domains[d];
        let overloaded = match (&state.spec.humans.overload, state.raised_at) {
            (Some(o), Some(since)) => {
                state.knobs.threshold > o.threshold_limit
                    && at.millis() >= since.millis() + o.delay_ms
            }
            _ => false,
        };
        let unhealthy = self.health.domain_unhealthy(&state.spec.name);
        let (success_factor, exec_factor) = self.daily_factors(at);
        Conditions {
            at,
            fault_penalty: self.fault_penalty(unhealthy),
            overloaded,
            success_factor,
            exec_factor,
        }
    }

    /// Conditions of a domain at `at` once every delayed consequence of the current knobs has
    /// played out (overload after its delay, failovers and cascades completed); the hour's
    /// difficulty is the environment at `at`, the same before and after a change.
    fn steady_conditions(&self, d: usize, at: Timestamp) -> Conditions {
        let state = &self.domains[d];
        let overloaded = state
            .spec
            .humans
            .overload
            .as_ref()
            .is_some_and(|o| state.knobs.threshold > o.threshold_limit);
        let unhealthy = self.health.domain_unhealthy_steady(&state.spec.name);
        let (success_factor, exec_factor) = self.daily_factors(at);
        Conditions {
            at,
            fault_penalty: self.fault_penalty(unhealthy),
            overloaded,
            success_factor,
            exec_factor,
        }
    }

    fn fault_penalty(&self, unhealthy: bool) -> f64 {
        if unhealthy {
            self.health.spec.fault_penalty
        } else {
            0.0
        }
    }

    fn steady_kpis(&self, d: usize, at: Timestamp) -> ExpectedKpis {
        let state = &self.domains[d];
        self.steady_kpis_with(d, at, &state.knobs)
    }

    /// The steady KPIs the domain would have with `knobs` in force for all its incidents.
    fn steady_kpis_with(&self, d: usize, at: Timestamp, knobs: &Knobs) -> ExpectedKpis {
        let state = &self.domains[d];
        let mut conditions = self.steady_conditions(d, at);
        conditions.overloaded = state
            .spec
            .humans
            .overload
            .as_ref()
            .is_some_and(|o| knobs.threshold > o.threshold_limit);
        kpis::expected(&Situation {
            spec: &state.spec,
            knobs,
            conditions,
        })
    }

    /// Starts a `SCHEDULE_EXPERIMENT`: `parameters.fraction` of the domain's incidents (chosen
    /// by [`arm_hash`] of the directive id and the incident number) run with the knob changed
    /// as the action says; the domain's own knobs stay. The truth recorded is the effect the
    /// candidate would have on the whole domain.
    fn start_experiment(
        &mut self,
        directive: &DirectiveMessage,
        at: Timestamp,
    ) -> Result<(usize, DirectiveApplied), Refusal> {
        let d = self.domain_or_refusal(&directive.target_domain)?;
        let change =
            directive::interpret(&self.domains[d].spec, &self.domains[d].knobs, directive)?;
        let fraction = directive::number(&directive.parameters, "fraction")?;
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(Refusal::BadParameter {
                field: "fraction",
                expected: "a number strictly between 0 and 1",
                got: fraction.to_string(),
            });
        }
        if let Some(e) = &self.domains[d].experiment {
            return Err(Refusal::ExperimentRunning {
                domain: directive.target_domain.clone(),
                id: self.experiment_ids[e.index].clone(),
            });
        }
        let kpis_before = self.steady_kpis(d, at);
        let kpis_after = self.steady_kpis_with(d, at, &change.knobs);
        self.record_truth(directive, &change, at, kpis_before, kpis_after);
        self.domains[d].experiment = Some(Experiment {
            index: self.experiment_ids.len(),
            knob: directive.knob.clone(),
            fraction,
            knobs: change.knobs,
        });
        self.experiment_ids.push(directive.directive_id.clone());
        Ok((
            d,
            DirectiveApplied {
                directive_id: directive.directive_id.clone(),
                domain: directive.target_domain.clone(),
                knob: directive.knob.clone(),
                previous: change.previous,
                current: change.current,
            },
        ))
    }

    /// Records the truth of a directive from the domain's steady KPIs without and with it.
    fn record_truth(
        &mut self,
        directive: &DirectiveMessage,
        change: &KnobChange,
        at: Timestamp,
        kpis_before: ExpectedKpis,
        kpis_after: ExpectedKpis,
    ) {
        let (before, after, effect, harmful) =
            truth::assess(&directive.target_kpi, &kpis_before, &kpis_after);
        self.truth_index
            .insert(directive.directive_id.clone(), self.truths.len());
        self.truths.push(Truth {
            directive_id: directive.directive_id.clone(),
            target_domain: directive.target_domain.clone(),
            target_kpi: directive.target_kpi.clone(),
            knob: directive.knob.clone(),
            previous: change.previous.clone(),
            current: change.current.clone(),
            applied_at: at,
            before,
            after,
            effect,
            harmful,
            kpis_before,
            kpis_after,
        });
    }

    /// The experiment running in `domain`: its id and the fraction in the treatment arm.
    pub fn experiment(&self, domain: &str) -> Option<(String, f64)> {
        let e = self.domains[self.domain_index(domain)?]
            .experiment
            .as_ref()?;
        Some((self.experiment_ids[e.index].clone(), e.fraction))
    }

    /// Validates and applies a directive; records its truth.
    fn apply(
        &mut self,
        directive: &DirectiveMessage,
        at: Timestamp,
    ) -> Result<(usize, DirectiveApplied), Refusal> {
        let d = self.domain_or_refusal(&directive.target_domain)?;
        let change =
            directive::interpret(&self.domains[d].spec, &self.domains[d].knobs, directive)?;
        // a directive on the knob of a running experiment ends the experiment: a promotion
        // (the candidate for every incident) or an abandonment (a rollback to the value the
        // control arm kept)
        if self.domains[d]
            .experiment
            .as_ref()
            .is_some_and(|e| e.knob == directive.knob)
        {
            self.domains[d].experiment = None;
        }
        let kpis_before = self.steady_kpis(d, at);
        self.change_knobs(d, &change, at);
        let kpis_after = self.steady_kpis(d, at);
        self.record_truth(directive, &change, at, kpis_before, kpis_after);
        let applied = DirectiveApplied {
            directive_id: directive.directive_id.clone(),
            domain: directive.target_domain.clone(),
            knob: directive.knob.clone(),
            previous: change.previous,
            current: change.current,
        };
        Ok((d, applied))
    }

    /// Puts a validated change into effect at `at`: the overload clock, the knobs, and a
    /// failover started by enabling its playbook.
    fn change_knobs(&mut self, d: usize, change: &KnobChange, at: Timestamp) {
        let state = &mut self.domains[d];
        if let Some(limit) = state
            .spec
            .humans
            .overload
            .as_ref()
            .map(|o| o.threshold_limit)
        {
            // the overload clears as soon as the threshold is back within the team's limit
            state.raised_at = match state.raised_at {
                _ if change.knobs.threshold <= limit => None,
                None => Some(at),
                since => since,
            };
        }
        state.knobs = change.knobs.clone();
        if let Knob::Playbook(i) = change.knob
            && state.knobs.playbook_enabled[i]
        {
            let node = state.spec.playbooks[i]
                .name
                .strip_prefix("failover-")
                .and_then(|node| self.health.index_of(&state.spec.name, node));
            if let Some(node) = node {
                self.start_failover(node, at.millis());
            }
        }
    }

    fn start_failover(&mut self, node: usize, at_ms: i64) {
        if let Some(heal) = self.health.start_failover(node) {
            self.agenda.schedule(
                at_ms + self.health.spec.failover_delay_ms,
                Happening::Health(heal),
            );
        }
    }

    /// True when the failover playbook of `node` is enabled in its domain.
    fn failover_enabled(&self, node: usize) -> bool {
        let n = &self.health.nodes()[node];
        let Some(d) = self.domain_index(&n.domain) else {
            return false;
        };
        let state = &self.domains[d];
        state
            .spec
            .playbook_index(&failover_playbook(&n.name))
            .is_some_and(|i| state.knobs.playbook_enabled[i])
    }

    /// What a domain's health multiplies its incident rate by.
    fn health_rate_factor(&self, d: usize) -> f64 {
        if self.health.domain_unhealthy(&self.domains[d].spec.name) {
            self.health.spec.fault_rate_factor
        } else {
            1.0
        }
    }

    /// Rate of a domain's arrivals per ms: incidents, or cluster starts with bursts (a
    /// cluster brings `BURST_MEAN_SIZE` incidents on average), at the daily peak's rate when
    /// the daily cycle thins them to the hour's rate.
    fn arrival_rate_per_ms(&self, d: usize) -> f64 {
        let mut scale = self.options.volume.factor();
        if self.options.diurnal {
            scale *= PEAK_RATE_MULTIPLIER;
        }
        if self.options.bursts {
            scale /= BURST_MEAN_SIZE;
        }
        // scale is exactly 1 without options: the same arithmetic, bit for bit, as ever
        self.domains[d].spec.incidents_per_300s * self.health_rate_factor(d) * scale
            / REPORT_PERIOD_MS as f64
    }

    /// Schedules the next arrival of a domain after `from_ms` (exponential gap); none at a
    /// zero rate.
    fn schedule_arrival(&mut self, d: usize, from_ms: i64) {
        let rate = self.arrival_rate_per_ms(d);
        if rate <= 0.0 {
            return;
        }
        let state = &mut self.domains[d];
        let u: f64 = state.incident_rng.random();
        let gap_ms = (-(1.0 - u).ln() / rate).round() as i64;
        let epoch = state.epoch;
        self.agenda.schedule(
            from_ms.saturating_add(gap_ms),
            Happening::Arrival { domain: d, epoch },
        );
    }

    /// An arrival comes due: kept with probability the hour's rate over the peak's under the
    /// daily cycle (thinning, which makes arrivals an exact inhomogeneous Poisson process);
    /// then an incident starts, or a cluster's first incident with its followers scheduled.
    fn arrive(&mut self, d: usize, at: i64) {
        let options = self.options;
        let state = &mut self.domains[d];
        if options.diurnal {
            let u: f64 = state.diurnal_rng.random();
            if u * PEAK_RATE_MULTIPLIER >= diurnal::rate_multiplier(Timestamp(at)) {
                return;
            }
        }
        if !options.bursts {
            self.start_incident(d, at, None);
            return;
        }
        let stratum = Stratum::draw(&mut state.burst_rng);
        let followers = burst::draw_followers(&mut state.burst_rng);
        self.start_in_cluster(d, at, stratum);
        self.schedule_follower(d, at, stratum, followers);
    }

    /// Schedules the next of `left` incidents still to come in a cluster.
    fn schedule_follower(&mut self, d: usize, from_ms: i64, stratum: Stratum, left: u32) {
        if left == 0 {
            return;
        }
        let gap_ms = burst::draw_gap_ms(&mut self.domains[d].burst_rng);
        self.agenda.schedule(
            from_ms.saturating_add(gap_ms),
            Happening::Follower {
                domain: d,
                stratum,
                left: left - 1,
            },
        );
    }

    /// Starts an incident of a cluster, sharing the cluster's fate or not.
    fn start_in_cluster(&mut self, d: usize, at: i64, stratum: Stratum) {
        let shared = burst::draw_shared(&mut self.domains[d].burst_rng);
        self.start_incident(d, at, shared.then_some(stratum));
    }

    fn schedule_trust_exception(&mut self, d: usize, from_ms: i64) {
        let state = &mut self.domains[d];
        let u: f64 = state.aux_rng.random();
        let gap_s = -(1.0 - u).ln() * 3600.0 / state.spec.trust_exceptions_per_hour;
        self.agenda.schedule(
            from_ms + to_millis(gap_s),
            Happening::TrustException { domain: d },
        );
    }

    fn happen(&mut self, at: i64, happening: Happening, out: &mut Vec<SpineEvent>) {
        match happening {
            Happening::Arrival { domain, epoch } => {
                if epoch == self.domains[domain].epoch {
                    self.arrive(domain, at);
                    self.schedule_arrival(domain, at);
                }
            }
            Happening::Follower {
                domain,
                stratum,
                left,
            } => {
                self.start_in_cluster(domain, at, stratum);
                self.schedule_follower(domain, at, stratum, left);
            }
            Happening::Decision {
                domain,
                incident,
                outcome,
                arm,
            } => {
                let experiment = self.arm_tag(arm);
                let state = &self.domains[domain];
                let data = EventData::DecisionMade(Decision {
                    domain: state.spec.name.clone(),
                    decision_id: format!("{}-dec-{incident}", state.spec.name),
                    confidence: outcome.confidence,
                    autonomous: outcome.autonomous_decision,
                    approved_by_human: !outcome.autonomous_decision,
                    overridden: outcome.overridden,
                    experiment,
                });
                out.push(self.event(domain, at, data));
            }
            Happening::Recovery {
                domain,
                incident,
                outcome,
                arm,
            } => {
                let experiment = self.arm_tag(arm);
                let state = &self.domains[domain];
                let recovery = Recovery {
                    domain: state.spec.name.clone(),
                    incident_id: format!("{}-inc-{incident}", state.spec.name),
                    playbook: outcome.playbook.map_or_else(
                        || MANUAL_PLAYBOOK.to_string(),
                        |p| state.spec.playbooks[p].name.clone(),
                    ),
                    duration_s: outcome.duration_ms as f64 / 1000.0,
                    autonomous: outcome.ran_autonomously(),
                    human_override: outcome.overridden,
                    experiment,
                };
                let data = if outcome.succeeded {
                    EventData::RecoverySucceeded(recovery)
                } else {
                    EventData::RecoveryFailed(recovery)
                };
                out.push(self.event(domain, at, data));
            }
            Happening::Report { domain } => {
                let state = &mut self.domains[domain];
                let z: f64 = state.aux_rng.sample(StandardNormal);
                let (mean, sd) = state.spec.compliance;
                let score = (mean + sd * z).clamp(0.0, 100.0);
                while state
                    .human_open
                    .peek()
                    .is_some_and(|Reverse(end)| *end <= at)
                {
                    state.human_open.pop();
                }
                let depth = state.human_open.len() as f64;
                let name = state.spec.name.clone();
                let compliance = EventData::ComplianceScored(ComplianceScore {
                    domain: name.clone(),
                    score,
                });
                out.push(self.event(domain, at, compliance));
                let queue = EventData::KpiReported(KpiReport {
                    domain: name,
                    name: HUMAN_QUEUE_DEPTH.to_string(),
                    value: depth,
                });
                out.push(self.event(domain, at, queue));
                self.agenda
                    .schedule(at + REPORT_PERIOD_MS, Happening::Report { domain });
            }
            Happening::TrustException { domain } => {
                let state = &mut self.domains[domain];
                let u_policy: f64 = state.aux_rng.random();
                let u_severity: f64 = state.aux_rng.random();
                let policy = TRUST_POLICIES[((u_policy * TRUST_POLICIES.len() as f64) as usize)
                    .min(TRUST_POLICIES.len() - 1)];
                let severity = match u_severity {
                    u if u < 0.6 => "low",
                    u if u < 0.9 => "medium",
                    _ => "high",
                };
                let data = EventData::TrustException(TrustException {
                    domain: state.spec.name.clone(),
                    policy: policy.to_string(),
                    severity: severity.to_string(),
                });
                out.push(self.event(domain, at, data));
                self.schedule_trust_exception(domain, at);
            }
            Happening::Health(transition) => self.transition(transition, at, out),
        }
    }

    fn start_incident(&mut self, d: usize, at: i64, fate: Option<Stratum>) {
        let conditions = self.current_conditions(d, Timestamp(at));
        let state = &mut self.domains[d];
        let arm = state.experiment.as_ref().map(|e| {
            let id = &self.experiment_ids[e.index];
            let arm = if arm_hash(id, state.incidents) < e.fraction {
                Arm::Treatment
            } else {
                Arm::Control
            };
            (e.index, arm)
        });
        let knobs = match (&state.experiment, arm) {
            (Some(e), Some((_, Arm::Treatment))) => &e.knobs,
            _ => &state.knobs,
        };
        let situation = Situation {
            spec: &state.spec,
            knobs,
            conditions,
        };
        let outcome: Outcome = incident::sample(&situation, &mut state.incident_rng, fate);
        let incident = state.incidents;
        state.incidents += 1;
        if !outcome.ran_autonomously() {
            state.human_open.push(Reverse(at + outcome.duration_ms));
        }
        self.agenda.schedule(
            at + outcome.detection_ms,
            Happening::Decision {
                domain: d,
                incident,
                outcome,
                arm,
            },
        );
        self.agenda.schedule(
            at + outcome.duration_ms,
            Happening::Recovery {
                domain: d,
                incident,
                outcome,
                arm,
            },
        );
    }

    fn transition(&mut self, transition: Transition, at: i64, out: &mut Vec<SpineEvent>) {
        let unhealthy_before: Vec<bool> = self
            .domains
            .iter()
            .map(|d| self.health.domain_unhealthy(&d.spec.name))
            .collect();
        let (changed, follow) = self.health.apply(transition);
        let Some(node) = changed else { return };
        self.emit_health(node, at, out);
        for next in follow {
            self.agenda.schedule(
                at + self.health.spec.cascade_delay_ms,
                Happening::Health(next),
            );
        }
        if self.health.state(node) != HealthState::Healthy && self.failover_enabled(node) {
            self.start_failover(node, at);
        }
        for (d, was_unhealthy) in unhealthy_before.into_iter().enumerate() {
            if self.health.domain_unhealthy(&self.domains[d].spec.name) != was_unhealthy {
                // the incident rate changed: redraw the next arrival (exponential gaps are memoryless)
                self.domains[d].epoch += 1;
                self.schedule_arrival(d, at);
            }
        }
    }

    fn emit_health(&mut self, node: usize, at: i64, out: &mut Vec<SpineEvent>) {
        let n = &self.health.nodes()[node];
        let data = EventData::HealthChanged(HealthChange {
            domain: n.domain.clone(),
            node: n.name.clone(),
            state: self.health.state(node),
            depends_on: n.depends_on.clone(),
        });
        let Some(d) = self.domain_index(&n.domain) else {
            return;
        };
        out.push(self.event(d, at, data));
    }

    fn arm_tag(&self, arm: Option<(usize, Arm)>) -> Option<ExperimentArm> {
        arm.map(|(i, arm)| ExperimentArm {
            id: self.experiment_ids[i].clone(),
            arm,
        })
    }

    /// Stamps an event of domain `d` with the next id of its source.
    fn event(&mut self, d: usize, at: i64, data: EventData) -> SpineEvent {
        let state = &mut self.domains[d];
        state.events += 1;
        SpineEvent {
            id: format!("{}-{}", state.spec.name, state.events),
            source: state.source.clone(),
            time: Timestamp(at),
            data,
        }
    }
}
