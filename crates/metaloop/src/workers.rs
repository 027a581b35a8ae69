//! Ingest workers: `metaloop ingest-worker` processes share the leader's durable JetStream
//! consumer, do the expensive part of ingest (signatures, schema, event time, dedupe) and
//! hand the leader partial windows, which it merges into the open cycle (docs/HA.md,
//! "Ingest workers").
//!
//! The exchange, on core NATS subjects outside the stream (`mesh.workers_subject()`):
//! - a worker sends a [`PartialRequest`] (the windows, the events a window cannot hold, the
//!   stream sequences and the event digests they came from) and gets a [`PartialReply`];
//! - the leader refuses a partial holding a sequence or an event it already has, and says
//!   which: those of a closed cycle are acknowledged at once, those of the open cycle once it
//!   closes; the worker sends the rest again;
//! - when a cycle's records are durable the leader announces [`Closed`] on `<subject>.closed`;
//!   a worker then acknowledges the deliveries merged into it. A new term (a new leader, or
//!   the same one restarted) means the open cycle was lost: the worker hands back (naks) every
//!   delivery merged under an older term and not yet confirmed, and the new leader counts it
//!   once. Terms carry the leader's lease epoch: a message under an older epoch than the one
//!   a worker follows, while that one is heard from, comes from a stale leader and is
//!   ignored.
//!
//! With a driven clock (`clock.mode = "driven"`) a worker checks event time against the
//! leader's clock, not its own: every announcement and answer carries it, a leader announces
//! itself when its term begins and whenever its clock moves (before the advance is answered),
//! and a worker that does not know the time yet reads nothing from the mesh and asks the
//! leader with an empty partial.

use crate::config::FileConfig;
use anyhow::{Context, Result, anyhow};
use metaloop_core::protocol::SpineEvent;
use metaloop_core::supervisor::Partial;
use metaloop_core::time::Timestamp;
use metaloop_mesh::ingest::event_key;
use metaloop_mesh::mesh::NatsConfig;
use metaloop_mesh::{
    Delivery, Ingestor, KeyRegistry, Mesh, NatsMesh, SubjectPattern, SubjectPrefix,
    SubscribeOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The durable JetStream consumer the leader and the workers share.
pub const CONSUMER: &str = "metaloop-ingest";

/// The header naming the worker's public key (hex) on a signed partial.
pub const KEY_HEADER: &str = "Metaloop-Worker-Key";
/// The header holding the partial's Ed25519 signature (hex) over [`PARTIAL_CONTEXT`]
/// followed by the request's bytes.
pub const SIGNATURE_HEADER: &str = "Metaloop-Signature";
/// What a partial's signature covers before its bytes: a signature made for anything else
/// (an event, a checkpoint) is never a partial's.
pub const PARTIAL_CONTEXT: &[u8] = b"metaloop-partial/v1\n";

/// What a partial's signature covers: the context, then the request's bytes.
fn signed_bytes(body: &[u8]) -> Vec<u8> {
    [PARTIAL_CONTEXT, body].concat()
}

/// The headers that sign a partial's `body` with `key`.
pub fn sign_partial(key: &ed25519_dalek::SigningKey, body: &[u8]) -> async_nats::HeaderMap {
    use ed25519_dalek::Signer;
    let msg = signed_bytes(body);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        KEY_HEADER,
        metaloop_mesh::keys::public_key_hex(&key.verifying_key()).as_str(),
    );
    headers.insert(
        SIGNATURE_HEADER,
        metaloop_ledger::hex::encode(&key.sign(&msg).to_bytes()).as_str(),
    );
    headers
}

/// Checks a partial's signature against the worker keys the leader accepts: `Ok` when it is
/// signed by one of them (or when no key is configured: partials are then not
/// authenticated), otherwise why not.
pub fn check_partial(
    accepted: &[ed25519_dalek::VerifyingKey],
    headers: Option<&async_nats::HeaderMap>,
    body: &[u8],
) -> Result<(), String> {
    if accepted.is_empty() {
        return Ok(());
    }
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    let (Some(key), Some(signature)) = (header(KEY_HEADER), header(SIGNATURE_HEADER)) else {
        return Err(format!(
            "unsigned: mesh.worker_keys requires partials signed by one of them ({KEY_HEADER} and {SIGNATURE_HEADER} headers)"
        ));
    };
    let key =
        metaloop_mesh::keys::parse_public_key(&key).map_err(|e| format!("{KEY_HEADER}: {e}"))?;
    if !accepted.contains(&key) {
        return Err(format!(
            "signed by {}, which is not in mesh.worker_keys",
            metaloop_mesh::keys::public_key_hex(&key)
        ));
    }
    let bytes: [u8; 64] = metaloop_ledger::hex::decode_array(&signature)
        .ok_or_else(|| format!("{SIGNATURE_HEADER}: not 64 bytes in hex"))?;
    key.verify_strict(
        &signed_bytes(body),
        &ed25519_dalek::Signature::from_bytes(&bytes),
    )
    .map_err(|_| {
        "the signature does not verify: the partial was changed or signed otherwise".to_string()
    })
}

/// An event's digest ([`event_key`] of its source and id), as 32 hex digits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub u128);

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:032x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 32 {
            return Err(serde::de::Error::custom(format!(
                "digest {s:?} is not 32 hex digits"
            )));
        }
        u128::from_str_radix(&s, 16)
            .map(Digest)
            .map_err(|e| serde::de::Error::custom(format!("digest {s:?}: {e}")))
    }
}

/// A worker's partial windows, with where they came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialRequest {
    /// The worker's name (logs).
    pub worker: String,
    /// The stream the sequences are in.
    pub stream: String,
    /// The stream sequences of the deliveries folded into `partial`.
    pub seqs: Vec<u64>,
    /// (digest of source and id, accepted at, ms) of every event folded into `partial`.
    pub keys: Vec<(Digest, i64)>,
    pub partial: Partial,
}

/// The leader's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PartialReply {
    /// Merged into the cycle open after `open` cycles closed.
    Merged {
        term: String,
        open: u64,
        accepted: u64,
        /// Events the supervisor refused (an ack for an unknown directive, …), with why.
        refused: Vec<(String, String)>,
        /// The leader's clock, ms since the epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now_ms: Option<i64>,
    },
    /// Nothing merged: these sequences or events are already taken.
    Refused {
        term: String,
        open: u64,
        /// In a closed cycle: acknowledge.
        seqs_closed: Vec<u64>,
        /// In the open cycle: acknowledge once it closes.
        seqs_open: Vec<u64>,
        keys_closed: Vec<Digest>,
        keys_open: Vec<Digest>,
        /// The leader's clock, ms since the epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now_ms: Option<i64>,
    },
    /// This replica does not lead (or stopped leading).
    NotLeading { why: String },
    /// Not signed by a worker key the leader accepts (`mesh.worker_keys`): nothing merged.
    Unauthenticated { why: String },
}

/// A leader's announcement: when a cycle's records are durable, when its term begins, and
/// when its driven clock moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    pub term: String,
    /// Cycles closed so far.
    pub closed: u64,
    /// The leader's clock, ms since the epoch: what a worker of a driven-clock deployment
    /// checks event time against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<i64>,
}

/// The lease epoch in a leader's term (`<replica>#<epoch>#<random>`).
pub fn term_epoch(term: &str) -> Option<u64> {
    let mut parts = term.rsplitn(3, '#');
    parts.next()?;
    parts.next()?.parse().ok()
}

/// The time a worker checks event time against: this machine's clock, or the leader's
/// driven clock as last heard (`None` until heard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerTime {
    Wall,
    Driven(Option<Timestamp>),
}

impl WorkerTime {
    pub fn now(&self) -> Option<Timestamp> {
        match self {
            WorkerTime::Wall => Some(crate::clock::wall_clock()),
            WorkerTime::Driven(t) => *t,
        }
    }

    /// The leader's clock heard: `fresh` when it comes from a term just begun (a new leader's
    /// clock may read earlier than its predecessor's); within a term it only moves forward.
    fn heard(&mut self, now_ms: Option<i64>, fresh: bool) {
        if let (WorkerTime::Driven(t), Some(ms)) = (self, now_ms) {
            let heard = Timestamp(ms);
            *t = Some(match *t {
                Some(known) if !fresh => known.max(heard),
                _ => heard,
            });
        }
    }
}

/// What a worker has done, for logs and `bench ingest`.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub deliveries: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub merged: AtomicU64,
    pub acked: AtomicU64,
    pub naked: AtomicU64,
}

/// The NATS settings of a configuration (the daemon's and its workers' alike).
pub fn nats_config(cfg: &FileConfig) -> Result<NatsConfig> {
    Ok(NatsConfig {
        url: cfg.mesh.url.clone(),
        subject_prefix: SubjectPrefix::new(cfg.mesh.subject_prefix.clone())
            .map_err(|e| anyhow!("mesh.subject_prefix: {e}"))?,
        stream: cfg.mesh.stream_name(),
        ack_wait_ms: cfg.mesh.ack_wait_ms(cfg.cycle_interval.0),
        max_ack_pending: 1_000_000,
        ..Default::default()
    })
}

/// One delivery a worker holds: its events, until the leader has merged and recorded them.
struct Held {
    delivery: Delivery,
    seq: u64,
    events: Vec<(SpineEvent, i64)>,
}

/// Deliveries merged under a term, by the cycle they went into.
#[derive(Default)]
struct Awaiting {
    term: String,
    /// When the leader of `term` was last heard from.
    heard_at: Option<std::time::Instant>,
    by_cycle: BTreeMap<u64, Vec<Delivery>>,
}

/// How long a term is followed without news before an older epoch's is taken again (a
/// ledger started afresh numbers its epochs from 1; a stale leader steps down within its
/// lease TTL and a renewal).
const STALE_GRACE: Duration = Duration::from_secs(60);

impl Awaiting {
    /// A term under an older lease epoch than the one followed, while that one is heard
    /// from: a stale leader's.
    fn is_stale(&self, term: &str, now: std::time::Instant) -> bool {
        let recent = self
            .heard_at
            .is_some_and(|at| now.saturating_duration_since(at) < STALE_GRACE);
        recent
            && matches!(
                (term_epoch(term), term_epoch(&self.term)),
                (Some(theirs), Some(ours)) if theirs < ours
            )
    }
}

/// `metaloop ingest-worker --config FILE`: runs until SIGTERM or Ctrl-C; SIGHUP reads the
/// adapters' keys again.
pub async fn exec(path: &std::path::Path, name: Option<String>) -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let cfg = match FileConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let name = name.unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return 1;
    };
    let path = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = hup.recv() => {
                    match FileConfig::load(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|c| KeyRegistry::from_entries(&c.adapter_keys()).map_err(|e| format!("adapters: {e}")))
                    {
                        Ok(r) => {
                            tracing::info!("SIGHUP: the adapters' keys read again");
                            eprintln!("adapters reloaded");
                            let _ = reload_tx.send(r);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reload refused; the keys in force stay");
                            eprintln!("reload refused: {e}");
                        }
                    }
                }
            }
        }
        let _ = stop_tx.send(true);
    });
    match run_worker(cfg, name, stop_rx, reload_rx, Arc::default()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Runs one ingest worker until `stop` turns true (then it hands back what it holds). Each
/// registry from `reloads` replaces the adapters' keys in force.
pub async fn run_worker(
    cfg: FileConfig,
    name: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<KeyRegistry>,
    stats: Arc<WorkerStats>,
) -> Result<()> {
    if cfg.mesh.url == "memory://" {
        return Err(anyhow!(
            "an ingest worker reads a nats:// mesh; mesh.url is memory://"
        ));
    }
    let key = cfg
        .mesh
        .worker_key()
        .map_err(|e| anyhow!("mesh.worker_key_file: {e}"))?;
    if key.is_none() && !cfg.mesh.worker_keys.is_empty() {
        return Err(anyhow!(
            "the leader accepts only signed partials (mesh.worker_keys); set mesh.worker_key_file to this worker's key (metaloop keys generate)"
        ));
    }
    // a driven clock is the leader's: unknown until heard
    let mut time = match cfg.clock.mode {
        crate::config::ClockMode::Wall => WorkerTime::Wall,
        crate::config::ClockMode::Driven => WorkerTime::Driven(None),
    };
    let mesh = NatsMesh::connect(nats_config(&cfg)?)
        .await
        .with_context(|| format!("connecting to the mesh at {}", cfg.mesh.url))?;
    let client = mesh.client().clone();
    let subject = cfg.mesh.workers_subject();
    let stream = cfg.mesh.stream_name();
    let registry =
        KeyRegistry::from_entries(&cfg.adapter_keys()).map_err(|e| anyhow!("adapters: {e}"))?;
    let mut ingestor = Ingestor::new(cfg.ingest_config(), registry);
    let mut subscription = mesh
        .subscribe(SubjectPattern::all(), SubscribeOptions::durable(CONSUMER))
        .await
        .context("subscribing to the mesh")?;
    let mut closed = client
        .subscribe(format!("{subject}.closed"))
        .await
        .map_err(|e| anyhow!("subscribing to {subject}.closed: {e}"))?;
    let flush_every = Duration::from_millis(cfg.mesh.worker_flush_ms);
    let max_held = 20_000usize;
    let mut held: Vec<Held> = Vec::new();
    let mut awaiting = Awaiting::default();
    let mut flush = tokio::time::interval(flush_every);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(worker = %name, subject = %subject, "ingest worker reading the mesh");
    eprintln!(
        "metaloop ingest-worker {name}: reading {} (stream {stream}), handing partials on {subject}",
        cfg.mesh.url
    );
    loop {
        tokio::select! {
            // announcements before deliveries: a driven clock's move is announced before the
            // advance is answered, so before the events published after it arrive
            biased;
            _ = stop.changed() => break,
            Some(registry) = reloads.recv() => ingestor.set_registry(registry),
            m = futures_next(&mut closed) => {
                let Some(m) = m else { break };
                let Ok(c) = serde_json::from_slice::<Closed>(&m.payload) else {
                    tracing::warn!("an unreadable cycle announcement; ignored");
                    continue;
                };
                confirm(&c, &mut awaiting, &mut ingestor, &stats, &mut time).await;
            }
            _ = flush.tick() => {
                // a driven clock not heard yet: an empty partial asks the leader for it
                if !held.is_empty() || time.now().is_none() {
                    hand_over(&client, key.as_ref(), &subject, &name, &stream, &mut held, &mut awaiting, &mut ingestor, &stats, &mut time).await;
                }
            }
            d = subscription.next(), if held.len() < max_held && time.now().is_some() => {
                let delivery = match d {
                    Ok(Some(d)) => d,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the mesh");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                stats.deliveries.fetch_add(1, Ordering::Relaxed);
                if delivery.message.subject.is_supervisor_output() {
                    let _ = delivery.ack().await;
                    continue;
                }
                let seq = delivery.stream_seq;
                // a redelivery of one held (its ack wait passed): keep the newest handle (a
                // first delivery cannot be held, so only redeliveries are looked up)
                if delivery.attempt > 1
                    && seq > 0
                    && let Some(h) = held.iter_mut().find(|h| h.seq == seq)
                {
                    h.delivery = delivery;
                    continue;
                }
                let Some(now) = time.now() else { continue };
                let verified = ingestor.verify(
                    &delivery.message.payload,
                    delivery.message.content_type.as_deref(),
                );
                let mut events = Vec::new();
                let outcome = ingestor.admit(verified, now, &mut |ev| {
                    Partial::check(ev).map_err(|e| e.to_string())?;
                    events.push((ev.clone(), now.millis()));
                    Ok(())
                });
                for r in outcome.results() {
                    match r {
                        Ok(_) => stats.accepted.fetch_add(1, Ordering::Relaxed),
                        Err(rej) => {
                            tracing::warn!(reason = rej.reason.as_str(), source = ?rej.source, id = ?rej.id, "event rejected: {}", rej.message);
                            stats.rejected.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                // held even with nothing to fold (all rejected, or copies of events held):
                // the leader records its sequence with the open cycle, as for a delivery it
                // reads itself, and it is acknowledged when that cycle closes (a copy
                // acknowledged earlier would take the original with it, were the leader to
                // fail before the close)
                held.push(Held { delivery, seq, events });
            }
        }
    }
    // stopping: what is not confirmed goes back to the stream for another worker
    for h in held.drain(..) {
        let _ = h.delivery.nak().await;
        stats.naked.fetch_add(1, Ordering::Relaxed);
    }
    for (_, ds) in std::mem::take(&mut awaiting.by_cycle) {
        for d in ds {
            let _ = d.nak().await;
            stats.naked.fetch_add(1, Ordering::Relaxed);
        }
    }
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    tracing::info!(
        worker = %name,
        deliveries = n(&stats.deliveries),
        accepted = n(&stats.accepted),
        rejected = n(&stats.rejected),
        merged = n(&stats.merged),
        acked = n(&stats.acked),
        handed_back = n(&stats.naked),
        "ingest worker stopped"
    );
    eprintln!(
        "metaloop ingest-worker {name} stopped: {} deliveries, {} events accepted, {} rejected, {} merged by leaders, {} deliveries acknowledged, {} handed back",
        n(&stats.deliveries),
        n(&stats.accepted),
        n(&stats.rejected),
        n(&stats.merged),
        n(&stats.acked),
        n(&stats.naked)
    );
    Ok(())
}

async fn futures_next(s: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    s.next().await
}

/// A leader heard from under `term`, its clock reading `now_ms`. Returns false for a stale
/// leader's term (an older lease epoch), which is ignored.
///
/// A new term: the deliveries merged under the old one and not confirmed were lost with the
/// open cycle. They go back to the stream, and the local dedupe forgets them so that their
/// redelivery is taken again.
async fn hear(
    term: &str,
    now_ms: Option<i64>,
    awaiting: &mut Awaiting,
    ingestor: &mut Ingestor,
    stats: &WorkerStats,
    time: &mut WorkerTime,
) -> bool {
    let now = std::time::Instant::now();
    if awaiting.is_stale(term, now) {
        tracing::warn!(term, following = %awaiting.term, "a stale leader's term (an older lease epoch); ignored");
        return false;
    }
    awaiting.heard_at = Some(now);
    if awaiting.term == term {
        time.heard(now_ms, false);
        return true;
    }
    time.heard(now_ms, true);
    let mut handed_back = 0;
    for (_, ds) in std::mem::take(&mut awaiting.by_cycle) {
        for d in ds {
            let _ = d.nak().await;
            handed_back += 1;
        }
    }
    if handed_back > 0 {
        stats.naked.fetch_add(handed_back, Ordering::Relaxed);
        tracing::info!(
            old = %awaiting.term,
            new = %term,
            handed_back,
            "a new leader term: unconfirmed deliveries handed back"
        );
    }
    let dedupe = ingestor.dedupe().config();
    *ingestor.dedupe_mut() = metaloop_mesh::ingest::DedupeWindow::new(dedupe);
    awaiting.term = term.to_string();
    true
}

/// A cycle closed: acknowledges the deliveries merged into it and earlier cycles.
async fn confirm(
    c: &Closed,
    awaiting: &mut Awaiting,
    ingestor: &mut Ingestor,
    stats: &WorkerStats,
    time: &mut WorkerTime,
) {
    if !hear(&c.term, c.now_ms, awaiting, ingestor, stats, time).await {
        return;
    }
    let later = awaiting.by_cycle.split_off(&c.closed);
    for (_, ds) in std::mem::replace(&mut awaiting.by_cycle, later) {
        for d in ds {
            if let Err(e) = d.ack().await {
                tracing::warn!(error = %e, "acknowledging a delivery");
            }
            stats.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends the held deliveries' partial to the leader until it is merged or the leader cannot
/// be reached (then they stay held for the next flush).
#[allow(clippy::too_many_arguments)]
async fn hand_over(
    client: &async_nats::Client,
    key: Option<&ed25519_dalek::SigningKey>,
    subject: &str,
    name: &str,
    stream: &str,
    held: &mut Vec<Held>,
    awaiting: &mut Awaiting,
    ingestor: &mut Ingestor,
    stats: &WorkerStats,
    time: &mut WorkerTime,
) {
    // a refusal names what is already taken; at most a few rounds
    for _ in 0..4 {
        // (an empty partial asks a driven clock's time)
        if held.is_empty() && time.now().is_some() {
            return;
        }
        let mut partial = Partial::default();
        let mut seqs = Vec::with_capacity(held.len());
        let mut keys = Vec::new();
        // one event held under two deliveries (a copy under another message id, a
        // redelivery) once this worker's dedupe window was reset by a new term between
        // them: only the first is folded, the other delivery goes with its sequence alone
        // (acknowledged with the cycle the first goes into, or sent again with it)
        let mut once = std::collections::HashSet::new();
        for h in held.iter_mut() {
            if h.seq > 0 {
                seqs.push(h.seq);
            }
            h.events.retain(|(ev, at)| {
                let key = event_key(&ev.source, &ev.id);
                if !once.insert(key) {
                    return false;
                }
                // checked when it was admitted
                let _ = partial.observe(ev);
                keys.push((Digest(key), *at));
                true
            });
        }
        let request = PartialRequest {
            worker: name.to_string(),
            stream: stream.to_string(),
            seqs,
            keys,
            partial,
        };
        let body = match serde_json::to_vec(&request) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "encoding a partial");
                return;
            }
        };
        let reply = match tokio::time::timeout(
            Duration::from_secs(10),
            client.request_with_headers(
                subject.to_string(),
                key.map(|k| sign_partial(k, &body)).unwrap_or_default(),
                body.into(),
            ),
        )
        .await
        {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "no leader took the partial; kept for the next flush");
                return;
            }
            Err(_) => {
                tracing::warn!("the leader did not answer within 10 s; the partial is kept");
                return;
            }
        };
        let reply: PartialReply = match serde_json::from_slice(&reply.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable answer from the leader");
                return;
            }
        };
        match reply {
            PartialReply::NotLeading { why } => {
                tracing::debug!(why, "the replica that answered does not lead");
                return;
            }
            PartialReply::Unauthenticated { why } => {
                tracing::error!(
                    why,
                    "the leader refused this worker's partial; it is kept (set mesh.worker_key_file to a key in the leader's mesh.worker_keys)"
                );
                return;
            }
            PartialReply::Merged {
                term,
                open,
                accepted,
                refused,
                now_ms,
            } => {
                if !hear(&term, now_ms, awaiting, ingestor, stats, time).await {
                    // merged into a stale leader's cycle, which will never close: kept
                    // for the leader of the current term
                    return;
                }
                for (id, why) in &refused {
                    tracing::warn!(id, "event refused by the supervisor: {why}");
                }
                stats.merged.fetch_add(accepted, Ordering::Relaxed);
                if !held.is_empty() {
                    let to = awaiting.by_cycle.entry(open).or_default();
                    to.extend(held.drain(..).map(|h| h.delivery));
                }
                return;
            }
            PartialReply::Refused {
                term,
                open,
                seqs_closed,
                seqs_open,
                keys_closed,
                keys_open,
                now_ms,
            } => {
                if !hear(&term, now_ms, awaiting, ingestor, stats, time).await {
                    return;
                }
                let keys_closed: std::collections::HashSet<u128> =
                    keys_closed.into_iter().map(|d| d.0).collect();
                let keys_open: std::collections::HashSet<u128> =
                    keys_open.into_iter().map(|d| d.0).collect();
                let mut kept = Vec::with_capacity(held.len());
                for mut h in held.drain(..) {
                    if seqs_closed.contains(&h.seq) {
                        let _ = h.delivery.ack().await;
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if seqs_open.contains(&h.seq) {
                        awaiting.by_cycle.entry(open).or_default().push(h.delivery);
                        continue;
                    }
                    let before = h.events.len();
                    if before == 0 {
                        // nothing to fold, its sequence not taken: sent again with the rest
                        kept.push(h);
                        continue;
                    }
                    let mut in_open = false;
                    h.events.retain(|(ev, _)| {
                        let k = event_key(&ev.source, &ev.id);
                        in_open |= keys_open.contains(&k);
                        !keys_closed.contains(&k) && !keys_open.contains(&k)
                    });
                    if h.events.is_empty() {
                        if in_open {
                            awaiting.by_cycle.entry(open).or_default().push(h.delivery);
                        } else {
                            let _ = h.delivery.ack().await;
                            stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        if h.events.len() < before {
                            tracing::debug!(
                                seq = h.seq,
                                "events already taken dropped from a delivery"
                            );
                        }
                        kept.push(h);
                    }
                }
                *held = kept;
            }
        }
    }
}

/// The leader's side: what it needs to merge a partial.
pub trait PartialSink: Send + Sync + 'static {
    fn merge(&self, request: PartialRequest) -> crate::runtime::BoxFuture<PartialReply>;
}

/// The worker keys a leader accepts partials signed by (`mesh.worker_keys`), shared with
/// the reload (SIGHUP, `POST /v1/admin/reload`) that replaces them.
#[derive(Debug, Clone, Default)]
pub struct WorkerKeys(Arc<std::sync::RwLock<Arc<Vec<ed25519_dalek::VerifyingKey>>>>);

impl WorkerKeys {
    pub fn new(keys: Vec<ed25519_dalek::VerifyingKey>) -> WorkerKeys {
        WorkerKeys(Arc::new(std::sync::RwLock::new(Arc::new(keys))))
    }

    /// The keys in force.
    pub fn get(&self) -> Arc<Vec<ed25519_dalek::VerifyingKey>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `keys` in force for the next partial.
    pub fn set(&self, keys: Vec<ed25519_dalek::VerifyingKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }
}

/// Answers workers' partials on `subject` until the returned task is aborted; each partial
/// is checked against the worker keys in force when it arrives.
pub fn serve_partials(
    client: async_nats::Client,
    subject: String,
    sink: Arc<dyn PartialSink>,
    worker_keys: WorkerKeys,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut requests = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, subject, "cannot take partials from ingest workers");
                return;
            }
        };
        while let Some(m) = requests.next().await {
            let Some(reply_to) = m.reply.clone() else {
                continue;
            };
            let reply = match check_partial(&worker_keys.get(), m.headers.as_ref(), &m.payload) {
                Err(why) => {
                    tracing::warn!(
                        why,
                        "a partial not signed by an accepted worker key; refused"
                    );
                    PartialReply::Unauthenticated { why }
                }
                Ok(()) => match serde_json::from_slice::<PartialRequest>(&m.payload) {
                    Ok(req) => sink.merge(req).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "an unreadable partial; refused");
                        PartialReply::NotLeading {
                            why: format!("unreadable partial: {e}"),
                        }
                    }
                },
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %e, "answering an ingest worker");
            }
        }
    })
}

/// How long an announcement may wait for the NATS server: a server away must not hold up
/// the leader's cycles.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);

/// Announces a leader's term, its cycles closed and its clock to the workers, and waits
/// (at most [`ANNOUNCE_WAIT`]) until the server has it, so that whatever the caller does
/// next reaches workers after it.
pub async fn announce_closed(client: &async_nats::Client, subject: &str, closed: Closed) {
    let body = serde_json::to_vec(&closed).unwrap_or_default();
    let sent = tokio::time::timeout(ANNOUNCE_WAIT, async {
        client
            .publish(format!("{subject}.closed"), body.into())
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "announcing a closed cycle to the ingest workers")
        }
        Err(_) => tracing::warn!(
            "announcing a closed cycle to the ingest workers: the NATS server did not confirm within {} s",
            ANNOUNCE_WAIT.as_secs()
        ),
    }
}

/// The leader's bookkeeping of what the open cycle took from workers: event digests not yet
/// in the dedupe window (they move there when their cycle is durable, so that a crash before
/// then never makes a redelivery look like a duplicate).
#[derive(Default)]
pub struct OpenKeys {
    /// digest → (cycles closed when it was merged, accepted at ms)
    pub keys: HashMap<u128, (u64, i64)>,
}

impl OpenKeys {
    /// The digests merged before `closed` cycles had closed, now durable: removed and returned.
    pub fn take_closed(&mut self, closed: u64) -> Vec<(u128, i64)> {
        let mut out = Vec::new();
        self.keys.retain(|k, (cycle, at)| {
            if *cycle < closed {
                out.push((*k, *at));
                false
            } else {
                true
            }
        });
        out.sort_by_key(|&(_, at)| at);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_are_accepted_only_signed_by_a_worker_key() {
        let worker = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let accepted = vec![worker.verifying_key()];
        let body = br#"{"worker":"w1","stream":"S","seqs":[1],"keys":[],"partial":{}}"#;
        let signed = sign_partial(&worker, body);
        assert_eq!(check_partial(&accepted, Some(&signed), body), Ok(()));
        // no keys configured: not authenticated, anything goes
        assert_eq!(check_partial(&[], None, body), Ok(()));
        let err = check_partial(&accepted, None, body).unwrap_err();
        assert!(err.starts_with("unsigned"), "{err}");
        let err = check_partial(&accepted, Some(&sign_partial(&stranger, body)), body).unwrap_err();
        assert!(err.contains("not in mesh.worker_keys"), "{err}");
        // one byte changed after signing
        let mut changed = body.to_vec();
        changed[30] = b'2';
        let err = check_partial(&accepted, Some(&signed), &changed).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        // the worker's key named, another key's signature
        let mut forged = signed.clone();
        forged.insert(
            SIGNATURE_HEADER,
            sign_partial(&stranger, body)
                .get(SIGNATURE_HEADER)
                .unwrap()
                .as_str(),
        );
        assert!(check_partial(&accepted, Some(&forged), body).is_err());
        let mut garbled = signed.clone();
        garbled.insert(SIGNATURE_HEADER, "zz");
        let err = check_partial(&accepted, Some(&garbled), body).unwrap_err();
        assert!(err.contains("not 64 bytes"), "{err}");
        // a signature over the bytes alone (without the context) is not a partial's
        use ed25519_dalek::Signer;
        let mut bare = signed.clone();
        bare.insert(
            SIGNATURE_HEADER,
            metaloop_ledger::hex::encode(&worker.sign(body).to_bytes()).as_str(),
        );
        assert!(check_partial(&accepted, Some(&bare), body).is_err());
    }

    #[test]
    fn replies_with_digests_read_back_as_sent() {
        let reply = PartialReply::Refused {
            term: "t#1".into(),
            open: 3,
            seqs_closed: vec![1, 2],
            seqs_open: vec![9],
            keys_closed: vec![Digest(u128::MAX)],
            keys_open: vec![Digest(0x0123_4567_89ab_cdef_0011_2233_4455_6677)],
            now_ms: Some(1_767_225_600_000),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(
            text.contains("\"0123456789abcdef0011223344556677\""),
            "{text}"
        );
        let back: PartialReply = serde_json::from_str(&text).unwrap();
        assert_eq!(back, reply);
        assert!(serde_json::from_str::<Digest>("\"12\"").is_err());
    }

    #[test]
    fn terms_of_an_older_epoch_are_stale() {
        assert_eq!(term_epoch("replica-a#7#00000000000000ff"), Some(7));
        // a replica name may hold '#': the epoch is the second field from the end
        assert_eq!(term_epoch("node#1#12#00000000000000ff"), Some(12));
        assert_eq!(term_epoch("no epoch"), None);
        assert_eq!(term_epoch("a#x#1"), None);
        let now = std::time::Instant::now();
        let mut awaiting = Awaiting::default();
        // nothing followed yet: no term is stale
        assert!(!awaiting.is_stale("b#1#2", now));
        awaiting.term = "b#5#ab".into();
        awaiting.heard_at = Some(now);
        assert!(awaiting.is_stale("a#4#cd", now));
        assert!(
            !awaiting.is_stale("a#5#cd", now),
            "the same epoch: a restart alone"
        );
        assert!(!awaiting.is_stale("c#6#ef", now));
        assert!(!awaiting.is_stale("unreadable", now));
        // the followed leader silent past the grace: an older epoch is taken again (a
        // ledger started afresh)
        assert!(awaiting.is_stale("a#4#cd", now + STALE_GRACE / 2));
        assert!(!awaiting.is_stale("a#1#cd", now + STALE_GRACE));
    }

    #[test]
    fn a_driven_time_is_the_leaders_and_moves_forward_within_a_term() {
        let mut t = WorkerTime::Driven(None);
        assert_eq!(t.now(), None);
        t.heard(None, false);
        assert_eq!(t.now(), None);
        t.heard(Some(2_000), false);
        assert_eq!(t.now(), Some(Timestamp(2_000)));
        // an older answer of the same term arriving late changes nothing
        t.heard(Some(1_000), false);
        assert_eq!(t.now(), Some(Timestamp(2_000)));
        t.heard(Some(3_000), false);
        assert_eq!(t.now(), Some(Timestamp(3_000)));
        // a new term's clock is taken as it is, even if earlier
        t.heard(Some(2_500), true);
        assert_eq!(t.now(), Some(Timestamp(2_500)));
        // the wall clock is this machine's, whatever a leader says
        let mut w = WorkerTime::Wall;
        w.heard(Some(5), true);
        assert!(w.now().unwrap() > Timestamp(5));
    }

    #[test]
    fn announcements_and_answers_without_a_clock_still_read() {
        let c: Closed = serde_json::from_str(r#"{"term":"a#1#2","closed":3}"#).unwrap();
        assert_eq!(c.now_ms, None);
        let text = serde_json::to_string(&Closed {
            term: "a#1#2".into(),
            closed: 3,
            now_ms: Some(1_767_225_600_000),
        })
        .unwrap();
        assert!(text.contains("\"now_ms\":1767225600000"), "{text}");
        let r: PartialReply = serde_json::from_str(
            r#"{"outcome":"merged","term":"a#1#2","open":3,"accepted":0,"refused":[]}"#,
        )
        .unwrap();
        assert!(matches!(r, PartialReply::Merged { now_ms: None, .. }));
    }

    #[test]
    fn digests_of_closed_cycles_leave_the_open_set_oldest_first() {
        let mut k = OpenKeys::default();
        k.keys.insert(1, (0, 30));
        k.keys.insert(2, (0, 10));
        k.keys.insert(3, (1, 20));
        assert_eq!(k.take_closed(1), vec![(2, 10), (1, 30)]);
        assert_eq!(k.keys.len(), 1);
        assert_eq!(k.take_closed(2), vec![(3, 20)]);
        assert!(k.keys.is_empty());
    }
}
