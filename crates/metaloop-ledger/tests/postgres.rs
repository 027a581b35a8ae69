//! The ledger test suite on PostgreSQL, plus what is specific to PostgreSQL.
//!
//! The server is `METALOOP_TEST_POSTGRES` (default `postgres://root@127.0.0.1:5432/test`,
//! a role that may create schemas and roles). Each test works in a fresh schema, dropped at
//! the end. Without a server the tests are skipped, with a message on stderr; with `CI=true`
//! they fail instead.

mod suite;

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metaloop_ledger::postgres::mask_password;
use metaloop_ledger::{LedgerError, LedgerStore, NewRecord, PgLedger, StoredRecord, verify};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::OnceCell;

use suite::{Backend, error_chain};

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

fn server_url() -> String {
    std::env::var("METALOOP_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether the server answers; probed once per test binary. Unreachable is a failure when
/// `CI=true`, otherwise every test is skipped and this says why, once.
async fn server_available() -> bool {
    static PROBE: OnceCell<Result<(), String>> = OnceCell::const_new();
    let url = server_url();
    let probe = PROBE
        .get_or_init(|| async {
            let connect = PgConnection::connect(&url);
            match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 10 s".to_owned()),
            }
        })
        .await;
    let Err(reason) = probe else {
        return true;
    };
    let url = mask_password(&url);
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("PostgreSQL is required when CI=true: cannot connect to {url}: {reason}");
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to the process's stderr: the test harness captures eprintln! of passing
        // tests, and a silent skip would look like a pass.
        let _ = writeln!(
            std::io::stderr(),
            "skipping PostgreSQL tests: cannot connect to {url}: {reason} \
             (set METALOOP_TEST_POSTGRES to a URL)"
        );
    });
    false
}

/// A schema name unique to this test (and process and moment).
fn fresh_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn with_parameter(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// Runs SQL on the server in a throw-away runtime (usable from `Drop`).
fn exec_blocking(url: &str, sql: String) {
    let url = url.to_owned();
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a runtime");
        runtime.block_on(async {
            let mut conn = PgConnection::connect(&url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            conn.close().await
        })
    })
    .join();
    if let Ok(Err(e)) = done {
        let _ = writeln!(std::io::stderr(), "cleaning up the test database: {e}");
    }
}

/// A ledger in a fresh schema, and a second pool playing the attacker with database access.
struct PgBackend {
    store: Arc<PgLedger>,
    raw: PgPool,
    schema: String,
    url: String,
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        exec_blocking(
            &self.url,
            format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ),
        );
    }
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

async fn raw_pool(url: &str, schema: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap()
}

impl PgBackend {
    fn ledger_url(&self) -> String {
        with_parameter(&self.url, "schema", &self.schema)
    }
}

impl Backend for PgBackend {
    type Store = PgLedger;

    async fn available() -> bool {
        server_available().await
    }

    fn text_is_storable(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0)
    }

    async fn create() -> Self {
        let url = server_url();
        let schema = fresh_name("ledger_test");
        let store = PgLedger::connect(&with_parameter(&url, "schema", &schema))
            .await
            .unwrap();
        assert_eq!(store.schema(), Some(schema.as_str()));
        let raw = raw_pool(&url, &schema).await;
        Self {
            store: Arc::new(store),
            raw,
            schema,
            url,
        }
    }

    fn store(&self) -> Arc<PgLedger> {
        self.store.clone()
    }

    async fn exec(&self, sql: &str) -> Result<(), String> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.raw)
            .await
            .map(|_| ())
            .map_err(|e| error_chain(&e))
    }

    async fn drop_guards(&self) {
        self.exec(
            "ALTER TABLE records DISABLE TRIGGER ALL;
             ALTER TABLE checkpoints DISABLE TRIGGER ALL;",
        )
        .await
        .unwrap();
    }

    async fn set_int(&self, seq: i64, name: &str, value: i64) {
        let sql = format!("UPDATE records SET {} = $1 WHERE seq = $2", column(name));
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .bind(seq)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn set_text(&self, seq: i64, name: &str, bytes: &[u8]) {
        let sql = format!(
            "UPDATE records SET {} = convert_from($1, 'UTF8') WHERE seq = $2",
            column(name)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(bytes)
            .bind(seq)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn set_blob(&self, seq: i64, name: &str, bytes: &[u8]) {
        let sql = format!("UPDATE records SET {} = $1 WHERE seq = $2", column(name));
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(bytes)
            .bind(seq)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn set_checkpoint_blob(&self, seq: u64, name: &str, bytes: &[u8]) {
        let sql = format!(
            "UPDATE checkpoints SET {} = $1 WHERE seq = $2",
            checkpoint_column(name)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(bytes)
            .bind(seq as i64)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    async fn insert_raw(&self, row: &StoredRecord) -> Result<(), String> {
        sqlx::query(
            "INSERT INTO records (seq, time_ms, actor, action, resource, payload, prev_hash, hash)
             VALUES ($1, $2, convert_from($3, 'UTF8'), convert_from($4, 'UTF8'),
                     convert_from($5, 'UTF8'), convert_from($6, 'UTF8'), $7, $8)",
        )
        .bind(row.seq)
        .bind(row.time_ms)
        .bind(&row.actor)
        .bind(&row.action)
        .bind(&row.resource)
        .bind(&row.payload)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&self.raw)
        .await
        .map(|_| ())
        .map_err(|e| error_chain(&e))
    }
}

ledger_test_suite!(PgBackend);

// ---------------------------------------------------------------------------------------
// PostgreSQL specifics

fn record(i: i64) -> NewRecord {
    NewRecord::new(
        i,
        "supervisor",
        "cycle.completed",
        format!("cycle/{i}"),
        json!({"i": i}),
    )
}

/// Skips the test (returning) unless the server is there.
macro_rules! require_server {
    () => {
        if !server_available().await {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_is_refused() {
    require_server!();
    let b = PgBackend::create().await;
    let records = b.store.append(vec![record(1), record(2)]).await.unwrap();
    for table in ["records", "checkpoints"] {
        let err = b.exec(&format!("TRUNCATE {table}")).await.unwrap_err();
        assert!(err.contains("append-only: TRUNCATE is refused"), "{err}");
    }
    assert_eq!(b.store.read(1, 10).await.unwrap(), records);
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_cannot_overwrite_a_record() {
    require_server!();
    let b = PgBackend::create().await;
    let records = b.store.append(vec![record(1), record(2)]).await.unwrap();
    let err = b
        .exec(
            "INSERT INTO records SELECT * FROM records WHERE seq = 1
             ON CONFLICT (seq) DO UPDATE SET actor = 'mallory'",
        )
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(b.store.read(1, 10).await.unwrap(), records);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_create_the_triggers_once() {
    require_server!();
    let b = PgBackend::create().await;
    let triggers: Vec<String> = sqlx::query(
        "SELECT tgname::text FROM pg_trigger
         WHERE tgrelid = 'records'::regclass AND NOT tgisinternal ORDER BY tgname",
    )
    .fetch_all(&b.raw)
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
            "records_refuse_truncate",
            "records_refuse_update"
        ]
    );
    // Connecting again finds everything applied and changes nothing.
    let first = b.store.append(vec![record(1), record(2)]).await.unwrap();
    let again = PgLedger::connect(&b.ledger_url()).await.unwrap();
    assert_eq!(again.head().await.unwrap(), Some((2, first[1].hash)));
    let next = again.append(vec![record(3)]).await.unwrap();
    assert_eq!((next[0].seq, next[0].prev_hash), (3, first[1].hash));
    assert_eq!(verify(&again, |_, _| {}).await.unwrap().records, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_connections_keep_seqs_gap_free() {
    // Two pools are two sets of sessions, as two processes would have: the advisory lock
    // serialises them.
    require_server!();
    let b = PgBackend::create().await;
    let other = Arc::new(PgLedger::connect(&b.ledger_url()).await.unwrap());
    let mut tasks = Vec::new();
    for (i, ledger) in [
        b.store.clone(),
        other.clone(),
        b.store.clone(),
        other.clone(),
    ]
    .into_iter()
    .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for j in 0..25 {
                let batch = (0..1 + j % 3).map(|k| record(i as i64 * 1000 + j * 10 + k));
                ledger.append(batch.collect()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = verify(&*other, |_, _| {}).await.unwrap();
    assert_eq!(report.records, b.store.count().await.unwrap());
    // Each task: 9 batches of 1, 8 of 2 and 8 of 3.
    assert_eq!(report.records, 4 * 49);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_readonly_verifies_and_refuses_writes() {
    require_server!();
    let b = PgBackend::create().await;
    let records = b.store.append(vec![record(1), record(2)]).await.unwrap();
    let reader = PgLedger::connect_readonly(&b.ledger_url()).await.unwrap();
    assert_eq!(
        verify(&reader, |_, _| {}).await.unwrap().head,
        Some(records[1].hash)
    );
    assert_eq!(reader.read(1, 10).await.unwrap(), records);
    let err = reader.append(vec![record(3)]).await.unwrap_err();
    assert!(matches!(err, LedgerError::ReadOnly), "{err:?}");
    let err = reader
        .append_checkpoint(metaloop_ledger::Checkpoint::sign(
            &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            2,
            0,
            records[1].hash,
            [0; 32],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::ReadOnly), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_readonly_rejects_a_schema_without_a_ledger() {
    require_server!();
    let url = with_parameter(&server_url(), "schema", &fresh_name("no_ledger"));
    let err = PgLedger::connect_readonly(&url).await.unwrap_err();
    assert!(matches!(err, LedgerError::NotALedger { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a metaloop ledger (it has no records table)",
            mask_password(&url)
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_and_bad_schema_are_named() {
    // Needs no server: port 1 refuses connections.
    let url = "postgres://writer:s3cret@127.0.0.1:1/ledger";
    let err = PgLedger::connect(url).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("opening ledger postgres://writer:***@127.0.0.1:1/ledger"),
        "{err}"
    );
    assert!(!error_chain(&err).contains("s3cret"), "{err}");
    let err = PgLedger::connect("postgres://127.0.0.1:1/x?schema=Bad-Name")
        .await
        .unwrap_err();
    assert!(
        error_chain(&err).contains("\"Bad-Name\" is not a plain name"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_role_can_append_but_not_change_records() {
    // The deployment of docs/LEDGER.md: the owner migrates, the writer holds INSERT and
    // SELECT only, so even with the triggers disabled (by the owner) it cannot rewrite.
    require_server!();
    let b = PgBackend::create().await;
    let owner_view = b.store.role_privileges().await.unwrap();
    assert!(!owner_view.is_append_only(), "{owner_view:?}");
    let role = fresh_name("ledger_writer");
    let schema = &b.schema;
    b.exec(&format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT ON records, checkpoints TO {role};
         GRANT SELECT ON _sqlx_migrations TO {role};"
    ))
    .await
    .unwrap();
    let _role_guard = RoleGuard {
        url: b.url.clone(),
        role: role.clone(),
    };
    let writer_url = {
        let mut options = PgConnectOptions::from_str(&b.url).unwrap();
        options = options.username(&role);
        let host = options.get_host().to_owned();
        let port = options.get_port();
        let database = options.get_database().unwrap_or("postgres").to_owned();
        format!("postgres://{role}@{host}:{port}/{database}?schema={schema}")
    };
    let writer = PgLedger::connect(&writer_url).await.unwrap();
    let privileges = writer.role_privileges().await.unwrap();
    assert!(privileges.is_append_only(), "{privileges:?}");
    assert_eq!(privileges.role, role);
    let records = writer.append(vec![record(1), record(2)]).await.unwrap();
    b.drop_guards().await;
    let raw = raw_pool(
        &writer_url.replace(&format!("?schema={schema}"), ""),
        schema,
    )
    .await;
    for sql in [
        "UPDATE records SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM records WHERE seq = 2",
        "TRUNCATE records",
        "ALTER TABLE records DISABLE TRIGGER ALL",
    ] {
        let err = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&raw)
            .await
            .map(|_| ())
            .map_err(|e| error_chain(&e))
            .unwrap_err();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }
    raw.close().await;
    writer.close().await;
    assert_eq!(b.store.read(1, 10).await.unwrap(), records);
}

/// Drops a role when the test ends, passed or not (roles outlive schemas). Declared after
/// the backend, so it runs first and the schema is dropped last.
struct RoleGuard {
    url: String,
    role: String,
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        let role = &self.role;
        exec_blocking(&self.url, format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_rows_are_reported() {
    // An attacker who can alter the table can store NULLs and wrong sizes.
    require_server!();
    let b = PgBackend::create().await;
    b.store.append((1..=4).map(record).collect()).await.unwrap();
    b.drop_guards().await;
    b.exec(
        "ALTER TABLE records ALTER COLUMN time_ms DROP NOT NULL;
         ALTER TABLE records ALTER COLUMN actor DROP NOT NULL;
         ALTER TABLE records DROP CONSTRAINT records_hash_check;
         UPDATE records SET time_ms = NULL WHERE seq = 2;",
    )
    .await
    .unwrap();
    let err = verify(&*b.store, |_, _| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 2: malformed (time_ms is null, not an integer): the stored row was edited"
    );
    assert_eq!(err.exit_code(), 3);
    let read = b.store.read(1, 10).await.unwrap_err();
    assert!(
        matches!(read, LedgerError::Corrupt { seq: 2, .. }),
        "{read:?}"
    );
    b.exec("UPDATE records SET time_ms = 2 WHERE seq = 2; UPDATE records SET actor = NULL WHERE seq = 3")
        .await
        .unwrap();
    let err = verify(&*b.store, |_, _| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 3: malformed (actor is null, not text or bytes): the stored row was edited"
    );
    b.exec(
        "UPDATE records SET actor = 'supervisor' WHERE seq = 3;
         UPDATE records SET hash = substring(hash from 1 for 31) WHERE seq = 3",
    )
    .await
    .unwrap();
    let err = verify(&*b.store, |_, _| {}).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 3: malformed (hash is 31 bytes, not 32): the stored row was edited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_fences_appends_of_a_replica_that_lost_it() {
    use metaloop_ledger::{Lease, LedgerError};
    use std::time::Duration;
    require_server!();
    let b = PgBackend::create().await;
    let a = b.store.clone();
    let other = Arc::new(PgLedger::connect(&b.ledger_url()).await.unwrap());
    assert_eq!(a.lease_info().await.unwrap(), None);

    // a takes the lease; b cannot while it runs
    let won = a
        .acquire_lease("replica-a", Duration::from_millis(600))
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(won.lease.epoch, 1);
    assert_eq!(won.previous, None);
    assert!(
        other
            .acquire_lease("replica-b", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    a.set_fence(Some(won.lease.clone()));
    a.append(vec![record(1)]).await.unwrap();
    assert!(
        a.renew_lease(&won.lease, Duration::from_millis(600))
            .await
            .unwrap()
    );

    // a pauses past its TTL: its appends are refused even before anyone takes over
    tokio::time::sleep(Duration::from_millis(800)).await;
    let err = a.append(vec![record(2)]).await.unwrap_err();
    assert!(
        matches!(&err, LedgerError::Fenced(m) if m.contains("expired")),
        "{err}"
    );
    assert!(
        !a.renew_lease(&won.lease, Duration::from_secs(5))
            .await
            .unwrap(),
        "an expired lease is not renewed"
    );

    // b takes over with a higher epoch; a is refused, naming the new holder
    let next = other
        .acquire_lease("replica-b", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert_eq!(next.lease.epoch, 2);
    assert_eq!(next.previous.as_deref(), Some("replica-a"));
    other.set_fence(Some(next.lease.clone()));
    other.append(vec![record(2)]).await.unwrap();
    let err = a.append(vec![record(3)]).await.unwrap_err();
    assert!(
        matches!(&err, LedgerError::Fenced(m) if m.contains("replica-b does, epoch 2")),
        "{err}"
    );
    // a stale lease with the old epoch is refused too, whoever claims it
    a.set_fence(Some(Lease {
        holder: "replica-b".into(),
        epoch: 1,
    }));
    assert!(matches!(
        a.append(vec![record(3)]).await.unwrap_err(),
        LedgerError::Fenced(_)
    ));
    // one chain: nothing the fenced replica tried is in it
    assert_eq!(verify(&*other, |_, _| {}).await.unwrap().records, 2);
    let info = other.lease_info().await.unwrap().unwrap();
    assert_eq!(
        (info.holder.as_str(), info.epoch, info.expired),
        ("replica-b", 2, false)
    );

    // a graceful stop hands over at once; epochs never go down
    other.release_lease(&next.lease).await.unwrap();
    let third = a
        .acquire_lease("replica-a", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.lease.epoch, 3);
    let err = b.exec("UPDATE leadership SET epoch = 1").await.unwrap_err();
    assert!(err.contains("epochs only grow"), "{err}");
    let err = b.exec("DELETE FROM leadership").await.unwrap_err();
    assert!(err.contains("never removed"), "{err}");
}
