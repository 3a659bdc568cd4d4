-- What a crash or a failing job leaves behind, made visible and recoverable.
--
-- Reconciliation reports an attempt the provider made a transfer for while the ledger never
-- recorded the answer (the process died between sending and recording) once, as
-- unrecorded_send, and applies the provider's outcome (payouts/reconcile.go).
ALTER TABLE payouts_differences DROP CONSTRAINT payouts_differences_kind;
ALTER TABLE payouts_differences ADD CONSTRAINT payouts_differences_kind CHECK (kind IN ('missing_in_ledger', 'missing_at_provider',
    'amount_mismatch', 'currency_mismatch', 'destination_mismatch', 'status_mismatch', 'unrecorded_send'));

-- An award a rule earned that could not be made or paid (network/blocked.go): the evaluation
-- rolls it back alone (a savepoint), records why here and goes on with the participant's
-- other awards. The milestones sweep asks again for the evaluation of every participant with
-- a block; the block is removed once the award goes through.
CREATE TABLE network_award_blocks (
    award_key        text PRIMARY KEY,
    program_id       text NOT NULL REFERENCES network_programs (id),
    participant_id   text NOT NULL REFERENCES network_people (id),
    rule_id          text NOT NULL,
    period           text NOT NULL,
    amount           numeric NOT NULL,
    currency         text NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    first_blocked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    blocked_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT network_award_blocks_key CHECK (award_key = 'award:' || program_id || ':' || participant_id || ':' || rule_id || ':' || period)
);
CREATE INDEX network_award_blocks_participant ON network_award_blocks (participant_id);
