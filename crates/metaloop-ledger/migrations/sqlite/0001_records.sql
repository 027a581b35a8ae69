-- The ledger's records: append-only, hash-chained (see docs/LEDGER.md).
-- Types are enforced with CHECKs rather than STRICT so that SQLite versions before 3.37
-- (an auditor's sqlite3 or Python) can still open the file.
CREATE TABLE records (
    seq       INTEGER PRIMARY KEY CHECK (seq >= 1),
    time_ms   INTEGER NOT NULL CHECK (typeof(time_ms) = 'integer'),
    actor     TEXT    NOT NULL CHECK (typeof(actor) = 'text'),
    action    TEXT    NOT NULL CHECK (typeof(action) = 'text'),
    resource  TEXT    NOT NULL CHECK (typeof(resource) = 'text'),
    payload   TEXT    NOT NULL CHECK (typeof(payload) = 'text'), -- canonical JSON, as hashed
    prev_hash BLOB    NOT NULL CHECK (typeof(prev_hash) = 'blob' AND length(prev_hash) = 32),
    hash      BLOB    NOT NULL CHECK (typeof(hash) = 'blob' AND length(hash) = 32)
);

-- Records are never changed or removed. (An attacker with write access to the file can drop
-- these triggers; verification, not the triggers, is what detects tampering.)
CREATE TRIGGER records_refuse_update BEFORE UPDATE ON records
BEGIN
    SELECT RAISE(ABORT, 'ledger records are append-only: UPDATE is refused');
END;

CREATE TRIGGER records_refuse_delete BEFORE DELETE ON records
BEGIN
    SELECT RAISE(ABORT, 'ledger records are append-only: DELETE is refused');
END;

-- Inserts only extend the chain: the next seq, linked to the current head. This also stops
-- INSERT OR REPLACE, which deletes without firing the DELETE trigger.
CREATE TRIGGER records_refuse_out_of_chain_insert BEFORE INSERT ON records
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM records)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM records ORDER BY seq DESC LIMIT 1), zeroblob(32))
BEGIN
    SELECT RAISE(ABORT, 'ledger records are append-only: an INSERT must extend the chain (next seq, prev_hash = head hash)');
END;
