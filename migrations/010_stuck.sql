-- What a crash or a failing job leaves behind, made visible and recoverable.
--
-- Reconciliation reports an attempt the provider made a transfer for while the ledger never
-- recorded the answer (the process died between sending and recording) once, as
-- unrecorded_send, and applies the provider's outcome (payouts/reconcile.go).
ALTER TABLE payouts_differences DROP CONSTRAINT payouts_differences_kind;
ALTER TABLE payouts_differences ADD CONSTRAINT payouts_differences_kind CHECK (kind IN ('missing_in_ledger', 'missing_at_provider',
    'amount_mismatch', 'currency_mismatch', 'destination_mismatch', 'status_mismatch', 'unrecorded_send'));
