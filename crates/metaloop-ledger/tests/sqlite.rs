//! The ledger test suite on SQLite, plus what is specific to SQLite files.

mod suite;

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

use metaloop_ledger::{LedgerError, LedgerStore, NewRecord, SqliteLedger, StoredRecord, verify};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tempfile::TempDir;

use suite::Backend;

/// A ledger file in a temporary directory, and a second connection to it playing the
/// attacker with file access.
struct SqliteBackend {
    store: Arc<SqliteLedger>,
    raw: SqlitePool,
    _dir: TempDir,
}

fn chain(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Only the column names the suite uses may be interpolated into SQL.
fn column(name: &str) -> &str {
    assert!(
        [
            "seq",
            "time_ms",
            "actor",
            "action",
            "resource",
            "payload",
            "prev_hash",
            "hash"
        ]
        .contains(&name),
        "unknown column {name}"
    );
    name
}

/// Only the checkpoint columns the suite changes may be interpolated into SQL.
fn checkpoint_column(name: &str) -> &str {
    assert!(
        ["head", "merkle_root", "signature"].contains(&name),
        "unknown checkpoint column {name}"
    );
    name
}

impl Backend for SqliteBackend {
    type Store = SqliteLedger;

    async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let store = SqliteLedger::open(&path).await.unwrap();
        let raw = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        Self {
            store: Arc::new(store),
            raw,
            _dir: dir,
        }
    }

    fn store(&self) -> Arc<SqliteLedger> {
        self.store.clone()
    }

    async fn exec(&self, sql: &str) -> Result<(), String> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.raw)
            .await
            .map(|_| ())
            .map_err(|e| chain(&e))
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
        .await
        .unwrap();
    }

    async fn set_int(&self, seq: i64, name: &str, value: i64) {
        let sql = format!("UPDATE records SET {} = ?1 WHERE seq = ?2", column(name));
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .bind(seq)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn set_text(&self, seq: i64, name: &str, bytes: &[u8]) {
        // CAST keeps the bytes as they are, valid UTF-8 or not, and stores them as TEXT.
        let sql = format!(
            "UPDATE records SET {} = CAST(?1 AS TEXT) WHERE seq = ?2",
            column(name)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(bytes.to_vec())
            .bind(seq)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn set_blob(&self, seq: i64, name: &str, bytes: &[u8]) {
        let sql = format!("UPDATE records SET {} = ?1 WHERE seq = ?2", column(name));
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(bytes.to_vec())
            .bind(seq)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn set_checkpoint_blob(&self, seq: u64, name: &str, bytes: &[u8]) {
        let sql = format!(
            "UPDATE checkpoints SET {} = ?1 WHERE seq = ?2",
            checkpoint_column(name)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(bytes.to_vec())
            .bind(seq as i64)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn insert_raw(&self, row: &StoredRecord) -> Result<(), String> {
        sqlx::query(
            "INSERT INTO records (seq, time_ms, actor, action, resource, payload, prev_hash, hash)
             VALUES (?1, ?2, CAST(?3 AS TEXT), CAST(?4 AS TEXT), CAST(?5 AS TEXT),
                     CAST(?6 AS TEXT), ?7, ?8)",
        )
        .bind(row.seq)
        .bind(row.time_ms)
        .bind(row.actor.clone())
        .bind(row.action.clone())
        .bind(row.resource.clone())
        .bind(row.payload.clone())
        .bind(row.prev_hash.clone())
        .bind(row.hash.clone())
        .execute(&self.raw)
        .await
        .map(|_| ())
        .map_err(|e| chain(&e))
    }
}

ledger_test_suite!(SqliteBackend);

// ---------------------------------------------------------------------------------------
// SQLite specifics

fn record(i: i64) -> NewRecord {
    NewRecord::new(
        i,
        "supervisor",
        "cycle.completed",
        format!("cycle/{i}"),
        json!({"i": i}),
    )
}

#[tokio::test]
async fn open_creates_the_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let ledger = SqliteLedger::open(&path).await.unwrap();
    assert!(path.exists());
    assert_eq!(ledger.path(), path);
    ledger.append(vec![record(1)]).await.unwrap();
    let raw = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let triggers: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'records' ORDER BY name",
    )
    .fetch_all(&raw)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect();
    assert_eq!(
        triggers,
        [
            "records_refuse_delete",
            "records_refuse_out_of_chain_insert",
            "records_refuse_update"
        ]
    );
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = SqliteLedger::open(&path).await.unwrap();
    let first = ledger.append(vec![record(1), record(2)]).await.unwrap();
    ledger.close().await;
    let ledger = SqliteLedger::open(&path).await.unwrap();
    assert_eq!(ledger.head().await.unwrap(), Some((2, first[1].hash)));
    let next = ledger.append(vec![record(3)]).await.unwrap();
    assert_eq!((next[0].seq, next[0].prev_hash), (3, first[1].hash));
    assert_eq!(verify(&ledger, |_, _| {}).await.unwrap().records, 3);
}

#[tokio::test]
async fn two_handles_on_one_file_keep_seqs_gap_free() {
    // Two processes (or two opens) share the file: BEGIN IMMEDIATE serialises them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let a = Arc::new(SqliteLedger::open(&path).await.unwrap());
    let b = Arc::new(SqliteLedger::open(&path).await.unwrap());
    let mut tasks = Vec::new();
    for (i, ledger) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                ledger
                    .append(vec![record(i as i64 * 100 + j)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = verify(&*a, |_, _| {}).await.unwrap();
    assert_eq!(report.records, 80);
}

#[tokio::test]
async fn a_handle_whose_head_went_stale_chains_after_the_other_handles_records() {
    // Each handle remembers the head its last append left and chains the next one after it;
    // when another handle appended in between, the insert is refused (by the chain trigger,
    // or with the triggers dropped, by the taken seq) and the records are chained again.
    for drop_triggers in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let a = SqliteLedger::open(&path).await.unwrap();
        let b = SqliteLedger::open(&path).await.unwrap();
        if drop_triggers {
            let raw = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
                .await
                .unwrap();
            sqlx::raw_sql(
                "DROP TRIGGER records_refuse_update; DROP TRIGGER records_refuse_delete;
                 DROP TRIGGER records_refuse_out_of_chain_insert;",
            )
            .execute(&raw)
            .await
            .unwrap();
        }
        let seqs = |records: Vec<metaloop_ledger::Record>| -> Vec<u64> {
            records.iter().map(|r| r.seq).collect()
        };
        assert_eq!(seqs(a.append(vec![record(1)]).await.unwrap()), [1]);
        assert_eq!(
            seqs(b.append(vec![record(2), record(3)]).await.unwrap()),
            [2, 3]
        );
        assert_eq!(seqs(a.append(vec![record(4)]).await.unwrap()), [4]);
        assert_eq!(seqs(a.append(vec![record(5)]).await.unwrap()), [5]);
        assert_eq!(seqs(b.append(vec![record(6)]).await.unwrap()), [6]);
        let records = a.read(1, 10).await.unwrap();
        assert_eq!(
            records.iter().map(|r| r.time_ms).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(verify(&a, |_, _| {}).await.unwrap().records, 6);
    }
}

#[tokio::test]
async fn open_readonly_verifies_and_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let writer = SqliteLedger::open(&path).await.unwrap();
    let records = writer.append(vec![record(1), record(2)]).await.unwrap();
    // While the writer is open, and after it closed.
    let reader = SqliteLedger::open_readonly(&path).await.unwrap();
    assert_eq!(
        verify(&reader, |_, _| {}).await.unwrap().head,
        Some(records[1].hash)
    );
    writer.close().await;
    let reader = SqliteLedger::open_readonly(&path).await.unwrap();
    assert_eq!(reader.read(1, 10).await.unwrap(), records);
    let err = reader.append(vec![record(3)]).await.unwrap_err();
    assert!(matches!(err, LedgerError::ReadOnly), "{err:?}");
}

#[tokio::test]
async fn open_readonly_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("nowhere.db");
    let err = SqliteLedger::open_readonly(&path).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("ledger file {} does not exist", path.display())
    );
    assert!(!path.exists(), "open_readonly must not create the file");
}

#[tokio::test]
async fn open_readonly_rejects_a_database_that_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let other = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::query("CREATE TABLE t (x)")
        .execute(&other)
        .await
        .unwrap();
    other.close().await;
    let err = SqliteLedger::open_readonly(&path).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a metaloop ledger (it has no records table)",
            path.display()
        )
    );
}

#[tokio::test]
async fn open_names_an_unopenable_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("ledger.db");
    let err = SqliteLedger::open(&path).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("opening ledger {}", path.display())),
        "{err}"
    );
}

#[tokio::test]
async fn insert_or_replace_cannot_overwrite_a_record() {
    // REPLACE deletes without firing DELETE triggers; the INSERT trigger stops it.
    let b = SqliteBackend::create().await;
    let records = b.store.append(vec![record(1), record(2)]).await.unwrap();
    let err = b
        .exec(
            "INSERT OR REPLACE INTO records SELECT seq, time_ms, 'mallory', action, resource,
             payload, prev_hash, hash FROM records WHERE seq = 1",
        )
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(b.store.read(1, 10).await.unwrap(), records);
}

#[tokio::test]
async fn malformed_rows_are_reported() {
    // An attacker who also switches off CHECK constraints can store values of the wrong type.
    let b = SqliteBackend::create().await;
    b.store.append((1..=4).map(record).collect()).await.unwrap();
    b.drop_guards().await;
    b.exec("PRAGMA ignore_check_constraints = ON")
        .await
        .unwrap();

    b.exec("UPDATE records SET time_ms = 2.5 WHERE seq = 2")
        .await
        .unwrap();
    let err = verify(&*b.store, |_, _| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 2: malformed (time_ms is real, not an integer): the stored row was edited"
    );
    assert_eq!(err.exit_code(), 3);
    let read = b.store.read(1, 10).await.unwrap_err();
    assert!(
        matches!(read, LedgerError::Corrupt { seq: 2, .. }),
        "{read:?}"
    );
    b.exec("UPDATE records SET time_ms = 2 WHERE seq = 2")
        .await
        .unwrap();
    assert_eq!(verify(&*b.store, |_, _| {}).await.unwrap().records, 4);

    b.exec("UPDATE records SET time_ms = 'soon' WHERE seq = 3")
        .await
        .unwrap();
    let err = verify(&*b.store, |_, _| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 3: malformed (time_ms is text, not an integer): the stored row was edited"
    );
    b.exec("UPDATE records SET time_ms = 3 WHERE seq = 3")
        .await
        .unwrap();

    b.exec("UPDATE records SET hash = substr(hash, 1, 31) WHERE seq = 3")
        .await
        .unwrap();
    let err = verify(&*b.store, |_, _| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 3: malformed (hash is 31 bytes, not 32): the stored row was edited"
    );
}
