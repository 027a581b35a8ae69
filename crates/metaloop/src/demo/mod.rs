//! `metaloop demo`: the whole loop, embedded — simulated spine, in-process delivery, SQLite
//! ledger — on virtual time.

pub mod report;

use anyhow::{Context, Result, bail};
use metaloop_core::directive::Status;
use metaloop_core::protocol::SpineEvent;
use metaloop_core::record::Entry;
use metaloop_core::supervisor::{Effect, NotificationKind};
use metaloop_core::time::Timestamp;
use metaloop_core::verify::Method;
use metaloop_core::{Supervisor, SupervisorConfig};
use metaloop_ledger::{LedgerStore, NewRecord, SqliteLedger};
use metaloop_sim::{Scenario, Spine};
use report::{
    ApprovalReport, CycleReport, DirectiveReport, Learning, LedgerReport, PlaybookLearning,
    PolicyLearning, Report, Totals, TruthReport, VerdictReport,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where the demo's virtual time starts.
pub const DEMO_START: &str = "2026-01-01T00:00:00Z";

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub scenario: Scenario,
    pub seed: u64,
    /// Run until this cycle.
    pub cycles: u64,
    /// Virtual time as fast as possible.
    pub fast: bool,
    /// Cycles per wall-clock second when not `fast`.
    pub speed: f64,
    pub method: Method,
    pub environment: String,
    pub auto_approve_as: Option<String>,
    /// Print each cycle's summary (to stdout in text mode, stderr in JSON mode).
    pub print_summaries: bool,
    pub summaries_to_stderr: bool,
}

impl DemoOptions {
    /// Defaults for a scenario and seed.
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        DemoOptions {
            scenario,
            seed,
            cycles: 24,
            fast: true,
            speed: 1.0,
            method: Method::Metaloop,
            environment: "production".into(),
            auto_approve_as: None,
            print_summaries: false,
            summaries_to_stderr: true,
        }
    }

    /// The supervisor configuration the demo runs with.
    pub fn supervisor_config(&self) -> SupervisorConfig {
        let mut cfg = SupervisorConfig {
            environment: self.environment.clone(),
            id_seed: self.seed,
            ..Default::default()
        };
        cfg.verification.method = self.method;
        cfg
    }
}

/// Where records go: the ledger, or memory for tests that do not need a file.
pub enum Sink {
    Ledger(Arc<SqliteLedger>),
    Memory(Vec<Entry>),
}

impl Sink {
    async fn append(&mut self, batch: Vec<Entry>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Ledger(l) => {
                let records = batch
                    .into_iter()
                    .map(|e| {
                        NewRecord::new(e.time.millis(), e.actor, e.action, e.resource, e.payload)
                    })
                    .collect();
                l.append(records).await.context("appending to the ledger")?;
            }
            Sink::Memory(v) => v.extend(batch),
        }
        Ok(())
    }

    async fn head(&self) -> Result<(u64, String)> {
        match self {
            Sink::Ledger(l) => {
                let head = l.head().await?;
                Ok(head.map_or((0, String::new()), |(seq, h)| {
                    (seq, metaloop_ledger::hex::encode(&h))
                }))
            }
            Sink::Memory(v) => Ok((v.len() as u64, String::new())),
        }
    }
}

/// The ledger file inside a data directory.
pub fn ledger_path(data: &std::path::Path) -> PathBuf {
    data.join("ledger.db")
}

/// Opens (creating) the demo's ledger in `data`, refusing one that already holds records.
pub async fn open_fresh_ledger(data: &std::path::Path) -> Result<Arc<SqliteLedger>> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let path = ledger_path(data);
    let ledger = SqliteLedger::open(&path)
        .await
        .with_context(|| format!("opening ledger {}", path.display()))?;
    let n = ledger.count().await?;
    if n > 0 {
        bail!(
            "{} already holds a ledger with {n} records; resuming a demo from its ledger is not built yet — use a new --data directory",
            data.display()
        );
    }
    Ok(Arc::new(ledger))
}

/// Runs the demo and returns its report. `stop` ends it early (Ctrl-C).
pub async fn run(opts: &DemoOptions, mut sink: Sink, stop: Arc<AtomicBool>) -> Result<Report> {
    let start = Timestamp::parse_rfc3339(DEMO_START).expect("valid start");
    let cfg = opts.supervisor_config();
    let mut sup = Supervisor::new(cfg.clone(), start)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let mut spine = Spine::new(opts.scenario, opts.seed, start);
    let mut events: Vec<SpineEvent> = Vec::new();
    let mut pending: Vec<Entry> = Vec::new();
    let mut cycles: Vec<CycleReport> = Vec::new();
    let mut alerts: Vec<serde_json::Value> = Vec::new();
    let mut current = CycleState::default();

    while sup.state().cycle < opts.cycles && !stop.load(Ordering::Relaxed) {
        let end = sup.next_cycle_at();
        events.clear();
        spine.run_until(end, &mut events);
        for e in &events {
            if let Err(err) = sup.ingest(e) {
                tracing::warn!(event = %e.id, error = %err, "event rejected");
            }
        }
        sup.tick(end);
        drain(
            &mut sup,
            &mut spine,
            &mut sink,
            &mut pending,
            &mut current,
            &mut alerts,
            opts,
            end,
        )
        .await?;
        // the simulated approver answers pending approvals right after the cycle
        if let Some(name) = &opts.auto_approve_as
            && spine.approver_present()
        {
            let ids: Vec<String> = sup
                .pending_approvals()
                .iter()
                .map(|d| d.directive.id.clone())
                .collect();
            for id in ids {
                let note = format!("approved by {name} (demo auto-approval)");
                if let Err(err) = sup.approve(&id, name, &note, end) {
                    tracing::info!(directive = %id, error = %err, "auto-approval not possible");
                }
            }
            drain(
                &mut sup,
                &mut spine,
                &mut sink,
                &mut pending,
                &mut current,
                &mut alerts,
                opts,
                end,
            )
            .await?;
        }
        sink.append(std::mem::take(&mut pending)).await?;
        if let Some(snap) = current.snapshot.take() {
            let directives = sup
                .state()
                .order
                .iter()
                .filter(|id| sup.state().directives[*id].directive.issued_cycle == snap.cycle)
                .cloned()
                .collect();
            cycles.push(CycleReport {
                directives,
                summary: current.summary.take().unwrap_or_default(),
                ..snap
            });
        }
        if !opts.fast {
            let wait = Duration::from_secs_f64(1.0 / opts.speed.max(1e-3));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => { stop.store(true, Ordering::Relaxed); }
            }
        }
    }
    sink.append(std::mem::take(&mut pending)).await?;

    let (records, head) = sink.head().await?;
    let path = match &sink {
        Sink::Ledger(l) => Some(l.path().display().to_string()),
        Sink::Memory(_) => None,
    };
    Ok(build_report(
        opts,
        &sup,
        &spine,
        cycles,
        alerts,
        LedgerReport {
            records,
            head,
            path,
        },
    ))
}

#[derive(Default)]
struct CycleState {
    snapshot: Option<CycleReport>,
    summary: Option<String>,
}

/// Carries out the supervisor's effects in order: records are flushed to the ledger before
/// any directive is published (decide → log → act); acks go straight back in.
#[allow(clippy::too_many_arguments)]
async fn drain(
    sup: &mut Supervisor,
    spine: &mut Spine,
    sink: &mut Sink,
    pending: &mut Vec<Entry>,
    current: &mut CycleState,
    alerts: &mut Vec<serde_json::Value>,
    opts: &DemoOptions,
    now: Timestamp,
) -> Result<()> {
    while let Some(effect) = sup.poll_effect() {
        match effect {
            Effect::Record(entry) => {
                match entry.action.as_str() {
                    "snapshot.built" => {
                        let snap = &entry.payload["snapshot"];
                        current.snapshot = Some(CycleReport {
                            cycle: snap["cycle"].as_u64().unwrap_or(0),
                            time: entry.time.to_rfc3339(),
                            snapshot_id: snap["id"].as_str().unwrap_or_default().to_string(),
                            global_kpis: serde_json::from_value(snap["global_kpis"].clone())
                                .unwrap_or_default(),
                            goal_gaps: serde_json::from_value(snap["goal_gaps"].clone())
                                .unwrap_or_default(),
                            directives: vec![],
                            summary: String::new(),
                        });
                    }
                    "cycle.summary" => {
                        current.summary = entry.payload["text"].as_str().map(str::to_string);
                    }
                    "alert.fired" | "alert.resolved" => {
                        alerts.push(serde_json::json!({
                            "time": entry.time.to_rfc3339(),
                            "action": entry.action,
                            "alert": entry.resource,
                            "details": entry.payload,
                        }));
                    }
                    _ => {}
                }
                pending.push(entry);
            }
            Effect::Publish(message) => {
                // decide → log → act: the records behind this directive are durable first
                sink.append(std::mem::take(pending)).await?;
                let ack = spine.deliver(&message, now);
                if let Err(err) = sup.ingest(&ack) {
                    tracing::warn!(directive = %message.directive_id, error = %err, "ack rejected");
                }
            }
            Effect::Notify(n) => {
                if opts.print_summaries && n.kind == NotificationKind::Summary {
                    if opts.summaries_to_stderr {
                        eprintln!("{}", n.text);
                    } else {
                        println!("{}", n.text);
                    }
                } else {
                    tracing::debug!(kind = ?n.kind, "{}", n.text);
                }
            }
        }
    }
    Ok(())
}

fn build_report(
    opts: &DemoOptions,
    sup: &Supervisor,
    spine: &Spine,
    cycles: Vec<CycleReport>,
    alerts: Vec<serde_json::Value>,
    ledger: LedgerReport,
) -> Report {
    let state = sup.state();
    let mut totals = Totals {
        events_ingested: sup.counters().accepted,
        events_rejected: sup.counters().rejected,
        alerts_fired: alerts
            .iter()
            .filter(|a| a["action"] == "alert.fired")
            .count(),
        ..Default::default()
    };
    let mut directives = Vec::new();
    for id in &state.order {
        let ds = &state.directives[id];
        let d = &ds.directive;
        totals.directives += 1;
        if ds.published_at.is_some() {
            totals.published += 1;
        }
        if d.rollback_of.is_some() {
            totals.rollbacks += 1;
        }
        match ds.status {
            Status::Verified => totals.verified += 1,
            Status::NoEffect => totals.no_effect += 1,
            Status::Degraded => totals.degraded += 1,
            Status::Inconclusive => totals.inconclusive += 1,
            Status::RolledBack => totals.rolled_back += 1,
            Status::Expired => totals.expired += 1,
            Status::Rejected => totals.rejected += 1,
            Status::Refused => totals.refused += 1,
            Status::PendingApproval => totals.pending_approval += 1,
            _ => {}
        }
        let verdict = ds.verdict.as_ref().map(|v| VerdictReport {
            method: v.method.as_str().into(),
            outcome: v.outcome.as_str().into(),
            p_value: v.p_value(),
            effect: v.target.effect,
            details: serde_json::to_value(v).unwrap_or_default(),
        });
        let truth = spine.truth(id).map(|t| TruthReport {
            effect: t.effect,
            harmful: t.harmful,
            details: serde_json::to_value(t).unwrap_or_default(),
        });
        directives.push(DirectiveReport {
            id: id.clone(),
            directive_type: d.directive_type.as_str().into(),
            policy_id: d.policy_id.clone(),
            target_domain: d.target_domain.clone(),
            knob: d.knob.clone(),
            action: serde_json::to_value(&d.action).unwrap_or_default(),
            target_kpi: d.target_kpi.clone(),
            impact: ds.effective_impact.as_str().into(),
            confidence: d.factors.confidence,
            confidence_factors: serde_json::to_value(d.factors).unwrap_or_default(),
            justification: d.justification.clone(),
            issued_cycle: d.issued_cycle,
            requires_approval: ds.requirement.approvals > 0,
            approvals_needed: ds.requirement.approvals,
            approvals: ds
                .approvals
                .iter()
                .map(|a| ApprovalReport {
                    approver: a.approver.clone(),
                    note: a.note.clone(),
                    time: a.at.to_rfc3339(),
                })
                .collect(),
            status: ds.status.as_str().into(),
            lifecycle: ds
                .lifecycle
                .iter()
                .map(|(s, t)| (s.as_str().to_string(), t.to_rfc3339()))
                .collect(),
            previous: ds.applied.as_ref().map(|a| a.previous.clone()),
            current: ds.applied.as_ref().map(|a| a.current.clone()),
            verdict,
            rollback_of: d.rollback_of.clone(),
            rolled_back_by: ds.rolled_back_by.clone(),
            truth,
        });
    }
    let learning = Learning {
        policies: state
            .policies
            .iter()
            .map(|(id, p)| {
                let t = p.track;
                (
                    id.clone(),
                    PolicyLearning {
                        verified: t.verified,
                        failed: t.failed,
                        inconclusive: t.inconclusive,
                        score: t.score(),
                    },
                )
            })
            .collect(),
        playbooks: state
            .playbook_record
            .iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    PlaybookLearning {
                        runs: c.all.trials,
                        success_rate: c.all.rate(),
                        autonomous_runs: c.autonomous.trials,
                        autonomous_success_rate: c.autonomous.rate(),
                    },
                )
            })
            .collect(),
    };
    Report {
        learning,
        scenario: opts.scenario.name().into(),
        seed: opts.seed,
        method: opts.method.as_str().into(),
        environment: opts.environment.clone(),
        auto_approve_as: opts.auto_approve_as.clone(),
        cycles,
        directives,
        alerts,
        totals,
        ledger,
    }
}
