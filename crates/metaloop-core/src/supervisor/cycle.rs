//! One cycle: snapshot → expiries and ack timeouts → verification (and rollbacks) →
//! strategy → pipeline → alerts → summary.

use super::ids::make_id;
use super::state::{DirectiveState, PolicyState};
use super::{NotificationKind, Supervisor, short};
use crate::alert::{Alert, AlertKind, Severity};
use crate::directive::{
    ConfidenceFactors, Directive, DirectiveType, ExperimentPlan, ImpactLevel, KnobAction, Status,
};
use crate::kpi::{self, CycleWindows, DomainWindow};
use crate::policy::confidence::combine;
use crate::policy::template::DEFAULT_EXPERIMENT_FRACTION;
use crate::policy::{ConditionEval, MetaPolicy, PolicyMode, TargetSelector};
use crate::record::{PolicyEvaluation, RecordBody, StrategyEvaluation};
use crate::snapshot::{CrossDomainSnapshot, SnapshotInputs, SystemicPattern};
use crate::summary;
use crate::time::Timestamp;
use crate::verify::{self, Outcome};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Rollbacks of one directive tried before humans are asked to restore it by hand.
pub const MAX_ROLLBACK_ATTEMPTS: usize = 3;

/// A place a policy could act, borrowed from the snapshot, the condition's evaluation or
/// the cycle's ranking of domains: every holding policy walks its candidates each cycle, so
/// nothing is copied or written out until a candidate is listed or chosen.
struct Candidate<'a> {
    domain: Cow<'a, str>,
    /// The template's knob, with its placeholder (if any) replaced by `fill`.
    knob: Knob<'a>,
    fill: &'a str,
    /// What was found there, for the justification.
    why: Why<'a>,
}

/// A template's knob, split around a placeholder once per policy rather than searched for
/// it once per candidate.
#[derive(Clone, Copy)]
enum Knob<'a> {
    /// No placeholder in it.
    Plain(&'a str),
    /// One placeholder, between these two parts.
    Around(&'a str, &'a str),
    /// The placeholder more than once.
    Many(&'a str, &'static str),
}

impl<'a> Knob<'a> {
    fn of(knob: &'a str, placeholder: &'static str) -> Knob<'a> {
        match knob.split_once(placeholder) {
            None => Knob::Plain(knob),
            Some((_, after)) if after.contains(placeholder) => Knob::Many(knob, placeholder),
            Some((before, after)) => Knob::Around(before, after),
        }
    }
}

impl Candidate<'_> {
    /// Writes the candidate's knob (as `str::replace` would).
    fn write_knob(&self, out: &mut String) {
        match self.knob {
            Knob::Plain(knob) => out.push_str(knob),
            Knob::Around(before, after) => {
                out.push_str(before);
                out.push_str(self.fill);
                out.push_str(after);
            }
            Knob::Many(knob, placeholder) => {
                let mut parts = knob.split(placeholder);
                out.push_str(parts.next().unwrap_or_default());
                for part in parts {
                    out.push_str(self.fill);
                    out.push_str(part);
                }
            }
        }
    }

    fn knob(&self) -> String {
        let mut out = String::new();
        self.write_knob(&mut out);
        out
    }

    /// Sets `key` to the candidate's `domain/knob`.
    fn write_key(&self, key: &mut String) {
        key.clear();
        key.push_str(&self.domain);
        key.push('/');
        self.write_knob(key);
    }
}

/// What was found where a policy could act: written out only for the candidate chosen.
enum Why<'a> {
    /// The template's fixed target.
    Fixed,
    /// Listed by the template's target expression.
    Listed,
    /// The root of a systemic pattern.
    Pattern(&'a SystemicPattern),
    /// A domain missing its goal: KPI, value, gap and observations.
    Gap(&'a str, f64, f64, f64),
    /// A playbook below its floor: its success rate, runs and the evidence.
    Playbook(&'a str, f64, u64, f64),
}

impl Why<'_> {
    fn render(&self, domain: &str) -> String {
        match self {
            Why::Fixed => format!("{domain} (fixed target)"),
            Why::Listed => format!("{domain} (listed by the target expression)"),
            Why::Pattern(p) => p.describe(),
            Why::Playbook(playbook, rate, runs, evidence) => format!(
                "{domain}/{playbook} succeeded in {:.0}% of {runs} autonomous runs (P(below floor) = {evidence:.3})",
                rate * 100.0
            ),
            Why::Gap(metric, v, gap, n) => format!(
                "{domain}: {metric} {} (gap {gap:+.3}) over {n} observations",
                fmt_kpi(metric, *v)
            ),
        }
    }
}

/// (KPI, threshold bits) → the domains missing that goal by at least the threshold, worst
/// first: (domain, value, gap, observations).
type WorstDomains = std::collections::HashMap<(String, u64), Vec<(String, f64, f64, f64)>>;

/// Policies holding without acting that a strategy record lists among its recommendations
/// (each one's evaluation says why).
const HELD_BACK_LISTED: usize = 20;

/// Skipped candidates a policy evaluation lists before summing up the rest.
const SKIPPED_LISTED: usize = 5;

/// Why a policy does not act on a candidate target.
enum Skip<'a> {
    /// The domain already has a new directive this cycle.
    Taken,
    /// An experiment runs in the domain.
    Experiment(&'a DirectiveState),
    /// The knob is held by a directive.
    KnobHeld(&'a DirectiveState),
    /// A verification with the domain in it holds it still.
    Held(&'a DirectiveState),
    /// Cooling down until this cycle.
    Cooling(u64),
    /// The knob already has the value.
    Already(&'a serde_json::Value),
    /// The baseline is too small to verify the change.
    Shortfall(&'a str),
    Text(String),
}

impl Skip<'_> {
    /// Writes the reason as the strategy record lists it (pieces pushed, nothing formatted
    /// through `format!`: a thousand policies list their skipped targets every cycle).
    fn write_text(&self, out: &mut String, domain: &str, control_hold_samples: u64) {
        use std::fmt::Write;
        match self {
            Skip::Taken => out.push_str("already has a new directive this cycle"),
            Skip::Experiment(e) => {
                out.push_str("experiment ");
                out.push_str(short(&e.directive.id));
                out.push_str(" runs in ");
                out.push_str(domain);
                out.push_str(" (one at a time)");
            }
            Skip::KnobHeld(h) => {
                out.push_str("knob held by directive ");
                out.push_str(short(&h.directive.id));
                out.push_str(" (");
                out.push_str(h.status.as_str());
                out.push(')');
            }
            Skip::Held(h) => {
                out.push_str("directive ");
                out.push_str(short(&h.directive.id));
                out.push_str(" (");
                out.push_str(&h.directive.knob);
                out.push_str(" in ");
                out.push_str(&h.directive.target_domain);
                out.push_str(") is being verified with ");
                out.push_str(domain);
                out.push_str(" in it: another change there waits until it has ");
                let _ = write!(out, "{control_hold_samples}");
                out.push_str(" observations after its change");
            }
            Skip::Cooling(until) => {
                let _ = write!(out, "cooling down until cycle {until}");
            }
            Skip::Already(value) => {
                let _ = write!(out, "already {value}");
            }
            Skip::Shortfall(why) => out.push_str(why),
            Skip::Text(why) => out.push_str(why),
        }
    }
}

/// What one strategy pass computes once and every policy reads: who holds which knob and
/// domain, the domains ranked by goal gap, the baselines' shortfalls, the shared parts of
/// conditions.
#[derive(Default)]
struct Lookups<'s> {
    knob_live: foldhash::HashMap<String, &'s crate::supervisor::state::DirectiveState>,
    knob_any: foldhash::HashMap<String, &'s crate::supervisor::state::DirectiveState>,
    held_live: foldhash::HashMap<&'s str, &'s crate::supervisor::state::DirectiveState>,
    held_any: foldhash::HashMap<&'s str, &'s crate::supervisor::state::DirectiveState>,
    worst: WorstDomains,
    /// `domain\0KPI` → why its baseline is too small.
    shortfall: foldhash::HashMap<String, Option<String>>,
    /// The key of the `shortfall` lookup being made, written in place: a key is allocated
    /// only when it is added.
    shortfall_key: String,
    leaves: crate::policy::LeafCache,
}

impl Supervisor {
    pub(super) fn run_cycle(&mut self, end: Timestamp) {
        let cycle = self.state.cycle + 1;
        let actor = self.cfg.actor.clone();
        let mut domains = std::mem::take(&mut self.open);
        for d in self.state.known_domains.iter() {
            domains.entry(d.clone()).or_default();
        }
        // each sum rounded once, whatever order its values came in (kpi::ScoreStats)
        for w in domains.values_mut() {
            w.settle();
        }
        let mut arms = std::mem::take(&mut self.open_arms);
        for a in arms.values_mut() {
            a.settle();
        }
        let windows = CycleWindows {
            cycle,
            start: self.open_start,
            end,
            domains,
            arms,
        };
        let regime_changes = std::mem::take(&mut self.open_regime);
        // recorded as it is (its merged windows are not written) and read by the rest of the
        // cycle: one snapshot, not a copy for the record
        let snapshot =
            std::sync::Arc::new(self.build_snapshot(&windows, &regime_changes, cycle, end));
        self.commit(
            end,
            &actor,
            RecordBody::Snapshot {
                windows,
                health: self.open_health.clone(),
                regime_changes,
                snapshot: snapshot.clone(),
            },
        );

        // approvals that ran out of time, acks that never came
        let expired: Vec<String> = self
            .state
            .order
            .iter()
            .filter(|id| {
                let d = &self.state.directives[*id];
                d.status == Status::PendingApproval && d.expires_at.is_some_and(|t| end >= t)
            })
            .cloned()
            .collect();
        for id in expired {
            self.expire(&id, end);
        }
        let timeout = self.cfg.ack_timeout_seconds * 1000;
        let silent: Vec<String> = self
            .state
            .order
            .iter()
            .filter(|id| {
                let d = &self.state.directives[*id];
                d.status == Status::Published
                    && d.directive.directive_type != DirectiveType::RequestReview
                    && !d.ack_timed_out
                    && d.published_at
                        .is_some_and(|t| end >= t.plus_millis(timeout))
            })
            .cloned()
            .collect();
        for id in silent {
            self.commit(end, &actor, RecordBody::AckTimedOut { directive_id: id });
        }

        let mut taken: BTreeSet<String> = BTreeSet::new();
        self.retry_rollbacks(end, &mut taken);
        self.verify_directives(end, &mut taken);
        self.run_strategy(&snapshot, end, &mut taken);
        self.evaluate_alerts(&snapshot, end);
        let text = summary::render(&self.state, &snapshot, &self.journal);
        self.journal.clear();
        self.commit(
            end,
            &actor,
            RecordBody::Summary {
                cycle,
                text: text.clone(),
            },
        );
        self.notify(NotificationKind::Summary, end, text, None);
    }

    fn build_snapshot(
        &mut self,
        windows: &CycleWindows,
        regime_changes: &BTreeMap<String, Timestamp>,
        cycle: u64,
        end: Timestamp,
    ) -> CrossDomainSnapshot {
        // the closed cycle joins the history only when its record is applied; the snapshot
        // sees it already (lent for the build, not a copy of the whole history)
        let mut history = std::mem::take(&mut self.state.history);
        history.push_back(windows.clone());
        let mut regime = self.state.regime_start.clone();
        for (d, t) in regime_changes {
            let e = regime.entry(d.clone()).or_insert(*t);
            *e = (*e).max(*t);
        }
        let mut known = self.state.known_domains.clone();
        known.extend(windows.domains.keys().cloned());
        let snapshot = self.cfg.snapshot.build_with(
            &SnapshotInputs {
                id: make_id(self.cfg.id_seed, end, &["snapshot", &cycle.to_string()]),
                cycle,
                time: end,
                history: &history,
                regime_start: &regime,
                health: &self.open_health,
                goals: &self.state.goals,
                baselines: &self.state.baselines,
                known_domains: &known,
            },
            &mut self.recent,
        );
        history.pop_back();
        self.state.history = history;
        snapshot
    }

    /// The pre window of a directive proposed now in `domain`.
    fn pre_window(&self, domain: &str) -> (DomainWindow, u32) {
        let builder = crate::snapshot::SnapshotBuilder {
            window_cycles: self.cfg.verification.pre_cycles,
            min_window_samples: 0,
            ..self.cfg.snapshot.clone()
        };
        builder.domain_window(
            domain,
            &self.state.history,
            self.state.regime_start.get(domain).copied(),
        )
    }

    /// Why the pre window of `domain` is too small to verify a change of `kpi_name` against,
    /// if it is: a change that cannot be verified is not made.
    fn baseline_shortfall(&self, domain: &str, kpi_name: &str) -> Option<String> {
        let v = &self.cfg.verification;
        let score = matches!(
            kpi::builtin(kpi_name).map(|(_, k)| k),
            Some(kpi::KpiKind::Score) | None
        );
        if v.method == verify::Method::Fixed {
            let needed = if score { 3 } else { v.min_samples };
            let (pre, _) = self.pre_window(domain);
            let have = pre.samples(kpi_name);
            return (have < needed).then(|| format!("baseline has {have} of the {needed} observations of {kpi_name} needed to verify a change"));
        }
        // the other methods compare against the cycles since the domain's last change: they
        // need a baseline, not a fixed sample
        let (mut spanned, mut cycles, mut have) = (0, 0, 0);
        for c in self.state.since_change(domain, v.pre_max_cycles) {
            let n = c.domains.get(domain).map_or(0, |w| w.samples(kpi_name));
            spanned += 1;
            cycles += usize::from(n > 0);
            have += n;
        }
        let needed = if score { 0 } else { v.min_baseline_samples };
        // a baseline as long as the longest pre window is the most there will be
        if cycles < v.min_pre_cycles || (have < needed && spanned < v.pre_max_cycles) {
            return Some(format!(
                "baseline since the domain's last change has {cycles} cycles and {have} observations of {kpi_name}; a change is verified against at least {} cycles and {needed} observations (or {} cycles)",
                v.min_pre_cycles, v.pre_max_cycles
            ));
        }
        None
    }

    fn verify_directives(&mut self, now: Timestamp, taken: &mut BTreeSet<String>) {
        let actor = self.cfg.actor.clone();
        // a verified experiment whose rollout was rejected, expired or refused still runs on
        // its slice: end it
        let stranded: Vec<String> = self
            .state
            .order
            .iter()
            .filter(|id| {
                let d = &self.state.directives[*id];
                d.directive.experiment.is_some()
                    && !d.directive.shadow
                    && d.status == Status::Verified
                    && !self.state.experiment_ended(id)
                    && self.state.directives.values().any(|x| {
                        x.directive.promoted_from.as_deref() == Some(id.as_str())
                            && matches!(
                                x.status,
                                Status::Rejected | Status::Expired | Status::Refused
                            )
                    })
                    && !self
                        .state
                        .directives
                        .values()
                        .any(|x| x.directive.rollback_of.as_deref() == Some(id.as_str()))
            })
            .cloned()
            .collect();
        for id in stranded {
            self.rollback(&id, now, taken);
        }
        let ids: Vec<String> = self
            .state
            .order
            .iter()
            .filter(|id| {
                matches!(
                    self.state.directives[*id].status,
                    Status::Verifying | Status::Shadow
                )
            })
            .cloned()
            .collect();
        // the pre-window statistics of the verifications still going on
        self.pre_stats.retain(|id, _| ids.contains(id));
        for id in ids {
            let ds = &self.state.directives[&id];
            let input = verify::VerifyInput {
                target_domain: &ds.directive.target_domain,
                target_kpi: &ds.directive.target_kpi,
                side_effects: &ds.directive.side_effects,
                min_effect: ds.directive.min_effect,
                goals: &self.state.goals,
                pre: &ds.pre,
                post: &ds.post,
                pre_series: &ds.pre_series,
                post_series: &ds.post_series,
                controls: &ds.controls,
                post_cycles: ds.post_cycles,
            };
            let verdict = if ds.directive.experiment.is_some() && !ds.directive.shadow {
                verify::experiment::evaluate(&self.cfg.verification, &input, &ds.arm_series)
            } else {
                let memo = self.pre_stats.entry(id.clone()).or_default();
                verify::decide_with(&self.cfg.verification, &input, memo)
            };
            let Some(verdict) = verdict else {
                continue;
            };
            let d = ds.directive.clone();
            let outcome = verdict.outcome;
            // read before the verdict moves into its record; used only for an inconclusive
            // verdict that `rollback_on` does not already roll back
            let lean = (outcome == Outcome::Inconclusive
                && self.cfg.rollback_inconclusive_leaning_worse)
                .then(|| verdict.leans_worse())
                .flatten();
            if d.shadow {
                let reading = shadow_reading(&d, outcome);
                self.commit(
                    now,
                    &actor,
                    RecordBody::ShadowVerdict {
                        directive_id: id.clone(),
                        verdict,
                        reading,
                    },
                );
                continue;
            }
            let text = summary::verdict_line(&d, &verdict);
            self.commit(
                now,
                &actor,
                RecordBody::VerdictReached {
                    directive_id: id.clone(),
                    verdict,
                },
            );
            self.notify(NotificationKind::Verdict, now, text, Some(id.clone()));
            // a verified experiment counts once, with the verdict of its rollout
            let promoted = d.experiment.is_some() && outcome == Outcome::Verified;
            if let (Some(pid), None, false) = (&d.policy_id, &d.rollback_of, promoted)
                && let Some(p) = self.state.policies.get(pid)
            {
                let mut track = p.track;
                match outcome {
                    Outcome::Verified => track.verified += 1,
                    Outcome::Inconclusive => track.inconclusive += 1,
                    _ => track.failed += 1,
                }
                self.commit(
                    now,
                    &actor,
                    RecordBody::TrackRecordUpdated {
                        policy_id: pid.clone(),
                        directive_id: id.clone(),
                        track_record: track,
                        score: track.score(),
                    },
                );
            }
            if d.rollback_of.is_some() {
                continue;
            }
            if d.experiment.is_some() {
                if promoted {
                    self.promote(&id, now, taken);
                } else {
                    // abandoned: the rollback ends the experiment, the knob never moved
                    self.rollback(&id, now, taken);
                }
                continue;
            }
            if self.cfg.rollback_on.contains(&outcome) {
                self.rollback(&id, now, taken);
            } else if outcome == Outcome::Inconclusive {
                if lean.is_some() {
                    self.rollback(&id, now, taken);
                }
                self.request_review(&id, now, lean.as_deref());
            }
        }
    }

    /// Rollbacks that failed, by the directive they were to undo (not undone yet): how
    /// many were tried, and whether the last one was refused (`false`: it got no ack).
    fn failed_rollbacks(&self) -> Vec<(String, usize, bool)> {
        let mut attempts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in &self.state.order {
            if let Some(orig) = &self.state.directives[id].directive.rollback_of {
                attempts.entry(orig.as_str()).or_default().push(id.as_str());
            }
        }
        attempts
            .into_iter()
            .filter_map(|(orig, tries)| {
                let o = self.state.directives.get(orig)?;
                if o.status == Status::RolledBack {
                    return None;
                }
                let last = &self.state.directives[*tries.last()?];
                let refused = last.status == Status::Refused;
                let silent = last.status == Status::Published && last.ack_timed_out;
                (refused || silent).then(|| (orig.to_string(), tries.len(), refused))
            })
            .collect()
    }

    /// A rollback the spine refused is tried again, under a new id, up to
    /// [`MAX_ROLLBACK_ATTEMPTS`] in all; one refused that often, or left without an ack, goes
    /// to humans as a `REQUEST_REVIEW` (and the `rollback_failed` alert fires while it
    /// stands). Never left silent.
    fn retry_rollbacks(&mut self, now: Timestamp, taken: &mut BTreeSet<String>) {
        for (orig, tries, refused) in self.failed_rollbacks() {
            if refused && tries < MAX_ROLLBACK_ATTEMPTS {
                self.rollback_attempt(&orig, now, taken, tries + 1);
                continue;
            }
            let knob = format!("review.rollback.{orig}");
            let asked = self.state.directives.values().any(|d| {
                d.directive.directive_type == DirectiveType::RequestReview
                    && d.directive.knob == knob
            });
            if !asked {
                let why = if refused {
                    format!("the spine refused all {tries} rollbacks")
                } else {
                    "the spine never acknowledged its rollback".to_string()
                };
                self.escalate_rollback(&orig, &why, now);
            }
        }
    }

    fn escalate_rollback(&mut self, id: &str, why: &str, now: Timestamp) {
        let orig = self.state.directives[id].directive.clone();
        let d = self.review_directive(
            &orig,
            make_id(self.cfg.id_seed, now, &["rollback-review", id]),
            format!("review.rollback.{}", orig.id),
            "restore_by_hand",
            format!(
                "directive {} ({} {} in {}) failed verification and must be undone, but {why}: restore {} by hand",
                short(id),
                orig.directive_type,
                orig.knob,
                orig.target_domain,
                orig.knob
            ),
            "a human restores the knob",
            now,
        );
        self.submit(d, None, DomainWindow::default(), 0, now);
    }

    /// A `REQUEST_REVIEW` about `orig`, for humans.
    #[allow(clippy::too_many_arguments)]
    fn review_directive(
        &self,
        orig: &Directive,
        id: String,
        knob: String,
        action_name: &str,
        justification: String,
        expected_impact: &str,
        now: Timestamp,
    ) -> Directive {
        Directive {
            id,
            directive_type: DirectiveType::RequestReview,
            target_domain: orig.target_domain.clone(),
            target_subsystem: "humans".into(),
            knob,
            action_name: action_name.into(),
            action: KnobAction::Set {
                value: serde_json::Value::String(orig.id.clone()),
            },
            target_kpi: orig.target_kpi.clone(),
            justification,
            expected_impact: expected_impact.into(),
            side_effects: BTreeMap::new(),
            min_effect: None,
            impact: ImpactLevel::Minimal,
            policy_id: None,
            snapshot_id: orig.snapshot_id.clone(),
            factors: ConfidenceFactors::default(),
            rollback_of: None,
            issued_cycle: self.state.cycle,
            issued_at: now,
            shadow: false,
            experiment: None,
            promoted_from: None,
        }
    }

    fn rollback(&mut self, id: &str, now: Timestamp, taken: &mut BTreeSet<String>) {
        self.rollback_attempt(id, now, taken, 1);
    }

    fn rollback_attempt(
        &mut self,
        id: &str,
        now: Timestamp,
        taken: &mut BTreeSet<String>,
        attempt: usize,
    ) {
        let ds = &self.state.directives[id];
        let Some(applied) = &ds.applied else { return };
        let orig = ds.directive.clone();
        let verdict = ds
            .verdict
            .as_ref()
            .map(|v| format!("{}: {}", v.outcome.as_str(), v.reason))
            .unwrap_or_default();
        let (pre, pre_cycles) = self.pre_window(&orig.target_domain);
        let d = Directive {
            id: if attempt <= 1 {
                make_id(self.cfg.id_seed, now, &["rollback", id])
            } else {
                make_id(
                    self.cfg.id_seed,
                    now,
                    &["rollback", id, &format!("attempt-{attempt}")],
                )
            },
            directive_type: DirectiveType::RollbackChange,
            target_domain: orig.target_domain.clone(),
            target_subsystem: orig.target_subsystem.clone(),
            knob: orig.knob.clone(),
            action_name: "restore_previous_value".into(),
            action: KnobAction::Set {
                value: applied.previous.clone(),
            },
            target_kpi: orig.target_kpi.clone(),
            justification: if orig.experiment.is_some() {
                format!(
                    "experiment {} ({} on a slice of {}) abandoned: {verdict}; every incident back on {} = {}",
                    short(id),
                    orig.knob,
                    orig.target_domain,
                    orig.knob,
                    applied.previous
                )
            } else {
                format!(
                    "verification of {} ({} {}) found {verdict}; restoring {} to {}",
                    short(id),
                    orig.directive_type,
                    orig.knob,
                    orig.knob,
                    applied.previous
                )
            },
            expected_impact: format!(
                "{} returns to where it was before {}",
                orig.target_kpi,
                short(id)
            ),
            side_effects: BTreeMap::new(),
            min_effect: None,
            // restoring the acknowledged previous value returns to a state that was in force
            // and approved before; it is pre-approved at LOW (auto + notify)
            impact: ImpactLevel::Low,
            policy_id: None,
            snapshot_id: orig.snapshot_id.clone(),
            factors: ConfidenceFactors {
                evidence: 1.0,
                track_record: 1.0,
                coverage: 1.0,
                confidence: 1.0,
            },
            rollback_of: Some(id.to_string()),
            issued_cycle: self.state.cycle,
            issued_at: now,
            shadow: false,
            experiment: None,
            promoted_from: None,
        };
        taken.insert(d.target_domain.clone());
        self.submit(d, None, pre, pre_cycles, now);
    }

    /// A verified experiment's change, rolled out to the whole domain: the template's own
    /// directive type with the candidate value the treatment arm ran with, through the
    /// approval matrix like any decision, and verified again once applied.
    fn promote(&mut self, id: &str, now: Timestamp, taken: &mut BTreeSet<String>) {
        let ds = &self.state.directives[id];
        let (Some(plan), Some(applied)) = (ds.directive.experiment, &ds.applied) else {
            return;
        };
        let orig = ds.directive.clone();
        let verdict = ds
            .verdict
            .as_ref()
            .map(|v| v.reason.clone())
            .unwrap_or_default();
        let approval_override = orig
            .policy_id
            .as_ref()
            .and_then(|p| self.state.policies.get(p))
            .and_then(|p| p.policy.approval_override);
        let (pre, pre_cycles) = self.pre_window(&orig.target_domain);
        let d = Directive {
            id: make_id(self.cfg.id_seed, now, &["promote", id]),
            directive_type: plan.promote_as,
            // the value the treatment arm ran with, whatever the knob is by now
            action: KnobAction::Set {
                value: applied.current.clone(),
            },
            justification: format!(
                "experiment {} verified on {:.0}% of incidents: {verdict}; rolling {} = {} out to all of {}",
                short(id),
                plan.fraction * 100.0,
                orig.knob,
                applied.current,
                orig.target_domain
            ),
            factors: ConfidenceFactors {
                evidence: 1.0,
                ..orig.factors
            },
            rollback_of: None,
            issued_cycle: self.state.cycle,
            issued_at: now,
            shadow: false,
            experiment: None,
            promoted_from: Some(id.to_string()),
            ..orig
        };
        taken.insert(d.target_domain.clone());
        self.submit(d, approval_override, pre, pre_cycles, now);
    }

    /// Asks humans about an inconclusive directive; `rolled_back` says why its estimates
    /// leaned worse when it was rolled back at the same time.
    fn request_review(&mut self, id: &str, now: Timestamp, rolled_back: Option<&str>) {
        let orig = self.state.directives[id].directive.clone();
        let ask = match rolled_back {
            None => "keep or roll it back".to_string(),
            Some(why) => format!(
                "its estimates leaned worse ({why}), so it is rolled back; apply it again if you judge it useful"
            ),
        };
        let d = self.review_directive(
            &orig,
            make_id(self.cfg.id_seed, now, &["review", id]),
            format!("review.{}", orig.id),
            "review_inconclusive_directive",
            format!(
                "verification of {} ({} {} in {}) was inconclusive: not enough data before the window ran out; {ask}",
                short(id),
                orig.directive_type,
                orig.knob,
                orig.target_domain
            ),
            "a human decides",
            now,
        );
        self.submit(d, None, DomainWindow::default(), 0, now);
    }

    /// Records a decided directive and gates it through the approval matrix.
    fn submit(
        &mut self,
        d: Directive,
        approval_override: Option<ImpactLevel>,
        pre: DomainWindow,
        pre_cycles: u32,
        now: Timestamp,
    ) {
        let effective = approval_override.map_or(d.impact, |o| o.max(d.impact));
        let requirement = self
            .state
            .approval
            .requirement(effective, &self.state.environment);
        let id = d.id.clone();
        let actor = self.cfg.actor.clone();
        let review = d.directive_type == DirectiveType::RequestReview;
        let shadow = d.shadow;
        self.commit(
            now,
            &actor,
            RecordBody::Proposed {
                directive: d,
                requirement,
                effective_impact: effective,
                pre_window: pre,
                pre_cycles,
            },
        );
        if shadow {
            // decided, recorded, never published nor sent for approval
            self.commit(
                now,
                &actor,
                RecordBody::ShadowRecorded {
                    directive_id: id,
                    approvals_needed: if review { 0 } else { requirement.approvals },
                    review_note_required: requirement.review_note,
                },
            );
            return;
        }
        if review || requirement.approvals == 0 {
            self.publish(&id, now);
            return;
        }
        let expires_at = now.plus_millis(self.state.approval.ttl_seconds * 1000);
        self.commit(
            now,
            &actor,
            RecordBody::ApprovalRequested {
                directive_id: id.clone(),
                approvals_needed: requirement.approvals,
                review_note_required: requirement.review_note,
                expires_at,
            },
        );
        let d = &self.state.directives[&id].directive;
        let text = format!(
            "Approval needed ({} impact, {} approver(s){}) for directive {}: {} {} in {}: {}. Approve with `metaloop directives approve {}`, reject with `metaloop directives reject {}`; expires {}.",
            effective,
            requirement.approvals,
            if requirement.review_note {
                " with a review note"
            } else {
                ""
            },
            short(&id),
            d.directive_type,
            d.knob,
            d.target_domain,
            d.justification,
            id,
            id,
            expires_at
        );
        self.notify(NotificationKind::ApprovalRequest, now, text, Some(id));
    }

    fn run_strategy(
        &mut self,
        snap: &CrossDomainSnapshot,
        now: Timestamp,
        taken: &mut BTreeSet<String>,
    ) {
        let mut policies: Vec<&PolicyState> = self
            .state
            .policies
            .values()
            .filter(|p| p.policy.enabled)
            .collect();
        policies.sort_by(|a, b| {
            (a.policy.priority.cmp(&b.policy.priority)).then(a.policy.id.cmp(&b.policy.id))
        });
        let cascade_domains: BTreeSet<String> = snap
            .patterns
            .iter()
            .filter(|p| matches!(p, SystemicPattern::DependencyCascade(_)))
            .flat_map(|p| p.domains().iter().cloned())
            .collect();
        let mut evaluations = Vec::with_capacity(policies.len());
        let mut recommendations = Vec::new();
        // policies that hold without acting: the first HELD_BACK_LISTED are listed
        let mut held_back = 0usize;
        let mut to_submit: Vec<(Directive, Option<ImpactLevel>)> = Vec::new();
        // domains a shadow directive takes this cycle: they block other shadow decisions,
        // never live ones
        let mut taken_shadow: BTreeSet<String> = BTreeSet::new();
        // expression variables: built once a cycle, when a policy has an expression
        let vars = policies
            .iter()
            .any(|p| p.policy.uses_expressions())
            .then(|| crate::policy::expression::Variables::of(snap, &self.state.goals));
        let root = vars.as_ref().map(|v| v.context());
        let v = &self.cfg.verification;
        let mut look = Lookups {
            knob_live: self.state.knob_holders(false),
            knob_any: self.state.knob_holders(true),
            held_live: self.state.holders_by_domain(
                v.control_hold_samples,
                v.max_horizon_cycles,
                false,
            ),
            held_any: self.state.holders_by_domain(
                v.control_hold_samples,
                v.max_horizon_cycles,
                true,
            ),
            ..Lookups::default()
        };
        // two live domains changed in one cycle would be each other's controls
        let one_change_a_cycle = self.cfg.verification.seasonality
            == verify::Seasonality::ControlDomains
            && !self.cfg.verification.method.is_one_look();
        let mut key = String::new();
        for &ps in &policies {
            let p = &ps.policy;
            let shadow = self.cfg.shadow || p.mode == PolicyMode::Shadow;
            let ctx = match &root {
                Some(root) if p.uses_expressions() => {
                    let mut ctx = root.new_inner_scope();
                    ctx.add_variable_from_value(
                        "policy",
                        crate::policy::expression::policy_value(&p.id, ps.streak, &ps.track),
                    );
                    Some(ctx)
                }
                _ => None,
            };
            let eval = p.condition.evaluate_shared(
                snap,
                &self.state.goals,
                ctx.as_ref(),
                &mut look.leaves,
            );
            let streak = if eval.holds { ps.streak + 1 } else { 0 };
            let factors = combine(eval.evidence, ps.track.score(), eval.coverage);
            let mut issued = Vec::new();
            let reason = if !eval.holds {
                "condition does not hold".to_string()
            } else if streak < p.for_cycles {
                format!("condition has held {streak} of {} cycles", p.for_cycles)
            } else if factors.confidence < p.confidence_threshold {
                format!(
                    "confidence {:.2} below threshold {:.2}",
                    factors.confidence, p.confidence_threshold
                )
            } else if factors.evidence < p.min_evidence {
                format!(
                    "evidence {:.3} that the condition holds is below {:.2}: waiting for more data",
                    factors.evidence, p.min_evidence
                )
            } else if one_change_a_cycle
                && let Some(other) = taken
                    .iter()
                    .chain(taken_shadow.iter().filter(|_| shadow))
                    .next()
            {
                format!(
                    "no free target: {other} changes this cycle; two domains changed together would be each other's controls"
                )
            } else {
                // "no free target: key: why; key: why…", written as the candidates are
                // skipped
                let mut skipped = String::new();
                let mut skipped_listed = 0usize;
                let mut skipped_more = 0usize;
                let (knobs, held) = if shadow {
                    (&look.knob_any, &look.held_any)
                } else {
                    (&look.knob_live, &look.held_live)
                };
                // the policy's knob action, read from its parameters once for its candidates
                let action = p.directive_template.knob_action().ok();
                for c in self.candidates(p, snap, &eval, ctx.as_ref(), &mut look.worst) {
                    c.write_key(&mut key);
                    // why not here: its text is written only when it is listed
                    let why_not = if taken.contains(&*c.domain)
                        || shadow && taken_shadow.contains(&*c.domain)
                    {
                        Some(Skip::Taken)
                    } else if p.directive_template.experiment_first
                        && let Some(e) = self.state.experiment_running(&c.domain)
                    {
                        Some(Skip::Experiment(e))
                    } else if let Some(h) = knobs.get(&key) {
                        Some(Skip::KnobHeld(h))
                    } else if let Some(h) = (p.directive_template.directive_type
                        != DirectiveType::RequestReview)
                        .then(|| held.get(&*c.domain))
                        .flatten()
                    {
                        Some(Skip::Held(h))
                    } else if to_submit.iter().any(|(d, _)| d.knob_key() == key) {
                        Some(Skip::Text("knob taken this cycle".into()))
                    } else if p.template_target() != &TargetSelector::PatternRoot
                        && cascade_domains.contains(&*c.domain)
                    {
                        Some(Skip::Text(
                            "explained by a dependency cascade; acting at its root instead".into(),
                        ))
                    } else if let Some(last) = ps.last_issued.get(&key)
                        && last + u64::from(p.cooldown_cycles) > snap.cycle
                    {
                        Some(Skip::Cooling(last + u64::from(p.cooldown_cycles)))
                    } else if let Some(KnobAction::Set { value }) = &action
                        && self.state.knob_values.get(&key) == Some(value)
                    {
                        Some(Skip::Already(value))
                    } else if let Some(why) = self.flap_hold(&key, action.as_ref(), snap.cycle) {
                        Some(Skip::Text(why))
                    } else if p.directive_template.experiment_first
                        || p.directive_template.directive_type == DirectiveType::RequestReview
                    {
                        // the arms are compared with each other; a review changes nothing:
                        // no baseline needed
                        None
                    } else {
                        let kpi = &p.directive_template.target_kpi;
                        let k = &mut look.shortfall_key;
                        k.clear();
                        k.push_str(&c.domain);
                        k.push('\0');
                        k.push_str(kpi);
                        if !look.shortfall.contains_key(k.as_str()) {
                            let why = self.baseline_shortfall(&c.domain, kpi);
                            look.shortfall.insert(k.clone(), why);
                        }
                        look.shortfall[k.as_str()].as_deref().map(Skip::Shortfall)
                    };
                    if let Some(w) = why_not {
                        if skipped_listed < SKIPPED_LISTED {
                            skipped.push_str(match skipped_listed {
                                0 => "no free target: ",
                                _ => "; ",
                            });
                            skipped.push_str(&key);
                            skipped.push_str(": ");
                            w.write_text(
                                &mut skipped,
                                &c.domain,
                                self.cfg.verification.control_hold_samples,
                            );
                            skipped_listed += 1;
                        } else {
                            skipped_more += 1;
                        }
                        continue;
                    }
                    let d = self.directive_from(p, &c, snap, &eval, factors, now);
                    if shadow {
                        taken_shadow.insert(c.domain.to_string());
                    } else {
                        taken.insert(c.domain.to_string());
                    }
                    issued.push(d.id.clone());
                    recommendations.push(format!(
                        "{}: {} {} in {} (confidence {:.2})",
                        p.id, d.directive_type, d.knob, d.target_domain, factors.confidence
                    ));
                    to_submit.push((d, p.approval_override));
                    break;
                }
                if issued.is_empty() {
                    if skipped_listed == 0 {
                        "no target found".to_string()
                    } else {
                        if skipped_more > 0 {
                            use std::fmt::Write;
                            let _ = write!(skipped, "; and {skipped_more} more");
                        }
                        skipped
                    }
                } else {
                    String::new()
                }
            };
            if eval.holds && issued.is_empty() {
                if held_back < HELD_BACK_LISTED {
                    recommendations.push(format!("{}: holds, not acting: {reason}", p.id));
                }
                held_back += 1;
            }
            // each failing playbook's success rate is in `values`; its details (runs,
            // evidence) are recorded where a directive was issued for it
            let eval = if issued.is_empty() {
                look.leaves.without_failing_playbooks(eval)
            } else {
                eval
            };
            evaluations.push(PolicyEvaluation {
                policy_id: p.id.clone(),
                condition: eval,
                streak,
                factors,
                directives: issued,
                reason,
            });
        }
        if held_back > HELD_BACK_LISTED {
            recommendations.push(format!(
                "{} more policies hold without acting (their evaluations say why)",
                held_back - HELD_BACK_LISTED
            ));
        }
        let actor = self.cfg.actor.clone();
        self.commit(
            now,
            &actor,
            RecordBody::StrategyEvaluated(StrategyEvaluation {
                cycle: snap.cycle,
                evaluations,
                recommendations,
            }),
        );
        for (d, o) in to_submit {
            let (pre, pre_cycles) = self.pre_window(&d.target_domain);
            self.submit(d, o, pre, pre_cycles, now);
        }
    }

    /// Why a policy's change of `key` would exceed the knob's flap budget, if it would.
    fn flap_hold(&self, key: &str, action: Option<&KnobAction>, cycle: u64) -> Option<String> {
        let budget = &self.cfg.flap;
        let last = *self.state.knob_last_move.get(key)?;
        let dir = match action? {
            KnobAction::Adjust { adjustment } if *adjustment > 0.0 => 1,
            KnobAction::Adjust { adjustment } if *adjustment < 0.0 => -1,
            KnobAction::Adjust { .. } => return None,
            KnobAction::Set { value } => {
                crate::supervisor::state::move_direction(self.state.knob_values.get(key)?, value)?
            }
        };
        if dir == last {
            return None;
        }
        let recent: Vec<u64> = self
            .state
            .knob_reversals
            .get(key)
            .map(|r| {
                r.iter()
                    .copied()
                    .filter(|c| c + budget.window_cycles > cycle)
                    .collect()
            })
            .unwrap_or_default();
        (recent.len() as u32 >= budget.max_reversals).then(|| {
            format!(
                "flap budget: {key} was reversed at cycle {} and may be reversed at most {} time(s) in {} cycles",
                recent.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                budget.max_reversals,
                budget.window_cycles
            )
        })
    }

    /// Where a policy could act, best first.
    fn candidates<'a>(
        &self,
        p: &'a MetaPolicy,
        snap: &'a CrossDomainSnapshot,
        eval: &'a ConditionEval,
        ctx: Option<&cel::Context<'_, '_>>,
        worst: &'a mut WorstDomains,
    ) -> Vec<Candidate<'a>> {
        let t = &p.directive_template;
        let at = |domain: Cow<'a, str>, why: Why<'a>| Candidate {
            domain,
            knob: Knob::Plain(&t.knob),
            fill: "",
            why,
        };
        match &t.target {
            TargetSelector::Matching(source) => {
                let found = match (crate::policy::expression::compile_domains(source), ctx) {
                    (Ok(c), Some(ctx)) => c.domains(ctx).unwrap_or_default(),
                    _ => Vec::new(),
                };
                found
                    .into_iter()
                    .filter(|d| snap.domains.contains_key(d))
                    .map(|d| at(Cow::Owned(d), Why::Listed))
                    .collect()
            }
            TargetSelector::Domain(d) => vec![at(Cow::Borrowed(d), Why::Fixed)],
            TargetSelector::PatternRoot => {
                let knob = Knob::of(&t.knob, "{node}");
                snap.patterns
                    .iter()
                    .filter_map(|pat| match pat {
                        SystemicPattern::DependencyCascade(c) => Some(Candidate {
                            knob,
                            fill: &c.root_node,
                            ..at(Cow::Borrowed(&c.root_domain), Why::Pattern(pat))
                        }),
                        _ => None,
                    })
                    .collect()
            }
            TargetSelector::FailingPlaybook => {
                let knob = Knob::of(&t.knob, "{playbook}");
                eval.failing_playbooks
                    .iter()
                    .map(|f| Candidate {
                        knob,
                        fill: &f.playbook,
                        ..at(
                            Cow::Borrowed(&f.domain),
                            Why::Playbook(&f.playbook, f.success_rate, f.runs, f.evidence),
                        )
                    })
                    .collect()
            }
            TargetSelector::WorstDomain => {
                let metric = t.target_kpi.as_str();
                let threshold = p
                    .condition
                    .gap_metric()
                    .filter(|(m, _)| *m == metric)
                    .map_or(0.0, |(_, th)| th);
                let ranked = worst
                    .entry((metric.to_string(), threshold.to_bits()))
                    .or_insert_with(|| {
                        let mut found: Vec<(f64, (String, f64, f64, f64))> = snap
                            .domains
                            .iter()
                            .filter_map(|(name, d)| {
                                let gap = *d.goal_gaps.get(metric)?;
                                if gap < threshold || gap <= 0.0 {
                                    return None;
                                }
                                let n = d.samples.get(metric).copied().unwrap_or(0) as f64;
                                let v = d.kpis.get(metric).copied().unwrap_or(f64::NAN);
                                Some((gap * n, (name.clone(), v, gap, n)))
                            })
                            .collect();
                        found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.0.cmp(&b.1.0)));
                        found.into_iter().map(|(_, c)| c).collect()
                    });
                ranked
                    .iter()
                    .map(|(name, v, gap, n)| {
                        at(Cow::Borrowed(name), Why::Gap(metric, *v, *gap, *n))
                    })
                    .collect()
            }
        }
    }

    fn directive_from(
        &self,
        p: &MetaPolicy,
        c: &Candidate,
        snap: &CrossDomainSnapshot,
        eval: &ConditionEval,
        factors: ConfidenceFactors,
        now: Timestamp,
    ) -> Directive {
        let t = &p.directive_template;
        let mut key = String::new();
        c.write_key(&mut key);
        let mut cond: Vec<String> = Vec::new();
        if let Some((m, th)) = p.condition.gap_metric()
            && let (Some(v), Some(g)) = (snap.global_kpis.get(m), snap.goal_gaps.get(m))
        {
            let target = self
                .state
                .goals
                .iter()
                .find(|x| x.kpi == m)
                .map_or(f64::NAN, |x| x.target);
            cond.push(format!(
                "{m} {} against target {} (gap {g:+.3} >= {th})",
                fmt_kpi(m, *v),
                fmt_kpi(m, target)
            ));
        }
        if let Some(n) = eval.values.get("underperforming_domains") {
            cond.push(format!("{n} domains underperforming"));
        }
        cond.push(c.why.render(&c.domain));
        let experiment = t.experiment_first.then(|| ExperimentPlan {
            fraction: t.experiment_fraction.unwrap_or(DEFAULT_EXPERIMENT_FRACTION),
            promote_as: t.directive_type,
        });
        if let Some(e) = &experiment {
            cond.push(format!(
                "tried first on {:.0}% of incidents (an experiment)",
                e.fraction * 100.0
            ));
        }
        Directive {
            id: make_id(
                self.cfg.id_seed,
                now,
                &["directive", &snap.cycle.to_string(), &p.id, &key],
            ),
            directive_type: if experiment.is_some() {
                DirectiveType::ScheduleExperiment
            } else {
                t.directive_type
            },
            target_domain: c.domain.to_string(),
            target_subsystem: t.subsystem.clone(),
            knob: c.knob(),
            action_name: t.action.clone(),
            action: t.knob_action().expect("templates are validated"),
            target_kpi: t.target_kpi.clone(),
            justification: format!("{}: {}", p.name, cond.join("; ")),
            expected_impact: t.expected_impact.clone(),
            side_effects: t.side_effects.clone(),
            min_effect: t.min_effect,
            impact: t.impact_level,
            policy_id: Some(p.id.clone()),
            snapshot_id: snap.id.clone(),
            factors,
            rollback_of: None,
            issued_cycle: snap.cycle,
            issued_at: now,
            shadow: self.cfg.shadow || p.mode == PolicyMode::Shadow,
            experiment,
            promoted_from: None,
        }
    }

    fn evaluate_alerts(&mut self, snap: &CrossDomainSnapshot, now: Timestamp) {
        let cfg = self.cfg.alerts.clone();
        let cycle = snap.cycle;
        let mut want: BTreeMap<String, (AlertKind, Severity, String)> = BTreeMap::new();
        let failures = self
            .state
            .verdict_log
            .iter()
            .filter(|(c, o)| {
                c + cfg.failure_window_cycles > cycle
                    && matches!(o, Outcome::NoEffect | Outcome::Degraded)
            })
            .count();
        if failures >= cfg.verification_failures {
            want.insert(
                "verification_failures".into(),
                (
                    AlertKind::VerificationFailures,
                    Severity::Critical,
                    format!(
                        "{failures} directives failed verification in the last {} cycles",
                        cfg.failure_window_cycles
                    ),
                ),
            );
        }
        for g in &self.state.goals {
            let streak = self
                .state
                .goal_miss_streak
                .get(&g.kpi)
                .copied()
                .unwrap_or(0);
            if streak >= cfg.goal_gap_cycles {
                let v = snap.global_kpis.get(&g.kpi).copied().unwrap_or(f64::NAN);
                want.insert(
                    format!("goal_gap_not_closed:{}", g.kpi),
                    (
                        AlertKind::GoalGapNotClosed,
                        Severity::Warning,
                        format!(
                            "{} has missed its target {} for {streak} cycles (now {})",
                            g.kpi,
                            fmt_kpi(&g.kpi, g.target),
                            fmt_kpi(&g.kpi, v)
                        ),
                    ),
                );
            }
        }
        for (key, t) in &self.state.patterns {
            if t.addressed && t.streak >= cfg.pattern_cycles {
                want.insert(
                    format!("systemic_pattern_persisting:{key}"),
                    (
                        AlertKind::SystemicPatternPersisting,
                        Severity::Critical,
                        format!(
                            "{} for {} cycles despite directives",
                            t.description, t.streak
                        ),
                    ),
                );
            }
        }
        for (name, d) in &snap.domains {
            if let Some(v) = d.kpis.get(kpi::COMPLIANCE_SCORE)
                && *v < cfg.compliance_threshold
            {
                want.insert(
                    format!("compliance_below_threshold:{name}"),
                    (
                        AlertKind::ComplianceBelowThreshold,
                        Severity::Critical,
                        format!(
                            "{name} compliance score {v:.1} is below {}",
                            cfg.compliance_threshold
                        ),
                    ),
                );
            }
        }
        for id in &self.state.order {
            let d = &self.state.directives[id];
            if d.ack_timed_out && d.status == Status::Published {
                want.insert(
                    format!("directive_no_ack:{id}"),
                    (
                        AlertKind::DirectiveNoAck,
                        Severity::Critical,
                        format!(
                            "directive {} ({} {} in {}) has no ack from the spine; it is not assumed applied",
                            short(id),
                            d.directive.directive_type,
                            d.directive.knob,
                            d.directive.target_domain
                        ),
                    ),
                );
            }
        }
        for (orig, tries, refused) in self.failed_rollbacks() {
            if refused && tries < MAX_ROLLBACK_ATTEMPTS {
                continue; // being tried again
            }
            let d = &self.state.directives[&orig].directive;
            want.insert(
                format!("rollback_failed:{orig}"),
                (
                    AlertKind::RollbackFailed,
                    Severity::Critical,
                    format!(
                        "directive {} ({} {} in {}) must be rolled back, but {}; a human is asked to restore it",
                        short(&orig),
                        d.directive_type,
                        d.knob,
                        d.target_domain,
                        if refused {
                            format!("the spine refused all {tries} rollbacks")
                        } else {
                            "its rollback got no ack".to_string()
                        }
                    ),
                ),
            );
        }
        let actor = self.cfg.actor.clone();
        let gone: Vec<String> = self
            .state
            .alerts
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.commit(
                now,
                &actor,
                RecordBody::AlertResolved {
                    key: key.clone(),
                    cycle,
                },
            );
            self.notify(
                NotificationKind::AlertResolved,
                now,
                format!("Resolved: {key}."),
                Some(key),
            );
        }
        for (key, (kind, severity, message)) in want {
            if self.state.alerts.contains_key(&key) {
                continue;
            }
            let alert = Alert {
                key: key.clone(),
                kind,
                severity,
                message: message.clone(),
                since_cycle: cycle,
            };
            self.commit(now, &actor, RecordBody::AlertFired { alert });
            self.notify(
                NotificationKind::AlertFiring,
                now,
                format!("Alert {}: {message}.", kind.as_str()),
                Some(key),
            );
        }
    }
}

impl MetaPolicy {
    fn template_target(&self) -> &TargetSelector {
        &self.directive_template.target
    }
}

/// A KPI value for humans: rates as percentages, durations in seconds.
/// What the estimated verdict of a shadow directive says: the verification ran over the
/// data that followed the decision with nothing changed, so it measures the natural course of
/// the target, not the directive's effect.
pub fn shadow_reading(d: &Directive, outcome: Outcome) -> String {
    let k = &d.target_kpi;
    match outcome {
        Outcome::Verified => format!(
            "without the change, {k} improved on its own: the condition was passing, and a before/after comparison would have credited the directive with a recovery it did not cause"
        ),
        Outcome::Degraded => format!(
            "without the change, {k} (or a guardrail) got worse: the need was real and growing"
        ),
        Outcome::NoEffect => format!(
            "without the change, {k} stayed where it was: the need persisted; the directive's own effect is measured only by trying it (an experiment on a slice measures it safely)"
        ),
        Outcome::Inconclusive => {
            format!("the data that followed cannot tell whether {k} moved on its own")
        }
    }
}

pub fn fmt_kpi(kpi_name: &str, v: f64) -> String {
    if v.is_nan() {
        return "missing".into();
    }
    match kpi::builtin(kpi_name).map(|(_, k)| k) {
        Some(kpi::KpiKind::Rate) => format!("{:.1}%", v * 100.0),
        Some(kpi::KpiKind::Duration) => format!("{v:.1}s"),
        _ => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SupervisorConfig;
    use crate::directive::Status;
    use crate::pipeline::Requirement;
    use crate::protocol::{
        DirectiveApplied, DirectiveMessage, DirectiveRefused, EventData, SpineEvent,
    };
    use serde_json::json;

    const T0: Timestamp = Timestamp::from_secs(1_767_225_600);
    const KNOB: &str = "planner.confidence_threshold";

    fn at(secs: i64) -> Timestamp {
        T0.plus_millis(secs * 1000)
    }

    fn ack(id: &str, data: EventData, time: Timestamp) -> SpineEvent {
        SpineEvent {
            id: format!("ack-{id}-{}", time.millis()),
            source: "urn:spine:application".into(),
            time,
            data,
        }
    }

    fn refuse(sup: &mut Supervisor, id: &str, time: Timestamp) {
        let data = EventData::DirectiveRefused(DirectiveRefused {
            directive_id: id.into(),
            domain: "application".into(),
            reason: "knob is locked".into(),
        });
        sup.ingest(&ack(id, data, time)).unwrap();
    }

    /// A supervisor with directive `d1` applied (0.70 → 0.80) and its first rollback
    /// published.
    fn applied_and_rolling_back() -> Supervisor {
        let mut sup = Supervisor::new(SupervisorConfig::default(), T0).unwrap();
        let d = Directive {
            id: "d1".into(),
            directive_type: DirectiveType::AdjustThreshold,
            target_domain: "application".into(),
            target_subsystem: "planner".into(),
            knob: KNOB.into(),
            action_name: "raise".into(),
            action: KnobAction::Set { value: json!(0.8) },
            target_kpi: "overall_success_rate".into(),
            justification: "test".into(),
            expected_impact: "test".into(),
            side_effects: BTreeMap::new(),
            min_effect: None,
            impact: ImpactLevel::Low,
            policy_id: None,
            snapshot_id: "s".into(),
            factors: ConfidenceFactors::default(),
            rollback_of: None,
            issued_cycle: 0,
            issued_at: at(1),
            shadow: false,
            experiment: None,
            promoted_from: None,
        };
        let message = d.message();
        sup.commit(
            at(1),
            "test",
            RecordBody::Proposed {
                directive: d,
                requirement: Requirement {
                    approvals: 0,
                    notify: false,
                    review_note: false,
                },
                effective_impact: ImpactLevel::Low,
                pre_window: DomainWindow::default(),
                pre_cycles: 0,
            },
        );
        sup.commit(
            at(1),
            "test",
            RecordBody::Published {
                directive_id: "d1".into(),
                message,
            },
        );
        let applied = EventData::DirectiveApplied(DirectiveApplied {
            directive_id: "d1".into(),
            domain: "application".into(),
            knob: KNOB.into(),
            previous: json!(0.7),
            current: json!(0.8),
        });
        sup.ingest(&ack("d1", applied, at(2))).unwrap();
        sup.rollback("d1", at(3), &mut BTreeSet::new());
        sup
    }

    fn rollbacks(sup: &Supervisor) -> Vec<(String, Status)> {
        sup.state
            .order
            .iter()
            .map(|id| &sup.state.directives[id])
            .filter(|d| d.directive.rollback_of.as_deref() == Some("d1"))
            .map(|d| (d.directive.id.clone(), d.status))
            .collect()
    }

    fn review_of(sup: &Supervisor, knob: &str) -> Option<Status> {
        sup.state
            .directives
            .values()
            .find(|d| {
                d.directive.directive_type == DirectiveType::RequestReview
                    && d.directive.knob == knob
            })
            .map(|d| d.status)
    }

    #[test]
    fn a_refused_rollback_is_tried_again_then_goes_to_humans() {
        let mut sup = applied_and_rolling_back();
        let cycle = sup.cfg.cycle_seconds;
        for attempt in 1..=MAX_ROLLBACK_ATTEMPTS {
            let tries = rollbacks(&sup);
            assert_eq!(tries.len(), attempt, "{tries:?}");
            let (last, status) = tries.last().unwrap().clone();
            assert_eq!(status, Status::Published, "attempt {attempt}");
            // the spine gets the rollback as a new directive with a new id
            let published: Vec<DirectiveMessage> = std::iter::from_fn(|| sup.poll_effect())
                .filter_map(|e| match e {
                    crate::supervisor::Effect::Publish(m) => Some(m),
                    _ => None,
                })
                .collect();
            assert!(
                published.iter().any(|m| m.directive_id == last),
                "attempt {attempt} published"
            );
            refuse(&mut sup, &last, at(10 + attempt as i64 * cycle));
            assert!(review_of(&sup, "review.rollback.d1").is_none());
            sup.tick(at(20 + attempt as i64 * cycle));
        }
        // three refusals: no fourth rollback; a human is asked, and the alert fires
        assert_eq!(rollbacks(&sup).len(), MAX_ROLLBACK_ATTEMPTS);
        assert!(
            rollbacks(&sup).iter().all(|(_, s)| *s == Status::Refused),
            "{:?}",
            rollbacks(&sup)
        );
        assert!(review_of(&sup, "review.rollback.d1").is_some());
        let alert = &sup.state.alerts["rollback_failed:d1"];
        assert_eq!(alert.kind, AlertKind::RollbackFailed);
        assert!(
            alert.message.contains("refused all 3 rollbacks"),
            "{}",
            alert.message
        );
        // asked once, not every cycle
        sup.tick(at(100 * cycle));
        let reviews = sup
            .state
            .directives
            .values()
            .filter(|d| d.directive.knob == "review.rollback.d1")
            .count();
        assert_eq!(reviews, 1);
    }

    #[test]
    fn a_rollback_without_an_ack_goes_to_humans_and_a_late_ack_resolves_it() {
        let mut sup = applied_and_rolling_back();
        let (r1, _) = rollbacks(&sup)[0].clone();
        let timeout = sup.cfg.ack_timeout_seconds;
        let cycle = sup.cfg.cycle_seconds;
        let mut t = 0;
        while t <= timeout + cycle {
            t += cycle;
            sup.tick(at(t));
        }
        assert!(sup.state.directives[&r1].ack_timed_out);
        assert_eq!(
            rollbacks(&sup).len(),
            1,
            "an unacknowledged rollback is re-sent, not replaced"
        );
        assert!(review_of(&sup, "review.rollback.d1").is_some());
        assert!(sup.state.alerts.contains_key("rollback_failed:d1"));
        // the spine answers late: the directive is rolled back and the alert resolves
        let applied = EventData::DirectiveApplied(DirectiveApplied {
            directive_id: r1.clone(),
            domain: "application".into(),
            knob: KNOB.into(),
            previous: json!(0.8),
            current: json!(0.7),
        });
        sup.ingest(&ack(&r1, applied, at(t + 20))).unwrap();
        assert_eq!(sup.state.directives["d1"].status, Status::RolledBack);
        sup.tick(at(t + cycle));
        assert!(!sup.state.alerts.contains_key("rollback_failed:d1"));
    }
}
