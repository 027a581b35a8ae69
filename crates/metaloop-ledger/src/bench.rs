//! `metaloop bench ledger`: what the ledger costs on this machine, as rates and ratios.
//!
//! Three measurements on one backend, each in scratch tables next to (never inside) the
//! ledger it is pointed at:
//!
//! - **raw insert**: the backend's own INSERT statement shape, 1,000 rows per transaction,
//!   with nothing else — no hashing, no canonical JSON, no triggers, no head read: the
//!   ceiling;
//! - **durable append**: 1, 8 and 64 concurrent writers each appending one record at a time
//!   through the group-commit [`LedgerWriter`] and waiting until it is durable (plus the same
//!   without group commit, every append its own transaction, for contrast);
//! - **verify**: over a ledger of the requested size written through a signing
//!   [`LedgerWriter`] (a checkpoint every 1,000 records), from a read-only handle: the chain
//!   alone ([`crate::verify`]: every record's canonical form, hash and link), and everything
//!   `metaloop ledger verify --pubkey` checks ([`crate::verify_with_checkpoints`]: the chain,
//!   the Merkle root and every checkpoint's signature); three passes each, the fastest counts.
//!
//! Rates are records per second of wall-clock time; the report names the core count, since
//! verification overlaps reading and checking on two cores.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite};

use crate::encoding::ZERO_HASH;
use crate::error::LedgerError;
use crate::postgres::{PgLedger, mask_password};
use crate::record::NewRecord;
use crate::sqlite::SqliteLedger;
use crate::store::LedgerStore;
use crate::verify::{CheckpointVerifyError, verify, verify_with_checkpoints};
use crate::writer::{DEFAULT_CHECKPOINT_EVERY, LedgerWriter, WriterError, WriterOptions};
use ed25519_dalek::SigningKey;

/// Rows per transaction in the raw insert and in filling the ledger to verify.
pub const BATCH: u64 = 1_000;

/// Verification runs this many times and the fastest pass counts (it only reads, and a
/// single pass of a small ledger is short enough for other processes to skew).
pub const VERIFY_PASSES: usize = 3;

/// Concurrent writers of the durable-append measurement.
pub const DEFAULT_WRITERS: [usize; 3] = [1, 8, 64];

/// Where to benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchTarget {
    /// SQLite files created (and removed) in this directory.
    Sqlite {
        /// The directory (the same file system as the ledger it was derived from).
        dir: PathBuf,
    },
    /// Scratch schemas created (and dropped) in this PostgreSQL database.
    Postgres {
        /// The server URL (any `schema` parameter is ignored).
        url: String,
    },
}

impl BenchTarget {
    /// From a ledger URL or path, as `[ledger] url` takes it: `postgres://…` benchmarks in
    /// scratch schemas of that database; `sqlite://PATH`, `sqlite:PATH` or a plain `PATH`
    /// in scratch files in PATH's directory (or PATH itself if it is a directory). The
    /// ledger itself is never opened.
    pub fn parse(ledger: &str) -> Self {
        if ledger.starts_with("postgres://") || ledger.starts_with("postgresql://") {
            return Self::Postgres {
                url: ledger.to_owned(),
            };
        }
        let path = ledger
            .strip_prefix("sqlite://")
            .or_else(|| ledger.strip_prefix("sqlite:"))
            .unwrap_or(ledger);
        let path = Path::new(path.split_once('?').map_or(path, |(p, _)| p));
        let dir = if path.as_os_str().is_empty() {
            std::env::temp_dir()
        } else if path.is_dir() {
            path.to_path_buf()
        } else {
            match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        Self::Sqlite { dir }
    }

    /// SQLite in the system's temporary directory.
    pub fn temporary() -> Self {
        Self::Sqlite {
            dir: std::env::temp_dir(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("SQLite (WAL, synchronous=FULL) in {}", dir.display()),
            Self::Postgres { url } => format!("PostgreSQL at {}", mask_password(url)),
        }
    }
}

/// How much to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Records inserted by the raw insert and verified by the verification measurement.
    pub records: u64,
    /// Records each durable-append run stops after at most.
    pub durable_records: u64,
    /// Time each durable-append run stops after at most (one fsync per append is slow).
    pub durable_time_limit: Duration,
    /// Concurrent writers of each durable-append run.
    pub writers: Vec<usize>,
}

impl BenchOptions {
    /// `records` for the raw insert and verification; durable runs of up to 100,000 records
    /// or 5 seconds each, with 1, 8 and 64 writers.
    pub fn new(records: u64) -> Self {
        Self {
            records: records.max(1),
            durable_records: records.clamp(1, 100_000),
            durable_time_limit: Duration::from_secs(5),
            writers: DEFAULT_WRITERS.to_vec(),
        }
    }
}

/// Records processed in some time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Records processed.
    pub records: u64,
    /// Wall-clock time taken.
    pub elapsed: Duration,
}

impl Rate {
    /// Records per second.
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One durable-append run.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableRun {
    /// Concurrent writers, each appending one record at a time.
    pub writers: usize,
    /// Through the group-commit writer (else every append is its own transaction).
    pub group_commit: bool,
    /// Acknowledged (durable) appends.
    pub rate: Rate,
    /// Transactions (one fsync each) that wrote them.
    pub commits: u64,
}

impl DurableRun {
    /// Records written per transaction on average.
    pub fn records_per_commit(&self) -> f64 {
        self.rate.records as f64 / self.commits.max(1) as f64
    }
}

/// What [`run`] measured; `Display` prints it as a table with ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// The backend and where it ran.
    pub backend: String,
    /// Cores available to this process.
    pub cores: usize,
    /// (a) Plain batched INSERTs of the same rows, no hashing.
    pub raw_insert: Rate,
    /// Filling the ledger to verify: 1,000-record batches through a signing writer (hashing,
    /// canonical JSON, triggers, one transaction each, a signed checkpoint every 1,000).
    pub batched_append: Rate,
    /// (b) Durable appends, one record at a time per writer.
    pub durable: Vec<DurableRun>,
    /// (c) Verification of the hash chain, [`VERIFY_PASSES`] times.
    pub verify: Passes,
    /// (c) Verification of the chain, the Merkle root and the checkpoint signatures.
    pub verify_signed: Passes,
}

/// Repeated runs of one measurement, in order; the fastest counts (the others show how much
/// the machine's other work moved it).
#[derive(Debug, Clone, PartialEq)]
pub struct Passes(pub Vec<Rate>);

impl Passes {
    /// The fastest pass.
    pub fn fastest(&self) -> Rate {
        self.0
            .iter()
            .copied()
            .min_by_key(|p| p.elapsed)
            .unwrap_or(Rate {
                records: 0,
                elapsed: Duration::ZERO,
            })
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw_insert.per_second();
        writeln!(f, "ledger benchmark: {}", self.backend)?;
        writeln!(f, "{} cores available", self.cores)?;
        let line = |f: &mut fmt::Formatter<'_>, what: &str, rate: &Rate, ratio: bool| {
            write!(
                f,
                "  {what:<52} {:>12.0} records/s  ({} records in {:.2} s)",
                rate.per_second(),
                rate.records,
                rate.elapsed.as_secs_f64()
            )?;
            if ratio {
                write!(f, "  {:.3} x raw", rate.per_second() / raw)?;
            }
            writeln!(f)
        };
        line(
            f,
            "(a) raw insert, 1,000 rows per transaction",
            &self.raw_insert,
            false,
        )?;
        line(
            f,
            "    ledger append, 1,000 per transaction, signed",
            &self.batched_append,
            true,
        )?;
        for run in &self.durable {
            let what = format!(
                "(b) durable append, {} writer{}{}",
                run.writers,
                if run.writers == 1 { "" } else { "s" },
                if run.group_commit {
                    ", group commit"
                } else {
                    ", one transaction each"
                }
            );
            line(f, &what, &run.rate, true)?;
            writeln!(
                f,
                "      {:.1} records per transaction ({} transactions)",
                run.records_per_commit(),
                run.commits
            )?;
        }
        for (what, passes) in [
            ("(c) verify, hash chain", &self.verify),
            (
                "(c) verify, chain + Merkle root + signatures",
                &self.verify_signed,
            ),
        ] {
            line(f, what, &passes.fastest(), true)?;
            let rates: Vec<String> = passes
                .0
                .iter()
                .map(|p| format!("{:.0}", p.per_second()))
                .collect();
            writeln!(
                f,
                "      fastest of {} passes: {} records/s",
                rates.len(),
                rates.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The scratch directory could not be made or removed.
    #[error("benchmark scratch directory {}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The scratch table of the raw insert could not be used.
    #[error("raw insert benchmark: {operation}")]
    Raw {
        /// What was being done.
        operation: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A ledger operation failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An append through the writer failed.
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// Verification failed (a scratch ledger cannot be tampered with; this is a bug).
    #[error(transparent)]
    Verify(#[from] CheckpointVerifyError),
}

fn raw_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> BenchError {
    move |source| BenchError::Raw { operation, source }
}

/// Runs the three measurements on `target`; see the module documentation.
pub async fn run(target: &BenchTarget, options: &BenchOptions) -> Result<BenchReport, BenchError> {
    run_with_progress(target, options, |_| {}).await
}

/// [`run`], calling `on_step` with a short description before each step.
pub async fn run_with_progress(
    target: &BenchTarget,
    options: &BenchOptions,
    mut on_step: impl FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let scratch = Scratch::create(target).await?;
    let outcome = measure(&scratch, options, &mut on_step).await;
    let cleaned = scratch.remove().await;
    let (raw_insert, batched_append, durable, verify, verify_signed) = outcome?;
    cleaned?;
    Ok(BenchReport {
        backend: target.describe(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        raw_insert,
        batched_append,
        durable,
        verify,
        verify_signed,
    })
}

type Measured = (Rate, Rate, Vec<DurableRun>, Passes, Passes);

async fn measure(
    scratch: &Scratch,
    options: &BenchOptions,
    on_step: &mut impl FnMut(&str),
) -> Result<Measured, BenchError> {
    let rows = sample_rows();
    on_step(&format!("raw insert of {} rows", options.records));
    let raw_insert = scratch.raw_insert(&rows, options.records).await?;

    let mut durable = Vec::new();
    let levels = options.writers.iter().map(|&w| (w, true));
    let contrast = options.writers.iter().max().map(|&w| (w, false));
    for (writers, group_commit) in levels.chain(contrast) {
        on_step(&format!(
            "durable append, {writers} writer{}{}",
            if writers == 1 { "" } else { "s" },
            if group_commit {
                ""
            } else {
                ", no group commit"
            }
        ));
        let name = format!("d{writers}{}", if group_commit { "" } else { "_single" });
        let ledger = scratch.ledger(&name).await?;
        let (rate, commits) =
            durable_appends(ledger.clone(), writers, group_commit, options).await?;
        ledger.close().await;
        durable.push(DurableRun {
            writers,
            group_commit,
            rate,
            commits,
        });
    }

    on_step(&format!(
        "filling a ledger with {} records",
        options.records
    ));
    let store = scratch.ledger("verify").await?;
    let key = SigningKey::from_bytes(&[7; 32]);
    let writer = LedgerWriter::spawn(
        store.clone(),
        WriterOptions::new()
            .signing_key(key.clone())
            .checkpoint_every(DEFAULT_CHECKPOINT_EVERY),
    )
    .await?;
    let started = Instant::now();
    let mut appended = 0;
    while appended < options.records {
        let n = BATCH.min(options.records - appended);
        writer
            .append_batch((appended..appended + n).map(ledger_record).collect())
            .await?;
        appended += n;
    }
    let batched_append = Rate {
        records: appended,
        elapsed: started.elapsed(),
    };
    writer.shutdown().await?;
    // Closed (for SQLite: the WAL checkpointed into the file), as after a shutdown; a running
    // writer keeps the WAL short anyway.
    store.close().await;

    on_step(&format!("verifying {} records", options.records));
    let reader = scratch.reader("verify").await?;
    let mut chain = Vec::with_capacity(VERIFY_PASSES);
    let mut signed = Vec::with_capacity(VERIFY_PASSES);
    for _ in 0..VERIFY_PASSES {
        let started = Instant::now();
        let report = verify(&*reader, |_, _| {})
            .await
            .map_err(CheckpointVerifyError::from)?;
        chain.push(Rate {
            records: report.records,
            elapsed: started.elapsed(),
        });
        let started = Instant::now();
        let report =
            verify_with_checkpoints(&*reader, Some(&key.verifying_key()), |_, _| {}).await?;
        debug_assert_eq!(report.unsigned_tail, 0);
        signed.push(Rate {
            records: report.chain.records,
            elapsed: started.elapsed(),
        });
    }
    Ok((
        raw_insert,
        batched_append,
        durable,
        Passes(chain),
        Passes(signed),
    ))
}

/// Appends through `writers` tasks, one record at a time each, until
/// `options.durable_records` or `options.durable_time_limit`; returns the rate and the
/// number of transactions.
async fn durable_appends(
    store: Arc<dyn LedgerStore>,
    writers: usize,
    group_commit: bool,
    options: &BenchOptions,
) -> Result<(Rate, u64), BenchError> {
    let writer = if group_commit {
        Some(LedgerWriter::spawn(store.clone(), WriterOptions::new()).await?)
    } else {
        None
    };
    let issued = Arc::new(AtomicU64::new(0));
    let limit = options.durable_records;
    let started = Instant::now();
    let deadline = started + options.durable_time_limit;
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers.max(1) {
        let (issued, store, writer) = (issued.clone(), store.clone(), writer.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 0u64;
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= limit || Instant::now() >= deadline {
                    return Ok::<u64, BenchError>(acknowledged);
                }
                match &writer {
                    Some(writer) => {
                        writer.append(ledger_record(n)).await?;
                    }
                    None => {
                        store.append(vec![ledger_record(n)]).await?;
                    }
                }
                acknowledged += 1;
            }
        }));
    }
    let mut records = 0;
    for task in tasks {
        match task.await {
            Ok(done) => records += done?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let elapsed = started.elapsed();
    let commits = match writer {
        Some(writer) => {
            let commits = writer.stats().commits;
            writer.shutdown().await?;
            commits
        }
        None => records,
    };
    Ok((Rate { records, elapsed }, commits))
}

/// A ledger record shaped like a directive verdict (about 300 bytes).
fn ledger_record(n: u64) -> NewRecord {
    NewRecord::new(
        1_767_225_600_000 + n as i64,
        "supervisor",
        "directive.verified",
        format!("directive/{n:08}"),
        json!({
            "directive_id": format!("0192f0c4-{n:08}"),
            "method": "metaloop",
            "outcome": "verified",
            "p_value": 0.004 + n as f64 * 1e-9,
            "effect": 0.041,
            "kpis": {"overall_success_rate": 0.87, "mean_recovery_time_seconds": 42.3},
        }),
    )
}

/// One batch of raw rows: the ledger's row shape and sizes, computed once.
struct RawRow {
    time_ms: i64,
    actor: String,
    action: String,
    resource: String,
    payload: String,
    hash: Vec<u8>,
}

fn sample_rows() -> Vec<RawRow> {
    (0..BATCH)
        .map(|n| {
            let record = ledger_record(n);
            RawRow {
                time_ms: record.time_ms,
                actor: record.actor,
                action: record.action,
                resource: record.resource,
                payload: crate::to_canonical_json(&record.payload).unwrap_or_default(),
                hash: vec![n as u8; 32],
            }
        })
        .collect()
}

/// Scratch space for one benchmark run, removed by [`Scratch::remove`].
enum Scratch {
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        url: String,
        prefix: String,
        schemas: std::sync::Mutex<Vec<String>>,
    },
}

impl Scratch {
    async fn create(target: &BenchTarget) -> Result<Self, BenchError> {
        let id = format!(
            "{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() % 1_000_000_000)
        );
        match target {
            BenchTarget::Sqlite { dir } => {
                let dir = dir.join(format!("metaloop-bench-{id}"));
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|source| BenchError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                Ok(Self::Sqlite { dir })
            }
            BenchTarget::Postgres { url } => Ok(Self::Postgres {
                url: without_schema(url),
                prefix: format!("metaloop_bench_{id}"),
                schemas: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// A fresh, empty ledger named `name`.
    async fn ledger(&self, name: &str) -> Result<Arc<dyn LedgerStore>, BenchError> {
        Ok(match self {
            Self::Sqlite { dir } => {
                Arc::new(SqliteLedger::open(dir.join(format!("{name}.db"))).await?)
            }
            Self::Postgres { .. } => {
                let url = self.schema_url(name);
                Arc::new(PgLedger::connect(&url).await?)
            }
        })
    }

    /// The ledger `name`, read-only.
    async fn reader(&self, name: &str) -> Result<Arc<dyn LedgerStore>, BenchError> {
        Ok(match self {
            Self::Sqlite { dir } => {
                Arc::new(SqliteLedger::open_readonly(dir.join(format!("{name}.db"))).await?)
            }
            Self::Postgres { url, prefix, .. } => Arc::new(
                PgLedger::connect_readonly(&with_schema(url, &format!("{prefix}_{name}"))).await?,
            ),
        })
    }

    /// The URL of schema `name`, remembered for removal.
    fn schema_url(&self, name: &str) -> String {
        let Self::Postgres {
            url,
            prefix,
            schemas,
        } = self
        else {
            unreachable!("only PostgreSQL has schemas")
        };
        let schema = format!("{prefix}_{name}");
        schemas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(schema.clone());
        with_schema(url, &schema)
    }

    /// Inserts `records` rows into a scratch table, [`BATCH`] per transaction.
    async fn raw_insert(&self, rows: &[RawRow], records: u64) -> Result<Rate, BenchError> {
        match self {
            Self::Sqlite { dir } => {
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        SqliteConnectOptions::new()
                            .filename(dir.join("raw.db"))
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Full),
                    )
                    .await
                    .map_err(raw_error("opening the scratch file"))?;
                sqlx::raw_sql(RAW_TABLE_SQLITE)
                    .execute(&pool)
                    .await
                    .map_err(raw_error("creating the scratch table"))?;
                let rate = raw_insert_sqlite(&pool, rows, records).await;
                pool.close().await;
                rate
            }
            Self::Postgres { .. } => {
                // A ledger's schema, so that the scratch table sits next to a ledger's tables.
                let url = self.schema_url("raw");
                drop(PgLedger::connect(&url).await?);
                let pool = pg_pool(&url).await?;
                sqlx::raw_sql(RAW_TABLE_POSTGRES)
                    .execute(&pool)
                    .await
                    .map_err(raw_error("creating the scratch table"))?;
                let rate = raw_insert_postgres(&pool, rows, records).await;
                pool.close().await;
                rate
            }
        }
    }

    async fn remove(&self) -> Result<(), BenchError> {
        match self {
            Self::Sqlite { dir } => {
                tokio::fs::remove_dir_all(dir)
                    .await
                    .map_err(|source| BenchError::Io {
                        path: dir.clone(),
                        source,
                    })
            }
            Self::Postgres { url, schemas, .. } => {
                let schemas = std::mem::take(
                    &mut *schemas
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                );
                if schemas.is_empty() {
                    return Ok(());
                }
                let pool = pg_pool(url).await?;
                for schema in schemas {
                    // The name is ours: a prefix of digits and `_` and a fixed step name.
                    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    sqlx::raw_sql(AssertSqlSafe(drop))
                        .execute(&pool)
                        .await
                        .map_err(raw_error("dropping a scratch schema"))?;
                }
                pool.close().await;
                Ok(())
            }
        }
    }
}

const RAW_TABLE_SQLITE: &str = "CREATE TABLE bench_raw (
    seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, resource TEXT NOT NULL, payload TEXT NOT NULL,
    prev_hash BLOB NOT NULL, hash BLOB NOT NULL)";

const RAW_TABLE_POSTGRES: &str = "CREATE TABLE bench_raw (
    seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, resource TEXT NOT NULL, payload TEXT NOT NULL,
    prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL)";

/// Rows per INSERT statement, as the SQLite backend writes them.
const SQLITE_ROWS_PER_STATEMENT: usize = 512;

async fn raw_insert_sqlite(
    pool: &SqlitePool,
    rows: &[RawRow],
    records: u64,
) -> Result<Rate, BenchError> {
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < records {
        let n = (records - seq).min(BATCH) as usize;
        let mut tx = pool
            .begin()
            .await
            .map_err(raw_error("starting a transaction"))?;
        for chunk in rows[..n].chunks(SQLITE_ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO bench_raw (seq, time_ms, actor, action, resource, payload, prev_hash, hash) ",
            );
            insert.push_values(chunk, |mut row, raw| {
                seq += 1;
                row.push_bind(seq as i64)
                    .push_bind(raw.time_ms)
                    .push_bind(raw.actor.as_str())
                    .push_bind(raw.action.as_str())
                    .push_bind(raw.resource.as_str())
                    .push_bind(raw.payload.as_str())
                    .push_bind(&ZERO_HASH[..])
                    .push_bind(raw.hash.as_slice());
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(raw_error("inserting"))?;
        }
        tx.commit().await.map_err(raw_error("committing"))?;
    }
    Ok(Rate {
        records,
        elapsed: started.elapsed(),
    })
}

async fn raw_insert_postgres(
    pool: &PgPool,
    rows: &[RawRow],
    records: u64,
) -> Result<Rate, BenchError> {
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < records {
        let n = (records - seq).min(BATCH) as usize;
        let batch = &rows[..n];
        let seqs: Vec<i64> = (seq + 1..=seq + n as u64).map(|s| s as i64).collect();
        let times: Vec<i64> = batch.iter().map(|r| r.time_ms).collect();
        let text = |f: fn(&RawRow) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
        let prev: Vec<&[u8]> = vec![&ZERO_HASH[..]; n];
        let hashes: Vec<&[u8]> = batch.iter().map(|r| r.hash.as_slice()).collect();
        let mut tx = pool
            .begin()
            .await
            .map_err(raw_error("starting a transaction"))?;
        // The PostgreSQL backend's own statement shape.
        sqlx::query(
            "INSERT INTO bench_raw (seq, time_ms, actor, action, resource, payload, prev_hash, hash)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bytea[], $8::bytea[])",
        )
        .bind(seqs)
        .bind(times)
        .bind(text(|r| &r.actor))
        .bind(text(|r| &r.action))
        .bind(text(|r| &r.resource))
        .bind(text(|r| &r.payload))
        .bind(prev)
        .bind(hashes)
        .execute(&mut *tx)
        .await
        .map_err(raw_error("inserting"))?;
        tx.commit().await.map_err(raw_error("committing"))?;
        seq += n as u64;
    }
    Ok(Rate {
        records,
        elapsed: started.elapsed(),
    })
}

async fn pg_pool(url: &str) -> Result<PgPool, BenchError> {
    let (base, schema) = split_schema(url);
    let mut options =
        PgConnectOptions::from_str(&base).map_err(raw_error("parsing the database URL"))?;
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(raw_error("connecting"))
}

/// `url` without its `schema=` parameter, and that parameter's value.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(value) => {
                schema = Some(value.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    if rest.is_empty() {
        (base.to_owned(), schema)
    } else {
        (format!("{base}?{}", rest.join("&")), schema)
    }
}

fn without_schema(url: &str) -> String {
    split_schema(url).0
}

fn with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}schema={schema}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_derived_from_ledger_urls() {
        assert_eq!(
            BenchTarget::parse("postgres://u:p@db/x?schema=s"),
            BenchTarget::Postgres {
                url: "postgres://u:p@db/x?schema=s".into()
            }
        );
        assert_eq!(
            BenchTarget::parse("sqlite://data/ledger.db"),
            BenchTarget::Sqlite {
                dir: PathBuf::from("data")
            }
        );
        assert_eq!(
            BenchTarget::parse("ledger.db"),
            BenchTarget::Sqlite {
                dir: PathBuf::from(".")
            }
        );
        let tmp = std::env::temp_dir();
        assert_eq!(
            BenchTarget::parse(&format!("sqlite:{}", tmp.display())),
            BenchTarget::Sqlite { dir: tmp.clone() }
        );
        assert_eq!(BenchTarget::parse(""), BenchTarget::Sqlite { dir: tmp });
    }

    #[test]
    fn schema_parameters_are_replaced() {
        assert_eq!(
            split_schema("postgres://db/x?sslmode=disable&schema=s"),
            (
                "postgres://db/x?sslmode=disable".to_owned(),
                Some("s".to_owned())
            )
        );
        assert_eq!(
            without_schema("postgres://db/x?schema=s"),
            "postgres://db/x"
        );
        assert_eq!(
            with_schema("postgres://db/x", "b"),
            "postgres://db/x?schema=b"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_small_run_reports_every_measurement_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("metaloop-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = BenchTarget::Sqlite { dir: dir.clone() };
        let mut options = BenchOptions::new(2_500);
        options.durable_records = 40;
        options.writers = vec![1, 4];
        let mut steps = Vec::new();
        let report = run_with_progress(&target, &options, |s| steps.push(s.to_owned()))
            .await
            .unwrap();
        assert_eq!(report.raw_insert.records, 2_500);
        assert_eq!(report.batched_append.records, 2_500);
        assert_eq!(report.verify.fastest().records, 2_500);
        assert_eq!(report.verify_signed.fastest().records, 2_500);
        let runs: Vec<(usize, bool)> = report
            .durable
            .iter()
            .map(|r| (r.writers, r.group_commit))
            .collect();
        assert_eq!(runs, [(1, true), (4, true), (4, false)]);
        assert!(report.durable.iter().all(|r| r.rate.records == 40));
        assert_eq!(steps.len(), 6, "{steps:?}");
        let text = report.to_string();
        assert!(text.contains("(c) verify"), "{text}");
        assert!(text.contains("x raw"), "{text}");
        // Only the scratch directory's parent is left.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
