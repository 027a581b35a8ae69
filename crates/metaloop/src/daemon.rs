//! `metaloop run --config metaloop.toml`: the supervisor against a real spine. Signed events
//! arrive on the mesh (and `POST /v1/events`); directives leave on it, signed; the ledger,
//! the API, notifications and metrics run alongside; SIGTERM stops it gracefully, SIGHUP
//! reloads the adapters.
//!
//! The daemon runs in phases: **load** (configuration, ledger, mesh, API), **elect** (a
//! replica waits as a standby, tailing the ledger, until it holds the lease; a supervisor
//! running alone leads at once), **recover** (take over the state, re-send what was
//! published and never acknowledged), **serve** (cycles, events, lease renewals) and
//! **stop**. A leader that loses its lease goes back to elect as a standby.

use crate::api::{ApiError, ApiState, EventIngest, Reload};
use crate::config::{FileConfig, NotifyEntry, NotifyKind};
use crate::ha::{LeaderView, RoleCell};
use crate::ingest_journal::IngestJournal;
use crate::metrics::{Metrics, MetricsObserver};
use crate::notify::{Message as NoteMessage, Notifier};
use crate::runtime::{BoxFuture, Publisher, RecordSink, Runtime};
use crate::store::LedgerLocation;
use anyhow::{Context, Result, anyhow};
use metaloop_core::Supervisor;
use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::record::{Entry, Payload, RecordBody};
use metaloop_core::time::Timestamp;
use metaloop_ledger::{Acquired, Lease, LedgerStore, LedgerWriter, PgLedger};
use metaloop_mesh::mesh::MemoryConfig;
use metaloop_mesh::{
    Delivery, EventSigner, IngestOutcome, Ingestor, KeyRegistry, MemoryMesh, Mesh, NatsMesh,
    RejectReason, Rejection, SubjectPattern, SubjectPrefix, SubscribeOptions,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::clock::Clock;
pub use crate::clock::wall_clock;

/// The durable consumer's name on the mesh: one for every replica (only the leader reads)
/// and its ingest workers.
use crate::workers::CONSUMER;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records go through the group-commit writer; snapshots are also kept for the API, and the
/// history for the dashboard.
struct WriterRecords {
    writer: LedgerWriter,
    views: Views,
}

/// What the API and the dashboard read besides the supervisor: recent snapshots and every
/// cycle's history. Fed by the leader's appends and by a standby's tail alike.
#[derive(Clone)]
struct Views {
    snapshots: crate::api::SnapshotCache,
    history: crate::history::History,
}

impl Views {
    /// Forgets everything, before the ledger is read again from its start.
    fn clear(&self) {
        self.history.clear();
        if let Ok(mut cache) = self.snapshots.lock() {
            cache.clear();
        }
    }

    fn observe(&self, time: Timestamp, action: &str, resource: &str, payload: &serde_json::Value) {
        if crate::history::History::wants(action) {
            self.history.observe(time, action, resource, payload);
        }
        if action == "snapshot.built"
            && let Ok(mut cache) = self.snapshots.lock()
        {
            cache.push_back(payload["snapshot"].clone());
            while cache.len() > 288 {
                cache.pop_front();
            }
        }
    }
}

impl RecordSink for WriterRecords {
    fn append(&mut self, entries: Vec<Entry>) -> BoxFuture<Result<()>> {
        let writer = self.writer.clone();
        let views = self.views.clone();
        Box::pin(async move {
            // the payloads' JSON values are shared with the records' (built once)
            let seen: Vec<(Timestamp, String, String, Payload)> = entries
                .iter()
                .filter(|e| {
                    e.action == "snapshot.built" || crate::history::History::wants(&e.action)
                })
                .map(|e| {
                    (
                        e.time,
                        e.action.clone(),
                        e.resource.clone(),
                        e.payload.clone(),
                    )
                })
                .collect();
            let batch = entries.into_iter().map(crate::store::new_record).collect();
            writer
                .append_batch(batch)
                .await
                .map_err(|e| anyhow!("appending to the ledger: {e}"))?;
            for (t, action, resource, payload) in &seen {
                views.observe(*t, action, resource, payload.value());
            }
            Ok(())
        })
    }
}

/// A standby's supervisor never records: it only follows the leader's records.
struct NoRecords;

impl RecordSink for NoRecords {
    fn append(&mut self, entries: Vec<Entry>) -> BoxFuture<Result<()>> {
        let n = entries.len();
        Box::pin(async move {
            Err(anyhow!(
                "a standby does not append ({n} records refused): only the leader records"
            ))
        })
    }
}

/// A standby publishes nothing.
struct NoPublish;

impl Publisher for NoPublish {
    fn publish(&mut self, m: DirectiveMessage) -> BoxFuture<Result<()>> {
        Box::pin(async move { Err(anyhow!("a standby does not publish {}", m.directive_id)) })
    }
}

/// A standby notifies nobody.
struct NoNotes;

impl crate::runtime::NotificationSink for NoNotes {
    fn notify(&mut self, _: metaloop_core::supervisor::Notification) {}
}

/// Directives leave as signed `meta.directive.<type>` CloudEvents on the mesh. A failed
/// publish is tried again with backoff, under the same id, while this replica leads.
#[derive(Clone)]
struct MeshPublisher {
    mesh: Arc<dyn Mesh>,
    signer: Arc<EventSigner>,
    leading: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

impl MeshPublisher {
    async fn send(&self, message: &DirectiveMessage) -> Result<()> {
        let event = metaloop_mesh::directive_event(message, &self.signer, self.clock.now())
            .map_err(|e| anyhow!("signing directive {}: {e}", message.directive_id))?;
        metaloop_mesh::mesh::publish_event(self.mesh.as_ref(), &event)
            .await
            .map_err(|e| anyhow!("publishing directive {}: {e}", message.directive_id))?;
        Ok(())
    }
}

/// Backoff of publish retries: 1 s doubling to at most a minute.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Publish attempts before a directive is left to the ack timeout (and its alert).
const RETRY_ATTEMPTS: u32 = 12;

impl Publisher for MeshPublisher {
    fn publish(&mut self, message: DirectiveMessage) -> BoxFuture<Result<()>> {
        let me = self.clone();
        Box::pin(async move { me.send(&message).await })
    }

    fn retry(&mut self, message: DirectiveMessage) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut wait = RETRY_FIRST;
            for attempt in 2..=RETRY_ATTEMPTS {
                tokio::time::sleep(wait).await;
                if !me.leading.load(Ordering::SeqCst) {
                    tracing::info!(directive = %message.directive_id, "no longer leading: the next leader re-sends it");
                    return;
                }
                match me.send(&message).await {
                    Ok(()) => {
                        me.metrics.directive_resent();
                        tracing::info!(directive = %message.directive_id, attempt, "directive published on retry");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(directive = %message.directive_id, attempt, error = %e, "publishing a directive failed again")
                    }
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
            tracing::error!(directive = %message.directive_id, "directive not published after {RETRY_ATTEMPTS} attempts; its ack timeout will alert");
        });
    }
}

/// The daemon's one ingest path, for the mesh, `POST /v1/events` and ingest workers' partials
/// alike: one pipeline (so one dedupe window), the supervisor as the last check, the journal
/// behind the events it takes itself.
struct Intake {
    ingestor: Arc<Mutex<Ingestor>>,
    journal: Mutex<IngestJournal>,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    /// The stream sequences folded into the open cycle (recorded when it closes).
    folded: Arc<Mutex<std::collections::HashSet<u64>>>,
    /// The events ingest workers' partials brought into the open cycle.
    open_keys: Arc<Mutex<crate::workers::OpenKeys>>,
    /// The stream the mesh deliveries come from.
    stream: String,
    /// This leader's term, unique to this run of this replica.
    term: String,
    clock: Clock,
    /// Where ingest workers hear this leader (the NATS client and the workers' subject).
    workers: Option<(async_nats::Client, String)>,
}

impl Intake {
    /// Tells the ingest workers this leader's term, the cycles closed and its clock; returns
    /// once the server has it.
    async fn announce(&self, closed: u64, now: Timestamp) {
        if let Some((client, subject)) = &self.workers {
            crate::workers::announce_closed(
                client,
                subject,
                crate::workers::Closed {
                    term: self.term.clone(),
                    closed,
                    now_ms: Some(now.millis()),
                },
            )
            .await;
        }
    }

    /// Checks a message, folds what passes into the supervisor and journals it (not yet
    /// synced), and counts every result. A mesh delivery (`stream`, `seq`) already folded
    /// is skipped.
    async fn take(
        self: &Arc<Self>,
        body: &[u8],
        content_type: Option<&str>,
        delivery: Option<(String, u64)>,
    ) -> Result<Taken, crate::runtime::RuntimeError> {
        // signatures are checked off the supervisor's task
        let verified = lock(&self.ingestor).verify(body, content_type);
        let me = self.clone();
        let outcome = self
            .runtime
            .call(move |sup| {
                if let Some((stream, seq)) = &delivery {
                    if sup.state().was_folded(stream, *seq) {
                        return Taken::InClosedCycle;
                    }
                    if lock(&me.folded).contains(seq) {
                        return Taken::InOpenCycle;
                    }
                }
                let mut ingestor = lock(&me.ingestor);
                let mut journal = lock(&me.journal);
                let open_keys = lock(&me.open_keys);
                let now = me.clock.now();
                let outcome = ingestor.admit(verified, now, &mut |ev| {
                    if open_keys
                        .keys
                        .contains_key(&metaloop_mesh::ingest::event_key(&ev.source, &ev.id))
                    {
                        return Err("already taken in this cycle through an ingest worker".into());
                    }
                    // the cycle the event is folded into: after this many closed cycles
                    let cycle = sup.state().cycle;
                    sup.ingest(ev).map_err(|e| e.to_string())?;
                    journal.record(now, cycle, ev);
                    Ok(())
                });
                // recorded with the cycle its events went into
                if let Some((_, seq)) = delivery {
                    lock(&me.folded).insert(seq);
                }
                Taken::Folded(outcome)
            })
            .await?;
        let Taken::Folded(folded) = &outcome else {
            return Ok(outcome);
        };
        for r in folded.results() {
            match r {
                Ok(_) => self.metrics.event_ingested(),
                Err(rej) => {
                    self.metrics.event_rejected(rej.reason.as_str());
                    tracing::warn!(reason = rej.reason.as_str(), source = ?rej.source, id = ?rej.id, "event rejected: {}", rej.message);
                }
            }
        }
        Ok(outcome)
    }

    /// Makes the journal durable.
    async fn sync(self: &Arc<Self>) -> Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || lock(&me.journal).sync())
            .await
            .map_err(|e| anyhow!("syncing the ingest journal: {e}"))?
    }

    /// A cycle closed with `closed` cycles behind it: the journal forgets what the ledger now
    /// holds and is synced, so the cycle's deliveries may be acknowledged.
    async fn cycle_closed(self: &Arc<Self>, closed: u64) -> Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut ingestor = lock(&me.ingestor);
            // workers' events of the closed cycles are durable now: remembered from here on,
            // across a restart too
            let durable = lock(&me.open_keys).take_closed(closed);
            let mut journal = lock(&me.journal);
            for (key, at) in durable {
                if ingestor.dedupe_mut().insert_key(key, Timestamp(at)) {
                    journal.record_digest(Timestamp(at), key);
                }
            }
            journal.cycle_closed(closed, ingestor.dedupe())?;
            journal.sync()
        })
        .await
        .map_err(|e| anyhow!("compacting the ingest journal: {e}"))?
    }
}

/// What became of a message the intake took.
enum Taken {
    /// Checked, and what passed folded into the open cycle.
    Folded(IngestOutcome),
    /// A delivery a closed cycle folded: durable, it may be acknowledged.
    InClosedCycle,
    /// A delivery delivered again while its first copy waits in the open cycle: it is
    /// acknowledged with the cycle, not before (a failover before then delivers it again).
    InOpenCycle,
}

/// Ingest workers' partials, merged into the open cycle unless they hold a delivery or an
/// event the leader already has (then nothing is merged and the reply names them).
struct PartialIntake(Arc<Intake>);

impl crate::workers::PartialSink for PartialIntake {
    fn merge(
        &self,
        request: crate::workers::PartialRequest,
    ) -> crate::runtime::BoxFuture<crate::workers::PartialReply> {
        use crate::workers::PartialReply;
        let me = self.0.clone();
        Box::pin(async move {
            let term = me.term.clone();
            let intake = me.clone();
            let metrics = me.metrics.clone();
            let n = request.keys.len() as u64;
            let reply = me
                .runtime
                .call(move |sup| {
                    let me = intake;
                    let now = me.clock.now();
                    let open = sup.state().cycle;
                    // the ingestor first, as every other holder of these locks takes it
                    let mut ingestor = lock(&me.ingestor);
                    let mut folded = lock(&me.folded);
                    let mut open_keys = lock(&me.open_keys);
                    let same_stream = request.stream == me.stream;
                    let (mut seqs_closed, mut seqs_open) = (Vec::new(), Vec::new());
                    for &seq in &request.seqs {
                        if same_stream && sup.state().was_folded(&me.stream, seq) {
                            seqs_closed.push(seq);
                        } else if same_stream && folded.contains(&seq) {
                            seqs_open.push(seq);
                        }
                    }
                    let (mut keys_closed, mut keys_open) = (Vec::new(), Vec::new());
                    for &(key, _) in &request.keys {
                        if open_keys.keys.contains_key(&key.0) {
                            keys_open.push(key);
                        } else if ingestor.dedupe_mut().contains_key(key.0, now) {
                            keys_closed.push(key);
                        }
                    }
                    if !(seqs_closed.is_empty()
                        && seqs_open.is_empty()
                        && keys_closed.is_empty()
                        && keys_open.is_empty())
                    {
                        return PartialReply::Refused {
                            term: me.term.clone(),
                            open,
                            seqs_closed,
                            seqs_open,
                            keys_closed,
                            keys_open,
                            now_ms: Some(now.millis()),
                        };
                    }
                    let merged = sup.merge_partial(&request.partial);
                    if same_stream {
                        folded.extend(request.seqs.iter().copied());
                    }
                    for &(key, at) in &request.keys {
                        open_keys.keys.insert(key.0, (open, at));
                    }
                    PartialReply::Merged {
                        term: me.term.clone(),
                        open,
                        accepted: merged.accepted,
                        refused: merged.refused,
                        now_ms: Some(now.millis()),
                    }
                })
                .await;
            match reply {
                Ok(r) => {
                    if let PartialReply::Merged {
                        accepted, refused, ..
                    } = &r
                    {
                        metrics.events_ingested(*accepted);
                        for _ in refused {
                            metrics.event_rejected(RejectReason::RefusedBySupervisor.as_str());
                        }
                        tracing::debug!(events = n, accepted, "a worker's partial merged");
                    }
                    r
                }
                Err(e) => PartialReply::NotLeading {
                    why: format!("{term}: {e}"),
                },
            }
        })
    }
}

/// One result of `POST /v1/events`, as documented in docs/PROTOCOL.md §6.2.
pub fn event_result(
    r: Result<&metaloop_core::protocol::SpineEvent, &Rejection>,
) -> crate::api::views::EventResult {
    use crate::api::views::EventResult;
    match r {
        Ok(ev) => EventResult {
            id: Some(ev.id.clone()),
            source: Some(ev.source.clone()),
            result: "accepted".into(),
            reason: None,
            message: None,
        },
        Err(rej) => EventResult {
            id: rej.id.clone(),
            source: rej.source.clone(),
            result: if rej.reason == RejectReason::Duplicate {
                "duplicate"
            } else {
                "rejected"
            }
            .into(),
            reason: Some(rej.reason.as_str().into()),
            message: Some(rej.message.clone()),
        },
    }
}

/// The leader's intake, when this replica leads.
type IntakeCell = Arc<RwLock<Option<Arc<Intake>>>>;

fn current(cell: &IntakeCell) -> Option<Arc<Intake>> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `POST /v1/events`: the same path as the mesh; answered once what was accepted is durable.
struct HttpIngest(IntakeCell);

impl EventIngest for HttpIngest {
    fn ingest(
        &self,
        body: bytes::Bytes,
        content_type: Option<String>,
    ) -> BoxFuture<Result<crate::api::views::EventResults, ApiError>> {
        let intake = current(&self.0);
        Box::pin(async move {
            let intake = intake.ok_or_else(|| {
                ApiError::Unavailable(
                    "this replica is not leading; send events to the leader".into(),
                )
            })?;
            let Taken::Folded(outcome) = intake.take(&body, content_type.as_deref(), None).await?
            else {
                unreachable!("an HTTP body is never skipped")
            };
            if !outcome.results().iter().all(|r| r.is_err()) {
                intake.sync().await.map_err(|e| {
                    tracing::error!(error = %e, "ingest journal");
                    ApiError::Unavailable(format!("{e:#}"))
                })?;
            }
            let results = outcome.results().into_iter().map(event_result).collect();
            Ok(crate::api::views::EventResults { results })
        })
    }
}

/// Reloads the adapters from the configuration file: SIGHUP and `POST /v1/admin/reload`.
#[derive(Clone)]
struct Reloader {
    path: Option<PathBuf>,
    registry: Arc<Mutex<KeyRegistry>>,
    /// The keys ingest workers sign their partials with (`mesh.worker_keys`).
    worker_keys: crate::workers::WorkerKeys,
    intake: IntakeCell,
    clock: Clock,
}

/// Worker keys as a reload names them: `worker/` and the key in hex.
fn worker_key_names(keys: &[ed25519_dalek::VerifyingKey]) -> Vec<String> {
    keys.iter()
        .map(|k| format!("worker/{}", metaloop_mesh::keys::public_key_hex(k)))
        .collect()
}

/// `source/key-id` pairs and `source: [domains]` bindings of a registry.
fn describe(reg: &KeyRegistry) -> (Vec<String>, Vec<String>) {
    let keys = reg
        .key_ids()
        .into_iter()
        .map(|(s, k)| format!("{s}/{k}"))
        .collect();
    let bindings = reg
        .sources()
        .into_iter()
        .map(|s| match reg.domains_of(s) {
            Some(d) => format!(
                "{s}: [{}]",
                d.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => format!("{s}: any"),
        })
        .collect();
    (keys, bindings)
}

impl Reloader {
    async fn reload_now(&self, by: String) -> Result<crate::api::views::ReloadView, ApiError> {
        let path = self.path.clone().ok_or_else(|| {
            ApiError::NotFound("this server was not started from a configuration file".into())
        })?;
        let cfg = FileConfig::load(&path).map_err(|e| ApiError::BadRequest {
            field: "config".into(),
            message: format!("{e}; the adapters and worker keys in force are kept"),
        })?;
        let next =
            KeyRegistry::from_entries(&cfg.adapter_keys()).map_err(|e| ApiError::BadRequest {
                field: "adapters".into(),
                message: format!("adapters: {e}; the adapters and worker keys in force are kept"),
            })?;
        let next_workers = cfg
            .mesh
            .accepted_worker_keys()
            .map_err(|e| ApiError::BadRequest {
                field: "mesh.worker_keys".into(),
                message: format!("{e}; the adapters and worker keys in force are kept"),
            })?;
        warn_unbound(&cfg);
        let (mut old_keys, old_bind) = describe(&lock(&self.registry));
        let (mut new_keys, new_bind) = describe(&next);
        old_keys.extend(worker_key_names(&self.worker_keys.get()));
        new_keys.extend(worker_key_names(&next_workers));
        let added: Vec<String> = new_keys
            .iter()
            .filter(|k| !old_keys.contains(k))
            .cloned()
            .collect();
        let removed: Vec<String> = old_keys
            .iter()
            .filter(|k| !new_keys.contains(k))
            .cloned()
            .collect();
        // sources kept whose binding changed
        let source_of = |b: &String| b.split(": ").next().unwrap_or_default().to_string();
        let old_sources: Vec<String> = old_bind.iter().map(source_of).collect();
        let rebound: Vec<String> = new_bind
            .iter()
            .filter(|b| !old_bind.contains(b) && old_sources.contains(&source_of(b)))
            .cloned()
            .collect();
        let sources = next.sources().into_iter().map(str::to_string).collect();
        *lock(&self.registry) = next.clone();
        self.worker_keys.set(next_workers);
        let intake = current(&self.intake);
        if let Some(intake) = &intake {
            lock(&intake.ingestor).set_registry(next);
            if !(added.is_empty() && removed.is_empty() && rebound.is_empty()) {
                let body = RecordBody::AdaptersReloaded {
                    by: by.clone(),
                    added: added.clone(),
                    removed: removed.clone(),
                    rebound: rebound.clone(),
                };
                let now = self.clock.now();
                intake
                    .runtime
                    .call(move |sup| {
                        let actor = sup.config().actor.clone();
                        sup.record_operational(now, &actor, body)
                    })
                    .await?
                    .map_err(ApiError::Unavailable)?;
            }
        }
        tracing::info!(
            by,
            ?added,
            ?removed,
            ?rebound,
            leading = intake.is_some(),
            "adapters reloaded"
        );
        Ok(crate::api::views::ReloadView {
            added,
            removed,
            rebound,
            sources,
        })
    }
}

impl Reload for Reloader {
    fn reload(&self, by: String) -> BoxFuture<Result<crate::api::views::ReloadView, ApiError>> {
        let me = self.clone();
        Box::pin(async move { me.reload_now(by).await })
    }
}

/// `POST /v1/admin/clock`: moves a driven clock, on the leader, once the deliveries the
/// caller names are folded; answers when the cycles it ends are closed.
#[derive(Clone)]
struct ClockDriver {
    clock: Clock,
    intake: IntakeCell,
}

/// How long an advance waits for the deliveries it names, then for its cycles to close.
const ADVANCE_WAIT: Duration = Duration::from_secs(60);

/// A driven clock asked to go back.
fn earlier(to: Timestamp, now: Timestamp) -> ApiError {
    ApiError::BadRequest {
        field: "to".into(),
        message: format!(
            "{to} is earlier than the supervisor's time {now}: a driven clock only moves forward"
        ),
    }
}

impl ClockDriver {
    async fn advance_now(
        &self,
        to: Timestamp,
        deliveries: Option<u64>,
    ) -> Result<crate::api::views::ClockView, ApiError> {
        let Clock::Driven(driven) = &self.clock else {
            return Err(ApiError::Conflict(
                "this supervisor runs on the wall clock; [clock] mode = \"driven\" lets POST /v1/admin/clock move it".into(),
            ));
        };
        let intake = current(&self.intake).ok_or_else(|| {
            ApiError::Unavailable("this replica is not leading; advance the leader's clock".into())
        })?;
        let now = self.clock.now();
        if to < now {
            return Err(earlier(to, now));
        }
        let started = Instant::now();
        if let Some(want) = deliveries {
            loop {
                let have = lock(&intake.folded).len() as u64;
                if have >= want {
                    break;
                }
                if started.elapsed() >= ADVANCE_WAIT || current(&self.intake).is_none() {
                    return Err(ApiError::Unavailable(format!(
                        "{have} of the {want} deliveries named are folded into the open cycle after {} s; the clock was not moved",
                        started.elapsed().as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let next = intake
            .runtime
            .call(|s| s.next_cycle_at())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        driven.advance(to).map_err(|now| earlier(to, now))?;
        if to < next {
            // no cycle closes, so no close announces the time: the workers hear it now,
            // before the caller publishes anything for it
            let cycle = intake
                .runtime
                .call(|s| s.state().cycle)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            intake.announce(cycle, to).await;
        } else {
            let settled = driven.settled(next);
            tokio::pin!(settled);
            loop {
                tokio::select! {
                    _ = &mut settled => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                // a leader that lost its lease with the cycle's append pending says so
                if !current(&self.intake).is_some_and(|i| Arc::ptr_eq(&i, &intake)) {
                    return Err(ApiError::Unavailable(format!(
                        "the clock reads {to}, but this replica stopped leading before the cycle ending {next} closed"
                    )));
                }
                if started.elapsed() >= ADVANCE_WAIT {
                    return Err(ApiError::Unavailable(format!(
                        "the clock reads {to}, but the cycle ending {next} did not close within {} s",
                        ADVANCE_WAIT.as_secs()
                    )));
                }
            }
        }
        let (cycle, next) = intake
            .runtime
            .call(|s| (s.state().cycle, s.next_cycle_at()))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(crate::api::views::ClockView {
            now: to.to_rfc3339(),
            cycle,
            next_cycle_at: next.to_rfc3339(),
        })
    }
}

impl crate::api::DriveClock for ClockDriver {
    fn advance(
        &self,
        to: Timestamp,
        deliveries: Option<u64>,
    ) -> BoxFuture<Result<crate::api::views::ClockView, ApiError>> {
        let me = self.clone();
        Box::pin(async move { me.advance_now(to, deliveries).await })
    }
}

/// Adapters that may speak for any domain are worth a warning.
fn warn_unbound(cfg: &FileConfig) {
    for a in cfg.adapters.iter().filter(|a| a.domains.is_none()) {
        tracing::warn!(source = %a.source, "adapter is not bound to domains: it may send events and acks for any domain (set domains = [...])");
    }
}

/// Decodes ledger records for the supervisor, feeding the views on the way.
fn decode(
    records: Vec<metaloop_ledger::Record>,
    views: &Views,
) -> Result<Vec<(Timestamp, RecordBody)>> {
    records
        .into_iter()
        .map(|r| {
            views.observe(Timestamp(r.time_ms), &r.action, &r.resource, &r.payload);
            let body = RecordBody::from_entry(&r.action, &r.payload)
                .with_context(|| format!("record {} ({}) cannot be replayed", r.seq, r.action))?;
            Ok((Timestamp(r.time_ms), body))
        })
        .collect()
}

/// Reads the records after `after` (every one for 0), decoded; returns the last seq read.
async fn read_after(
    store: &dyn LedgerStore,
    after: u64,
    views: &Views,
) -> Result<(Vec<(Timestamp, RecordBody)>, u64)> {
    // every page first, so a read that fails half-way feeds the views nothing
    let mut raw = Vec::new();
    let mut next = after + 1;
    loop {
        let page = store
            .read(next, metaloop_ledger::READ_ALL_PAGE)
            .await
            .context("reading the ledger")?;
        let full = page.len() == metaloop_ledger::READ_ALL_PAGE as usize;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        raw.extend(page);
        if !full {
            break;
        }
    }
    Ok((decode(raw, views)?, next - 1))
}

/// Sends each new checkpoint to the configured witnesses and stores their cosignatures.
fn spawn_cosigner(
    cfg: &FileConfig,
    store: Arc<dyn LedgerStore>,
    checkpoints: tokio::sync::mpsc::UnboundedReceiver<metaloop_ledger::Checkpoint>,
) -> Result<()> {
    if cfg.ledger.witnesses.is_empty() {
        return Ok(());
    }
    let witnesses = cfg
        .ledger
        .witnesses
        .iter()
        .map(|w| crate::cosign::Witness::new(&w.url, &w.vkey))
        .collect::<Result<Vec<_>>>()?;
    let key = metaloop_ledger::keys::load_secret_key(cfg.key_file())?;
    let cosigner = crate::cosign::Cosigner::new(store, key, witnesses);
    crate::cosign::spawn(cosigner, checkpoints);
    Ok(())
}

/// Signals the daemon answers.
struct Signals {
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }
}

/// What woke the daemon.
enum Wake {
    Stop,
    Reload,
}

impl Signals {
    /// Waits for a signal, or for `deadline`; `None` on the deadline.
    async fn until(&mut self, deadline: tokio::time::Instant) -> Option<Wake> {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => None,
            _ = self.term.recv() => { tracing::info!("SIGTERM: shutting down"); Some(Wake::Stop) }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: shutting down"); Some(Wake::Stop) }
            _ = self.hup.recv() => { tracing::info!("SIGHUP: reloading the adapters"); Some(Wake::Reload) }
        }
    }
}

/// Everything the load phase sets up, kept across roles.
struct Node {
    cfg: FileConfig,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    store: Arc<dyn LedgerStore>,
    /// The PostgreSQL ledger, when leases are in use.
    pg: Option<Arc<PgLedger>>,
    location: String,
    key: ed25519_dalek::SigningKey,
    mesh: Arc<dyn Mesh>,
    /// The core NATS connection ingest workers hand partials on (none on `memory://`).
    nats: Option<async_nats::Client>,
    stream: String,
    signer: Arc<EventSigner>,
    registry: Arc<Mutex<KeyRegistry>>,
    views: Views,
    role: RoleCell,
    /// The API's handle, pointed at whichever supervisor this replica runs now.
    api_runtime: Runtime,
    intake: IntakeCell,
    reloader: Reloader,
    clock: Clock,
    checkpoints_tx: tokio::sync::mpsc::UnboundedSender<metaloop_ledger::Checkpoint>,
    stop_api: tokio::sync::watch::Sender<bool>,
    /// Opens the API (at once for a replica; once it leads for a supervisor alone).
    api_gate: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A supervisor this replica runs now, with the last ledger seq it has seen.
struct Running {
    runtime: Runtime,
    task: tokio::task::JoinHandle<Supervisor>,
    seen: u64,
}

/// How a leader's term ended.
enum Ended {
    /// SIGTERM or Ctrl-C.
    Stop,
    /// The lease was lost (or the ledger refused an append as fenced): back to standby.
    LostLead(String),
}

/// Runs until SIGTERM or Ctrl-C. `config_path` is read again on SIGHUP.
pub async fn run(cfg: FileConfig, config_path: Option<PathBuf>) -> Result<()> {
    let mut signals = Signals::install()?;
    let (node, standby) = Node::load(cfg, config_path).await?;
    let result = node.run_roles(standby, &mut signals).await;
    node.stop(result).await
}

impl Node {
    /// Phase 1: configuration, ledger, key, mesh, and the API (serving a standby's view
    /// until this replica leads).
    async fn load(cfg: FileConfig, config_path: Option<PathBuf>) -> Result<(Node, Running)> {
        let metrics = Arc::new(Metrics::new());
        let notify_entries = if cfg.notify.is_empty() {
            vec![NotifyEntry {
                kind: NotifyKind::Log,
                url: None,
                secret_env: None,
            }]
        } else {
            cfg.notify.clone()
        };
        let notifier = Notifier::from_config_with(
            &notify_entries,
            crate::notify::NotifyOptions {
                environment: Some(cfg.environment.clone()),
                metrics: Some((*metrics).clone()),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow!("notify: {e}"))?;

        // the ledger and the supervisor's key (shared by every replica)
        let location = LedgerLocation::parse(&cfg.ledger_url());
        let (store, pg): (Arc<dyn LedgerStore>, Option<Arc<PgLedger>>) = match &location {
            LedgerLocation::Postgres(url) if cfg.ha.enabled => {
                let pg = Arc::new(PgLedger::connect(url).await.with_context(|| {
                    format!("connecting to ledger {}", crate::store::redact(url))
                })?);
                (pg.clone(), Some(pg))
            }
            other => (other.open().await?, None),
        };
        let key = crate::store::supervisor_key(&cfg.key_file(), store.as_ref()).await?;
        let (checkpoints_tx, checkpoints_rx) = tokio::sync::mpsc::unbounded_channel();
        spawn_cosigner(&cfg, store.clone(), checkpoints_rx)?;
        tracing::info!(ledger = %location.describe(), "ledger open");

        // the mesh
        let prefix = SubjectPrefix::new(cfg.mesh.subject_prefix.clone())
            .map_err(|e| anyhow!("mesh.subject_prefix: {e}"))?;
        let (mesh, nats, stream): (Arc<dyn Mesh>, _, String) = if cfg.mesh.url == "memory://" {
            let _ = prefix;
            (
                Arc::new(MemoryMesh::new(MemoryConfig {
                    capacity: 65_536,
                    ..Default::default()
                })),
                None,
                "memory".into(),
            )
        } else {
            let mesh = NatsMesh::connect(crate::workers::nats_config(&cfg)?)
                .await
                .with_context(|| format!("connecting to the mesh at {}", cfg.mesh.url))?;
            let client = mesh.client().clone();
            (Arc::new(mesh), Some(client), cfg.mesh.stream_name())
        };
        let signer = Arc::new(EventSigner::new(cfg.signing.source.clone(), key.clone()));
        let registry = Arc::new(Mutex::new(
            KeyRegistry::from_entries(&cfg.adapter_keys()).map_err(|e| anyhow!("adapters: {e}"))?,
        ));
        warn_unbound(&cfg);
        if cfg.mesh.url != "memory://" && cfg.mesh.worker_keys.is_empty() {
            tracing::warn!(subject = %cfg.mesh.workers_subject(), "partials from ingest workers are merged unauthenticated: anyone who may publish on this subject may add to the windows (set mesh.worker_keys)");
        }

        let role = if cfg.ha.enabled {
            RoleCell::replica(&crate::ha::holder_name(cfg.ha.node.as_deref(), &cfg.listen))
        } else {
            RoleCell::alone("this instance")
        };
        metrics.set_role(!cfg.ha.enabled, 0);
        let views = Views {
            snapshots: Default::default(),
            history: crate::history::History::new(),
        };

        // the supervisor as the ledger has it, following until this replica leads
        let (records, seen) = read_after(store.as_ref(), 0, &views).await?;
        tracing::info!(
            records = records.len(),
            "the supervisor's state read from the ledger"
        );
        let sup = Supervisor::follower(cfg.supervisor(), &records)
            .map_err(|e| anyhow!("invalid configuration: {e}"))?;
        let standby = start_follower(sup, seen).await?;

        let intake: IntakeCell = Default::default();
        let clock = match cfg.clock.driven_start().map_err(|e| anyhow!(e))? {
            Some(start) => {
                tracing::info!(%start, "the clock is driven: cycles close when POST /v1/admin/clock advances it");
                Clock::driven(start)
            }
            None => Clock::Wall,
        };
        let worker_keys = crate::workers::WorkerKeys::new(
            cfg.mesh.accepted_worker_keys().map_err(|e| anyhow!(e))?,
        );
        let reloader = Reloader {
            path: config_path,
            registry: registry.clone(),
            worker_keys,
            intake: intake.clone(),
            clock: clock.clone(),
        };

        // the HTTP API
        let tokens = Arc::new(
            crate::api::auth::Tokens::from_config(&cfg.tokens)
                .map_err(|e| anyhow!("tokens: {e}"))?,
        );
        let public_key_file = crate::store::public_key_file(&cfg.key_file());
        let state = ApiState {
            runtime: standby.runtime.detached(),
            tokens,
            ledger: store.clone(),
            snapshots: views.snapshots.clone(),
            ingest: Some(Arc::new(HttpIngest(intake.clone()))),
            clock: {
                let clock = clock.clone();
                Arc::new(move || clock.now())
            },
            metrics: Some(metrics.clone()),
            history: views.history.clone(),
            truth: None,
            checkpoint_key: metaloop_ledger::keys::load_public_key(&public_key_file).ok(),
            role: role.clone(),
            reload: Some(Arc::new(reloader.clone())),
            drive_clock: Some(Arc::new(ClockDriver {
                clock: clock.clone(),
                intake: intake.clone(),
            })),
        };
        // the API's own handle (its clones follow retarget), apart from the standby's
        let api_runtime = state.runtime.clone();
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("listening on {}", cfg.listen))?;
        tracing::info!(listen = %cfg.listen, "API up");
        eprintln!(
            "metaloop running: API and dashboard on http://{}, ledger {}, mesh {}{}",
            listener.local_addr()?,
            location.describe(),
            cfg.mesh.url,
            if cfg.ha.enabled {
                format!(", replica {}", role.me())
            } else {
                String::new()
            }
        );
        let (stop_api, stop_rx) = tokio::sync::watch::channel(false);
        // a replica answers as a standby at once; a supervisor alone once it leads (until
        // then connections wait in the listen backlog)
        let (api_gate, mut gate) = tokio::sync::watch::channel(cfg.ha.enabled);
        let server = {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                if gate.wait_for(|open| *open).await.is_err() {
                    return Ok(());
                }
                axum::serve(listener, crate::api::router(state))
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await
            })
        };
        Ok((
            Node {
                location: location.describe(),
                cfg,
                metrics,
                notifier,
                store,
                pg,
                key,
                mesh,
                nats,
                stream,
                signer,
                registry,
                views,
                role,
                api_runtime,
                intake,
                reloader,
                clock,
                checkpoints_tx,
                stop_api,
                api_gate,
                server,
            },
            standby,
        ))
    }

    /// Elect → recover → serve, again after each lost lead, until a signal.
    async fn run_roles(&self, mut standby: Running, signals: &mut Signals) -> Result<()> {
        loop {
            // phase 2: elect
            let Some(acquired) = self.elect(&mut standby, signals).await? else {
                stop_follower(&self.api_runtime, standby).await;
                return Ok(());
            };
            // phase 3: recover
            let leader = self.recover(standby, acquired).await?;
            // phase 4: serve
            match self.serve(leader, signals).await? {
                Ended::Stop => return Ok(()),
                Ended::LostLead(why) => {
                    tracing::warn!(replica = %self.role.me(), reason = %why, "stepped down: this replica is a standby again");
                    eprintln!("stepped down: {why}");
                    let (records, seen) = loop {
                        self.views.clear();
                        match read_after(self.store.as_ref(), 0, &self.views).await {
                            Ok(r) => break r,
                            Err(e) => {
                                tracing::warn!(error = %format!("{e:#}"), "reading the ledger to follow it; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    };
                    let sup = Supervisor::follower(self.cfg.supervisor(), &records)
                        .map_err(|e| anyhow!("invalid configuration: {e}"))?;
                    standby = start_follower(sup, seen).await?;
                    self.api_runtime.retarget(&standby.runtime);
                }
            }
        }
    }

    /// Phase 2. Alone: leads at once. A replica: tails the ledger into its standby
    /// supervisor and tries for the lease until it wins it; `None` on a stop signal.
    async fn elect(
        &self,
        standby: &mut Running,
        signals: &mut Signals,
    ) -> Result<Option<Option<Acquired>>> {
        let Some(pg) = &self.pg else {
            return Ok(Some(None));
        };
        let ha = &self.cfg.ha;
        let ttl = Duration::from_secs(ha.lease_ttl.0);
        let me = self.role.me();
        loop {
            // a database that does not answer keeps a standby waiting, never stops it
            if let Err(e) = self.tail(standby).await {
                tracing::warn!(error = %format!("{e:#}"), "tailing the ledger");
            }
            match pg.acquire_lease(&me, ttl).await {
                Ok(Some(acquired)) => return Ok(Some(Some(acquired))),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "trying for the lease"),
            }
            match pg.lease_info().await {
                Ok(info) => self.role.follow(LeaderView {
                    holder: info.as_ref().map(|i| i.holder.clone()),
                    epoch: info.map_or(0, |i| i.epoch),
                }),
                Err(e) => tracing::warn!(error = %e, "reading the lease"),
            }
            self.metrics.set_role(false, self.role.leader().epoch);
            let wait = Duration::from_millis(ha.tail_every_ms) + crate::ha::jitter(ha.jitter_ms);
            match signals.until(tokio::time::Instant::now() + wait).await {
                Some(Wake::Stop) => return Ok(None),
                Some(Wake::Reload) => self.reload_on_signal().await,
                None => {}
            }
        }
    }

    /// Folds the records appended since the standby last looked into its supervisor.
    async fn tail(&self, standby: &mut Running) -> Result<()> {
        let (records, seen) = read_after(self.store.as_ref(), standby.seen, &self.views).await?;
        if !records.is_empty() {
            let n = records.len();
            standby
                .runtime
                .call(move |sup| sup.follow(&records))
                .await
                .map_err(|e| anyhow!("the standby supervisor: {e}"))?;
            tracing::debug!(records = n, seen, "followed the leader's records");
        }
        standby.seen = seen;
        Ok(())
    }

    async fn reload_on_signal(&self) {
        if let Err(e) = self.reloader.reload_now("signal".into()).await {
            tracing::error!(error = %e, "reload refused");
        }
    }

    /// Phase 3: takes the standby's supervisor over, re-sends what was published and never
    /// acknowledged, and starts the intake and the mesh consumer.
    async fn recover(&self, standby: Running, acquired: Option<Acquired>) -> Result<Leader> {
        let epoch = acquired.as_ref().map_or(0, |a| a.lease.epoch);
        let lease = acquired.as_ref().map(|a| a.lease.clone());
        let (mut sup, now) = self.take_over(standby, acquired.as_ref()).await?;
        let writer = self.spawn_writer().await?;
        let (ingestor, journal) = self.reopen_intake(&mut sup, now)?;
        let leading = Arc::new(AtomicBool::new(true));
        let publisher = MeshPublisher {
            mesh: self.mesh.clone(),
            signer: self.signer.clone(),
            leading: leading.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
        };
        let (runtime, task) = Runtime::start_observed(
            sup,
            WriterRecords {
                writer: writer.clone(),
                views: self.views.clone(),
            },
            publisher.clone(),
            self.notifier.clone(),
            MetricsObserver(self.metrics.clone()),
        )
        .await?;
        self.api_runtime.retarget(&runtime);
        self.role.lead(epoch);
        self.metrics.set_role(true, epoch);
        if lease.is_some() {
            tracing::info!(replica = %self.role.me(), epoch, "leading");
            eprintln!("leading: lease epoch {epoch}");
        }
        self.resend_unacknowledged(&runtime, &publisher).await?;

        let intake = Arc::new(Intake {
            ingestor: Arc::new(Mutex::new(ingestor)),
            journal: Mutex::new(journal),
            runtime: runtime.clone(),
            metrics: self.metrics.clone(),
            folded: Default::default(),
            open_keys: Default::default(),
            stream: self.stream.clone(),
            term: format!("{}#{epoch}#{:016x}", self.role.me(), rand::random::<u64>()),
            clock: self.clock.clone(),
            workers: self
                .nats
                .clone()
                .map(|client| (client, self.cfg.mesh.workers_subject())),
        });
        *self.intake.write().unwrap_or_else(|e| e.into_inner()) = Some(intake.clone());
        let _ = self.api_gate.send(true);
        let pending: Arc<Mutex<Vec<Delivery>>> = Default::default();
        let consumer = if self.cfg.mesh.leader_consumes {
            let subscription = self
                .mesh
                .subscribe(SubjectPattern::all(), SubscribeOptions::durable(CONSUMER))
                .await
                .context("subscribing to the mesh")?;
            Some(spawn_consumer(
                subscription,
                intake.clone(),
                pending.clone(),
            ))
        } else {
            tracing::info!(
                "the mesh is read by ingest workers only (mesh.leader_consumes = false)"
            );
            None
        };
        let partials = self.nats.as_ref().map(|client| {
            crate::workers::serve_partials(
                client.clone(),
                self.cfg.mesh.workers_subject(),
                Arc::new(PartialIntake(intake.clone())),
                self.reloader.worker_keys.clone(),
            )
        });
        // the workers hear the new term (and hand back what an old one left unconfirmed)
        // and, with a driven clock, its time
        let closed = runtime.call(|s| s.state().cycle).await?;
        intake.announce(closed, self.clock.now()).await;
        Ok(Leader {
            runtime,
            task,
            writer,
            intake,
            pending,
            consumer,
            partials,
            lease,
            leading,
        })
    }

    /// The standby's supervisor, taken over: every record the previous leader committed
    /// (taking the lease waited for its last append), then the restart and the handover,
    /// recorded under the new fence as this leader's first appends. Returns it with the
    /// time now (a driven clock caught up with the last closed cycle).
    async fn take_over(
        &self,
        standby: Running,
        acquired: Option<&Acquired>,
    ) -> Result<(Supervisor, Timestamp)> {
        let Running {
            runtime,
            task,
            seen,
        } = standby;
        // the API waits (503) while the supervisor changes hands
        self.api_runtime.retarget(&Runtime::closed());
        drop(runtime);
        let mut sup = task.await.context("the standby supervisor failed")?;
        let (records, last) = read_after(self.store.as_ref(), seen, &self.views).await?;
        sup.follow(&records);
        if let Some(pg) = &self.pg {
            pg.set_fence(acquired.map(|a| a.lease.clone()));
        }
        let now = if last == 0 {
            self.clock.now()
        } else {
            self.clock.catch_up(sup.open_start())
        };
        if last == 0 {
            // an empty ledger: a fresh start
            sup = Supervisor::new(self.cfg.supervisor(), now)
                .map_err(|e| anyhow!("invalid configuration: {e}"))?;
        } else {
            tracing::info!(records = last, "taking over the supervisor's state");
            sup.take_over(now);
        }
        if let Some(a) = acquired {
            let actor = sup.config().actor.clone();
            sup.record_operational(
                now,
                &actor,
                RecordBody::LeaderElected {
                    holder: a.lease.holder.clone(),
                    epoch: a.lease.epoch,
                    previous: a.previous.clone(),
                },
            )
            .map_err(|e| anyhow!(e))?;
        }
        Ok((sup, now))
    }

    /// The ledger writer, signing checkpoints only while this replica leads.
    async fn spawn_writer(&self) -> Result<LedgerWriter> {
        let (n, m, to_witnesses) = (
            self.notifier.clone(),
            self.metrics.clone(),
            self.checkpoints_tx.clone(),
        );
        LedgerWriter::spawn(
            self.store.clone(),
            metaloop_ledger::WriterOptions::new()
                .signing_key(self.key.clone())
                .checkpoint_every(self.cfg.ledger.checkpoint_every_records)
                .checkpoint_interval(Duration::from_secs(self.cfg.ledger.checkpoint_every.0))
                .on_checkpoint(move |cp| {
                    m.checkpoint_made(Timestamp(cp.time_ms));
                    n.send(NoteMessage::checkpoint(
                        Timestamp(cp.time_ms),
                        cp.seq,
                        &metaloop_ledger::hex::encode(&cp.head),
                        &cp.key_id,
                    ));
                    let _ = to_witnesses.send(cp.clone());
                }),
        )
        .await
        .context("starting the ledger writer")
    }

    /// The ingest pipeline with what this replica's journal remembers: the dedupe window,
    /// and the open cycle's events folded in again (their cycle's records were never
    /// written).
    fn reopen_intake(
        &self,
        sup: &mut Supervisor,
        now: Timestamp,
    ) -> Result<(Ingestor, IngestJournal)> {
        let mut ingestor = Ingestor::new(self.cfg.ingest_config(), lock(&self.registry).clone());
        let (journal, replay) = IngestJournal::open(
            &self.cfg.data_dir,
            ingestor.dedupe_mut(),
            sup.state().cycle,
            now,
        )?;
        let mut replayed = 0;
        for ev in &replay {
            match sup.ingest(ev) {
                Ok(()) => replayed += 1,
                Err(e) => {
                    tracing::debug!(id = %ev.id, error = %e, "journalled event not folded in again")
                }
            }
        }
        if !replay.is_empty() {
            tracing::info!(
                replayed,
                remembered = ingestor.dedupe().len(),
                "events of the open cycle folded in again from the ingest journal"
            );
        }
        Ok((ingestor, journal))
    }

    /// Directives published and never acknowledged (a crash or a failover between the
    /// record and the ack) are sent again under the same ids; the spine applies each id
    /// once.
    async fn resend_unacknowledged(
        &self,
        runtime: &Runtime,
        publisher: &MeshPublisher,
    ) -> Result<()> {
        let unacked = runtime.call(|s| s.unacknowledged()).await?;
        for m in unacked {
            let id = m.directive_id.clone();
            match publisher.send(&m).await {
                Ok(()) => {
                    self.metrics.directive_resent();
                    tracing::info!(directive = %id, "re-sent an unacknowledged directive");
                }
                Err(e) => {
                    tracing::warn!(directive = %id, error = %e, "re-sending failed; retrying");
                    publisher.clone().retry(m);
                }
            }
        }
        Ok(())
    }

    /// Phase 4: cycles on the wall clock and reloads, with the lease renewed beside them,
    /// until a signal or a lost lead.
    async fn serve(&self, leader: Leader, signals: &mut Signals) -> Result<Ended> {
        // the lease keeper says when the lead is lost, even while an append hangs
        let (lost_tx, mut lost) = tokio::sync::watch::channel(String::new());
        let keeper = match (&leader.lease, &self.pg) {
            (Some(lease), Some(pg)) => Some(tokio::spawn(keep_lease(
                pg.clone(),
                lease.clone(),
                self.cfg.ha.clone(),
                lost_tx,
            ))),
            _ => {
                std::mem::forget(lost_tx); // alone: the lead is never lost
                None
            }
        };
        let ended = loop {
            let next = tokio::select! {
                r = leader.runtime.call(|s| s.next_cycle_at()) => match r {
                    Ok(t) => t,
                    Err(e) => break self.ledger_stopped(&leader, e.to_string())?,
                },
                _ = lost.changed() => break Ended::LostLead(lost.borrow().clone()),
            };
            // the wall clock is slept on; a driven clock is waited for (and the supervisor's
            // health looked at every second meanwhile)
            let wait = match &self.clock {
                Clock::Wall => {
                    Duration::from_millis((next.millis() - wall_clock().millis()).max(0) as u64)
                }
                Clock::Driven(_) => Duration::from_secs(1),
            };
            let deadline = tokio::time::Instant::now() + wait;
            tokio::select! {
                w = signals.until(deadline) => match w {
                    Some(Wake::Stop) => break Ended::Stop,
                    Some(Wake::Reload) => {
                        self.reload_on_signal().await;
                        continue;
                    }
                    None => {}
                },
                _ = self.clock.reached(next) => {}
                _ = lost.changed() => break Ended::LostLead(lost.borrow().clone()),
            }
            if leader.task.is_finished() {
                break self.ledger_stopped(&leader, "the supervisor stopped".into())?;
            }
            if self.clock.now() < next {
                continue;
            }
            // deliveries folded in so far are in the cycle about to close, and recorded
            // with it, so a restart or a new leader never counts them twice (taken in the
            // supervisor's turn: nothing is folded between the take and the close)
            let acks: Vec<Delivery> = std::mem::take(&mut *lock(&leader.pending));
            let folded = leader.intake.folded.clone();
            let stream = self.stream.clone();
            let now = self.clock.now();
            let closed = tokio::select! {
                r = leader.runtime.call(move |s| {
                    let seqs: Vec<u64> = std::mem::take(&mut *lock(&folded)).into_iter().collect();
                    s.record_folded(&stream, &seqs, now);
                    s.tick(now);
                    s.state().cycle
                }) => r.map_err(|e| e.to_string()),
                _ = lost.changed() => Err(lost.borrow().clone()),
            };
            let closed = match closed {
                Ok(c) => c,
                Err(why) => {
                    // nothing of the cycle is durable: its deliveries are delivered again
                    for d in acks {
                        let _ = d.nak().await;
                    }
                    if lost.borrow().is_empty() {
                        break self.ledger_stopped(&leader, why)?;
                    }
                    break Ended::LostLead(why);
                }
            };
            // the cycle's records are durable: its events may leave the bus once the journal
            // (their dedupe memory) is too
            leader.intake.cycle_closed(closed).await?;
            for d in acks {
                if let Err(e) = d.ack().await {
                    tracing::warn!(error = %e, "acknowledging a delivery");
                }
            }
            // announced before a driven clock's advance is answered: the workers know the
            // time before the events published after it reach them
            leader.intake.announce(closed, now).await;
            self.clock.settle(now);
        };
        if let Some(k) = keeper {
            k.abort();
        }
        self.end_term(leader, &ended).await?;
        Ok(ended)
    }

    /// The supervisor stopped on a ledger failure: a replica whose appends were fenced (or
    /// that cannot tell) steps down; a supervisor alone stops with the error (fail-stop).
    fn ledger_stopped(&self, leader: &Leader, why: String) -> Result<Ended> {
        if leader.lease.is_some() {
            return Ok(Ended::LostLead(format!(
                "the ledger refused an append ({why})"
            )));
        }
        Err(anyhow!("{why}"))
    }

    /// The end of a leader's term: stop taking input, hand unrecorded deliveries back to
    /// the bus (the next leader, or the next run, gets them), let the lease go on a stop.
    async fn end_term(&self, leader: Leader, ended: &Ended) -> Result<()> {
        let Leader {
            runtime,
            task,
            writer,
            intake,
            pending,
            consumer,
            partials,
            lease,
            leading,
        } = leader;
        leading.store(false, Ordering::SeqCst);
        *self.intake.write().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(c) = consumer {
            c.abort();
        }
        if let Some(p) = partials {
            p.abort();
        }
        let unrecorded: Vec<Delivery> = std::mem::take(&mut *lock(&pending));
        let n = unrecorded.len();
        for d in unrecorded {
            let _ = d.nak().await;
        }
        if let Err(e) = intake.sync().await {
            tracing::error!(error = %e, "ingest journal at the end of the term");
        }
        drop(intake);
        self.api_runtime.retarget(&Runtime::closed());
        drop(runtime);
        let cycle = match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(sup)) => sup.state().cycle,
            _ => 0,
        };
        tracing::info!(cycle, unrecorded = n, "supervisor stopped");
        match ended {
            Ended::Stop => {
                let final_cp = writer
                    .shutdown()
                    .await
                    .map_err(|e| anyhow!("closing the ledger: {e}"))?;
                if let Some(cp) = final_cp {
                    eprintln!(
                        "final checkpoint at record {} signed by {}",
                        cp.seq, cp.key_id
                    );
                }
                if let (Some(pg), Some(lease)) = (&self.pg, &lease) {
                    if let Err(e) = pg.release_lease(lease).await {
                        tracing::warn!(error = %e, "releasing the lease");
                    } else {
                        tracing::info!(epoch = lease.epoch, "lease released");
                    }
                }
            }
            Ended::LostLead(_) => {
                // a fenced replica signs no checkpoint: the leader's writer does
                drop(writer);
                self.metrics
                    .set_role(false, lease.as_ref().map_or(0, |l| l.epoch));
                self.role.follow(LeaderView {
                    holder: None,
                    epoch: lease.as_ref().map_or(0, |l| l.epoch),
                });
            }
        }
        Ok(())
    }

    /// Phase 5: the API stops, the ledger closes, notifications are flushed.
    async fn stop(self, result: Result<()>) -> Result<()> {
        let _ = self.stop_api.send(true);
        let _ = self.api_gate.send(true);
        let _ = self.server.await;
        self.store.close().await;
        tracing::info!(ledger = %self.location, "ledger closed");
        self.notifier.flush(Duration::from_secs(5)).await;
        result
    }
}

/// A leader's term: its supervisor, writer, intake, consumer and the ingest workers' service.
struct Leader {
    runtime: Runtime,
    task: tokio::task::JoinHandle<Supervisor>,
    writer: LedgerWriter,
    intake: Arc<Intake>,
    pending: Arc<Mutex<Vec<Delivery>>>,
    /// Reads the mesh (unless `mesh.leader_consumes` is false).
    consumer: Option<tokio::task::JoinHandle<()>>,
    /// Merges ingest workers' partials (on a NATS mesh).
    partials: Option<tokio::task::JoinHandle<()>>,
    lease: Option<Lease>,
    leading: Arc<AtomicBool>,
}

/// Events from the mesh into the intake. A delivery is acknowledged once the cycle holding
/// it is durable; one a closed cycle already folded (a redelivery after a restart or a
/// failover) is acknowledged and skipped.
fn spawn_consumer(
    mut subscription: Box<dyn metaloop_mesh::Subscription>,
    intake: Arc<Intake>,
    pending: Arc<Mutex<Vec<Delivery>>>,
) -> tokio::task::JoinHandle<()> {
    let stream = intake.stream.clone();
    tokio::spawn(async move {
        loop {
            let delivery = match subscription.next().await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "reading the mesh");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // our own directives and human messages travel on the same bus
            if delivery.message.subject.is_supervisor_output() {
                let _ = delivery.ack().await;
                continue;
            }
            let seq = delivery.stream_seq;
            let taken = intake
                .take(
                    &delivery.message.payload,
                    delivery.message.content_type.as_deref(),
                    (seq > 0).then(|| (stream.clone(), seq)),
                )
                .await;
            match taken {
                Err(_) => break,
                Ok(Taken::InClosedCycle) => {
                    tracing::debug!(seq, "delivery already folded; acknowledged");
                    let _ = delivery.ack().await;
                }
                Ok(Taken::Folded(_) | Taken::InOpenCycle) => lock(&pending).push(delivery),
            }
        }
    })
}

/// Renews the lease every `renew_every` (with jitter); says why when it is lost: a renewal
/// refused (expired or taken), or none confirmed within the TTL by this replica's clock,
/// counted from the start of the last renewal that succeeded.
async fn keep_lease(
    pg: Arc<PgLedger>,
    lease: Lease,
    ha: crate::config::HaSection,
    lost: tokio::sync::watch::Sender<String>,
) {
    let ttl = Duration::from_secs(ha.lease_ttl.0);
    let every = Duration::from_secs(ha.renew_every.0);
    let mut held_until = Instant::now() + ttl;
    loop {
        let pause = (every + crate::ha::jitter(ha.jitter_ms))
            .saturating_sub(Duration::from_millis(ha.jitter_ms))
            .min(held_until.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        let started = Instant::now();
        match tokio::time::timeout(every, pg.renew_lease(&lease, ttl)).await {
            Ok(Ok(true)) => held_until = started + ttl,
            Ok(Ok(false)) => {
                let _ = lost.send(format!(
                    "the lease (epoch {}) expired or was taken",
                    lease.epoch
                ));
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease"),
            Err(_) => tracing::warn!("renewing the lease timed out"),
        }
        if Instant::now() >= held_until {
            let _ = lost.send(format!(
                "the lease (epoch {}) could not be renewed within its TTL",
                lease.epoch
            ));
            return;
        }
    }
}

/// A standby's supervisor: follows the ledger, records and publishes nothing.
async fn start_follower(sup: Supervisor, seen: u64) -> Result<Running> {
    let (runtime, task) = Runtime::start(sup, NoRecords, NoPublish, NoNotes).await?;
    Ok(Running {
        runtime,
        task,
        seen,
    })
}

async fn stop_follower(api: &Runtime, standby: Running) {
    api.retarget(&Runtime::closed());
    drop(standby.runtime);
    let _ = standby.task.await;
}
