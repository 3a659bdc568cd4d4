-- Payouts (DESIGN.md §7), owned by the payouts package: program policies, approvals with dual
-- control, attempts at a provider with their pending ledger entries, provider events
-- (webhooks), returns, forfeits, reconciliation, commitments with their instalments and coach
-- stipends. Every table is append-only or changes only along moves the triggers below allow.

-- New states: a paid payout the provider returned, and a failed one forfeited back to the
-- fund after the program's remediation window. New sources: a commitment's instalment and a
-- coach stipend; every source but an award is paid into the wallet by a funding entry.
ALTER TABLE payouts_disbursements DROP CONSTRAINT payouts_disbursements_state;
ALTER TABLE payouts_disbursements ADD CONSTRAINT payouts_disbursements_state CHECK (state IN ('awaiting_approval',
    'approved', 'submitted', 'paid', 'rejected', 'canceled', 'insufficient_funds', 'failed', 'returned', 'forfeited'));
ALTER TABLE payouts_disbursements DROP CONSTRAINT payouts_disbursements_source;
ALTER TABLE payouts_disbursements
    -- The wallet the money leaves from: participant/<id>/wallet or coach/<id>/wallet.
    ADD COLUMN wallet text,
    -- The entry that put the money in the wallet (manual grants, instalments, stipends).
    ADD COLUMN funding_entry_id uuid REFERENCES ledger_entries (id),
    -- Approvals needed, fixed by the policy when the disbursement is made: 0 (within the
    -- auto-approve limit), 1, or 2 (dual control: two different admins).
    ADD COLUMN approvals_needed smallint NOT NULL DEFAULT 1,
    -- When it was first approved: caps count disbursements by this month and year.
    ADD COLUMN approved_at timestamptz,
    ADD COLUMN reason text NOT NULL DEFAULT '';
UPDATE payouts_disbursements SET wallet = 'participant/' || person_id || '/wallet';
ALTER TABLE payouts_disbursements ALTER COLUMN wallet SET NOT NULL;
ALTER TABLE payouts_disbursements ADD CONSTRAINT payouts_disbursements_source CHECK (
    source IN ('award', 'manual', 'commitment', 'stipend')
    AND (source = 'award') = (award_id IS NOT NULL)
    AND (source = 'award') = (funding_entry_id IS NULL));
ALTER TABLE payouts_disbursements ADD CONSTRAINT payouts_disbursements_funding UNIQUE (funding_entry_id);
ALTER TABLE payouts_disbursements ADD CONSTRAINT payouts_disbursements_wallet CHECK (
    wallet = CASE WHEN source = 'stipend' THEN 'coach/' ELSE 'participant/' END || person_id || '/wallet');
ALTER TABLE payouts_disbursements ADD CONSTRAINT payouts_disbursements_approvals CHECK (approvals_needed BETWEEN 0 AND 2);
CREATE INDEX payouts_disbursements_program ON payouts_disbursements (program_id, state);
CREATE INDEX payouts_disbursements_caps ON payouts_disbursements (person_id, approved_at) WHERE approved_at IS NOT NULL;

INSERT INTO payouts_legal_transitions (from_state, to_state) VALUES
    ('insufficient_funds', 'canceled'),
    ('approved', 'failed'),      -- could not be submitted (no payout destination, refused at once)
    ('paid', 'returned'),        -- the provider gave the money back (a reversed transfer)
    ('failed', 'forfeited'),     -- not fixed within the remediation window: back to the fund
    ('returned', 'approved'),    -- returned in full: paid again (e.g. to a new destination)
    ('returned', 'canceled');    -- or given back to the fund

-- Approvals: one row per admin. Nobody approves what they requested.
CREATE TABLE payouts_approvals (
    disbursement_id uuid NOT NULL REFERENCES payouts_disbursements (id),
    approver        text NOT NULL,   -- the admin's subject, person:<id>
    actor           text NOT NULL,   -- the token or command line that carried it
    reason          text NOT NULL DEFAULT '',
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (disbursement_id, approver),
    CONSTRAINT payouts_approvals_person CHECK (approver LIKE 'person:_%')
);
CREATE TRIGGER payouts_approvals_append_only BEFORE UPDATE OR DELETE ON payouts_approvals
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();
CREATE FUNCTION payouts_approvals_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d payouts_disbursements;
BEGIN
    SELECT * INTO d FROM payouts_disbursements WHERE id = NEW.disbursement_id;
    IF d.requested_by = NEW.approver THEN
        RAISE EXCEPTION 'disbursement %: % requested it and may not approve it', d.id, NEW.approver
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_self_approval';
    END IF;
    IF d.state <> 'awaiting_approval' THEN
        RAISE EXCEPTION 'disbursement %: is %, not awaiting approval', d.id, d.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_transition';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_approvals_check BEFORE INSERT ON payouts_approvals
    FOR EACH ROW EXECUTE FUNCTION payouts_approvals_check();

-- The guard of 004, extended: the new columns are fixed except approved_at (set once, when
-- approved); leaving awaiting_approval for approved needs the approvals it was made with
-- (none for one within the auto-approve limit that waited for room under a cap).
CREATE OR REPLACE FUNCTION payouts_disbursements_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last payouts_transitions;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'disbursements are not deleted' USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    IF TG_OP = 'UPDATE' AND ((NEW.id, NEW.program_id, NEW.person_id, NEW.amount, NEW.currency, NEW.source, NEW.award_id,
        NEW.requested_by, NEW.created_at, NEW.wallet, NEW.funding_entry_id, NEW.approvals_needed, NEW.reason) IS DISTINCT FROM
        (OLD.id, OLD.program_id, OLD.person_id, OLD.amount, OLD.currency, OLD.source, OLD.award_id, OLD.requested_by,
        OLD.created_at, OLD.wallet, OLD.funding_entry_id, OLD.approvals_needed, OLD.reason)
        OR (OLD.approved_at IS NOT NULL AND NEW.approved_at IS DISTINCT FROM OLD.approved_at)) THEN
        RAISE EXCEPTION 'disbursement %: only the state changes', OLD.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    IF NEW.state = 'approved' AND NEW.approved_at IS NULL THEN
        RAISE EXCEPTION 'disbursement %: approved without approved_at', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_transition';
    END IF;
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
    IF NEW.state = 'approved' AND (TG_OP = 'INSERT' OR OLD.state IN ('awaiting_approval', 'insufficient_funds'))
       AND (SELECT count(*) FROM payouts_approvals WHERE disbursement_id = NEW.id) < NEW.approvals_needed THEN
        RAISE EXCEPTION 'disbursement %: needs % approvals by different admins', NEW.id, NEW.approvals_needed
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_dual_control';
    END IF;
    RETURN NEW;
END $$;

-- A transition row commits only with the state change it records: at commit, a
-- disbursement's state is its latest transition's.
CREATE FUNCTION payouts_transitions_match() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT state FROM payouts_disbursements WHERE id = NEW.disbursement_id) IS DISTINCT FROM
       (SELECT to_state FROM payouts_transitions WHERE disbursement_id = NEW.disbursement_id ORDER BY id DESC LIMIT 1) THEN
        RAISE EXCEPTION 'disbursement %: a transition row without its state change', NEW.disbursement_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_transition';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER payouts_transitions_match AFTER INSERT ON payouts_transitions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION payouts_transitions_match();

-- Program payout policy; the latest row is in force. Amounts are in the program's currency.
CREATE TABLE payouts_policies (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id             text NOT NULL REFERENCES network_programs (id),
    -- Amounts at or above it need two approvals by different admins.
    dual_control_threshold numeric NOT NULL,
    monthly_cap            numeric,   -- per person, by month of approval; NULL: none
    yearly_cap             numeric,
    remediation_days       integer NOT NULL,
    auto_retries           integer NOT NULL,
    retry_backoff_seconds  integer NOT NULL,
    set_by                 text NOT NULL,
    set_at                 timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_policies_threshold CHECK (dual_control_threshold > 0),
    CONSTRAINT payouts_policies_caps CHECK (monthly_cap > 0 AND yearly_cap > 0 AND monthly_cap <= yearly_cap
        OR monthly_cap IS NULL AND (yearly_cap IS NULL OR yearly_cap > 0)
        OR yearly_cap IS NULL AND monthly_cap > 0),
    CONSTRAINT payouts_policies_remediation CHECK (remediation_days BETWEEN 1 AND 365),
    CONSTRAINT payouts_policies_retries CHECK (auto_retries BETWEEN 0 AND 10),
    CONSTRAINT payouts_policies_backoff CHECK (retry_backoff_seconds BETWEEN 1 AND 604800)
);
CREATE INDEX payouts_policies_program ON payouts_policies (program_id, id DESC);
CREATE TRIGGER payouts_policies_append_only BEFORE UPDATE OR DELETE ON payouts_policies
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- Where a person is paid, per provider (a Stripe connected account acct_…); latest wins.
CREATE TABLE payouts_destinations (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id text NOT NULL REFERENCES network_people (id),
    provider  text NOT NULL,
    account   text NOT NULL,
    set_by    text NOT NULL,
    set_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_destinations_account CHECK (account ~ '^[A-Za-z0-9_:.-]{1,200}$')
);
CREATE INDEX payouts_destinations_person ON payouts_destinations (person_id, provider, id DESC);
CREATE TRIGGER payouts_destinations_append_only BEFORE UPDATE OR DELETE ON payouts_destinations
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- One try at paying a disbursement through a provider. The pending entry (wallet → cash)
-- is made in the transaction that moves the disbursement to submitted, before the provider is
-- called with idempotency_key; the provider's reference and the outcome are written once.
CREATE TABLE payouts_attempts (
    disbursement_id  uuid NOT NULL REFERENCES payouts_disbursements (id),
    attempt          integer NOT NULL,
    provider         text NOT NULL,
    destination      text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    pending_entry_id uuid NOT NULL UNIQUE REFERENCES ledger_entries (id),
    provider_ref     text,
    outcome          text,
    reason           text NOT NULL DEFAULT '',
    -- The commit (paid) or void (failed) of the pending entry.
    resolved_entry_id uuid UNIQUE REFERENCES ledger_entries (id),
    -- Amount the provider gave back after paying (reversed transfers), in total.
    returned         numeric NOT NULL DEFAULT 0,
    submitted_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at          timestamptz,
    settled_at       timestamptz,
    PRIMARY KEY (disbursement_id, attempt),
    CONSTRAINT payouts_attempts_attempt CHECK (attempt >= 1),
    CONSTRAINT payouts_attempts_outcome CHECK (outcome IN ('paid', 'failed')),
    CONSTRAINT payouts_attempts_settled CHECK ((outcome IS NULL) = (resolved_entry_id IS NULL) AND (outcome IS NULL) = (settled_at IS NULL)),
    CONSTRAINT payouts_attempts_returned CHECK (returned >= 0 AND (returned = 0 OR outcome = 'paid'))
);
CREATE UNIQUE INDEX payouts_attempts_ref ON payouts_attempts (provider, provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX payouts_attempts_open ON payouts_attempts (submitted_at) WHERE outcome IS NULL;
CREATE FUNCTION payouts_attempts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'attempts are not deleted' USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    IF (NEW.disbursement_id, NEW.attempt, NEW.provider, NEW.destination, NEW.idempotency_key, NEW.pending_entry_id,
        NEW.submitted_at) IS DISTINCT FROM (OLD.disbursement_id, OLD.attempt, OLD.provider, OLD.destination,
        OLD.idempotency_key, OLD.pending_entry_id, OLD.submitted_at)
       OR (OLD.provider_ref IS NOT NULL AND NEW.provider_ref IS DISTINCT FROM OLD.provider_ref)
       OR (OLD.sent_at IS NOT NULL AND NEW.sent_at IS DISTINCT FROM OLD.sent_at)
       OR (OLD.outcome IS NOT NULL AND (NEW.outcome, NEW.resolved_entry_id, NEW.settled_at, NEW.reason)
           IS DISTINCT FROM (OLD.outcome, OLD.resolved_entry_id, OLD.settled_at, OLD.reason))
       OR NEW.returned < OLD.returned THEN
        RAISE EXCEPTION 'attempt % of disbursement %: a reference, a sending or an outcome is written once; returns only grow',
            OLD.attempt, OLD.disbursement_id USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    -- An outcome is its pending entry's own commit (paid) or void (failed).
    IF OLD.outcome IS NULL AND NEW.outcome IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger_entries e
        WHERE e.id = NEW.resolved_entry_id AND e.target_id = NEW.pending_entry_id
          AND e.kind = CASE NEW.outcome WHEN 'paid' THEN 'commit' ELSE 'void' END) THEN
        RAISE EXCEPTION 'attempt % of disbursement %: outcome % without its pending entry''s %', OLD.attempt, OLD.disbursement_id,
            NEW.outcome, CASE NEW.outcome WHEN 'paid' THEN 'commit' ELSE 'void' END
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_attempt_outcome';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_attempts_guard BEFORE UPDATE OR DELETE ON payouts_attempts
    FOR EACH ROW EXECUTE FUNCTION payouts_attempts_guard();

-- Money a provider gave back after paying: each return is an entry cash → wallet.
CREATE TABLE payouts_returns (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    disbursement_id uuid NOT NULL,
    attempt         integer NOT NULL,
    amount          numeric NOT NULL,
    entry_id        uuid NOT NULL UNIQUE REFERENCES ledger_entries (id),
    event           text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (disbursement_id, attempt) REFERENCES payouts_attempts (disbursement_id, attempt),
    CONSTRAINT payouts_returns_amount CHECK (amount > 0)
);
CREATE TRIGGER payouts_returns_append_only BEFORE UPDATE OR DELETE ON payouts_returns
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- A failed payout forfeited to the fund: the entry wallet → fund.
CREATE TABLE payouts_forfeits (
    disbursement_id uuid PRIMARY KEY REFERENCES payouts_disbursements (id),
    entry_id        uuid NOT NULL UNIQUE REFERENCES ledger_entries (id),
    at              timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER payouts_forfeits_append_only BEFORE UPDATE OR DELETE ON payouts_forfeits
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- Provider events (webhooks), recorded once by (provider, id) together with the job that
-- processes them; processed_at and outcome are written once.
CREATE TABLE payouts_events (
    provider     text NOT NULL,
    event_id     text NOT NULL,
    type         text NOT NULL,
    api_version  text NOT NULL DEFAULT '',
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    processed_at timestamptz,
    outcome      text,
    PRIMARY KEY (provider, event_id)
);
CREATE FUNCTION payouts_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.provider, NEW.event_id, NEW.type, NEW.api_version, NEW.payload, NEW.received_at)
        IS DISTINCT FROM (OLD.provider, OLD.event_id, OLD.type, OLD.api_version, OLD.payload, OLD.received_at)
       OR OLD.processed_at IS NOT NULL THEN
        RAISE EXCEPTION 'provider event %: recorded once, processed once', OLD.event_id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_events_guard BEFORE UPDATE OR DELETE ON payouts_events
    FOR EACH ROW EXECUTE FUNCTION payouts_events_guard();

-- Reconciliation runs and every difference they found between a provider and the ledger.
CREATE TABLE payouts_reconciliations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    text NOT NULL,
    since       timestamptz NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    provider_records integer NOT NULL,
    ledger_records   integer NOT NULL,
    differences integer NOT NULL
);
CREATE TABLE payouts_differences (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint NOT NULL REFERENCES payouts_reconciliations (id),
    kind            text NOT NULL,
    disbursement_id uuid,
    provider_ref    text,
    ledger_amount   numeric,
    provider_amount numeric,
    detail          text NOT NULL,
    CONSTRAINT payouts_differences_kind CHECK (kind IN ('missing_in_ledger', 'missing_at_provider', 'amount_mismatch',
        'currency_mismatch', 'destination_mismatch', 'status_mismatch'))
);
CREATE INDEX payouts_differences_run ON payouts_differences (run_id);
CREATE TRIGGER payouts_reconciliations_append_only BEFORE UPDATE OR DELETE ON payouts_reconciliations
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();
CREATE TRIGGER payouts_differences_append_only BEFORE UPDATE OR DELETE ON payouts_differences
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- The sandbox provider's own books: what it was asked to pay, as a provider would keep them.
-- It lives here so that the sandbox survives restarts and can be reconciled like Stripe.
CREATE TABLE payouts_sandbox_transfers (
    ref             text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    disbursement_id uuid NOT NULL,
    amount          numeric NOT NULL,
    currency        text NOT NULL,
    destination     text NOT NULL,
    outcome         text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    settles_at      timestamptz NOT NULL,
    reversed        numeric NOT NULL DEFAULT 0,
    CONSTRAINT payouts_sandbox_outcome CHECK (outcome IN ('paid', 'failed'))
);

-- Commitments: scheduled unrestricted payments, each instalment released when the person
-- meets the commitment's requirements on its due date.
CREATE TABLE payouts_commitments (
    id           uuid PRIMARY KEY,
    program_id   text NOT NULL REFERENCES network_programs (id),
    person_id    text NOT NULL REFERENCES network_people (id),
    amount       numeric NOT NULL,
    currency     text NOT NULL REFERENCES ledger_currencies (code),
    instalments  integer NOT NULL,
    every_months integer NOT NULL,
    first_due    date NOT NULL,
    requirements jsonb NOT NULL DEFAULT '{}',
    idempotency_key text NOT NULL UNIQUE,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_commitments_amount CHECK (amount > 0),
    CONSTRAINT payouts_commitments_instalments CHECK (instalments BETWEEN 1 AND 120),
    CONSTRAINT payouts_commitments_every CHECK (every_months BETWEEN 1 AND 24)
);
CREATE TRIGGER payouts_commitments_append_only BEFORE UPDATE OR DELETE ON payouts_commitments
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();
CREATE TABLE payouts_instalments (
    commitment_id   uuid NOT NULL REFERENCES payouts_commitments (id),
    n               integer NOT NULL,
    due_on          date NOT NULL,
    state           text NOT NULL DEFAULT 'scheduled',
    reason          text NOT NULL DEFAULT '',
    entry_id        uuid UNIQUE REFERENCES ledger_entries (id),
    disbursement_id uuid UNIQUE REFERENCES payouts_disbursements (id),
    decided_by      text,
    decided_at      timestamptz,
    PRIMARY KEY (commitment_id, n),
    CONSTRAINT payouts_instalments_state CHECK (state IN ('scheduled', 'fulfilled', 'canceled', 'failed')),
    CONSTRAINT payouts_instalments_fulfilled CHECK ((state = 'fulfilled') = (entry_id IS NOT NULL AND disbursement_id IS NOT NULL)),
    CONSTRAINT payouts_instalments_decided CHECK ((state = 'scheduled') = (decided_at IS NULL))
);
CREATE INDEX payouts_instalments_due ON payouts_instalments (due_on) WHERE state = 'scheduled';
CREATE FUNCTION payouts_instalments_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.state <> 'scheduled'
       OR (NEW.commitment_id, NEW.n, NEW.due_on) IS DISTINCT FROM (OLD.commitment_id, OLD.n, OLD.due_on) THEN
        RAISE EXCEPTION 'instalment % of commitment %: decided once, from scheduled', OLD.n, OLD.commitment_id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_instalments_guard BEFORE UPDATE OR DELETE ON payouts_instalments
    FOR EACH ROW EXECUTE FUNCTION payouts_instalments_guard();
-- Instalments are the commitment's schedule, nothing else.
CREATE FUNCTION payouts_instalments_schedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state <> 'scheduled' OR NOT EXISTS (SELECT 1 FROM payouts_commitments c WHERE c.id = NEW.commitment_id
        AND NEW.n BETWEEN 1 AND c.instalments AND NEW.due_on = (c.first_due + make_interval(months => (NEW.n - 1) * c.every_months))::date) THEN
        RAISE EXCEPTION 'instalment % of commitment %: not on its schedule', NEW.n, NEW.commitment_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_instalments_schedule';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_instalments_schedule BEFORE INSERT ON payouts_instalments
    FOR EACH ROW EXECUTE FUNCTION payouts_instalments_schedule();

-- Coach stipend policy per program (a rate per verified session, paid monthly); latest wins,
-- a rate of 0 stops stipends.
CREATE TABLE payouts_stipend_policies (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id text NOT NULL REFERENCES network_programs (id),
    rate       numeric NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_stipend_policies_rate CHECK (rate >= 0)
);
CREATE INDEX payouts_stipend_policies_program ON payouts_stipend_policies (program_id, id DESC);
CREATE TRIGGER payouts_stipend_policies_append_only BEFORE UPDATE OR DELETE ON payouts_stipend_policies
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- One stipend per (program, coach, month). Held without a W-9 (or while the fund is short),
-- paid once: then the entry fund → coach wallet and its disbursement are fixed.
CREATE TABLE payouts_stipends (
    program_id      text NOT NULL REFERENCES network_programs (id),
    coach_id        text NOT NULL REFERENCES network_people (id),
    month           date NOT NULL,
    sessions        integer NOT NULL,
    rate            numeric NOT NULL,
    amount          numeric NOT NULL,
    currency        text NOT NULL,
    status          text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    entry_id        uuid UNIQUE REFERENCES ledger_entries (id),
    disbursement_id uuid UNIQUE REFERENCES payouts_disbursements (id),
    computed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    paid_at         timestamptz,
    PRIMARY KEY (program_id, coach_id, month),
    CONSTRAINT payouts_stipends_month CHECK (extract(day FROM month) = 1),
    CONSTRAINT payouts_stipends_amount CHECK (sessions > 0 AND amount > 0 AND amount = sessions * rate),
    CONSTRAINT payouts_stipends_status CHECK (status IN ('paid', 'held')),
    CONSTRAINT payouts_stipends_paid CHECK ((status = 'paid') = (entry_id IS NOT NULL AND disbursement_id IS NOT NULL AND paid_at IS NOT NULL))
);
CREATE FUNCTION payouts_stipends_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status = 'paid'
       OR (NEW.program_id, NEW.coach_id, NEW.month, NEW.currency) IS DISTINCT FROM (OLD.program_id, OLD.coach_id, OLD.month, OLD.currency) THEN
        RAISE EXCEPTION 'stipend of % for %: paid once, never changed after', OLD.coach_id, OLD.month
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'payouts_append_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_stipends_guard BEFORE UPDATE OR DELETE ON payouts_stipends
    FOR EACH ROW EXECUTE FUNCTION payouts_stipends_guard();
