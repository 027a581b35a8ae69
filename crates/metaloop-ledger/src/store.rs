//! The storage interface every ledger backend implements.

use std::future::Future;
use std::pin::Pin;

use crate::checkpoint::Checkpoint;
use crate::error::LedgerError;
use crate::note::NoteSignature;
use crate::record::{NewRecord, PreparedRecord, Record, StoredRecord};

/// The last record's seq and hash.
pub type Head = (u64, [u8; 32]);

/// A boxed future that can move between threads; keeps [`LedgerStore`] usable as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An append-only, hash-chained record store ([`crate::SqliteLedger`], [`crate::PgLedger`]).
///
/// Object safe: the binary picks a backend from the configured URL and holds an
/// `Arc<dyn LedgerStore>`.
pub trait LedgerStore: Send + Sync {
    /// Appends `batch` in one transaction and returns the records as stored, once committed.
    ///
    /// Assigns consecutive seqs after the current head and chains the hashes. Safe to call
    /// from several tasks at once: appends are serialised so seqs stay gap-free. If any
    /// record is invalid, nothing is written. An empty batch is a no-op.
    fn append(&self, batch: Vec<NewRecord>) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>> {
        Box::pin(async move { self.append_prepared(PreparedRecord::prepare(batch)?).await })
    }

    /// [`LedgerStore::append`] of records already checked and canonicalised.
    fn append_prepared(
        &self,
        batch: Vec<PreparedRecord>,
    ) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>>;

    /// Returns the last record's seq and hash, or `None` for an empty ledger.
    fn head(&self) -> BoxFuture<'_, Result<Option<Head>, LedgerError>>;

    /// Returns the number of records.
    fn count(&self) -> BoxFuture<'_, Result<u64, LedgerError>>;

    /// Returns up to `limit` stored rows with `seq >= from_seq`, ordered by seq, unchecked.
    fn read_stored(
        &self,
        from_seq: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredRecord>, LedgerError>>;

    /// Stores a signed checkpoint. It must cover existing records and be newer than the last
    /// one; checkpoints are append-only like records.
    fn append_checkpoint(&self, checkpoint: Checkpoint) -> BoxFuture<'_, Result<(), LedgerError>>;

    /// Returns up to `limit` checkpoints with `seq > after_seq`, ordered by seq.
    fn checkpoints(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Checkpoint>, LedgerError>>;

    /// Returns the newest checkpoint, if any.
    fn latest_checkpoint(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, LedgerError>>;

    /// Stores note signatures of the stored checkpoint `seq` (the supervisor's signed-note
    /// signature, witnesses' cosignatures); one already stored under the same key name and
    /// id is kept and the new one dropped. Append-only like the checkpoints.
    fn append_note_signatures(
        &self,
        seq: u64,
        signatures: Vec<NoteSignature>,
    ) -> BoxFuture<'_, Result<(), LedgerError>> {
        let _ = (seq, signatures);
        Box::pin(async { Err(LedgerError::ReadOnly) })
    }

    /// Returns up to `limit` note signatures of checkpoints with `seq > after_seq`, ordered
    /// by seq; none for a ledger made before note signatures existed.
    fn note_signatures(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<(u64, NoteSignature)>, LedgerError>> {
        let _ = (after_seq, limit);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Closes every connection, waiting for them to finish (SQLite then folds its WAL into
    /// the main file); later calls fail.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Returns up to `limit` records with `seq >= from_seq`, ordered by seq.
    ///
    /// Decodes but does not verify hashes; a row that cannot be decoded is
    /// [`LedgerError::Corrupt`].
    fn read(&self, from_seq: u64, limit: u32) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>> {
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        Box::pin(async move {
            self.read_stored(from, limit)
                .await?
                .into_iter()
                .map(StoredRecord::decode)
                .collect()
        })
    }

    /// Returns every record, ordered by seq (read in pages of [`READ_ALL_PAGE`]).
    ///
    /// Decodes but does not verify hashes, like [`LedgerStore::read`].
    fn read_all(&self) -> BoxFuture<'_, Result<Vec<Record>, LedgerError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut next = 1;
            loop {
                let page = self.read(next, READ_ALL_PAGE).await?;
                let full = page.len() == READ_ALL_PAGE as usize;
                let Some(last) = page.last() else { break };
                next = last.seq + 1;
                out.extend(page);
                if !full {
                    break;
                }
            }
            Ok(out)
        })
    }
}

/// Records per query of [`LedgerStore::read_all`].
pub const READ_ALL_PAGE: u32 = 10_000;
