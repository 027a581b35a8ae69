//! The supervisor's state as a fold over its ledger records.

use crate::alert::Alert;
use crate::config::SupervisorConfig;
use crate::directive::{Directive, ImpactLevel, Status};
use crate::goal::Goal;
use crate::health::HealthGraph;
use crate::kpi::{CycleWindows, DomainWindow, PlaybookCounts};
use crate::pipeline::{ApprovalMatrix, Requirement};
use crate::policy::{MetaPolicy, TrackRecord};
use crate::record::RecordBody;
use crate::time::Timestamp;
use crate::verify::experiment::ArmCycle;
use crate::verify::series::{Control, CycleSummary};
use crate::verify::{Outcome, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// An approval given to a directive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    pub note: String,
    pub at: Timestamp,
}

/// What the spine acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedChange {
    pub previous: serde_json::Value,
    pub current: serde_json::Value,
    pub at: Timestamp,
}

/// One directive with everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectiveState {
    pub directive: Directive,
    pub status: Status,
    /// Every status it went through, with when.
    pub lifecycle: Vec<(Status, Timestamp)>,
    pub requirement: Requirement,
    pub effective_impact: ImpactLevel,
    pub approvals: Vec<Approval>,
    pub rejection: Option<Approval>,
    pub expires_at: Option<Timestamp>,
    pub published_at: Option<Timestamp>,
    pub applied: Option<AppliedChange>,
    pub refused_reason: Option<String>,
    pub ack_timed_out: bool,
    /// Statistics before the directive (fixed when it was proposed).
    pub pre: DomainWindow,
    pub pre_cycles: u32,
    /// Statistics since it was applied (cycles that started after the ack).
    pub post: DomainWindow,
    pub post_cycles: u32,
    /// Per-cycle summaries before the directive (its pre window, stopping at the target
    /// domain's last change) and since it was applied: the sequential method's data, read
    /// for the target and the controls. Each cycle's summary is shared with the state's
    /// history and every other directive that takes it (nothing copied per directive), so
    /// what they keep grows with the cycles run, not with the directives. Rebuilt by
    /// replay, not serialised.
    #[serde(skip)]
    pub pre_series: Vec<Arc<CycleSummary>>,
    #[serde(skip)]
    pub post_series: Vec<Arc<CycleSummary>>,
    /// The control domains of its sequential verification (no change of their own over the
    /// pre window), each used until its own next change.
    #[serde(default, skip_serializing)]
    pub controls: Vec<Control>,
    /// A `SCHEDULE_EXPERIMENT`'s arms, cycle by cycle since it started. Rebuilt by replay,
    /// not serialised.
    #[serde(default, skip_serializing)]
    pub arm_series: Vec<ArmCycle>,
    pub verdict: Option<Verdict>,
    pub rolled_back_by: Option<String>,
    /// A shadow directive: when it was recorded (its would-be change; the estimated
    /// verdict takes the cycles after it, as a live one takes those after its ack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_since: Option<Timestamp>,
}

impl DirectiveState {
    fn set_status(&mut self, status: Status, at: Timestamp) {
        self.status = status;
        self.lifecycle.push((status, at));
    }

    /// True while it holds its knob.
    pub fn holds_knob(&self) -> bool {
        self.status.in_flight()
            && self.directive.directive_type != crate::directive::DirectiveType::RequestReview
    }
}

/// A policy with what the supervisor has learned about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    pub policy: MetaPolicy,
    /// Consecutive cycles its condition has held.
    pub streak: u32,
    /// Knob key → cycle it last issued a directive on that knob.
    pub last_issued: BTreeMap<String, u64>,
    pub track: TrackRecord,
    /// Registered, enabled or disabled at run time: such a change outlives a restart with
    /// the configuration's own version of the policy.
    #[serde(default)]
    pub changed_at_run_time: bool,
}

/// A systemic pattern being tracked across cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternTrack {
    pub streak: u32,
    pub domains: Vec<String>,
    /// A directive was issued into one of its domains while it was present.
    pub addressed: bool,
    pub description: String,
}

/// The supervisor's whole decision state. Every field changes only in [`State::apply`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    pub environment: String,
    pub goals: Vec<Goal>,
    pub approval: ApprovalMatrix,
    pub started_at: Timestamp,
    /// Last closed cycle.
    pub cycle: u64,
    pub last_cycle_end: Option<Timestamp>,
    /// Recent closed cycles, oldest first.
    pub history: VecDeque<CycleWindows>,
    /// The per-cycle summary of each cycle of `history` (same order and length), computed
    /// once when the cycle closes; verifications copy the domains they compare from it.
    #[serde(skip)]
    pub summaries: VecDeque<Arc<CycleSummary>>,
    /// Running totals of observations per domain over `summaries`, for ranking control
    /// domains (derived; equal whatever it holds).
    #[serde(skip)]
    observation_counts: super::counts::ObservationCounts,
    /// Knob key → cycles at which a change reversed the knob's previous change (flap control).
    #[serde(default)]
    pub knob_reversals: BTreeMap<String, Vec<u64>>,
    /// Knob key → direction (+1 / -1) of the knob's last applied change.
    #[serde(default)]
    pub knob_last_move: BTreeMap<String, i8>,
    pub health: HealthGraph,
    pub known_domains: BTreeSet<String>,
    pub regime_start: BTreeMap<String, Timestamp>,
    /// Per domain, per KPI: slow-moving baselines.
    pub baselines: BTreeMap<String, BTreeMap<String, f64>>,
    pub directives: BTreeMap<String, DirectiveState>,
    /// Directive ids in the order they were proposed.
    pub order: Vec<String>,
    pub policies: BTreeMap<String, PolicyState>,
    /// Last acknowledged value of each knob (`domain/knob`).
    pub knob_values: BTreeMap<String, serde_json::Value>,
    pub alerts: BTreeMap<String, Alert>,
    pub goal_miss_streak: BTreeMap<String, u32>,
    pub patterns: BTreeMap<String, PatternTrack>,
    /// (cycle, outcome) of recent verdicts.
    pub verdict_log: VecDeque<(u64, Outcome)>,
    /// Global KPIs of the first and the latest snapshot.
    pub first_kpis: BTreeMap<String, f64>,
    pub last_kpis: BTreeMap<String, f64>,
    pub last_gaps: BTreeMap<String, f64>,
    /// Every playbook's runs since the supervisor started (`domain/playbook`): the learned
    /// success rates.
    pub playbook_record: BTreeMap<String, PlaybookCounts>,
    /// Per mesh stream, the sequences the last cycles folded in (`ingest.folded`), newest
    /// last: a delivery among them is already counted.
    #[serde(default)]
    pub folded: BTreeMap<String, VecDeque<FoldedCycle>>,
}

/// One closed cycle's folded stream sequences: the cycle, and inclusive ranges.
pub type FoldedCycle = (u64, Vec<[u64; 2]>);

/// Cycles of folded stream sequences kept: a redelivery comes within the consumer's ack
/// wait (a few cycles), far inside this.
pub const FOLDED_CYCLES_KEPT: usize = 64;

/// The direction of a knob change: +1 up (or off → on), -1 down (or on → off), `None` when
/// it did not move or cannot be ordered.
pub fn move_direction(from: &serde_json::Value, to: &serde_json::Value) -> Option<i8> {
    let num = |v: &serde_json::Value| v.as_f64().or_else(|| v.as_bool().map(f64::from));
    let (a, b) = (num(from)?, num(to)?);
    if b > a {
        Some(1)
    } else if b < a {
        Some(-1)
    } else {
        None
    }
}

/// Weight of the newest cycle in a baseline.
const BASELINE_WEIGHT: f64 = 0.1;

impl State {
    /// Whether a delivery of `stream` at sequence `seq` was folded into a closed cycle.
    pub fn was_folded(&self, stream: &str, seq: u64) -> bool {
        self.folded.get(stream).is_some_and(|log| {
            log.iter()
                .any(|(_, ranges)| ranges.iter().any(|[a, b]| (*a..=*b).contains(&seq)))
        })
    }

    /// Rebuilds the state from records, in ledger order.
    pub fn replay<'a>(
        cfg: &SupervisorConfig,
        records: impl IntoIterator<Item = (Timestamp, &'a RecordBody)>,
    ) -> State {
        let mut s = State::default();
        for (t, r) in records {
            s.apply(cfg, r, t);
        }
        s
    }

    /// The closed cycles since `domain`'s last change (an applied directive or a health
    /// change), at most the last `max` of them, oldest first.
    pub fn since_change(&self, domain: &str, max: usize) -> impl Iterator<Item = &CycleWindows> {
        self.since_change_at(domain, max).map(|i| &self.history[i])
    }

    /// The positions in `history` of the cycles [`Self::since_change`] yields.
    fn since_change_at(&self, domain: &str, max: usize) -> impl Iterator<Item = usize> + '_ {
        let since = self.regime_start.get(domain).copied();
        let skip = self.history.len().saturating_sub(max);
        (skip..self.history.len()).filter(move |i| since.is_none_or(|t| self.history[*i].end > t))
    }

    /// The summaries of the cycles [`Self::since_change`] yields.
    fn summaries_since_change(&self, domain: &str, max: usize) -> Vec<Arc<CycleSummary>> {
        let aligned = self.summaries.len() == self.history.len();
        self.since_change_at(domain, max)
            .map(|i| match aligned {
                true => self.summaries[i].clone(),
                false => Arc::new(CycleSummary::of(&self.history[i])),
            })
            .collect()
    }

    /// The control domains of a directive proposed now in `target`: other domains with no
    /// change of their own since the pre window began. When none qualifies, the pre window is
    /// shortened to start after the other domains' last change, if at least `min_pre_cycles`
    /// cycles remain.
    fn pick_controls(
        &self,
        cfg: &SupervisorConfig,
        target: &str,
        kpi_name: &str,
        pre: &mut Vec<Arc<CycleSummary>>,
        counts: &mut super::counts::ObservationCounts,
    ) -> Vec<Control> {
        let v = &cfg.verification;
        let Some(first) = pre.first().map(|c| c.start) else {
            return Vec::new();
        };
        if v.seasonality == crate::verify::Seasonality::None {
            return Vec::new();
        }
        let others: Vec<&String> = self
            .known_domains
            .iter()
            .filter(|d| d.as_str() != target)
            .collect();
        let changed = |d: &String| self.regime_start.get(d).copied();
        let clean: Vec<&String> = others
            .iter()
            .filter(|d| changed(d).is_none_or(|t| t <= first))
            .copied()
            .collect();
        let eligible = if !clean.is_empty() {
            clean
        } else {
            let Some(latest) = others.iter().filter_map(|d| changed(d)).max() else {
                return Vec::new();
            };
            let from = pre.partition_point(|c| c.start < latest);
            if pre.len() - from < v.min_pre_cycles {
                return Vec::new();
            }
            pre.drain(..from);
            others
        };
        let mut ranked: Vec<(f64, &String)> = eligible.into_iter().map(|d| (0.0, d)).collect();
        if ranked.len() > v.max_controls {
            // the domains with the most observations of the target KPI over the pre window:
            // from running totals when the pre window is the last cycles (it is, unless the
            // summaries are being rebuilt); otherwise `ranked` and each cycle's domains are
            // both in name order, so one walk through each cycle finds them all
            let names: Vec<&String> = ranked.iter().map(|(_, d)| *d).collect();
            let totals = (self.summaries.len() == self.history.len())
                .then(|| counts.over_last(kpi_name, &self.summaries, pre, &names))
                .flatten();
            if let Some(totals) = totals {
                for ((n, _), t) in ranked.iter_mut().zip(totals) {
                    *n = t as f64;
                }
            } else {
                let mut pooled = vec![crate::verify::series::Pooled::default(); ranked.len()];
                let at = crate::verify::series::KpiAt::of(kpi_name);
                for c in pre.iter() {
                    let mut cycle = c.domains.iter().peekable();
                    for ((_, d), p) in ranked.iter().zip(pooled.iter_mut()) {
                        while cycle
                            .next_if(|(name, _)| name.as_str() < d.as_str())
                            .is_some()
                        {}
                        if let Some((_, dc)) =
                            cycle.next_if(|(name, _)| name.as_str() == d.as_str())
                        {
                            p.add_at(at, dc);
                        }
                    }
                }
                for ((n, _), p) in ranked.iter_mut().zip(&pooled) {
                    *n = p.n;
                }
            }
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            ranked.truncate(v.max_controls);
            ranked.sort_by(|a, b| a.1.cmp(b.1));
        }
        ranked.into_iter().map(|(_, d)| Control::new(d)).collect()
    }

    /// `domain` changed at `at`: verifications elsewhere stop using it as a control.
    fn end_controls(&mut self, domain: &str, at: Timestamp) {
        for ds in self.directives.values_mut() {
            if !ds.status.in_flight() {
                continue;
            }
            for c in ds.controls.iter_mut() {
                if c.domain == domain && c.until.is_none() {
                    c.until = Some(at);
                }
            }
        }
    }

    /// Domain → the directive whose verification holds it still (the first in id order): one
    /// changing the domain itself or using it as a control, still short of `hold_samples`
    /// post observations of its target and of its `horizon`. Another change there now would
    /// confound its evidence. Shadow directives hold a domain for other shadow decisions only
    /// (`include_shadow`). One pass over the directives.
    pub fn holders_by_domain(
        &self,
        hold_samples: u64,
        horizon: u32,
        include_shadow: bool,
    ) -> foldhash::HashMap<&str, &DirectiveState> {
        let mut out = foldhash::HashMap::default();
        for d in self.directives.values() {
            if d.directive.shadow && !include_shadow
                || d.directive.directive_type == crate::directive::DirectiveType::ScheduleExperiment
                || d.post_cycles >= horizon
                || d.post.samples(&d.directive.target_kpi) >= hold_samples
            {
                continue;
            }
            if matches!(
                d.status,
                Status::Applied | Status::Verifying | Status::Shadow
            ) {
                out.entry(d.directive.target_domain.as_str()).or_insert(d);
            }
            if d.status.in_flight() {
                for c in d.controls.iter().filter(|c| c.until.is_none()) {
                    out.entry(c.domain.as_str()).or_insert(d);
                }
            }
        }
        out
    }

    /// Knob key → the directive holding the knob (the first in id order). A shadow directive
    /// holds its knob for other shadow decisions only (`include_shadow`): it never stands in
    /// a live decision's way. One pass over the directives.
    pub fn knob_holders(&self, include_shadow: bool) -> foldhash::HashMap<String, &DirectiveState> {
        let mut out = foldhash::HashMap::default();
        for d in self.directives.values() {
            if d.holds_knob() && (include_shadow || !d.directive.shadow) {
                out.entry(d.directive.knob_key()).or_insert(d);
            }
        }
        out
    }

    /// The experiment running in `domain`, if any: scheduled and not yet ended by its
    /// rollback (abandoned) or by its promotion taking effect. The spine runs one at a time.
    pub fn experiment_running(&self, domain: &str) -> Option<&DirectiveState> {
        self.directives.values().find(|d| {
            d.directive.experiment.is_some()
                && !d.directive.shadow
                && d.directive.target_domain == domain
                && (d.status.in_flight()
                    || d.status == Status::Verified && !self.experiment_ended(&d.directive.id))
        })
    }

    /// A verified experiment has ended: its promotion was applied or it was rolled back.
    pub fn experiment_ended(&self, id: &str) -> bool {
        self.directives
            .values()
            .any(|x| x.directive.promoted_from.as_deref() == Some(id) && x.applied.is_some())
            || self
                .directives
                .get(id)
                .is_some_and(|d| d.rolled_back_by.is_some())
    }

    /// Applies one record.
    pub fn apply(&mut self, cfg: &SupervisorConfig, record: &RecordBody, time: Timestamp) {
        match record {
            RecordBody::Started {
                environment,
                goals,
                policies,
                approval,
                start,
                ..
            } => {
                self.environment = environment.clone();
                self.goals = goals.clone();
                self.approval = approval.clone();
                if self.started_at == Timestamp::default() {
                    self.started_at = *start;
                }
                let mut next = BTreeMap::new();
                for p in policies {
                    let prev = self.policies.remove(&p.id);
                    if let Some(kept) = prev.as_ref().filter(|s| s.changed_at_run_time) {
                        next.insert(p.id.clone(), kept.clone());
                        continue;
                    }
                    next.insert(
                        p.id.clone(),
                        PolicyState {
                            policy: p.clone(),
                            streak: prev.as_ref().map_or(0, |s| s.streak),
                            last_issued: prev
                                .as_ref()
                                .map(|s| s.last_issued.clone())
                                .unwrap_or_default(),
                            track: prev.map(|s| s.track).unwrap_or_default(),
                            changed_at_run_time: false,
                        },
                    );
                }
                // policies registered at run time and absent from the configuration stay
                next.extend(
                    std::mem::take(&mut self.policies)
                        .into_iter()
                        .filter(|(_, s)| s.changed_at_run_time),
                );
                self.policies = next;
            }
            RecordBody::Snapshot {
                windows,
                health,
                regime_changes,
                snapshot,
            } => {
                self.cycle = windows.cycle;
                self.last_cycle_end = Some(windows.end);
                self.health = health.clone();
                for d in windows.domains.keys() {
                    self.known_domains.insert(d.clone());
                }
                for id in health.nodes.keys() {
                    self.known_domains
                        .insert(crate::health::split_id(id).0.to_string());
                }
                let settle = cfg.settle_millis();
                for (d, t) in regime_changes {
                    self.end_controls(d, *t);
                    let t = t.plus_millis(settle);
                    let e = self.regime_start.entry(d.clone()).or_insert(t);
                    *e = (*e).max(t);
                }
                let summary = Arc::new(CycleSummary::of(windows));
                // verifications in progress take every cycle that started after their ack
                for ds in self.directives.values_mut() {
                    let since = match ds.status {
                        Status::Verifying => ds.applied.as_ref().map(|a| a.at),
                        Status::Shadow => ds.shadow_since,
                        _ => None,
                    };
                    if let Some(at) = since
                        && windows.start >= at.plus_millis(settle)
                    {
                        if let Some(w) = windows.domains.get(&ds.directive.target_domain) {
                            ds.post.merge(w);
                        }
                        ds.post_series.push(summary.clone());
                        ds.post_cycles += 1;
                        if ds.directive.experiment.is_some() {
                            ds.arm_series.push(
                                windows
                                    .arms
                                    .get(&ds.directive.id)
                                    .map(ArmCycle::of)
                                    .unwrap_or_default(),
                            );
                        }
                    }
                }
                for (d, w) in &windows.domains {
                    for (name, c) in &w.playbooks {
                        let r = self
                            .playbook_record
                            .entry(format!("{d}/{name}"))
                            .or_default();
                        r.autonomous.merge(&c.autonomous);
                        r.all.merge(&c.all);
                    }
                    // a settling cycle describes neither the old normal nor the new one
                    if self.regime_start.get(d).is_some_and(|t| windows.end <= *t) {
                        continue;
                    }
                    let base = self.baselines.entry(d.clone()).or_default();
                    for k in [
                        crate::kpi::OVERALL_SUCCESS_RATE,
                        crate::kpi::MEAN_RECOVERY_TIME,
                        crate::kpi::AUTONOMY_RATE,
                    ] {
                        if let Some(v) = w.value(k) {
                            let b = base.entry(k.to_string()).or_insert(v);
                            *b += BASELINE_WEIGHT * (v - *b);
                        }
                    }
                }
                if self.summaries.len() != self.history.len() {
                    self.summaries = self
                        .history
                        .iter()
                        .map(|c| Arc::new(CycleSummary::of(c)))
                        .collect();
                }
                self.history.push_back(windows.clone());
                self.summaries.push_back(summary);
                let keep = cfg
                    .snapshot
                    .window_cycles
                    .max(cfg.snapshot.max_window_cycles)
                    .max(cfg.verification.pre_max_cycles)
                    .max(cfg.verification.pre_cycles)
                    .max(cfg.snapshot.correlation_cycles)
                    .max(1);
                while self.history.len() > keep {
                    self.history.pop_front();
                    self.summaries.pop_front();
                }
                for g in &self.goals {
                    let missed = snapshot.goal_gaps.get(&g.kpi).is_some_and(|gap| *gap > 0.0);
                    let s = self.goal_miss_streak.entry(g.kpi.clone()).or_insert(0);
                    *s = if missed { *s + 1 } else { 0 };
                }
                let mut next = BTreeMap::new();
                for p in &snapshot.patterns {
                    let prev = self.patterns.remove(&p.key());
                    next.insert(
                        p.key(),
                        PatternTrack {
                            streak: prev.as_ref().map_or(0, |t| t.streak) + 1,
                            domains: p.domains().to_vec(),
                            addressed: prev.is_some_and(|t| t.addressed),
                            description: p.describe(),
                        },
                    );
                }
                self.patterns = next;
                if self.first_kpis.is_empty() {
                    self.first_kpis = snapshot.global_kpis.clone();
                }
                self.last_kpis = snapshot.global_kpis.clone();
                self.last_gaps = snapshot.goal_gaps.clone();
                let horizon = cfg.alerts.failure_window_cycles;
                while self
                    .verdict_log
                    .front()
                    .is_some_and(|(c, _)| c + horizon <= self.cycle)
                {
                    self.verdict_log.pop_front();
                }
            }
            RecordBody::StrategyEvaluated(s) => {
                for e in &s.evaluations {
                    if let Some(p) = self.policies.get_mut(&e.policy_id) {
                        p.streak = e.streak;
                    }
                }
            }
            RecordBody::Proposed {
                directive,
                requirement,
                effective_impact,
                pre_window,
                pre_cycles,
            } => {
                let key = directive.knob_key();
                if let Some(pid) = &directive.policy_id
                    && let Some(p) = self.policies.get_mut(pid)
                {
                    p.last_issued.insert(key, directive.issued_cycle);
                }
                for t in self.patterns.values_mut() {
                    if t.domains.contains(&directive.target_domain) {
                        t.addressed = true;
                    }
                }
                self.order.push(directive.id.clone());
                // the sequential pre window: cycles since the target domain's last change
                let mut pre_full = self.summaries_since_change(
                    &directive.target_domain,
                    cfg.verification.pre_max_cycles,
                );
                // an experiment's arms are each other's control
                let controls = if directive.experiment.is_some() {
                    Vec::new()
                } else {
                    let mut counts = std::mem::take(&mut self.observation_counts);
                    let controls = self.pick_controls(
                        cfg,
                        &directive.target_domain,
                        &directive.target_kpi,
                        &mut pre_full,
                        &mut counts,
                    );
                    self.observation_counts = counts;
                    controls
                };
                let pre_series = pre_full;
                self.directives.insert(
                    directive.id.clone(),
                    DirectiveState {
                        directive: directive.clone(),
                        status: Status::Proposed,
                        lifecycle: vec![(Status::Proposed, time)],
                        requirement: *requirement,
                        effective_impact: *effective_impact,
                        approvals: vec![],
                        rejection: None,
                        expires_at: None,
                        published_at: None,
                        applied: None,
                        refused_reason: None,
                        ack_timed_out: false,
                        pre: pre_window.clone(),
                        pre_cycles: *pre_cycles,
                        post: DomainWindow::default(),
                        post_cycles: 0,
                        pre_series,
                        post_series: Vec::new(),
                        controls,
                        arm_series: Vec::new(),
                        verdict: None,
                        rolled_back_by: None,
                        shadow_since: None,
                    },
                );
            }
            RecordBody::ApprovalRequested {
                directive_id,
                expires_at,
                ..
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.expires_at = Some(*expires_at);
                    d.set_status(Status::PendingApproval, time);
                }
            }
            RecordBody::Approved {
                directive_id,
                approver,
                note,
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.approvals.push(Approval {
                        approver: approver.clone(),
                        note: note.clone(),
                        at: time,
                    });
                    if d.approvals.len() >= d.requirement.approvals as usize {
                        d.set_status(Status::Approved, time);
                    }
                }
            }
            RecordBody::Rejected {
                directive_id,
                approver,
                note,
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.rejection = Some(Approval {
                        approver: approver.clone(),
                        note: note.clone(),
                        at: time,
                    });
                    d.set_status(Status::Rejected, time);
                }
            }
            RecordBody::Expired { directive_id } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.set_status(Status::Expired, time);
                }
            }
            RecordBody::Published { directive_id, .. } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.published_at = Some(time);
                    d.set_status(Status::Published, time);
                }
            }
            RecordBody::Applied {
                directive_id,
                previous,
                current,
                at,
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.applied = Some(AppliedChange {
                        previous: previous.clone(),
                        current: current.clone(),
                        at: *at,
                    });
                    d.set_status(Status::Applied, time);
                    d.set_status(Status::Verifying, time);
                    let domain = d.directive.target_domain.clone();
                    let key = d.directive.knob_key();
                    // an experiment changes the knob for its treatment arm only: the knob's
                    // value stays, and a promotion or abandonment moves it
                    let experiment = d.directive.experiment.is_some();
                    if !experiment && let Some(dir) = move_direction(previous, current) {
                        if self
                            .knob_last_move
                            .get(&key)
                            .is_some_and(|last| *last != dir)
                        {
                            self.knob_reversals
                                .entry(key.clone())
                                .or_default()
                                .push(self.cycle);
                        }
                        self.knob_last_move.insert(key.clone(), dir);
                    }
                    if !experiment {
                        self.knob_values.insert(key, current.clone());
                    }
                    self.end_controls(&domain, *at);
                    let t = at.plus_millis(cfg.settle_millis());
                    // the domain's new normal is what we changed it to: drift is measured
                    // from here, so our own declared side effects are not "drift"
                    self.baselines.remove(&domain);
                    let e = self.regime_start.entry(domain).or_insert(t);
                    *e = (*e).max(t);
                }
            }
            RecordBody::Refused {
                directive_id,
                reason,
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.refused_reason = Some(reason.clone());
                    d.set_status(Status::Refused, time);
                }
            }
            RecordBody::AckTimedOut { directive_id } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.ack_timed_out = true;
                }
            }
            RecordBody::VerdictReached {
                directive_id,
                verdict,
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    let status = match verdict.outcome {
                        Outcome::Verified => Status::Verified,
                        Outcome::NoEffect => Status::NoEffect,
                        Outcome::Degraded => Status::Degraded,
                        Outcome::Inconclusive => Status::Inconclusive,
                    };
                    d.verdict = Some(verdict.clone());
                    d.set_status(status, time);
                    // a failed directive and its rollback are one failure, not two
                    if d.directive.rollback_of.is_none() {
                        self.verdict_log.push_back((self.cycle, verdict.outcome));
                    }
                }
            }
            RecordBody::ShadowRecorded { directive_id, .. } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.shadow_since = Some(time);
                    d.set_status(Status::Shadow, time);
                }
            }
            RecordBody::ShadowVerdict {
                directive_id,
                verdict,
                ..
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.verdict = Some(verdict.clone());
                    d.set_status(Status::ShadowEstimated, time);
                }
            }
            RecordBody::RolledBack {
                directive_id,
                rollback_id,
                ..
            } => {
                if let Some(d) = self.directives.get_mut(directive_id) {
                    d.rolled_back_by = Some(rollback_id.clone());
                    d.set_status(Status::RolledBack, time);
                }
            }
            RecordBody::TrackRecordUpdated {
                policy_id,
                track_record,
                ..
            } => {
                if let Some(p) = self.policies.get_mut(policy_id) {
                    p.track = *track_record;
                }
            }
            RecordBody::AlertFired { alert } => {
                self.alerts.insert(alert.key.clone(), alert.clone());
            }
            RecordBody::AlertResolved { key, .. } => {
                self.alerts.remove(key);
            }
            RecordBody::Summary { .. } => {}
            RecordBody::PolicyRegistered { policy, .. } => {
                let prev = self.policies.remove(&policy.id);
                self.policies.insert(
                    policy.id.clone(),
                    PolicyState {
                        policy: policy.clone(),
                        streak: 0,
                        last_issued: prev
                            .as_ref()
                            .map(|p| p.last_issued.clone())
                            .unwrap_or_default(),
                        track: prev.map(|p| p.track).unwrap_or_default(),
                        changed_at_run_time: true,
                    },
                );
            }
            RecordBody::PolicyEnabled { policy_id, enabled } => {
                if let Some(p) = self.policies.get_mut(policy_id) {
                    p.policy.enabled = *enabled;
                    p.changed_at_run_time = true;
                    if !enabled {
                        p.streak = 0;
                    }
                }
            }
            RecordBody::TrackRecordReset { policy_id, .. } => {
                if let Some(p) = self.policies.get_mut(policy_id) {
                    p.track = Default::default();
                    p.changed_at_run_time = true;
                }
            }
            RecordBody::EventsFolded {
                cycle,
                stream,
                ranges,
            } => {
                let log = self.folded.entry(stream.clone()).or_default();
                log.push_back((*cycle, ranges.clone()));
                while log.len() > FOLDED_CYCLES_KEPT {
                    log.pop_front();
                }
            }
            RecordBody::AdaptersReloaded { .. } | RecordBody::LeaderElected { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::RateCounts;
    use crate::verify::series::DomainCycle;
    use std::sync::Arc;

    fn cycle(n: i64, trials: &[(&str, u64)]) -> Arc<CycleSummary> {
        Arc::new(CycleSummary {
            cycle: n as u64,
            start: Timestamp(n * 300_000),
            end: Timestamp((n + 1) * 300_000),
            domains: trials
                .iter()
                .map(|(d, t)| {
                    let dc = DomainCycle {
                        success: RateCounts {
                            successes: t / 2,
                            trials: *t,
                        },
                        ..DomainCycle::default()
                    };
                    (d.to_string(), dc)
                })
                .collect(),
        })
    }

    #[test]
    fn controls_are_the_domains_with_the_most_observations_up_to_the_limit() {
        let mut cfg = SupervisorConfig::default();
        cfg.verification.max_controls = 2;
        let mut state = State::default();
        for d in ["a", "b", "c", "d", "e"] {
            state.known_domains.insert(d.to_string());
        }
        // e changed after the pre window began: not a clean control
        state
            .regime_start
            .insert("e".to_string(), Timestamp(2 * 300_000));
        let mut pre = vec![
            cycle(0, &[("a", 10), ("b", 900), ("c", 10), ("d", 10)]),
            cycle(
                1,
                &[("a", 50), ("b", 100), ("c", 300), ("d", 150), ("e", 900)],
            ),
            cycle(
                2,
                &[("a", 50), ("b", 100), ("c", 0), ("d", 150), ("e", 900)],
            ),
        ];
        // cycle 0 is before the pre window: once in the state's summaries (the totals
        // count from the summaries' last cycles), once not (each cycle counted)
        let summaries: VecDeque<Arc<CycleSummary>> = pre.drain(..).collect();
        let mut pre: Vec<Arc<CycleSummary>> = summaries.iter().skip(1).cloned().collect();
        for from_totals in [false, true] {
            let mut state = state.clone();
            let mut counts = super::super::counts::ObservationCounts::default();
            if from_totals {
                state.summaries = summaries.clone();
                state.history = summaries.iter().map(|_| CycleWindows::default()).collect();
            }
            let mut pick = |cfg: &SupervisorConfig, pre: &mut Vec<Arc<CycleSummary>>| {
                let rate = crate::kpi::OVERALL_SUCCESS_RATE;
                state.pick_controls(cfg, "a", rate, pre, &mut counts)
            };
            cfg.verification.max_controls = 2;
            let controls = pick(&cfg, &mut pre);
            // c: 300, d: 300 (a tie, both kept), b: 200, e not clean; listed by name
            let names: Vec<&str> = controls.iter().map(|c| c.domain.as_str()).collect();
            assert_eq!(names, ["c", "d"], "from totals: {from_totals}");
            assert_eq!(pre.len(), 2);
            // a tie is broken by name
            cfg.verification.max_controls = 1;
            let controls = pick(&cfg, &mut pre);
            assert_eq!(controls, [Control::new("c")]);
            // without a limit every clean domain is a control
            cfg.verification.max_controls = 16;
            let controls = pick(&cfg, &mut pre);
            let names: Vec<&str> = controls.iter().map(|c| c.domain.as_str()).collect();
            assert_eq!(names, ["b", "c", "d"]);
        }
    }
}
