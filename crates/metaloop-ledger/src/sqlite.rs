//! The SQLite backend: one file, WAL journal, `synchronous = FULL`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Executor, QueryBuilder, Row, Sqlite, TypeInfo, ValueRef};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::checkpoint::Checkpoint;
use crate::error::LedgerError;
use crate::note::NoteSignature;
use crate::record::{PreparedRecord, Record, SealedRecord, StoredRecord, chain, hash_array};
use crate::store::{BoxFuture, Head, LedgerStore};

use crate::migrations::SQLITE_MIGRATOR as MIGRATOR;

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
    /// Serialises appends within this process (the transaction serialises across processes),
    /// and holds the head as this process's last append left it (`None`: not known).
    append_lock: Mutex<Option<Option<Head>>>,
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
            append_lock: Mutex::new(None),
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
            .row_buffer_size(ROW_BUFFER)
            // Pages are read from a memory map rather than copied by read(2): verification
            // reads the whole file once. SQLite caps the size at its compile-time maximum.
            .pragma("mmap_size", READONLY_MMAP_SIZE.to_string());
        let open_error = |source| LedgerError::Open {
            path: path.clone(),
            source,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(1 + PREFETCH_GROUPS as u32)
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
            append_lock: Mutex::new(None),
        })
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn append_batch(
        &self,
        prepared: Vec<PreparedRecord>,
    ) -> Result<Vec<Record>, LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let mut known_head = self.append_lock.lock().await;
        let mut prepared = prepared;
        // Fast path: chained after the head this process left, in one INSERT statement that is
        // its own transaction (one round trip to SQLite instead of four). The insert trigger
        // refuses rows that do not extend the stored chain, so if another process appended
        // since, nothing is written and the records are chained again below.
        if prepared.len() <= INSERT_CHUNK
            && let Some(head) = known_head.take()
        {
            let sealed = chain(prepared, head)?;
            match insert(&sealed, &self.pool).await {
                Ok(_) => {
                    *known_head = Some(sealed.last().map(|s| (s.record.seq, s.record.hash)));
                    return Ok(sealed.into_iter().map(|s| s.record).collect());
                }
                Err(e) if appended_elsewhere(&e) => {
                    tracing::debug!(
                        "the ledger was appended to by another process; re-reading its head"
                    );
                    prepared = sealed.into_iter().map(SealedRecord::unseal).collect();
                }
                Err(e) => return Err(LedgerError::storage("appending records")(e)),
            }
        }
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
            insert(rows, &mut *tx)
                .await
                .map_err(LedgerError::storage("appending records"))?;
        }
        tx.commit()
            .await
            .map_err(LedgerError::storage("committing appended records"))?;
        *known_head = Some(sealed.last().map(|s| (s.record.seq, s.record.hash)));
        Ok(sealed.into_iter().map(|s| s.record).collect())
    }
}

/// Runs one INSERT of `rows` (at most [`INSERT_CHUNK`]).
async fn insert<'e>(
    rows: &[SealedRecord],
    executor: impl Executor<'e, Database = Sqlite>,
) -> Result<(), sqlx::Error> {
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO records (seq, time_ms, actor, action, resource, payload, prev_hash, hash) ",
    );
    insert.push_values(rows, |mut row, sealed| {
        let r = &sealed.record;
        row.push_bind(r.seq as i64)
            .push_bind(r.time_ms)
            .push_bind(r.actor.as_str())
            .push_bind(r.action.as_str())
            .push_bind(r.resource.as_str())
            .push_bind(sealed.payload_text.as_str())
            .push_bind(&r.prev_hash[..])
            .push_bind(&r.hash[..]);
    });
    insert.build().execute(executor).await.map(|_| ())
}

/// Whether an INSERT failed because the rows do not extend the stored chain: the insert
/// trigger's refusal, or (with the trigger gone) a seq that is already taken.
fn appended_elsewhere(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|db| {
        db.message().contains("an INSERT must extend the chain") || db.is_unique_violation()
    })
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

/// Reads every column as stored, one result row per record; see [`stored_from_row`].
const READ_STORED: &str = "SELECT seq, time_ms, actor, action, resource, payload, prev_hash, hash
FROM records WHERE seq >= ?1 ORDER BY seq LIMIT ?2";

/// Reads up to ?2 records from seq ?1 as one value: for each record a header of fixed-width
/// lower-case hex numbers (seq and time_ms as 16 digits, two's complement; the byte lengths
/// of actor, action, resource and payload as 8 digits each) followed by those four values'
/// bytes as stored, then prev_hash and hash (32 bytes each). Also returns the number of
/// records, the highest seq, and whether every value is of the kind [`stored_from_row`]
/// accepts; when not, the records are read again with [`READ_STORED`], which describes the
/// defect.
///
/// The kinds are checked cheaply (`typeof` on every column would cost more than the rest of
/// the query): `seq` is the rowid, an integer; `time_ms` is checked; the four text columns
/// hold only text or blobs if they are declared `TEXT NOT NULL` (SQLite converts numbers
/// stored into a TEXT column to text), which the schema is checked for; and no number's text
/// is 32 bytes long, so two 32-byte hashes are text or blobs.
///
/// Why: sqlx copies every value of every result row (two allocations each) and hands rows
/// to the async side one by one, which made reading three times slower than checking. One
/// value per [`PACKED_RECORDS`] records costs one copy.
const READ_PACKED: &str = "SELECT count(*),
    coalesce(min(typed), 1) AND (
        SELECT count(*) = 4 FROM pragma_table_info('records')
        WHERE name IN ('actor', 'action', 'resource', 'payload')
            AND upper(type) = 'TEXT' AND \"notnull\"
    ),
    max(seq), string_agg(packed, '')
FROM (
    SELECT seq,
        coalesce(typeof(time_ms) = 'integer'
            AND octet_length(prev_hash) = 32 AND octet_length(hash) = 32, 0) AS typed,
        concat(
            printf('%016x%016x%08x%08x%08x%08x', seq, time_ms, octet_length(actor),
                octet_length(action), octet_length(resource), octet_length(payload)),
            actor, action, resource, payload, prev_hash, hash) AS packed
    FROM records WHERE seq >= ?1 ORDER BY seq LIMIT ?2
)";

/// Records per [`READ_PACKED`] query: large enough to amortise a query, small enough that a
/// value stays far below SQLite's 1 GB limit for ordinary payloads (a query that fails
/// anyway, say for huge payloads, is retried row by row).
const PACKED_RECORDS: u32 = 1024;

/// Bytes of a record's header in [`READ_PACKED`].
const PACKED_HEADER: usize = 16 + 16 + 4 * 8;

/// Reads up to `limit` stored records from `from_seq`, [`PACKED_RECORDS`] at a time.
///
/// While one group is unpacked here, SQLite packs the next on its own thread.
async fn read_stored(
    pool: &SqlitePool,
    from_seq: i64,
    limit: u32,
) -> Result<Vec<StoredRecord>, LedgerError> {
    let mut records = Vec::with_capacity(limit.min(DEFAULT_CAPACITY) as usize);
    let mut from = from_seq;
    let mut left = limit;
    // Groups being packed ahead, on other connections: (first seq, records, query).
    let mut ahead: VecDeque<Prefetch> = VecDeque::new();
    while left > 0 {
        let want = left.min(PACKED_RECORDS);
        let packed = match ahead.pop_front() {
            Some((start, size, task)) if start == from && size == want => match task.await {
                Ok(packed) => packed,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => fetch_packed(pool.clone(), from, want).await,
            },
            Some((_, _, task)) => {
                task.abort();
                abort_all(&mut ahead);
                fetch_packed(pool.clone(), from, want).await
            }
            None => fetch_packed(pool.clone(), from, want).await,
        };
        // Seqs are consecutive in an intact ledger, so the next groups start where this one
        // ends; if they do not (a gap, a renumbered row), the guesses are dropped above.
        match packed
            .as_ref()
            .ok()
            .and_then(|row| full_group_end(row, want))
        {
            Some(end) if left > want => {
                let queued: u32 = ahead.iter().map(|(_, size, _)| size).sum();
                let mut next = end.checked_add(1 + i64::from(queued));
                let mut remaining = left - want - queued;
                while ahead.len() < PREFETCH_GROUPS && remaining > 0 {
                    let Some(start) = next else { break };
                    let size = remaining.min(PACKED_RECORDS);
                    let task = tokio::spawn(fetch_packed(pool.clone(), start, size));
                    ahead.push_back((start, size, task));
                    next = start.checked_add(i64::from(size));
                    remaining -= size;
                }
            }
            _ => abort_all(&mut ahead),
        }
        let before = records.len();
        let found = match packed {
            Ok(row) => match unpack(&row, &mut records) {
                Some(found) => found,
                None => {
                    records.truncate(before);
                    read_rows(pool, from, want, &mut records).await?
                }
            },
            Err(_) => read_rows(pool, from, want, &mut records).await?,
        };
        if found < want {
            break;
        }
        left -= want;
        match records.last().and_then(|last| last.seq.checked_add(1)) {
            Some(next) => from = next,
            None => break,
        }
    }
    abort_all(&mut ahead);
    Ok(records)
}

/// A group read ahead: its first seq, its size and the query packing it.
type Prefetch = (i64, u32, JoinHandle<Result<SqliteRow, sqlx::Error>>);

/// Bytes of a read-only ledger file mapped into memory (`PRAGMA mmap_size`); the rest, if
/// any, is read as usual.
const READONLY_MMAP_SIZE: u64 = 1 << 31;

/// Groups packed ahead at most (each on its own connection, so SQLite packs them while the
/// caller unpacks and checks).
const PREFETCH_GROUPS: usize = 2;

fn abort_all(ahead: &mut VecDeque<Prefetch>) {
    for (_, _, task) in ahead.drain(..) {
        task.abort();
    }
}

async fn fetch_packed(pool: SqlitePool, from: i64, want: u32) -> Result<SqliteRow, sqlx::Error> {
    sqlx::query(READ_PACKED)
        .bind(from)
        .bind(i64::from(want))
        .fetch_one(&pool)
        .await
}

/// The highest seq of a [`READ_PACKED`] row that holds `want` well-typed records (so the
/// next group starts after it).
fn full_group_end(row: &SqliteRow, want: u32) -> Option<i64> {
    let count: i64 = row.try_get(0).ok()?;
    let typed: bool = row.try_get(1).ok()?;
    (count == i64::from(want) && typed).then(|| row.try_get(2).ok())?
}

/// Initial capacity of a page of records (a caller may ask for `u32::MAX`).
const DEFAULT_CAPACITY: u32 = 16_384;

/// Reads records one result row each with [`READ_STORED`]; returns how many it found.
async fn read_rows(
    pool: &SqlitePool,
    from: i64,
    limit: u32,
    records: &mut Vec<StoredRecord>,
) -> Result<u32, LedgerError> {
    let rows = sqlx::query(READ_STORED)
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(LedgerError::storage("reading records"))?;
    for row in &rows {
        records.push(stored_from_row(row).map_err(LedgerError::storage("decoding records"))?);
    }
    Ok(rows.len() as u32)
}

/// Appends the records of a [`READ_PACKED`] row to `records` and returns how many there
/// were; `None` if a value has an unexpected type or the packed value does not parse (the
/// caller then reads the rows one by one).
fn unpack(row: &SqliteRow, records: &mut Vec<StoredRecord>) -> Option<u32> {
    let count: i64 = row.try_get(0).ok()?;
    if count == 0 {
        return Some(0);
    }
    let typed: bool = row.try_get(1).ok()?;
    if !typed {
        return None;
    }
    let mut packed: &[u8] = row.try_get(3).ok()?;
    let start = records.len();
    while !packed.is_empty() {
        let header = packed.get(..PACKED_HEADER)?;
        let seq = hex_u64(&header[..16])? as i64;
        let time_ms = hex_u64(&header[16..32])? as i64;
        packed = &packed[PACKED_HEADER..];
        let mut fields: [Vec<u8>; 6] = Default::default();
        for (i, field) in fields.iter_mut().enumerate() {
            let len = match header.get(32 + 8 * i..40 + 8 * i) {
                Some(digits) => usize::try_from(hex_u64(digits)?).ok()?,
                None => 32, // prev_hash and hash
            };
            let (bytes, rest) = packed.split_at_checked(len)?;
            *field = bytes.to_vec();
            packed = rest;
        }
        let [actor, action, resource, payload, prev_hash, hash] = fields;
        records.push(StoredRecord {
            seq,
            time_ms,
            actor,
            action,
            resource,
            payload,
            prev_hash,
            hash,
            defect: None,
        });
    }
    let unpacked = &mut records[start..];
    if unpacked.len() as i64 != count {
        return None;
    }
    // The aggregate's order follows the ordered subquery in practice; SQL does not promise it.
    if !unpacked.is_sorted_by_key(|r| r.seq) {
        unpacked.sort_by_key(|r| r.seq);
    }
    Some(count as u32)
}

/// Parses lower-case hexadecimal digits.
fn hex_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u64::from(nibble))
    })
}

impl LedgerStore for SqliteLedger {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.pool.close().await })
    }

    fn append_prepared(
        &self,
        batch: Vec<PreparedRecord>,
    ) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>> {
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
        Box::pin(read_stored(&self.pool, from_seq, limit))
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
    fn append_note_signatures(
        &self,
        seq: u64,
        signatures: Vec<NoteSignature>,
    ) -> BoxFuture<'_, Result<(), LedgerError>> {
        Box::pin(async move {
            if self.read_only {
                return Err(LedgerError::ReadOnly);
            }
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(LedgerError::storage("storing note signatures"))?;
            for sig in signatures {
                sqlx::query(
                    "INSERT INTO note_signatures (seq, name, key_id, signature) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (seq, name, key_id) DO NOTHING",
                )
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .bind(sig.name)
                .bind(i64::from(sig.id))
                .bind(sig.signature)
                .execute(&mut *tx)
                .await
                .map_err(LedgerError::storage("storing note signatures"))?;
            }
            tx.commit()
                .await
                .map_err(LedgerError::storage("storing note signatures"))
        })
    }

    fn note_signatures(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<(u64, NoteSignature)>, LedgerError>> {
        Box::pin(async move {
            // A ledger opened read-only is never migrated: one made before note signatures
            // existed has no table for them, and none.
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'note_signatures')",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(LedgerError::storage("reading note signatures"))?;
            if !exists {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(
                "SELECT seq, name, key_id, signature FROM note_signatures WHERE seq > ?1 \
                 ORDER BY seq, rowid LIMIT ?2",
            )
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(LedgerError::storage("reading note signatures"))?;
            rows.iter()
                .map(|row| {
                    let seq: i64 = row
                        .try_get("seq")
                        .map_err(LedgerError::storage("decoding a note signature"))?;
                    let corrupt = |detail: String| LedgerError::Corrupt { seq, detail };
                    let id: i64 = row
                        .try_get("key_id")
                        .map_err(|e| corrupt(format!("note signature key_id: {e}")))?;
                    Ok((
                        u64::try_from(seq)
                            .map_err(|_| corrupt("negative note signature seq".into()))?,
                        NoteSignature {
                            name: row
                                .try_get("name")
                                .map_err(|e| corrupt(format!("note signature name: {e}")))?,
                            id: u32::try_from(id).map_err(|_| {
                                corrupt("note signature key_id out of range".into())
                            })?,
                            signature: row
                                .try_get("signature")
                                .map_err(|e| corrupt(format!("note signature: {e}")))?,
                        },
                    ))
                })
                .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NewRecord;
    use serde_json::json;

    fn record(i: usize) -> NewRecord {
        NewRecord::new(
            i as i64 - 3,
            ["supervisor", "é😀", "a\u{7f}b"][i % 3],
            "directive.issued",
            if i.is_multiple_of(5) {
                String::new()
            } else {
                format!("directive/{i}")
            },
            json!({"i": i, "s": "tab\there \"quoted\" \\ \u{1}", "f": [0.1, -0.0, 1e300]}),
        )
    }

    /// Reads everything both ways: packed groups and one row per record.
    async fn both_ways(ledger: &SqliteLedger, from: i64, limit: u32) -> Vec<StoredRecord> {
        let packed = read_stored(&ledger.pool, from, limit).await.unwrap();
        let mut rows = Vec::new();
        read_rows(&ledger.pool, from, limit, &mut rows)
            .await
            .unwrap();
        assert_eq!(packed, rows, "from {from}, limit {limit}");
        packed
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn packed_reads_return_the_stored_rows_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(dir.path().join("ledger.db"))
            .await
            .unwrap();
        let n = 2 * PACKED_RECORDS as usize + 7;
        ledger.append((0..n).map(record).collect()).await.unwrap();
        assert_eq!(both_ways(&ledger, i64::MIN, u32::MAX).await.len(), n);
        for (from, limit) in [
            (1, 1),
            (2, PACKED_RECORDS - 1),
            (1, PACKED_RECORDS),
            (5, PACKED_RECORDS + 1),
            (2000, 100),
            (n as i64, 10),
            (n as i64 + 1, 10),
            (1, 0),
        ] {
            let got = both_ways(&ledger, from, limit).await;
            let expected = (n as i64 - from + 1).clamp(0, i64::from(limit));
            assert_eq!(got.len() as i64, expected, "from {from}, limit {limit}");
        }
        // The fast path is the one taken for an intact ledger.
        let row = fetch_packed(ledger.pool.clone(), 1, PACKED_RECORDS)
            .await
            .unwrap();
        assert_eq!(
            full_group_end(&row, PACKED_RECORDS),
            Some(i64::from(PACKED_RECORDS))
        );
        assert_eq!(unpack(&row, &mut Vec::new()), Some(PACKED_RECORDS));
    }

    /// A connection to the file past the ledger's API, for tampering.
    async fn raw_pool(path: &Path) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(path))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn groups_read_ahead_are_dropped_when_seqs_are_not_consecutive() {
        // Groups after the current one are read ahead assuming consecutive seqs; removed and
        // renumbered rows break that, and the guesses must not leak into the result.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let ledger = SqliteLedger::open(&path).await.unwrap();
        let n = 6 * PACKED_RECORDS as usize;
        ledger.append((0..n).map(record).collect()).await.unwrap();
        let raw = raw_pool(&path).await;
        sqlx::raw_sql(
            "DROP TRIGGER records_refuse_update;
             DROP TRIGGER records_refuse_delete;
             DELETE FROM records WHERE seq IN (1500, 1501, 1502);
             UPDATE records SET seq = seq + 100000 WHERE seq = 3000;
             DELETE FROM records WHERE seq BETWEEN 4000 AND 4100;",
        )
        .execute(&raw)
        .await
        .unwrap();
        for (from, limit) in [(i64::MIN, u32::MAX), (1, 5000), (1400, 3 * PACKED_RECORDS)] {
            let got = both_ways(&ledger, from, limit).await;
            let seqs: Vec<i64> = got.iter().map(|r| r.seq).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "from {from}");
            assert!(!seqs.contains(&1501) && !seqs.contains(&3000) && !seqs.contains(&4050));
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn packed_reads_keep_tampered_bytes_and_fall_back_on_wrong_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let ledger = SqliteLedger::open(&path).await.unwrap();
        ledger.append((0..20).map(record).collect()).await.unwrap();
        let raw = raw_pool(&path).await;
        sqlx::raw_sql(
            "DROP TRIGGER records_refuse_update;
             PRAGMA ignore_check_constraints = ON;
             UPDATE records SET actor = CAST(x'ff00fe' AS TEXT), hash = zeroblob(32) WHERE seq = 3;
             UPDATE records SET prev_hash = CAST(zeroblob(32) AS TEXT) WHERE seq = 5;
             UPDATE records SET seq = 100 WHERE seq = 4;",
        )
        .execute(&raw)
        .await
        .unwrap();
        let stored = both_ways(&ledger, i64::MIN, u32::MAX).await;
        assert_eq!(stored[2].actor, b"\xff\x00\xfe");
        assert_eq!(stored[2].hash, [0; 32]);
        assert_eq!(stored.last().unwrap().seq, 100);
        let row = fetch_packed(ledger.pool.clone(), 1, 100).await.unwrap();
        assert_eq!(unpack(&row, &mut Vec::new()), Some(20));

        // A hash of the wrong size is read row by row (and reported by verification).
        sqlx::raw_sql("UPDATE records SET hash = x'01' WHERE seq = 3")
            .execute(&raw)
            .await
            .unwrap();
        let row = fetch_packed(ledger.pool.clone(), 1, 100).await.unwrap();
        assert_eq!(unpack(&row, &mut Vec::new()), None);
        assert_eq!(both_ways(&ledger, i64::MIN, u32::MAX).await[2].hash, [1]);

        sqlx::raw_sql(
            "UPDATE records SET time_ms = 2.5 WHERE seq = 6;
             UPDATE records SET time_ms = 'soon' WHERE seq = 7;",
        )
        .execute(&raw)
        .await
        .unwrap();
        let row = fetch_packed(ledger.pool.clone(), 1, 100).await.unwrap();
        assert_eq!(
            unpack(&row, &mut Vec::new()),
            None,
            "wrong types go the slow way"
        );
        let stored = both_ways(&ledger, i64::MIN, u32::MAX).await;
        let defect = |seq: i64| {
            stored
                .iter()
                .find(|r| r.seq == seq)
                .unwrap()
                .defect
                .as_deref()
        };
        assert_eq!(defect(6), Some("time_ms is real, not an integer"));
        assert_eq!(defect(7), Some("time_ms is text, not an integer"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn packed_reads_check_the_declared_column_types() {
        // A file whose text columns may hold anything (not one this crate creates): every
        // record is read row by row, and a number where text belongs is reported.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let raw = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE records (seq INTEGER PRIMARY KEY, time_ms INTEGER, actor, action TEXT,
                 resource TEXT, payload TEXT, prev_hash BLOB, hash BLOB);
             INSERT INTO records VALUES (1, 5, 42, 'a', '', '{}', zeroblob(32), zeroblob(32));",
        )
        .execute(&raw)
        .await
        .unwrap();
        raw.close().await;
        let ledger = SqliteLedger::open_readonly(&path).await.unwrap();
        let row = fetch_packed(ledger.pool.clone(), 1, 100).await.unwrap();
        assert_eq!(unpack(&row, &mut Vec::new()), None);
        let stored = both_ways(&ledger, i64::MIN, u32::MAX).await;
        assert_eq!(
            stored[0].defect.as_deref(),
            Some("actor is integer, not text or bytes")
        );
    }

    #[test]
    fn hex_is_lower_case_only() {
        assert_eq!(hex_u64(b"00ff"), Some(255));
        assert_eq!(hex_u64(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(hex_u64(b"0F"), None);
        assert_eq!(hex_u64(b"0x"), None);
    }
}
