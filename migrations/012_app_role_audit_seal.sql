-- The audit trail's own seal, and verification durations in whole milliseconds. (The
-- server's role and its grants are not here: `tandem migrate` gives them after every
-- migration, migrations/grants.go.)
--
-- audit_seal chains the audit trail's lines like ledger_seal chains entries (ledger/seal.go
-- owns both): hash = SHA-256(prev_hash || canonical encoding of the line), in the order the
-- sealer took them (n), so `tandem verify` names an audit line rewritten or deleted after it
-- was sealed, by whoever could bypass the triggers. Lines are sealed in id order once every
-- transaction that could still commit a lower id has ended, so a line that is not sealed
-- although a later one is was slipped in afterwards.

-- A line takes its number (id) after its transaction has an id: the sealer waits for the
-- transactions in flight once it has read the highest number handed out (as the ledger's
-- settle does), which then covers every line numbered up to it. A statement-level trigger
-- fires before the statement draws any number.
CREATE FUNCTION audit_log_xact_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN NULL;
END $$;

CREATE TRIGGER audit_log_xact_first BEFORE INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_xact_first();

CREATE TABLE audit_seal (
    n         bigint PRIMARY KEY,       -- position in the chain: 1, 2, …
    -- The sealed line. Not a foreign key: the link must outlive a line deleted under it.
    audit_id  bigint NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT audit_seal_audit_id_key UNIQUE (audit_id),
    CONSTRAINT audit_seal_hash_size CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32),
    CONSTRAINT audit_seal_n CHECK (n > 0)
);

-- The chain only grows at its head, link after link, each naming the one before it (32 zero
-- bytes before the first).
CREATE FUNCTION audit_seal_extends() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad bigint;
BEGIN
    IF (SELECT count(*) FROM audit_seal WHERE n >= (SELECT min(n) FROM new_links))
       <> (SELECT count(*) FROM new_links)
       OR (SELECT max(n) - min(n) + 1 FROM new_links) <> (SELECT count(*) FROM new_links)
       OR (SELECT min(n) FROM new_links) <> 1 + coalesce((SELECT max(s.n) FROM audit_seal s
                                                           WHERE s.n < (SELECT min(n) FROM new_links)), 0) THEN
        RAISE EXCEPTION 'audit seal links may only be added after the head of the chain, one after another'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'audit_seal_chain';
    END IF;
    SELECT l.n INTO bad FROM new_links l
      LEFT JOIN audit_seal p ON p.n = l.n - 1
     WHERE l.prev_hash IS DISTINCT FROM coalesce(p.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit seal link %: its previous hash is not the link before it', bad
            USING ERRCODE = 'check_violation', CONSTRAINT = 'audit_seal_chain';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_seal_extends AFTER INSERT ON audit_seal
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seal_extends();
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON audit_seal
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- A verification's duration in whole milliseconds (seconds was a float). Rows recorded before
-- keep their seconds and read as round(seconds * 1000); new rows must give duration_ms and
-- leave seconds empty. audit_lines counts the audit lines the verification recomputed.
ALTER TABLE ledger_seal_verifications
    ALTER COLUMN seconds DROP NOT NULL,
    ADD COLUMN duration_ms bigint,
    ADD COLUMN audit_lines bigint,
    ADD CONSTRAINT ledger_seal_verifications_duration
        CHECK (duration_ms IS NOT NULL AND duration_ms >= 0 AND seconds IS NULL
               AND audit_lines IS NOT NULL AND audit_lines >= 0) NOT VALID;
