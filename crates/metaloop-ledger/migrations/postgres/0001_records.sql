-- The ledger's records: append-only, hash-chained (see docs/LEDGER.md).
-- Text columns hold the exact UTF-8 that is hashed; the payload is its canonical JSON text
-- (not jsonb, which would re-format it).
CREATE TABLE records (
    seq       BIGINT PRIMARY KEY CHECK (seq >= 1),
    time_ms   BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    resource  TEXT   NOT NULL,
    payload   TEXT   NOT NULL, -- canonical JSON, as hashed
    prev_hash BYTEA  NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash      BYTEA  NOT NULL CHECK (octet_length(hash) = 32)
);

-- Records are never changed or removed. Statement-level, so that even an UPDATE or DELETE
-- that matches no row is refused. (The owner or a superuser can disable these triggers;
-- the writer role should not be either, see docs/LEDGER.md. Verification, not the
-- triggers, is what detects tampering.)
CREATE FUNCTION records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger records are append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER records_refuse_update BEFORE UPDATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION records_refuse_change();
CREATE TRIGGER records_refuse_delete BEFORE DELETE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION records_refuse_change();
CREATE TRIGGER records_refuse_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION records_refuse_change();

-- Inserts only extend the chain: the next seq, linked to the current head. A row-level
-- BEFORE trigger sees the rows inserted before it by the same statement, so a multi-row
-- INSERT is checked row by row, in order. (An INSERT ... ON CONFLICT DO UPDATE that hits an
-- existing seq is refused here too: its seq is not the next one.)
-- The search_path is pinned to the ledger's schema, so that the trigger reads this ledger's
-- table whatever the inserting session's search_path is.
CREATE FUNCTION records_refuse_out_of_chain_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    head_seq  BIGINT;
    head_hash BYTEA;
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM records ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;
    IF NEW.seq IS DISTINCT FROM head_seq + 1 OR NEW.prev_hash IS DISTINCT FROM head_hash THEN
        RAISE EXCEPTION 'ledger records are append-only: an INSERT must extend the chain (next seq, prev_hash = head hash)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER records_refuse_out_of_chain_insert BEFORE INSERT ON records
    FOR EACH ROW EXECUTE FUNCTION records_refuse_out_of_chain_insert();

-- Privileges: nobody gets to change records through PUBLIC. A deployment's writer role gets
-- INSERT and SELECT only (docs/LEDGER.md, "PostgreSQL").
REVOKE ALL ON records FROM PUBLIC;
