//! The group-commit writer, on every backend: concurrent appends coalesce into few store
//! calls, stay gap-free and contiguous per caller, fail together when their batch fails, and
//! are flushed and checkpointed at shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use metaloop_ledger::merkle::root;
use metaloop_ledger::{
    BoxFuture, Checkpoint, LedgerError, LedgerStore, LedgerWriter, NewRecord, PreparedRecord,
    Record, StoredRecord, WriterError, WriterOptions, verify, verify_with_checkpoints,
};
use serde_json::json;
use tokio::sync::Semaphore;

use super::Backend;

/// The backend's ledger behind a wrapper that counts `append` calls, can hold them at a gate and
/// can fail chosen calls.
struct Probe {
    inner: Arc<dyn LedgerStore>,
    calls: AtomicUsize,
    /// Records per `append` call, in call order.
    batches: Mutex<Vec<usize>>,
    /// Calls (numbered from 1) that fail without writing.
    failing: Mutex<HashSet<usize>>,
    /// Calls that write, then report a failure (a commit whose outcome was lost).
    landing: Mutex<HashSet<usize>>,
    /// When set, each call waits for a permit.
    gate: Option<Semaphore>,
}

impl Probe {
    fn new<B: Backend>(backend: &B, gated: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: backend.store(),
            calls: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
            failing: Mutex::new(HashSet::new()),
            landing: Mutex::new(HashSet::new()),
            gate: gated.then(|| Semaphore::new(0)),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }

    fn open_gate(&self) {
        if let Some(gate) = &self.gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }
}

impl LedgerStore for Probe {
    fn append_prepared(
        &self,
        batch: Vec<PreparedRecord>,
    ) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.batches.lock().unwrap().push(batch.len());
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if self.failing.lock().unwrap().contains(&call) {
                return Err(LedgerError::Storage {
                    operation: "appending records",
                    source: sqlx::Error::PoolTimedOut,
                });
            }
            let stored = self.inner.append_prepared(batch).await?;
            if self.landing.lock().unwrap().contains(&call) {
                return Err(LedgerError::Storage {
                    operation: "committing appended records",
                    source: sqlx::Error::PoolTimedOut,
                });
            }
            Ok(stored)
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<Option<metaloop_ledger::Head>, LedgerError>> {
        self.inner.head()
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, LedgerError>> {
        self.inner.count()
    }

    fn read_stored(
        &self,
        from_seq: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredRecord>, LedgerError>> {
        self.inner.read_stored(from_seq, limit)
    }

    fn append_checkpoint(&self, checkpoint: Checkpoint) -> BoxFuture<'_, Result<(), LedgerError>> {
        self.inner.append_checkpoint(checkpoint)
    }

    fn checkpoints(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Checkpoint>, LedgerError>> {
        self.inner.checkpoints(after_seq, limit)
    }

    fn latest_checkpoint(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, LedgerError>> {
        self.inner.latest_checkpoint()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
}

fn record(caller: usize, i: usize) -> NewRecord {
    NewRecord::new(
        1_767_225_600_000 + i as i64,
        "supervisor",
        "directive.issued",
        format!("caller/{caller}/{i}"),
        json!({"caller": caller, "i": i}),
    )
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// Waits (up to 10 s) until `ready` holds.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn concurrent_appends_coalesce_into_one_store_call<B: Backend>() {
    const CALLERS: usize = 64;
    let backend = B::create().await;
    let probe = Probe::new(&backend, true);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new())
        .await
        .unwrap();
    let spawn = |caller: usize| {
        let writer = writer.clone();
        tokio::spawn(async move { writer.append(record(caller, 0)).await })
    };
    // The first store call is held at the gate; everyone else queues behind it.
    let mut tasks = vec![spawn(0)];
    until("the first call", || probe.calls() == 1).await;
    tasks.extend((1..CALLERS).map(spawn));
    until("all other callers queued", || {
        writer.queued() == CALLERS - 1
    })
    .await;
    probe.open_gate();
    let mut seqs = Vec::new();
    for task in tasks {
        let stored = task.await.unwrap().unwrap();
        assert_eq!(stored.compute_hash().unwrap(), stored.hash);
        seqs.push(stored.seq);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=CALLERS as u64).collect::<Vec<_>>());
    // Everything that queued while the first call was in flight went in one more call.
    assert_eq!(probe.batches(), [1, CALLERS - 1]);
    assert_eq!(probe.batches().iter().sum::<usize>(), CALLERS);
    assert_eq!(
        verify(&*probe, |_, _| {}).await.unwrap().records,
        CALLERS as u64
    );
}

pub async fn callers_answered_together_are_committed_together<B: Backend>() {
    const CALLERS: usize = 16;
    const ROUNDS: usize = 20;
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    // A generous window, so a loaded machine slow to run the callers cannot split a round.
    let options = WriterOptions::new().gather_window(Duration::from_millis(500));
    let writer = LedgerWriter::spawn(probe.clone(), options).await.unwrap();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for i in 0..ROUNDS {
                    writer.append(record(caller, i)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let batches = probe.batches();
    assert_eq!(batches.iter().sum::<usize>(), CALLERS * ROUNDS);
    // Without waiting for the callers of the last commit, the rounds split into a small and
    // a large commit (alternating cohorts). With it, once every caller has been answered by
    // one commit, each round is one commit of all of them.
    let whole_rounds = batches.iter().filter(|&&n| n == CALLERS).count();
    assert!(whole_rounds >= ROUNDS / 2, "commits: {batches:?}");
    let stats = writer.stats();
    assert_eq!(stats.commits as usize, batches.len());
    assert_eq!(stats.records as usize, CALLERS * ROUNDS);
    assert!(
        stats.records_per_commit() > (CALLERS / 2) as f64,
        "{stats:?}"
    );
    assert_eq!(
        verify(&*probe, |_, _| {}).await.unwrap().records,
        (CALLERS * ROUNDS) as u64
    );
}

pub async fn batches_stay_contiguous_and_seqs_gap_free_under_concurrency<B: Backend>() {
    const CALLERS: usize = 64;
    const ROUNDS: usize = 5;
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new().max_batch(40))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for round in 0..ROUNDS {
                    let size = (caller + round) % 5 + 1;
                    let batch = (0..size).map(|i| record(caller, round * 10 + i)).collect();
                    let stored = writer.append_batch(batch).await.unwrap();
                    assert_eq!(stored.len(), size);
                    for (i, pair) in stored.windows(2).enumerate() {
                        assert_eq!(pair[1].seq, pair[0].seq + 1, "caller {caller} record {i}");
                        assert_eq!(pair[1].prev_hash, pair[0].hash);
                    }
                    for (i, r) in stored.iter().enumerate() {
                        assert_eq!(r.resource, format!("caller/{caller}/{}", round * 10 + i));
                    }
                    mine.extend(stored.into_iter().map(|r| r.seq));
                }
                mine
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort();
    let total = seqs.len() as u64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert!(
        probe.batches().iter().all(|&n| n <= 40),
        "{:?}",
        probe.batches()
    );
    assert!(
        probe.calls() < CALLERS * ROUNDS,
        "no coalescing: {} calls",
        probe.calls()
    );
    assert_eq!(verify(&*probe, |_, _| {}).await.unwrap().records, total);
}

pub async fn a_batch_larger_than_the_maximum_is_written_whole<B: Backend>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new().max_batch(4))
        .await
        .unwrap();
    let stored = writer
        .append_batch((0..10).map(|i| record(0, i)).collect())
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(probe.batches(), [10]);
    assert!(writer.append_batch(Vec::new()).await.unwrap().is_empty());
    assert_eq!(probe.calls(), 1, "an empty batch never reaches the store");
}

pub async fn a_failing_store_call_fails_every_caller_of_its_batch_and_the_writer_goes_on<
    B: Backend,
>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, true);
    probe.failing.lock().unwrap().insert(2);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new())
        .await
        .unwrap();
    let first = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.append(record(0, 0)).await })
    };
    until("the first call", || probe.calls() == 1).await;
    let doomed: Vec<_> = (1..=5)
        .map(|caller| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append_batch(vec![record(caller, 0); 2]).await })
        })
        .collect();
    until("five callers queued", || writer.queued() == 5).await;
    probe.open_gate();
    assert_eq!(first.await.unwrap().unwrap().seq, 1);
    let mut shared = Vec::new();
    for task in doomed {
        match task.await.unwrap() {
            Err(WriterError::Store(e)) => {
                assert_eq!(e.to_string(), "appending records");
                shared.push(e);
            }
            other => panic!("expected the batch's error, got {other:?}"),
        }
    }
    // One error, shared by all five callers of the failed batch.
    assert!(shared.iter().all(|e| Arc::ptr_eq(e, &shared[0])));
    assert_eq!(probe.batches()[1], 10);
    // Nothing of the failed batch was written, and the writer still serves.
    let next = writer.append(record(9, 0)).await.unwrap();
    assert_eq!(next.seq, 2);
    assert_eq!(probe.calls(), 3);
    assert_eq!(verify(&*probe, |_, _| {}).await.unwrap().records, 2);
}

pub async fn an_invalid_record_fails_only_its_own_caller<B: Backend>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new())
        .await
        .unwrap();
    let mut bad = record(1, 1);
    bad.actor.clear();
    let (ok, invalid) = tokio::join!(
        writer.append(record(0, 0)),
        writer.append_batch(vec![record(1, 0), bad])
    );
    assert_eq!(ok.unwrap().seq, 1);
    let err = invalid.unwrap_err();
    assert_eq!(err.to_string(), "batch record 1: actor is empty");
    assert!(matches!(
        &err,
        WriterError::Store(e) if matches!(**e, LedgerError::InvalidRecord { index: 1, .. })
    ));
    assert_eq!(
        probe.batches(),
        [1],
        "the invalid batch never reached the store"
    );
}

pub async fn shutdown_flushes_the_queue_and_signs_a_final_checkpoint<B: Backend>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, true);
    let (tx, mut published) = tokio::sync::mpsc::unbounded_channel();
    let options = WriterOptions::new()
        .signing_key(key())
        .checkpoint_every(1_000_000)
        .checkpoint_interval(Duration::from_secs(3600))
        .clock(|| 1_767_225_600_000)
        .on_checkpoint(move |cp| tx.send(cp.clone()).unwrap());
    let writer = LedgerWriter::spawn(probe.clone(), options).await.unwrap();
    let later = writer.clone();
    let tasks: Vec<_> = (0..8)
        .map(|caller| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append(record(caller, 0)).await })
        })
        .collect();
    until("the first call", || probe.calls() == 1).await;
    until("all queued", || probe.batches()[0] + writer.queued() == 8).await;
    let shutdown = tokio::spawn(writer.shutdown());
    until("shutdown queued", || {
        later.queued() == 8 - probe.batches()[0] + 1
    })
    .await;
    probe.open_gate();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let checkpoint = shutdown
        .await
        .unwrap()
        .unwrap()
        .expect("a final checkpoint");
    assert_eq!(checkpoint.seq, 8);
    assert_eq!(checkpoint.time_ms, 1_767_225_600_000);
    assert!(checkpoint.verify_signature(&key().verifying_key()));
    assert_eq!(published.recv().await.unwrap(), checkpoint);
    // The incremental root is the root computed from scratch over the stored hashes.
    let hashes: Vec<[u8; 32]> = probe
        .read(1, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash)
        .collect();
    assert_eq!(checkpoint.merkle_root, root(&hashes));
    assert_eq!(checkpoint.head, hashes[7]);
    assert_eq!(probe.latest_checkpoint().await.unwrap(), Some(checkpoint));
    // The task has stopped: every other handle now fails.
    assert!(matches!(
        later.append(record(9, 9)).await,
        Err(WriterError::Stopped)
    ));
    assert!(matches!(
        later.checkpoint().await,
        Err(WriterError::Stopped)
    ));
    let report = verify_with_checkpoints(&*probe, Some(&key().verifying_key()), |_, _| {})
        .await
        .unwrap();
    assert_eq!((report.checkpoints, report.unsigned_tail), (1, 0));
}

pub async fn shutdown_without_a_key_or_new_records_signs_nothing<B: Backend>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new())
        .await
        .unwrap();
    writer.append(record(0, 0)).await.unwrap();
    assert_eq!(writer.checkpoint().await.unwrap(), None);
    assert_eq!(writer.shutdown().await.unwrap(), None);
    assert_eq!(probe.latest_checkpoint().await.unwrap(), None);

    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap();
    let first = writer.checkpoint().await.unwrap().unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(writer.shutdown().await.unwrap(), None, "nothing new since");
}

pub async fn dropping_every_handle_signs_what_is_left<B: Backend>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    let (tx, mut published) = tokio::sync::mpsc::unbounded_channel();
    let writer = LedgerWriter::spawn(
        probe.clone(),
        WriterOptions::new()
            .signing_key(key())
            .on_checkpoint(move |cp| tx.send(cp.seq).unwrap()),
    )
    .await
    .unwrap();
    writer
        .append_batch((0..3).map(|i| record(0, i)).collect())
        .await
        .unwrap();
    drop(writer);
    assert_eq!(published.recv().await, Some(3));
    assert_eq!(published.recv().await, None, "the task ended");
}

pub async fn a_commit_that_landed_despite_its_error_is_caught_up_before_signing<B: Backend>() {
    let backend = B::create().await;
    let probe = Probe::new(&backend, false);
    probe.landing.lock().unwrap().insert(2);
    let writer = LedgerWriter::spawn(probe.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap();
    writer.append(record(0, 0)).await.unwrap();
    let lost = writer.append_batch(vec![record(1, 0), record(1, 1)]).await;
    assert!(matches!(lost, Err(WriterError::Store(_))));
    // A checkpoint now covers what the tree knows for sure.
    assert_eq!(writer.checkpoint().await.unwrap().unwrap().seq, 1);
    // The next append starts after the records that landed; the tree reads them.
    assert_eq!(writer.append(record(2, 0)).await.unwrap().seq, 4);
    let cp = writer.shutdown().await.unwrap().unwrap();
    assert_eq!(cp.seq, 4);
    let hashes: Vec<[u8; 32]> = probe
        .read(1, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash)
        .collect();
    assert_eq!(cp.merkle_root, root(&hashes));
    let report = verify_with_checkpoints(&*probe, Some(&key().verifying_key()), |_, _| {})
        .await
        .unwrap();
    assert_eq!((report.checkpoints, report.unsigned_tail), (2, 0));
}
