//! Signed checkpoints end to end on SQLite: made by the writer every N records, every T
//! seconds and at shutdown with the right Merkle roots; checked by `verify_with_checkpoints`
//! against the tampering the hash chain alone cannot see; inclusion proofs built from them.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use metaloop_ledger::merkle::{empty_root, root};
use metaloop_ledger::{
    Checkpoint, CheckpointFailure, CheckpointVerifyError, CheckpointVerifyReport, HashInput,
    InclusionProof, LedgerError, LedgerStore, LedgerWriter, NewRecord, ProofError, ProveError,
    SqliteLedger, WriterOptions, hex, prove, verify, verify_with_checkpoints,
    verify_with_checkpoints_paged,
};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tempfile::TempDir;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn attacker_key() -> SigningKey {
    SigningKey::from_bytes(&[66; 32])
}

fn record(i: usize) -> NewRecord {
    NewRecord::new(
        1_767_225_600_000 + i as i64 * 1000,
        "supervisor",
        "directive.issued",
        format!("directive/{i:04}"),
        json!({"n": i, "confidence": 0.81}),
    )
}

/// A ledger file, the store, and a raw connection playing the attacker with file access.
struct Fixture {
    store: Arc<SqliteLedger>,
    raw: SqlitePool,
    _dir: TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let store = Arc::new(SqliteLedger::open(&path).await.unwrap());
        let raw = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        Self {
            store,
            raw,
            _dir: dir,
        }
    }

    /// `records` records appended one at a time through a writer that checkpoints every
    /// `every`, then shut down (a final checkpoint). Returns the stored checkpoints.
    async fn signed(records: usize, every: u64) -> (Self, Vec<Checkpoint>) {
        let f = Self::new().await;
        let writer = LedgerWriter::spawn(
            f.store.clone(),
            WriterOptions::new()
                .signing_key(key())
                .checkpoint_every(every)
                .checkpoint_interval(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        for i in 0..records {
            writer.append(record(i)).await.unwrap();
        }
        writer.shutdown().await.unwrap();
        let checkpoints = f.store.checkpoints(0, 1000).await.unwrap();
        (f, checkpoints)
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.raw)
            .await
            .unwrap();
    }

    async fn drop_guards(&self) {
        self.exec(
            "DROP TRIGGER records_refuse_update;
             DROP TRIGGER records_refuse_delete;
             DROP TRIGGER records_refuse_out_of_chain_insert;
             DROP TRIGGER checkpoints_refuse_update;
             DROP TRIGGER checkpoints_refuse_delete;
             DROP TRIGGER checkpoints_refuse_out_of_order_insert;",
        )
        .await;
    }

    /// Rewrites record `seq`'s resource and recomputes every hash from it on, as someone
    /// without the signing key would: the chain stays valid.
    async fn rewrite_and_rechain(&self, seq: i64, resource: &str) {
        let rows = self.store.read_stored(1, 100_000).await.unwrap();
        let mut prev: [u8; 32] = rows[seq as usize - 2].hash.as_slice().try_into().unwrap();
        for row in &rows[seq as usize - 1..] {
            let resource = if row.seq == seq {
                resource.as_bytes()
            } else {
                &row.resource
            };
            let hash = HashInput {
                seq: row.seq as u64,
                time_ms: row.time_ms,
                actor: &row.actor,
                action: &row.action,
                resource,
                payload: &row.payload,
                prev_hash: &prev,
            }
            .hash();
            sqlx::query(
                "UPDATE records SET resource = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            )
            .bind(String::from_utf8(resource.to_vec()).unwrap())
            .bind(prev.to_vec())
            .bind(hash.to_vec())
            .bind(row.seq)
            .execute(&self.raw)
            .await
            .unwrap();
            prev = hash;
        }
    }

    async fn set_checkpoint_blob(&self, seq: u64, column: &str, bytes: &[u8]) {
        assert!(["head", "merkle_root", "signature"].contains(&column));
        let sql = format!("UPDATE checkpoints SET {column} = ?1 WHERE seq = ?2");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(bytes.to_vec())
            .bind(seq as i64)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn hashes(&self) -> Vec<[u8; 32]> {
        self.store
            .read(1, 100_000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.hash)
            .collect()
    }

    async fn check(
        &self,
        key: Option<&SigningKey>,
    ) -> Result<CheckpointVerifyReport, CheckpointVerifyError> {
        let public = key.map(|k| k.verifying_key());
        verify_with_checkpoints(&*self.store, public.as_ref(), |_, _| {}).await
    }

    async fn failure(&self, key: Option<&SigningKey>) -> CheckpointFailure {
        match self.check(key).await {
            Err(CheckpointVerifyError::Checkpoint(f)) => f,
            other => panic!("expected a checkpoint failure, got {other:?}"),
        }
    }
}

fn assert_matches_scratch(cp: &Checkpoint, hashes: &[[u8; 32]]) {
    let n = cp.seq as usize;
    assert_eq!(cp.merkle_root, root(&hashes[..n]), "checkpoint {n} root");
    assert_eq!(cp.head, hashes[n - 1], "checkpoint {n} head");
    assert!(cp.verify_signature(&key().verifying_key()));
}

// ---------------------------------------------------------------------------------------
// Making checkpoints

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_every_n_records_and_at_shutdown_have_scratch_roots() {
    let (f, checkpoints) = Fixture::signed(35, 10).await;
    let seqs: Vec<u64> = checkpoints.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [10, 20, 30, 35]);
    let hashes = f.hashes().await;
    for cp in &checkpoints {
        assert_matches_scratch(cp, &hashes);
    }
    let report = f.check(Some(&key())).await.unwrap();
    assert_eq!(report.chain.records, 35);
    assert_eq!(report.checkpoints, 4);
    assert_eq!(report.unsigned_tail, 0);
    assert_eq!(report.merkle_root, root(&hashes));
    assert_eq!(report.last_checkpoint, checkpoints.last().cloned());
    assert!(report.signatures_checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_follows_the_interval_only_when_records_were_added() {
    let f = Fixture::new().await;
    let (tx, mut published) = tokio::sync::mpsc::unbounded_channel();
    let writer = LedgerWriter::spawn(
        f.store.clone(),
        WriterOptions::new()
            .signing_key(key())
            .checkpoint_every(1_000_000)
            .checkpoint_interval(Duration::from_millis(100))
            .on_checkpoint(move |cp| tx.send(cp.clone()).unwrap()),
    )
    .await
    .unwrap();
    writer
        .append_batch((0..3).map(record).collect())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), published.recv())
        .await
        .expect("a checkpoint within the interval")
        .unwrap();
    assert_eq!(first.seq, 3);
    // Several intervals without records: no new checkpoint.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(published.try_recv().is_err());
    writer.append(record(3)).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), published.recv())
        .await
        .expect("a checkpoint within the interval")
        .unwrap();
    assert_eq!(second.seq, 4);
    assert_matches_scratch(&second, &f.hashes().await);
    assert_eq!(writer.shutdown().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_writer_primes_its_tree_from_the_stored_hashes() {
    let f = Fixture::new().await;
    // More than one page of records (the writer reads 10,000 at a time), half signed.
    for chunk in 0..5 {
        let batch = (chunk * 2500..(chunk + 1) * 2500).map(record).collect();
        f.store.append(batch).await.unwrap();
    }
    let writer = LedgerWriter::spawn(f.store.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap();
    let cp = writer.checkpoint().await.unwrap().unwrap();
    assert_eq!(cp.seq, 12_500);
    writer.shutdown().await.unwrap();
    f.store
        .append((12_500..12_503).map(record).collect())
        .await
        .unwrap();
    // Primed from 12,503 records and checked against checkpoint 12,500 on the way.
    let writer = LedgerWriter::spawn(f.store.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap();
    writer.append(record(12_503)).await.unwrap();
    let cp = writer.shutdown().await.unwrap().unwrap();
    assert_eq!(cp.seq, 12_504);
    let hashes = f.hashes().await;
    assert_matches_scratch(&cp, &hashes);
    let report = f.check(Some(&key())).await.unwrap();
    assert_eq!((report.checkpoints, report.unsigned_tail), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writer_catches_up_with_records_appended_around_it() {
    // Another process appending to the same file: the tree reads what it missed.
    let f = Fixture::new().await;
    let writer = LedgerWriter::spawn(f.store.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap();
    writer.append(record(0)).await.unwrap();
    f.store.append(vec![record(1), record(2)]).await.unwrap();
    writer.append(record(3)).await.unwrap();
    let cp = writer.shutdown().await.unwrap().unwrap();
    assert_eq!(cp.seq, 4);
    assert_matches_scratch(&cp, &f.hashes().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writer_refuses_a_ledger_that_no_longer_matches_its_checkpoint() {
    let (f, _) = Fixture::signed(12, 5).await;
    f.drop_guards().await;
    f.rewrite_and_rechain(3, "directive/rewritten").await;
    let err = LedgerWriter::spawn(f.store.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap_err();
    // Checked against the latest checkpoint (12): a rewrite anywhere before it changes its head.
    assert!(matches!(err, LedgerError::Corrupt { seq: 12, .. }), "{err}");
    assert!(err.to_string().contains("is not the head"), "{err}");
    // Without a key the writer does not look (nothing to sign).
    LedgerWriter::spawn(f.store.clone(), WriterOptions::new())
        .await
        .unwrap();

    let (f, _) = Fixture::signed(12, 5).await;
    f.drop_guards().await;
    f.exec("DELETE FROM records WHERE seq > 11").await;
    let err = LedgerWriter::spawn(f.store.clone(), WriterOptions::new().signing_key(key()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 12 is corrupt: truncated: checkpoint 12 covers records the ledger no longer \
         has (it ends at record 11) (run `metaloop ledger verify`)"
    );
}

// ---------------------------------------------------------------------------------------
// Verifying against checkpoints

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_intact_ledger_verifies_with_every_page_size() {
    let (f, _) = Fixture::signed(23, 5).await;
    // Records appended after the last checkpoint are reported, not failed.
    f.store.append(vec![record(23), record(24)]).await.unwrap();
    for page_size in [1, 2, 5, 7, 23, 25, 1000] {
        let public = key().verifying_key();
        let report = verify_with_checkpoints_paged(&*f.store, page_size, Some(&public), |_, _| {})
            .await
            .unwrap();
        assert_eq!(report.chain.records, 25);
        assert_eq!(report.checkpoints, 5, "page size {page_size}");
        assert_eq!(report.last_checkpoint.unwrap().seq, 23);
        assert_eq!(report.unsigned_tail, 2);
    }
    let unsigned = f.check(None).await.unwrap();
    assert!(!unsigned.signatures_checked);
    assert_eq!(unsigned.checkpoints, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_recomputed_without_the_key_is_detected() {
    let (f, _) = Fixture::signed(20, 5).await;
    f.drop_guards().await;
    f.rewrite_and_rechain(7, "directive/rewritten").await;
    // The chain alone is fooled.
    assert_eq!(verify(&*f.store, |_, _| {}).await.unwrap().records, 20);
    // The first checkpoint after the change is not.
    let hashes = f.hashes().await;
    for key in [Some(key()), None] {
        let failure = f.failure(key.as_ref()).await;
        let CheckpointFailure::HeadMismatch {
            seq,
            signed,
            record,
        } = &failure
        else {
            panic!("{failure}");
        };
        assert_eq!((*seq, *record), (10, hashes[9]));
        assert_eq!(
            failure.to_string(),
            format!(
                "checkpoint 10: head mismatch (signed head {}, record 10 has hash {}): records \
                 up to 10 were rewritten and re-hashed, or the checkpoint was edited",
                hex::encode(signed),
                hex::encode(record)
            )
        );
    }
    let err = f.check(Some(&key())).await.unwrap_err();
    assert_eq!(err.exit_code(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tail_cut_off_after_a_checkpoint_is_detected() {
    let (f, _) = Fixture::signed(20, 5).await;
    f.drop_guards().await;
    f.exec("DELETE FROM records WHERE seq > 17").await;
    assert_eq!(verify(&*f.store, |_, _| {}).await.unwrap().records, 17);
    for key in [Some(key()), None] {
        let failure = f.failure(key.as_ref()).await;
        assert_eq!(
            failure,
            CheckpointFailure::Truncated {
                seq: 20,
                records: 17
            }
        );
        assert_eq!(
            failure.to_string(),
            "checkpoint 20: truncated: checkpoint 20 covers records the ledger no longer has \
             (it ends at record 17)"
        );
    }
    // Cut at a page boundary and with nothing left: the same.
    f.exec("DELETE FROM records").await;
    assert_eq!(
        f.failure(Some(&key())).await,
        CheckpointFailure::Truncated { seq: 5, records: 0 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_checkpoint_is_detected() {
    let (f, checkpoints) = Fixture::signed(20, 5).await;
    f.drop_guards().await;
    // A flipped signature bit.
    let mut signature = checkpoints[1].signature;
    signature[10] ^= 1;
    f.set_checkpoint_blob(10, "signature", &signature).await;
    let failure = f.failure(Some(&key())).await;
    assert_eq!(
        failure.to_string(),
        format!(
            "checkpoint 10: the signature does not verify with public key {}: the checkpoint \
             was forged or edited",
            checkpoints[0].key_id
        )
    );
    // Without the key only head and root are compared: those still hold.
    f.check(None).await.unwrap();
    f.set_checkpoint_blob(10, "signature", &checkpoints[1].signature)
        .await;

    // An edited Merkle root: the signature breaks (with the key), the root (without).
    f.set_checkpoint_blob(15, "merkle_root", &[0; 32]).await;
    assert!(matches!(
        f.failure(Some(&key())).await,
        CheckpointFailure::BadSignature { seq: 15, .. }
    ));
    let failure = f.failure(None).await;
    assert!(
        matches!(failure, CheckpointFailure::RootMismatch { seq: 15, signed, .. } if signed == [0; 32]),
        "{failure}"
    );
    f.set_checkpoint_blob(15, "merkle_root", &checkpoints[2].merkle_root)
        .await;

    // Another key id written in.
    f.exec("UPDATE checkpoints SET key_id = '0123456789abcdef' WHERE seq = 5")
        .await;
    assert_eq!(
        f.failure(Some(&key())).await,
        CheckpointFailure::WrongKey {
            seq: 5,
            found: "0123456789abcdef".into(),
            expected: checkpoints[0].key_id.clone(),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewrite_with_matching_forged_checkpoints_needs_the_key_to_be_caught() {
    let (f, checkpoints) = Fixture::signed(20, 5).await;
    f.drop_guards().await;
    f.rewrite_and_rechain(12, "directive/rewritten").await;
    // The attacker also rewrites the checkpoints' heads and roots, keeping the signatures.
    let hashes = f.hashes().await;
    for cp in checkpoints.iter().filter(|c| c.seq >= 12) {
        let n = cp.seq as usize;
        f.set_checkpoint_blob(cp.seq, "head", &hashes[n - 1]).await;
        f.set_checkpoint_blob(cp.seq, "merkle_root", &root(&hashes[..n]))
            .await;
    }
    // Without the public key this is indistinguishable from the original...
    f.check(None).await.unwrap();
    // ...with it, the first edited checkpoint's signature fails.
    assert!(matches!(
        f.failure(Some(&key())).await,
        CheckpointFailure::BadSignature { seq: 15, .. }
    ));
    // Re-signing with the attacker's own key names the wrong key.
    f.exec("DELETE FROM checkpoints WHERE seq >= 15").await;
    let forged = Checkpoint::sign(&attacker_key(), 20, 0, hashes[19], root(&hashes));
    f.store.append_checkpoint(forged.clone()).await.unwrap();
    assert_eq!(
        f.failure(Some(&key())).await,
        CheckpointFailure::WrongKey {
            seq: 20,
            found: forged.key_id,
            expected: checkpoints[0].key_id.clone()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wrong_public_key_fails_at_the_first_checkpoint() {
    let (f, checkpoints) = Fixture::signed(8, 5).await;
    let failure = f.failure(Some(&attacker_key())).await;
    let expected = metaloop_ledger::checkpoint::key_id(&attacker_key().verifying_key());
    assert_eq!(
        failure.to_string(),
        format!(
            "checkpoint 5: signed by key {}, not by the given public key {expected}: the \
             checkpoint was forged, or this is not the ledger's public key",
            checkpoints[0].key_id
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_key_a_ledger_without_checkpoints_fails() {
    let f = Fixture::new().await;
    assert_eq!(f.check(Some(&key())).await.unwrap().chain.records, 0);
    f.store.append((0..3).map(record).collect()).await.unwrap();
    let failure = f.failure(Some(&key())).await;
    assert_eq!(
        failure.to_string(),
        "no signed checkpoint: the chain cannot be authenticated (3 records, none covered by a \
         checkpoint)"
    );
    let report = f.check(None).await.unwrap();
    assert_eq!((report.checkpoints, report.unsigned_tail), (0, 3));
    assert_ne!(report.merkle_root, empty_root());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_tampering_is_still_reported_as_a_record_failure() {
    let (f, _) = Fixture::signed(10, 5).await;
    f.drop_guards().await;
    f.exec("UPDATE records SET time_ms = time_ms + 1 WHERE seq = 3")
        .await;
    match f.check(Some(&key())).await {
        Err(CheckpointVerifyError::Tampered(failure)) => {
            assert_eq!(failure.seq, 3);
            assert!(failure.to_string().starts_with("record 3: hash mismatch"));
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Inclusion proofs

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_has_a_proof_that_verifies_alone() {
    let (f, _) = Fixture::signed(37, 10).await;
    let records = f.store.read(1, 100).await.unwrap();
    let public = key().verifying_key();
    for r in &records {
        let proof = prove(&*f.store, r.seq, None).await.unwrap();
        assert_eq!((proof.seq, proof.tree_size), (r.seq, 37));
        assert_eq!(proof.record_hash, r.hash);
        proof.verify(&public).unwrap();
        proof.verify_record(r, &public).unwrap();
        // As JSON and back, it still verifies.
        let text = serde_json::to_string(&proof).unwrap();
        let back: InclusionProof = serde_json::from_str(&text).unwrap();
        assert_eq!(back, proof);
        back.verify(&public).unwrap();
    }
    // Against an older checkpoint.
    let proof = prove(&*f.store, 4, Some(10)).await.unwrap();
    assert_eq!(proof.tree_size, 10);
    proof.verify(&public).unwrap();
    let proof = prove(&*f.store, 10, Some(10)).await.unwrap();
    assert_eq!(proof.record_hash, proof.checkpoint.head);
    proof.verify(&public).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proof_json_has_the_documented_shape() {
    let (f, _) = Fixture::signed(3, 10).await;
    let proof = prove(&*f.store, 2, None).await.unwrap();
    let v = serde_json::to_value(&proof).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "audit_path",
            "checkpoint",
            "leaf_index",
            "record_hash",
            "seq",
            "tree_size"
        ]
    );
    assert_eq!(v["leaf_index"], 1);
    assert_eq!(v["audit_path"].as_array().unwrap().len(), 2);
    assert_eq!(v["checkpoint"]["seq"], 3);
    assert_eq!(v["checkpoint"]["signature"].as_str().unwrap().len(), 128);
    let mut unknown = v.clone();
    unknown["extra"] = json!(1);
    assert!(serde_json::from_value::<InclusionProof>(unknown).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_proof_or_record_does_not_verify() {
    let (f, _) = Fixture::signed(12, 100).await;
    let public = key().verifying_key();
    let proof = prove(&*f.store, 6, None).await.unwrap();
    proof.verify(&public).unwrap();

    let mut bad = proof.clone();
    bad.audit_path[1][5] ^= 0x20;
    assert_eq!(
        bad.verify(&public).unwrap_err().to_string(),
        "the audit path does not lead from record 6's hash to the Merkle root signed by \
         checkpoint 12: the record or the proof was changed"
    );
    let mut bad = proof.clone();
    bad.record_hash[0] ^= 1;
    assert!(matches!(
        bad.verify(&public),
        Err(ProofError::PathMismatch { .. })
    ));
    let mut bad = proof.clone();
    bad.checkpoint.merkle_root[0] ^= 1;
    assert!(matches!(
        bad.verify(&public),
        Err(ProofError::BadSignature(_))
    ));
    let mut bad = proof.clone();
    bad.leaf_index = 4;
    assert!(matches!(bad.verify(&public), Err(ProofError::Malformed(_))));
    let mut bad = proof.clone();
    bad.tree_size = 11;
    assert!(matches!(bad.verify(&public), Err(ProofError::Malformed(_))));
    assert!(matches!(
        proof.verify(&attacker_key().verifying_key()),
        Err(ProofError::WrongKey { .. })
    ));

    let mut record = f.store.read(6, 1).await.unwrap().remove(0);
    proof.verify_record(&record, &public).unwrap();
    record.payload = json!({"n": 5, "confidence": 0.99});
    assert!(matches!(
        proof.verify_record(&record, &public),
        Err(ProofError::WrongRecord(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proofs_are_refused_where_no_checkpoint_vouches() {
    let (f, _) = Fixture::signed(12, 5).await;
    f.store.append(vec![record(12)]).await.unwrap();
    let err = prove(&*f.store, 13, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no signed checkpoint covers record 13 yet (the checkpoint used covers records \
         1..=12); try again after the next checkpoint"
    );
    assert!(matches!(
        prove(&*f.store, 14, None).await,
        Err(ProveError::NoSuchRecord {
            seq: 14,
            records: 13
        })
    ));
    assert!(matches!(
        prove(&*f.store, 0, None).await,
        Err(ProveError::NoSuchRecord { seq: 0, .. })
    ));
    assert!(matches!(
        prove(&*f.store, 7, Some(5)).await,
        Err(ProveError::NotCovered {
            seq: 7,
            latest: Some(5)
        })
    ));
    assert!(matches!(
        prove(&*f.store, 3, Some(6)).await,
        Err(ProveError::NoSuchCheckpoint(6))
    ));

    let bare = Fixture::new().await;
    bare.store.append(vec![record(0)]).await.unwrap();
    assert!(matches!(
        prove(&*bare.store, 1, None).await,
        Err(ProveError::NotCovered {
            seq: 1,
            latest: None
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proof_is_refused_from_a_ledger_that_no_longer_matches_its_checkpoint() {
    let (f, _) = Fixture::signed(12, 100).await;
    f.drop_guards().await;
    f.rewrite_and_rechain(4, "directive/rewritten").await;
    let err = prove(&*f.store, 2, None).await.unwrap_err();
    assert!(matches!(err, ProveError::Mismatch { seq: 12, .. }), "{err}");
    f.exec("DELETE FROM records WHERE seq > 9").await;
    let err = prove(&*f.store, 2, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated: checkpoint 12 covers records the ledger no longer has (it ends at record 9) \
         (run `metaloop ledger verify`)"
    );
}

// ---------------------------------------------------------------------------------------
// docs/LEDGER.md §8

const DOC: &str = include_str!("../../../docs/LEDGER.md");

/// The hex digits of the code block after `marker`.
fn block_after(marker: &str) -> String {
    let rest = &DOC[DOC
        .find(marker)
        .unwrap_or_else(|| panic!("LEDGER.md lacks {marker}"))..];
    let body = &rest[rest.find("```").unwrap() + 3..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()]
        .split_whitespace()
        .collect()
}

#[test]
fn the_worked_checkpoint_example_in_the_docs_is_current() {
    let h1 = hex::decode_hash("a25eefb1dd908a8b8f56ed2d9b0be622b7f9f03871aa3b790c14ae21f9f906ec")
        .unwrap();
    let h2 = hex::decode_hash("e8d60af21ae5348f007557466f2496f5f8d1267763ecd0c5c2069dc8212209c2")
        .unwrap();
    // RFC 8032 §7.1, TEST 1.
    let seed = hex::decode_hash("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        .unwrap();
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(
        hex::encode(key.verifying_key().as_bytes()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    let root = root(&[h1, h2]);
    let table = &DOC[DOC.find("<!-- example:merkle -->").unwrap()..];
    for value in [
        metaloop_ledger::merkle::leaf_hash(&h1),
        metaloop_ledger::merkle::leaf_hash(&h2),
        root,
    ] {
        assert!(
            table[..600].contains(&hex::encode(&value)),
            "the Merkle table in docs/LEDGER.md is stale"
        );
    }
    let message = Checkpoint::message(2, 1_767_226_000_000, &h2, &root);
    assert_eq!(message.len(), 103);
    assert_eq!(
        block_after("<!-- example:checkpoint-message -->"),
        hex::encode(&message),
        "the checkpoint message in docs/LEDGER.md is stale"
    );
    let cp = Checkpoint::sign(&key, 2, 1_767_226_000_000, h2, root);
    assert_eq!(cp.key_id, "21fe31dfa154a261");
    assert_eq!(
        block_after("<!-- example:checkpoint-signature -->"),
        hex::encode(&cp.signature),
        "the checkpoint signature in docs/LEDGER.md is stale"
    );
}

fn python(script: &std::path::Path, args: &[&std::path::Path]) -> (i32, String) {
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed for this test");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Needs `python3` with the `cryptography` package:
/// `cargo test -p metaloop-ledger --test checkpoints -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn the_python_proof_checker_in_the_docs_agrees() {
    let start = DOC.find("<!-- proof-verifier -->").unwrap();
    let rest = &DOC[start..];
    let body = &rest[rest.find("```python\n").unwrap() + "```python\n".len()..];
    let script_text = &body[..body.find("```").unwrap()];
    let (f, _) = Fixture::signed(13, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("prove_check.py");
    std::fs::write(&script, script_text).unwrap();
    let public = dir.path().join("supervisor.pub");
    metaloop_ledger::keys::write_public_key(&public, &key().verifying_key()).unwrap();
    let wrong = dir.path().join("other.pub");
    metaloop_ledger::keys::write_public_key(&wrong, &attacker_key().verifying_key()).unwrap();
    let file = dir.path().join("proof.json");
    for seq in 1..=13 {
        let proof = prove(&*f.store, seq, None).await.unwrap();
        std::fs::write(&file, serde_json::to_string(&proof).unwrap()).unwrap();
        let (code, out) = python(&script, &[&file, &public]);
        assert_eq!(code, 0, "record {seq}: {out}");
        assert!(out.starts_with(&format!("ok: record {seq} is in")), "{out}");
        let (code, out) = python(&script, &[&file, &wrong]);
        assert_eq!(code, 3, "{out}");
        let mut bad = proof.clone();
        bad.audit_path[0][0] ^= 1;
        std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
        let (code, out) = python(&script, &[&file, &public]);
        assert_eq!(
            (code, out.trim()),
            (3, "the audit path does not lead to the signed root")
        );
    }
}
