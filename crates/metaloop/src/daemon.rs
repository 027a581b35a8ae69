//! `metaloop run --config metaloop.toml`: the supervisor against a real spine. Signed events
//! arrive on the mesh (and `POST /v1/events`); directives leave on it, signed; the ledger,
//! the API, notifications and metrics run alongside; SIGTERM stops it gracefully.

use crate::api::{ApiError, ApiState, EventIngest};
use crate::config::{FileConfig, NotifyEntry, NotifyKind};
use crate::ingest_journal::IngestJournal;
use crate::metrics::{Metrics, MetricsObserver};
use crate::notify::{Message as NoteMessage, Notifier};
use crate::runtime::{BoxFuture, Publisher, RecordSink, Runtime};
use crate::store::{LedgerLocation, OpenLedger, open_for_supervisor};
use anyhow::{Context, Result, anyhow};
use metaloop_core::Supervisor;
use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::record::{Entry, RecordBody};
use metaloop_core::time::Timestamp;
use metaloop_ledger::{LedgerWriter, NewRecord};
use metaloop_mesh::mesh::{MemoryConfig, NatsConfig};
use metaloop_mesh::{
    Delivery, EventSigner, IngestOutcome, Ingestor, KeyRegistry, MemoryMesh, Mesh, NatsMesh,
    RejectReason, Rejection, SubjectPattern, SubjectPrefix, SubscribeOptions,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Wall-clock time as the core sees it.
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp(ms)
}

/// The durable consumer's name on the mesh.
const CONSUMER: &str = "metaloop-supervisor";

/// Records go through the group-commit writer; snapshots are also kept for the API, and the
/// history for the dashboard.
struct WriterRecords {
    writer: LedgerWriter,
    snapshots: crate::api::SnapshotCache,
    history: crate::history::History,
}

impl RecordSink for WriterRecords {
    fn append(&mut self, entries: Vec<Entry>) -> BoxFuture<Result<()>> {
        let writer = self.writer.clone();
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
            let batch = entries
                .into_iter()
                .map(|e| NewRecord::new(e.time.millis(), e.actor, e.action, e.resource, e.payload))
                .collect();
            writer
                .append_batch(batch)
                .await
                .map_err(|e| anyhow!("appending to the ledger: {e}"))?;
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

/// Directives leave as signed `meta.directive.<type>` CloudEvents on the mesh.
struct MeshPublisher {
    mesh: Arc<dyn Mesh>,
    signer: Arc<EventSigner>,
}

impl Publisher for MeshPublisher {
    fn publish(&mut self, message: DirectiveMessage) -> BoxFuture<Result<()>> {
        let mesh = self.mesh.clone();
        let signer = self.signer.clone();
        Box::pin(async move {
            let event = metaloop_mesh::directive_event(&message, &signer, wall_clock())
                .map_err(|e| anyhow!("signing directive {}: {e}", message.directive_id))?;
            metaloop_mesh::mesh::publish_event(mesh.as_ref(), &event)
                .await
                .map_err(|e| anyhow!("publishing directive {}: {e}", message.directive_id))?;
            Ok(())
        })
    }
}

/// The daemon's one ingest path, for the mesh and `POST /v1/events` alike: one pipeline (so
/// one dedupe window), the supervisor as the last check, the journal behind both.
struct Intake {
    ingestor: Mutex<Ingestor>,
    journal: Mutex<IngestJournal>,
    runtime: Runtime,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Intake {
    /// Checks a message, folds what passes into the supervisor and journals it (not yet
    /// synced), and counts every result.
    async fn take(
        self: &Arc<Self>,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<IngestOutcome, crate::runtime::RuntimeError> {
        // signatures are checked off the supervisor's task
        let verified = lock(&self.ingestor).verify(body, content_type);
        let me = self.clone();
        let outcome = self
            .runtime
            .call(move |sup| {
                let mut ingestor = lock(&me.ingestor);
                let mut journal = lock(&me.journal);
                let now = wall_clock();
                ingestor.admit(verified, now, &mut |ev| {
                    // the cycle the event is folded into: after this many closed cycles
                    let cycle = sup.state().cycle;
                    sup.ingest(ev).map_err(|e| e.to_string())?;
                    journal.record(now, cycle, ev);
                    Ok(())
                })
            })
            .await?;
        for r in outcome.results() {
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
            let ingestor = lock(&me.ingestor);
            let mut journal = lock(&me.journal);
            journal.cycle_closed(closed, ingestor.dedupe())?;
            journal.sync()
        })
        .await
        .map_err(|e| anyhow!("compacting the ingest journal: {e}"))?
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

/// `POST /v1/events`: the same path as the mesh; answered once what was accepted is durable.
struct HttpIngest(Arc<Intake>);

impl EventIngest for HttpIngest {
    fn ingest(
        &self,
        body: bytes::Bytes,
        content_type: Option<String>,
    ) -> BoxFuture<Result<crate::api::views::EventResults, ApiError>> {
        let intake = self.0.clone();
        Box::pin(async move {
            let outcome = intake.take(&body, content_type.as_deref()).await?;
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

/// Reads every record of the ledger, decoded; the history is fed on the way.
async fn records_of(
    ledger: &OpenLedger,
    history: &crate::history::History,
) -> Result<Vec<(Timestamp, RecordBody)>> {
    let records = ledger
        .store
        .read_all()
        .await
        .context("reading the ledger")?;
    history.observe_all(records.iter().map(|r| {
        (
            Timestamp(r.time_ms),
            r.action.as_str(),
            r.resource.as_str(),
            &r.payload,
        )
    }));
    records
        .into_iter()
        .map(|r| {
            let body = RecordBody::from_entry(&r.action, &r.payload)
                .with_context(|| format!("record {} ({}) cannot be replayed", r.seq, r.action))?;
            Ok((Timestamp(r.time_ms), body))
        })
        .collect()
}

/// Sends each new checkpoint to the configured witnesses and stores their cosignatures.
fn spawn_cosigner(
    cfg: &FileConfig,
    ledger: &crate::store::OpenLedger,
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
    let cosigner = crate::cosign::Cosigner::new(ledger.store.clone(), key, witnesses);
    crate::cosign::spawn(cosigner, checkpoints);
    Ok(())
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(cfg: FileConfig) -> Result<()> {
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

    // the ledger, its writer and the supervisor's key; checkpoints reach humans as they are made
    let location = LedgerLocation::parse(&cfg.ledger_url());
    let (n, m) = (notifier.clone(), metrics.clone());
    let (to_witnesses, checkpoints_for_witnesses) = tokio::sync::mpsc::unbounded_channel();
    let ledger = open_for_supervisor(
        &location,
        &cfg.key_file(),
        cfg.ledger.checkpoint_every_records,
        Duration::from_secs(cfg.ledger.checkpoint_every.0),
        move |cp| {
            m.checkpoint_made(Timestamp(cp.time_ms));
            n.send(NoteMessage::checkpoint(
                Timestamp(cp.time_ms),
                cp.seq,
                &metaloop_ledger::hex::encode(&cp.head),
                &cp.key_id,
            ));
            let _ = to_witnesses.send(cp.clone());
        },
    )
    .await?;
    spawn_cosigner(&cfg, &ledger, checkpoints_for_witnesses)?;
    tracing::info!(ledger = %ledger.location, "ledger open");

    // the supervisor: rebuilt from its records when there are any
    let history = crate::history::History::new();
    let records = records_of(&ledger, &history).await?;
    let sup_cfg = cfg.supervisor();
    let now = wall_clock();
    let mut sup = if records.is_empty() {
        Supervisor::new(sup_cfg, now).map_err(|e| anyhow!("invalid configuration: {e}"))?
    } else {
        tracing::info!(
            records = records.len(),
            "rebuilding the supervisor's state from the ledger"
        );
        Supervisor::restore(sup_cfg, &records, now)
            .map_err(|e| anyhow!("invalid configuration: {e}"))?
    };

    // the mesh
    let prefix = SubjectPrefix::new(cfg.mesh.subject_prefix.clone())
        .map_err(|e| anyhow!("mesh.subject_prefix: {e}"))?;
    let mesh: Arc<dyn Mesh> = if cfg.mesh.url == "memory://" {
        Arc::new(MemoryMesh::new(MemoryConfig {
            capacity: 65_536,
            ..Default::default()
        }))
    } else {
        let ack_wait_ms = (cfg.cycle_interval.0 * 2 + 60) * 1000;
        Arc::new(
            NatsMesh::connect(NatsConfig {
                url: cfg.mesh.url.clone(),
                subject_prefix: prefix.clone(),
                stream: cfg.mesh.stream_name(),
                ack_wait_ms,
                max_ack_pending: 1_000_000,
                ..Default::default()
            })
            .await
            .with_context(|| format!("connecting to the mesh at {}", cfg.mesh.url))?,
        )
    };
    let key = crate::store::supervisor_key(&cfg.key_file(), ledger.store.as_ref()).await?;
    let signer = Arc::new(EventSigner::new(cfg.signing.source.clone(), key));
    let registry =
        KeyRegistry::from_entries(&cfg.adapter_keys()).map_err(|e| anyhow!("adapters: {e}"))?;

    // what was accepted before a restart: remembered for dedupe, and the open cycle's events
    // folded in again (their cycle's records were never written)
    let mut ingestor = Ingestor::new(cfg.ingest_config(), registry);
    let (journal, replay) =
        IngestJournal::open(&cfg.data_dir, ingestor.dedupe_mut(), sup.state().cycle, now)?;
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

    let snapshots: crate::api::SnapshotCache = Default::default();
    let (runtime, task) = Runtime::start_observed(
        sup,
        WriterRecords {
            writer: ledger.writer.clone(),
            snapshots: snapshots.clone(),
            history: history.clone(),
        },
        MeshPublisher {
            mesh: mesh.clone(),
            signer,
        },
        notifier.clone(),
        MetricsObserver(metrics.clone()),
    )
    .await?;

    let intake = Arc::new(Intake {
        ingestor: Mutex::new(ingestor),
        journal: Mutex::new(journal),
        runtime: runtime.clone(),
        metrics: metrics.clone(),
    });

    // events from the mesh; each delivery is acknowledged once the cycle holding it is durable
    let pending: Arc<Mutex<Vec<Delivery>>> = Default::default();
    let mut subscription = mesh
        .subscribe(SubjectPattern::all(), SubscribeOptions::durable(CONSUMER))
        .await
        .context("subscribing to the mesh")?;
    let consumer = {
        let (intake, pending) = (intake.clone(), pending.clone());
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
                let taken = intake
                    .take(
                        &delivery.message.payload,
                        delivery.message.content_type.as_deref(),
                    )
                    .await;
                if taken.is_err() {
                    break;
                }
                lock(&pending).push(delivery);
            }
        })
    };

    // the HTTP API
    let tokens = Arc::new(
        crate::api::auth::Tokens::from_config(&cfg.tokens).map_err(|e| anyhow!("tokens: {e}"))?,
    );
    let state = ApiState {
        runtime: runtime.clone(),
        tokens,
        ledger: ledger.store.clone(),
        snapshots,
        ingest: Some(Arc::new(HttpIngest(intake.clone()))),
        clock: Arc::new(wall_clock),
        metrics: Some(metrics.clone()),
        history,
        truth: None,
        checkpoint_key: metaloop_ledger::keys::load_public_key(&ledger.public_key_file).ok(),
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, "API up");
    eprintln!(
        "metaloop running: API and dashboard on http://{}, ledger {}, mesh {}",
        listener.local_addr()?,
        ledger.location,
        cfg.mesh.url
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(
            axum::serve(listener, crate::api::router(state))
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .into_future(),
        )
    };

    // cycles on the wall clock, until a signal
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        let next = runtime.call(|s| s.next_cycle_at()).await?;
        let wait = Duration::from_millis((next.millis() - wall_clock().millis()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                // deliveries folded in so far are in the cycle about to close
                let acks: Vec<Delivery> = std::mem::take(&mut *lock(&pending));
                let now = wall_clock();
                let closed = runtime.call(move |s| { s.tick(now); s.state().cycle }).await?;
                // the cycle's records are durable: its events may leave the bus once the
                // journal (their dedupe memory) is too
                intake.cycle_closed(closed).await?;
                for d in acks {
                    if let Err(e) = d.ack().await {
                        tracing::warn!(error = %e, "acknowledging a delivery");
                    }
                }
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: shutting down"); break; }
        }
    }

    // graceful shutdown: stop taking input, leave unrecorded deliveries unacknowledged (the
    // bus redelivers them to the next run), sign a final checkpoint
    let _ = stop_tx.send(true);
    consumer.abort();
    let _ = server.await;
    let unrecorded = lock(&pending).len();
    if let Err(e) = intake.sync().await {
        tracing::error!(error = %e, "ingest journal at shutdown");
    }
    drop(intake);
    drop(runtime);
    let sup = task.await.context("the supervisor task failed")?;
    tracing::info!(cycle = sup.state().cycle, unrecorded, "supervisor stopped");
    let final_cp = ledger
        .writer
        .clone()
        .shutdown()
        .await
        .map_err(|e| anyhow!("closing the ledger: {e}"))?;
    ledger.store.close().await;
    if let Some(cp) = final_cp {
        eprintln!(
            "final checkpoint at record {} signed by {}",
            cp.seq, cp.key_id
        );
    }
    notifier.flush(Duration::from_secs(5)).await;
    Ok(())
}
