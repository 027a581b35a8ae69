//! metaloop's tamper-evident ledger: append-only records chained by SHA-256.
//!
//! Every record's hash covers a canonical encoding of all its other fields, including the
//! previous record's hash, so changing, removing, inserting or reordering a record breaks the
//! chain where it happened. `docs/LEDGER.md` specifies the encoding for auditors.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use metaloop_ledger::{LedgerStore, NewRecord, SqliteLedger, verify};
//! let ledger = SqliteLedger::open("ledger.db").await?;
//! let stored = ledger
//!     .append(vec![NewRecord::new(0, "supervisor", "cycle.started", "cycle/1", serde_json::json!({}))])
//!     .await?;
//! println!("record {} hash {}", stored[0].seq, stored[0].hash_hex());
//! let report = verify(&ledger, |_checked, _total| {}).await?;
//! assert_eq!(report.records, 1);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod canonical_json;
pub mod checkpoint;
pub mod encoding;
mod error;
pub mod hex;
mod record;
mod sqlite;
mod store;
mod verify;

pub use canonical_json::{CanonicalJsonError, to_canonical_json};
pub use checkpoint::{Checkpoint, CheckpointText};
pub use encoding::{DOMAIN, HashInput, ZERO_HASH};
pub use error::LedgerError;
pub use record::{NewRecord, Record, StoredRecord};
pub use sqlite::SqliteLedger;
pub use store::{BoxFuture, Head, LedgerStore};
pub use verify::{
    DEFAULT_PAGE_SIZE, Problem, Verifier, VerifyError, VerifyFailure, VerifyReport, verify,
    verify_paged,
};
