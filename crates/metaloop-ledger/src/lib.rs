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

pub mod bench;
pub mod canonical_json;
pub mod checkpoint;
pub mod encoding;
mod error;
pub mod hex;
pub mod keys;
pub mod merkle;
pub(crate) mod migrations;
pub mod note;
pub mod postgres;
mod proof;
mod record;
mod sqlite;
mod store;
mod verify;
pub mod witness;
mod writer;

pub use canonical_json::{CanonicalJsonError, to_canonical_json, to_canonical_string};
pub use checkpoint::{Checkpoint, CheckpointText, CheckpointTextError};
pub use encoding::{DOMAIN, HashInput, ZERO_HASH};
pub use error::LedgerError;
pub use keys::KeyError;
pub use postgres::{Acquired, Lease, LeaseInfo, PgLedger};
pub use proof::{
    ConsistencyProof, InclusionProof, ProofError, ProveError, checkpoint_at, consistency_path,
    prove, prove_consistency,
};
pub use record::{NewRecord, PreparedRecord, Record, StoredRecord};
pub use sqlite::SqliteLedger;
pub use store::{BoxFuture, Head, LedgerStore, READ_ALL_PAGE};
pub use verify::{
    AuditRequirements, CheckpointFailure, CheckpointVerifier, CheckpointVerifyError,
    CheckpointVerifyReport, DEFAULT_PAGE_SIZE, ExpectedRoot, Problem, Verifier, VerifyError,
    VerifyFailure, VerifyReport, verify, verify_audit, verify_audit_paged, verify_paged,
    verify_with_checkpoints, verify_with_checkpoints_paged,
};
pub use writer::{
    CheckpointHook, Clock, DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_GATHER_WINDOW, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_CAPACITY, LedgerWriter, WriterError,
    WriterOptions, WriterStats,
};
