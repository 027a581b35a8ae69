-- Note signatures of checkpoints (see docs/LEDGER.md §8.8): the supervisor's Ed25519
-- signature of each checkpoint as a C2SP signed note, and witnesses' cosignatures.
-- Append-only like the records.
CREATE TABLE note_signatures (
    seq       INTEGER NOT NULL CHECK (seq >= 1),
    name      TEXT    NOT NULL CHECK (typeof(name) = 'text' AND length(name) >= 1),
    key_id    INTEGER NOT NULL CHECK (typeof(key_id) = 'integer' AND key_id BETWEEN 0 AND 4294967295),
    signature BLOB    NOT NULL CHECK (typeof(signature) = 'blob' AND length(signature) >= 1),
    PRIMARY KEY (seq, name, key_id)
);

CREATE TRIGGER note_signatures_refuse_update BEFORE UPDATE ON note_signatures
BEGIN
    SELECT RAISE(ABORT, 'ledger note signatures are append-only: UPDATE is refused');
END;

CREATE TRIGGER note_signatures_refuse_delete BEFORE DELETE ON note_signatures
BEGIN
    SELECT RAISE(ABORT, 'ledger note signatures are append-only: DELETE is refused');
END;

CREATE TRIGGER note_signatures_refuse_orphan_insert BEFORE INSERT ON note_signatures
WHEN NOT EXISTS (SELECT 1 FROM checkpoints WHERE seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'ledger note signatures must sign a stored checkpoint');
END;
