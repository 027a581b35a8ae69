//! `metaloop demo`: the whole loop, embedded — simulated spine, in-process delivery, SQLite
//! ledger — on virtual time.

mod mesh_link;
pub mod report;

use crate::outln;
use crate::runtime::{NotificationSink, Publisher, RecordSink, Runtime};
use anyhow::{Context, Result};
use metaloop_core::directive::{DirectiveType, Status};
use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::protocol::SpineEvent;
use metaloop_core::record::Entry;
use metaloop_core::record::RecordBody;
use metaloop_core::supervisor::NotificationKind;
use metaloop_core::time::Timestamp;
use metaloop_core::verify::Method;
use metaloop_core::{Supervisor, SupervisorConfig};
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
    /// Goals, policies, approval matrix, verification and alert settings from a
    /// `metaloop.toml` (`--config`), instead of the defaults.
    pub base: Option<SupervisorConfig>,
    /// Run the simulated spine over NATS (`nats://…`) instead of in-process.
    pub mesh: Option<String>,
    /// Incident volume, daily cycle and bursts of the simulated spine.
    pub spine: metaloop_sim::SpineOptions,
    /// Shadow mode: every decision recorded as a would-have directive, nothing published.
    pub shadow: bool,
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
            base: None,
            mesh: None,
            spine: metaloop_sim::SpineOptions::default(),
            shadow: false,
        }
    }

    /// The supervisor configuration the demo runs with: `base` (from `--config`) or the
    /// defaults, with the demo's environment, seed and verification method.
    pub fn supervisor_config(&self) -> SupervisorConfig {
        let mut cfg = SupervisorConfig {
            environment: self.environment.clone(),
            id_seed: self.seed,
            ..self.base.clone().unwrap_or_default()
        };
        cfg.verification.method = self.method;
        cfg.shadow |= self.shadow;
        // the simulated spine has a daily cycle below high volume; at high it has none, and
        // comparing before and after directly is sound
        if self.base.is_none() && !self.spine.diurnal {
            cfg.verification.seasonality = metaloop_core::verify::Seasonality::None;
        }
        cfg
    }
}

/// Where records go: the ledger, or memory for tests that do not need a file.
#[derive(Clone)]
pub enum Sink {
    Ledger(crate::store::OpenLedger),
    Memory(Arc<std::sync::Mutex<Vec<Entry>>>),
}

impl Sink {
    async fn append(&mut self, batch: Vec<Entry>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Ledger(l) => {
                let records = batch.into_iter().map(crate::store::new_record).collect();
                l.writer
                    .append_batch(records)
                    .await
                    .context("appending to the ledger")?;
            }
            Sink::Memory(v) => v
                .lock()
                .map_err(|_| anyhow::anyhow!("record store poisoned"))?
                .extend(batch),
        }
        Ok(())
    }

    async fn head(&self) -> Result<(u64, String)> {
        match self {
            Sink::Ledger(l) => {
                let head = l.store.head().await?;
                Ok(head.map_or((0, String::new()), |(seq, h)| {
                    (seq, metaloop_ledger::hex::encode(&h))
                }))
            }
            Sink::Memory(v) => Ok((v.lock().map(|v| v.len()).unwrap_or(0) as u64, String::new())),
        }
    }
}

/// The ledger file inside a data directory.
pub fn ledger_path(data: &std::path::Path) -> PathBuf {
    data.join("ledger.db")
}

/// Opens (creating) the demo's ledger — `ledger` (a `sqlite://PATH` or `postgres://…` URL)
/// if given, else `ledger.db` in `data` — with the supervisor's key in `data`
/// (`supervisor.key`, created with mode 0600; its public half in `supervisor.pub`) signing a
/// checkpoint every 1,000 records, every minute and at the end.
pub async fn open_ledger(
    data: &std::path::Path,
    ledger: Option<&str>,
) -> Result<crate::store::OpenLedger> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let location = match ledger {
        Some(url) => crate::store::LedgerLocation::parse(url),
        None => crate::store::LedgerLocation::Sqlite(ledger_path(data)),
    };
    crate::store::open_for_supervisor(
        &location,
        &data.join("supervisor.key"),
        metaloop_ledger::DEFAULT_CHECKPOINT_EVERY,
        metaloop_ledger::DEFAULT_CHECKPOINT_INTERVAL,
        |cp| tracing::info!(seq = cp.seq, key = %cp.key_id, "signed ledger checkpoint"),
    )
    .await
}

/// The demo's own record: what is being run, so a resume can check it is the same run.
pub const DEMO_ACTOR: &str = "metaloop-demo";
const DEMO_STARTED: &str = "demo.started";

/// Why a demo could not start: the data directory holds a different run (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResumeMismatch(pub String);

fn demo_identity(opts: &DemoOptions) -> serde_json::Value {
    let mut id = serde_json::json!({
        "scenario": opts.scenario.name(),
        "seed": opts.seed,
        "method": opts.method.as_str(),
        "environment": opts.environment,
        "auto_approve_as": opts.auto_approve_as,
        "config": opts.base.as_ref().map(|c| {
            use sha2::{Digest, Sha256};
            let text = serde_json::to_string(c).unwrap_or_default();
            Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
        }),
    });
    if opts.shadow {
        id["shadow"] = serde_json::json!(true);
    }
    // ledgers written before volumes existed ran the default spine
    if opts.spine != metaloop_sim::SpineOptions::default() {
        id["spine"] = serde_json::json!({
            "incidents_per_hour": opts.spine.volume.incidents_per_hour(),
            "diurnal": opts.spine.diurnal,
            "bursts": opts.spine.bursts,
        });
    }
    id
}

impl Sink {
    async fn read_all(&self) -> Result<Vec<Entry>> {
        match self {
            Sink::Memory(v) => Ok(v.lock().map(|v| v.clone()).unwrap_or_default()),
            Sink::Ledger(l) => {
                let records = l.store.read_all().await.context("reading the ledger")?;
                Ok(records
                    .into_iter()
                    .map(|r| Entry {
                        time: Timestamp(r.time_ms),
                        actor: r.actor,
                        action: r.action,
                        resource: r.resource,
                        payload: r.payload.into(),
                    })
                    .collect())
            }
        }
    }
}

/// The simulated spine's ground truth per directive id, as the dashboard shows it.
pub type TruthBook = Arc<std::sync::RwLock<std::collections::BTreeMap<String, serde_json::Value>>>;

/// Serving the API during a demo.
#[derive(Clone)]
pub struct DemoApi {
    pub listen: std::net::SocketAddr,
    pub tokens: Arc<crate::api::auth::Tokens>,
}

/// Records go to the sink; snapshots are also kept for the API, and the history for the
/// dashboard.
struct DemoRecords {
    sink: Sink,
    snapshots: crate::api::SnapshotCache,
    history: crate::history::History,
}

impl RecordSink for DemoRecords {
    fn append(&mut self, entries: Vec<Entry>) -> crate::runtime::BoxFuture<Result<()>> {
        let mut sink = self.sink.clone();
        let snapshots = self.snapshots.clone();
        let history = self.history.clone();
        Box::pin(async move {
            let snaps: Vec<serde_json::Value> = entries
                .iter()
                .filter(|e| e.action == "snapshot.built")
                .map(|e| e.payload["snapshot"].clone())
                .collect();
            let observed: Vec<Entry> = entries
                .iter()
                .filter(|e| crate::history::History::wants(&e.action))
                .cloned()
                .collect();
            sink.append(entries).await?;
            for e in &observed {
                history.observe(e.time, &e.action, &e.resource, &e.payload);
            }
            if let Ok(mut cache) = snapshots.lock() {
                for s in snaps {
                    cache.push_back(s);
                    while cache.len() > 288 {
                        cache.pop_front();
                    }
                }
            }
            Ok(())
        })
    }
}

/// Directives go to the simulated spine through a channel the demo loop drains.
struct DemoPublisher(tokio::sync::mpsc::UnboundedSender<DirectiveMessage>);

impl Publisher for DemoPublisher {
    fn publish(&mut self, message: DirectiveMessage) -> crate::runtime::BoxFuture<Result<()>> {
        let r = self
            .0
            .send(message)
            .map_err(|_| anyhow::anyhow!("the simulated spine has stopped"));
        Box::pin(async move { r })
    }
}

/// Directives go to the spine in-process or over the bus.
enum AnyPublisher {
    Local(DemoPublisher),
    Mesh(mesh_link::MeshDirectivePublisher),
}

impl Publisher for AnyPublisher {
    fn publish(&mut self, message: DirectiveMessage) -> crate::runtime::BoxFuture<Result<()>> {
        match self {
            AnyPublisher::Local(p) => p.publish(message),
            AnyPublisher::Mesh(p) => p.publish(message),
        }
    }
}

/// Summaries are printed; other notifications are logged.
struct DemoNotifier {
    print: bool,
    to_stderr: bool,
}

impl NotificationSink for DemoNotifier {
    fn notify(&mut self, n: metaloop_core::supervisor::Notification) {
        if self.print && n.kind == NotificationKind::Summary {
            if self.to_stderr {
                eprintln!("{}", n.text);
            } else {
                outln!("{}", n.text);
            }
        } else {
            tracing::info!(kind = ?n.kind, "{}", n.text);
        }
    }
}

/// Delivers every directive published so far to the spine and feeds the acks back.
async fn deliver(
    rt: &Runtime,
    spine: &mut Spine,
    published: &mut tokio::sync::mpsc::UnboundedReceiver<DirectiveMessage>,
    now: Timestamp,
) -> Result<()> {
    while let Ok(message) = published.try_recv() {
        let ack = spine.deliver(&message, now);
        let id = message.directive_id.clone();
        let r = rt.call(move |sup| sup.ingest(&ack)).await?;
        if let Err(err) = r {
            tracing::warn!(directive = %id, error = %err, "ack rejected");
        }
    }
    Ok(())
}

/// Delivers directives in-process or over the bus.
async fn deliver_any(
    rt: &Runtime,
    spine: &mut Spine,
    published: &mut tokio::sync::mpsc::UnboundedReceiver<DirectiveMessage>,
    link: &mut Option<mesh_link::MeshLink>,
    now: Timestamp,
) -> Result<()> {
    match link {
        Some(l) => l.deliver_directives(spine, now).await,
        None => deliver(rt, spine, published, now).await,
    }
}

/// Runs the demo and returns its report. `stop` ends it early (Ctrl-C). A sink that already
/// holds records of the same run (same scenario, seed, method, environment and approver) is
/// resumed: the supervisor's state is rebuilt from its records and the simulated spine is
/// replayed to the same point, with the directives it had received. With `api`, the HTTP API
/// is served while it runs (approvals given there are applied at the demo's virtual time).
pub async fn run(
    opts: &DemoOptions,
    sink: Sink,
    stop: Arc<AtomicBool>,
    api: Option<DemoApi>,
) -> Result<Report> {
    let start = Timestamp::parse_rfc3339(DEMO_START).expect("valid start");
    let cfg = opts.supervisor_config();
    let mut spine = Spine::with_options(opts.scenario, opts.seed, start, &opts.spine);
    let mut events: Vec<SpineEvent> = Vec::new();
    let existing = sink.read_all().await?;
    let mut sink = sink;
    let sup = if existing.is_empty() {
        sink.append(vec![Entry {
            time: start,
            actor: DEMO_ACTOR.into(),
            action: DEMO_STARTED.into(),
            resource: "demo".into(),
            payload: demo_identity(opts).into(),
        }])
        .await?;
        Supervisor::new(cfg, start).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?
    } else {
        resume(opts, cfg, &existing, &mut spine, &mut events)?
    };
    let snapshots: crate::api::SnapshotCache = Default::default();
    let history = crate::history::History::new();
    history.observe_all(existing.iter().map(|e| {
        (
            e.time,
            e.action.as_str(),
            e.resource.as_str(),
            e.payload.value(),
        )
    }));
    let truth: TruthBook = Default::default();
    let mut truths_known = 0;
    let (tx, mut published) = tokio::sync::mpsc::unbounded_channel();
    let metrics = api
        .as_ref()
        .map(|_| Arc::new(crate::metrics::Metrics::new()));
    let clock = Arc::new(std::sync::atomic::AtomicI64::new(start.millis()));
    let mut link = match &opts.mesh {
        None => None,
        Some(url) => {
            if !existing.is_empty() {
                anyhow::bail!(
                    "resuming a demo over the mesh is not supported: resume it without --mesh"
                );
            }
            Some(mesh_link::MeshLink::connect(url, &spine.domains()).await?)
        }
    };
    let publisher = match &link {
        Some(l) => AnyPublisher::Mesh(l.publisher(clock.clone())),
        None => AnyPublisher::Local(DemoPublisher(tx)),
    };
    let (rt, task) = Runtime::start_observed(
        sup,
        DemoRecords {
            sink: sink.clone(),
            snapshots: snapshots.clone(),
            history: history.clone(),
        },
        publisher,
        DemoNotifier {
            print: opts.print_summaries,
            to_stderr: opts.summaries_to_stderr,
        },
        metrics.clone().map(crate::metrics::MetricsObserver),
    )
    .await?;
    if let Some(l) = &mut link {
        l.start_consumer(rt.clone(), clock.clone()).await?;
    }
    let server = match (&api, &sink) {
        (Some(api), Sink::Ledger(ledger)) => {
            let c = clock.clone();
            let state = crate::api::ApiState {
                runtime: rt.clone(),
                tokens: api.tokens.clone(),
                ledger: ledger.store.clone(),
                snapshots,
                ingest: None,
                clock: Arc::new(move || Timestamp(c.load(Ordering::Relaxed))),
                metrics: metrics.clone(),
                history: history.clone(),
                truth: Some(truth.clone()),
                checkpoint_key: metaloop_ledger::keys::load_public_key(&ledger.public_key_file)
                    .ok(),
                role: Default::default(),
                reload: None,
                drive_clock: None,
            };
            let listener = tokio::net::TcpListener::bind(api.listen)
                .await
                .with_context(|| format!("listening on {}", api.listen))?;
            eprintln!("API and dashboard on http://{}", listener.local_addr()?);
            let app = crate::api::router(state);
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
        _ => None,
    };

    let mut now = rt
        .call(|sup| sup.state().last_cycle_end)
        .await?
        .unwrap_or(start);
    clock.store(now.millis(), Ordering::Relaxed);
    if !existing.is_empty() {
        // a resumed run first finishes what the interrupted one had decided but not carried out
        let unacked: Vec<DirectiveMessage> = rt
            .call(|sup| {
                let st = sup.state();
                st.order
                    .iter()
                    .map(|id| &st.directives[id])
                    .filter(|d| {
                        d.status == Status::Published
                            && d.directive.directive_type != DirectiveType::RequestReview
                    })
                    .map(|d| d.directive.message())
                    .collect()
            })
            .await?;
        for message in unacked {
            let ack = spine.deliver(&message, now);
            rt.call(move |sup| sup.ingest(&ack).ok()).await?;
        }
        auto_approve(&rt, &spine, opts, now).await?;
        deliver(&rt, &mut spine, &mut published, now).await?;
    }

    while rt.call(|sup| sup.state().cycle).await? < opts.cycles && !stop.load(Ordering::Relaxed) {
        // directives approved through the API since the last cycle reach the spine first
        deliver_any(&rt, &mut spine, &mut published, &mut link, now).await?;
        let end = rt.call(|sup| sup.next_cycle_at()).await?;
        events.clear();
        spine.run_until(end, &mut events);
        let batch = std::mem::take(&mut events);
        events = match &mut link {
            // over the bus: the cycle closes once the supervisor has taken every event
            Some(l) => {
                l.send_events(&batch).await?;
                l.wait_processed().await?;
                rt.call(move |sup| sup.tick(end)).await?;
                batch
            }
            None => {
                rt.call(move |sup| {
                    for e in &batch {
                        if let Err(err) = sup.ingest(e) {
                            tracing::warn!(event = %e.id, error = %err, "event rejected");
                        }
                    }
                    sup.tick(end);
                    batch
                })
                .await?
            }
        };
        now = end;
        clock.store(now.millis(), Ordering::Relaxed);
        // decide → log → act: the cycle's records were durable before any of its directives
        // reached the publisher; now they reach the spine
        deliver_any(&rt, &mut spine, &mut published, &mut link, now).await?;
        // the simulated approver answers pending approvals right after the cycle
        auto_approve(&rt, &spine, opts, now).await?;
        deliver_any(&rt, &mut spine, &mut published, &mut link, now).await?;
        if api.is_some() {
            truths_known = share_truths(&spine, &truth, truths_known);
        }
        if !opts.fast {
            let wait = Duration::from_secs_f64(1.0 / opts.speed.max(1e-3));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => { stop.store(true, Ordering::Relaxed); }
            }
        }
    }
    deliver_any(&rt, &mut spine, &mut published, &mut link, now).await?;
    if let Some(l) = link.take() {
        l.close().await;
    }
    if let Some(server) = server {
        server.abort();
        let _ = server.await;
    }
    drop(rt);
    let sup = task.await.context("the supervisor task failed")?;
    let mut checkpoints = 0;
    if let Sink::Ledger(l) = &sink {
        // the final checkpoint signs everything this run wrote
        l.writer
            .clone()
            .shutdown()
            .await
            .context("closing the ledger")?;
        checkpoints = l.store.checkpoints(0, u32::MAX).await?.len() as u64;
    }
    let entries = sink.read_all().await?;
    let (records, head) = sink.head().await?;
    if let Sink::Ledger(l) = &sink {
        l.store.close().await;
    }
    let path = match &sink {
        Sink::Ledger(l) => Some(l.location.clone()),
        Sink::Memory(_) => None,
    };
    Ok(build_report(
        opts,
        &sup,
        &spine,
        &entries,
        LedgerReport {
            records,
            head,
            path,
            checkpoints,
        },
    ))
}

/// Copies the truths the spine learned since `known` into the book; returns how many it has.
fn share_truths(spine: &Spine, book: &TruthBook, known: usize) -> usize {
    let new: Vec<(String, serde_json::Value)> = spine
        .truths()
        .skip(known)
        .map(|t| {
            (
                t.directive_id.clone(),
                serde_json::to_value(t).unwrap_or_default(),
            )
        })
        .collect();
    let n = known + new.len();
    if !new.is_empty() {
        book.write().unwrap_or_else(|e| e.into_inner()).extend(new);
    }
    n
}

/// Rebuilds the supervisor from the records and brings the simulated spine to the same point.
fn resume(
    opts: &DemoOptions,
    cfg: metaloop_core::SupervisorConfig,
    existing: &[Entry],
    spine: &mut Spine,
    scratch: &mut Vec<SpineEvent>,
) -> Result<Supervisor> {
    let identity = existing
        .iter()
        .find(|e| e.action == DEMO_STARTED)
        .map(|e| e.payload.value().clone())
        .ok_or_else(|| ResumeMismatch("the data directory's ledger was not written by `metaloop demo`; use a new --data directory".into()))?;
    let wanted = demo_identity(opts);
    if identity != wanted {
        return Err(ResumeMismatch(format!(
            "the data directory holds a different demo run ({identity}); resume it with the same options or use a new --data directory (asked for {wanted})"
        ))
        .into());
    }
    let mut records = Vec::new();
    for e in existing.iter().filter(|e| e.actor != DEMO_ACTOR) {
        let body = RecordBody::from_entry(&e.action, &e.payload)
            .with_context(|| format!("decoding the {} record at {}", e.action, e.time))?;
        records.push((e.time, body));
    }
    // replay the spine: every directive it was sent, at the time it was sent
    for (t, body) in &records {
        if let RecordBody::Published { message, .. } = body
            && message.directive_type != DirectiveType::RequestReview.as_str()
        {
            scratch.clear();
            spine.run_until(*t, scratch);
            spine.deliver(message, *t);
        }
    }
    let state =
        metaloop_core::supervisor::State::replay(&cfg, records.iter().map(|(t, r)| (*t, r)));
    let resume_at = state.last_cycle_end.unwrap_or(state.started_at);
    scratch.clear();
    spine.run_until(resume_at, scratch);
    scratch.clear();
    eprintln!(
        "resuming after cycle {} ({} records)",
        state.cycle,
        existing.len()
    );
    Supervisor::restore(cfg, &records, resume_at)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

async fn auto_approve(
    rt: &Runtime,
    spine: &Spine,
    opts: &DemoOptions,
    now: Timestamp,
) -> Result<()> {
    let Some(name) = opts.auto_approve_as.clone() else {
        return Ok(());
    };
    if !spine.approver_present() {
        return Ok(());
    }
    rt.call(move |sup| {
        let ids: Vec<String> = sup
            .pending_approvals()
            .iter()
            .map(|d| d.directive.id.clone())
            .collect();
        for id in ids {
            let note = format!("approved by {name} (demo auto-approval)");
            if let Err(err) = sup.approve(&id, &name, &note, now) {
                tracing::info!(directive = %id, error = %err, "auto-approval not possible");
            }
        }
    })
    .await?;
    Ok(())
}

/// The per-cycle part of the report, read back from the records.
fn cycle_reports(
    sup: &Supervisor,
    entries: &[Entry],
) -> (Vec<CycleReport>, Vec<serde_json::Value>) {
    let mut cycles: Vec<CycleReport> = Vec::new();
    let mut alerts = Vec::new();
    for entry in entries {
        match entry.action.as_str() {
            "snapshot.built" => {
                let snap = &entry.payload["snapshot"];
                let cycle = snap["cycle"].as_u64().unwrap_or(0);
                let directives = sup
                    .state()
                    .order
                    .iter()
                    .filter(|id| sup.state().directives[*id].directive.issued_cycle == cycle)
                    .cloned()
                    .collect();
                cycles.push(CycleReport {
                    cycle,
                    time: entry.time.to_rfc3339(),
                    snapshot_id: snap["id"].as_str().unwrap_or_default().to_string(),
                    global_kpis: serde_json::from_value(snap["global_kpis"].clone())
                        .unwrap_or_default(),
                    goal_gaps: serde_json::from_value(snap["goal_gaps"].clone())
                        .unwrap_or_default(),
                    directives,
                    summary: String::new(),
                });
            }
            "cycle.summary" => {
                let cycle = entry.payload["cycle"].as_u64();
                if let Some(c) = cycles.iter_mut().rev().find(|c| Some(c.cycle) == cycle) {
                    c.summary = entry.payload["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
            }
            "alert.fired" | "alert.resolved" => alerts.push(serde_json::json!({
                "time": entry.time.to_rfc3339(),
                "action": entry.action,
                "alert": entry.resource,
                "details": entry.payload,
            })),
            _ => {}
        }
    }
    (cycles, alerts)
}

fn build_report(
    opts: &DemoOptions,
    sup: &Supervisor,
    spine: &Spine,
    entries: &[Entry],
    ledger: LedgerReport,
) -> Report {
    let (cycles, alerts) = cycle_reports(sup, entries);
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
        if d.shadow {
            totals.shadow += 1;
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
            shadow: d.shadow,
            experiment: d
                .experiment
                .map(|e| serde_json::to_value(e).unwrap_or_default()),
            promoted_from: d.promoted_from.clone(),
            refused_reason: ds.refused_reason.clone(),
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
