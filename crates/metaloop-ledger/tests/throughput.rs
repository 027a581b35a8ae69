//! Prints append and verification rates; not a pass/fail check.
//! `cargo test --release -p metaloop-ledger --test throughput -- --ignored --nocapture`

use std::time::Instant;

use metaloop_ledger::{LedgerStore, NewRecord, SqliteLedger, verify};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn print_append_and_verify_rates() {
    const RECORDS: usize = 200_000;
    const BATCH: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(dir.path().join("ledger.db"))
        .await
        .unwrap();
    let started = Instant::now();
    for b in 0..RECORDS / BATCH {
        let batch = (0..BATCH)
            .map(|i| {
                let n = b * BATCH + i;
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
            })
            .collect();
        ledger.append(batch).await.unwrap();
    }
    let append = started.elapsed();
    let started = Instant::now();
    let report = verify(&ledger, |_, _| {}).await.unwrap();
    let verified = started.elapsed();
    assert_eq!(report.records, RECORDS as u64);
    // The same reads without any checking, to separate storage from CPU.
    let started = Instant::now();
    let mut pages = Vec::new();
    let mut from = 1;
    loop {
        let page = ledger
            .read_stored(from, metaloop_ledger::DEFAULT_PAGE_SIZE)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        pages.push(page);
    }
    let read = started.elapsed();
    let started = Instant::now();
    let mut verifier = metaloop_ledger::Verifier::new();
    for record in pages.iter().flatten() {
        verifier.check(record).unwrap();
    }
    let checked = started.elapsed();
    println!(
        "append: {RECORDS} records in batches of {BATCH}: {:.0} records/s ({:.1} ms per batch)",
        RECORDS as f64 / append.as_secs_f64(),
        append.as_secs_f64() * 1e3 / (RECORDS / BATCH) as f64
    );
    println!(
        "verify: {:.0} records/s ({} records in {:.2} s)",
        RECORDS as f64 / verified.as_secs_f64(),
        RECORDS,
        verified.as_secs_f64()
    );
    println!(
        "  of which reading: {:.0} records/s; checking (canonical JSON + SHA-256): {:.0} records/s",
        RECORDS as f64 / read.as_secs_f64(),
        RECORDS as f64 / checked.as_secs_f64()
    );
}
