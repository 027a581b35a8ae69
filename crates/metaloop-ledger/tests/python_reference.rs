//! Runs the Python reference verifier printed in `docs/LEDGER.md` against ledgers written by
//! this crate, so the document's rules and the code cannot drift apart unnoticed.
//! Needs `python3`: `cargo test -p metaloop-ledger --test python_reference -- --ignored`.

use std::process::Command;

use metaloop_ledger::{LedgerStore, NewRecord, SqliteLedger, hex, verify};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/LEDGER.md");

fn reference_verifier() -> String {
    let start = DOC.find("<!-- reference-verifier -->").unwrap();
    let rest = &DOC[start..];
    let body = &rest[rest.find("```python\n").unwrap() + "```python\n".len()..];
    body[..body.find("```").unwrap()].to_string()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1e6..1e6f64).prop_map(Value::from),
        "\\PC*|[\\x00-\\x7f]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn run_python(script: &std::path::Path, db: &std::path::Path) -> (i32, String) {
    let out = Command::new("python3")
        .arg(script)
        .arg(db)
        .output()
        .expect("python3 must be installed for this test");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
#[ignore]
async fn python_reference_verifier_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify.py");
    std::fs::write(&script, reference_verifier()).unwrap();
    let db = dir.path().join("ledger.db");
    let ledger = SqliteLedger::open(&db).await.unwrap();

    let mut runner = TestRunner::deterministic();
    let strategy = arb_json();
    let batch: Vec<NewRecord> = (0..2000)
        .map(|i| {
            let payload = strategy.new_tree(&mut runner).unwrap().current();
            NewRecord::new(
                i - 1000,
                "supervisor",
                "test.payload",
                format!("case/{i}"),
                payload,
            )
        })
        .collect();
    ledger.append(batch).await.unwrap();
    let report = verify(&ledger, |_, _| {}).await.unwrap();
    ledger.close().await;

    let (code, text) = run_python(&script, &db);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.trim(),
        format!(
            "ok: 2000 records, head {}",
            hex::encode(&report.head.unwrap())
        )
    );

    // And it notices tampering.
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP TRIGGER records_refuse_update;
         UPDATE records SET time_ms = time_ms + 1 WHERE seq = 1234;",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let (code, text) = run_python(&script, &db);
    assert_eq!((code, text.trim()), (3, "record 1234: hash mismatch"));
}
