//! `metaloop ledger verify|show`.

use anyhow::{Context, Result};
use metaloop_ledger::{LedgerStore, SqliteLedger, VerifyError};
use std::path::Path;

/// Why a ledger command stopped: usage (exit 2), tampering (exit 3) or anything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum LedgerCmdError {
    #[error("{0}")]
    Usage(String),
    #[error("ledger verification failed: {0}")]
    Tampered(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl LedgerCmdError {
    /// The process exit code (DESIGN.md §7).
    pub fn exit_code(&self) -> i32 {
        match self {
            LedgerCmdError::Usage(_) => 2,
            LedgerCmdError::Tampered(_) => 3,
            LedgerCmdError::Other(_) => 1,
        }
    }
}

async fn open(data: &Path) -> Result<SqliteLedger, LedgerCmdError> {
    let path = crate::demo::ledger_path(data);
    if !path.exists() {
        return Err(LedgerCmdError::Usage(format!(
            "no ledger at {} (is --data the right directory?)",
            path.display()
        )));
    }
    SqliteLedger::open_readonly(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))
        .map_err(LedgerCmdError::Other)
}

/// Verifies every record of the ledger in `data`; returns (records, head hex).
pub async fn verify(data: &Path, progress: bool) -> Result<(u64, String), LedgerCmdError> {
    let ledger = open(data).await?;
    let mut last_shown = 0u64;
    let report = metaloop_ledger::verify(&ledger, |checked, total| {
        if progress && total >= 100_000 && checked >= last_shown + total / 20 {
            last_shown = checked;
            eprintln!(
                "verified {checked} of {total} records ({:.0}%)",
                100.0 * checked as f64 / total.max(1) as f64
            );
        }
    })
    .await
    .map_err(|e| match e {
        VerifyError::Tampered(f) => LedgerCmdError::Tampered(f.to_string()),
        VerifyError::Store(s) => {
            LedgerCmdError::Other(anyhow::Error::new(s).context("reading the ledger"))
        }
    })?;
    let head = report
        .head
        .map(|h| metaloop_ledger::hex::encode(&h))
        .unwrap_or_default();
    Ok((report.records, head))
}

/// Prints records from `from` on, optionally filtered by actor or action.
pub async fn show(
    data: &Path,
    from: u64,
    actor: Option<&str>,
    action: Option<&str>,
    json: bool,
) -> Result<(), LedgerCmdError> {
    let ledger = open(data).await?;
    let mut next = from.max(1);
    loop {
        let page = ledger
            .read(next, 1000)
            .await
            .context("reading the ledger")?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for r in &page {
            if actor.is_some_and(|a| a != r.actor) || action.is_some_and(|a| a != r.action) {
                continue;
            }
            if json {
                println!("{}", serde_json::to_string(r).context("encoding a record")?);
            } else {
                let time = metaloop_core::time::Timestamp(r.time_ms).to_rfc3339();
                println!(
                    "{:>6}  {time}  {:<18} {:<28} {}",
                    r.seq, r.actor, r.action, r.resource
                );
            }
        }
    }
    Ok(())
}
