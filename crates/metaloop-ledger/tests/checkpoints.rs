//! The worked checkpoint example and the Python proof checker in docs/LEDGER.md, against the
//! code (the checkpoint behaviour itself is in the backend suite, `suite/checkpoints.rs`).

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use metaloop_ledger::merkle::root;
use metaloop_ledger::{
    Checkpoint, LedgerStore, LedgerWriter, NewRecord, SqliteLedger, WriterOptions, hex, prove,
};
use serde_json::json;
use tempfile::TempDir;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn attacker_key() -> SigningKey {
    SigningKey::from_bytes(&[66; 32])
}

/// A SQLite ledger of `records` records with a checkpoint every `every` and at shutdown.
async fn signed(records: usize, every: u64) -> (Arc<SqliteLedger>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteLedger::open(dir.path().join("ledger.db"))
            .await
            .unwrap(),
    );
    let writer = LedgerWriter::spawn(
        store.clone(),
        WriterOptions::new()
            .signing_key(key())
            .checkpoint_every(every)
            .checkpoint_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    for i in 0..records {
        let record = NewRecord::new(
            1_767_225_600_000 + i as i64 * 1000,
            "supervisor",
            "directive.issued",
            format!("directive/{i:04}"),
            json!({"n": i, "confidence": 0.81}),
        );
        writer.append(record).await.unwrap();
    }
    writer.shutdown().await.unwrap();
    assert!(store.latest_checkpoint().await.unwrap().is_some());
    (store, dir)
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
    let (store, _ledger_dir) = signed(13, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("prove_check.py");
    std::fs::write(&script, script_text).unwrap();
    let public = dir.path().join("supervisor.pub");
    metaloop_ledger::keys::write_public_key(&public, &key().verifying_key()).unwrap();
    let wrong = dir.path().join("other.pub");
    metaloop_ledger::keys::write_public_key(&wrong, &attacker_key().verifying_key()).unwrap();
    let file = dir.path().join("proof.json");
    for seq in 1..=13 {
        let proof = prove(&*store, seq, None).await.unwrap();
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
