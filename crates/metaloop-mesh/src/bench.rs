//! The mesh benchmark behind `metaloop bench mesh` (and `examples/bench.rs`): Ed25519
//! verifications per second on one core — the ceiling of ingest — and the end-to-end ingest
//! rate (parse + verify + dedupe + fold into KPI windows) without a bus, through the
//! in-process bus and through NATS JetStream, each as a ratio of that ceiling.

use crate::envelope::MEDIA_TYPE_EVENT;
use crate::ingest::{DedupeConfig, IngestConfig, Ingestor};
use crate::keys::{EventSigner, KeyRegistry};
use crate::mesh::{
    Delivery, MemoryConfig, MemoryMesh, Mesh, MeshError, Message, NatsConfig, NatsMesh,
    StorageKind, SubscribeOptions, WhenFull,
};
use crate::subject::{Subject, SubjectPattern, SubjectPrefix};
use crate::verifiability::PAYLOAD_TYPE;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use futures_util::FutureExt;
use metaloop_core::kpi::DomainWindow;
use metaloop_core::protocol::{
    ComplianceScore, Decision, EventData, KpiReport, Recovery, SpineEvent,
};
use metaloop_core::time::Timestamp;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events per end-to-end run.
    pub events: usize,
    /// Signatures verified to measure the single-core rate.
    pub verify_samples: usize,
    /// Events per batch for batched verification.
    pub batch: usize,
    /// NATS to measure against; `None` skips it.
    pub nats_url: Option<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            events: 20_000,
            verify_samples: 20_000,
            batch: 64,
            nats_url: Some(
                std::env::var("METALOOP_TEST_NATS")
                    .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            ),
        }
    }
}

/// The figures, events (or signatures) per second.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub verify_per_sec: f64,
    pub batch_verify_per_sec: f64,
    pub ingest_per_sec: f64,
    pub ingest_batched_per_sec: f64,
    pub memory_mesh_per_sec: f64,
    pub memory_mesh_batched_per_sec: f64,
    /// `Err` says why NATS was not measured.
    pub nats_per_sec: Result<f64, String>,
    pub nats_batched_per_sec: Result<f64, String>,
}

/// Bench failures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Mesh(#[from] MeshError),
    #[error("{0}")]
    Failed(String),
}

const DOMAINS: [&str; 4] = ["application", "infrastructure", "security", "data"];

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Ed25519 `verify_strict` of DSSE PAE messages, one core: signatures per second.
pub fn verify_rate(samples: usize) -> f64 {
    let (messages, signatures, key) = signed_messages(samples.max(1));
    let start = Instant::now();
    for (m, s) in messages.iter().zip(&signatures) {
        key.verify_strict(m, s).expect("valid signature");
    }
    rate(messages.len(), start.elapsed())
}

/// `ed25519_dalek::verify_batch` in batches of `batch`, one core: signatures per second.
pub fn batch_verify_rate(samples: usize, batch: usize) -> f64 {
    let (messages, signatures, key) = signed_messages(samples.max(1));
    let keys = vec![key; batch.max(1)];
    let start = Instant::now();
    for (ms, ss) in messages
        .chunks(batch.max(1))
        .zip(signatures.chunks(batch.max(1)))
    {
        let ms: Vec<&[u8]> = ms.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&ms, ss, &keys[..ms.len()]).expect("valid batch");
    }
    rate(messages.len(), start.elapsed())
}

fn signed_messages(n: usize) -> (Vec<Vec<u8>>, Vec<Signature>, VerifyingKey) {
    let key = SigningKey::from_bytes(&[42; 32]);
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_be_bytes());
            crate::dsse::pae(PAYLOAD_TYPE.as_bytes(), &digest)
        })
        .collect();
    let signatures = messages.iter().map(|m| key.sign(m)).collect();
    (messages, signatures, key.verifying_key())
}

/// Signed events from four adapters, a mix of payloads, and the registry that accepts them.
pub fn workload(n: usize) -> (Vec<Vec<u8>>, KeyRegistry) {
    let signers: Vec<EventSigner> = DOMAINS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            EventSigner::new(
                format!("urn:spine:{d}"),
                SigningKey::from_bytes(&[i as u8 + 1; 32]),
            )
        })
        .collect();
    let mut registry = KeyRegistry::new();
    for s in &signers {
        registry
            .register(s.source(), s.verifying_key())
            .expect("strong key");
    }
    let t0 = Timestamp::from_secs(1_767_225_600);
    let events = (0..n)
        .map(|i| {
            let d = i % DOMAINS.len();
            let domain = DOMAINS[d].to_owned();
            let data = match i % 5 {
                0 | 1 => {
                    let r = Recovery {
                        domain,
                        incident_id: format!("inc-{i}"),
                        playbook: ["restart-service", "failover", "scale-out"][i % 3].into(),
                        duration_s: 5.0 + (i % 97) as f64,
                        autonomous: i % 4 != 0,
                        human_override: i % 17 == 0,
                        experiment: None,
                    };
                    if i % 7 == 0 {
                        EventData::RecoveryFailed(r)
                    } else {
                        EventData::RecoverySucceeded(r)
                    }
                }
                2 => EventData::DecisionMade(Decision {
                    domain,
                    decision_id: format!("dec-{i}"),
                    confidence: 0.5 + (i % 50) as f64 / 100.0,
                    autonomous: i % 3 != 0,
                    approved_by_human: i % 3 == 0,
                    overridden: i % 11 == 0,
                    experiment: None,
                }),
                3 => EventData::ComplianceScored(ComplianceScore {
                    domain,
                    score: 80.0 + (i % 20) as f64,
                }),
                _ => EventData::KpiReported(KpiReport {
                    domain,
                    name: "queue_depth".into(),
                    value: (i % 1000) as f64,
                }),
            };
            signers[d]
                .spine_event(format!("evt-{i:08}"), t0.plus_millis(i as i64 * 10), &data)
                .to_json()
        })
        .collect();
    (events, registry)
}

fn ingestor(registry: &KeyRegistry, n: usize) -> Ingestor {
    Ingestor::new(
        IngestConfig {
            dedupe: DedupeConfig {
                capacity: n.max(1),
                window_secs: 3600,
            },
            ..IngestConfig::default()
        },
        registry.clone(),
    )
}

/// KPI windows per domain, folded in O(1) per event.
#[derive(Default)]
struct Windows(BTreeMap<String, DomainWindow>);

impl Windows {
    fn fold(&mut self, e: &SpineEvent) {
        let domain = e.data.domain();
        match self.0.get_mut(domain) {
            Some(w) => w.observe(&e.data),
            None => self
                .0
                .entry(domain.to_owned())
                .or_default()
                .observe(&e.data),
        }
    }

    fn events(&self) -> u64 {
        self.0.values().map(|w| w.events).sum()
    }
}

/// The pipeline alone, one event at a time: events per second.
pub fn ingest_rate(events: &[Vec<u8>], registry: &KeyRegistry) -> f64 {
    let mut ing = ingestor(registry, events.len());
    let mut windows = Windows::default();
    let now = Timestamp::from_secs(1_767_225_600);
    let start = Instant::now();
    for bytes in events {
        let e = ing
            .ingest_event(bytes, now)
            .expect("bench events are valid");
        windows.fold(&e);
    }
    let elapsed = start.elapsed();
    assert_eq!(windows.events(), events.len() as u64);
    rate(events.len(), elapsed)
}

/// The pipeline alone with batched signature verification: events per second.
pub fn ingest_batched_rate(events: &[Vec<u8>], registry: &KeyRegistry, batch: usize) -> f64 {
    let mut ing = ingestor(registry, events.len());
    let mut windows = Windows::default();
    let now = Timestamp::from_secs(1_767_225_600);
    let start = Instant::now();
    for chunk in events.chunks(batch.max(1)) {
        let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        for r in ing.ingest_many(&slices, now) {
            windows.fold(&r.expect("bench events are valid"));
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(windows.events(), events.len() as u64);
    rate(events.len(), elapsed)
}

/// Publishes every event (on `publishers` concurrent tasks) while one consumer ingests,
/// folds and acknowledges them; events per second from the first publish to the last ack.
async fn through_mesh(
    mesh: Arc<dyn Mesh>,
    events: &[Vec<u8>],
    registry: &KeyRegistry,
    publishers: usize,
    batch: usize,
    durable: &str,
) -> Result<f64, BenchError> {
    let mut sub = mesh
        .subscribe(SubjectPattern::all(), SubscribeOptions::durable(durable))
        .await?;
    let mut ing = ingestor(registry, events.len());
    let mut windows = Windows::default();
    let messages: Vec<Message> = events
        .iter()
        .enumerate()
        .map(|(i, bytes)| Message {
            subject: Subject::new(
                [
                    "recovery.succeeded",
                    "decision.made",
                    "compliance.scored",
                    "kpi.reported",
                ][i % 4],
            )
            .expect("valid subject"),
            payload: bytes.clone().into(),
            content_type: Some(MEDIA_TYPE_EVENT.into()),
            msg_id: Some(format!("bench/{i}")),
        })
        .collect();
    let start = Instant::now();
    let per_task = messages.len().div_ceil(publishers.max(1));
    let mut tasks = Vec::new();
    for chunk in messages.chunks(per_task.max(1)) {
        let mesh = Arc::clone(&mesh);
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for m in chunk {
                mesh.publish(m).await?;
            }
            Ok::<(), MeshError>(())
        }));
    }
    let now = Timestamp::from_secs(1_767_225_600);
    let mut received = 0;
    while received < events.len() {
        let first = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .map_err(|_| BenchError::Failed(format!("stalled after {received} events")))??
            .ok_or_else(|| BenchError::Failed("the subscription ended".into()))?;
        let mut ready: Vec<Delivery> = vec![first];
        while ready.len() < batch {
            match sub.next().now_or_never() {
                Some(Ok(Some(d))) => ready.push(d),
                Some(Err(e)) => return Err(e.into()),
                _ => break,
            }
        }
        received += ready.len();
        if batch <= 1 {
            for d in ready {
                let e = ing
                    .ingest_event(&d.message.payload, now)
                    .map_err(|r| BenchError::Failed(r.to_string()))?;
                windows.fold(&e);
                d.ack().await?;
            }
        } else {
            let slices: Vec<&[u8]> = ready.iter().map(|d| d.message.payload.as_ref()).collect();
            let results = ing.ingest_many(&slices, now);
            for r in results {
                windows.fold(&r.map_err(|r| BenchError::Failed(r.to_string()))?);
            }
            for d in ready {
                d.ack().await?;
            }
        }
    }
    let elapsed = start.elapsed();
    for t in tasks {
        t.await.map_err(|e| BenchError::Failed(e.to_string()))??;
    }
    if windows.events() != events.len() as u64 {
        return Err(BenchError::Failed(format!(
            "folded {} of {} events",
            windows.events(),
            events.len()
        )));
    }
    Ok(rate(events.len(), elapsed))
}

async fn nats_rate(
    url: &str,
    events: &[Vec<u8>],
    registry: &KeyRegistry,
    batch: usize,
) -> Result<f64, String> {
    let id = format!("{:016x}", {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| e.to_string())?;
        u64::from_be_bytes(b)
    });
    let connect = NatsMesh::connect(NatsConfig {
        url: url.into(),
        stream: format!("METALOOP_BENCH_{id}"),
        subject_prefix: SubjectPrefix::new(format!("mlbench{id}")).map_err(|e| e.to_string())?,
        storage: StorageKind::Memory,
        connect_attempts: 1,
        pull_batch: 256,
        max_ack_pending: 4096,
        ..NatsConfig::default()
    });
    let nats = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("cannot connect to {url}: timed out"))?
        .map_err(|e| e.to_string())?;
    let result = through_mesh(Arc::new(nats.clone()), events, registry, 16, batch, "bench")
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = nats.delete_stream().await {
        tracing::warn!(error = %e, "bench stream not deleted");
    }
    result
}

/// Runs every measurement and prints them with their ratios to the single-core Ed25519
/// verification rate.
pub async fn run(options: &BenchOptions, out: &mut dyn Write) -> Result<BenchReport, BenchError> {
    let n = options.events.max(1);
    let batch = options.batch.max(2);
    writeln!(
        out,
        "metaloop mesh benchmark: {n} signed events from {} adapters, batches of {batch}",
        DOMAINS.len()
    )?;
    let samples = options.verify_samples;
    let cpu = |f: Box<dyn FnOnce() -> f64 + Send>| async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BenchError::Failed(e.to_string()))
    };
    let verify = cpu(Box::new(move || verify_rate(samples))).await?;
    let batch_verify = cpu(Box::new(move || batch_verify_rate(samples, batch))).await?;
    let (events, registry) = tokio::task::spawn_blocking(move || workload(n))
        .await
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    let events = Arc::new(events);
    let (e1, r1) = (Arc::clone(&events), registry.clone());
    let ingest = cpu(Box::new(move || ingest_rate(&e1, &r1))).await?;
    let (e2, r2) = (Arc::clone(&events), registry.clone());
    let ingest_batched = cpu(Box::new(move || ingest_batched_rate(&e2, &r2, batch))).await?;
    let memory = |b: usize| {
        let mesh: Arc<dyn Mesh> = Arc::new(MemoryMesh::new(MemoryConfig {
            capacity: 4096,
            when_full: WhenFull::Wait,
        }));
        through_mesh(mesh, &events, &registry, 1, b, "bench")
    };
    let memory_mesh = memory(1).await?;
    let memory_mesh_batched = memory(batch).await?;
    let (nats, nats_batched) = match &options.nats_url {
        Some(url) => {
            let single = nats_rate(url, &events, &registry, 1).await;
            let batched = match &single {
                Ok(_) => nats_rate(url, &events, &registry, batch).await,
                Err(e) => Err(e.clone()),
            };
            (single, batched)
        }
        None => (
            Err("not requested".to_owned()),
            Err("not requested".to_owned()),
        ),
    };
    let report = BenchReport {
        verify_per_sec: verify,
        batch_verify_per_sec: batch_verify,
        ingest_per_sec: ingest,
        ingest_batched_per_sec: ingest_batched,
        memory_mesh_per_sec: memory_mesh,
        memory_mesh_batched_per_sec: memory_mesh_batched,
        nats_per_sec: nats,
        nats_batched_per_sec: nats_batched,
    };
    print_report(&report, out)?;
    Ok(report)
}

fn print_report(r: &BenchReport, out: &mut dyn Write) -> std::io::Result<()> {
    let line = |out: &mut dyn Write, name: &str, v: Result<f64, &String>| match v {
        Ok(v) => writeln!(
            out,
            "  {name:<52} {:>10.0} /s  {:>5.2}x",
            v,
            v / r.verify_per_sec
        ),
        Err(e) => writeln!(out, "  {name:<52} {:>10}     skipped: {e}", "-"),
    };
    writeln!(out, "  {:<52} {:>12}  {:>6}", "", "rate", "ratio")?;
    line(
        out,
        "ed25519 verify_strict, one core (the limit)",
        Ok(r.verify_per_sec),
    )?;
    line(
        out,
        "ed25519 verify_batch, one core",
        Ok(r.batch_verify_per_sec),
    )?;
    line(
        out,
        "ingest (parse+verify+dedupe+fold), no bus",
        Ok(r.ingest_per_sec),
    )?;
    line(
        out,
        "ingest, batched verification, no bus",
        Ok(r.ingest_batched_per_sec),
    )?;
    line(out, "in-process mesh end to end", Ok(r.memory_mesh_per_sec))?;
    line(
        out,
        "in-process mesh end to end, batched verification",
        Ok(r.memory_mesh_batched_per_sec),
    )?;
    line(
        out,
        "NATS JetStream end to end",
        r.nats_per_sec.as_ref().copied(),
    )?;
    line(
        out,
        "NATS JetStream end to end, batched verification",
        r.nats_batched_per_sec.as_ref().copied(),
    )?;
    writeln!(
        out,
        "  (ratio: rate / single-core ed25519 verify_strict rate)"
    )
}
