-- Signed checkpoints (see docs/LEDGER.md): append-only like the records.
CREATE TABLE checkpoints (
    seq         BIGINT PRIMARY KEY CHECK (seq >= 1),
    head        BYTEA  NOT NULL CHECK (octet_length(head) = 32),
    merkle_root BYTEA  NOT NULL CHECK (octet_length(merkle_root) = 32),
    time_ms     BIGINT NOT NULL,
    key_id      TEXT   NOT NULL,
    signature   BYTEA  NOT NULL CHECK (octet_length(signature) = 64)
);

CREATE FUNCTION checkpoints_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger checkpoints are append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER checkpoints_refuse_update BEFORE UPDATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_refuse_change();
CREATE TRIGGER checkpoints_refuse_delete BEFORE DELETE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_refuse_change();
CREATE TRIGGER checkpoints_refuse_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_refuse_change();

-- search_path pinned as for records_refuse_out_of_chain_insert.
CREATE FUNCTION checkpoints_refuse_out_of_order_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM checkpoints)
       OR NEW.seq > (SELECT COALESCE(MAX(seq), 0) FROM records) THEN
        RAISE EXCEPTION 'ledger checkpoints are append-only: a checkpoint must be newer than the last and cover existing records'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER checkpoints_refuse_out_of_order_insert BEFORE INSERT ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION checkpoints_refuse_out_of_order_insert();

REVOKE ALL ON checkpoints FROM PUBLIC;
