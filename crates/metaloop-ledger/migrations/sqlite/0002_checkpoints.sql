-- Signed checkpoints (see docs/LEDGER.md): append-only like the records.
CREATE TABLE checkpoints (
    seq         INTEGER PRIMARY KEY CHECK (seq >= 1),
    head        BLOB    NOT NULL CHECK (typeof(head) = 'blob' AND length(head) = 32),
    merkle_root BLOB    NOT NULL CHECK (typeof(merkle_root) = 'blob' AND length(merkle_root) = 32),
    time_ms     INTEGER NOT NULL CHECK (typeof(time_ms) = 'integer'),
    key_id      TEXT    NOT NULL CHECK (typeof(key_id) = 'text'),
    signature   BLOB    NOT NULL CHECK (typeof(signature) = 'blob' AND length(signature) = 64)
);

CREATE TRIGGER checkpoints_refuse_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger checkpoints are append-only: UPDATE is refused');
END;

CREATE TRIGGER checkpoints_refuse_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger checkpoints are append-only: DELETE is refused');
END;

CREATE TRIGGER checkpoints_refuse_out_of_order_insert BEFORE INSERT ON checkpoints
WHEN NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM checkpoints)
  OR NEW.seq > (SELECT COALESCE(MAX(seq), 0) FROM records)
BEGIN
    SELECT RAISE(ABORT, 'ledger checkpoints are append-only: a checkpoint must be newer than the last and cover existing records');
END;
