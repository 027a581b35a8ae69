//! Test helper for `tests/crash.rs`, not a tool: appends to a SQLite ledger as fast as it can
//! from several tasks and prints `SEQ HASH` for every acknowledged (durable) append, one line
//! each, until it is killed.
//!
//! `ledger-crash-writer PATH writer|store TASKS`: `writer` appends through the group-commit
//! `LedgerWriter`, `store` calls `LedgerStore::append` directly (one transaction each).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use metaloop_ledger::{LedgerStore, LedgerWriter, NewRecord, SqliteLedger, WriterOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, mode, tasks] = args.as_slice() else {
        eprintln!("usage: ledger-crash-writer PATH writer|store TASKS");
        return ExitCode::from(2);
    };
    let Ok(tasks) = tasks.parse::<usize>() else {
        eprintln!("TASKS must be a number, not {tasks:?}");
        return ExitCode::from(2);
    };
    let store: Arc<dyn LedgerStore> = match SqliteLedger::open(path).await {
        Ok(ledger) => Arc::new(ledger),
        Err(e) => {
            eprintln!("opening {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let writer = match mode.as_str() {
        "writer" => match LedgerWriter::spawn(store.clone(), WriterOptions::new()).await {
            Ok(writer) => Some(writer),
            Err(e) => {
                eprintln!("starting the writer: {e}");
                return ExitCode::FAILURE;
            }
        },
        "store" => None,
        other => {
            eprintln!("mode must be writer or store, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (store, writer) = (store.clone(), writer.clone());
        handles.push(tokio::spawn(async move {
            for i in 0u64.. {
                let record = NewRecord::new(
                    i as i64,
                    format!("task-{task}"),
                    "crash.test",
                    format!("append/{i}"),
                    json!({"task": task, "i": i, "pid": std::process::id()}),
                );
                let stored = match &writer {
                    Some(writer) => writer.append(record).await.map_err(|e| e.to_string()),
                    None => store
                        .append(vec![record])
                        .await
                        .map(|mut r| r.remove(0))
                        .map_err(|e| e.to_string()),
                };
                match stored {
                    Ok(record) => {
                        // One write per line (stdout is line-buffered), so lines never mix.
                        let line = format!("{} {}\n", record.seq, record.hash_hex());
                        let mut out = std::io::stdout().lock();
                        if out
                            .write_all(line.as_bytes())
                            .and_then(|()| out.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("append failed: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
    ExitCode::SUCCESS
}
