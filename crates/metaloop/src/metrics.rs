//! Prometheus metrics: one [`Metrics`] handle the runtime, the notifiers and the API share;
//! [`Metrics::encode`] renders the OpenMetrics text served at `/metrics`.
//!
//! Every name starts with `metaloop_`; units are in the names; counters end in `_total`.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `metaloop_cycle_duration_seconds` | histogram | | wall-clock time one supervisor cycle took |
//! | `metaloop_cycles_total` | counter | | cycles completed |
//! | `metaloop_directives` | gauge | `type`, `status` | directives currently in each lifecycle status |
//! | `metaloop_verdicts_total` | counter | `outcome`, `method` | verification verdicts reached |
//! | `metaloop_rollbacks_total` | counter | | rollbacks carried out |
//! | `metaloop_rollback_ratio` | gauge | | rollbacks per verification verdict so far (0 before the first verdict) |
//! | `metaloop_directive_success_ratio` | gauge | | verdicts `verified` per verification verdict so far (the directive success rate; 0 before the first verdict) |
//! | `metaloop_policy_evaluations_total` | counter | `policy` | times a meta-policy was evaluated |
//! | `metaloop_policy_matches_total` | counter | `policy` | times its condition held (whether or not a directive followed) |
//! | `metaloop_policy_match_ratio` | gauge | `policy` | matches per evaluation |
//! | `metaloop_strategy_cycles_total` | counter | | cycles whose policies were evaluated |
//! | `metaloop_strategy_cycles_matched_total` | counter | | of those, cycles in which at least one policy's condition held |
//! | `metaloop_cycle_policy_match_ratio` | gauge | | matched cycles per evaluated cycle (the policy match rate, % of cycles ÷ 100) |
//! | `metaloop_kpi` | gauge | `domain`, `kpi` | latest KPI value per domain (`domain="global"` for cross-domain KPIs); a missing KPI has no series |
//! | `metaloop_goal_gap` | gauge | `kpi` | signed goal gap, positive = worse than target, in the KPI's own unit |
//! | `metaloop_events_ingested_total` | counter | | spine events accepted |
//! | `metaloop_events_rejected_total` | counter | `reason` | spine events refused, by reason |
//! | `metaloop_ledger_appends_total` | counter | | ledger records made durable |
//! | `metaloop_ledger_checkpoints_total` | counter | | signed checkpoints made |
//! | `metaloop_ledger_checkpoint_timestamp_seconds` | gauge | | (ledger) time of the last checkpoint, Unix seconds |
//! | `metaloop_ledger_checkpoint_age_seconds` | gauge | | wall-clock seconds since the last checkpoint was made (absent before the first) |
//! | `metaloop_notifications_sent_total` | counter | `channel` | notifications delivered |
//! | `metaloop_notifications_dropped_total` | counter | `channel` | notifications dropped because the channel's queue was full (oldest first) |
//! | `metaloop_notifications_failed_total` | counter | `channel` | notifications lost after their retry budget ran out or a permanent error |
//! | `metaloop_notifications_retried_total` | counter | `channel` | delivery attempts retried |
//!
//! Rates over a time range for dashboards: match rate `rate(metaloop_policy_matches_total[1h]) /
//! rate(metaloop_policy_evaluations_total[1h])`, rollback rate
//! `rate(metaloop_rollbacks_total[1d]) / rate(metaloop_verdicts_total[1d])`.

use metaloop_core::time::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`Metrics::encode_text`]'s output (Prometheus text format 0.0.4).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectiveLabels {
    r#type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    outcome: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KpiLabels {
    domain: String,
    kpi: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GapLabels {
    kpi: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

/// Reports the wall-clock age of the last checkpoint at scrape time.
#[derive(Debug)]
struct CheckpointAge(Arc<Mutex<Option<Instant>>>);

impl Collector for CheckpointAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let made = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(made) = made else {
            return Ok(());
        };
        let age = ConstGauge::new(made.elapsed().as_secs_f64());
        let metric = encoder.encode_descriptor(
            "metaloop_ledger_checkpoint_age",
            "Wall-clock seconds since the last ledger checkpoint was made",
            Some(&Unit::Seconds),
            age.metric_type(),
        )?;
        age.encode(metric)
    }
}

struct Inner {
    registry: Registry,
    cycle_duration: Histogram,
    cycles: Counter,
    directives: Family<DirectiveLabels, Gauge>,
    verdicts: Family<VerdictLabels, Counter>,
    verdicts_seen: Counter,
    rollbacks: Counter,
    rollback_ratio: FloatGauge,
    verified: Counter,
    success_ratio: FloatGauge,
    strategy_cycles: Counter,
    strategy_cycles_matched: Counter,
    cycle_match_ratio: FloatGauge,
    policy_evaluations: Family<PolicyLabels, Counter>,
    policy_matches: Family<PolicyLabels, Counter>,
    policy_match_ratio: Family<PolicyLabels, FloatGauge>,
    kpi: Family<KpiLabels, FloatGauge>,
    goal_gap: Family<GapLabels, FloatGauge>,
    events_ingested: Counter,
    events_rejected: Family<ReasonLabels, Counter>,
    ledger_appends: Counter,
    checkpoints: Counter,
    checkpoint_time: FloatGauge,
    checkpoint_made: Arc<Mutex<Option<Instant>>>,
    notifications_sent: Family<ChannelLabels, Counter>,
    notifications_dropped: Family<ChannelLabels, Counter>,
    notifications_failed: Family<ChannelLabels, Counter>,
    notifications_retried: Family<ChannelLabels, Counter>,
    leader: Gauge,
    leader_epoch: Gauge,
    leader_changes: Counter,
    directives_resent: Counter,
}

/// The supervisor's Prometheus metrics; cheap to clone, every clone updates the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metaloop metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        // 5 ms … ~82 s: a cycle is milliseconds in the simulator, seconds against a big spine
        let cycle_duration = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        let cycles = Counter::default();
        let directives = Family::<DirectiveLabels, Gauge>::default();
        let verdicts = Family::<VerdictLabels, Counter>::default();
        let rollbacks = Counter::default();
        let rollback_ratio = FloatGauge::default();
        let success_ratio = FloatGauge::default();
        let strategy_cycles = Counter::default();
        let strategy_cycles_matched = Counter::default();
        let cycle_match_ratio = FloatGauge::default();
        let policy_evaluations = Family::<PolicyLabels, Counter>::default();
        let policy_matches = Family::<PolicyLabels, Counter>::default();
        let policy_match_ratio = Family::<PolicyLabels, FloatGauge>::default();
        let kpi = Family::<KpiLabels, FloatGauge>::default();
        let goal_gap = Family::<GapLabels, FloatGauge>::default();
        let events_ingested = Counter::default();
        let events_rejected = Family::<ReasonLabels, Counter>::default();
        let ledger_appends = Counter::default();
        let checkpoints = Counter::default();
        let checkpoint_time = FloatGauge::default();
        let checkpoint_made = Arc::new(Mutex::new(None));
        let notifications_sent = Family::<ChannelLabels, Counter>::default();
        let notifications_dropped = Family::<ChannelLabels, Counter>::default();
        let notifications_failed = Family::<ChannelLabels, Counter>::default();
        let notifications_retried = Family::<ChannelLabels, Counter>::default();

        let leader = Gauge::default();
        let leader_epoch = Gauge::default();
        let leader_changes = Counter::default();
        let directives_resent = Counter::default();
        let r = &mut registry;
        r.register(
            "metaloop_leader",
            "1 while this replica leads (holds the lease, or runs alone), 0 while it is a standby",
            leader.clone(),
        );
        r.register(
            "metaloop_leader_epoch",
            "Epoch of the lease this replica last saw (0 when it runs alone)",
            leader_epoch.clone(),
        );
        r.register(
            "metaloop_leader_changes",
            "Times this replica took or lost the lead",
            leader_changes.clone(),
        );
        r.register(
            "metaloop_directives_resent",
            "Directives published again under the same id: unacknowledged after a restart or failover, or after a failed publish",
            directives_resent.clone(),
        );
        r.register_with_unit(
            "metaloop_cycle_duration",
            "Wall-clock time one supervisor cycle took",
            Unit::Seconds,
            cycle_duration.clone(),
        );
        r.register(
            "metaloop_cycles",
            "Supervisor cycles completed",
            cycles.clone(),
        );
        r.register(
            "metaloop_directives",
            "Directives currently in each lifecycle status, by directive type",
            directives.clone(),
        );
        r.register(
            "metaloop_verdicts",
            "Verification verdicts reached, by outcome and verification method",
            verdicts.clone(),
        );
        r.register(
            "metaloop_rollbacks",
            "Rollbacks of directives carried out",
            rollbacks.clone(),
        );
        r.register_with_unit(
            "metaloop_rollback",
            "Rollbacks per verification verdict since start",
            Unit::Other("ratio".into()),
            rollback_ratio.clone(),
        );
        r.register_with_unit(
            "metaloop_directive_success",
            "Verdicts verified per verification verdict since start (directive success rate)",
            Unit::Other("ratio".into()),
            success_ratio.clone(),
        );
        r.register(
            "metaloop_strategy_cycles",
            "Cycles whose meta-policies were evaluated",
            strategy_cycles.clone(),
        );
        r.register(
            "metaloop_strategy_cycles_matched",
            "Cycles in which at least one meta-policy's condition held",
            strategy_cycles_matched.clone(),
        );
        r.register_with_unit(
            "metaloop_cycle_policy_match",
            "Cycles in which a meta-policy's condition held per evaluated cycle since start (policy match rate)",
            Unit::Other("ratio".into()),
            cycle_match_ratio.clone(),
        );
        r.register(
            "metaloop_policy_evaluations",
            "Times a meta-policy was evaluated against a snapshot",
            policy_evaluations.clone(),
        );
        r.register(
            "metaloop_policy_matches",
            "Times a meta-policy's condition matched",
            policy_matches.clone(),
        );
        r.register_with_unit(
            "metaloop_policy_match",
            "Matches per evaluation of a meta-policy since start",
            Unit::Other("ratio".into()),
            policy_match_ratio.clone(),
        );
        r.register(
            "metaloop_kpi",
            "Latest KPI value per domain in the KPI's own unit (domain global for cross-domain KPIs)",
            kpi.clone(),
        );
        r.register(
            "metaloop_goal_gap",
            "Signed goal gap in the KPI's own unit, positive means worse than target",
            goal_gap.clone(),
        );
        r.register(
            "metaloop_events_ingested",
            "Spine events accepted",
            events_ingested.clone(),
        );
        r.register(
            "metaloop_events_rejected",
            "Spine events refused, by reason",
            events_rejected.clone(),
        );
        r.register(
            "metaloop_ledger_appends",
            "Ledger records made durable",
            ledger_appends.clone(),
        );
        r.register(
            "metaloop_ledger_checkpoints",
            "Signed ledger checkpoints made",
            checkpoints.clone(),
        );
        r.register_with_unit(
            "metaloop_ledger_checkpoint_timestamp",
            "Time of the last ledger checkpoint as recorded in the ledger, Unix seconds",
            Unit::Seconds,
            checkpoint_time.clone(),
        );
        r.register_collector(Box::new(CheckpointAge(checkpoint_made.clone())));
        r.register(
            "metaloop_notifications_sent",
            "Notifications delivered, by channel",
            notifications_sent.clone(),
        );
        r.register(
            "metaloop_notifications_dropped",
            "Notifications dropped because the channel queue was full, by channel",
            notifications_dropped.clone(),
        );
        r.register(
            "metaloop_notifications_failed",
            "Notifications lost after their retry budget ran out or a permanent error, by channel",
            notifications_failed.clone(),
        );
        r.register(
            "metaloop_notifications_retried",
            "Notification delivery attempts retried, by channel",
            notifications_retried.clone(),
        );

        Metrics {
            inner: Arc::new(Inner {
                registry,
                cycle_duration,
                cycles,
                directives,
                verdicts,
                verdicts_seen: Counter::default(),
                rollbacks,
                rollback_ratio,
                verified: Counter::default(),
                success_ratio,
                strategy_cycles,
                strategy_cycles_matched,
                cycle_match_ratio,
                policy_evaluations,
                policy_matches,
                policy_match_ratio,
                kpi,
                goal_gap,
                events_ingested,
                events_rejected,
                ledger_appends,
                checkpoints,
                checkpoint_time,
                checkpoint_made,
                notifications_sent,
                notifications_dropped,
                notifications_failed,
                notifications_retried,
                leader,
                leader_epoch,
                leader_changes,
                directives_resent,
            }),
        }
    }

    /// This replica's role: leading or not, under which lease epoch.
    pub fn set_role(&self, leading: bool, epoch: u64) {
        let before = self.inner.leader.get();
        self.inner.leader.set(i64::from(leading));
        self.inner.leader_epoch.set(epoch as i64);
        if before != i64::from(leading) {
            self.inner.leader_changes.inc();
        }
    }

    /// A directive was published again under its id.
    pub fn directive_resent(&self) {
        self.inner.directives_resent.inc();
    }

    /// The OpenMetrics text exposition of every metric (serve with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// The same metrics in the Prometheus text format 0.0.4, for scrapers and tools that do not
    /// speak OpenMetrics (`promtool check metrics`, older agents): counters' `HELP` and `TYPE`
    /// name the `_total` series, and `UNIT` and `EOF` lines are left out.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// The body and content type for a `/metrics` request with this `Accept` header:
    /// OpenMetrics when the client asks for it (Prometheus does), text 0.0.4 otherwise.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (CONTENT_TYPE, self.encode())
        } else {
            (TEXT_CONTENT_TYPE, self.encode_text())
        }
    }

    /// One cycle finished after `duration` of wall-clock time.
    pub fn observe_cycle(&self, duration: Duration) {
        self.inner.cycle_duration.observe(duration.as_secs_f64());
        self.inner.cycles.inc();
    }

    /// Sets the latest value of `kpi` in `domain` (`"global"` for cross-domain KPIs). A
    /// non-finite value means missing: the series is removed, never reported as 0.
    pub fn set_kpi(&self, domain: &str, kpi: &str, value: f64) {
        let labels = KpiLabels {
            domain: domain.into(),
            kpi: kpi.into(),
        };
        if value.is_finite() {
            self.inner.kpi.get_or_create(&labels).set(value);
        } else {
            self.inner.kpi.remove(&labels);
        }
    }

    /// Sets the signed goal gap of `kpi` (positive = worse than target); non-finite removes it.
    pub fn set_goal_gap(&self, kpi: &str, gap: f64) {
        let labels = GapLabels { kpi: kpi.into() };
        if gap.is_finite() {
            self.inner.goal_gap.get_or_create(&labels).set(gap);
        } else {
            self.inner.goal_gap.remove(&labels);
        }
    }

    /// Sets how many directives of `directive_type` are in `status` now.
    pub fn directive_status(&self, directive_type: &str, status: &str, count: u64) {
        let labels = DirectiveLabels {
            r#type: directive_type.into(),
            status: status.into(),
        };
        self.inner
            .directives
            .get_or_create(&labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Forgets every directive count, before setting a fresh set with [`Self::directive_status`].
    pub fn clear_directive_status(&self) {
        self.inner.directives.clear();
    }

    /// A verification verdict was reached (`outcome` e.g. `verified`, `method` e.g. `metaloop`).
    pub fn verdict(&self, outcome: &str, method: &str) {
        let labels = VerdictLabels {
            outcome: outcome.into(),
            method: method.into(),
        };
        self.inner.verdicts.get_or_create(&labels).inc();
        self.inner.verdicts_seen.inc();
        if outcome == "verified" {
            self.inner.verified.inc();
        }
        let ratio = self.inner.verified.get() as f64 / self.inner.verdicts_seen.get() as f64;
        self.inner.success_ratio.set(ratio);
        self.update_rollback_ratio();
    }

    /// A cycle's meta-policies were evaluated; `any_matched` tells whether at least one
    /// condition held.
    pub fn strategy_cycle(&self, any_matched: bool) {
        self.inner.strategy_cycles.inc();
        if any_matched {
            self.inner.strategy_cycles_matched.inc();
        }
        let ratio = self.inner.strategy_cycles_matched.get() as f64
            / self.inner.strategy_cycles.get() as f64;
        self.inner.cycle_match_ratio.set(ratio);
    }

    /// A rollback was carried out.
    pub fn rollback(&self) {
        self.inner.rollbacks.inc();
        self.update_rollback_ratio();
    }

    fn update_rollback_ratio(&self) {
        let verdicts = self.inner.verdicts_seen.get();
        if verdicts > 0 {
            let ratio = self.inner.rollbacks.get() as f64 / verdicts as f64;
            self.inner.rollback_ratio.set(ratio);
        }
    }

    /// A meta-policy was evaluated; `matched` tells whether its condition held.
    pub fn policy_evaluated(&self, policy: &str, matched: bool) {
        let labels = PolicyLabels {
            policy: policy.into(),
        };
        let evaluations = self.inner.policy_evaluations.get_or_create_owned(&labels);
        let matches = self.inner.policy_matches.get_or_create_owned(&labels);
        evaluations.inc();
        if matched {
            matches.inc();
        }
        let ratio = matches.get() as f64 / evaluations.get().max(1) as f64;
        self.inner
            .policy_match_ratio
            .get_or_create(&labels)
            .set(ratio);
    }

    /// A spine event was accepted.
    pub fn event_ingested(&self) {
        self.inner.events_ingested.inc();
    }

    /// `n` spine events were accepted at once (an ingest worker's partial).
    pub fn events_ingested(&self, n: u64) {
        self.inner.events_ingested.inc_by(n);
    }

    /// A spine event was refused for `reason` (a short, bounded word such as `signature`,
    /// `duplicate`, `schema`; never the event id).
    pub fn event_rejected(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: reason.into(),
        };
        self.inner.events_rejected.get_or_create(&labels).inc();
    }

    /// `n` ledger records were made durable.
    pub fn ledger_appended(&self, n: u64) {
        self.inner.ledger_appends.inc_by(n);
    }

    /// A ledger checkpoint was made at `time` (ledger time); its age counts from now.
    pub fn checkpoint_made(&self, time: Timestamp) {
        self.inner.checkpoints.inc();
        self.inner
            .checkpoint_time
            .set(time.millis() as f64 / 1000.0);
        *self
            .inner
            .checkpoint_made
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// A notification was delivered on `channel`.
    pub fn notification_sent(&self, channel: &str) {
        self.inner
            .notifications_sent
            .get_or_create(&ChannelLabels::new(channel))
            .inc();
    }

    /// A notification was dropped from `channel`'s full queue.
    pub fn notification_dropped(&self, channel: &str) {
        self.inner
            .notifications_dropped
            .get_or_create(&ChannelLabels::new(channel))
            .inc();
    }

    /// A notification on `channel` was lost after its retry budget.
    pub fn notification_failed(&self, channel: &str) {
        self.inner
            .notifications_failed
            .get_or_create(&ChannelLabels::new(channel))
            .inc();
    }

    /// A delivery attempt on `channel` failed and will be retried.
    pub fn notification_retried(&self, channel: &str) {
        self.inner
            .notifications_retried
            .get_or_create(&ChannelLabels::new(channel))
            .inc();
    }

    /// Makes every notification series of `channel` visible at 0 before anything happens,
    /// so a dashboard sees the channel exists.
    pub fn register_channel(&self, channel: &str) {
        let labels = ChannelLabels::new(channel);
        let _ = self.inner.notifications_sent.get_or_create(&labels);
        let _ = self.inner.notifications_dropped.get_or_create(&labels);
        let _ = self.inner.notifications_failed.get_or_create(&labels);
        let _ = self.inner.notifications_retried.get_or_create(&labels);
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4 (see [`Metrics::encode_text`]).
fn openmetrics_to_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
                "gauge" | "counter" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some((name, text)) = help.take() {
            // a HELP with no TYPE after it
            out.push_str(&format!("# HELP {name} {text}\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl ChannelLabels {
    fn new(channel: &str) -> Self {
        ChannelLabels {
            channel: channel.into(),
        }
    }
}

/// Keeps the metrics current from what the supervisor records: cycle latency, KPIs and goal
/// gaps per domain, directives by type and status, verdicts, rollbacks, policy match rate,
/// ledger appends.
pub struct MetricsObserver(pub std::sync::Arc<Metrics>);

impl crate::runtime::Observer for MetricsObserver {
    fn observe(
        &mut self,
        sup: &metaloop_core::Supervisor,
        records: &[metaloop_core::record::Entry],
        elapsed: Duration,
    ) {
        let m = &self.0;
        if records.is_empty() {
            return;
        }
        m.ledger_appended(records.len() as u64);
        for r in records {
            match r.action.as_str() {
                "snapshot.built" => {
                    m.observe_cycle(elapsed);
                    let snap = &r.payload["snapshot"];
                    for (domain, d) in snap["domains"].as_object().into_iter().flatten() {
                        for (kpi, v) in d["kpis"].as_object().into_iter().flatten() {
                            m.set_kpi(domain, kpi, v.as_f64().unwrap_or(f64::NAN));
                        }
                    }
                    for (kpi, v) in snap["global_kpis"].as_object().into_iter().flatten() {
                        m.set_kpi("global", kpi, v.as_f64().unwrap_or(f64::NAN));
                    }
                    for (kpi, g) in snap["goal_gaps"].as_object().into_iter().flatten() {
                        m.set_goal_gap(kpi, g.as_f64().unwrap_or(f64::NAN));
                    }
                }
                "strategy.evaluated" => {
                    let mut any = false;
                    for e in metaloop_core::record::strategy_evaluations(&r.payload) {
                        // a match is the condition holding, whether or not a directive followed
                        let matched = e.condition["holds"].as_bool().unwrap_or(false);
                        any |= matched;
                        m.policy_evaluated(e.entry["policy_id"].as_str().unwrap_or("?"), matched);
                    }
                    m.strategy_cycle(any);
                }
                "verification.verdict" => {
                    let v = &r.payload["verdict"];
                    m.verdict(
                        v["outcome"].as_str().unwrap_or("?"),
                        v["method"].as_str().unwrap_or("?"),
                    );
                }
                "directive.rolled_back" => m.rollback(),
                _ => {}
            }
        }
        let mut counts: std::collections::BTreeMap<(&str, &str), u64> =
            std::collections::BTreeMap::new();
        for d in sup.state().directives.values() {
            *counts
                .entry((d.directive.directive_type.as_str(), d.status.as_str()))
                .or_insert(0) += 1;
        }
        m.clear_directive_status();
        for ((t, s), n) in counts {
            m.directive_status(t, s, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    /// The records a real cycle writes, through the observer the daemon and demo use.
    #[test]
    fn the_observer_reads_real_cycle_records() {
        use crate::runtime::Observer;
        use metaloop_core::record::Entry;
        let sup = metaloop_core::Supervisor::new(
            metaloop_core::SupervisorConfig::default(),
            Timestamp(0),
        )
        .unwrap();
        let entry = |action: &str, payload: serde_json::Value| Entry {
            time: Timestamp(0),
            actor: "metaloop".into(),
            action: action.into(),
            resource: "x".into(),
            payload: payload.into(),
        };
        let eval = |id: &str, holds: bool| serde_json::json!({"policy_id": id, "condition": {"holds": holds}, "directives": []});
        let m = std::sync::Arc::new(Metrics::new());
        let mut obs = MetricsObserver(m.clone());
        obs.observe(
            &sup,
            &[
                entry(
                    "snapshot.built",
                    serde_json::json!({"snapshot": {
                        "domains": {"application": {"kpis": {"overall_success_rate": 0.9}}},
                        "global_kpis": {"overall_success_rate": 0.87},
                        "goal_gaps": {"overall_success_rate": 0.08}}}),
                ),
                // the condition held but no directive followed (e.g. waiting for evidence)
                entry(
                    "strategy.evaluated",
                    serde_json::json!({"evaluations": [eval("a", true), eval("b", false)]}),
                ),
                entry(
                    "strategy.evaluated",
                    serde_json::json!({"evaluations": [eval("a", false), eval("b", false)]}),
                ),
                entry(
                    "verification.verdict",
                    serde_json::json!({"verdict": {"outcome": "verified", "method": "metaloop"}}),
                ),
                entry(
                    "verification.verdict",
                    serde_json::json!({"verdict": {"outcome": "degraded", "method": "metaloop"}}),
                ),
                entry(
                    "verification.verdict",
                    serde_json::json!({"verdict": {"outcome": "verified", "method": "metaloop"}}),
                ),
                entry(
                    "verification.verdict",
                    serde_json::json!({"verdict": {"outcome": "no_effect", "method": "metaloop"}}),
                ),
            ],
            Duration::from_millis(3),
        );
        let text = m.encode();
        assert!(
            text.contains("metaloop_kpi{domain=\"global\",kpi=\"overall_success_rate\"} 0.87"),
            "{text}"
        );
        assert!(!text.contains("domain=\"all\""), "{text}");
        assert!(
            text.contains("metaloop_policy_matches_total{policy=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("metaloop_policy_matches_total{policy=\"b\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("metaloop_directive_success_ratio 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("metaloop_strategy_cycles_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("metaloop_strategy_cycles_matched_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("metaloop_cycle_policy_match_ratio 0.5\n"),
            "{text}"
        );
    }

    #[test]
    fn counters_gauges_and_ratios() {
        let m = Metrics::new();
        m.policy_evaluated("improve_success_rate", true);
        m.policy_evaluated("improve_success_rate", false);
        m.policy_evaluated("improve_success_rate", false);
        m.policy_evaluated("improve_success_rate", true);
        m.verdict("verified", "metaloop");
        m.verdict("degraded", "metaloop");
        m.verdict("no_effect", "metaloop");
        m.verdict("verified", "metaloop");
        m.rollback();
        m.set_kpi("application", "overall_success_rate", 0.87);
        m.set_goal_gap("mean_recovery_time_seconds", 12.3);
        m.directive_status("ADJUST_THRESHOLD", "verified", 2);
        m.event_rejected("signature");
        m.event_rejected("signature");
        m.ledger_appended(7);
        let text = m.encode();
        assert_eq!(
            line(&text, "metaloop_policy_match_ratio{").unwrap(),
            "metaloop_policy_match_ratio{policy=\"improve_success_rate\"} 0.5"
        );
        assert_eq!(
            line(&text, "metaloop_rollback_ratio ").unwrap(),
            "metaloop_rollback_ratio 0.25"
        );
        assert_eq!(
            line(&text, "metaloop_verdicts_total{outcome=\"verified\"").unwrap(),
            "metaloop_verdicts_total{outcome=\"verified\",method=\"metaloop\"} 2"
        );
        assert_eq!(
            line(&text, "metaloop_kpi{").unwrap(),
            "metaloop_kpi{domain=\"application\",kpi=\"overall_success_rate\"} 0.87"
        );
        assert_eq!(
            line(&text, "metaloop_directives{").unwrap(),
            "metaloop_directives{type=\"ADJUST_THRESHOLD\",status=\"verified\"} 2"
        );
        assert_eq!(
            line(&text, "metaloop_events_rejected_total{").unwrap(),
            "metaloop_events_rejected_total{reason=\"signature\"} 2"
        );
        assert_eq!(
            line(&text, "metaloop_ledger_appends_total ").unwrap(),
            "metaloop_ledger_appends_total 7"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn text_format_names_counters_by_their_series() {
        let m = Metrics::new();
        m.rollback();
        m.observe_cycle(Duration::from_millis(3));
        let text = m.encode_text();
        assert!(text.contains(
            "# HELP metaloop_rollbacks_total Rollbacks of directives carried out.\n\
             # TYPE metaloop_rollbacks_total counter\n\
             metaloop_rollbacks_total 1\n"
        ));
        assert!(text.contains("# TYPE metaloop_cycle_duration_seconds histogram\n"));
        assert!(!text.contains("# UNIT") && !text.contains("# EOF"));
        assert_eq!(m.render(None).0, TEXT_CONTENT_TYPE);
        assert_eq!(
            m.render(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            ))
            .0,
            CONTENT_TYPE
        );
    }

    #[test]
    fn missing_kpi_has_no_series() {
        let m = Metrics::new();
        m.set_kpi("security", "compliance_score", 97.0);
        assert!(m.encode().contains("kpi=\"compliance_score\""));
        m.set_kpi("security", "compliance_score", f64::NAN);
        assert!(!m.encode().contains("kpi=\"compliance_score\""));
    }

    #[test]
    fn checkpoint_age_appears_after_the_first_checkpoint() {
        let m = Metrics::new();
        assert!(
            !m.encode()
                .contains("metaloop_ledger_checkpoint_age_seconds ")
        );
        m.checkpoint_made(Timestamp::from_secs(1_767_225_600));
        let text = m.encode();
        let age: f64 = line(&text, "metaloop_ledger_checkpoint_age_seconds ")
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..60.0).contains(&age), "age {age}");
        assert!(text.contains("metaloop_ledger_checkpoint_timestamp_seconds 1767225600.0"));
    }
}
