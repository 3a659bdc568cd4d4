-- The audit trail keeps every refusal without a flood filling it, and account codes stay
-- reachable over HTTP.
--
-- A refused request is recorded on its own line (outcome 'denied'). Repeats of the same
-- refusal — the same token (or actor), action and record within the same minute — fold into
-- the first line's repeats count instead of adding lines: fold_key names that group, and a
-- unique index makes the insert an upsert; last_at is the time of the latest repeat. The
-- trail stays append-only otherwise: the only change a line takes is a denied line's repeats
-- growing, with its last_at.

ALTER TABLE audit_log
    ADD COLUMN repeats integer NOT NULL DEFAULT 1,
    ADD COLUMN last_at timestamptz,
    ADD COLUMN fold_key text,
    ADD CONSTRAINT audit_log_repeats CHECK (repeats >= 1),
    ADD CONSTRAINT audit_log_fold_key CHECK (fold_key IS NULL OR outcome = 'denied');

CREATE UNIQUE INDEX audit_log_fold ON audit_log (fold_key) WHERE fold_key IS NOT NULL;

CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.outcome <> 'denied' OR OLD.fold_key IS NULL OR NEW.repeats <= OLD.repeats
       OR NEW.last_at IS NULL OR NEW.last_at < OLD.at
       OR (NEW.id, NEW.at, NEW.actor, NEW.token_id, NEW.role, NEW.person_id, NEW.action, NEW.record,
           NEW.outcome, NEW.before, NEW.after, NEW.detail, NEW.request_id, NEW.fold_key)
          IS DISTINCT FROM
          (OLD.id, OLD.at, OLD.actor, OLD.token_id, OLD.role, OLD.person_id, OLD.action, OLD.record,
           OLD.outcome, OLD.before, OLD.after, OLD.detail, OLD.request_id, OLD.fold_key) THEN
        RAISE EXCEPTION 'audit_log is append-only: line % may only count a repeated refusal', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'access_append_only';
    END IF;
    RETURN NEW;
END $$;

-- Counting a repeat is the one update of the trail (INSERT ... ON CONFLICT DO NOTHING, then
-- this). It runs with the caller's rights: the server's role may update these two columns of
-- audit_log alone (migrations/grants.go), and audit_log_guard lets them only grow.
CREATE FUNCTION audit_log_fold(key text) RETURNS void
    LANGUAGE sql AS $$
    UPDATE audit_log SET repeats = repeats + 1, last_at = clock_timestamp()
     WHERE fold_key = key AND outcome = 'denied';
$$;

DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_guard BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION access_refuse_change();

-- A code segment of dots alone ("participant/../admin/wallet") is resolved away by URLs, so
-- the account could not be named over HTTP; ledger.ValidateCode refuses it too. NOT VALID:
-- accounts opened before are left as they are, new ones are checked.
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_code_segments
    CHECK (code !~ '(^|/)\.+(/|$)') NOT VALID;
