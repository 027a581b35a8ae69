//! The PostgreSQL backend: records and checkpoints in one schema, guarded by triggers and by
//! privileges (the writer role should hold INSERT and SELECT only; `docs/LEDGER.md`).

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgValueFormat};
use sqlx::{Connection, Executor, Postgres, Row, TypeInfo, ValueRef};
use tokio::sync::Mutex;

use crate::checkpoint::Checkpoint;
use crate::error::LedgerError;
use crate::note::NoteSignature;
use crate::record::{PreparedRecord, Record, StoredRecord, chain, hash_array};
use crate::store::{BoxFuture, Head, LedgerStore};

use crate::migrations::POSTGRES_MIGRATOR as MIGRATOR;

/// The URL query parameter that names the schema holding the ledger's tables.
pub const SCHEMA_PARAMETER: &str = "schema";

/// Serialises appends across processes. An advisory lock rather than `LOCK TABLE`, which
/// would need UPDATE, DELETE or TRUNCATE privileges that the writer role must not have.
/// The key is "mled" in the high 32 bits and the records table's oid in the low 32, so
/// ledgers in different schemas do not block each other.
const APPEND_LOCK: &str =
    "SELECT pg_advisory_xact_lock((x'6d6c6564'::bigint << 32) | 'records'::regclass::oid::bigint)";

const READ_HEAD: &str = "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1";

/// One statement for a whole batch: arrays unnested in order, so the row trigger sees each
/// row's predecessor.
const INSERT_RECORDS: &str =
    "INSERT INTO records (seq, time_ms, actor, action, resource, payload, prev_hash, hash)
SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::bytea[], $8::bytea[])";

/// Reads every column as stored; see [`stored_from_row`].
const READ_STORED: &str = "SELECT seq, time_ms, actor, action, resource, payload, prev_hash, hash
FROM records WHERE seq >= $1 ORDER BY seq LIMIT $2";

const CHECKPOINT_COLUMNS: &str = "seq, head, merkle_root, time_ms, key_id, signature";

/// A ledger in a PostgreSQL database.
///
/// The URL is a libpq-style `postgres://` URL, plus an optional `schema=NAME` parameter
/// (lower-case letters, digits and `_`): the ledger's tables live in that schema, which
/// [`PgLedger::connect`] creates if missing. Without it they live in the first schema of the
/// server's `search_path` (usually `public`).
#[derive(Debug)]
pub struct PgLedger {
    pool: PgPool,
    /// The URL with its password masked, for messages.
    display_url: String,
    schema: Option<String>,
    read_only: bool,
    /// Serialises appends within this process (the advisory lock does across processes).
    append_lock: Mutex<()>,
    /// When set, every append checks in its transaction that this lease is still held.
    fence: std::sync::Mutex<Option<Lease>>,
}

/// A leadership lease held on the ledger: who holds it and under which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: u64,
}

/// The lease row as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub holder: String,
    pub epoch: u64,
    /// When it expires, by the database's clock (Unix milliseconds).
    pub expires_at_ms: i64,
    /// Whether it has expired by the database's clock now.
    pub expired: bool,
}

/// A lease won: it and the holder it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub lease: Lease,
    pub previous: Option<String>,
}

/// Takes the lease when it is free or expired (by the database's clock); the epoch grows by
/// one. The row lock an append holds on the lease (`FOR SHARE`) makes a taker wait until
/// that append has committed, so a new leader reads everything its predecessor wrote.
const ACQUIRE_LEASE: &str = "WITH prev AS (SELECT holder FROM leadership WHERE id = 1)
INSERT INTO leadership (id, holder, epoch, acquired_at, expires_at)
VALUES (1, $1, 1, clock_timestamp(), clock_timestamp() + $2 * interval '1 millisecond')
ON CONFLICT (id) DO UPDATE
   SET holder = EXCLUDED.holder, epoch = leadership.epoch + 1,
       acquired_at = clock_timestamp(),
       expires_at = clock_timestamp() + $2 * interval '1 millisecond'
 WHERE leadership.expires_at <= clock_timestamp()
RETURNING epoch, (SELECT holder FROM prev)";

/// Extends a lease still held and not expired.
const RENEW_LEASE: &str = "UPDATE leadership
   SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
 WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()
RETURNING epoch";

/// Lets a lease go at once (a graceful stop), so a standby need not wait for it to expire.
const RELEASE_LEASE: &str = "UPDATE leadership SET expires_at = clock_timestamp()
 WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()";

const READ_LEASE: &str = "SELECT holder, epoch,
       (extract(epoch FROM expires_at) * 1000)::int8,
       expires_at <= clock_timestamp()
  FROM leadership WHERE id = 1";

/// The fencing check of an append: the lease is this replica's, under its epoch, unexpired.
const CHECK_FENCE: &str = "SELECT holder, epoch, expires_at > clock_timestamp()
  FROM leadership WHERE id = 1 FOR SHARE";

impl PgLedger {
    /// Connects for appending, creating the schema and bringing the tables up to date when
    /// needed (a role that may only INSERT and SELECT can connect to an up-to-date ledger).
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let target = Target::parse(url)?;
        target.probe(&target.options).await?;
        // Never acknowledge an append before it is durable, whatever the server's default.
        let pool = target
            .pool_options(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "SELECT set_config('synchronous_commit', 'on', false) \
                         WHERE current_setting('synchronous_commit') = 'off'",
                    )
                    .await
                    .map(|_| ())
                })
            })
            .connect_with(target.options.clone())
            .await
            .map_err(|source| target.open_error(source))?;
        let ledger = Self::new(pool, target, false);
        ledger.migrate().await?;
        let privileges = ledger.role_privileges().await?;
        if !privileges.is_append_only() {
            tracing::warn!(
                role = %privileges.role,
                superuser = privileges.superuser,
                owner = privileges.owner,
                update = privileges.update,
                delete = privileges.delete,
                truncate = privileges.truncate,
                "the ledger's database role can change or remove records; \
                 run metaloop as a role with INSERT and SELECT only (docs/LEDGER.md, PostgreSQL)"
            );
        }
        Ok(ledger)
    }

    /// Connects for reading only (verification): never creates or migrates anything, and
    /// every transaction is read-only on the server.
    pub async fn connect_readonly(url: &str) -> Result<Self, LedgerError> {
        let target = Target::parse(url)?;
        let options = target
            .options
            .clone()
            .options([("default_transaction_read_only", "on")]);
        target.probe(&options).await?;
        let pool = target
            .pool_options(2)
            .connect_with(options)
            .await
            .map_err(|source| target.open_error(source))?;
        let has_records: bool = sqlx::query_scalar("SELECT to_regclass('records') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .map_err(|source| target.open_error(source))?;
        if !has_records {
            pool.close().await;
            return Err(LedgerError::NotALedger {
                path: PathBuf::from(target.display_url),
            });
        }
        Ok(Self::new(pool, target, true))
    }

    fn new(pool: PgPool, target: Target, read_only: bool) -> Self {
        Self {
            pool,
            display_url: target.display_url,
            schema: target.schema,
            read_only,
            append_lock: Mutex::new(()),
            fence: std::sync::Mutex::new(None),
        }
    }

    /// Takes the leadership lease for `holder` for `ttl` when it is free or expired;
    /// `None` when another holder's lease is still running.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<Acquired>, LedgerError> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(ACQUIRE_LEASE)
            .bind(holder)
            .bind(ttl.as_millis() as f64)
            .fetch_optional(&self.pool)
            .await
            .map_err(LedgerError::storage("taking the leadership lease"))?;
        Ok(row.map(|(epoch, previous)| Acquired {
            lease: Lease {
                holder: holder.to_string(),
                epoch: epoch as u64,
            },
            previous: previous.filter(|p| p != holder),
        }))
    }

    /// Extends a lease for `ttl` from now; false when it was lost (expired or taken).
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        ttl: std::time::Duration,
    ) -> Result<bool, LedgerError> {
        let row: Option<(i64,)> = sqlx::query_as(RENEW_LEASE)
            .bind(&lease.holder)
            .bind(lease.epoch as i64)
            .bind(ttl.as_millis() as f64)
            .fetch_optional(&self.pool)
            .await
            .map_err(LedgerError::storage("renewing the leadership lease"))?;
        Ok(row.is_some())
    }

    /// Gives a lease up now (a graceful stop).
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), LedgerError> {
        sqlx::query(RELEASE_LEASE)
            .bind(&lease.holder)
            .bind(lease.epoch as i64)
            .execute(&self.pool)
            .await
            .map_err(LedgerError::storage("releasing the leadership lease"))?;
        Ok(())
    }

    /// The lease as it stands, `None` before anyone took it.
    pub async fn lease_info(&self) -> Result<Option<LeaseInfo>, LedgerError> {
        let row: Option<(String, i64, i64, bool)> = sqlx::query_as(READ_LEASE)
            .fetch_optional(&self.pool)
            .await
            .map_err(LedgerError::storage("reading the leadership lease"))?;
        Ok(
            row.map(|(holder, epoch, expires_at_ms, expired)| LeaseInfo {
                holder,
                epoch: epoch as u64,
                expires_at_ms,
                expired,
            }),
        )
    }

    /// From now on every append checks, in its own transaction, that `lease` is still held
    /// and unexpired, and is refused ([`LedgerError::Fenced`]) otherwise; `None` stops the
    /// check (a single node).
    pub fn set_fence(&self, lease: Option<Lease>) {
        *self.fence.lock().unwrap_or_else(|e| e.into_inner()) = lease;
    }

    /// The schema named by the URL, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The URL, with any password masked.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// What the connected role may do to the records table beyond INSERT and SELECT.
    ///
    /// A deployment's writer role should own nothing and hold none of these (the triggers
    /// stop mistakes; an owner can disable them, a mere writer cannot).
    pub async fn role_privileges(&self) -> Result<RolePrivileges, LedgerError> {
        type Row = (String, bool, bool, bool, bool, bool);
        let (role, superuser, owner, update, delete, truncate): Row = sqlx::query_as(
            "SELECT current_user::text,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    pg_has_role(current_user, c.relowner, 'USAGE'),
                    has_table_privilege(c.oid, 'UPDATE'),
                    has_table_privilege(c.oid, 'DELETE'),
                    has_table_privilege(c.oid, 'TRUNCATE')
             FROM pg_class c WHERE c.oid = 'records'::regclass",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(LedgerError::storage("reading the role's privileges"))?;
        Ok(RolePrivileges {
            role,
            superuser,
            owner,
            update,
            delete,
            truncate,
        })
    }

    /// Creates the schema if the URL names one that is missing, then applies the migrations
    /// that are not applied yet.
    async fn migrate(&self) -> Result<(), LedgerError> {
        let migrate_error = |source| LedgerError::Migrate {
            path: PathBuf::from(&self.display_url),
            source,
        };
        if let Some(schema) = &self.schema {
            // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
            // database even when the schema exists, and a writer role does not have it.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(schema)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| migrate_error(e.into()))?;
            if !exists {
                // The name is checked to be a plain lower-case identifier (Target::parse).
                let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
                sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| migrate_error(e.into()))?;
            }
        }
        if self.migrations_are_applied().await {
            return Ok(());
        }
        MIGRATOR.run(&self.pool).await.map_err(migrate_error)
    }

    /// Whether every migration is applied, unchanged; any doubt (no migrations table, an
    /// error) leaves the answer to the migrator.
    async fn migrations_are_applied(&self) -> bool {
        let applied: Result<Vec<(i64, Vec<u8>)>, _> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await;
        let Ok(applied) = applied else {
            return false;
        };
        MIGRATOR.iter().all(|migration| {
            applied.iter().any(|(version, checksum)| {
                *version == migration.version && checksum[..] == migration.checksum[..]
            })
        })
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
        let _guard = self.append_lock.lock().await;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(LedgerError::storage("starting an append transaction"))?;
        sqlx::query(APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(LedgerError::storage("locking the ledger for an append"))?;
        let fence = self.fence.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(lease) = fence {
            let row: Option<(String, i64, bool)> = sqlx::query_as(CHECK_FENCE)
                .fetch_optional(&mut *tx)
                .await
                .map_err(LedgerError::storage("checking the leadership lease"))?;
            match row {
                Some((holder, epoch, live))
                    if holder == lease.holder && epoch as u64 == lease.epoch && live => {}
                Some((holder, epoch, _))
                    if holder != lease.holder || epoch as u64 != lease.epoch =>
                {
                    return Err(LedgerError::Fenced(format!(
                        "{} (epoch {}) no longer holds the lease: {holder} does, epoch {epoch}",
                        lease.holder, lease.epoch
                    )));
                }
                Some(_) => {
                    return Err(LedgerError::Fenced(format!(
                        "the lease of {} (epoch {}) has expired",
                        lease.holder, lease.epoch
                    )));
                }
                None => {
                    return Err(LedgerError::Fenced("no replica holds the lease".into()));
                }
            }
        }
        // Read after taking the lock: under READ COMMITTED each statement sees every
        // transaction committed before it started, so this is the true head.
        let head = query_head(&mut *tx).await?;
        let sealed = chain(prepared, head)?;
        let n = sealed.len();
        let mut seqs = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut actions = Vec::with_capacity(n);
        let mut resources = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut prev_hashes = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for s in &sealed {
            let r = &s.record;
            seqs.push(r.seq as i64);
            times.push(r.time_ms);
            actors.push(r.actor.as_str());
            actions.push(r.action.as_str());
            resources.push(r.resource.as_str());
            payloads.push(s.payload_text.as_str());
            prev_hashes.push(&r.prev_hash[..]);
            hashes.push(&r.hash[..]);
        }
        sqlx::query(INSERT_RECORDS)
            .bind(seqs)
            .bind(times)
            .bind(actors)
            .bind(actions)
            .bind(resources)
            .bind(payloads)
            .bind(prev_hashes)
            .bind(hashes)
            .execute(&mut *tx)
            .await
            .map_err(LedgerError::storage("appending records"))?;
        tx.commit()
            .await
            .map_err(LedgerError::storage("committing appended records"))?;
        Ok(sealed.into_iter().map(|s| s.record).collect())
    }
}

/// What the role a [`PgLedger`] is connected as may do beyond appending and reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePrivileges {
    /// The role's name.
    pub role: String,
    /// It is a superuser (and bypasses every privilege check).
    pub superuser: bool,
    /// It owns the records table or is a member of the owning role (and so can disable the
    /// triggers).
    pub owner: bool,
    /// It holds UPDATE on the records table.
    pub update: bool,
    /// It holds DELETE on the records table.
    pub delete: bool,
    /// It holds TRUNCATE on the records table.
    pub truncate: bool,
}

impl RolePrivileges {
    /// Only INSERT and SELECT: what a deployment's writer role should be limited to.
    pub fn is_append_only(&self) -> bool {
        !(self.superuser || self.owner || self.update || self.delete || self.truncate)
    }
}

/// A parsed ledger URL.
struct Target {
    options: PgConnectOptions,
    display_url: String,
    schema: Option<String>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, LedgerError> {
        let display_url = mask_password(url);
        let config_error = |message: String| LedgerError::Open {
            path: PathBuf::from(&display_url),
            source: sqlx::Error::Configuration(message.into()),
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((SCHEMA_PARAMETER, value)) => {
                    if !is_plain_identifier(value) {
                        return Err(config_error(format!(
                            "schema {value:?} is not a plain name (lower-case letters, digits and _, \
                             not starting with a digit, at most 63 characters)"
                        )));
                    }
                    schema = Some(value.to_owned());
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut options = PgConnectOptions::from_str(&url).map_err(|source| LedgerError::Open {
            path: PathBuf::from(&display_url),
            source,
        })?;
        options = options.application_name("metaloop-ledger");
        if let Some(schema) = &schema {
            options = options.options([("search_path", schema)]);
        }
        Ok(Self {
            options,
            display_url,
            schema,
        })
    }

    fn pool_options(&self, max_connections: u32) -> PgPoolOptions {
        PgPoolOptions::new().max_connections(max_connections)
    }

    /// Connects once outside the pool, so that an unreachable server or a refused login is
    /// reported at once (the pool would retry until its acquire timeout, 30 s).
    async fn probe(&self, options: &PgConnectOptions) -> Result<(), LedgerError> {
        let conn = PgConnection::connect_with(options)
            .await
            .map_err(|source| self.open_error(source))?;
        let _ = conn.close().await;
        Ok(())
    }

    fn open_error(&self, source: sqlx::Error) -> LedgerError {
        LedgerError::Open {
            path: PathBuf::from(&self.display_url),
            source,
        }
    }
}

/// Lower-case ASCII letters, digits and `_`, not starting with a digit, 1 to 63 bytes: a name
/// PostgreSQL does not fold or need quoted.
fn is_plain_identifier(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Replaces the password of `scheme://user:password@host…` with `***`.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn query_head<'e>(
    executor: impl Executor<'e, Database = Postgres>,
) -> Result<Option<Head>, LedgerError> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(READ_HEAD)
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

/// Decodes a row of [`READ_STORED`] (by position), noting values of the wrong type or NULLs
/// (only possible if the schema was altered) instead of failing.
fn stored_from_row(row: &PgRow) -> Result<StoredRecord, sqlx::Error> {
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
    let time_ms = match row.try_get::<i64, _>(1) {
        Ok(t) => t,
        Err(_) => {
            describe(1, "time_ms", "an integer");
            0
        }
    };
    // Text and bytea as their raw bytes (in the binary format, text is its UTF-8 bytes).
    let mut bytes = |index: usize, column: &str| {
        let raw = row.try_get_raw(index).ok().filter(|value| {
            !value.is_null()
                && value.format() == PgValueFormat::Binary
                && matches!(
                    value.type_info().name(),
                    "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "BYTEA"
                )
        });
        match raw.and_then(|value| value.as_bytes().ok()) {
            Some(b) => b.to_vec(),
            None => {
                describe(index, column, "text or bytes");
                Vec::new()
            }
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

impl LedgerStore for PgLedger {
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
            // Beyond 2^63-1 it cannot cover existing records: the trigger refuses it.
            let seq = i64::try_from(checkpoint.seq).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO checkpoints (seq, head, merkle_root, time_ms, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(seq)
            .bind(&checkpoint.head[..])
            .bind(&checkpoint.merkle_root[..])
            .bind(checkpoint.time_ms)
            .bind(&checkpoint.key_id)
            .bind(&checkpoint.signature[..])
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
            let sql = format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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
            let sql =
                format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq DESC LIMIT 1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
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
                    "INSERT INTO note_signatures (seq, name, key_id, signature) VALUES ($1, $2, $3, $4) \
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
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass('note_signatures') IS NOT NULL")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(LedgerError::storage("reading note signatures"))?;
            if !exists {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(
                "SELECT seq, name, key_id, signature FROM note_signatures WHERE seq > $1 \
                 ORDER BY seq, name, key_id LIMIT $2",
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
fn checkpoint_from_row(row: &PgRow) -> Result<Checkpoint, LedgerError> {
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

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://writer:s3cret@db:5432/ledger?schema=x"),
            "postgres://writer:***@db:5432/ledger?schema=x"
        );
        assert_eq!(
            mask_password("postgres://root@127.0.0.1:5432/test"),
            "postgres://root@127.0.0.1:5432/test"
        );
        assert_eq!(mask_password("not a url"), "not a url");
    }

    #[test]
    fn schema_parameter_is_taken_out_of_the_url() {
        let target =
            Target::parse("postgres://root@localhost/test?schema=ledger_1&sslmode=disable")
                .unwrap();
        assert_eq!(target.schema.as_deref(), Some("ledger_1"));
        assert_eq!(
            target.options.get_options(),
            Some("-c search_path=ledger_1")
        );
        assert_eq!(target.options.get_database(), Some("test"));
        let target = Target::parse("postgres://root@localhost/test").unwrap();
        assert_eq!(target.schema, None);
    }

    #[test]
    fn schema_names_must_be_plain() {
        for bad in ["", "Ledger", "1ledger", "a;drop", "a\"b", &"x".repeat(64)] {
            let err = Target::parse(&format!("postgres://localhost/test?schema={bad}"))
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(err.to_string().starts_with("opening ledger"), "{err}");
        }
        assert!(is_plain_identifier("_ledger_2"));
    }
}
