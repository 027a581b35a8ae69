//! Auditors' formats end to end, through the binary: checkpoints as C2SP signed notes
//! (checked by the verifier written from the specification in docs/LEDGER.md, in Python with
//! PyNaCl), a `metaloop witness` cosigning them, `ledger verify --witness` detecting a
//! rewrite under another key, a fork and a truncation, and `ledger check-proof` refusing
//! every forged field of a proof.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::metaloop;
use ed25519_dalek::SigningKey;
use metaloop_ledger::{LedgerStore, LedgerWriter, NewRecord, SqliteLedger, WriterOptions, hex};
use serde_json::{Value, json};

const DOC: &str = include_str!("../../../docs/LEDGER.md");

/// The record `i` of the honest ledger; `variant` changes its payload (another history).
fn record(i: u64, variant: u64) -> NewRecord {
    NewRecord::new(
        1_767_225_600_000 + i as i64 * 1000,
        "supervisor",
        "directive.issued",
        format!("directive/{i:04}"),
        json!({"n": i, "variant": variant}),
    )
}

/// Writes the key files a data directory holds for `seed`.
fn write_keys(dir: &Path, seed: [u8; 32]) {
    std::fs::create_dir_all(dir).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let secret = dir.join("supervisor.key");
    let _ = std::fs::remove_file(&secret);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .unwrap();
        use std::io::Write;
        writeln!(f, "metaloop-ed25519-secret-v1 {}", hex::encode(&seed)).unwrap();
    }
    metaloop_ledger::keys::write_public_key(dir.join("supervisor.pub"), &key.verifying_key())
        .unwrap();
    let vkey = metaloop_ledger::note::ledger_verifier(&key.verifying_key()).to_vkey();
    std::fs::write(dir.join("supervisor.vkey"), format!("{vkey}\n")).unwrap();
}

/// Appends `records` (seq → variant) to the ledger in `dir` signed by `seed`, checkpointing
/// every 10 records and at the end.
async fn append(
    dir: &Path,
    seed: [u8; 32],
    records: std::ops::RangeInclusive<u64>,
    variant: impl Fn(u64) -> u64,
) {
    let store = Arc::new(SqliteLedger::open(dir.join("ledger.db")).await.unwrap());
    let writer = LedgerWriter::spawn(
        store.clone(),
        WriterOptions::new()
            .signing_key(SigningKey::from_bytes(&seed))
            .checkpoint_every(10)
            .checkpoint_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    for i in records {
        writer.append(record(i, variant(i))).await.unwrap();
    }
    writer.shutdown().await.unwrap();
    store.close().await;
}

/// Copies the note signatures of `from` at checkpoint `seq` into the ledger in `to`.
async fn copy_cosignatures(from: &Path, to: &Path, seq: u64) {
    let src = SqliteLedger::open(from.join("ledger.db")).await.unwrap();
    let sigs: Vec<_> = src
        .note_signatures(seq - 1, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|(s, sig)| *s == seq && sig.name.starts_with("witness"))
        .map(|(_, sig)| sig)
        .collect();
    assert!(!sigs.is_empty(), "no cosignature at {seq} to copy");
    src.close().await;
    let dst = SqliteLedger::open(to.join("ledger.db")).await.unwrap();
    dst.append_note_signatures(seq, sigs).await.unwrap();
    dst.close().await;
}

/// A `metaloop witness` process, killed on drop.
struct WitnessProcess {
    child: Child,
    url: String,
    vkey: String,
}

impl WitnessProcess {
    fn start(dir: &Path, log_vkey: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metaloop"))
            .args([
                "witness",
                "--listen",
                "127.0.0.1:0",
                "--name",
                "witness.test/w1",
            ])
            .arg("--key")
            .arg(dir.join("witness.key"))
            .arg("--state")
            .arg(dir.join("witness.json"))
            .arg("--log")
            .arg(log_vkey)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.rsplit(' ').next().unwrap().to_owned();
        let second = lines.next().unwrap().unwrap();
        let vkey = second.strip_prefix("verifier key: ").unwrap().to_owned();
        assert_eq!(
            std::fs::read_to_string(dir.join("witness.vkey"))
                .unwrap()
                .trim(),
            vkey
        );
        Self { child, url, vkey }
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `metaloop ledger verify --data DIR --pubkey DIR/supervisor.pub --witness W [--witness-url U]`.
fn verify(dir: &Path, w: &WitnessProcess, with_url: bool) -> (i32, String) {
    let pubkey = dir.join("supervisor.pub");
    let mut args = vec!["ledger", "verify", "--data", s(dir), "--pubkey", s(&pubkey)];
    args.extend(["--witness", w.vkey.as_str()]);
    if with_url {
        args.extend(["--witness-url", w.url.as_str()]);
    }
    let out = metaloop(&args);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn cosign(dir: &Path, w: &WitnessProcess) -> (i32, String) {
    let out = metaloop(&[
        "ledger",
        "cosign",
        "--data",
        s(dir),
        "--witness-url",
        &w.url,
        "--witness",
        &w.vkey,
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

const KEY: [u8; 32] = [42; 32];
const ATTACKER: [u8; 32] = [66; 32];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_detects_rewrites_forks_and_truncations() {
    let root = tempfile::tempdir().unwrap();
    let honest = root.path().join("honest");
    write_keys(&honest, KEY);
    append(&honest, KEY, 1..=10, |_| 0).await;
    let w = WitnessProcess::start(root.path(), &honest.join("supervisor.vkey"));

    // The honest ledger: cosigned at 10, then at 20 with a consistency proof from 10.
    let (code, out) = cosign(&honest, &w);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cosigned checkpoint 10"), "{out}");
    append(&honest, KEY, 11..=20, |_| 0).await;
    let (code, out) = cosign(&honest, &w);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cosigned checkpoint 20"), "{out}");
    let (code, out) = verify(&honest, &w, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("witness witness.test/w1 cosigned up to record 20"),
        "{out}"
    );
    assert!(
        out.contains("0 record(s) after the last witnessed checkpoint"),
        "{out}"
    );
    assert!(
        out.contains("the ledger contains the latest checkpoint cosigned by"),
        "{out}"
    );

    // A full rewrite (record 5 changed) re-signed with another key, supervisor.pub replaced.
    let rewritten = root.path().join("rewritten");
    write_keys(&rewritten, ATTACKER);
    append(&rewritten, ATTACKER, 1..=20, |i| u64::from(i == 5)).await;
    let plain = metaloop(&[
        "ledger",
        "verify",
        "--data",
        s(&rewritten),
        "--pubkey",
        s(&rewritten.join("supervisor.pub")),
    ]);
    assert!(
        plain.status.success(),
        "without a witness the rewrite passes"
    );
    let (code, out) = verify(&rewritten, &w, false);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no cosignature from witness witness.test/w1"),
        "{out}"
    );
    let (code, out) = verify(&rewritten, &w, true);
    assert_eq!(code, 3, "{out}");
    // … even with the honest ledger's cosignature copied in.
    copy_cosignatures(&honest, &rewritten, 20).await;
    let (code, out) = verify(&rewritten, &w, false);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("the cosignature of witness witness.test/w1 does not verify"),
        "{out}"
    );
    // The witness does not know the attacker's key: it refuses to cosign.
    let (code, out) = cosign(&rewritten, &w);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("404"), "{out}");

    // A fork: the same key, the same first 10 records, then another history.
    let fork = root.path().join("fork");
    write_keys(&fork, KEY);
    append(&fork, KEY, 1..=20, |i| u64::from(i > 10)).await;
    copy_cosignatures(&honest, &fork, 10).await;
    let (code, out) = verify(&fork, &w, false);
    assert_eq!(code, 0, "the shared prefix is legitimately cosigned: {out}");
    assert!(
        out.contains("10 record(s) after the last witnessed checkpoint"),
        "{out}"
    );
    let (code, out) = verify(&fork, &w, true);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("the ledger was rewritten or forked"), "{out}");
    // The witness refuses to cosign the fork: its checkpoint 20 is not the one cosigned.
    let (code, out) = cosign(&fork, &w);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("422"), "{out}");

    // A truncation below the witnessed size: the first 15 records, checkpoints 10 and 15.
    let truncated = root.path().join("truncated");
    write_keys(&truncated, KEY);
    append(&truncated, KEY, 1..=15, |_| 0).await;
    copy_cosignatures(&honest, &truncated, 10).await;
    let (code, out) = verify(&truncated, &w, false);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&truncated, &w, true);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("truncated: the witness cosigned 20 records, the ledger has 15"),
        "{out}"
    );

    // The honest ledger still verifies, and its checkpoint note carries both signatures.
    let (code, out) = verify(&honest, &w, true);
    assert_eq!(code, 0, "{out}");
    let out = metaloop(&["ledger", "checkpoint", "--data", s(&honest)]);
    assert!(out.status.success());
    let note = String::from_utf8(out.stdout).unwrap();
    assert!(note.contains("\n20\n"), "{note}");
    assert_eq!(note.matches('\u{2014}').count(), 2, "{note}");
    python_accepts(
        root.path(),
        &note,
        &[&honest.join("supervisor.vkey")],
        &w.vkey,
    );
}

/// The verifier written from the C2SP specification in docs/LEDGER.md (Python, PyNaCl)
/// accepts the note with each key, and refuses it when a byte changes.
fn python_accepts(dir: &Path, note: &str, vkey_files: &[&Path], witness_vkey: &str) {
    let has_nacl = Command::new("python3")
        .args(["-c", "import nacl"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_nacl {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs python3 with PyNaCl for the signed-note verifier"
        );
        eprintln!("skipping the Python signed-note check: python3 with PyNaCl is not installed");
        return;
    }
    let start = DOC
        .find("<!-- note-verifier -->")
        .expect("LEDGER.md lacks the note verifier");
    let rest = &DOC[start..];
    let body = &rest[rest.find("```python\n").unwrap() + "```python\n".len()..];
    let script = dir.join("note_check.py");
    std::fs::write(&script, &body[..body.find("```").unwrap()]).unwrap();
    let note_file = dir.join("checkpoint.note");
    let run = |note: &str, vkey: &str| {
        std::fs::write(&note_file, note).unwrap();
        let out = Command::new("python3")
            .arg(&script)
            .arg(&note_file)
            .arg(vkey)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    };
    let supervisor = std::fs::read_to_string(vkey_files[0]).unwrap();
    let (code, out) = run(note, supervisor.trim());
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    let (code, out) = run(note, witness_vkey);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("size 20"), "{out}");
    // The tree size changed: refused by both keys.
    let forged = note.replacen("\n20\n", "\n21\n", 1);
    assert_eq!(run(&forged, supervisor.trim()).0, 3);
    assert_eq!(run(&forged, witness_vkey).0, 3);
}

/// The JSON paths of every leaf of `v`.
fn leaves(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let mut p = path.clone();
            p.push(k.clone());
            leaves(x, p, out);
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            let mut p = path.clone();
            p.push(i.to_string());
            leaves(x, p, out);
        }),
        _ => out.push(path),
    }
}

fn forge(v: &mut Value, path: &[String]) {
    let mut at = v;
    for k in path {
        at = match at {
            Value::Object(m) => m.get_mut(k).unwrap(),
            Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    *at = match &*at {
        Value::Number(n) => json!(n.as_i64().unwrap() + 1),
        Value::String(t) => {
            let mut chars: Vec<char> = t.chars().collect();
            chars[0] = if chars[0] == '0' { '1' } else { '0' };
            json!(chars.into_iter().collect::<String>())
        }
        other => panic!("unexpected leaf {other}"),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proof_accepts_valid_proofs_and_refuses_each_forged_field() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    write_keys(&data, KEY);
    append(&data, KEY, 1..=23, |_| 0).await;
    let pubkey = data.join("supervisor.pub");
    let vkey = data.join("supervisor.vkey");
    let proofs: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            root.path().join("inclusion.json"),
            vec!["ledger", "prove", "7", "--checkpoint", "20"],
        ),
        (
            root.path().join("consistency.json"),
            vec!["ledger", "prove", "--consistency", "10", "23"],
        ),
    ];
    for (file, args) in &proofs {
        let mut args = args.clone();
        args.extend(["--data", s(&data), "--pubkey", s(&pubkey)]);
        let out = metaloop(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(file, &out.stdout).unwrap();
        for key in [&pubkey, &vkey] {
            let out = metaloop(&["ledger", "check-proof", s(file), "--pubkey", s(key)]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
        }
        let proof: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let mut paths = Vec::new();
        leaves(&proof, Vec::new(), &mut paths);
        assert!(paths.len() >= 12, "{paths:?}");
        let forged_file = root.path().join("forged.json");
        for path in paths {
            let mut forged = proof.clone();
            forge(&mut forged, &path);
            std::fs::write(&forged_file, serde_json::to_vec(&forged).unwrap()).unwrap();
            let out = metaloop(&[
                "ledger",
                "check-proof",
                s(&forged_file),
                "--pubkey",
                s(&pubkey),
            ]);
            assert_eq!(
                out.status.code(),
                Some(3),
                "forged {path:?} accepted: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        // Another key refuses the genuine proof.
        let other = root.path().join("other.pub");
        metaloop_ledger::keys::write_public_key(
            &other,
            &SigningKey::from_bytes(&ATTACKER).verifying_key(),
        )
        .unwrap();
        let out = metaloop(&["ledger", "check-proof", s(file), "--pubkey", s(&other)]);
        assert_eq!(out.status.code(), Some(3));
    }
    // A consistency proof from a later checkpoint to an earlier one is refused at once.
    let out = metaloop(&[
        "ledger",
        "prove",
        "--consistency",
        "20",
        "10",
        "--data",
        s(&data),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
