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

-- A fold counts one repeat (repeats + 1) at a time no earlier than the last, within the
-- fold's minute: the minute of the line's at, which access.Record takes from the same reading
-- of the database's clock (clock_timestamp(), UTC) as fold_key's minute. last_at must fall in
-- that minute and not in the future, and the update itself must come before the minute ends,
-- give or take 30 seconds (a repeat's insert may wait on the first line's transaction before
-- it counts). So the server's role can neither inflate a count nor bump a line later on.
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    minute timestamp := date_trunc('minute', OLD.at AT TIME ZONE 'UTC');
BEGIN
    IF OLD.outcome <> 'denied' OR OLD.fold_key IS NULL OR NEW.repeats <> OLD.repeats + 1
       OR NEW.last_at IS NULL OR NEW.last_at < coalesce(OLD.last_at, OLD.at)
       OR NEW.last_at > clock_timestamp()
       OR date_trunc('minute', NEW.last_at AT TIME ZONE 'UTC') <> minute
       OR clock_timestamp() AT TIME ZONE 'UTC' >= minute + interval '1 minute 30 seconds'
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
-- this, with the clock reading that named the minute). It runs with the caller's rights: the
-- server's role may update these two columns of audit_log alone (migrations/grants.go), and
-- audit_log_guard lets them only count one repeat within the minute.
CREATE FUNCTION audit_log_fold(key text, seen timestamptz) RETURNS void
    LANGUAGE sql AS $$
    UPDATE audit_log SET repeats = repeats + 1, last_at = greatest(seen, coalesce(last_at, at))
     WHERE fold_key = key AND outcome = 'denied';
$$;

DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_guard BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION access_refuse_change();

-- A code segment of dots alone ("participant/../admin/wallet") is resolved away by URLs, so
-- the account could not be named over HTTP; ledger.ValidateCode refuses it too. Checked on
-- INSERT alone (a trigger, not a CHECK, which every UPDATE of a row would test): accounts
-- opened before keep being posted to and closed, new ones are refused.
CREATE FUNCTION ledger_accounts_code_segments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.code ~ '(^|/)\.+(/|$)' THEN
        RAISE EXCEPTION 'account code %: a segment of dots alone cannot be named in a URL', NEW.code
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_accounts_code_segments';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_accounts_code_segments BEFORE INSERT ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_code_segments();
