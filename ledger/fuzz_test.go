package ledger

// Fuzz tests live in package ledger (not ledger_test) to reach requestHash, whose stability
// under a JSON round trip is what makes an idempotent retry over HTTP recognisable.

import (
	"bytes"
	"encoding/json"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// plainDecimal is the reference grammar for an accepted amount, written independently of
// amountSyntax: digits without a superfluous leading zero, an optional fraction.
var plainDecimal = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// maxFractionDigits is ParseAmount's documented limit on how many fraction digits it reads,
// even when they are zeros ("1.0000000000000000000" is refused).
const maxFractionDigits = 18

// refAccepts decides, with math/big instead of shopspring/decimal, whether s is an amount of
// a currency with exp places that ParseAmount must accept, and its value.
func refAccepts(s string, exp int32) (*big.Rat, bool) {
	if !plainDecimal.MatchString(s) {
		return nil, false
	}
	if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i-1 > maxFractionDigits {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() <= 0 {
		return nil, false
	}
	if r.Cmp(new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(15), nil))) >= 0 {
		return nil, false
	}
	scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !scaled.IsInt() {
		return nil, false
	}
	return r, true
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{
		"1", "1.00", "1.0", "1.001", "1.01", "12.50", "0.01", "0.001", "0.0001", "-1", "-0", "0", "0.0",
		"0.00", "00", "01", "NaN", "nan", "Inf", "-Inf", "+Inf", "Infinity", "1e3", "1E3", "1e-2", "1.5e1",
		" 1", "1 ", "\t1", "1\n", "1,00", "1,000.00", "1_000", "+1", ".5", "5.", ".", "", "0x10", "0b1",
		"999999999999999", "999999999999999.99", "999999999999999.999", "1000000000000000",
		"1000000000000000.00", "99999999999999999999999999999999999999", "123456789012345.6789",
		"0.000000000000000001", "0.0000000000000000001", "1." + strings.Repeat("0", 18),
		"1." + strings.Repeat("0", 19), strings.Repeat("9", 400), "١٢", "１２", "1\u200b", "٠", "๑",
		"1.\u0660", "1..2", "1.2.3", "--1", "1-", "१.५", "\x00", "1\x00",
	} {
		for _, cur := range []string{"USD", "JPY", "KWD", "CLF", "XXX", ""} {
			f.Add(s, cur)
		}
	}
	f.Fuzz(func(t *testing.T, s, cur string) {
		d, err := ParseAmount(s, cur)
		exp, known := Exponent(cur)
		if !known {
			require.ErrorIs(t, err, ErrUnknownCurrency)
			return
		}
		want, ok := refAccepts(s, exp)
		if !ok {
			require.Error(t, err, "accepted %q %s as %s", s, cur, d)
			require.ErrorIs(t, err, ErrInvalidAmount)
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		require.NoError(t, err, "refused %q %s", s, cur)
		require.Zero(t, d.Rat().Cmp(want), "%q parsed as %s", s, d)
		require.True(t, d.IsPositive())
		require.True(t, d.LessThan(MaxAmount))
		require.True(t, d.Equal(d.Truncate(exp)), "%s has more than %d places", d, exp)

		out := FormatAmount(d, cur)
		if exp > 0 {
			require.Len(t, out[strings.IndexByte(out, '.')+1:], int(exp), out)
		} else {
			require.NotContains(t, out, ".")
		}
		back, err := ParseAmount(out, cur)
		require.NoError(t, err, "FormatAmount wrote %q, which ParseAmount refuses", out)
		require.True(t, back.Equal(d), "round trip %q -> %s -> %q -> %s", s, d, out, back)
		require.Equal(t, out, FormatAmount(back, cur))
	})
}

func FuzzEntryValidation(f *testing.F) {
	for _, s := range []string{
		`{"idempotency_key":"k","description":"d","postings":[
			{"account":"a","side":"debit","amount":"1.00","currency":"USD"},
			{"account":"b","side":"credit","amount":"1.00","currency":"USD"}]}`,
		`{"idempotency_key":"k","postings":[
			{"account":"a","side":"debit","amount":"1.5","currency":"USD"},
			{"account":"b","side":"credit","amount":"1.50","currency":"USD"}]}`,
		`{"idempotency_key":"k","effective_at":"2026-01-02T03:04:05.123456789+02:00","metadata":{"b":[1,2],"a":{"x":null}},
			"postings":[
			{"account":"a/b","side":"debit","amount":"700","currency":"JPY"},
			{"account":"c","side":"credit","amount":"300","currency":"JPY"},
			{"account":"d","side":"credit","amount":"400","currency":"JPY"},
			{"account":"e","side":"debit","amount":"0.001","currency":"KWD"},
			{"account":"f","side":"credit","amount":"0.001","currency":"KWD"}]}`,
		`{"idempotency_key":"k","postings":[
			{"account":"a","side":"debit","amount":"1.00","currency":"USD"},
			{"account":"b","side":"credit","amount":"0.99","currency":"USD"}]}`,
		`{"idempotency_key":"k","postings":[
			{"account":"a","side":"debit","amount":"5","currency":"USD"},
			{"account":"b","side":"credit","amount":"5","currency":"EUR"}]}`,
		`{"idempotency_key":"k","postings":[{"account":"a","side":"debit","amount":1,"currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"}]}`,
		`{"idempotency_key":"","postings":[]}`,
		`{"idempotency_key":"k","postings":[null,null]}`,
		`{"idempotency_key":"k","postings":null}`,
		`{"idempotency_key":"k","metadata":[],"postings":[
			{"account":"a","side":"debit","amount":"1","currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"}]}`,
		`{"idempotency_key":"k","effective_at":"1899-12-31T23:59:59Z","postings":[
			{"account":"a","side":"debit","amount":"1","currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"}]}`,
		`{"idempotency_key":"k","effective_at":"9999-12-31T23:00:00-05:00","postings":[
			{"account":"a","side":"debit","amount":"1","currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"}]}`,
		`{"idempotency_key":"k\ud800","description":"\u00e9\ufffd","postings":[
			{"account":"a","side":"debit","amount":"0","currency":"USD"},
			{"account":"b","side":"credit","amount":"0","currency":"USD"}]}`,
		`{"idempotency_key":"k","postings":[
			{"account":"a","side":"Debit","amount":"1","currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"}]}`,
		`{"idempotency_key":"k","postings":[
			{"account":"a","side":"debit","amount":"999999999999999.99","currency":"USD"},
			{"account":"b","side":"credit","amount":"999999999999999.99","currency":"USD"}]}`,
		`{"postings":[{"account":"a","side":"debit","amount":"1","currency":"USD","extra":1}]}`,
		`{"idempotency_key":"k","postings":[
			{"account":"a","side":"debit","amount":"1","currency":"USD"},
			{"account":"a","side":"credit","amount":"1","currency":"USD"}]}`,
		`{"idempotency_key":"k","description":"x","metadata":{"a":1,"a":2},"postings":[
			{"account":"a","side":"debit","amount":"2","currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"},
			{"account":"b","side":"credit","amount":"1","currency":"USD"}]}`,
		`null`, `[]`, `{}`, `"x"`, `{"postings":{}}`, `{"effective_at":"yesterday"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var e NewEntry
		if err := json.Unmarshal(data, &e); err != nil {
			return
		}
		err := e.Validate()
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid, "every Validate error is an ErrInvalid: %v", err)
			return
		}
		requireSoundEntry(t, e)

		enc, err := json.Marshal(e)
		require.NoError(t, err)
		var again NewEntry
		require.NoError(t, json.Unmarshal(enc, &again), "%s", enc)
		require.NoError(t, again.Validate(), "a valid entry re-decoded from %s is invalid", enc)
		requireSoundEntry(t, again)
		require.Len(t, again.Postings, len(e.Postings))
		for i := range e.Postings {
			require.Equal(t, e.Postings[i].Account, again.Postings[i].Account)
			require.Equal(t, e.Postings[i].Side, again.Postings[i].Side)
			require.Equal(t, e.Postings[i].Currency, again.Postings[i].Currency)
			require.True(t, e.Postings[i].Amount.Equal(again.Postings[i].Amount))
		}
		h1 := requestHash(KindStandard, nil, e.Description, e.EffectiveAt, e.Metadata, e.Postings)
		h2 := requestHash(KindStandard, nil, again.Description, again.EffectiveAt, again.Metadata, again.Postings)
		require.True(t, bytes.Equal(h1, h2), "request hash changed across a JSON round trip of %s", enc)
		// The hash tells kinds apart, so a pending entry's key cannot replay a standard one.
		require.False(t, bytes.Equal(h1, requestHash(KindPending, nil, e.Description, e.EffectiveAt, e.Metadata, e.Postings)))

		enc2, err := json.Marshal(again)
		require.NoError(t, err)
		require.Equal(t, string(enc), string(enc2), "encoding is not stable")
	})
}

// requireSoundEntry checks what Validate promises of an entry it accepts, recomputed with
// big.Rat.
func requireSoundEntry(t *testing.T, e NewEntry) {
	t.Helper()
	require.NotEmpty(t, e.IdempotencyKey)
	require.GreaterOrEqual(t, len(e.Postings), 2)
	require.LessOrEqual(t, len(e.Postings), MaxPostings)
	net := map[string]*big.Rat{}
	for _, p := range e.Postings {
		require.NoError(t, ValidateCode(p.Account))
		require.True(t, p.Side == Debit || p.Side == Credit, "side %q", p.Side)
		exp, ok := Exponent(p.Currency)
		require.True(t, ok, "currency %q", p.Currency)
		require.True(t, p.Amount.IsPositive(), "amount %s", p.Amount)
		require.True(t, p.Amount.LessThan(MaxAmount), "amount %s", p.Amount)
		require.True(t, p.Amount.Equal(p.Amount.Truncate(exp)), "amount %s of %s", p.Amount, p.Currency)
		if net[p.Currency] == nil {
			net[p.Currency] = new(big.Rat)
		}
		if p.Side == Debit {
			net[p.Currency].Add(net[p.Currency], p.Amount.Rat())
		} else {
			net[p.Currency].Sub(net[p.Currency], p.Amount.Rat())
		}
	}
	for c, n := range net {
		require.Zero(t, n.Sign(), "%s does not balance: %s", c, n.RatString())
	}
}

// TestRefAcceptsAgreesOnSeeds guards the reference itself: it must accept and refuse the
// obvious cases, or FuzzParseAmount would test nothing.
func TestRefAcceptsAgreesOnSeeds(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{"1": true, "12.50": true, "1.001": false, "0": false, "-1": false, "1e3": false, ".5": false} {
		_, ok := refAccepts(s, 2)
		require.Equal(t, want, ok, s)
	}
	_, ok := refAccepts("1.5", 0)
	require.False(t, ok)
}
