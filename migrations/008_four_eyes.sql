-- Four eyes on every path money takes (DESIGN.md §7). Whoever requests money — an admin
-- granting, the creator of a commitment for its instalments, whoever set a stipend rate for
-- its stipends — is a named person, who may not approve what follows from it; an approver is
-- a person holding an active admin token; and an approval is for the destination it saw.

-- Commitments and stipend rates are set by a person from now on. NOT VALID: rows written
-- before keep their token or command-line author; the disbursements that follow from them
-- cannot be approved (payouts_approvals_check below) and are rejected or canceled instead.
ALTER TABLE payouts_commitments ADD CONSTRAINT payouts_commitments_person
    CHECK (created_by LIKE 'person:_%') NOT VALID;
ALTER TABLE payouts_stipend_policies ADD CONSTRAINT payouts_stipend_policies_person
    CHECK (set_by LIKE 'person:_%') NOT VALID;

-- An approval belongs to a round: the round is how many times the disbursement came to
-- awaiting_approval. A disbursement sent back for approval (its destination changed after it
-- was approved) starts a new round, and only the approvals of the current round count.
-- destination is where the person was to be paid when the admin approved ('' when none was
-- on file; NULL when not known, which counts as another destination: the payout needs
-- approving again before it goes anywhere).
ALTER TABLE payouts_approvals
    ADD COLUMN round integer NOT NULL DEFAULT 1,
    ADD COLUMN destination text;
-- Approvals recorded before: the destination on file when the admin approved — the person's
-- latest set at or before the approval, at the provider the disbursement went through (its
-- latest attempt's), or when it has none at the only provider the person had one at then —
-- else the destination of the disbursement's latest attempt if it was submitted at or before
-- the approval; NULL otherwise. A destination set or an attempt made after the approval is
-- not what the admin approved.
ALTER TABLE payouts_approvals DISABLE TRIGGER payouts_approvals_append_only;
UPDATE payouts_approvals a SET destination = coalesce(
    (SELECT (array_agg(p.account ORDER BY p.id DESC))[1]
     FROM payouts_destinations p JOIN payouts_disbursements d ON d.person_id = p.person_id
     WHERE d.id = a.disbursement_id AND p.set_at <= a.at
       AND p.provider = coalesce((SELECT t.provider FROM payouts_attempts t WHERE t.disbursement_id = a.disbursement_id
                                  ORDER BY t.attempt DESC LIMIT 1), p.provider)
     HAVING count(DISTINCT p.provider) = 1),
    (SELECT t.destination FROM (SELECT destination, submitted_at FROM payouts_attempts WHERE disbursement_id = a.disbursement_id
                                ORDER BY attempt DESC LIMIT 1) t
     WHERE t.submitted_at <= a.at));
ALTER TABLE payouts_approvals ENABLE TRIGGER payouts_approvals_append_only;
ALTER TABLE payouts_approvals DROP CONSTRAINT payouts_approvals_pkey;
ALTER TABLE payouts_approvals ADD CONSTRAINT payouts_approvals_pkey PRIMARY KEY (disbursement_id, round, approver);

CREATE FUNCTION payouts_approval_round(d uuid) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM payouts_transitions WHERE disbursement_id = d AND to_state = 'awaiting_approval'
$$;

-- Back to approval: an approved disbursement whose destination changed before it was
-- submitted, and a failed one that needed approval when a new destination retries it.
INSERT INTO payouts_legal_transitions (from_state, to_state) VALUES
    ('approved', 'awaiting_approval'),
    ('failed', 'awaiting_approval');

-- The check of 005, extended: the requester of anything but an award (made by a rule) is a
-- person, the approver holds an active, unrevoked admin token, and the approval is recorded
-- in the disbursement's current round.
CREATE OR REPLACE FUNCTION payouts_approvals_check() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF d.source <> 'award' AND d.requested_by NOT LIKE 'person:_%' THEN
        RAISE EXCEPTION 'disbursement %: requested by %, not a person, so four eyes cannot be shown: reject or cancel it',
            d.id, d.requested_by USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_requester_person';
    END IF;
    -- (An approver that is not a person at all is refused by payouts_approvals_person.)
    IF NEW.approver LIKE 'person:_%' AND NOT EXISTS (SELECT 1 FROM access_tokens t WHERE t.role = 'admin' AND 'person:' || t.person_id = NEW.approver
                   AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())) THEN
        RAISE EXCEPTION 'disbursement %: % holds no active admin token and may not approve', d.id, NEW.approver
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_approver_admin';
    END IF;
    NEW.round := payouts_approval_round(NEW.disbursement_id);
    RETURN NEW;
END $$;

-- The guard of 005, relaxed for a new round: approved_at is set when a disbursement is first
-- approved and again by the approval that ends a round it was sent back to, so the caps count
-- it in the month of its latest approval (while awaiting approval it counts in none). It only
-- moves forward: program time never goes back, and a backdated approval would count in a
-- month already past.
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
        OR (OLD.approved_at IS NOT NULL AND NEW.approved_at IS DISTINCT FROM OLD.approved_at
            AND NOT (OLD.state = 'awaiting_approval' AND NEW.state = 'approved'
                     AND coalesce(NEW.approved_at >= OLD.approved_at, false)))) THEN
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

-- Leaving awaiting_approval for approved needs the approvals of the current round (the guard
-- of 005 counts those of every round).
CREATE FUNCTION payouts_disbursements_round() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'approved' AND OLD.state = 'awaiting_approval'
       AND (SELECT count(*) FROM payouts_approvals WHERE disbursement_id = NEW.id
            AND round = payouts_approval_round(NEW.id)) < NEW.approvals_needed THEN
        RAISE EXCEPTION 'disbursement %: needs % approvals by different admins since it last came to approval', NEW.id, NEW.approvals_needed
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_dual_control';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_disbursements_round BEFORE UPDATE ON payouts_disbursements
    FOR EACH ROW EXECUTE FUNCTION payouts_disbursements_round();

-- A payout that needed approval goes only where its approvers saw it would: every approval of
-- the current round recorded this destination (one that recorded none known, NULL, did not).
CREATE FUNCTION payouts_attempts_destination() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT approvals_needed FROM payouts_disbursements WHERE id = NEW.disbursement_id) > 0
       AND EXISTS (SELECT 1 FROM payouts_approvals a WHERE a.disbursement_id = NEW.disbursement_id
                   AND a.round = payouts_approval_round(NEW.disbursement_id)
                   AND a.destination IS DISTINCT FROM NEW.destination) THEN
        RAISE EXCEPTION 'disbursement %: % is not the destination it was approved for', NEW.disbursement_id, NEW.destination
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_destination_approved';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_attempts_destination BEFORE INSERT ON payouts_attempts
    FOR EACH ROW EXECUTE FUNCTION payouts_attempts_destination();
