//! The SQLite backend: one file, WAL journal, `synchronous = FULL`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Executor, QueryBuilder, Row, Sqlite, TypeInfo, ValueRef};
use tokio::sync::Mutex;

use crate::checkpoint::Checkpoint;
use crate::error::LedgerError;
use crate::record::{NewRecord, Record, StoredRecord, chain, hash_array, prepare};
use crate::store::{BoxFuture, Head, LedgerStore};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per INSERT statement (8 parameters each, well under SQLite's 32766 limit).
const INSERT_CHUNK: usize = 512;

/// Rows the SQLite worker thread may run ahead of the reader (verification reads pages of
/// thousands; the default of 50 makes the two threads take turns).
const ROW_BUFFER: usize = 1024;

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A ledger in a SQLite file.
#[derive(Debug)]
pub struct SqliteLedger {
    pool: SqlitePool,
    path: PathBuf,
    read_only: bool,
    /// Serialises appends within this process (the transaction serialises across processes).
    append_lock: Mutex<()>,
}

impl SqliteLedger {
    /// Opens the ledger at `path` for appending, creating the file if absent and bringing
    /// the schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .row_buffer_size(ROW_BUFFER);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| LedgerError::Open {
                path: path.clone(),
                source,
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| LedgerError::Migrate {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            pool,
            path,
            read_only: false,
            append_lock: Mutex::new(()),
        })
    }

    /// Opens an existing ledger for reading only (verification); never creates or migrates.
    pub async fn open_readonly(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_path_buf();
        // Checked first because SQLite's own message ("unable to open database file") does
        // not say why; other failures (permissions) are left for SQLite to report.
        if matches!(tokio::fs::try_exists(&path).await, Ok(false)) {
            return Err(LedgerError::NotFound { path });
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT)
            .row_buffer_size(ROW_BUFFER);
        let open_error = |source| LedgerError::Open {
            path: path.clone(),
            source,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let has_records: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records')",
        )
        .fetch_one(&pool)
        .await
        .map_err(open_error)?;
        if !has_records {
            pool.close().await;
            return Err(LedgerError::NotALedger { path });
        }
        Ok(Self {
            pool,
            path,
            read_only: true,
            append_lock: Mutex::new(()),
        })
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (checkpointing the WAL into the main file); later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn append_batch(&self, batch: Vec<NewRecord>) -> Result<Vec<Record>, LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = prepare(batch)?;
        let _guard = self.append_lock.lock().await;
        // IMMEDIATE takes the write lock up front, so the head read below cannot go stale
        // because of another process appending.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(LedgerError::storage("starting an append transaction"))?;
        let head = query_head(&mut *tx).await?;
        let sealed = chain(prepared, head)?;
        for rows in sealed.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO records (seq, time_ms, actor, action, resource, payload, prev_hash, hash) ",
            );
            insert.push_values(rows, |mut row, sealed| {
                let r = &sealed.record;
                row.push_bind(r.seq as i64)
                    .push_bind(r.time_ms)
                    .push_bind(r.actor.clone())
                    .push_bind(r.action.clone())
                    .push_bind(r.resource.clone())
                    .push_bind(sealed.payload_text.clone())
                    .push_bind(r.prev_hash.to_vec())
                    .push_bind(r.hash.to_vec());
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(LedgerError::storage("appending records"))?;
        }
        tx.commit()
            .await
            .map_err(LedgerError::storage("committing appended records"))?;
        Ok(sealed.into_iter().map(|s| s.record).collect())
    }
}

async fn query_head<'e>(
    executor: impl Executor<'e, Database = Sqlite>,
) -> Result<Option<Head>, LedgerError> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(executor)
            .await
            .map_err(LedgerError::storage("reading the ledger head"))?;
    row.map(|(seq, hash)| {
        let corrupt = |detail: String| LedgerError::Corrupt { seq, detail };
        let hash = hash_array("hash", &hash).map_err(corrupt)?;
        let seq = u64::try_from(seq).map_err(|_| corrupt("sequence number is negative".into()))?;
        Ok((seq, hash))
    })
    .transpose()
}

/// Decodes a row of [`READ_STORED`] (by position), noting values of the wrong type (only
/// possible if the file was edited) instead of failing.
fn stored_from_row(row: &SqliteRow) -> Result<StoredRecord, sqlx::Error> {
    let seq: i64 = row.try_get(0)?;
    let mut defects = Vec::new();
    let mut describe = |index: usize, column: &str, expected: &str| {
        let kind = row
            .try_get_raw(index)
            .map(|value| {
                if value.is_null() {
                    "null".to_owned()
                } else {
                    value.type_info().name().to_lowercase()
                }
            })
            .unwrap_or_else(|_| "unreadable".to_owned());
        defects.push(format!("{column} is {kind}, not {expected}"));
    };
    // An integer only if stored as one: a REAL 5.5 must not be read back as 5.
    let time_ms = match row.try_get::<i64, _>(1) {
        Ok(t) => t,
        Err(_) => {
            describe(1, "time_ms", "an integer");
            0
        }
    };
    // Text and blobs as their raw bytes: a tampered text need not be UTF-8.
    let mut bytes = |index: usize, column: &str| match row.try_get::<&[u8], _>(index) {
        Ok(b) => b.to_vec(),
        Err(_) => {
            describe(index, column, "text or bytes");
            Vec::new()
        }
    };
    let actor = bytes(2, "actor");
    let action = bytes(3, "action");
    let resource = bytes(4, "resource");
    let payload = bytes(5, "payload");
    let prev_hash = bytes(6, "prev_hash");
    let hash = bytes(7, "hash");
    Ok(StoredRecord {
        seq,
        time_ms,
        actor,
        action,
        resource,
        payload,
        prev_hash,
        hash,
        defect: (!defects.is_empty()).then(|| defects.join(", ")),
    })
}

/// Reads every column as stored; see [`stored_from_row`].
const READ_STORED: &str = "SELECT seq, time_ms, actor, action, resource, payload, prev_hash, hash
FROM records WHERE seq >= ?1 ORDER BY seq LIMIT ?2";

impl LedgerStore for SqliteLedger {
    fn append(&self, batch: Vec<NewRecord>) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>> {
        Box::pin(self.append_batch(batch))
    }

    fn head(&self) -> BoxFuture<'_, Result<Option<Head>, LedgerError>> {
        Box::pin(query_head(&self.pool))
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(async move {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
                .fetch_one(&self.pool)
                .await
                .map_err(LedgerError::storage("counting records"))?;
            Ok(count as u64)
        })
    }

    fn read_stored(
        &self,
        from_seq: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredRecord>, LedgerError>> {
        Box::pin(async move {
            let rows = sqlx::query(READ_STORED)
                .bind(from_seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(LedgerError::storage("reading records"))?;
            rows.iter()
                .map(stored_from_row)
                .collect::<Result<_, _>>()
                .map_err(LedgerError::storage("decoding records"))
        })
    }

    fn append_checkpoint(&self, checkpoint: Checkpoint) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            if self.read_only {
                return Err(LedgerError::ReadOnly);
            }
            sqlx::query(
                "INSERT INTO checkpoints (seq, head, merkle_root, time_ms, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(checkpoint.seq as i64)
            .bind(checkpoint.head.to_vec())
            .bind(checkpoint.merkle_root.to_vec())
            .bind(checkpoint.time_ms)
            .bind(checkpoint.key_id)
            .bind(checkpoint.signature.to_vec())
            .execute(&self.pool)
            .await
            .map_err(LedgerError::storage("storing a checkpoint"))?;
            Ok(())
        })
    }

    fn checkpoints(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Checkpoint>, LedgerError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT seq, head, merkle_root, time_ms, key_id, signature FROM checkpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(LedgerError::storage("reading checkpoints"))?;
            rows.iter().map(checkpoint_from_row).collect()
        })
    }

    fn latest_checkpoint(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, LedgerError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT seq, head, merkle_root, time_ms, key_id, signature FROM checkpoints ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(LedgerError::storage("reading the latest checkpoint"))?;
            row.as_ref().map(checkpoint_from_row).transpose()
        })
    }
}

/// Decodes a checkpoint row; a row of the wrong shape is reported as corrupt.
fn checkpoint_from_row(row: &SqliteRow) -> Result<Checkpoint, LedgerError> {
    let seq: i64 = row
        .try_get("seq")
        .map_err(LedgerError::storage("decoding a checkpoint"))?;
    let corrupt = |detail: String| LedgerError::Corrupt { seq, detail };
    let blob = |name: &str| -> Result<Vec<u8>, LedgerError> {
        row.try_get::<Vec<u8>, _>(name)
            .map_err(|e| corrupt(format!("checkpoint {name}: {e}")))
    };
    let fixed32 = |name: &str| -> Result<[u8; 32], LedgerError> {
        blob(name)?
            .try_into()
            .map_err(|_| corrupt(format!("checkpoint {name} is not 32 bytes")))
    };
    let signature: [u8; 64] = blob("signature")?
        .try_into()
        .map_err(|_| corrupt("checkpoint signature is not 64 bytes".into()))?;
    Ok(Checkpoint {
        seq: u64::try_from(seq).map_err(|_| corrupt("negative checkpoint seq".into()))?,
        head: fixed32("head")?,
        merkle_root: fixed32("merkle_root")?,
        time_ms: row
            .try_get("time_ms")
            .map_err(|e| corrupt(format!("checkpoint time_ms: {e}")))?,
        key_id: row
            .try_get("key_id")
            .map_err(|e| corrupt(format!("checkpoint key_id: {e}")))?,
        signature,
    })
}
