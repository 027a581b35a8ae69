//! Structured policy conditions: the seed's goal-gap and underperforming-domain forms,
//! systemic patterns, failing playbooks, and `all` / `any` combinations.

use super::confidence::{evidence_below_floor, evidence_goal_missed};
use crate::goal::Goal;
use crate::snapshot::CrossDomainSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// When a policy applies. Every part that is set must hold (they are and-ed); `any` holds
/// when one of its conditions does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Global goal gap of this KPI …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_gap_metric: Option<String>,
    /// … at least this large (positive = worse than target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_gap_threshold: Option<f64>,
    /// At least this many domains underperforming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_underperforming_domains: Option<u32>,
    /// A systemic pattern of this kind is present (`dependency_cascade`, `multi_domain_drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Some playbook's autonomous success rate is credibly below this floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook_success_below: Option<f64>,
    /// Autonomous runs a playbook needs in the window before it is judged (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook_min_runs: Option<u64>,
    /// Posterior probability of being below the floor needed (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook_credibility: Option<f64>,
    /// All of these hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<Condition>,
    /// At least one of these holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<Condition>,
    /// A CEL expression over the snapshot and the policy's state that must be true (see
    /// [`super::expression`]); it reads values as they are, so its own evidence is certain:
    /// combine it with a structured part, or test `evidence_missed`, when values are samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// A playbook found credibly below its floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingPlaybook {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    pub domain: String,
    pub evidence: f64,
    pub playbook: String,
    pub runs: u64,
    pub success_rate: f64,
}

/// The outcome of evaluating a condition against a snapshot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConditionEval {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// Fraction of domains with data for what the condition tests.
    pub coverage: f64,
    /// Posterior probability that what the condition tests is truly so.
    pub evidence: f64,
    /// Playbooks found below their floor (for `failing_playbook` targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_playbooks: Vec<FailingPlaybook>,
    pub holds: bool,
    /// Why an expression could not be evaluated (a key not in this snapshot, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The values the condition looked at, for the record.
    pub values: BTreeMap<String, f64>,
}

impl Condition {
    /// Checks the condition's shape.
    pub fn validate(&self) -> Result<(), String> {
        let has_leaf = self.goal_gap_metric.is_some()
            || self.min_underperforming_domains.is_some()
            || self.pattern.is_some()
            || self.playbook_success_below.is_some()
            || self.expression.is_some();
        if !has_leaf && self.all.is_empty() && self.any.is_empty() {
            return Err("empty condition: set goal_gap_metric, min_underperforming_domains, pattern, playbook_success_below, expression, all or any".into());
        }
        if let Some(e) = &self.expression {
            super::expression::compile(e).map_err(|e| format!("expression {e}"))?;
        }
        match (&self.goal_gap_metric, self.goal_gap_threshold) {
            (Some(_), None) => return Err("goal_gap_metric needs goal_gap_threshold".into()),
            (None, Some(_)) => return Err("goal_gap_threshold needs goal_gap_metric".into()),
            (_, Some(t)) if !t.is_finite() => {
                return Err("goal_gap_threshold must be a finite number".into());
            }
            _ => {}
        }
        if let Some(p) = &self.pattern
            && p != "dependency_cascade"
            && p != "multi_domain_drift"
        {
            return Err(format!(
                "unknown pattern {p:?}: expected dependency_cascade or multi_domain_drift"
            ));
        }
        if let Some(f) = self.playbook_success_below
            && !(0.0..=1.0).contains(&f)
        {
            return Err(format!(
                "playbook_success_below must be within 0..=1, got {f}"
            ));
        }
        if let Some(c) = self.playbook_credibility
            && !(0.5..1.0).contains(&c)
        {
            return Err(format!(
                "playbook_credibility must be within 0.5..1, got {c}"
            ));
        }
        if self.playbook_success_below.is_none()
            && (self.playbook_min_runs.is_some() || self.playbook_credibility.is_some())
        {
            return Err(
                "playbook_min_runs and playbook_credibility need playbook_success_below".into(),
            );
        }
        for c in self.all.iter().chain(&self.any) {
            c.validate()?;
        }
        Ok(())
    }

    /// The KPI a goal-gap condition (here or nested in `all`) is about.
    pub fn gap_metric(&self) -> Option<(&str, f64)> {
        if let (Some(m), Some(t)) = (&self.goal_gap_metric, self.goal_gap_threshold) {
            return Some((m, t));
        }
        self.all.iter().find_map(Condition::gap_metric)
    }

    /// True when it (or a part of it) has an expression.
    pub fn has_expression(&self) -> bool {
        self.expression.is_some() || self.all.iter().chain(&self.any).any(Self::has_expression)
    }

    /// Evaluates the condition; an expression sees the snapshot and a policy with no record.
    pub fn evaluate(&self, snap: &CrossDomainSnapshot, goals: &[Goal]) -> ConditionEval {
        if !self.has_expression() {
            return self.evaluate_in(snap, goals, None);
        }
        let vars = super::expression::Variables::of(snap, goals);
        let mut ctx = vars.context();
        ctx.add_variable_from_value(
            "policy",
            super::expression::policy_value("", 0, &Default::default()),
        );
        self.evaluate_in(snap, goals, Some(&ctx))
    }

    /// Evaluates the condition; `ctx` holds the expression variables (every snapshot
    /// variable and `policy`) when the condition has an expression.
    pub fn evaluate_in(
        &self,
        snap: &CrossDomainSnapshot,
        goals: &[Goal],
        ctx: Option<&cel::Context<'_, '_>>,
    ) -> ConditionEval {
        // the cache is dropped with this statement: the result is then usually its only
        // holder, and is taken out without a copy
        let shared = self.evaluate_shared(snap, goals, ctx, &mut LeafCache::default());
        Arc::unwrap_or_clone(shared)
    }

    /// [`Self::evaluate_in`], with the structured parts (goal gaps, underperforming
    /// domains, patterns, failing playbooks) taken from `cache` when another policy of the
    /// same cycle already tested the same thing. `cache` belongs to one snapshot and goals.
    ///
    /// The result is shared: a condition of one structured part is that part's evaluation,
    /// and conditions combining the same evaluations share their combination, so a thousand
    /// policies testing the same things hold a handful of evaluations between them.
    pub fn evaluate_shared(
        &self,
        snap: &CrossDomainSnapshot,
        goals: &[Goal],
        ctx: Option<&cel::Context<'_, '_>>,
        cache: &mut LeafCache,
    ) -> Arc<ConditionEval> {
        let mut parts: Vec<Arc<ConditionEval>> = Vec::new();
        if let Some(source) = &self.expression {
            parts.push(Arc::new(expression(source, snap, ctx)));
        }
        if let Some(metric) = &self.goal_gap_metric {
            let threshold = self.goal_gap_threshold.unwrap_or(0.0);
            parts.push(
                cache.get(Leaf::GoalGap(metric.clone(), threshold.to_bits()), || {
                    goal_gap(snap, goals, metric, threshold)
                }),
            );
        }
        if let Some(n) = self.min_underperforming_domains {
            parts.push(cache.get(Leaf::Underperforming(n), || underperforming(snap, goals, n)));
        }
        if let Some(kind) = &self.pattern {
            parts.push(cache.get(Leaf::Pattern(kind.clone()), || {
                let found = snap.patterns.iter().filter(|p| p.kind() == kind).count();
                let mut values = BTreeMap::new();
                values.insert(format!("patterns.{kind}"), found as f64);
                // health states are reported facts, not samples: their evidence is certain
                ConditionEval {
                    holds: found > 0,
                    evidence: if found > 0 { 1.0 } else { 0.0 },
                    coverage: snap.coverage,
                    values,
                    failing_playbooks: vec![],
                    notes: vec![],
                }
            }));
        }
        if let Some(floor) = self.playbook_success_below {
            let min_runs = self.playbook_min_runs.unwrap_or(20);
            let credibility = self.playbook_credibility.unwrap_or(0.95);
            let leaf = Leaf::Playbooks(floor.to_bits(), min_runs, credibility.to_bits());
            parts.push(cache.get(leaf, || {
                failing_playbooks(snap, floor, min_runs, credibility)
            }));
        }
        for c in &self.all {
            parts.push(c.evaluate_shared(snap, goals, ctx, cache));
        }
        if !self.any.is_empty() {
            let evals: Vec<Arc<ConditionEval>> = self
                .any
                .iter()
                .map(|c| c.evaluate_shared(snap, goals, ctx, cache))
                .collect();
            let best = evals
                .iter()
                .filter(|e| e.holds)
                .max_by(|a, b| a.evidence.total_cmp(&b.evidence))
                .or_else(|| {
                    evals
                        .iter()
                        .max_by(|a, b| a.evidence.total_cmp(&b.evidence))
                })
                .cloned()
                .unwrap_or_default();
            parts.push(best);
        }
        cache.combined(parts)
    }
}

/// The conjunction of `parts`: it holds when all hold, with the least evidence and coverage
/// (at most 1), and every part's values, failing playbooks and notes (a later part's value
/// replaces an earlier one of the same name).
fn conjunction(parts: &[Arc<ConditionEval>]) -> ConditionEval {
    let mut out = ConditionEval {
        holds: true,
        evidence: 1.0,
        coverage: 1.0,
        ..Default::default()
    };
    for p in parts {
        out.holds &= p.holds;
        out.evidence = out.evidence.min(p.evidence);
        out.coverage = out.coverage.min(p.coverage);
        out.values
            .extend(p.values.iter().map(|(k, v)| (k.clone(), *v)));
        out.failing_playbooks
            .extend(p.failing_playbooks.iter().cloned());
        out.notes.extend(p.notes.iter().cloned());
    }
    out
}

/// A structured part of a condition, with its parameters (floats by their bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Leaf {
    GoalGap(String, u64),
    Underperforming(u32),
    Pattern(String),
    Playbooks(u64, u64, u64),
}

/// A conjunction and the parts it was made of (kept, so their addresses stay theirs).
type Combined = (Vec<Arc<ConditionEval>>, Arc<ConditionEval>);

/// The structured parts of conditions evaluated against one snapshot, so that policies
/// testing the same thing (the same goal gap and threshold, the same playbook floor, …)
/// evaluate it once a cycle.
#[derive(Debug, Default)]
pub struct LeafCache {
    evaluated: foldhash::HashMap<Leaf, Arc<ConditionEval>>,
    /// Conjunctions by the addresses of their parts. The parts are kept with them, so an
    /// address is never reused while the cache lives.
    combined: foldhash::HashMap<Vec<usize>, Combined>,
    /// Evaluations without their failing playbooks, by the address of the evaluation (kept).
    stripped: foldhash::HashMap<usize, (Arc<ConditionEval>, Arc<ConditionEval>)>,
}

impl LeafCache {
    fn get(&mut self, leaf: Leaf, evaluate: impl FnOnce() -> ConditionEval) -> Arc<ConditionEval> {
        self.evaluated
            .entry(leaf)
            .or_insert_with(|| Arc::new(evaluate()))
            .clone()
    }

    /// The conjunction of `parts` ([`conjunction`]): the part itself when there is one
    /// whose evidence and coverage are at most 1, and the same evaluation for the same parts.
    fn combined(&mut self, parts: Vec<Arc<ConditionEval>>) -> Arc<ConditionEval> {
        if let [one] = parts.as_slice()
            && one.evidence <= 1.0
            && one.coverage <= 1.0
        {
            return one.clone();
        }
        let key: Vec<usize> = parts.iter().map(|p| Arc::as_ptr(p) as usize).collect();
        self.combined
            .entry(key)
            .or_insert_with(|| {
                let c = Arc::new(conjunction(&parts));
                (parts, c)
            })
            .1
            .clone()
    }

    /// `eval` without its failing playbooks (the same evaluation when it has none).
    pub(crate) fn without_failing_playbooks(
        &mut self,
        eval: Arc<ConditionEval>,
    ) -> Arc<ConditionEval> {
        if eval.failing_playbooks.is_empty() {
            return eval;
        }
        self.stripped
            .entry(Arc::as_ptr(&eval) as usize)
            .or_insert_with(|| {
                let mut s = (*eval).clone();
                s.failing_playbooks.clear();
                (eval, Arc::new(s))
            })
            .1
            .clone()
    }
}

fn expression(
    source: &str,
    snap: &CrossDomainSnapshot,
    ctx: Option<&cel::Context<'_, '_>>,
) -> ConditionEval {
    let fail = |note: String| ConditionEval {
        holds: false,
        evidence: 0.0,
        coverage: snap.coverage,
        notes: vec![note],
        ..Default::default()
    };
    let compiled = match super::expression::compile(source) {
        Ok(c) => c,
        Err(e) => return fail(format!("expression {e}")),
    };
    let Some(ctx) = ctx else {
        return fail("expression evaluated without its variables".into());
    };
    let r = compiled.evaluate(ctx);
    ConditionEval {
        holds: r.holds,
        // the values are read as they are: certain facts, not estimates
        evidence: if r.holds { 1.0 } else { 0.0 },
        coverage: snap.coverage,
        values: r
            .bindings
            .into_iter()
            .map(|(k, v)| (format!("cel:{k}"), v))
            .collect(),
        failing_playbooks: vec![],
        notes: r
            .error
            .map(|e| format!("expression: {e}"))
            .into_iter()
            .collect(),
    }
}

fn goal_gap(
    snap: &CrossDomainSnapshot,
    goals: &[Goal],
    metric: &str,
    threshold: f64,
) -> ConditionEval {
    let mut values = BTreeMap::new();
    values.insert(format!("goal_gap_threshold.{metric}"), threshold);
    let (Some(goal), Some(gap)) = (
        goals.iter().find(|g| g.kpi == metric),
        snap.goal_gaps.get(metric),
    ) else {
        // no goal or no data: cannot hold, and says nothing
        return ConditionEval {
            holds: false,
            evidence: 0.0,
            coverage: 0.0,
            values,
            failing_playbooks: vec![],
            notes: vec![],
        };
    };
    values.insert(format!("goal_gap.{metric}"), *gap);
    if let Some(v) = snap.global_kpis.get(metric) {
        values.insert(format!("kpi.{metric}"), *v);
    }
    let with_data = snap
        .domains
        .values()
        .filter(|d| d.kpis.contains_key(metric))
        .count();
    let coverage = if snap.domains.is_empty() {
        0.0
    } else {
        with_data as f64 / snap.domains.len() as f64
    };
    ConditionEval {
        holds: *gap >= threshold,
        // evidence that the condition holds: the true value misses the target by at least
        // the threshold
        evidence: evidence_goal_missed(&snap.global_window, &beyond(goal, threshold))
            .unwrap_or(0.0),
        coverage,
        values,
        failing_playbooks: vec![],
        notes: vec![],
    }
}

/// The goal moved by `threshold` in the worse direction.
fn beyond(goal: &Goal, threshold: f64) -> Goal {
    let mut g = goal.clone();
    g.target = match g.direction {
        crate::kpi::Direction::HigherIsBetter => g.target - threshold,
        crate::kpi::Direction::LowerIsBetter => g.target + threshold,
    };
    g
}

fn underperforming(snap: &CrossDomainSnapshot, goals: &[Goal], n: u32) -> ConditionEval {
    let mut values = BTreeMap::new();
    let count = snap.analysis.underperforming.len();
    values.insert("underperforming_domains".into(), count as f64);
    values.insert("min_underperforming_domains".into(), f64::from(n));
    // evidence: the n-th strongest domain's evidence that its worst goal is truly missed
    let mut per_domain: Vec<f64> = snap
        .analysis
        .underperforming
        .iter()
        .map(|(d, kpis)| {
            let w = &snap.domains[d].window;
            kpis.iter()
                .filter_map(|k| goals.iter().find(|g| &g.kpi == k))
                .filter_map(|g| evidence_goal_missed(w, g))
                .fold(0.0, f64::max)
        })
        .collect();
    per_domain.sort_by(|a, b| b.total_cmp(a));
    let evidence = if n == 0 {
        1.0
    } else {
        per_domain.get(n as usize - 1).copied().unwrap_or(0.0)
    };
    ConditionEval {
        holds: count >= n as usize,
        evidence,
        coverage: snap.coverage,
        values,
        failing_playbooks: vec![],
        notes: vec![],
    }
}

fn failing_playbooks(
    snap: &CrossDomainSnapshot,
    floor: f64,
    min_runs: u64,
    credibility: f64,
) -> ConditionEval {
    let mut found = Vec::new();
    let mut best: f64 = 0.0;
    for (domain, d) in &snap.domains {
        for (name, pb) in &d.window.playbooks {
            let runs = pb.autonomous.trials;
            if runs < min_runs {
                continue;
            }
            let e = evidence_below_floor(pb.autonomous.successes, runs, floor);
            best = best.max(e);
            if e >= credibility {
                found.push(FailingPlaybook {
                    domain: domain.clone(),
                    playbook: name.clone(),
                    runs,
                    success_rate: pb.autonomous.rate().unwrap_or(0.0),
                    evidence: e,
                });
            }
        }
    }
    found.sort_by(|a, b| {
        b.evidence
            .total_cmp(&a.evidence)
            .then(a.success_rate.total_cmp(&b.success_rate))
    });
    let mut values = BTreeMap::new();
    values.insert("playbook_success_floor".into(), floor);
    for f in &found {
        values.insert(
            format!("playbook.{}/{}.success_rate", f.domain, f.playbook),
            f.success_rate,
        );
    }
    ConditionEval {
        holds: !found.is_empty(),
        evidence: found.first().map_or(best, |f| f.evidence),
        coverage: snap.coverage,
        values,
        failing_playbooks: found,
        notes: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_form_parses_and_validates() {
        let c: Condition = serde_json::from_str(
            r#"{"goal_gap_metric": "overall_success_rate", "goal_gap_threshold": 0.05}"#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.gap_metric(), Some(("overall_success_rate", 0.05)));
        let bad: Condition = serde_json::from_str(r#"{"goal_gap_metric": "x"}"#).unwrap();
        assert!(bad.validate().unwrap_err().contains("goal_gap_threshold"));
        let err = serde_json::from_str::<Condition>(r#"{"goal_gap_metrik": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("goal_gap_metrik"), "{err}");
        assert!(Condition::default().validate().is_err());
        let p: Condition = serde_json::from_str(r#"{"pattern": "spaghetti"}"#).unwrap();
        assert!(p.validate().unwrap_err().contains("spaghetti"));
    }

    /// Policies testing the same things share one evaluation, equal to what each would get
    /// evaluated alone; different things get different ones.
    #[test]
    fn policies_testing_the_same_things_share_their_evaluation() {
        let goals = crate::goal::default_goals();
        let mut snap = CrossDomainSnapshot {
            cycle: 4,
            coverage: 0.75,
            ..Default::default()
        };
        snap.goal_gaps.insert("overall_success_rate".into(), 0.08);
        snap.global_kpis.insert("overall_success_rate".into(), 0.87);
        for (i, d) in ["a", "b", "c"].iter().enumerate() {
            let mut ds = crate::snapshot::DomainSnapshot::default();
            ds.kpis
                .insert("overall_success_rate".into(), 0.8 + 0.05 * i as f64);
            snap.domains.insert(d.to_string(), ds);
        }
        snap.analysis
            .underperforming
            .insert("a".into(), vec!["overall_success_rate".into()]);
        let parse = |j: &str| serde_json::from_str::<Condition>(j).unwrap();
        let gap = r#"{"goal_gap_metric": "overall_success_rate", "goal_gap_threshold": 0.05}"#;
        let both = format!(r#"{{"all": [{gap}, {{"min_underperforming_domains": 1}}]}}"#);
        let conditions = [
            parse(gap),
            parse(&both),
            parse(gap),
            parse(&both),
            // another threshold: another evaluation
            parse(r#"{"goal_gap_metric": "overall_success_rate", "goal_gap_threshold": 0.1}"#),
            parse(
                r#"{"any": [{"min_underperforming_domains": 1}, {"min_underperforming_domains": 3}]}"#,
            ),
        ];
        let mut cache = LeafCache::default();
        let shared: Vec<Arc<ConditionEval>> = conditions
            .iter()
            .map(|c| c.evaluate_shared(&snap, &goals, None, &mut cache))
            .collect();
        for (c, e) in conditions.iter().zip(&shared) {
            assert_eq!(**e, c.evaluate_in(&snap, &goals, None));
        }
        assert!(Arc::ptr_eq(&shared[0], &shared[2]));
        assert!(Arc::ptr_eq(&shared[1], &shared[3]));
        assert!(!Arc::ptr_eq(&shared[0], &shared[4]));
        assert_ne!(*shared[0], *shared[4]);
        // the conjunction holds both parts' values, the least evidence and coverage
        assert!(shared[1].holds);
        assert_eq!(shared[1].values["underperforming_domains"], 1.0);
        assert_eq!(shared[1].values["goal_gap.overall_success_rate"], 0.08);
        assert_eq!(
            shared[1].evidence,
            shared[0].evidence.min(shared[5].evidence)
        );
        // stripping failing playbooks: the same evaluation when there are none
        assert!(Arc::ptr_eq(
            &cache.without_failing_playbooks(shared[0].clone()),
            &shared[0]
        ));
        let failing = Arc::new(ConditionEval {
            holds: true,
            evidence: 0.99,
            coverage: 1.0,
            failing_playbooks: vec![FailingPlaybook {
                domain: "a".into(),
                evidence: 0.99,
                playbook: "restart".into(),
                runs: 40,
                success_rate: 0.4,
            }],
            notes: vec![],
            values: [("playbook_success.a/restart".to_string(), 0.4)].into(),
        });
        let stripped = cache.without_failing_playbooks(failing.clone());
        assert!(stripped.failing_playbooks.is_empty());
        assert_eq!(
            *stripped,
            ConditionEval {
                failing_playbooks: vec![],
                ..(*failing).clone()
            }
        );
        assert!(Arc::ptr_eq(
            &cache.without_failing_playbooks(failing.clone()),
            &stripped
        ));
        assert_eq!(
            failing.failing_playbooks.len(),
            1,
            "the original is untouched"
        );
    }
}
