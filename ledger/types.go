package ledger

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// AccountType fixes an account's normal side: assets and expenses grow with debits;
// liabilities, equity and revenue grow with credits.
type AccountType string

const (
	Asset     AccountType = "asset"
	Liability AccountType = "liability"
	Equity    AccountType = "equity"
	Revenue   AccountType = "revenue"
	Expense   AccountType = "expense"
)

// Valid reports whether t is one of the five account types.
func (t AccountType) Valid() bool {
	switch t {
	case Asset, Liability, Equity, Revenue, Expense:
		return true
	}
	return false
}

// NormalSide is the side on which the account's balance grows.
func (t AccountType) NormalSide() Side {
	if t == Asset || t == Expense {
		return Debit
	}
	return Credit
}

// Side of a posting.
type Side string

const (
	Debit  Side = "debit"
	Credit Side = "credit"
)

// Valid reports whether s is debit or credit.
func (s Side) Valid() bool { return s == Debit || s == Credit }

// Opposite returns the other side.
func (s Side) Opposite() Side {
	if s == Debit {
		return Credit
	}
	return Debit
}

// Phase says which balance a posting moves: posted, hold (pending, reserved) or release (a
// hold taken back when its pending entry is committed or voided).
type Phase string

const (
	PhasePosted  Phase = "posted"
	PhaseHold    Phase = "hold"
	PhaseRelease Phase = "release"
)

// Kind of entry.
type Kind string

const (
	KindStandard Kind = "standard" // posted directly
	KindPending  Kind = "pending"  // reserves amounts until committed or voided
	KindCommit   Kind = "commit"   // posts a pending entry, in full or in part
	KindVoid     Kind = "void"     // cancels a pending entry
	KindReversal Kind = "reversal" // undoes a posted entry
)

// Account is a ledger account with its current balance.
type Account struct {
	ID          int64           `json:"id"`
	Code        string          `json:"code"`
	Type        AccountType     `json:"type"`
	Currency    string          `json:"currency"`
	NoOverdraft bool            `json:"no_overdraft"`
	Metadata    json.RawMessage `json:"metadata"`
	CreatedAt   time.Time       `json:"created_at"`
	ClosedAt    *time.Time      `json:"closed_at,omitempty"`
	Balance     Balance         `json:"balance"`
}

// Balance of an account at some point of its history. Posted, Pending and Available are
// signed on the account's normal side: a positive Posted on a liability means the ledger owes.
type Balance struct {
	Account        string          `json:"account"`
	Currency       string          `json:"currency"`
	PostedDebits   decimal.Decimal `json:"posted_debits"`
	PostedCredits  decimal.Decimal `json:"posted_credits"`
	PendingDebits  decimal.Decimal `json:"pending_debits"`
	PendingCredits decimal.Decimal `json:"pending_credits"`
	// Posted is the posted balance on the normal side.
	Posted decimal.Decimal `json:"posted"`
	// Pending is the net effect of holds on the normal side (negative when money is on hold
	// to leave the account).
	Pending decimal.Decimal `json:"pending"`
	// Available is Posted less holds that move money out; what no_overdraft protects.
	Available decimal.Decimal `json:"available"`
	// Version counts the postings applied to the account; Seq is the last entry applied.
	Version int64 `json:"version"`
	Seq     int64 `json:"seq"`
}

// newBalance derives the normal-side figures from the four totals.
func newBalance(code, currency string, t AccountType, pd, pc, hd, hc decimal.Decimal, version, seq int64) Balance {
	b := Balance{Account: code, Currency: currency, PostedDebits: pd, PostedCredits: pc,
		PendingDebits: hd, PendingCredits: hc, Version: version, Seq: seq}
	if t.NormalSide() == Debit {
		b.Posted = pd.Sub(pc)
		b.Pending = hd.Sub(hc)
		b.Available = b.Posted.Sub(hc)
	} else {
		b.Posted = pc.Sub(pd)
		b.Pending = hc.Sub(hd)
		b.Available = b.Posted.Sub(hd)
	}
	return b
}

// MarshalJSON writes amounts as exact decimal strings with the currency's places.
func (b Balance) MarshalJSON() ([]byte, error) {
	f := func(d decimal.Decimal) string { return FormatAmount(d, b.Currency) }
	return json.Marshal(struct {
		Account        string `json:"account"`
		Currency       string `json:"currency"`
		Posted         string `json:"posted"`
		Pending        string `json:"pending"`
		Available      string `json:"available"`
		PostedDebits   string `json:"posted_debits"`
		PostedCredits  string `json:"posted_credits"`
		PendingDebits  string `json:"pending_debits"`
		PendingCredits string `json:"pending_credits"`
		Version        int64  `json:"version"`
		Seq            int64  `json:"seq"`
	}{b.Account, b.Currency, f(b.Posted), f(b.Pending), f(b.Available), f(b.PostedDebits),
		f(b.PostedCredits), f(b.PendingDebits), f(b.PendingCredits), b.Version, b.Seq})
}

// Posting is one line of a new entry.
type Posting struct {
	Account  string          `json:"account"`
	Side     Side            `json:"side"`
	Amount   decimal.Decimal `json:"amount"`
	Currency string          `json:"currency"`
}

// Line is a stored posting.
type Line struct {
	Line     int             `json:"line"`
	Account  string          `json:"account"`
	Phase    Phase           `json:"phase"`
	Side     Side            `json:"side"`
	Amount   decimal.Decimal `json:"amount"`
	Currency string          `json:"currency"`
}

// MarshalJSON writes the amount with its currency's places.
func (l Line) MarshalJSON() ([]byte, error) {
	type plain Line
	return json.Marshal(struct {
		plain
		Amount string `json:"amount"`
	}{plain(l), FormatAmount(l.Amount, l.Currency)})
}

// Entry is a stored journal entry.
type Entry struct {
	ID             uuid.UUID       `json:"id"`
	Seq            int64           `json:"seq"`
	Kind           Kind            `json:"kind"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Description    string          `json:"description"`
	EffectiveAt    time.Time       `json:"effective_at"`
	PostedAt       time.Time       `json:"posted_at"`
	Metadata       json.RawMessage `json:"metadata"`
	// TargetID is the pending entry a commit or void resolves, or the entry a reversal undoes.
	TargetID *uuid.UUID `json:"target_id,omitempty"`
	Lines    []Line     `json:"postings"`
	// ResolvedBy (pending entries) and ReversedBy (posted entries) are filled by Entry
	// lookups; they say what later happened to this entry.
	ResolvedBy *uuid.UUID `json:"resolved_by,omitempty"`
	ReversedBy *uuid.UUID `json:"reversed_by,omitempty"`
	// Replayed is true when the call found an earlier entry with the same idempotency key
	// and content, and returned it instead of posting again.
	Replayed bool `json:"replayed,omitempty"`
}

// NewEntry is what a caller asks to post.
type NewEntry struct {
	// IdempotencyKey is required for standard and pending entries: the same key with the
	// same content returns the original entry; with different content, ErrIdempotencyConflict.
	IdempotencyKey string          `json:"idempotency_key"`
	Description    string          `json:"description"`
	EffectiveAt    *time.Time      `json:"effective_at,omitempty"` // business date; default: posting time
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	Postings       []Posting       `json:"postings"`
}

// Resolution is what a caller may add to a commit, void or reversal. All fields are optional.
type Resolution struct {
	// IdempotencyKey makes a retried call return the first result instead of
	// ErrAlreadyResolved or ErrAlreadyReversed.
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Description    string          `json:"description,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	// Postings, for a commit only, posts less than was held (a partial commit): each posting
	// must name an account and side of the hold and not exceed it; what is not posted is
	// released. Nil commits the holds in full.
	Postings []Posting `json:"postings,omitempty"`
}
