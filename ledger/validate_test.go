package ledger_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// One row per rule of ParseAmount. want is the amount's exact value when accepted; err the
// sentinel the error must wrap when refused.
func TestParseAmount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, cur string
		want          string
		err           error
	}{
		{name: "usd cents", in: "12.50", cur: "USD", want: "12.5"},
		{name: "usd one place", in: "12.5", cur: "USD", want: "12.5"},
		{name: "usd integer", in: "1", cur: "USD", want: "1"},
		{name: "smallest usd", in: "0.01", cur: "USD", want: "0.01"},
		{name: "leading zero before point", in: "0.5", cur: "USD", want: "0.5"},
		{name: "largest usd", in: "999999999999999.99", cur: "USD", want: "999999999999999.99"},
		{name: "jpy integer", in: "1500", cur: "JPY", want: "1500"},
		{name: "kwd three places", in: "1.234", cur: "KWD", want: "1.234"},
		{name: "bhd smallest", in: "0.001", cur: "BHD", want: "0.001"},
		{name: "clf four places", in: "0.0001", cur: "CLF", want: "0.0001"},
		// Trailing zeros past the currency's places do not change the value; they are accepted.
		{name: "trailing zeros beyond places", in: "1.000", cur: "USD", want: "1"},
		{name: "jpy trailing zero", in: "7.0", cur: "JPY", want: "7"},

		{name: "zero", in: "0", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "zero with places", in: "0.00", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "negative", in: "-1", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "plus sign", in: "+1", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "exponent", in: "1e3", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "capital exponent", in: "1E2", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "nan", in: "NaN", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "infinity", in: "Inf", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "empty", in: "", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "leading space", in: " 1", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "trailing space", in: "1 ", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "trailing newline", in: "1\n", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "comma decimal", in: "1,00", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "thousands separator", in: "1,000.00", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "underscore", in: "1_000", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "no integer part", in: ".5", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "no fraction digits", in: "5.", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "leading zero", in: "01", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "hex", in: "0x10", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "arabic-indic digits", in: "١٢", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "fullwidth digits", in: "１２", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "too precise usd", in: "1.001", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "too precise jpy", in: "1.5", cur: "JPY", err: ledger.ErrInvalidAmount},
		{name: "too precise kwd", in: "1.2345", cur: "KWD", err: ledger.ErrInvalidAmount},
		{name: "max amount", in: "1000000000000000", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "just below max but too precise", in: "999999999999999.999", cur: "USD", err: ledger.ErrInvalidAmount},
		{name: "huge", in: strings.Repeat("9", 40), cur: "USD", err: ledger.ErrInvalidAmount},
		// The syntax caps the fraction at 18 digits, even when the value would fit.
		{name: "nineteen fraction digits", in: "1." + strings.Repeat("0", 19), cur: "USD", err: ledger.ErrInvalidAmount},

		{name: "unknown currency", in: "1", cur: "XXX", err: ledger.ErrUnknownCurrency},
		{name: "lower-case currency", in: "1", cur: "usd", err: ledger.ErrUnknownCurrency},
		{name: "empty currency", in: "1", cur: "", err: ledger.ErrUnknownCurrency},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := ledger.ParseAmount(tc.in, tc.cur)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.ErrorIs(t, err, ledger.ErrInvalid, "every refusal is an ErrInvalid")
				require.True(t, d.IsZero(), "a refused amount comes back zero, got %s", d)
				return
			}
			require.NoError(t, err)
			require.True(t, d.Equal(decimal.RequireFromString(tc.want)), "got %s, want %s", d, tc.want)
		})
	}
}

func TestParseAmountUnknownCurrencyIsNotAnAmountError(t *testing.T) {
	t.Parallel()
	_, err := ledger.ParseAmount("1", "XXX")
	require.ErrorIs(t, err, ledger.ErrUnknownCurrency)
	require.NotErrorIs(t, err, ledger.ErrInvalidAmount)
}

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, cur, want string
	}{
		{"12.5", "USD", "12.50"},
		{"12", "USD", "12.00"},
		{"0.01", "USD", "0.01"},
		{"1500", "JPY", "1500"},
		{"1.5", "KWD", "1.500"},
		{"0.001", "BHD", "0.001"},
		{"0.1", "CLF", "0.1000"},
		{"999999999999999.99", "USD", "999999999999999.99"},
		{"123456789012345", "JPY", "123456789012345"},
		{"12.50", "USD", "12.50"},
		// An unknown currency prints the plain value.
		{"12.50", "XXX", "12.5"},
	} {
		t.Run(tc.cur+"/"+tc.in, func(t *testing.T) {
			require.Equal(t, tc.want, ledger.FormatAmount(decimal.RequireFromString(tc.in), tc.cur))
		})
	}
	require.Equal(t, "12.50 USD", ledger.Money{Amount: amt("12.5"), Currency: "USD"}.String())
	require.Equal(t, "3 JPY", ledger.Money{Amount: amt("3"), Currency: "JPY"}.String())
}

func TestExponentAndCurrencies(t *testing.T) {
	t.Parallel()
	for cur, want := range map[string]int32{"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3, "BHD": 3, "CLF": 4} {
		e, ok := ledger.Exponent(cur)
		require.True(t, ok, cur)
		require.Equal(t, want, e, cur)
	}
	_, ok := ledger.Exponent("XXX")
	require.False(t, ok)
	cs := ledger.Currencies()
	require.Len(t, cs, 51)
	require.IsIncreasing(t, cs)
	for _, c := range cs {
		_, ok := ledger.Exponent(c)
		require.True(t, ok, c)
	}
}

func TestValidateCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, code string
		ok         bool
	}{
		{"design example", "program/stem-2027/fund", true},
		{"single segment", "a", true},
		{"every allowed character", "Az09_.:-/x", true},
		{"participant wallet", "participant/0b5e7a1c/wallet", true},
		{"max length", strings.Repeat("a", ledger.MaxCodeLength), true},
		{"max length with slashes", strings.Repeat("ab/", 66) + "ab", true},

		{"empty", "", false},
		{"too long", strings.Repeat("a", ledger.MaxCodeLength+1), false},
		{"leading slash", "/a", false},
		{"trailing slash", "a/", false},
		{"double slash", "a//b", false},
		{"only slash", "/", false},
		{"space", "a b", false},
		{"tab", "a\tb", false},
		{"trailing newline", "a\n", false},
		{"non-ascii letter", "caf\u00e9", false},
		{"star", "a/*", false},
		{"percent", "a%20b", false},
		{"backslash", `a\b`, false},
		{"nul", "a\x00b", false},
		{"dot segment", "participant/./wallet", false},
		{"dot-dot segment", "participant/../admin/wallet", false},
		{"leading dot-dot", "../x", false},
		{"trailing dot", "x/.", false},
		{"only dots", "...", false},
		{"dots within a segment", "a.b/..c/d..", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ledger.ValidateCode(tc.code)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ledger.ErrInvalid)
		})
	}
}

func validEntry() ledger.NewEntry {
	return ledger.NewEntry{IdempotencyKey: "k", Description: "d", Postings: []ledger.Posting{
		{Account: "a", Side: ledger.Debit, Amount: amt("1.00"), Currency: "USD"},
		{Account: "b", Side: ledger.Credit, Amount: amt("1.00"), Currency: "USD"},
	}}
}

func TestNewEntryValidate(t *testing.T) {
	t.Parallel()
	year := func(y int) *time.Time { tm := time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC); return &tm }
	many := func(n int) []ledger.Posting {
		ps := make([]ledger.Posting, n)
		for i := range ps {
			side := ledger.Debit
			if i%2 == 1 {
				side = ledger.Credit
			}
			ps[i] = ledger.Posting{Account: "a", Side: side, Amount: amt("1"), Currency: "USD"}
		}
		return ps
	}
	p := func(acct string, side ledger.Side, amount, cur string) ledger.Posting {
		return ledger.Posting{Account: acct, Side: side, Amount: amt(amount), Currency: cur}
	}
	for _, tc := range []struct {
		name string
		edit func(e *ledger.NewEntry)
		err  error // nil: valid
	}{
		{"valid", func(*ledger.NewEntry) {}, nil},
		{"key of max length", func(e *ledger.NewEntry) { e.IdempotencyKey = strings.Repeat("k", ledger.MaxIdempotencyKey) }, nil},
		{"description of max runes", func(e *ledger.NewEntry) { e.Description = strings.Repeat("é", ledger.MaxDescription) }, nil},
		{"empty description", func(e *ledger.NewEntry) { e.Description = "" }, nil},
		{"metadata object", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`{"b":1,"a":[true]}`) }, nil},
		{"metadata null", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`null`) }, nil},
		{"metadata blank", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage("  ") }, nil},
		{"effective 1900", func(e *ledger.NewEntry) { e.EffectiveAt = year(1900) }, nil},
		{"effective 9999", func(e *ledger.NewEntry) { e.EffectiveAt = year(9999) }, nil},
		{"max postings", func(e *ledger.NewEntry) { e.Postings = many(ledger.MaxPostings) }, nil},
		{"same account both sides", func(e *ledger.NewEntry) {
			e.Postings = []ledger.Posting{p("a", ledger.Debit, "5", "USD"), p("a", ledger.Credit, "5", "USD")}
		}, nil},
		{"two currencies each balanced", func(e *ledger.NewEntry) {
			e.Postings = []ledger.Posting{p("a", ledger.Debit, "5", "USD"), p("b", ledger.Credit, "5", "USD"),
				p("c", ledger.Debit, "700", "JPY"), p("d", ledger.Credit, "300", "JPY"), p("e", ledger.Credit, "400", "JPY")}
		}, nil},
		{"kwd three places", func(e *ledger.NewEntry) {
			e.Postings = []ledger.Posting{p("a", ledger.Debit, "0.001", "KWD"), p("b", ledger.Credit, "0.001", "KWD")}
		}, nil},

		{"missing key", func(e *ledger.NewEntry) { e.IdempotencyKey = "" }, ledger.ErrInvalid},
		{"key too long", func(e *ledger.NewEntry) { e.IdempotencyKey = strings.Repeat("k", ledger.MaxIdempotencyKey+1) }, ledger.ErrInvalid},
		{"key not utf-8", func(e *ledger.NewEntry) { e.IdempotencyKey = "k\xff" }, ledger.ErrInvalid},
		{"description too long", func(e *ledger.NewEntry) { e.Description = strings.Repeat("é", ledger.MaxDescription+1) }, ledger.ErrInvalid},
		{"description not utf-8", func(e *ledger.NewEntry) { e.Description = "d\xff" }, ledger.ErrInvalid},
		{"metadata array", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`[1]`) }, ledger.ErrInvalid},
		{"metadata number", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`1`) }, ledger.ErrInvalid},
		{"metadata two objects", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`{} {}`) }, ledger.ErrInvalid},
		{"metadata malformed", func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`{"a":`) }, ledger.ErrInvalid},
		{"metadata too large", func(e *ledger.NewEntry) {
			e.Metadata = json.RawMessage(`{"a":"` + strings.Repeat("x", ledger.MaxMetadataBytes) + `"}`)
		}, ledger.ErrInvalid},
		{"effective 1899", func(e *ledger.NewEntry) { e.EffectiveAt = year(1899) }, ledger.ErrInvalid},
		{"effective 10000", func(e *ledger.NewEntry) { e.EffectiveAt = year(10000) }, ledger.ErrInvalid},
		{"no postings", func(e *ledger.NewEntry) { e.Postings = nil }, ledger.ErrInvalid},
		{"one posting", func(e *ledger.NewEntry) { e.Postings = e.Postings[:1] }, ledger.ErrInvalid},
		{"too many postings", func(e *ledger.NewEntry) { e.Postings = many(ledger.MaxPostings + 2) }, ledger.ErrInvalid},
		{"bad account code", func(e *ledger.NewEntry) { e.Postings[0].Account = "a//b" }, ledger.ErrInvalid},
		{"empty account code", func(e *ledger.NewEntry) { e.Postings[1].Account = "" }, ledger.ErrInvalid},
		{"empty side", func(e *ledger.NewEntry) { e.Postings[0].Side = "" }, ledger.ErrInvalid},
		{"capitalised side", func(e *ledger.NewEntry) { e.Postings[0].Side = "Debit" }, ledger.ErrInvalid},
		{"unknown currency", func(e *ledger.NewEntry) { e.Postings[0].Currency = "XXX"; e.Postings[1].Currency = "XXX" }, ledger.ErrUnknownCurrency},
		{"zero amount", func(e *ledger.NewEntry) { e.Postings[0].Amount = amt("0"); e.Postings[1].Amount = amt("0") }, ledger.ErrInvalidAmount},
		{"negative amounts", func(e *ledger.NewEntry) { e.Postings[0].Amount = amt("-1"); e.Postings[1].Amount = amt("-1") }, ledger.ErrInvalidAmount},
		{"too precise", func(e *ledger.NewEntry) { e.Postings[0].Amount = amt("1.001"); e.Postings[1].Amount = amt("1.001") }, ledger.ErrInvalidAmount},
		{"jpy fraction", func(e *ledger.NewEntry) {
			e.Postings = []ledger.Posting{p("a", ledger.Debit, "0.5", "JPY"), p("b", ledger.Credit, "0.5", "JPY")}
		}, ledger.ErrInvalidAmount},
		{"max amount", func(e *ledger.NewEntry) {
			e.Postings[0].Amount = ledger.MaxAmount
			e.Postings[1].Amount = ledger.MaxAmount
		}, ledger.ErrInvalidAmount},
		{"unbalanced", func(e *ledger.NewEntry) { e.Postings[1].Amount = amt("0.99") }, ledger.ErrUnbalanced},
		{"all debits", func(e *ledger.NewEntry) { e.Postings[1].Side = ledger.Debit }, ledger.ErrUnbalanced},
		{"balanced only across currencies", func(e *ledger.NewEntry) {
			e.Postings = []ledger.Posting{p("a", ledger.Debit, "5", "USD"), p("b", ledger.Credit, "5", "EUR")}
		}, ledger.ErrUnbalanced},
		{"one currency of two unbalanced", func(e *ledger.NewEntry) {
			e.Postings = []ledger.Posting{p("a", ledger.Debit, "5", "USD"), p("b", ledger.Credit, "5", "USD"),
				p("c", ledger.Debit, "7", "JPY"), p("d", ledger.Credit, "6", "JPY")}
		}, ledger.ErrUnbalanced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := validEntry()
			tc.edit(&e)
			err := e.Validate()
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
			require.ErrorIs(t, err, ledger.ErrInvalid)
			if tc.err == ledger.ErrUnbalanced {
				require.NotErrorIs(t, err, ledger.ErrInvalidAmount)
			}
		})
	}
}

func TestNewAccountValidate(t *testing.T) {
	t.Parallel()
	ok := ledger.NewAccount{Code: "org/cash", Type: ledger.Asset, Currency: "USD"}
	require.NoError(t, ok.Validate())
	for _, tc := range []struct {
		name string
		edit func(a *ledger.NewAccount)
		err  error
	}{
		{"bad code", func(a *ledger.NewAccount) { a.Code = "a b" }, ledger.ErrInvalid},
		{"bad type", func(a *ledger.NewAccount) { a.Type = "cash" }, ledger.ErrInvalid},
		{"unknown currency", func(a *ledger.NewAccount) { a.Currency = "XXX" }, ledger.ErrUnknownCurrency},
		{"metadata not an object", func(a *ledger.NewAccount) { a.Metadata = json.RawMessage(`"x"`) }, ledger.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.edit(&a)
			require.ErrorIs(t, a.Validate(), tc.err)
		})
	}
}

func TestPostingJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     ledger.Posting // when err is nil
		err      error
	}{
		{name: "string amount", in: `{"account":"a/b","side":"debit","amount":"12.50","currency":"USD"}`,
			want: ledger.Posting{Account: "a/b", Side: ledger.Debit, Amount: amt("12.5"), Currency: "USD"}},
		{name: "escaped string amount", in: `{"account":"a","side":"credit","amount":"\u0031\u0032","currency":"JPY"}`,
			want: ledger.Posting{Account: "a", Side: ledger.Credit, Amount: amt("12"), Currency: "JPY"}},
		{name: "field names are case-insensitive", in: `{"Account":"a","SIDE":"credit","Amount":"1","Currency":"USD"}`,
			want: ledger.Posting{Account: "a", Side: ledger.Credit, Amount: amt("1"), Currency: "USD"}},
		// Decoding checks the syntax only; the currency's rules are Validate's.
		{name: "zero decodes, Validate refuses", in: `{"account":"a","side":"debit","amount":"0","currency":"USD"}`,
			want: ledger.Posting{Account: "a", Side: ledger.Debit, Amount: amt("0"), Currency: "USD"}},

		{name: "number amount", in: `{"account":"a","side":"debit","amount":12.5,"currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "integer amount", in: `{"account":"a","side":"debit","amount":12,"currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "null amount", in: `{"account":"a","side":"debit","amount":null,"currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "missing amount", in: `{"account":"a","side":"debit","currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "boolean amount", in: `{"account":"a","side":"debit","amount":true,"currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "object amount", in: `{"account":"a","side":"debit","amount":{"v":"1"},"currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "exponent string", in: `{"account":"a","side":"debit","amount":"1e3","currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "negative string", in: `{"account":"a","side":"debit","amount":"-1","currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "empty string", in: `{"account":"a","side":"debit","amount":"","currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "spaced string", in: `{"account":"a","side":"debit","amount":" 1","currency":"USD"}`, err: ledger.ErrInvalidAmount},
		{name: "unknown field", in: `{"account":"a","side":"debit","amount":"1","currency":"USD","memo":"x"}`, err: ledger.ErrInvalid},
		{name: "not an object", in: `["a","debit","1","USD"]`, err: ledger.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p ledger.Posting
			err := json.Unmarshal([]byte(tc.in), &p)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.ErrorIs(t, err, ledger.ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want.Account, p.Account)
			require.Equal(t, tc.want.Side, p.Side)
			require.Equal(t, tc.want.Currency, p.Currency)
			require.True(t, tc.want.Amount.Equal(p.Amount), "amount %s, want %s", p.Amount, tc.want.Amount)
		})
	}

	// The error survives decoding a whole entry, so the API can answer with the right problem.
	var e ledger.NewEntry
	err := json.Unmarshal([]byte(`{"idempotency_key":"k","postings":[{"account":"a","side":"debit","amount":1,"currency":"USD"}]}`), &e)
	require.ErrorIs(t, err, ledger.ErrInvalidAmount)

	// Zero decodes but does not validate.
	err = json.Unmarshal([]byte(`{"idempotency_key":"k","postings":[
		{"account":"a","side":"debit","amount":"0","currency":"USD"},
		{"account":"b","side":"credit","amount":"0","currency":"USD"}]}`), &e)
	require.NoError(t, err)
	require.ErrorIs(t, e.Validate(), ledger.ErrInvalidAmount)

	// Encoding writes the amount as a string with the currency's places.
	b, err := json.Marshal(ledger.Posting{Account: "a", Side: ledger.Credit, Amount: amt("12.5"), Currency: "KWD"})
	require.NoError(t, err)
	require.JSONEq(t, `{"account":"a","side":"credit","amount":"12.500","currency":"KWD"}`, string(b))
	require.Equal(t, `{"account":"a","side":"credit","amount":"12.500","currency":"KWD"}`, string(b))
}

// TestUnbalancedSaysWhichSide: an unbalanced entry names the side that exceeds the other,
// by a positive amount.
func TestUnbalancedSaysWhichSide(t *testing.T) {
	t.Parallel()
	e := validEntry()
	e.Postings[1].Amount = e.Postings[0].Amount.Add(decimal.RequireFromString("10"))
	err := e.Validate()
	require.ErrorIs(t, err, ledger.ErrUnbalanced)
	require.Contains(t, err.Error(), "USD credits exceed debits by 10.00")
	require.NotContains(t, err.Error(), "-")

	e = validEntry()
	e.Postings[0].Amount = e.Postings[0].Amount.Add(decimal.RequireFromString("0.5"))
	err = e.Validate()
	require.ErrorIs(t, err, ledger.ErrUnbalanced)
	require.Contains(t, err.Error(), "USD debits exceed credits by 0.50")
}
