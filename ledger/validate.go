package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Limits on what one request may carry.
const (
	MaxPostings = 1000
	// MaxPendingPostings bounds a pending entry: committing it writes a release line per
	// hold plus the posted lines, and all must fit in one entry of MaxPostings.
	MaxPendingPostings = MaxPostings / 2
	MaxDescription     = 1000
	// MaxMetadataBytes bounds metadata as compact JSON. The database's limit is 16 KiB of
	// its own text form, which adds a space after each ':' and ','; half of it always fits.
	MaxMetadataBytes  = 8 << 10
	MaxIdempotencyKey = 255
	MaxCodeLength     = 200
)

var codeSyntax = regexp.MustCompile(`^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)*$`)

// ValidateCode checks the code of a new account: path segments of letters, digits, '_', '.',
// ':' and '-', separated by single slashes, at most MaxCodeLength bytes
// (e.g. "program/stem-2027/fund"). A segment of dots alone ("." or "..") is refused: URLs
// resolve it away, so the account could not be named over HTTP.
func ValidateCode(code string) error {
	if err := validateExistingCode(code); err != nil {
		return err
	}
	for _, seg := range strings.Split(code, "/") {
		if strings.Trim(seg, ".") == "" {
			return invalid("account", "%q has a segment of dots alone (%q), which a URL would resolve away", truncate(code, 60), seg)
		}
	}
	return nil
}

// validateExistingCode checks a code naming an account that may exist: the syntax alone. An
// account opened before segments of dots alone were refused keeps being read, posted to and
// closed (the database refuses such codes on INSERT only, 009).
func validateExistingCode(code string) error {
	if code == "" {
		return invalid("account", "code is empty")
	}
	if len(code) > MaxCodeLength || !codeSyntax.MatchString(code) {
		return invalid("account", "%q is not a valid code (letters, digits, _ . : - in segments separated by /, at most %d bytes)", truncate(code, 60), MaxCodeLength)
	}
	return nil
}

// UnmarshalJSON reads a posting and insists the amount is a JSON string holding a plain
// decimal ("12.50"): a JSON number could have been through a float on the client's side.
func (p *Posting) UnmarshalJSON(b []byte) error {
	var raw struct {
		Account  string          `json:"account"`
		Side     Side            `json:"side"`
		Amount   json.RawMessage `json:"amount"`
		Currency string          `json:"currency"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return invalid("posting", "%v", err)
	}
	var s string
	if len(raw.Amount) == 0 || raw.Amount[0] != '"' || json.Unmarshal(raw.Amount, &s) != nil {
		return fmt.Errorf("%w: amount must be a decimal string such as \"12.50\", got %s", ErrInvalidAmount, truncate(string(raw.Amount), 40))
	}
	if !amountSyntax.MatchString(s) {
		return fmt.Errorf("%w: %q is not a plain decimal amount like 12.50", ErrInvalidAmount, truncate(s, 40))
	}
	amt, err := decimal.NewFromString(s)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidAmount, truncate(s, 40))
	}
	*p = Posting{Account: raw.Account, Side: raw.Side, Amount: amt, Currency: raw.Currency}
	return nil
}

// MarshalJSON writes the amount as a string with the currency's places.
func (p Posting) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Account  string `json:"account"`
		Side     Side   `json:"side"`
		Amount   string `json:"amount"`
		Currency string `json:"currency"`
	}{p.Account, p.Side, FormatAmount(p.Amount, p.Currency), p.Currency})
}

// validatePostings checks each posting and that they balance per currency.
func validatePostings(ps []Posting) error {
	if len(ps) < 2 {
		return invalid("postings", "an entry needs at least two postings, got %d", len(ps))
	}
	if len(ps) > MaxPostings {
		return invalid("postings", "at most %d postings, got %d", MaxPostings, len(ps))
	}
	net := map[string]decimal.Decimal{}
	for i, p := range ps {
		if err := validateExistingCode(p.Account); err != nil {
			return fmt.Errorf("postings[%d]: %w", i, err)
		}
		if !p.Side.Valid() {
			return invalid(fmt.Sprintf("postings[%d].side", i), "must be debit or credit, got %q", truncate(string(p.Side), 20))
		}
		exp, ok := Exponent(p.Currency)
		if !ok {
			return fmt.Errorf("postings[%d]: %w: %q", i, ErrUnknownCurrency, truncate(p.Currency, 10))
		}
		if err := checkAmount(p.Amount, p.Currency, exp); err != nil {
			return fmt.Errorf("postings[%d]: %w", i, err)
		}
		if p.Side == Debit {
			net[p.Currency] = net[p.Currency].Add(p.Amount)
		} else {
			net[p.Currency] = net[p.Currency].Sub(p.Amount)
		}
	}
	for _, c := range sortedKeys(net) {
		if !net[c].IsZero() {
			return fmt.Errorf("%w: %s", ErrUnbalanced, Imbalance(c, net[c]))
		}
	}
	return nil
}

// Imbalance says which side of currency exceeds the other and by how much, given debits
// less credits: "USD credits exceed debits by 10.00".
func Imbalance(currency string, debitsLessCredits decimal.Decimal) string {
	if debitsLessCredits.IsNegative() {
		return fmt.Sprintf("%s credits exceed debits by %s", currency, FormatAmount(debitsLessCredits.Neg(), currency))
	}
	return fmt.Sprintf("%s debits exceed credits by %s", currency, FormatAmount(debitsLessCredits, currency))
}

func validateCommon(key, description string, metadata json.RawMessage, keyRequired bool) error {
	if key == "" && keyRequired {
		return invalid("idempotency_key", "required: a retried request with the same key is posted once")
	}
	if len(key) > MaxIdempotencyKey || !utf8.ValidString(key) {
		return invalid("idempotency_key", "at most %d bytes of UTF-8", MaxIdempotencyKey)
	}
	if utf8.RuneCountInString(description) > MaxDescription || !utf8.ValidString(description) {
		return invalid("description", "at most %d characters of UTF-8", MaxDescription)
	}
	// PostgreSQL text cannot hold NUL: refuse it here, with the field's name.
	if strings.ContainsRune(key, 0) {
		return invalid("idempotency_key", "must not contain NUL characters")
	}
	if strings.ContainsRune(description, 0) {
		return invalid("description", "must not contain NUL characters")
	}
	if _, err := canonicalMetadata(metadata); err != nil {
		return err
	}
	return nil
}

// Validate checks a new entry without touching the database: the same checks run for the Go
// API, the CLI and HTTP. The database checks what only it can know (accounts, balances).
func (e NewEntry) Validate() error {
	if err := validateCommon(e.IdempotencyKey, e.Description, e.Metadata, true); err != nil {
		return err
	}
	if e.EffectiveAt != nil && (e.EffectiveAt.Year() < 1900 || e.EffectiveAt.Year() > 9999) {
		return invalid("effective_at", "year must be between 1900 and 9999")
	}
	return validatePostings(e.Postings)
}

// canonicalMetadata returns metadata as compact JSON with sorted keys ("{}" when empty) and
// checks it is an object of bounded size.
func canonicalMetadata(m json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(m)) == 0 || bytes.Equal(bytes.TrimSpace(m), []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	if len(m) > MaxMetadataBytes {
		return nil, invalid("metadata", "at most %d bytes", MaxMetadataBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(m))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil || v == nil {
		return nil, invalid("metadata", "must be a JSON object")
	}
	if dec.More() {
		return nil, invalid("metadata", "must be a single JSON object")
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, invalid("metadata", "%v", err)
	}
	if bytes.Contains(out, []byte(`\u0000`)) {
		return nil, invalid("metadata", "must not contain NUL characters")
	}
	return out, nil
}

// requestHash fingerprints what a request asked for, so a reused idempotency key can be told
// apart from a retry. Defaults filled in by the ledger (posting time) are not part of it.
func requestHash(kind Kind, target *uuid.UUID, description string, effective *time.Time, metadata json.RawMessage, ps []Posting) []byte {
	meta, _ := canonicalMetadata(metadata)
	type line struct {
		A, S, M, C string
	}
	lines := make([]line, len(ps))
	for i, p := range ps {
		lines[i] = line{p.Account, string(p.Side), FormatAmount(p.Amount, p.Currency), p.Currency}
	}
	var eff string
	if effective != nil {
		eff = effective.UTC().Format(time.RFC3339Nano)
	}
	var tgt string
	if target != nil {
		tgt = target.String()
	}
	b, _ := json.Marshal(struct {
		K, T, D, E string
		M          json.RawMessage
		P          []line
	}{string(kind), tgt, description, eff, meta, lines})
	sum := sha256.Sum256(b)
	return sum[:]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
