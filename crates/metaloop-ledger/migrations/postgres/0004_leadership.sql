-- Leadership of replicas sharing this ledger (docs/HA.md): one lease row, timed by the
-- database's clock, with an epoch that only grows. Appends check it in their own
-- transaction (fencing), so a replica that lost the lease can no longer append.
-- Unlike the records, this row is updated: the writer role needs SELECT, INSERT and UPDATE
-- on it.
CREATE TABLE leadership (
    id          SMALLINT    PRIMARY KEY CHECK (id = 1),
    holder      TEXT        NOT NULL CHECK (length(holder) >= 1),
    epoch       BIGINT      NOT NULL CHECK (epoch >= 1),
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE FUNCTION leadership_refuse_lower_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch < OLD.epoch THEN
        RAISE EXCEPTION 'leadership epochs only grow: % after %', NEW.epoch, OLD.epoch
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER leadership_refuse_lower_epoch BEFORE UPDATE ON leadership
    FOR EACH ROW EXECUTE FUNCTION leadership_refuse_lower_epoch();
-- Removing the row would restart the epochs at 1.
CREATE FUNCTION leadership_refuse_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the leadership lease is never removed: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER leadership_refuse_delete BEFORE DELETE ON leadership
    FOR EACH STATEMENT EXECUTE FUNCTION leadership_refuse_removal();
CREATE TRIGGER leadership_refuse_truncate BEFORE TRUNCATE ON leadership
    FOR EACH STATEMENT EXECUTE FUNCTION leadership_refuse_removal();

REVOKE ALL ON leadership FROM PUBLIC;
