//! Crash durability: an acknowledged append survives the writer being killed.
//!
//! A child process (`src/bin/ledger-crash-writer.rs`) appends to one SQLite ledger from
//! several tasks and prints the seq and hash of every acknowledged append; the test kills it
//! with SIGKILL after a random 20–300 ms, at least 50 times, reopening the same (growing)
//! file each time. After each kill every acknowledged record must be there with the hash the
//! child printed, and the whole ledger must verify. Half the runs append through the
//! group-commit writer, half through `LedgerStore::append`.
//!
//! The seed is printed; `METALOOP_CRASH_SEED=N` replays a run's timings.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metaloop_ledger::{LedgerStore, SqliteLedger, verify};

const KILLS: usize = 50;
const TASKS: &str = "8";

/// xorshift64*: enough randomness for kill timings, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Reads `SEQ HASH` lines until the pipe closes; a torn last line is not an acknowledgement.
fn acknowledgements(stdout: impl std::io::Read) -> Vec<(u64, String)> {
    let mut reader = BufReader::new(stdout);
    let mut out = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(complete) = line.strip_suffix('\n') {
            let (seq, hash) = complete
                .split_once(' ')
                .unwrap_or_else(|| panic!("unexpected line from the child: {complete:?}"));
            out.push((seq.parse().unwrap(), hash.to_owned()));
        }
        line.clear();
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_appends_survive_sigkill() {
    let seed = std::env::var("METALOOP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash test seed {seed} (METALOOP_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let started = Instant::now();
    // Every acknowledgement of every run: seq -> hash.
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    let mut killed_while_appending = 0;
    for run in 0..KILLS {
        let mode = if run % 2 == 0 { "writer" } else { "store" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash-writer"))
            .arg(&path)
            .arg(mode)
            .arg(TASKS)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ledger-crash-writer");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || acknowledgements(stdout));
        let delay = Duration::from_millis(rng.between(20, 300));
        std::thread::sleep(delay);
        if let Ok(Some(status)) = child.try_wait() {
            panic!("run {run}: the writer exited by itself ({status}) before the kill");
        }
        child.kill().expect("SIGKILL"); // SIGKILL on Unix: no chance to flush or clean up
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        if !acks.is_empty() {
            killed_while_appending += 1;
        }

        let ledger = SqliteLedger::open(&path).await.unwrap();
        let stored = ledger.read(1, u32::MAX).await.unwrap();
        for (seq, hash) in &acks {
            let record = stored.get(*seq as usize - 1).unwrap_or_else(|| {
                panic!(
                    "run {run} ({mode}, killed after {delay:?}): acknowledged record {seq} is lost \
                     (the ledger has {} records)",
                    stored.len()
                )
            });
            assert_eq!(record.seq, *seq);
            assert_eq!(
                &record.hash_hex(),
                hash,
                "run {run}: record {seq} differs from what was acknowledged"
            );
            if let Some(earlier) = acknowledged.insert(*seq, hash.clone()) {
                assert_eq!(&earlier, hash, "record {seq} was acknowledged twice");
            }
        }
        // Records acknowledged by earlier runs are still there, unchanged.
        for (seq, hash) in acknowledged.range(..) {
            assert_eq!(&stored[*seq as usize - 1].hash_hex(), hash, "record {seq}");
        }
        let report = verify(&ledger, |_, _| {}).await.unwrap_or_else(|e| {
            panic!("run {run} ({mode}, killed after {delay:?}): the ledger does not verify: {e}")
        });
        assert_eq!(report.records, stored.len() as u64);
        assert_eq!(ledger.count().await.unwrap(), report.records);
        ledger.close().await;
        eprintln!(
            "run {run:2} ({mode:6}) killed after {:3} ms: {:5} acknowledged, ledger has {:6} records",
            delay.as_millis(),
            acks.len(),
            report.records
        );
    }
    let total = acknowledged.len();
    eprintln!(
        "{KILLS} kills in {:.1} s: {total} acknowledged appends, none lost; \
         {killed_while_appending} kills interrupted appending",
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed_while_appending >= KILLS / 2,
        "too few kills hit a writer that was appending ({killed_while_appending} of {KILLS}): \
         the test would prove little"
    );
}
