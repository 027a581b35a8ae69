//! The behaviour every `LedgerStore` backend must have, written once.
//!
//! A backend's test file implements [`Backend`] and invokes `ledger_test_suite!(TheBackend);`
//! (the model is quickwit's `metastore_test_suite!`). Tampering goes around the store, as an
//! attacker with access to the database would: raw SQL, guards dropped first.

mod checkpoints;
mod writer;

pub use checkpoints::*;
pub use writer::*;

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use metaloop_ledger::{
    Checkpoint, HashInput, LedgerError, LedgerStore, NewRecord, Problem, Record, StoredRecord,
    VerifyError, VerifyFailure, VerifyReport, ZERO_HASH, to_canonical_json, verify, verify_paged,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

/// A database under test, with the raw access an attacker would have.
#[allow(async_fn_in_trait)]
pub trait Backend: Sized {
    /// The store under test.
    type Store: LedgerStore + 'static;

    /// Whether the database can be reached; `false` skips the test (a backend that needs a
    /// server decides here whether its absence is an error, and says so once).
    async fn available() -> bool {
        true
    }

    /// Whether `set_text` can store these bytes (PostgreSQL text must be valid UTF-8 without
    /// NUL, so an attacker cannot store other bytes there).
    fn text_is_storable(_bytes: &[u8]) -> bool {
        true
    }

    /// A fresh, empty ledger.
    async fn create() -> Self;

    /// The store (shared with spawned tasks).
    fn store(&self) -> Arc<Self::Store>;

    /// Runs one or more SQL statements directly on the database; `Err` carries the database's
    /// message with its causes.
    async fn exec(&self, sql: &str) -> Result<(), String>;

    /// Removes whatever makes the database refuse UPDATE, DELETE and out-of-order INSERT, on
    /// records and checkpoints.
    async fn drop_guards(&self);

    /// Overwrites an integer column of the record with seq `seq`.
    async fn set_int(&self, seq: i64, column: &str, value: i64);

    /// Overwrites a text column with `bytes` (stored as text even if not valid UTF-8 where
    /// the database allows it).
    async fn set_text(&self, seq: i64, column: &str, bytes: &[u8]);

    /// Overwrites a binary column.
    async fn set_blob(&self, seq: i64, column: &str, bytes: &[u8]);

    /// Overwrites a binary column (`head`, `merkle_root`, `signature`) of the checkpoint with
    /// seq `seq`.
    async fn set_checkpoint_blob(&self, seq: u64, column: &str, bytes: &[u8]);

    /// Inserts a row directly, bypassing the store.
    async fn insert_raw(&self, row: &StoredRecord) -> Result<(), String>;
}

/// Generates one `#[tokio::test]` per suite test for `$backend`.
#[macro_export]
macro_rules! ledger_test_suite {
    ($backend:ty) => {
        $crate::ledger_test_suite!(@tests $backend;
            append_and_read_round_trip,
            append_continues_the_chain,
            empty_batch_is_a_no_op,
            invalid_batch_writes_nothing,
            concurrent_appends_are_gap_free,
            chain_links_every_record,
            large_batch_in_one_append,
            read_all_returns_every_record_across_pages,
            a_closed_store_refuses_further_calls,
            update_is_refused,
            delete_is_refused,
            out_of_chain_insert_is_refused,
            empty_ledger_verifies,
            intact_ledger_verifies_across_pages,
            tampered_seq_is_detected,
            tampered_time_ms_is_detected,
            tampered_actor_is_detected,
            tampered_action_is_detected,
            tampered_resource_is_detected,
            tampered_payload_value_is_detected,
            non_canonical_payload_is_detected,
            unparsable_payload_is_detected,
            tampered_prev_hash_is_detected,
            tampered_hash_is_detected,
            tampered_first_prev_hash_is_detected,
            rewritten_record_with_recomputed_hash_is_detected,
            removed_record_is_detected,
            removed_and_renumbered_record_is_detected,
            swapped_records_are_detected,
            inserted_record_is_detected,
            tampering_is_detected_across_pages,
            any_flipped_text_byte_is_detected,
            checkpoints_round_trip,
            checkpoint_beyond_the_last_record_is_refused,
            checkpoint_not_newer_than_the_last_is_refused,
            checkpoint_update_and_delete_are_refused,
            checkpoints_every_n_records_and_at_shutdown_have_scratch_roots,
            a_checkpoint_follows_the_interval_only_when_records_were_added,
            a_restarted_writer_primes_its_tree_from_the_stored_hashes,
            the_writer_catches_up_with_records_appended_around_it,
            the_writer_refuses_a_ledger_that_no_longer_matches_its_checkpoint,
            an_intact_ledger_verifies_with_every_page_size,
            a_chain_recomputed_without_the_key_is_detected,
            a_tail_cut_off_after_a_checkpoint_is_detected,
            an_edited_checkpoint_is_detected,
            a_rewrite_with_matching_forged_checkpoints_needs_the_key_to_be_caught,
            the_wrong_public_key_fails_at_the_first_checkpoint,
            with_a_key_a_ledger_without_checkpoints_fails,
            record_tampering_is_still_reported_as_a_record_failure,
            every_record_has_a_proof_that_verifies_alone,
            proof_json_has_the_documented_shape,
            a_changed_proof_or_record_does_not_verify,
            proofs_are_refused_where_no_checkpoint_vouches,
            a_proof_is_refused_from_a_ledger_that_no_longer_matches_its_checkpoint,
            concurrent_appends_coalesce_into_one_store_call,
            callers_answered_together_are_committed_together,
            batches_stay_contiguous_and_seqs_gap_free_under_concurrency,
            a_batch_larger_than_the_maximum_is_written_whole,
            a_failing_store_call_fails_every_caller_of_its_batch_and_the_writer_goes_on,
            an_invalid_record_fails_only_its_own_caller,
            shutdown_flushes_the_queue_and_signs_a_final_checkpoint,
            shutdown_without_a_key_or_new_records_signs_nothing,
            dropping_every_handle_signs_what_is_left,
            a_commit_that_landed_despite_its_error_is_caught_up_before_signing,
        );
    };
    (@tests $backend:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if !<$backend as suite::Backend>::available().await {
                    return;
                }
                suite::$name::<$backend>().await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

fn new_record(i: usize) -> NewRecord {
    NewRecord::new(
        1_767_225_600_000 + i as i64 * 1000,
        if i.is_multiple_of(2) {
            "supervisor"
        } else {
            "alice@example.com"
        },
        "directive.issued",
        format!("directive/{i:04}"),
        json!({
            "n": i,
            "confidence": 0.81,
            "impact": "LOW",
            "tags": ["é", "\u{1f600}", "tab\there"],
            "nested": {"z": null, "a": [true, false, -1, 1.5e300]},
        }),
    )
}

fn batch(range: std::ops::Range<usize>) -> Vec<NewRecord> {
    range.map(new_record).collect()
}

/// A ledger with `n` records and its guards dropped, ready to be tampered with.
async fn tamperable<B: Backend>(n: usize) -> (B, Vec<Record>) {
    let backend = B::create().await;
    let records = backend.store().append(batch(0..n)).await.unwrap();
    backend.drop_guards().await;
    let report = verify(&*backend.store(), |_, _| {}).await.unwrap();
    assert_eq!(
        report.records, n as u64,
        "dropping the guards changed nothing"
    );
    (backend, records)
}

async fn failure<B: Backend>(backend: &B) -> VerifyFailure {
    failure_paged(backend, metaloop_ledger::DEFAULT_PAGE_SIZE).await
}

async fn failure_paged<B: Backend>(backend: &B, page_size: u32) -> VerifyFailure {
    match verify_paged(&*backend.store(), page_size, |_, _| {}).await {
        Err(VerifyError::Tampered(f)) => f,
        Err(VerifyError::Store(e)) => panic!("verification could not read the ledger: {e:?}"),
        Ok(report) => panic!("tampering went undetected: {report:?}"),
    }
}

async fn stored<B: Backend>(backend: &B, seq: i64) -> StoredRecord {
    let mut rows = backend.store().read_stored(seq, 1).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].seq, seq);
    rows.remove(0)
}

fn flip(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= mask;
    out
}

const MIDDLE: i64 = 5;

// ---------------------------------------------------------------------------------------
// Appending and reading

pub async fn append_and_read_round_trip<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    let input = batch(0..3);
    let appended = store.append(input.clone()).await.unwrap();
    assert_eq!(appended.len(), 3);
    for (i, (record, new)) in appended.iter().zip(&input).enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.time_ms, new.time_ms);
        assert_eq!(record.actor, new.actor);
        assert_eq!(record.action, new.action);
        assert_eq!(record.resource, new.resource);
        assert_eq!(record.payload, new.payload);
        assert_eq!(record.compute_hash().unwrap(), record.hash);
    }
    assert_eq!(store.read(1, 100).await.unwrap(), appended);
    assert_eq!(store.read(2, 1).await.unwrap(), appended[1..2]);
    assert_eq!(store.read(0, 2).await.unwrap(), appended[..2]);
    assert!(store.read(4, 10).await.unwrap().is_empty());
    assert!(store.read(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.head().await.unwrap(), Some((3, appended[2].hash)));
    assert_eq!(store.count().await.unwrap(), 3);
    // What is stored is the canonical text, and it hashes to the stored hash.
    let raw = stored(&b, 2).await;
    assert_eq!(
        raw.payload,
        to_canonical_json(&input[1].payload).unwrap().into_bytes()
    );
    assert_eq!(raw.hash, appended[1].hash.to_vec());
}

pub async fn append_continues_the_chain<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    let first = store.append(batch(0..2)).await.unwrap();
    let second = store.append(batch(2..4)).await.unwrap();
    assert_eq!(second[0].seq, 3);
    assert_eq!(second[0].prev_hash, first[1].hash);
    assert_eq!(store.head().await.unwrap(), Some((4, second[1].hash)));
}

pub async fn empty_batch_is_a_no_op<B: Backend>() {
    let b = B::create().await;
    assert!(b.store().append(Vec::new()).await.unwrap().is_empty());
    assert_eq!(b.store().head().await.unwrap(), None);
    assert_eq!(b.store().count().await.unwrap(), 0);
}

pub async fn invalid_batch_writes_nothing<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    store.append(batch(0..1)).await.unwrap();
    let mut bad = batch(1..4);
    bad[2].actor.clear();
    let err = store.append(bad).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::InvalidRecord { index: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "batch record 2: actor is empty");
    assert_eq!(store.count().await.unwrap(), 1);
    // The next append still gets seq 2.
    assert_eq!(store.append(batch(1..2)).await.unwrap()[0].seq, 2);
}

pub async fn concurrent_appends_are_gap_free<B: Backend>() {
    const TASKS: usize = 16;
    const APPENDS: usize = 10;
    let b = B::create().await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = b.store();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..APPENDS {
                let size = 1 + (task + i) % 3;
                let records = store.append(batch(0..size)).await.unwrap();
                let got: Vec<u64> = records.iter().map(|r| r.seq).collect();
                // A batch gets consecutive seqs.
                assert_eq!(got, (got[0]..got[0] + size as u64).collect::<Vec<_>>());
                seqs.extend(got);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    let total = all.len() as u64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let stored = b.store().read(1, u32::MAX).await.unwrap();
    assert_eq!(stored.len() as u64, total);
    let report = verify(&*b.store(), |_, _| {}).await.unwrap();
    assert_eq!(report.records, total);
}

pub async fn chain_links_every_record<B: Backend>() {
    let b = B::create().await;
    for i in 0..5 {
        b.store().append(batch(i * 3..i * 3 + 3)).await.unwrap();
    }
    let records = b.store().read(1, 100).await.unwrap();
    assert_eq!(records.len(), 15);
    assert_eq!(records[0].prev_hash, ZERO_HASH);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    for r in &records {
        let payload = to_canonical_json(&r.payload).unwrap();
        let expected = HashInput {
            seq: r.seq,
            time_ms: r.time_ms,
            actor: r.actor.as_bytes(),
            action: r.action.as_bytes(),
            resource: r.resource.as_bytes(),
            payload: payload.as_bytes(),
            prev_hash: &r.prev_hash,
        }
        .hash();
        assert_eq!(r.hash, expected);
    }
}

pub async fn large_batch_in_one_append<B: Backend>() {
    let b = B::create().await;
    let records = b.store().append(batch(0..1000)).await.unwrap();
    assert_eq!(records.len(), 1000);
    assert_eq!(records[999].seq, 1000);
    assert_eq!(b.store().count().await.unwrap(), 1000);
    assert_eq!(
        verify(&*b.store(), |_, _| {}).await.unwrap().head,
        Some(records[999].hash)
    );
}

pub async fn a_closed_store_refuses_further_calls<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    store.append(batch(0..3)).await.unwrap();
    store.close().await;
    assert!(store.append(batch(3..4)).await.is_err());
    assert!(store.head().await.is_err());
    assert!(store.read(1, 10).await.is_err());
}

pub async fn read_all_returns_every_record_across_pages<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    assert!(store.read_all().await.unwrap().is_empty());
    let page = metaloop_ledger::READ_ALL_PAGE as usize;
    let mut appended = Vec::new();
    for n in [page, page + 1] {
        let from = appended.len();
        appended.extend(store.append(batch(from..n)).await.unwrap());
        assert_eq!(store.read_all().await.unwrap(), appended, "{n} records");
    }
}

// ---------------------------------------------------------------------------------------
// Guards

pub async fn update_is_refused<B: Backend>() {
    let b = B::create().await;
    let records = b.store().append(batch(0..3)).await.unwrap();
    let err = b
        .exec("UPDATE records SET actor = 'mallory' WHERE seq = 2")
        .await
        .unwrap_err();
    assert!(err.contains("append-only: UPDATE is refused"), "{err}");
    assert_eq!(b.store().read(1, 10).await.unwrap(), records);
}

pub async fn delete_is_refused<B: Backend>() {
    let b = B::create().await;
    b.store().append(batch(0..3)).await.unwrap();
    let err = b
        .exec("DELETE FROM records WHERE seq = 3")
        .await
        .unwrap_err();
    assert!(err.contains("append-only: DELETE is refused"), "{err}");
    assert_eq!(b.store().count().await.unwrap(), 3);
}

pub async fn out_of_chain_insert_is_refused<B: Backend>() {
    let b = B::create().await;
    let records = b.store().append(batch(0..3)).await.unwrap();
    let mut row = stored(&b, 3).await;
    // A gap.
    row.seq = 5;
    row.prev_hash = records[2].hash.to_vec();
    let err = b.insert_raw(&row).await.unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    // The right seq but not linked to the head.
    row.seq = 4;
    row.prev_hash = records[1].hash.to_vec();
    let err = b.insert_raw(&row).await.unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(b.store().count().await.unwrap(), 3);
}

// ---------------------------------------------------------------------------------------
// Verification of intact ledgers

pub async fn empty_ledger_verifies<B: Backend>() {
    let b = B::create().await;
    let mut calls = Vec::new();
    let report = verify(&*b.store(), |checked, total| calls.push((checked, total)))
        .await
        .unwrap();
    assert_eq!(
        report,
        VerifyReport {
            records: 0,
            head: None
        }
    );
    assert_eq!(calls, vec![(0, 0)]);
}

pub async fn intact_ledger_verifies_across_pages<B: Backend>() {
    let b = B::create().await;
    let records = b.store().append(batch(0..25)).await.unwrap();
    for page_size in [1, 4, 5, 25, 26] {
        let mut calls = Vec::new();
        let report = verify_paged(&*b.store(), page_size, |checked, total| {
            calls.push((checked, total))
        })
        .await
        .unwrap();
        assert_eq!(report.records, 25);
        assert_eq!(report.head, Some(records[24].hash));
        assert_eq!(calls.last(), Some(&(25, 25)), "page size {page_size}");
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}

// ---------------------------------------------------------------------------------------
// Tampering, one field at a time, in the middle of the ledger

pub async fn tampered_seq_is_detected<B: Backend>() {
    let (b, _) = tamperable::<B>(9).await;
    b.set_int(MIDDLE, "seq", MIDDLE ^ 0x100).await;
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: MIDDLE as u64,
            problem: Problem::SequenceGap { next_found: 6 }
        }
    );
}

async fn assert_hash_mismatch<B: Backend>(b: &B, original: &Record) {
    let f = failure(b).await;
    assert_eq!(f.seq, original.seq, "{f}");
    match f.problem {
        Problem::HashMismatch { stored, computed } => {
            assert_eq!(stored, original.hash);
            assert_ne!(computed, original.hash);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
}

pub async fn tampered_time_ms_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    b.set_int(MIDDLE, "time_ms", original.time_ms ^ 1).await;
    assert_hash_mismatch(&b, original).await;
}

async fn tampered_text_is_detected<B: Backend>(column: &str) {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    let value = match column {
        "actor" => &original.actor,
        "action" => &original.action,
        "resource" => &original.resource,
        _ => unreachable!(),
    };
    // One character changed, still valid UTF-8.
    b.set_text(MIDDLE, column, &flip(value.as_bytes(), 0, 0x01))
        .await;
    assert_hash_mismatch(&b, original).await;
    let f = failure(&b).await;
    assert!(
        f.to_string()
            .starts_with(&format!("record {MIDDLE}: hash mismatch (stored ")),
        "{f}"
    );
    assert!(f.to_string().ends_with("): a field was changed"), "{f}");
}

pub async fn tampered_actor_is_detected<B: Backend>() {
    tampered_text_is_detected::<B>("actor").await;
}

pub async fn tampered_action_is_detected<B: Backend>() {
    tampered_text_is_detected::<B>("action").await;
}

pub async fn tampered_resource_is_detected<B: Backend>() {
    tampered_text_is_detected::<B>("resource").await;
}

pub async fn tampered_payload_value_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    // Still canonical JSON, a different value.
    let mut payload = original.payload.clone();
    payload["impact"] = json!("HIGH");
    let text = to_canonical_json(&payload).unwrap();
    b.set_text(MIDDLE, "payload", text.as_bytes()).await;
    assert_hash_mismatch(&b, original).await;
}

pub async fn non_canonical_payload_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    // The same value, written differently: it would hash differently.
    let text = serde_json::to_string_pretty(&original.payload).unwrap();
    b.set_text(MIDDLE, "payload", text.as_bytes()).await;
    let f = failure(&b).await;
    assert_eq!(f.seq, MIDDLE as u64);
    assert!(
        matches!(&f.problem, Problem::NonCanonicalPayload { reason } if reason.contains("differs from its canonical form at byte 1")),
        "{f}"
    );
}

pub async fn unparsable_payload_is_detected<B: Backend>() {
    let (b, _) = tamperable::<B>(9).await;
    b.set_text(MIDDLE, "payload", b"{\"n\":").await;
    let f = failure(&b).await;
    assert_eq!(f.seq, MIDDLE as u64);
    assert!(
        matches!(&f.problem, Problem::NonCanonicalPayload { reason } if reason.starts_with("not valid JSON")),
        "{f}"
    );
}

pub async fn tampered_prev_hash_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    let forged = flip(&original.prev_hash, 31, 0x80);
    b.set_blob(MIDDLE, "prev_hash", &forged).await;
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: MIDDLE as u64,
            problem: Problem::BrokenLink {
                stored: forged.try_into().unwrap(),
                expected: records[MIDDLE as usize - 2].hash,
            }
        }
    );
}

pub async fn tampered_hash_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    let forged = flip(&original.hash, 0, 0x01);
    b.set_blob(MIDDLE, "hash", &forged).await;
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: MIDDLE as u64,
            problem: Problem::HashMismatch {
                stored: forged.try_into().unwrap(),
                computed: original.hash,
            }
        }
    );
}

pub async fn tampered_first_prev_hash_is_detected<B: Backend>() {
    let (b, _) = tamperable::<B>(9).await;
    let forged = flip(&ZERO_HASH, 7, 0x10);
    b.set_blob(1, "prev_hash", &forged).await;
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: 1,
            problem: Problem::FirstPrevHashNotZero {
                stored: forged.try_into().unwrap()
            }
        }
    );
}

/// An attacker who changes a record and recomputes its hash is caught at the next record.
pub async fn rewritten_record_with_recomputed_hash_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let original = &records[MIDDLE as usize - 1];
    let actor = "mallory";
    let payload = to_canonical_json(&original.payload).unwrap();
    let forged_hash = HashInput {
        seq: original.seq,
        time_ms: original.time_ms,
        actor: actor.as_bytes(),
        action: original.action.as_bytes(),
        resource: original.resource.as_bytes(),
        payload: payload.as_bytes(),
        prev_hash: &original.prev_hash,
    }
    .hash();
    b.set_text(MIDDLE, "actor", actor.as_bytes()).await;
    b.set_blob(MIDDLE, "hash", &forged_hash).await;
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: MIDDLE as u64 + 1,
            problem: Problem::BrokenLink {
                stored: original.hash,
                expected: forged_hash,
            }
        }
    );
}

// ---------------------------------------------------------------------------------------
// Tampering with the order and number of records

pub async fn removed_record_is_detected<B: Backend>() {
    let (b, _) = tamperable::<B>(9).await;
    b.exec(&format!("DELETE FROM records WHERE seq = {MIDDLE}"))
        .await
        .unwrap();
    let f = failure(&b).await;
    assert_eq!(
        f,
        VerifyFailure {
            seq: MIDDLE as u64,
            problem: Problem::SequenceGap { next_found: 6 }
        }
    );
    assert_eq!(
        f.to_string(),
        "record 5: missing (the next stored record is 6): a record was removed or renumbered"
    );
}

pub async fn removed_and_renumbered_record_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    b.exec(&format!(
        "DELETE FROM records WHERE seq = {MIDDLE};
         UPDATE records SET seq = seq + 1000000 WHERE seq > {MIDDLE};
         UPDATE records SET seq = seq - 1000001 WHERE seq > 1000000;"
    ))
    .await
    .unwrap();
    assert_eq!(b.store().count().await.unwrap(), 8);
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: MIDDLE as u64,
            problem: Problem::BrokenLink {
                stored: records[MIDDLE as usize - 1].hash,
                expected: records[MIDDLE as usize - 2].hash,
            }
        }
    );
}

pub async fn swapped_records_are_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    let next = MIDDLE + 1;
    b.exec(&format!(
        "UPDATE records SET seq = 1000000 WHERE seq = {MIDDLE};
         UPDATE records SET seq = {MIDDLE} WHERE seq = {next};
         UPDATE records SET seq = {next} WHERE seq = 1000000;"
    ))
    .await
    .unwrap();
    assert_eq!(
        stored(&b, MIDDLE).await.hash,
        records[next as usize - 1].hash
    );
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: MIDDLE as u64,
            problem: Problem::BrokenLink {
                stored: records[MIDDLE as usize - 1].hash,
                expected: records[MIDDLE as usize - 2].hash,
            }
        }
    );
}

pub async fn inserted_record_is_detected<B: Backend>() {
    let (b, records) = tamperable::<B>(9).await;
    // Make room after MIDDLE and insert a well-formed record linked to MIDDLE.
    b.exec(&format!(
        "UPDATE records SET seq = seq + 1000000 WHERE seq > {MIDDLE};
         UPDATE records SET seq = seq - 999999 WHERE seq > 1000000;"
    ))
    .await
    .unwrap();
    let seq = MIDDLE + 1;
    let payload = br#"{"forged":true}"#;
    let prev_hash = records[MIDDLE as usize - 1].hash;
    let hash = HashInput {
        seq: seq as u64,
        time_ms: 0,
        actor: b"mallory",
        action: b"directive.approved",
        resource: b"directive/0001",
        payload,
        prev_hash: &prev_hash,
    }
    .hash();
    b.insert_raw(&StoredRecord {
        seq,
        time_ms: 0,
        actor: b"mallory".to_vec(),
        action: b"directive.approved".to_vec(),
        resource: b"directive/0001".to_vec(),
        payload: payload.to_vec(),
        prev_hash: prev_hash.to_vec(),
        hash: hash.to_vec(),
        defect: None,
    })
    .await
    .unwrap();
    assert_eq!(b.store().count().await.unwrap(), 10);
    assert_eq!(
        failure(&b).await,
        VerifyFailure {
            seq: seq as u64 + 1,
            problem: Problem::BrokenLink {
                stored: records[MIDDLE as usize - 1].hash,
                expected: hash,
            }
        }
    );
}

pub async fn tampering_is_detected_across_pages<B: Backend>() {
    let (b, records) = tamperable::<B>(30).await;
    b.set_int(13, "time_ms", records[12].time_ms + 1).await;
    for page_size in [1, 4, 12, 13, 14, 30] {
        let f = failure_paged(&b, page_size).await;
        assert_eq!(f.seq, 13, "page size {page_size}: {f}");
        assert!(matches!(f.problem, Problem::HashMismatch { .. }), "{f}");
    }
}

// ---------------------------------------------------------------------------------------
// Property: any single flipped byte in any text field of any record is detected

pub async fn any_flipped_text_byte_is_detected<B: Backend>() {
    const RECORDS: usize = 6;
    let (b, _) = tamperable::<B>(RECORDS).await;
    let b = &b;
    let strategy = (
        1..=RECORDS as i64,
        prop::sample::select(vec!["actor", "action", "resource", "payload"]),
        any::<prop::sample::Index>(),
        1..=255u8,
    );
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(seq, column, index, mask)| {
            handle.block_on(async {
                let original = stored(b, seq).await;
                let value = match column {
                    "actor" => &original.actor,
                    "action" => &original.action,
                    "resource" => &original.resource,
                    _ => &original.payload,
                };
                let at = index.index(value.len());
                let flipped = flip(value, at, mask);
                if !B::text_is_storable(&flipped) {
                    return Err(TestCaseError::reject(
                        "the database cannot store these bytes",
                    ));
                }
                b.set_text(seq, column, &flipped).await;
                let outcome = verify(&*b.store(), |_, _| {}).await;
                // Put it back for the next case.
                b.set_text(seq, column, value).await;
                match outcome {
                    Err(VerifyError::Tampered(f)) if f.seq == seq as u64 => Ok(()),
                    other => Err(TestCaseError::fail(format!(
                        "flipping byte {at} of {column} of record {seq} with {mask:#04x}: \
                         {other:?}"
                    ))),
                }
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(
        verify(&*b.store(), |_, _| {}).await.unwrap().records,
        RECORDS as u64
    );
}

// ---------------------------------------------------------------------------------------
// Checkpoints

/// The message of an error and of all its causes (a database's refusal is a cause).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

fn checkpoint_for(records: &[Record], seq: u64) -> Checkpoint {
    let key = SigningKey::from_bytes(&[7; 32]);
    let head = records[seq as usize - 1].hash;
    // Storage does not interpret the Merkle root; any 32 bytes will do here.
    Checkpoint::sign(
        &key,
        seq,
        1_767_225_600_000 + seq as i64,
        head,
        [seq as u8; 32],
    )
}

async fn assert_checkpoint_refused<B: Backend>(b: &B, checkpoint: Checkpoint) {
    let seq = checkpoint.seq;
    let err = b.store().append_checkpoint(checkpoint).await.unwrap_err();
    let message = error_chain(&err);
    assert!(
        message.contains("ledger checkpoints are append-only"),
        "checkpoint {seq}: {message}"
    );
}

pub async fn checkpoints_round_trip<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    assert!(store.checkpoints(0, 10).await.unwrap().is_empty());
    let records = store.append(batch(0..5)).await.unwrap();
    let first = checkpoint_for(&records, 2);
    let second = checkpoint_for(&records, 5);
    store.append_checkpoint(first.clone()).await.unwrap();
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some(first.clone())
    );
    store.append_checkpoint(second.clone()).await.unwrap();
    assert_eq!(
        store.checkpoints(0, 10).await.unwrap(),
        [first.clone(), second.clone()]
    );
    assert_eq!(store.checkpoints(0, 1).await.unwrap(), vec![first.clone()]);
    assert_eq!(
        store.checkpoints(1, 10).await.unwrap(),
        [first.clone(), second.clone()]
    );
    assert_eq!(
        store.checkpoints(2, 10).await.unwrap(),
        vec![second.clone()]
    );
    assert!(store.checkpoints(5, 10).await.unwrap().is_empty());
    assert!(store.checkpoints(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some(second.clone())
    );
    // Stored exactly: the signature still verifies.
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    assert!(
        store
            .checkpoints(0, 10)
            .await
            .unwrap()
            .iter()
            .all(|c| c.verify_signature(&key))
    );
}

pub async fn checkpoint_beyond_the_last_record_is_refused<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    let none = Checkpoint::sign(&SigningKey::from_bytes(&[7; 32]), 1, 0, [1; 32], [2; 32]);
    assert_checkpoint_refused(&b, none).await;
    let records = store.append(batch(0..3)).await.unwrap();
    let mut beyond = checkpoint_for(&records, 3);
    beyond.seq = 4;
    assert_checkpoint_refused(&b, beyond).await;
    let mut far = checkpoint_for(&records, 3);
    far.seq = u64::MAX;
    assert_checkpoint_refused(&b, far).await;
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    // The last record itself may be covered.
    store
        .append_checkpoint(checkpoint_for(&records, 3))
        .await
        .unwrap();
}

pub async fn checkpoint_not_newer_than_the_last_is_refused<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    let records = store.append(batch(0..6)).await.unwrap();
    let stored = checkpoint_for(&records, 4);
    store.append_checkpoint(stored.clone()).await.unwrap();
    // The same seq again (even re-signed at another time), and an older one.
    let mut again = checkpoint_for(&records, 4);
    again.time_ms += 1;
    assert_checkpoint_refused(&b, again).await;
    assert_checkpoint_refused(&b, checkpoint_for(&records, 3)).await;
    assert_eq!(store.checkpoints(0, 10).await.unwrap(), [stored]);
    store
        .append_checkpoint(checkpoint_for(&records, 6))
        .await
        .unwrap();
    assert_eq!(store.latest_checkpoint().await.unwrap().unwrap().seq, 6);
}

pub async fn checkpoint_update_and_delete_are_refused<B: Backend>() {
    let b = B::create().await;
    let store = b.store();
    let records = store.append(batch(0..3)).await.unwrap();
    let stored = checkpoint_for(&records, 3);
    store.append_checkpoint(stored.clone()).await.unwrap();
    let err = b
        .exec("UPDATE checkpoints SET time_ms = 0 WHERE seq = 3")
        .await
        .unwrap_err();
    assert!(
        err.contains("ledger checkpoints are append-only: UPDATE is refused"),
        "{err}"
    );
    let err = b
        .exec("DELETE FROM checkpoints WHERE seq = 3")
        .await
        .unwrap_err();
    assert!(
        err.contains("ledger checkpoints are append-only: DELETE is refused"),
        "{err}"
    );
    assert_eq!(store.checkpoints(0, 10).await.unwrap(), [stored]);
}
