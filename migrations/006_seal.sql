-- The seal (DESIGN.md §3): a hash chain over the ledger's entries in sequence order, owned by
-- ledger/seal.go.
--
-- Each sealed entry keeps its own link, hash = SHA-256(prev_hash || canonical encoding of the
-- entry and its postings), so `tandem verify` can recompute every link and name the first
-- entry whose stored rows no longer hash to what was sealed, and notice a sealed entry that
-- disappeared (its link stays behind). Checkpoints record the head of the chain each time the
-- sealer commits, for auditors to copy elsewhere. Like the entries they cover, links and
-- checkpoints are append-only.

CREATE TABLE ledger_seal (
    -- The sealed entry's sequence number and id. Not a foreign key: a link must outlive the
    -- entry it sealed, or deleting an entry would silently delete the evidence too.
    seq       bigint PRIMARY KEY,
    entry_id  uuid NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT ledger_seal_hash_size CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32),
    CONSTRAINT ledger_seal_seq CHECK (seq > 0)
);

-- The chain only grows at its head, each new link naming the link before it (32 zero bytes
-- before the first): two sealers racing can never fork it or slip a link in below the head,
-- whatever the Go code does. Set-based and by primary key, so sealing a batch of thousands
-- costs one statement's check; unique indexes on the random hashes and entry ids cost
-- several times the insert itself (make bench, (l)).
CREATE FUNCTION ledger_seal_extends() RETURNS trigger LANGUAGE plpgsql
    SET jit = off SET enable_seqscan = off AS $$
DECLARE
    bad bigint;
BEGIN
    -- Every link numbered from the statement's lowest up is one of the statement's.
    IF (SELECT count(*) FROM ledger_seal WHERE seq >= (SELECT min(seq) FROM new_links))
       <> (SELECT count(*) FROM new_links) THEN
        RAISE EXCEPTION 'seal links may only be added after the head of the chain'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_seal_chain';
    END IF;
    SELECT n.seq INTO bad FROM new_links n
      LEFT JOIN LATERAL (SELECT s.hash FROM ledger_seal s WHERE s.seq < n.seq ORDER BY s.seq DESC LIMIT 1) p ON true
     WHERE n.prev_hash IS DISTINCT FROM coalesce(p.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'seal link %: its previous hash is not the link before it', bad
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_seal_chain';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_seal_extends AFTER INSERT ON ledger_seal
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_seal_extends();

CREATE TABLE ledger_seal_checkpoints (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq       bigint NOT NULL,   -- the last entry sealed when the checkpoint was taken
    entry_id  uuid NOT NULL,
    hash      bytea NOT NULL,    -- the chain's head: that entry's link
    entries   bigint NOT NULL,   -- entries sealed up to and including seq
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT ledger_seal_checkpoints_seq_key UNIQUE (seq),
    CONSTRAINT ledger_seal_checkpoints_hash_size CHECK (octet_length(hash) = 32),
    CONSTRAINT ledger_seal_checkpoints_entries CHECK (entries > 0)
);

-- What each verification of the database found, newest last: the auditor's page shows the
-- latest, and the history shows when the ledger was last known sound.
CREATE TABLE ledger_seal_verifications (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor         text NOT NULL,
    ok            boolean NOT NULL,
    entries       bigint NOT NULL,   -- sealed entries recomputed
    head_seq      bigint NOT NULL,   -- the last sealed entry checked
    problems      bigint NOT NULL,
    first_problem text NOT NULL DEFAULT '',
    seconds       double precision NOT NULL,
    CONSTRAINT ledger_seal_verifications_actor CHECK (length(actor) BETWEEN 1 AND 300),
    CONSTRAINT ledger_seal_verifications_ok CHECK (ok = (problems = 0))
);

CREATE TRIGGER ledger_seal_append_only BEFORE UPDATE OR DELETE ON ledger_seal
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_seal_no_truncate BEFORE TRUNCATE ON ledger_seal
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_seal_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_seal_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_seal_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_seal_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_seal_verifications_append_only BEFORE UPDATE OR DELETE ON ledger_seal_verifications
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_seal_verifications_no_truncate BEFORE TRUNCATE ON ledger_seal_verifications
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
