-- Disbursements (DESIGN.md §7), owned by the payouts package. This migration holds what the
-- network needs to hand an award over: the disbursement, its state and every transition with
-- who, when and why. Paying it (submission, providers, webhooks) comes with the payouts issue.

CREATE TABLE payouts_disbursements (
    id           uuid PRIMARY KEY,
    program_id   text NOT NULL REFERENCES network_programs (id),
    person_id    text NOT NULL REFERENCES network_people (id),
    amount       numeric NOT NULL,
    currency     text NOT NULL REFERENCES ledger_currencies (code),
    source       text NOT NULL,
    award_id     uuid UNIQUE REFERENCES network_awards (id),
    state        text NOT NULL,
    requested_by text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_disbursements_amount CHECK (amount > 0),
    CONSTRAINT payouts_disbursements_source CHECK ((source = 'award') = (award_id IS NOT NULL) AND source IN ('award', 'manual')),
    CONSTRAINT payouts_disbursements_state CHECK (state IN ('awaiting_approval', 'approved', 'submitted', 'paid',
        'rejected', 'canceled', 'insufficient_funds', 'failed'))
);
CREATE INDEX payouts_disbursements_state ON payouts_disbursements (state, created_at);
CREATE INDEX payouts_disbursements_person ON payouts_disbursements (person_id, created_at);

-- Every state a disbursement takes, the first included, with who, when and why.
CREATE TABLE payouts_transitions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Deferred: the first transition is written before the disbursement it creates.
    disbursement_id uuid NOT NULL REFERENCES payouts_disbursements (id) DEFERRABLE INITIALLY DEFERRED,
    from_state      text,
    to_state        text NOT NULL,
    actor           text NOT NULL,
    reason          text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_transitions_actor CHECK (actor <> ''),
    CONSTRAINT payouts_transitions_reason CHECK (reason <> '')
);
CREATE INDEX payouts_transitions_disbursement ON payouts_transitions (disbursement_id, id);

CREATE FUNCTION payouts_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
END $$;
CREATE TRIGGER payouts_transitions_append_only BEFORE UPDATE OR DELETE ON payouts_transitions
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- The legal moves of DESIGN.md §7. A disbursement is born in one of the first three states.
CREATE TABLE payouts_legal_transitions (
    from_state text,
    to_state   text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (from_state, to_state)
);
INSERT INTO payouts_legal_transitions (from_state, to_state) VALUES
    (NULL, 'awaiting_approval'), (NULL, 'approved'), (NULL, 'insufficient_funds'),
    ('insufficient_funds', 'awaiting_approval'), ('insufficient_funds', 'approved'),
    ('awaiting_approval', 'approved'), ('awaiting_approval', 'rejected'), ('awaiting_approval', 'canceled'),
    ('approved', 'submitted'), ('approved', 'canceled'),
    ('submitted', 'paid'), ('submitted', 'failed'),
    ('failed', 'approved'), ('failed', 'canceled');
CREATE TRIGGER payouts_legal_transitions_append_only BEFORE UPDATE OR DELETE ON payouts_legal_transitions
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- A disbursement's state changes only along a legal move, and only together with its
-- transition row (inserted first, in the same transaction); nothing else about it changes.
CREATE FUNCTION payouts_disbursements_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last payouts_transitions;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'disbursements are not deleted' USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.program_id, NEW.person_id, NEW.amount, NEW.currency, NEW.source, NEW.award_id,
        NEW.requested_by, NEW.created_at) IS DISTINCT FROM (OLD.id, OLD.program_id, OLD.person_id, OLD.amount,
        OLD.currency, OLD.source, OLD.award_id, OLD.requested_by, OLD.created_at) THEN
        RAISE EXCEPTION 'disbursement %: only the state changes', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    -- An award's disbursement is the award: same person, program, amount and currency, and it
    -- moves toward payment only once the award is in the wallet.
    IF NEW.award_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM network_awards a WHERE a.id = NEW.award_id
        AND a.participant_id = NEW.person_id AND a.program_id = NEW.program_id AND a.amount = NEW.amount
        AND a.currency = NEW.currency AND (a.status = 'posted' OR NEW.state IN ('insufficient_funds', 'canceled', 'rejected'))) THEN
        RAISE EXCEPTION 'disbursement %: does not match award % or the award is not paid into the wallet yet', NEW.id, NEW.award_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_award';
    END IF;
    SELECT * INTO last FROM payouts_transitions WHERE disbursement_id = NEW.id ORDER BY id DESC LIMIT 1;
    IF last.id IS NULL OR last.to_state <> NEW.state
       OR last.from_state IS DISTINCT FROM (CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END)
       OR NOT EXISTS (SELECT 1 FROM payouts_legal_transitions t
                      WHERE t.from_state IS NOT DISTINCT FROM last.from_state AND t.to_state = last.to_state) THEN
        RAISE EXCEPTION 'disbursement %: % → % is not a legal transition, or has no transition row',
            NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_transition';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_disbursements_guard BEFORE INSERT OR UPDATE OR DELETE ON payouts_disbursements
    FOR EACH ROW EXECUTE FUNCTION payouts_disbursements_guard();
