//! The `metaloop` command as a user runs it: the demo's ledger verifies, any changed byte of
//! any record fails verification with exit 3, and bad usage is a clear exit 2, never a panic.

mod common;

use common::{demo_report, metaloop};
use sqlx::{Connection, Row, SqliteConnection};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_report_follows_the_contract_and_its_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let report = demo_report(dir.path(), "seed", "12", &[]);
    // a finished run closes the ledger: the write-ahead log is folded into the file
    assert!(
        !dir.path().join("ledger.db-wal").exists(),
        "the demo left its write-ahead log behind"
    );
    for field in [
        "scenario",
        "seed",
        "method",
        "environment",
        "cycles",
        "directives",
        "totals",
        "ledger",
    ] {
        assert!(report.get(field).is_some(), "report lacks {field}");
    }
    let c = &report["cycles"][0];
    for field in [
        "cycle",
        "time",
        "snapshot_id",
        "global_kpis",
        "goal_gaps",
        "directives",
        "summary",
    ] {
        assert!(c.get(field).is_some(), "cycle lacks {field}");
    }
    assert_eq!(c["time"], "2026-01-01T00:05:00Z");
    let d = &report["directives"][0];
    for field in [
        "id",
        "type",
        "policy_id",
        "target_domain",
        "impact",
        "confidence",
        "issued_cycle",
        "requires_approval",
        "approvals",
        "status",
        "verdict",
        "rollback_of",
        "rolled_back_by",
        "truth",
    ] {
        assert!(d.get(field).is_some(), "directive lacks {field}");
    }
    let out = metaloop(&["ledger", "verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "verify failed: {}", text(&out.stderr));
    let records = report["ledger"]["records"].as_u64().unwrap();
    assert!(records > 20);
    assert!(
        text(&out.stdout).contains(&format!("{records} records verified")),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains(report["ledger"]["head"].as_str().unwrap()));

    // the story of one directive, from the ledger alone
    let id = report["directives"][0]["id"].as_str().unwrap();
    let out = metaloop(&[
        "ledger",
        "explain",
        &id[..24],
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let story = text(&out.stdout);
    for needle in [
        id,
        "triggered by snapshot",
        "confidence",
        "directive.proposed",
        "directive.published",
        "directive.applied",
    ] {
        assert!(story.contains(needle), "explain lacks {needle:?}:\n{story}");
    }
    let out = metaloop(&[
        "ledger",
        "explain",
        "--json",
        id,
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["directive"]["id"], id);
    assert!(
        doc["policy_evaluation"]["factors"]["confidence"]
            .as_f64()
            .unwrap()
            >= 0.7
    );
    let out = metaloop(&[
        "ledger",
        "explain",
        "no-such-directive",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no directive no-such-directive"));

    // the same data directory does not take a different run
    let again = metaloop(&[
        "demo",
        "--fast",
        "--cycles",
        "1",
        "--seed",
        "2",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("holds a different demo run"),
        "{}",
        text(&again.stderr)
    );
}

/// Changes one byte (or value) of one column of one record; returns the original to restore.
async fn tamper(conn: &mut SqliteConnection, seq: i64, column: &str) -> Vec<u8> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT CAST({column} AS BLOB) AS v FROM records WHERE seq = ?"
    )))
    .bind(seq)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let original: Vec<u8> = row.get("v");
    match column {
        "seq" => {
            sqlx::query("UPDATE records SET seq = seq + 100000 WHERE seq = ?")
                .bind(seq)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        "time_ms" => {
            sqlx::query("UPDATE records SET time_ms = time_ms + 1 WHERE seq = ?")
                .bind(seq)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        "prev_hash" | "hash" => {
            let mut v = original.clone();
            v[31] ^= 0x01;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE records SET {column} = ? WHERE seq = ?"
            )))
            .bind(v)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        _ => {
            let mut v = original.clone();
            let i = v.len() / 2;
            v[i] ^= 0x01; // stays ASCII, so the text stays valid UTF-8
            let s = String::from_utf8(v).unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE records SET {column} = ? WHERE seq = ?"
            )))
            .bind(s)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
    }
    original
}

async fn restore(conn: &mut SqliteConnection, seq: i64, column: &str, original: Vec<u8>) {
    match column {
        "seq" => {
            sqlx::query("UPDATE records SET seq = ? WHERE seq = ?")
                .bind(seq)
                .bind(seq + 100000)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        "time_ms" => {
            sqlx::query("UPDATE records SET time_ms = time_ms - 1 WHERE seq = ?")
                .bind(seq)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        "prev_hash" | "hash" => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE records SET {column} = ? WHERE seq = ?"
            )))
            .bind(original)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        _ => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE records SET {column} = ? WHERE seq = ?"
            )))
            .bind(String::from_utf8(original).unwrap())
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
    }
}

#[test]
fn changing_any_field_of_any_record_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let report = demo_report(dir.path(), "bad-directive", "10", &[]);
    let records = report["ledger"]["records"].as_i64().unwrap();
    let db = dir.path().join("ledger.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", db.display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        // an attacker with the file can drop the append-only triggers; verification must
        // still catch every change
        for t in [
            "records_refuse_update",
            "records_refuse_delete",
            "records_refuse_out_of_chain_insert",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let columns = [
            "seq",
            "time_ms",
            "actor",
            "action",
            "resource",
            "payload",
            "prev_hash",
            "hash",
        ];
        let mut checked = 0;
        for seq in 1..=records {
            for column in columns {
                let original = tamper(&mut conn, seq, column).await;
                let result = metaloop::ledger_cmd::verify(dir.path(), false).await;
                match result {
                    Err(e) => {
                        assert_eq!(e.exit_code(), 3, "record {seq} {column}: {e}");
                        assert!(e.to_string().contains("record "), "{e}");
                    }
                    Ok(_) => panic!("changing {column} of record {seq} went unnoticed"),
                }
                restore(&mut conn, seq, column, original).await;
                checked += 1;
            }
        }
        assert_eq!(checked, records * 8);
        // restored: verifies again
        metaloop::ledger_cmd::verify(dir.path(), false)
            .await
            .unwrap();
        // and through the command, a tampered ledger exits 3 naming the record
        let original = tamper(&mut conn, 3, "payload").await;
        let out = metaloop(&["ledger", "verify", "--data", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("record 3"),
            "{}",
            text(&out.stderr)
        );
        restore(&mut conn, 3, "payload", original).await;
        // a removed record is noticed too
        sqlx::query("DELETE FROM records WHERE seq = 5")
            .execute(&mut conn)
            .await
            .unwrap();
        let out = metaloop(&["ledger", "verify", "--data", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    });
}

#[test]
fn usage_errors_are_clear_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["demo", "--scenario", "nope", "--fast"],
            "valid: seed, drift, noise, bad-directive, correlated, approver-away",
        ),
        (
            &["demo", "--cycles", "0", "--fast"],
            "--cycles must be at least 1",
        ),
        (
            &["demo", "--speed", "0"],
            "--speed must be a positive number",
        ),
        (
            &["demo", "--speed", "fast"],
            "invalid value 'fast' for '--speed",
        ),
        (
            &["demo", "--seed", "abc"],
            "invalid value 'abc' for '--seed",
        ),
        (&["demo", "--method", "magic"], "invalid value 'magic'"),
        (
            &["demo", "--auto-approve-as", " "],
            "--auto-approve-as needs a non-empty name",
        ),
        (&["demo", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["ledger", "verify", "--data", "/nonexistent/metaloop-data"],
            "no ledger at /nonexistent/metaloop-data/ledger.db",
        ),
        (&["ledger", "explode"], "unrecognized subcommand"),
        (
            &["config", "check", "/nonexistent.toml"],
            "/nonexistent.toml: cannot read",
        ),
    ];
    for (args, needle) in cases {
        let out = metaloop(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn config_check_refuses_what_start_up_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metaloop.toml");
    // the identity point: a small-order ("weak") Ed25519 key
    let weak = format!("01{}", "00".repeat(31));
    std::fs::write(
        &file,
        format!("[[adapters]]\nsource = \"urn:spine:a\"\npublic_keys = [\"{weak}\"]\n"),
    )
    .unwrap();
    let out = metaloop(&["config", "check", file.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", text(&out.stdout));
    assert!(err.contains("adapters[0].public_keys[0]"), "{err}");
    assert!(err.contains("weak"), "{err}");
    let out = metaloop(&["run", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    std::fs::write(
        &file,
        "[ingest]\nmax_event_age = \"2h\"\n[dedupe]\nwindow_secs = 3600\n",
    )
    .unwrap();
    let out = metaloop(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("max_event_age"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo_report(&data, "seed", "12", &[]);
    let data = data.to_str().unwrap().to_string();
    let commands: [Vec<&str>; 3] = [
        vec!["ledger", "show", "--json", "--data", &data],
        vec!["ledger", "show", "--data", &data],
        vec!["openapi"],
    ];
    for args in commands {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_metaloop"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -c 100`: read 100 bytes, then close the pipe
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
