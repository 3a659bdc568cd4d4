-- Access: bearer tokens, page sessions and the audit trail (DESIGN.md §1).
--
-- Tokens are stored as SHA-256 hashes only: the token itself is shown once, when created.
-- A token can be revoked but not otherwise changed or removed; the audit trail is append-only.

CREATE TABLE access_tokens (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL,
    person_id  text,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by text NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    revoked_by text,
    CONSTRAINT access_tokens_hash_key UNIQUE (hash),
    CONSTRAINT access_tokens_hash_length CHECK (octet_length(hash) = 32),
    CONSTRAINT access_tokens_name CHECK (length(name) BETWEEN 1 AND 200 AND name !~ '^cli:'),
    CONSTRAINT access_tokens_role CHECK (role IN ('admin', 'auditor', 'coach', 'participant')),
    CONSTRAINT access_tokens_person_format CHECK (
        person_id IS NULL OR (person_id ~ '^[A-Za-z0-9_.:-]{1,100}$' AND person_id !~ '^\.+$')),
    -- Participants and coaches act for a person: their ownership rules need one.
    CONSTRAINT access_tokens_person CHECK (role NOT IN ('coach', 'participant') OR person_id IS NOT NULL),
    CONSTRAINT access_tokens_revoked CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

CREATE FUNCTION access_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'access_append_only';
END $$;

-- The only change a token takes is its revocation, once.
CREATE FUNCTION access_tokens_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.name, NEW.role, NEW.person_id, NEW.hash, NEW.created_at, NEW.created_by, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.name, OLD.role, OLD.person_id, OLD.hash, OLD.created_at, OLD.created_by, OLD.expires_at)
       OR OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'token %: only an unrevoked token can change, and only to be revoked', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'access_append_only';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER access_tokens_guard BEFORE UPDATE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION access_tokens_guard();
CREATE TRIGGER access_tokens_no_delete BEFORE DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION access_refuse_change();
CREATE TRIGGER access_tokens_no_truncate BEFORE TRUNCATE ON access_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION access_refuse_change();

-- A page session: a signed-in browser. The cookie holds a random id; only its hash is here.
-- Every state-changing form carries the session's CSRF token.
CREATE TABLE access_sessions (
    hash       bytea PRIMARY KEY,
    token_id   uuid NOT NULL REFERENCES access_tokens (id),
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX access_sessions_token ON access_sessions (token_id);

-- Who did what to which record, before and after, in the same transaction as the change.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,            -- token name, or "cli:<os user>" for the command line
    token_id    uuid REFERENCES access_tokens (id),
    role        text,
    person_id   text,
    action      text NOT NULL,
    record      text NOT NULL DEFAULT '',
    outcome     text NOT NULL,
    before      jsonb,
    after       jsonb,
    detail      text NOT NULL DEFAULT '',
    request_id  text NOT NULL DEFAULT '',
    CONSTRAINT audit_log_actor CHECK (actor <> ''),
    CONSTRAINT audit_log_outcome CHECK (outcome IN ('ok', 'denied')),
    CONSTRAINT audit_log_action CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$')
);
CREATE INDEX audit_log_record ON audit_log (record, id);
CREATE INDEX audit_log_token ON audit_log (token_id, id);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION access_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_refuse_change();
