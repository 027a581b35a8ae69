-- Note signatures of checkpoints (see docs/LEDGER.md §8.8): the supervisor's Ed25519
-- signature of each checkpoint as a C2SP signed note, and witnesses' cosignatures.
-- Append-only like the records.
CREATE TABLE note_signatures (
    seq       BIGINT NOT NULL CHECK (seq >= 1),
    name      TEXT   NOT NULL CHECK (length(name) >= 1),
    key_id    BIGINT NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    signature BYTEA  NOT NULL CHECK (octet_length(signature) >= 1),
    PRIMARY KEY (seq, name, key_id)
);

CREATE FUNCTION note_signatures_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger note signatures are append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER note_signatures_refuse_update BEFORE UPDATE ON note_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION note_signatures_refuse_change();
CREATE TRIGGER note_signatures_refuse_delete BEFORE DELETE ON note_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION note_signatures_refuse_change();
CREATE TRIGGER note_signatures_refuse_truncate BEFORE TRUNCATE ON note_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION note_signatures_refuse_change();

CREATE FUNCTION note_signatures_refuse_orphan_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM checkpoints WHERE seq = NEW.seq) THEN
        RAISE EXCEPTION 'ledger note signatures must sign a stored checkpoint'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER note_signatures_refuse_orphan_insert BEFORE INSERT ON note_signatures
    FOR EACH ROW EXECUTE FUNCTION note_signatures_refuse_orphan_insert();

REVOKE ALL ON note_signatures FROM PUBLIC;
