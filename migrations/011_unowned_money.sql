-- Money that would otherwise be left without an owner (payouts/unowned.go).
--
-- 1. A paid award whose evidence was later retracted: an admin reverses it (the money still in
--    the wallet goes back to the fund, by the entry that cancels its disbursement) or keeps it,
--    with a reason. One decision per award, never changed; decided awards leave the list.
CREATE TABLE payouts_award_decisions (
    award_id   uuid PRIMARY KEY REFERENCES network_awards (id),
    decision   text NOT NULL,
    reason     text NOT NULL,
    -- The entry wallet → fund of a reversal.
    entry_id   uuid UNIQUE REFERENCES ledger_entries (id),
    decided_by text NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_award_decisions_decision CHECK (decision IN ('reverse', 'keep')),
    CONSTRAINT payouts_award_decisions_reason CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    CONSTRAINT payouts_award_decisions_entry CHECK ((decision = 'reverse') = (entry_id IS NOT NULL)),
    CONSTRAINT payouts_award_decisions_by CHECK (decided_by <> '')
);
CREATE TRIGGER payouts_award_decisions_append_only BEFORE UPDATE OR DELETE ON payouts_award_decisions
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- 2. What became of money a provider gave back in part after a payout was paid (the
--    disbursement stays paid): paid again (kind repay: back to the fund by entry_id, then
--    granted again by a new disbursement, which follows the approval policy) or given back to
--    the fund (kind fund: entry_id, wallet → fund). Never more than the latest attempt
--    returned: what an earlier attempt returned (in full) went out again with the retry that
--    followed it, so it is no longer in the wallet.
CREATE TABLE payouts_return_settlements (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    disbursement_id     uuid NOT NULL REFERENCES payouts_disbursements (id),
    kind                text NOT NULL,
    amount              numeric NOT NULL,
    entry_id            uuid NOT NULL UNIQUE REFERENCES ledger_entries (id),
    new_disbursement_id uuid UNIQUE REFERENCES payouts_disbursements (id),
    decided_by          text NOT NULL,
    reason              text NOT NULL,
    at                  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_return_settlements_kind CHECK (kind IN ('repay', 'fund')),
    CONSTRAINT payouts_return_settlements_amount CHECK (amount > 0),
    CONSTRAINT payouts_return_settlements_new CHECK ((kind = 'repay') = (new_disbursement_id IS NOT NULL)),
    CONSTRAINT payouts_return_settlements_reason CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    CONSTRAINT payouts_return_settlements_by CHECK (decided_by <> '')
);
CREATE INDEX payouts_return_settlements_disbursement ON payouts_return_settlements (disbursement_id);
CREATE TRIGGER payouts_return_settlements_append_only BEFORE UPDATE OR DELETE ON payouts_return_settlements
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

CREATE FUNCTION payouts_return_settlements_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    returned numeric;
    settled  numeric;
BEGIN
    PERFORM 1 FROM payouts_disbursements WHERE id = NEW.disbursement_id FOR UPDATE;
    SELECT coalesce(sum(r.amount), 0) INTO returned FROM payouts_returns r WHERE r.disbursement_id = NEW.disbursement_id
        AND r.attempt = (SELECT max(a.attempt) FROM payouts_attempts a WHERE a.disbursement_id = NEW.disbursement_id);
    SELECT coalesce(sum(amount), 0) INTO settled FROM payouts_return_settlements WHERE disbursement_id = NEW.disbursement_id;
    IF settled + NEW.amount > returned THEN
        RAISE EXCEPTION 'disbursement %: % returned, % already paid again or given back, % more refused',
            NEW.disbursement_id, returned, settled, NEW.amount
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_return_settlements_exceed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_return_settlements_check BEFORE INSERT ON payouts_return_settlements
    FOR EACH ROW EXECUTE FUNCTION payouts_return_settlements_check();
