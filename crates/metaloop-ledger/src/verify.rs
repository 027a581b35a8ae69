//! Verification: recompute the chain from the stored bytes and name the first record that
//! does not fit.

use std::fmt;

use crate::encoding::{HashInput, ZERO_HASH};
use crate::error::LedgerError;
use crate::hex;
use crate::record::{StoredRecord, hash_array};
use crate::store::LedgerStore;

mod checkpoints;

pub use checkpoints::{
    AuditRequirements, CheckpointFailure, CheckpointVerifier, CheckpointVerifyError,
    CheckpointVerifyReport, ExpectedRoot, verify_audit, verify_audit_paged,
    verify_with_checkpoints, verify_with_checkpoints_paged,
};

/// Records read per query by [`verify`]; bounds memory whatever the ledger's size.
pub const DEFAULT_PAGE_SIZE: u32 = 10_000;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked (equal to the head's seq).
    pub records: u64,
    /// The last record's hash; `None` for an empty ledger.
    pub head: Option<[u8; 32]>,
}

/// The first record at which verification failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct VerifyFailure {
    /// Seq of the offending record; for a missing record, the seq that is missing.
    pub seq: u64,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The hash recomputed from the stored fields differs from the stored hash.
    HashMismatch {
        /// Hash as stored.
        stored: [u8; 32],
        /// Hash recomputed from the stored fields.
        computed: [u8; 32],
    },
    /// `prev_hash` is not the previous record's hash.
    BrokenLink {
        /// `prev_hash` as stored.
        stored: [u8; 32],
        /// The previous record's hash.
        expected: [u8; 32],
    },
    /// The first record's `prev_hash` is not all zero.
    FirstPrevHashNotZero {
        /// `prev_hash` as stored.
        stored: [u8; 32],
    },
    /// No record has this seq; the next stored one has `next_found`.
    SequenceGap {
        /// Seq of the next stored record.
        next_found: u64,
    },
    /// The stored record in this position has a seq at or below the previous one's
    /// (a duplicate), or below 1.
    SequenceDuplicate {
        /// Seq as stored.
        found: i64,
    },
    /// The stored payload text is not the canonical JSON of what it parses to.
    NonCanonicalPayload {
        /// How it differs, or why it does not parse.
        reason: String,
    },
    /// A stored value has the wrong type or size (a 31-byte hash, a NULL, a float time).
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HashMismatch { stored, computed } => write!(
                f,
                "hash mismatch (stored {}, computed {}): a field was changed",
                hex::encode(stored),
                hex::encode(computed)
            ),
            Problem::BrokenLink { stored, expected } => write!(
                f,
                "broken link (prev_hash {} is not the previous record's hash {}): \
                 a record was removed, inserted, reordered or rewritten before this one",
                hex::encode(stored),
                hex::encode(expected)
            ),
            Problem::FirstPrevHashNotZero { stored } => write!(
                f,
                "prev_hash {} of the first record is not all zero: \
                 records were removed from the start or the record was changed",
                hex::encode(stored)
            ),
            Problem::SequenceGap { next_found } => write!(
                f,
                "missing (the next stored record is {next_found}): \
                 a record was removed or renumbered"
            ),
            Problem::SequenceDuplicate { found } => write!(
                f,
                "expected here, but the stored record has seq {found}: \
                 a record was duplicated or renumbered"
            ),
            Problem::NonCanonicalPayload { reason } => write!(
                f,
                "payload is not canonical JSON ({reason}): the stored payload text was edited"
            ),
            Problem::Malformed { reason } => {
                write!(f, "malformed ({reason}): the stored row was edited")
            }
        }
    }
}

/// Why [`verify`] did not succeed: the ledger is tampered with, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The ledger was tampered with (exit code 3).
    #[error(transparent)]
    Tampered(#[from] VerifyFailure),
    /// The ledger could not be read (exit code 1).
    #[error(transparent)]
    Store(#[from] LedgerError),
}

impl VerifyError {
    /// The process exit code `metaloop ledger verify` uses (DESIGN §7): 3 when tampered, 1
    /// when the ledger could not be read.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Tampered(_) => 3,
            VerifyError::Store(_) => 1,
        }
    }
}

/// Checks stored records one at a time, in seq order; [`verify`] drives it over a store.
#[derive(Debug, Clone)]
pub struct Verifier {
    records: u64,
    head: Option<[u8; 32]>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// Starts before the first record.
    pub fn new() -> Self {
        Self {
            records: 0,
            head: None,
        }
    }

    /// Checks the next stored record (the one with the next seq, if nothing is missing).
    pub fn check(&mut self, stored: &StoredRecord) -> Result<(), VerifyFailure> {
        let seq = self.records + 1;
        let fail = |problem| Err(VerifyFailure { seq, problem });
        if stored.seq != seq as i64 {
            return match u64::try_from(stored.seq) {
                Ok(next_found) if next_found > seq => fail(Problem::SequenceGap { next_found }),
                _ => fail(Problem::SequenceDuplicate { found: stored.seq }),
            };
        }
        if let Some(reason) = &stored.defect {
            return fail(Problem::Malformed {
                reason: reason.clone(),
            });
        }
        let prev_hash = match hash_array("prev_hash", &stored.prev_hash) {
            Ok(h) => h,
            Err(reason) => return fail(Problem::Malformed { reason }),
        };
        let hash = match hash_array("hash", &stored.hash) {
            Ok(h) => h,
            Err(reason) => return fail(Problem::Malformed { reason }),
        };
        if let Err(reason) = stored.check_payload() {
            return fail(Problem::NonCanonicalPayload { reason });
        }
        match self.head {
            None if prev_hash != ZERO_HASH => {
                return fail(Problem::FirstPrevHashNotZero { stored: prev_hash });
            }
            Some(expected) if prev_hash != expected => {
                return fail(Problem::BrokenLink {
                    stored: prev_hash,
                    expected,
                });
            }
            _ => {}
        }
        let computed = HashInput {
            seq,
            time_ms: stored.time_ms,
            actor: &stored.actor,
            action: &stored.action,
            resource: &stored.resource,
            payload: &stored.payload,
            prev_hash: &prev_hash,
        }
        .hash();
        if computed != hash {
            return fail(Problem::HashMismatch {
                stored: hash,
                computed,
            });
        }
        self.records = seq;
        self.head = Some(hash);
        Ok(())
    }

    /// Records checked so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// What has been verified so far.
    pub fn report(&self) -> VerifyReport {
        VerifyReport {
            records: self.records,
            head: self.head,
        }
    }
}

/// Verifies the whole ledger from the stored bytes, [`DEFAULT_PAGE_SIZE`] records at a time,
/// calling `on_progress(checked, total)` after each page.
///
/// Records appended while it runs are verified too (so `checked` may pass `total`). Must run
/// inside a tokio runtime: the CPU-bound checking goes to its blocking pool.
pub async fn verify<S: LedgerStore + ?Sized>(
    store: &S,
    on_progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    verify_paged(store, DEFAULT_PAGE_SIZE, on_progress).await
}

/// [`verify`] with a chosen page size (at least 1).
///
/// Reading the next page overlaps with checking the current one, which runs on tokio's
/// blocking pool (it is CPU-bound: canonical JSON and SHA-256).
pub async fn verify_paged<S: LedgerStore + ?Sized>(
    store: &S,
    page_size: u32,
    on_progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    let verifier = check_pages(
        store,
        page_size,
        Verifier::new(),
        async |_: &mut Verifier, _| Ok(()),
        on_progress,
    )
    .await?;
    Ok(verifier.report())
}

/// What [`check_pages`] runs over every stored record, in seq order.
pub(crate) trait PageCheck: Send + 'static {
    /// What a bad record or a failed read becomes.
    type Error: From<LedgerError> + Send + 'static;

    /// Checks the next stored record.
    fn check(&mut self, stored: &StoredRecord) -> Result<(), Self::Error>;

    /// Records checked so far.
    fn records(&self) -> u64;
}

impl PageCheck for Verifier {
    type Error = VerifyError;

    fn check(&mut self, stored: &StoredRecord) -> Result<(), VerifyError> {
        Ok(Verifier::check(self, stored)?)
    }

    fn records(&self) -> u64 {
        Verifier::records(self)
    }
}

/// Reads every stored record, `page_size` at a time from the lowest possible seq (so that a
/// row renumbered to 0 or below is seen), and runs `checker` over them. Before each page,
/// `before_page(checker, reach)` is called with the number of records checked once that page
/// is; after it, `on_progress(checked, total)`.
///
/// Checking is CPU-bound (canonical JSON, SHA-256, signatures), so it runs on tokio's
/// blocking pool, overlapped with reading the next page.
pub(crate) async fn check_pages<S, C>(
    store: &S,
    page_size: u32,
    mut checker: C,
    mut before_page: impl AsyncFnMut(&mut C, u64) -> Result<(), C::Error>,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<C, C::Error>
where
    S: LedgerStore + ?Sized,
    C: PageCheck,
{
    let page_size = page_size.max(1);
    let total = store.count().await?;
    let mut page = store.read_stored(i64::MIN, page_size).await?;
    loop {
        let reach = checker.records() + page.len() as u64;
        before_page(&mut checker, reach).await?;
        let next_from = match page.last() {
            Some(last) if page.len() == page_size as usize => last.seq.checked_add(1),
            _ => None,
        };
        let check = tokio::task::spawn_blocking(move || {
            let outcome = page.iter().try_for_each(|stored| checker.check(stored));
            (checker, outcome)
        });
        let (checked, next) = match next_from {
            Some(from) => {
                let (checked, next) = tokio::join!(check, store.read_stored(from, page_size));
                (checked, Some(next))
            }
            None => (check.await, None),
        };
        let (returned, outcome) = match checked {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // A blocking task is only cancelled if the runtime shuts down before it starts.
            Err(e) => panic!("verification task did not run: {e}"),
        };
        checker = returned;
        outcome?;
        on_progress(checker.records(), total.max(checker.records()));
        match next {
            Some(next) => page = next?,
            None => return Ok(checker),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{NewRecord, chain, prepare};
    use serde_json::json;

    fn ledger(n: usize) -> Vec<StoredRecord> {
        let batch = (0..n)
            .map(|i| NewRecord::new(i as i64, "a", "b", "c", json!({"i": i, "x": [0.5]})))
            .collect();
        chain(prepare(batch).unwrap(), None)
            .unwrap()
            .into_iter()
            .map(|s| StoredRecord {
                seq: s.record.seq as i64,
                time_ms: s.record.time_ms,
                actor: s.record.actor.into_bytes(),
                action: s.record.action.into_bytes(),
                resource: s.record.resource.into_bytes(),
                payload: s.payload_text.into_bytes(),
                prev_hash: s.record.prev_hash.to_vec(),
                hash: s.record.hash.to_vec(),
                defect: None,
            })
            .collect()
    }

    fn check_all(records: &[StoredRecord]) -> Result<VerifyReport, VerifyFailure> {
        let mut v = Verifier::new();
        for r in records {
            v.check(r)?;
        }
        Ok(v.report())
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = ledger(4);
        let report = check_all(&records).unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.head.unwrap().to_vec(), records[3].hash);
        assert_eq!(
            check_all(&[]).unwrap(),
            VerifyReport {
                records: 0,
                head: None
            }
        );
    }

    #[test]
    fn a_duplicate_seq_is_reported() {
        let mut records = ledger(4);
        records.insert(2, records[1].clone());
        let f = check_all(&records).unwrap_err();
        assert_eq!(
            f,
            VerifyFailure {
                seq: 3,
                problem: Problem::SequenceDuplicate { found: 2 }
            }
        );
        assert_eq!(
            f.to_string(),
            "record 3: expected here, but the stored record has seq 2: \
             a record was duplicated or renumbered"
        );
    }

    #[test]
    fn a_seq_below_one_is_reported() {
        let mut records = ledger(2);
        records[0].seq = -1;
        assert_eq!(
            check_all(&records).unwrap_err(),
            VerifyFailure {
                seq: 1,
                problem: Problem::SequenceDuplicate { found: -1 }
            }
        );
    }

    #[test]
    fn wrong_sized_hashes_and_defects_are_malformed() {
        let mut records = ledger(3);
        records[1].hash.pop();
        let f = check_all(&records).unwrap_err();
        assert_eq!(f.seq, 2);
        assert_eq!(
            f.problem,
            Problem::Malformed {
                reason: "hash is 31 bytes, not 32".into()
            }
        );
        let mut records = ledger(3);
        records[2].prev_hash.push(0);
        assert!(matches!(
            check_all(&records).unwrap_err().problem,
            Problem::Malformed { .. }
        ));
        let mut records = ledger(3);
        records[0].defect = Some("time_ms is real, not an integer".into());
        assert_eq!(
            check_all(&records).unwrap_err().to_string(),
            "record 1: malformed (time_ms is real, not an integer): the stored row was edited"
        );
    }

    #[test]
    fn hash_mismatch_names_both_hashes() {
        let mut records = ledger(3);
        records[1].time_ms += 1;
        let f = check_all(&records).unwrap_err();
        let Problem::HashMismatch { stored, computed } = f.problem else {
            panic!("{f}");
        };
        assert_eq!(stored.to_vec(), records[1].hash);
        assert_eq!(
            f.to_string(),
            format!(
                "record 2: hash mismatch (stored {}, computed {}): a field was changed",
                hex::encode(&stored),
                hex::encode(&computed)
            )
        );
    }

    #[test]
    fn verify_error_exit_codes_follow_the_design() {
        let tampered = VerifyError::from(VerifyFailure {
            seq: 1,
            problem: Problem::SequenceGap { next_found: 2 },
        });
        assert_eq!(tampered.exit_code(), 3);
        assert_eq!(VerifyError::from(LedgerError::ReadOnly).exit_code(), 1);
    }
}
