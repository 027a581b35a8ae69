//! Signed checkpoints end to end, on every backend: made by the writer every N records,
//! every T seconds and at shutdown with the right Merkle roots; checked by
//! `verify_with_checkpoints` against the tampering the hash chain alone cannot see (a chain
//! recomputed without the key, a tail cut off after a checkpoint, edited or forged
//! checkpoints, the wrong public key); inclusion proofs built from them.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use metaloop_ledger::merkle::{empty_root, root};
use metaloop_ledger::{
    Checkpoint, CheckpointFailure, CheckpointVerifyError, CheckpointVerifyReport, HashInput,
    InclusionProof, LedgerError, LedgerStore, LedgerWriter, NewRecord, ProofError, ProveError,
    WriterOptions, hex, prove, verify, verify_with_checkpoints, verify_with_checkpoints_paged,
};
use serde_json::json;

use super::Backend;

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

/// A ledger of the backend under test, and its raw access playing the attacker.
struct Fixture<B: Backend> {
    store: Arc<B::Store>,
    backend: B,
}

impl<B: Backend> Fixture<B> {
    async fn new() -> Self {
        let backend = B::create().await;
        Self {
            store: backend.store(),
            backend,
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
        self.backend.exec(sql).await.unwrap();
    }

    async fn drop_guards(&self) {
        self.backend.drop_guards().await;
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
            if row.seq == seq {
                self.backend.set_text(row.seq, "resource", resource).await;
            }
            self.backend.set_blob(row.seq, "prev_hash", &prev).await;
            self.backend.set_blob(row.seq, "hash", &hash).await;
            prev = hash;
        }
    }

    async fn set_checkpoint_blob(&self, seq: u64, column: &str, bytes: &[u8]) {
        self.backend.set_checkpoint_blob(seq, column, bytes).await;
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

pub async fn checkpoints_every_n_records_and_at_shutdown_have_scratch_roots<B: Backend>() {
    let (f, checkpoints) = Fixture::<B>::signed(35, 10).await;
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

pub async fn a_checkpoint_follows_the_interval_only_when_records_were_added<B: Backend>() {
    let f = Fixture::<B>::new().await;
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

pub async fn a_restarted_writer_primes_its_tree_from_the_stored_hashes<B: Backend>() {
    let f = Fixture::<B>::new().await;
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

pub async fn the_writer_catches_up_with_records_appended_around_it<B: Backend>() {
    // Another process appending to the same file: the tree reads what it missed.
    let f = Fixture::<B>::new().await;
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

pub async fn the_writer_refuses_a_ledger_that_no_longer_matches_its_checkpoint<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(12, 5).await;
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

    let (f, _) = Fixture::<B>::signed(12, 5).await;
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

pub async fn an_intact_ledger_verifies_with_every_page_size<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(23, 5).await;
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

pub async fn a_chain_recomputed_without_the_key_is_detected<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(20, 5).await;
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

pub async fn a_tail_cut_off_after_a_checkpoint_is_detected<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(20, 5).await;
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

pub async fn an_edited_checkpoint_is_detected<B: Backend>() {
    let (f, checkpoints) = Fixture::<B>::signed(20, 5).await;
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

pub async fn a_rewrite_with_matching_forged_checkpoints_needs_the_key_to_be_caught<B: Backend>() {
    let (f, checkpoints) = Fixture::<B>::signed(20, 5).await;
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

pub async fn the_wrong_public_key_fails_at_the_first_checkpoint<B: Backend>() {
    let (f, checkpoints) = Fixture::<B>::signed(8, 5).await;
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

pub async fn with_a_key_a_ledger_without_checkpoints_fails<B: Backend>() {
    let f = Fixture::<B>::new().await;
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

pub async fn record_tampering_is_still_reported_as_a_record_failure<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(10, 5).await;
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

pub async fn every_record_has_a_proof_that_verifies_alone<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(37, 10).await;
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

pub async fn proof_json_has_the_documented_shape<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(3, 10).await;
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

pub async fn a_changed_proof_or_record_does_not_verify<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(12, 100).await;
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

pub async fn proofs_are_refused_where_no_checkpoint_vouches<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(12, 5).await;
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

    let bare = Fixture::<B>::new().await;
    bare.store.append(vec![record(0)]).await.unwrap();
    assert!(matches!(
        prove(&*bare.store, 1, None).await,
        Err(ProveError::NotCovered {
            seq: 1,
            latest: None
        })
    ));
}

pub async fn a_proof_is_refused_from_a_ledger_that_no_longer_matches_its_checkpoint<B: Backend>() {
    let (f, _) = Fixture::<B>::signed(12, 100).await;
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
