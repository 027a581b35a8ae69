//! The errors a ledger store returns.

use std::path::PathBuf;

/// Why a ledger operation failed (tampering found by verification is [`crate::VerifyFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// `open_readonly` was given a path with no file.
    #[error("ledger file {} does not exist", path.display())]
    NotFound {
        /// The path that was opened.
        path: PathBuf,
    },
    /// The file is a database but not a ledger.
    #[error("{} is not a metaloop ledger (it has no records table)", path.display())]
    NotALedger {
        /// The path that was opened.
        path: PathBuf,
    },
    /// The database could not be opened or configured.
    #[error("opening ledger {}", path.display())]
    Open {
        /// The path that was opened.
        path: PathBuf,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("migrating ledger {}", path.display())]
    Migrate {
        /// The path that was opened.
        path: PathBuf,
        /// The migration error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("{operation}")]
    Storage {
        /// What the store was doing, e.g. "appending records".
        operation: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A record of an appended batch is invalid; nothing of the batch was written.
    #[error("batch record {index}: {reason}")]
    InvalidRecord {
        /// Position of the record in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The append was refused because this replica no longer holds the leadership lease
    /// (expired, or taken by another replica with a higher epoch); nothing was written.
    #[error("fenced: {0}")]
    Fenced(String),
    /// `append` on a ledger opened with `open_readonly`.
    #[error("the ledger is open read-only")]
    ReadOnly,
    /// A stored record cannot be decoded (only possible if the store was tampered with).
    #[error("record {seq} is corrupt: {detail} (run `metaloop ledger verify`)")]
    Corrupt {
        /// Stored sequence number.
        seq: i64,
        /// What could not be decoded.
        detail: String,
    },
}

impl LedgerError {
    pub(crate) fn storage(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Storage { operation, source }
    }
}
