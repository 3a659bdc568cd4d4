-- The network (DESIGN.md §5) and milestone rules and awards (§6).
--
-- Facts are append-only: a wrong fact is corrected by a new one (a conversation is retracted
-- or its verification withdrawn by a review row, a connection is ended or retracted by an end
-- row), never edited or deleted. The few columns that do change (a person's current band, a
-- participant's coach, an award waiting for funds) are guarded by triggers, and each change
-- has its line in the audit trail, written in the same transaction.
--
-- No data beyond enrolment is recorded about a person without their consent on file (a
-- guardian's for a minor): the triggers below refuse connections, conversations, ratings and
-- bands otherwise, so no code path can forget to ask.

CREATE FUNCTION network_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'network_append_only';
END $$;

CREATE TABLE network_programs (
    id                 text PRIMARY KEY,
    name               text NOT NULL,
    currency           text NOT NULL REFERENCES ledger_currencies (code),
    starts_on          date NOT NULL,
    ends_on            date NOT NULL,
    fund_account       text NOT NULL UNIQUE,
    -- Awards up to this amount are approved without an admin (DESIGN.md §7).
    auto_approve_limit numeric NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by         text NOT NULL,
    CONSTRAINT network_programs_id CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    CONSTRAINT network_programs_name CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT network_programs_dates CHECK (ends_on >= starts_on),
    CONSTRAINT network_programs_fund CHECK (fund_account = 'program/' || id || '/fund'),
    CONSTRAINT network_programs_limit CHECK (auto_approve_limit >= 0)
);
CREATE TRIGGER network_programs_append_only BEFORE UPDATE OR DELETE ON network_programs
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

CREATE TABLE network_people (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    interests   text[] NOT NULL DEFAULT '{}',
    -- Socio-economic band, sensitive: admins and auditors only. History in network_bands.
    band        text,
    birth_date  date,
    -- Coaches: a W-9 on file (stipends need it, issue 5).
    tax_form    boolean NOT NULL DEFAULT false,
    -- Evaluation generation: the milestone job protocol (network/facts.go). Bumped by every
    -- evaluation before it reads the facts; read FOR SHARE by every fact.
    eval_gen    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by  text NOT NULL,
    CONSTRAINT network_people_id CHECK (id ~ '^[A-Za-z0-9_.:-]{1,100}$' AND id !~ '^\.+$'),
    CONSTRAINT network_people_name CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT network_people_band CHECK (band IN ('low', 'high')),
    CONSTRAINT network_people_interests CHECK (cardinality(interests) <= 50)
);

-- A person's roles, each with the moment it began: a participant who later also coaches has
-- two rows (near-peer conversion, DESIGN.md §5).
CREATE TABLE network_roles (
    person_id  text NOT NULL REFERENCES network_people (id),
    role       text NOT NULL,
    since      timestamptz NOT NULL DEFAULT clock_timestamp(),
    granted_by text NOT NULL,
    PRIMARY KEY (person_id, role),
    CONSTRAINT network_roles_role CHECK (role IN ('participant', 'coach', 'mentor', 'professional', 'peer'))
);
CREATE TRIGGER network_roles_append_only BEFORE UPDATE OR DELETE ON network_roles
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

-- Consent, latest row wins: given (true) or withdrawn (false). A minor's is a guardian's.
CREATE TABLE network_consents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   text NOT NULL REFERENCES network_people (id),
    given       boolean NOT NULL,
    signed_by   text NOT NULL,
    guardian    boolean NOT NULL,
    signed_on   date NOT NULL,
    scope       text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by text NOT NULL,
    CONSTRAINT network_consents_signed_by CHECK (length(signed_by) BETWEEN 1 AND 200),
    CONSTRAINT network_consents_scope CHECK (length(scope) BETWEEN 1 AND 2000)
);
CREATE INDEX network_consents_person ON network_consents (person_id, id DESC);
CREATE TRIGGER network_consents_append_only BEFORE UPDATE OR DELETE ON network_consents
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

CREATE FUNCTION network_consents_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    born date;
BEGIN
    SELECT birth_date INTO born FROM network_people WHERE id = NEW.person_id;
    IF NEW.given AND NOT NEW.guardian AND born IS NOT NULL AND NEW.signed_on < born + interval '18 years' THEN
        RAISE EXCEPTION 'person %: a minor''s consent must be signed by a guardian', NEW.person_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_consent_minor';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_consents_check BEFORE INSERT ON network_consents
    FOR EACH ROW EXECUTE FUNCTION network_consents_check();

-- network_has_consent reports whether the person's latest consent row gives consent.
CREATE FUNCTION network_has_consent(p text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT given FROM network_consents WHERE person_id = p ORDER BY id DESC LIMIT 1), false)
$$;

CREATE FUNCTION network_require_consent(p text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p IS NOT NULL AND NOT network_has_consent(p) THEN
        RAISE EXCEPTION 'person %: no consent on file, so nothing beyond enrolment may be recorded', p
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_consent_required';
    END IF;
END $$;

-- Band history: every change of network_people.band has its row here, with who and why.
CREATE TABLE network_bands (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id  text NOT NULL REFERENCES network_people (id),
    band       text,
    -- The transaction's time: network_people_guard matches a band change to this row by it.
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    CONSTRAINT network_bands_band CHECK (band IN ('low', 'high'))
);
CREATE INDEX network_bands_person ON network_bands (person_id, id);
CREATE TRIGGER network_bands_append_only BEFORE UPDATE OR DELETE ON network_bands
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

-- A person changes only in their band (with its history row, and consent), interests and
-- evaluation generation; who they are and when they were recorded does not.
CREATE FUNCTION network_people_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'network_people: people are not deleted' USING ERRCODE = 'restrict_violation', CONSTRAINT = 'network_append_only';
    END IF;
    IF (NEW.id, NEW.created_at, NEW.created_by, NEW.birth_date) IS DISTINCT FROM (OLD.id, OLD.created_at, OLD.created_by, OLD.birth_date)
       OR NEW.eval_gen < OLD.eval_gen OR (OLD.tax_form AND NOT NEW.tax_form) THEN
        RAISE EXCEPTION 'person %: only band, name, interests and tax form may change', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'network_append_only';
    END IF;
    IF NEW.band IS DISTINCT FROM OLD.band THEN
        PERFORM network_require_consent(NEW.id);
        IF NOT EXISTS (SELECT 1 FROM network_bands b WHERE b.person_id = NEW.id
                       AND b.id = (SELECT max(id) FROM network_bands WHERE person_id = NEW.id)
                       AND b.band IS NOT DISTINCT FROM NEW.band AND b.changed_at = now()) THEN
            RAISE EXCEPTION 'person %: a band change needs its history row in the same transaction', OLD.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'network_band_history';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_people_guard BEFORE UPDATE OR DELETE ON network_people
    FOR EACH ROW EXECUTE FUNCTION network_people_guard();

CREATE FUNCTION network_people_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.band IS NOT NULL OR NEW.eval_gen <> 0 THEN
        RAISE EXCEPTION 'person %: a band is recorded after consent, through a band change', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_consent_required';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_people_insert BEFORE INSERT ON network_people
    FOR EACH ROW EXECUTE FUNCTION network_people_insert();

-- A participant in a program, with the coach assigned to them. The coach may change (audited).
CREATE TABLE network_enrolments (
    program_id  text NOT NULL REFERENCES network_programs (id),
    person_id   text NOT NULL REFERENCES network_people (id),
    coach_id    text REFERENCES network_people (id),
    enrolled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    enrolled_by text NOT NULL,
    PRIMARY KEY (program_id, person_id),
    CONSTRAINT network_enrolments_coach CHECK (coach_id IS DISTINCT FROM person_id)
);
CREATE INDEX network_enrolments_person ON network_enrolments (person_id);
CREATE INDEX network_enrolments_coach ON network_enrolments (coach_id);

CREATE FUNCTION network_enrolments_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.program_id, NEW.person_id, NEW.enrolled_at, NEW.enrolled_by)
       IS DISTINCT FROM (OLD.program_id, OLD.person_id, OLD.enrolled_at, OLD.enrolled_by) THEN
        RAISE EXCEPTION 'enrolment of %: only the coach may change', OLD.person_id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'network_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_enrolments_guard BEFORE UPDATE OR DELETE ON network_enrolments
    FOR EACH ROW EXECUTE FUNCTION network_enrolments_guard();

CREATE TABLE network_connections (
    id             uuid PRIMARY KEY,
    participant_id text NOT NULL REFERENCES network_people (id),
    other_id       text NOT NULL REFERENCES network_people (id),
    role           text NOT NULL,
    origin         text NOT NULL,
    started_on     date NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by     text NOT NULL,
    CONSTRAINT network_connections_role CHECK (role IN ('mentor', 'near_peer_coach', 'peer', 'professional')),
    CONSTRAINT network_connections_origin CHECK (origin IN ('matched', 'self_reported')),
    CONSTRAINT network_connections_self CHECK (participant_id <> other_id),
    CONSTRAINT network_connections_unique UNIQUE (participant_id, other_id, role)
);
CREATE INDEX network_connections_other ON network_connections (other_id);
CREATE TRIGGER network_connections_append_only BEFORE UPDATE OR DELETE ON network_connections
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

CREATE FUNCTION network_connections_consent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM network_require_consent(NEW.participant_id);
    PERFORM network_require_consent(NEW.other_id);
    IF NOT EXISTS (SELECT 1 FROM network_enrolments WHERE person_id = NEW.participant_id) THEN
        RAISE EXCEPTION 'person %: a connection belongs to an enrolled participant', NEW.participant_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_connection_participant';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_connections_consent BEFORE INSERT ON network_connections
    FOR EACH ROW EXECUTE FUNCTION network_connections_consent();

-- A connection ends once: it ended (it was real until ended_on) or it is retracted (it was
-- recorded in error and counts for nothing).
CREATE TABLE network_connection_ends (
    connection_id uuid PRIMARY KEY REFERENCES network_connections (id),
    ended_on      date NOT NULL,
    retracted     boolean NOT NULL,
    reason        text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by   text NOT NULL,
    CONSTRAINT network_connection_ends_reason CHECK (length(reason) BETWEEN 1 AND 500)
);
CREATE TRIGGER network_connection_ends_append_only BEFORE UPDATE OR DELETE ON network_connection_ends
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

-- A connection ends on or after its start and not in the future: EC would change on that
-- date with no fact to evaluate it.
CREATE FUNCTION network_connection_ends_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ended_on > (now() AT TIME ZONE 'UTC')::date
       OR NEW.ended_on < (SELECT started_on FROM network_connections WHERE id = NEW.connection_id) THEN
        RAISE EXCEPTION 'connection %: it cannot end on % (before it started, or in the future)', NEW.connection_id, NEW.ended_on
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_connection_end_date';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_connection_ends_check BEFORE INSERT ON network_connection_ends
    FOR EACH ROW EXECUTE FUNCTION network_connection_ends_check();

-- Monthly relationship ratings (1–10) from either side (after iMentor's pair rating).
CREATE TABLE network_ratings (
    connection_id uuid NOT NULL REFERENCES network_connections (id),
    rater_id      text NOT NULL REFERENCES network_people (id),
    month         date NOT NULL,
    score         smallint NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by   text NOT NULL,
    PRIMARY KEY (connection_id, rater_id, month),
    CONSTRAINT network_ratings_month CHECK (extract(day FROM month) = 1),
    CONSTRAINT network_ratings_score CHECK (score BETWEEN 1 AND 10)
);
CREATE TRIGGER network_ratings_append_only BEFORE UPDATE OR DELETE ON network_ratings
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

CREATE FUNCTION network_ratings_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM network_require_consent(NEW.rater_id);
    PERFORM network_require_consent((SELECT participant_id FROM network_connections WHERE id = NEW.connection_id));
    IF EXISTS (SELECT 1 FROM network_connection_ends WHERE connection_id = NEW.connection_id AND retracted) THEN
        RAISE EXCEPTION 'connection % was retracted', NEW.connection_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_connection_retracted';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM network_connections c WHERE c.id = NEW.connection_id
                   AND NEW.rater_id IN (c.participant_id, c.other_id)) THEN
        RAISE EXCEPTION 'rating of connection %: % is not on either side', NEW.connection_id, NEW.rater_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_rating_side';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_ratings_check BEFORE INSERT ON network_ratings
    FOR EACH ROW EXECUTE FUNCTION network_ratings_check();

CREATE TABLE network_conversations (
    id              uuid PRIMARY KEY,
    connection_id   uuid NOT NULL REFERENCES network_connections (id),
    occurred_at     timestamptz NOT NULL,
    channel         text NOT NULL,
    minutes         integer NOT NULL,
    resources       text[] NOT NULL DEFAULT '{}',
    note            text NOT NULL DEFAULT '',
    reported_by     text NOT NULL,        -- the actor: person:<id>, or a token/CLI name
    idempotency_key text UNIQUE,
    request_hash    bytea,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT network_conversations_channel CHECK (channel IN ('in_person', 'video', 'phone', 'message')),
    CONSTRAINT network_conversations_minutes CHECK (minutes BETWEEN 1 AND 1440),
    CONSTRAINT network_conversations_resources CHECK (resources <@ ARRAY['information', 'advice', 'introduction',
        'referral', 'job_offer', 'internship', 'scholarship_lead']::text[]),
    CONSTRAINT network_conversations_note CHECK (length(note) <= 2000),
    CONSTRAINT network_conversations_not_future CHECK (occurred_at <= recorded_at + interval '5 minutes')
);
CREATE INDEX network_conversations_connection ON network_conversations (connection_id, occurred_at);
CREATE TRIGGER network_conversations_append_only BEFORE UPDATE OR DELETE ON network_conversations
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

CREATE FUNCTION network_conversations_consent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c network_connections;
BEGIN
    SELECT * INTO c FROM network_connections WHERE id = NEW.connection_id;
    PERFORM network_require_consent(c.participant_id);
    PERFORM network_require_consent(c.other_id);
    IF EXISTS (SELECT 1 FROM network_connection_ends WHERE connection_id = NEW.connection_id AND retracted) THEN
        RAISE EXCEPTION 'connection % was retracted', NEW.connection_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_connection_retracted';
    END IF;
    -- A conversation happens while its connection exists (dates in UTC).
    IF (NEW.occurred_at AT TIME ZONE 'UTC')::date < c.started_on
       OR EXISTS (SELECT 1 FROM network_connection_ends WHERE connection_id = NEW.connection_id
                  AND ended_on < (NEW.occurred_at AT TIME ZONE 'UTC')::date) THEN
        RAISE EXCEPTION 'conversation at %: outside connection %''s dates', NEW.occurred_at, NEW.connection_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_conversation_dates';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_conversations_consent BEFORE INSERT ON network_conversations
    FOR EACH ROW EXECUTE FUNCTION network_conversations_consent();

-- Reviews of a conversation, latest wins for verification: verify, unverify (a verification
-- withdrawn); retract (reported in error) is final.
CREATE TABLE network_reviews (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES network_conversations (id),
    action          text NOT NULL,
    reviewed_by     text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    reviewed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT network_reviews_action CHECK (action IN ('verify', 'unverify', 'retract')),
    CONSTRAINT network_reviews_reason CHECK (length(reason) <= 500)
);
CREATE INDEX network_reviews_conversation ON network_reviews (conversation_id, id DESC);
CREATE TRIGGER network_reviews_append_only BEFORE UPDATE OR DELETE ON network_reviews
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

CREATE FUNCTION network_reviews_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Verifying records more about the participant; withdrawing or retracting corrects.
    IF NEW.action = 'verify' THEN
        PERFORM network_require_consent((SELECT c.participant_id FROM network_conversations v
            JOIN network_connections c ON c.id = v.connection_id WHERE v.id = NEW.conversation_id));
    END IF;
    IF EXISTS (SELECT 1 FROM network_reviews WHERE conversation_id = NEW.conversation_id AND action = 'retract') THEN
        RAISE EXCEPTION 'conversation % was retracted', NEW.conversation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_conversation_retracted';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_reviews_check BEFORE INSERT ON network_reviews
    FOR EACH ROW EXECUTE FUNCTION network_reviews_check();

-- Rules, versioned: saving a changed rule adds a version; the latest version is in force
-- unless it is inactive (retired).
CREATE TABLE network_rules (
    program_id text NOT NULL REFERENCES network_programs (id),
    rule_id    text NOT NULL,
    version    integer NOT NULL,
    definition jsonb NOT NULL,
    active     boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by text NOT NULL,
    PRIMARY KEY (program_id, rule_id, version),
    CONSTRAINT network_rules_id CHECK (rule_id ~ '^[a-z0-9][a-z0-9-]{0,63}$' AND definition->>'id' = rule_id),
    CONSTRAINT network_rules_version CHECK (version >= 1)
);
CREATE TRIGGER network_rules_append_only BEFORE UPDATE OR DELETE ON network_rules
    FOR EACH ROW EXECUTE FUNCTION network_refuse_change();

-- An award: a rule reached for a period. award_key is (program, participant, rule, period)
-- and is the idempotency key of the ledger entry that pays it, so an award is paid at most
-- once however many evaluations find it. An award the fund cannot cover waits as
-- insufficient_funds and becomes posted when it is paid; nothing else changes.
CREATE TABLE network_awards (
    id             uuid PRIMARY KEY,
    award_key      text NOT NULL UNIQUE,
    program_id     text NOT NULL REFERENCES network_programs (id),
    participant_id text NOT NULL REFERENCES network_people (id),
    rule_id        text NOT NULL,
    rule_version   integer NOT NULL,
    period         text NOT NULL,
    amount         numeric NOT NULL,
    currency       text NOT NULL REFERENCES ledger_currencies (code),
    kind           text NOT NULL,
    status         text NOT NULL,
    entry_id       uuid REFERENCES ledger_entries (id),
    evidence       jsonb NOT NULL,
    reached_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    posted_at      timestamptz,
    FOREIGN KEY (program_id, rule_id, rule_version) REFERENCES network_rules (program_id, rule_id, version),
    CONSTRAINT network_awards_key CHECK (award_key = 'award:' || program_id || ':' || participant_id || ':' || rule_id || ':' || period),
    CONSTRAINT network_awards_amount CHECK (amount > 0),
    CONSTRAINT network_awards_status CHECK (status IN ('posted', 'insufficient_funds')),
    CONSTRAINT network_awards_entry CHECK ((status = 'posted') = (entry_id IS NOT NULL AND posted_at IS NOT NULL))
);
CREATE INDEX network_awards_participant ON network_awards (participant_id, created_at);
CREATE INDEX network_awards_waiting ON network_awards (program_id, created_at) WHERE status = 'insufficient_funds';

CREATE FUNCTION network_awards_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status <> 'insufficient_funds' OR NEW.status <> 'posted'
       OR (NEW.id, NEW.award_key, NEW.program_id, NEW.participant_id, NEW.rule_id, NEW.rule_version, NEW.period,
           NEW.amount, NEW.currency, NEW.kind, NEW.evidence, NEW.reached_at, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.award_key, OLD.program_id, OLD.participant_id, OLD.rule_id, OLD.rule_version, OLD.period,
           OLD.amount, OLD.currency, OLD.kind, OLD.evidence, OLD.reached_at, OLD.created_at) THEN
        RAISE EXCEPTION 'award %: only an award waiting for funds changes, and only to posted', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'network_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_awards_guard BEFORE UPDATE OR DELETE ON network_awards
    FOR EACH ROW EXECUTE FUNCTION network_awards_guard();

-- No award made or paid without consent; a posted award's entry must be the one keyed by its award key, moving exactly its amount
-- from the program's fund to the participant's wallet.
CREATE FUNCTION network_awards_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status = 'posted' THEN
        PERFORM network_require_consent(NEW.participant_id);
    END IF;
    IF NEW.status = 'posted' AND NOT EXISTS (
        SELECT 1 FROM ledger_entries e
        JOIN network_programs p ON p.id = NEW.program_id
        WHERE e.id = NEW.entry_id AND e.idempotency_key = NEW.award_key
          AND EXISTS (SELECT 1 FROM ledger_postings lp JOIN ledger_accounts a ON a.id = lp.account_id
                      WHERE lp.entry_id = e.id AND a.code = p.fund_account AND lp.side = 'debit' AND lp.amount = NEW.amount)
          AND EXISTS (SELECT 1 FROM ledger_postings lp JOIN ledger_accounts a ON a.id = lp.account_id
                      WHERE lp.entry_id = e.id AND a.code = 'participant/' || NEW.participant_id || '/wallet'
                        AND lp.side = 'credit' AND lp.amount = NEW.amount)) THEN
        RAISE EXCEPTION 'award %: entry % does not pay it', NEW.award_key, NEW.entry_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'network_award_entry';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER network_awards_entry BEFORE INSERT OR UPDATE ON network_awards
    FOR EACH ROW EXECUTE FUNCTION network_awards_entry();
