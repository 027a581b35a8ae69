//! Group commit and signed checkpoints: one writer task in front of a [`LedgerStore`].
//!
//! Callers check and canonicalise their records on their own task ([`PreparedRecord`]), then
//! queue them on a bounded channel; the writer task takes everything queued (up to a maximum
//! batch) and writes it with **one** `store.append_prepared` call — one transaction, one
//! fsync — then answers each caller with its own records. So a thousand concurrent appends
//! cost a handful of fsyncs instead of a thousand, and every append still returns only once
//! it is durable. Callers answered together come back together: before committing, the task
//! waits up to a short window ([`DEFAULT_GATHER_WINDOW`]) for as many callers as its last
//! commit answered, so that they share the next fsync instead of splitting into two.
//!
//! With a signing key, the task also keeps the compact Merkle frontier of the record hashes
//! (O(log n) hashes, primed once at spawn) and signs a [`Checkpoint`] every N records, every
//! T seconds if records were added, and at shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::checkpoint::{Checkpoint, key_id};
use crate::error::LedgerError;
use crate::hex;
use crate::merkle::{Frontier, Hash};
use crate::record::{NewRecord, PreparedRecord, Record};
use crate::store::LedgerStore;

/// Records per store call at most (a caller's batch larger than this is written alone, whole).
pub const DEFAULT_MAX_BATCH: usize = 4_096;

/// Requests that may wait in the queue before callers wait to enqueue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1_024;

/// How long the writer may wait for the callers of its last commit to append again.
pub const DEFAULT_GATHER_WINDOW: Duration = Duration::from_micros(200);

/// A checkpoint is signed once this many records were added since the last one.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1_000;

/// A checkpoint is signed this long after the last one, if records were added: the time
/// bound on the tail that only the hash chain covers when records arrive slowly.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Records read per query when priming the Merkle frontier.
const PRIME_PAGE: u32 = 10_000;

/// Why an append, a checkpoint or a shutdown did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriterError {
    /// The store refused or failed the batch this append was part of (shared by every caller
    /// of that batch), or a caller's own record was invalid; nothing of the batch was
    /// written, unless the failure was in the commit itself, whose outcome a database cannot
    /// always report.
    #[error(transparent)]
    Store(Arc<LedgerError>),
    /// The writer was shut down (or its task ended) before answering.
    #[error("the ledger writer has stopped")]
    Stopped,
}

impl WriterError {
    fn store(e: LedgerError) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// A callback given each checkpoint once it is stored.
pub type CheckpointHook = Box<dyn FnMut(&Checkpoint) + Send>;

/// A clock giving milliseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// How a [`LedgerWriter`] batches and checkpoints.
pub struct WriterOptions {
    max_batch: usize,
    queue_capacity: usize,
    gather_window: Duration,
    signing_key: Option<SigningKey>,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    on_checkpoint: Option<CheckpointHook>,
    clock: Clock,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            gather_window: DEFAULT_GATHER_WINDOW,
            signing_key: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            on_checkpoint: None,
            clock: Box::new(system_time_ms),
        }
    }
}

impl fmt::Debug for WriterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterOptions")
            .field("max_batch", &self.max_batch)
            .field("queue_capacity", &self.queue_capacity)
            .field("gather_window", &self.gather_window)
            .field(
                "signing_key",
                &self
                    .signing_key
                    .as_ref()
                    .map(|k| key_id(&k.verifying_key())),
            )
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("on_checkpoint", &self.on_checkpoint.is_some())
            .finish_non_exhaustive()
    }
}

impl WriterOptions {
    /// The defaults: batches of up to [`DEFAULT_MAX_BATCH`] records, no signing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records per store call at most (at least 1).
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }

    /// Requests that may wait in the queue (at least 1).
    pub fn queue_capacity(mut self, requests: usize) -> Self {
        self.queue_capacity = requests.max(1);
        self
    }

    /// How long a commit may wait, at most, for as many callers as the last commit answered
    /// (zero: commit whatever is queued at once).
    pub fn gather_window(mut self, window: Duration) -> Self {
        self.gather_window = window;
        self
    }

    /// Signs checkpoints with `key`.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Signs a checkpoint once `records` were added since the last one (at least 1).
    pub fn checkpoint_every(mut self, records: u64) -> Self {
        self.checkpoint_every = records.max(1);
        self
    }

    /// Signs a checkpoint `interval` after the last one if records were added.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Calls `hook` with each checkpoint once it is stored (on the writer task: keep it quick,
    /// e.g. send it on a channel).
    pub fn on_checkpoint(mut self, hook: impl FnMut(&Checkpoint) + Send + 'static) -> Self {
        self.on_checkpoint = Some(Box::new(hook));
        self
    }

    /// Takes checkpoint times from `clock` (ms since the epoch) instead of the system clock.
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }
}

fn system_time_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

type Reply<T> = oneshot::Sender<Result<T, WriterError>>;

struct Pending {
    records: Vec<PreparedRecord>,
    reply: Reply<Vec<Record>>,
}

enum Request {
    Append(Pending),
    Checkpoint(Reply<Option<Checkpoint>>),
    Shutdown(Reply<Option<Checkpoint>>),
}

/// What a writer has committed so far (see [`LedgerWriter::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Store calls that committed (one transaction and one fsync each).
    pub commits: u64,
    /// Records those commits wrote.
    pub records: u64,
}

impl WriterStats {
    /// Records per commit on average (0 before the first commit).
    pub fn records_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.records as f64 / self.commits as f64
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    records: AtomicU64,
}

/// A handle on the writer task; clone it freely, every clone feeds the same task.
#[derive(Debug, Clone)]
pub struct LedgerWriter {
    tx: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

impl LedgerWriter {
    /// Starts the writer task in front of `store` (must run inside a tokio runtime).
    ///
    /// With a signing key, first reads every stored record's hash once, in pages, to prime the
    /// Merkle frontier, and refuses to start if the stored records no longer match the latest
    /// stored checkpoint (its head or Merkle root differs, or it covers records that are gone):
    /// signing on top of a tampered ledger would bury the evidence.
    pub async fn spawn(
        store: Arc<dyn LedgerStore>,
        options: WriterOptions,
    ) -> Result<Self, LedgerError> {
        let WriterOptions {
            max_batch,
            queue_capacity,
            gather_window,
            signing_key,
            checkpoint_every,
            checkpoint_interval,
            on_checkpoint,
            clock,
        } = options;
        let signer = match signing_key {
            Some(key) => {
                let mut signer = Signer {
                    key,
                    every: checkpoint_every,
                    interval: checkpoint_interval,
                    on_checkpoint,
                    clock,
                    tree: Tree::default(),
                    last_checkpoint: 0,
                    last_attempt: 0,
                    due: Instant::now() + checkpoint_interval,
                    stale: false,
                };
                signer.prime(&*store).await?;
                Some(signer)
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(queue_capacity);
        let counters = Arc::new(Counters::default());
        let task = Task {
            store,
            max_batch,
            signer,
            counters: counters.clone(),
            expected_callers: 1,
            gather_window,
        };
        tokio::spawn(task.run(rx));
        Ok(Self { tx, counters })
    }

    /// Commits and records written so far by the writer task behind this handle.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            records: self.counters.records.load(Ordering::Relaxed),
        }
    }

    /// Appends one record; returns it as stored, once durable.
    pub async fn append(&self, record: NewRecord) -> Result<Record, WriterError> {
        let mut stored = self.append_batch(vec![record]).await?;
        Ok(stored.remove(0))
    }

    /// Appends `records` contiguously and atomically (all or none, with consecutive seqs);
    /// returns them as stored, once durable. An empty batch returns at once.
    ///
    /// Invalid records are refused here, before queueing, so they fail only this caller. If
    /// the caller stops waiting, the records are still written.
    pub async fn append_batch(&self, records: Vec<NewRecord>) -> Result<Vec<Record>, WriterError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let records = PreparedRecord::prepare(records).map_err(WriterError::store)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Append(Pending { records, reply }))
            .await
            .map_err(|_| WriterError::Stopped)?;
        answer.await.map_err(|_| WriterError::Stopped)?
    }

    /// Signs a checkpoint now, after the appends queued before this call, if records were
    /// added since the last one; `None` without a signing key or new records.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, WriterError> {
        self.request(Request::Checkpoint).await
    }

    /// Requests waiting in the queue now (a gauge for metrics).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Writes everything queued before this call, signs a final checkpoint (returned, if one
    /// was made) and stops the task. Appends queued after it, and later calls on any clone,
    /// fail with [`WriterError::Stopped`].
    pub async fn shutdown(self) -> Result<Option<Checkpoint>, WriterError> {
        self.request(Request::Shutdown).await
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| WriterError::Stopped)?;
        answer.await.map_err(|_| WriterError::Stopped)?
    }
}

struct Task {
    store: Arc<dyn LedgerStore>,
    max_batch: usize,
    signer: Option<Signer>,
    counters: Arc<Counters>,
    /// Callers the last commit answered: how many to wait for while gathering.
    expected_callers: usize,
    /// How long gathering may wait for them.
    gather_window: Duration,
}

/// The appends being assembled into one commit.
struct Group {
    pending: Vec<Pending>,
    records: usize,
}

impl Group {
    fn new(first: Pending) -> Self {
        Self {
            records: first.records.len(),
            pending: vec![first],
        }
    }
}

impl Task {
    /// Adds queued appends to `group` until it holds `max_batch` records or the queue is
    /// empty; returns a request that could not join (another kind, or one too big).
    ///
    /// Callers answered by the last commit come back with their next append a moment later,
    /// all together; taking only those already queued would split them into a small commit
    /// and a large one, every time. So while the group has fewer callers than the last commit
    /// answered, the task yields to let them run, for at most `gather_window`.
    async fn gather(
        &mut self,
        group: &mut Group,
        rx: &mut mpsc::Receiver<Request>,
    ) -> Option<Request> {
        let deadline = std::time::Instant::now() + self.gather_window;
        loop {
            while group.records < self.max_batch {
                match rx.try_recv() {
                    Ok(Request::Append(next))
                        if group.records + next.records.len() <= self.max_batch =>
                    {
                        group.records += next.records.len();
                        group.pending.push(next);
                    }
                    Ok(other) => return Some(other),
                    Err(_) => break,
                }
            }
            if group.records >= self.max_batch
                || group.pending.len() >= self.expected_callers
                || std::time::Instant::now() >= deadline
            {
                return None;
            }
            tokio::task::yield_now().await;
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        // A request taken from the queue that did not fit the batch being assembled.
        let mut held: Option<Request> = None;
        loop {
            let request = match held.take() {
                Some(request) => request,
                None => {
                    let due = self.signer.as_ref().map(|s| s.due);
                    tokio::select! {
                        request = rx.recv() => match request {
                            Some(request) => request,
                            None => {
                                // Every handle is gone: sign what is left and stop.
                                self.checkpoint_logged().await;
                                return;
                            }
                        },
                        () = sleep_until(due), if due.is_some() => {
                            self.checkpoint_logged().await;
                            continue;
                        }
                    }
                }
            };
            match request {
                Request::Append(first) => {
                    let mut group = Group::new(first);
                    held = self.gather(&mut group, &mut rx).await;
                    self.expected_callers = group.pending.len();
                    self.commit(group.pending).await;
                }
                Request::Checkpoint(reply) => {
                    let _ = reply.send(self.checkpoint().await);
                }
                Request::Shutdown(reply) => {
                    rx.close();
                    while let Ok(late) = rx.try_recv() {
                        match late {
                            Request::Append(p) => {
                                let _ = p.reply.send(Err(WriterError::Stopped));
                            }
                            Request::Checkpoint(r) => {
                                let _ = r.send(Err(WriterError::Stopped));
                            }
                            Request::Shutdown(r) => {
                                let _ = r.send(Ok(None));
                            }
                        }
                    }
                    let _ = reply.send(self.checkpoint().await);
                    return;
                }
            }
        }
    }

    /// Writes the group's records in one store call and answers every caller.
    async fn commit(&mut self, mut group: Vec<Pending>) {
        let sizes: Vec<usize> = group.iter().map(|p| p.records.len()).collect();
        let batch: Vec<PreparedRecord> = group
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.records))
            .collect();
        match self.store.append_prepared(batch).await {
            Ok(stored) => {
                debug_assert_eq!(stored.len(), sizes.iter().sum::<usize>());
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .records
                    .fetch_add(stored.len() as u64, Ordering::Relaxed);
                if let Some(signer) = &mut self.signer {
                    signer.absorb(&*self.store, &stored).await;
                }
                let mut stored = stored.into_iter();
                for (pending, size) in group.into_iter().zip(sizes) {
                    let mine: Vec<Record> = stored.by_ref().take(size).collect();
                    let _ = pending.reply.send(Ok(mine));
                }
                if self.signer.as_ref().is_some_and(Signer::is_due) {
                    self.checkpoint_logged().await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, callers = group.len(), "ledger append failed");
                let e = Arc::new(e);
                for pending in group {
                    let _ = pending.reply.send(Err(WriterError::Store(e.clone())));
                }
                // If the failed commit landed after all, the next successful one starts past the
                // tree's end and `absorb` reads the missing records; until then checkpoints
                // cover the records the tree has, which is still a true statement.
            }
        }
    }

    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, WriterError> {
        match &mut self.signer {
            Some(signer) => signer.checkpoint(&*self.store).await,
            None => Ok(None),
        }
    }

    /// A checkpoint nobody waits for: a failure is logged and retried at the next trigger.
    async fn checkpoint_logged(&mut self) {
        if let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "signing a ledger checkpoint failed; will retry");
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// The Merkle frontier of the record hashes and the hash of the last record in it.
#[derive(Debug, Default)]
struct Tree {
    frontier: Frontier,
    head: Hash,
}

impl Tree {
    /// Reads records from `size + 1` on (up to `until`, if given), pushing their hashes.
    /// Calls `at` after each record with the tree so far.
    async fn extend(
        &mut self,
        store: &dyn LedgerStore,
        until: Option<u64>,
        mut at: impl FnMut(&Tree) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        loop {
            let next = self.frontier.size() + 1;
            let limit = match until {
                Some(until) if until < next => return Ok(()),
                Some(until) => {
                    u32::try_from(until - next + 1).map_or(PRIME_PAGE, |n| n.min(PRIME_PAGE))
                }
                None => PRIME_PAGE,
            };
            let page = store.read_stored(next as i64, limit).await?;
            let full = page.len() == limit as usize;
            for stored in page {
                let expected = self.frontier.size() + 1;
                let corrupt = |detail: String| LedgerError::Corrupt {
                    seq: stored.seq,
                    detail,
                };
                if stored.seq != expected as i64 {
                    return Err(corrupt(format!(
                        "expected record {expected} here while reading the record hashes"
                    )));
                }
                let hash: Hash =
                    stored.hash.as_slice().try_into().map_err(|_| {
                        corrupt(format!("hash is {} bytes, not 32", stored.hash.len()))
                    })?;
                self.frontier.push(&hash);
                self.head = hash;
                at(self)?;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

struct Signer {
    key: SigningKey,
    every: u64,
    interval: Duration,
    on_checkpoint: Option<CheckpointHook>,
    clock: Clock,
    tree: Tree,
    /// Seq of the newest stored checkpoint (0 if none).
    last_checkpoint: u64,
    /// Seq of the last checkpoint tried, stored or not (so a failing one is retried after
    /// another `every` records, not after every batch).
    last_attempt: u64,
    /// When the interval trigger fires next.
    due: Instant,
    /// The tree is out of step with the ledger (records it could not read, or a ledger that
    /// went backwards): rebuild it from the store before signing.
    stale: bool,
}

impl Signer {
    /// Builds the tree from every stored record, checking it against the latest checkpoint.
    async fn prime(&mut self, store: &dyn LedgerStore) -> Result<(), LedgerError> {
        let latest = store.latest_checkpoint().await?;
        let mut tree = Tree::default();
        tree.extend(store, None, |tree| match &latest {
            Some(cp) if cp.seq == tree.frontier.size() => check_against(cp, tree),
            _ => Ok(()),
        })
        .await?;
        if let Some(cp) = &latest
            && cp.seq > tree.frontier.size()
        {
            return Err(LedgerError::Corrupt {
                seq: i64::try_from(cp.seq).unwrap_or(i64::MAX),
                detail: format!(
                    "truncated: checkpoint {} covers records the ledger no longer has \
                     (it ends at record {})",
                    cp.seq,
                    tree.frontier.size()
                ),
            });
        }
        self.tree = tree;
        self.last_checkpoint = latest.map_or(0, |cp| cp.seq);
        self.last_attempt = self.last_attempt.max(self.last_checkpoint);
        self.stale = false;
        Ok(())
    }

    /// Adds freshly committed records to the tree, reading any it missed first.
    async fn absorb(&mut self, store: &dyn LedgerStore, records: &[Record]) {
        let Some(first) = records.first() else {
            return;
        };
        if self.stale {
            return;
        }
        let expected = self.tree.frontier.size() + 1;
        if first.seq > expected {
            // Someone else (another process) appended in between: read what we missed.
            if let Err(e) = self
                .tree
                .extend(store, Some(first.seq - 1), |_| Ok(()))
                .await
            {
                tracing::warn!(error = %e, "reading records appended by another writer failed");
                self.stale = true;
                return;
            }
        }
        if first.seq != self.tree.frontier.size() + 1 {
            tracing::warn!(
                seq = first.seq,
                expected = self.tree.frontier.size() + 1,
                "ledger records out of step with the checkpoint tree; rebuilding it"
            );
            self.stale = true;
            return;
        }
        for record in records {
            self.tree.frontier.push(&record.hash);
            self.tree.head = record.hash;
        }
    }

    fn is_due(&self) -> bool {
        let size = self.tree.frontier.size();
        size > self.last_checkpoint
            && (size.saturating_sub(self.last_attempt) >= self.every || Instant::now() >= self.due)
    }

    async fn checkpoint(
        &mut self,
        store: &dyn LedgerStore,
    ) -> Result<Option<Checkpoint>, WriterError> {
        self.due = Instant::now() + self.interval;
        if self.stale {
            self.prime(store).await.map_err(WriterError::store)?;
        }
        let seq = self.tree.frontier.size();
        if seq == 0 || seq <= self.last_checkpoint {
            return Ok(None);
        }
        self.last_attempt = seq;
        let checkpoint = Checkpoint::sign(
            &self.key,
            seq,
            (self.clock)(),
            self.tree.head,
            self.tree.frontier.root(),
        );
        store
            .append_checkpoint(checkpoint.clone())
            .await
            .map_err(WriterError::store)?;
        self.last_checkpoint = seq;
        // The same checkpoint as a C2SP signed note; a ledger whose role may not store it
        // (an older deployment's grants) keeps its checkpoints without one.
        let note = crate::note::CheckpointNote {
            origin: crate::note::ledger_origin(&self.key.verifying_key()),
            size: seq,
            root: checkpoint.merkle_root,
        };
        let signature = crate::note::ledger_signer(&self.key).sign(&note.text(), 0);
        if let Err(e) = store.append_note_signatures(seq, vec![signature]).await {
            tracing::warn!(seq, error = %e, "storing the checkpoint's note signature failed");
        }
        tracing::info!(
            seq,
            merkle_root = %hex::encode(&checkpoint.merkle_root),
            "ledger checkpoint signed"
        );
        if let Some(hook) = &mut self.on_checkpoint {
            hook(&checkpoint);
        }
        Ok(Some(checkpoint))
    }
}

/// Checks that the tree (of exactly `cp.seq` records) matches a stored checkpoint.
fn check_against(cp: &Checkpoint, tree: &Tree) -> Result<(), LedgerError> {
    let corrupt = |detail: String| LedgerError::Corrupt {
        seq: i64::try_from(cp.seq).unwrap_or(i64::MAX),
        detail,
    };
    if cp.head != tree.head {
        return Err(corrupt(format!(
            "its hash {} is not the head {} signed by checkpoint {}",
            hex::encode(&tree.head),
            hex::encode(&cp.head),
            cp.seq
        )));
    }
    let root = tree.frontier.root();
    if cp.merkle_root != root {
        return Err(corrupt(format!(
            "records 1..={} have Merkle root {}, not the root {} signed by checkpoint {}",
            cp.seq,
            hex::encode(&root),
            hex::encode(&cp.merkle_root),
            cp.seq
        )));
    }
    Ok(())
}
