//! The product on a PostgreSQL ledger, as a user runs it: a demo writes its ledger to
//! `--ledger postgres://…`, is stopped and resumed there, decides as a run on the embedded
//! SQLite ledger does, and `ledger verify | explain | prove | show --ledger postgres://…`
//! work on it; a record changed in the database makes `ledger verify` exit 3 naming it.
//!
//! Needs PostgreSQL (`METALOOP_TEST_POSTGRES`, default postgres://root@127.0.0.1:5432/test, a
//! role that may create schemas): with CI=true a missing server fails the test, otherwise it
//! is skipped with a message.

mod common;

use common::{demo_report, metaloop};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

fn server_url() -> String {
    std::env::var("METALOOP_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs SQL on the server; `None` if it cannot be reached.
fn exec(url: &str, sql: &str) -> Option<Result<(), sqlx::Error>> {
    runtime().block_on(async {
        let connect = PgConnection::connect(url);
        let mut conn = match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(conn)) => conn,
            _ => return None,
        };
        let done = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map(|_| ());
        let _ = conn.close().await;
        Some(done)
    })
}

/// Drops the test's schema however the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = exec(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
        );
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn demo(data: &Path, cycles: &str, ledger: Option<&str>) -> serde_json::Value {
    match ledger {
        Some(url) => demo_report(data, "seed", cycles, &["--ledger", url]),
        None => demo_report(data, "seed", cycles, &[]),
    }
}

/// What the two runs must agree on.
fn decisions(report: &serde_json::Value) -> serde_json::Value {
    let directives: Vec<serde_json::Value> = report["directives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            serde_json::json!([
                d["id"],
                d["type"],
                d["target_domain"],
                d["status"],
                d["previous"],
                d["current"],
                d["verdict"]["details"]
            ])
        })
        .collect();
    let kpis: Vec<&serde_json::Value> = report["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["global_kpis"])
        .collect();
    serde_json::json!({ "directives": directives, "kpis": kpis })
}

#[test]
fn the_demo_runs_resumes_and_verifies_on_a_postgres_ledger() {
    let server = server_url();
    if exec(&server, "SELECT 1").is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but PostgreSQL at {server} is unreachable"
        );
        eprintln!(
            "skipping the PostgreSQL ledger test: cannot connect to {server}; set METALOOP_TEST_POSTGRES"
        );
        return;
    }
    let schema = Schema {
        url: server.clone(),
        name: format!("metaloop_cli_{}", std::process::id()),
    };
    let separator = if server.contains('?') { '&' } else { '?' };
    let ledger = format!("{server}{separator}schema={}", schema.name);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pg");

    // Stopped after 12 cycles and resumed to 24, on PostgreSQL; straight to 24 on SQLite.
    let first = demo(&data, "12", Some(&ledger));
    assert_eq!(first["cycles"].as_array().unwrap().len(), 12);
    let resumed = demo(&data, "24", Some(&ledger));
    let embedded = demo(&dir.path().join("sqlite"), "24", None);
    assert_eq!(decisions(&resumed), decisions(&embedded));
    assert!(
        !data.join("ledger.db").exists(),
        "the ledger went to PostgreSQL"
    );

    let pubkey = data.join("supervisor.pub");
    let pubkey = pubkey.to_str().unwrap();
    let out = metaloop(&["ledger", "verify", "--ledger", &ledger, "--pubkey", pubkey]);
    assert!(out.status.success(), "{}", text(&out));

    let verified = resumed["directives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "verified")
        .expect("a verified directive");
    let id = verified["id"].as_str().unwrap();
    let out = metaloop(&["ledger", "explain", id, "--ledger", &ledger]);
    assert!(out.status.success(), "{}", text(&out));
    let story = text(&out);
    assert!(story.contains(id) && story.contains("verified"), "{story}");

    let out = metaloop(&[
        "ledger", "prove", "5", "--ledger", &ledger, "--pubkey", pubkey,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = metaloop(&[
        "ledger",
        "show",
        "--ledger",
        &ledger,
        "--action",
        "directive.published",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut published: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["resource"].as_str().unwrap().to_owned()
        })
        .collect();
    let total = published.len();
    published.sort();
    published.dedup();
    assert!(total > 0);
    assert_eq!(published.len(), total, "a directive was published twice");

    // Someone with the owner's rights changes one record.
    let tamper = format!(
        "ALTER TABLE \"{s}\".records DISABLE TRIGGER ALL;
         UPDATE \"{s}\".records SET actor = 'mallory' WHERE seq = 7;",
        s = schema.name
    );
    exec(&server, &tamper).unwrap().unwrap();
    let out = metaloop(&["ledger", "verify", "--ledger", &ledger, "--pubkey", pubkey]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("record 7"), "{}", text(&out));
}
