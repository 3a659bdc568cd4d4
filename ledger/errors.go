package ledger

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors callers can test with errors.Is. Each is wrapped with the detail of the case, e.g.
// "insufficient funds: account program/p/fund would be overdrawn (available -50.00)".
var (
	// ErrInvalid is wrapped by every error about the shape of a request: a missing field, a
	// malformed code, too many postings. The request never reached the database.
	ErrInvalid = errors.New("invalid request")
	// ErrInvalidAmount: zero, negative, malformed, too large or too precise for the currency.
	ErrInvalidAmount = fmt.Errorf("%w: invalid amount", ErrInvalid)
	// ErrUnknownCurrency: not an ISO 4217 code the ledger accepts.
	ErrUnknownCurrency = fmt.Errorf("%w: unknown currency", ErrInvalid)
	// ErrUnbalanced: debits and credits of an entry differ in some currency.
	ErrUnbalanced = fmt.Errorf("%w: entry does not balance", ErrInvalid)

	ErrAccountNotFound     = errors.New("account not found")
	ErrAccountExists       = errors.New("account already exists")
	ErrAccountClosed       = errors.New("account is closed")
	ErrAccountNotEmpty     = errors.New("account has a balance or pending holds")
	ErrCurrencyMismatch    = errors.New("posting currency differs from the account's")
	ErrInsufficientFunds   = errors.New("insufficient funds")
	ErrIdempotencyConflict = errors.New("idempotency key reused with different content")
	ErrEntryNotFound       = errors.New("entry not found")
	ErrNotPending          = errors.New("entry is not pending")
	ErrAlreadyResolved     = errors.New("pending entry already committed or voided")
	ErrAlreadyReversed     = errors.New("entry already reversed")
	ErrNotReversible       = errors.New("entry cannot be reversed")
	// ErrImmutable: an attempt to change what the ledger never changes (entries, postings,
	// an account's identity or balances outside postings).
	ErrImmutable = errors.New("ledger records are immutable")
	// ErrIntegrity: the database refused a write for a reason the Go checks should have
	// caught first. It signals a bug, not bad input.
	ErrIntegrity = errors.New("ledger integrity check failed")
	// ErrClosed: the Ledger was closed.
	ErrClosed = errors.New("ledger is closed")
)

// invalid builds a validation error naming the field at fault.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// constraintErrors translates the database's refusals, by constraint name, into the errors
// above. It is the one place that knows constraint names (migrations/001_ledger.sql).
var constraintErrors = map[string]error{
	"ledger_account_unknown":             ErrAccountNotFound,
	"ledger_accounts_code_key":           ErrAccountExists,
	"ledger_account_closed":              ErrAccountClosed,
	"ledger_accounts_closed_empty":       ErrAccountNotEmpty,
	"ledger_posting_currency":            ErrCurrencyMismatch,
	"ledger_posting_precision":           ErrInvalidAmount,
	"ledger_postings_amount":             ErrInvalidAmount,
	"ledger_accounts_no_overdraft":       ErrInsufficientFunds,
	"ledger_entry_unbalanced":            ErrUnbalanced,
	"ledger_entries_resolves_once":       ErrAlreadyResolved,
	"ledger_entries_reverses_once":       ErrAlreadyReversed,
	"ledger_append_only":                 ErrImmutable,
	"ledger_accounts_immutable":          ErrImmutable,
	"ledger_accounts_currency_fkey":      ErrUnknownCurrency,
	"ledger_accounts_code_format":        ErrInvalid,
	"ledger_accounts_type":               ErrInvalid,
	"ledger_accounts_metadata":           ErrInvalid,
	"ledger_entries_metadata":            ErrInvalid,
	"ledger_entries_description":         ErrInvalid,
	"ledger_entries_idempotency_key_key": ErrIdempotencyConflict,
}

// translate maps a database error to a ledger error, keeping the database's message (which
// names the account or entry) and the original error for errors.As.
func translate(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if target, ok := constraintErrors[pgErr.ConstraintName]; ok {
		return &dbError{kind: target, pg: pgErr}
	}
	if pgErr.ConstraintName != "" || pgErr.Code[:2] == "23" {
		return &dbError{kind: ErrIntegrity, pg: pgErr}
	}
	return err
}

// dbError is a database refusal translated to a ledger error.
type dbError struct {
	kind error
	pg   *pgconn.PgError
}

func (e *dbError) Error() string { return e.kind.Error() + ": " + e.pg.Message }

// Is reports the ledger sentinel; As still reaches the *pgconn.PgError through Unwrap.
func (e *dbError) Is(target error) bool { return errors.Is(e.kind, target) }
func (e *dbError) Unwrap() error        { return e.pg }
