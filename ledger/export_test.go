package ledger

// Export tests, inside the package: they read export files back with the parser verify
// uses, and compare the canonical encoding's parts directly. The database tests build their
// own ledger with the public API.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
)

// exFixture is a ledger with one of everything an export must carry: two programs and their
// participants, USD and JPY, expense and revenue accounts, pending entries committed in part
// and voided, reversals (one of a commit), descriptions that need quoting, metadata with
// nested values and numbers, and back-dated effective dates.
type exFixture struct {
	ctx    context.Context
	l      *Ledger
	ids    map[string]Entry // by name
	byName map[string]int64 // seq by name
}

func exSetup(t *testing.T) *exFixture {
	t.Helper()
	pool := dbtest.New(t)
	l := New(pool, nil)
	t.Cleanup(l.Close)
	f := &exFixture{ctx: context.Background(), l: l, ids: map[string]Entry{}, byName: map[string]int64{}}
	for _, na := range []NewAccount{
		{Code: "org/cash/stripe", Type: Asset, Currency: "USD"},
		{Code: "org/cash/stripe/jpy", Type: Asset, Currency: "JPY"},
		{Code: "program/p/fund", Type: Equity, Currency: "USD", NoOverdraft: true},
		{Code: "program/q/fund", Type: Equity, Currency: "USD", NoOverdraft: true},
		{Code: "program/j/fund", Type: Equity, Currency: "JPY", NoOverdraft: true},
		{Code: "participant/ana/wallet", Type: Liability, Currency: "USD", NoOverdraft: true},
		{Code: "participant/ben/wallet", Type: Liability, Currency: "USD", NoOverdraft: true},
		{Code: "org/fees:bank", Type: Expense, Currency: "USD"},
		{Code: "org/interest", Type: Revenue, Currency: "USD"},
	} {
		_, _, err := l.CreateAccount(f.ctx, na)
		require.NoError(t, err)
	}
	return f
}

func exDay(s string) *time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return &d
}

func exPosting(account string, side Side, amount, currency string) Posting {
	return Posting{Account: account, Side: side, Amount: decimal.RequireFromString(amount), Currency: currency}
}

// post records an entry under name.
func (f *exFixture) post(t *testing.T, name string, e Entry, err error) {
	t.Helper()
	require.NoError(t, err, name)
	f.ids[name], f.byName[name] = e, e.Seq
}

// build posts the fixture's history.
func (f *exFixture) build(t *testing.T) {
	t.Helper()
	ctx, l := f.ctx, f.l
	e, err := l.Post(ctx, NewEntry{IdempotencyKey: "fund-p", Description: `donor "Acme, Inc." funds p`,
		EffectiveAt: exDay("2026-01-05"), Metadata: json.RawMessage(`{"program":"p","flow":"fund"}`),
		Postings: []Posting{exPosting("org/cash/stripe", Debit, "500.00", "USD"), exPosting("program/p/fund", Credit, "500.00", "USD")}})
	f.post(t, "fund-p", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "fund-q", Description: "donor funds q",
		EffectiveAt: exDay("2026-01-20"), Metadata: json.RawMessage(`{"program":"q","flow":"fund"}`),
		Postings: []Posting{exPosting("org/cash/stripe", Debit, "300", "USD"), exPosting("program/q/fund", Credit, "300", "USD")}})
	f.post(t, "fund-q", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "award-ana", Description: "award, \"first\"\r\nline two — ünïcode\t✓",
		EffectiveAt: exDay("2026-02-01"),
		Metadata: json.RawMessage(`{"program":"p","participant":"ana","n":1.50,"big":12345678901234567890,
			"nested":{"b":[1,2.0,"x"],"a":"x<y&z"},"empty":{},"none":null}`),
		Postings: []Posting{exPosting("program/p/fund", Debit, "50.00", "USD"), exPosting("participant/ana/wallet", Credit, "50.00", "USD")}})
	f.post(t, "award-ana", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "award-ben", Description: "award ben (q)", EffectiveAt: exDay("2026-02-02"),
		Metadata: json.RawMessage(`{"program":"q","participant":"ben"}`),
		Postings: []Posting{exPosting("program/q/fund", Debit, "40.00", "USD"), exPosting("participant/ben/wallet", Credit, "40.00", "USD")}})
	f.post(t, "award-ben", e, err)
	e, err = l.PostPending(ctx, NewEntry{IdempotencyKey: "payout-ana-1", Description: "payout ana", EffectiveAt: exDay("2026-02-10"),
		Metadata: json.RawMessage(`{"program":"p","person":"ana","flow":"payout"}`),
		Postings: []Posting{exPosting("participant/ana/wallet", Debit, "20.00", "USD"), exPosting("org/cash/stripe", Credit, "20.00", "USD")}})
	f.post(t, "payout-ana-1", e, err)
	e, err = l.Commit(ctx, f.ids["payout-ana-1"].ID, Resolution{Description: "paid in part",
		Postings: []Posting{exPosting("participant/ana/wallet", Debit, "15.00", "USD"), exPosting("org/cash/stripe", Credit, "15.00", "USD")}})
	f.post(t, "commit-ana-1", e, err)
	e, err = l.PostPending(ctx, NewEntry{IdempotencyKey: "payout-ana-2", Description: "payout ana again", EffectiveAt: exDay("2026-02-11"),
		Metadata: json.RawMessage(`{"program":"p","person":"ana","flow":"payout"}`),
		Postings: []Posting{exPosting("participant/ana/wallet", Debit, "10.00", "USD"), exPosting("org/cash/stripe", Credit, "10.00", "USD")}})
	f.post(t, "payout-ana-2", e, err)
	e, err = l.Void(ctx, f.ids["payout-ana-2"].ID, Resolution{Description: "bank refused"})
	f.post(t, "void-ana-2", e, err)
	e, err = l.Reverse(ctx, f.ids["commit-ana-1"].ID, Resolution{Description: "returned by the bank"})
	f.post(t, "reverse-commit", e, err)
	e, err = l.Reverse(ctx, f.ids["award-ben"].ID, Resolution{})
	f.post(t, "reverse-award-ben", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "fund-j", Description: "yen", EffectiveAt: exDay("2026-03-01"),
		Metadata: json.RawMessage(`{"program":"j"}`),
		Postings: []Posting{exPosting("org/cash/stripe/jpy", Debit, "1000", "JPY"), exPosting("program/j/fund", Credit, "1000", "JPY")}})
	f.post(t, "fund-j", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "fee-p", Description: "bank fee paid from p's fund", EffectiveAt: exDay("2026-03-02"),
		Postings: []Posting{exPosting("program/p/fund", Debit, "1.25", "USD"), exPosting("org/cash/stripe", Credit, "1.25", "USD")}})
	f.post(t, "fee-p", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "bank-fee", Description: "bank fee", EffectiveAt: exDay("2026-03-03"),
		Postings: []Posting{exPosting("org/fees:bank", Debit, "2.00", "USD"), exPosting("org/cash/stripe", Credit, "2.00", "USD")}})
	f.post(t, "bank-fee", e, err)
	e, err = l.Post(ctx, NewEntry{IdempotencyKey: "interest", Description: "", EffectiveAt: exDay("2026-03-31"),
		Postings: []Posting{exPosting("org/cash/stripe", Debit, "0.07", "USD"), exPosting("org/interest", Credit, "0.07", "USD")}})
	f.post(t, "interest", e, err)
}

func (f *exFixture) export(t *testing.T, opt ExportOptions) ([]byte, ExportSummary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := f.l.Export(f.ctx, &buf, opt)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), sum.Bytes)
	return buf.Bytes(), sum
}

// readRows reads an export file back with verify's parser.
func readRows(t *testing.T, data []byte) ([]*exportRow, ExportFormat) {
	t.Helper()
	rr, format, err := newRowReader(bytes.NewReader(data))
	require.NoError(t, err)
	var rows []*exportRow
	for {
		row, err := rr.next()
		if errors.Is(err, io.EOF) {
			return rows, format
		}
		require.NoError(t, err)
		rows = append(rows, row)
	}
}

// TestExportRoundTrip exports the fixture as CSV and JSON Lines, reads the files back and
// finds every posting of every entry (as the ledger's own API returns them) with every
// field, in sequence and line order; verify recomputes each entry's link from the file.
func TestExportRoundTrip(t *testing.T) {
	t.Parallel()
	f := exSetup(t)
	f.build(t)
	seal, err := f.l.Seal(f.ctx, SealOptions{})
	require.NoError(t, err)
	// One entry after the seal: exported without links, at the end.
	e, err := f.l.Post(f.ctx, NewEntry{IdempotencyKey: "late", Description: "after the seal",
		Postings: []Posting{exPosting("org/cash/stripe", Debit, "1.00", "USD"), exPosting("program/p/fund", Credit, "1.00", "USD")}})
	f.post(t, "late", e, err)

	var want []Entry
	for after := int64(0); ; {
		page, err := f.l.Entries(f.ctx, EntryFilter{AfterSeq: after, Limit: 1000})
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		want = append(want, page...)
		after = page[len(page)-1].Seq
	}
	types := map[string]AccountType{}
	accts, err := f.l.Accounts(f.ctx, AccountFilter{Limit: 1000})
	require.NoError(t, err)
	for _, a := range accts {
		types[a.Code] = a.Type
	}
	postings := 0
	for _, e := range want {
		postings += len(e.Lines)
	}

	for _, format := range []ExportFormat{FormatCSV, FormatJSONL} {
		t.Run(string(format), func(t *testing.T) {
			data, sum := f.export(t, ExportOptions{Format: format})
			require.Equal(t, int64(postings), sum.Postings)
			require.Equal(t, int64(len(want)), sum.Entries)
			require.Equal(t, int64(len(want)-1), sum.Sealed)
			require.Equal(t, seal.HeadHash, sum.LastHash)
			require.Equal(t, "all", sum.Scope)
			if format == FormatCSV {
				require.True(t, bytes.HasPrefix(data, []byte(strings.Join(exportColumns, ",")+"\r\n")), "a header row, CRLF")
				// encoding/csv reads it too (it drops the carriage return of the description's
				// CRLF, the reason verify has its own reader).
				recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
				require.NoError(t, err)
				require.Len(t, recs, postings+1)
			} else {
				sc := bufio.NewScanner(bytes.NewReader(data))
				n := 0
				for sc.Scan() {
					var m map[string]any
					require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
					require.Len(t, m, len(exportColumns))
					n++
				}
				require.Equal(t, postings, n)
			}
			rows, got := readRows(t, data)
			require.Equal(t, format, got)
			require.Len(t, rows, postings)
			i := 0
			for _, e := range want {
				for _, ln := range e.Lines {
					r := rows[i]
					i++
					require.Equal(t, e.ID.String(), r.EntryID)
					require.Equal(t, e.Seq, r.Seq)
					require.Equal(t, string(e.Kind), r.Kind)
					if e.IdempotencyKey == "" {
						require.Nil(t, r.IdempotencyKey)
					} else {
						require.Equal(t, e.IdempotencyKey, *r.IdempotencyKey)
					}
					require.Equal(t, e.Description, r.Description, "byte for byte")
					require.Equal(t, string(appendTime(nil, e.EffectiveAt)), r.EffectiveAt)
					require.Equal(t, string(appendTime(nil, e.PostedAt)), r.PostedAt)
					require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`, r.PostedAt)
					require.JSONEq(t, string(e.Metadata), string(r.Metadata))
					if e.TargetID == nil {
						require.Nil(t, r.TargetID)
					} else {
						require.Equal(t, e.TargetID.String(), *r.TargetID)
					}
					require.Equal(t, ln.Line, r.Line)
					require.Equal(t, ln.Account, r.Account)
					require.Equal(t, string(types[ln.Account]), r.AccountType)
					require.Equal(t, string(ln.Phase), r.Phase)
					require.Equal(t, string(ln.Side), r.Side)
					require.Equal(t, FormatAmount(ln.Amount, ln.Currency), r.Amount, "the currency's places")
					require.Equal(t, ln.Currency, r.Currency)
					require.Equal(t, "all", r.ExportScope)
					if e.Seq == f.byName["late"] {
						require.Nil(t, r.EntryHash)
						require.Nil(t, r.PrevHash)
					} else {
						require.NotNil(t, r.EntryHash)
						require.Len(t, *r.EntryHash, 64)
					}
				}
			}
			rep, err := VerifyExport(f.ctx, bytes.NewReader(data), VerifyOptions{})
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)
			require.Equal(t, int64(len(want)-1), rep.Entries)
			require.Equal(t, int64(1), rep.Unsealed)
			require.False(t, rep.Partial)
			require.Equal(t, rep.Entries, rep.Linked, "linked from the genesis")
			require.Equal(t, seal.HeadHash, rep.HeadHash)
		})
	}
}

// TestExportHledgerBalancesEqualTrialBalance: hledger reads the journal (check, print) and
// its balance of every account is Tandem's trial balance, after pending entries, a partial
// commit, a void, reversals (one of a commit), yen and an account code with a colon.
func TestExportHledgerBalancesEqualTrialBalance(t *testing.T) {
	t.Parallel()
	hledger, err := exec.LookPath("hledger")
	if err != nil {
		if os.Getenv("TANDEM_REQUIRE_HLEDGER") == "1" {
			t.Fatal("hledger is not installed and TANDEM_REQUIRE_HLEDGER=1: install Debian's hledger (apt-get install hledger)")
		}
		t.Skip("hledger is not installed (apt-get install hledger); set TANDEM_REQUIRE_HLEDGER=1 to make this a failure")
	}
	f := exSetup(t)
	f.build(t)
	// A pending entry still open: its hold is no posted balance.
	_, err = f.l.PostPending(f.ctx, NewEntry{IdempotencyKey: "open-hold", Description: "in flight",
		Postings: []Posting{exPosting("participant/ana/wallet", Debit, "5.00", "USD"), exPosting("org/cash/stripe", Credit, "5.00", "USD")}})
	require.NoError(t, err)
	_, err = f.l.Seal(f.ctx, SealOptions{})
	require.NoError(t, err)

	data, _ := f.export(t, ExportOptions{Format: FormatHledger})
	file := filepath.Join(t.TempDir(), "ledger.journal")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(hledger, append([]string{"-f", file}, args...)...).CombinedOutput()
		require.NoError(t, err, "hledger %s: %s\n--- journal ---\n%s", strings.Join(args, " "), out, data)
		return string(out)
	}
	run("check")
	printed := run("print")
	require.Contains(t, printed, "1000 JPY")
	require.Contains(t, printed, "expenses:org:fees%3Abank")

	// hledger's balance, one row per account: "account","balance".
	out := run("balance", "--flat", "--no-total", "-O", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err, out)
	require.Equal(t, []string{"account", "balance"}, recs[0])
	got := map[string]string{}
	for _, r := range recs[1:] {
		got[r[0]] = r[1]
	}
	tb, err := f.l.TrialBalance(f.ctx)
	require.NoError(t, err)
	want := map[string]string{}
	for _, ln := range tb.Lines {
		want[hledgerAccount(ln.Account, string(ln.Type))] = FormatAmount(ln.Debit.Sub(ln.Credit), ln.Currency) + " " + ln.Currency
	}
	require.NotEmpty(t, want)
	require.Equal(t, want, got, "hledger balance = Tandem's trial balance\n%s", out)
	// The yen and dollar totals are zero in both.
	for _, tot := range tb.Totals {
		require.True(t, tot.Balanced)
	}
}

// TestExportFilters: a program's export holds its entries and what resolved or reversed
// them; dates bound the effective date, from included, to not; filtered exports verify
// entry by entry and say they are partial.
func TestExportFilters(t *testing.T) {
	t.Parallel()
	f := exSetup(t)
	f.build(t)
	_, err := f.l.Seal(f.ctx, SealOptions{})
	require.NoError(t, err)
	seqs := func(data []byte) []int64 {
		rows, _ := readRows(t, data)
		var out []int64
		for _, r := range rows {
			if len(out) == 0 || out[len(out)-1] != r.Seq {
				out = append(out, r.Seq)
			}
		}
		return out
	}
	names := func(ns ...string) []int64 {
		var out []int64
		for _, n := range ns {
			out = append(out, f.byName[n])
		}
		slices.Sort(out)
		return out
	}

	data, sum := f.export(t, ExportOptions{Format: FormatJSONL, Filter: ExportFilter{Program: "p"}})
	require.Equal(t, names("fund-p", "award-ana", "payout-ana-1", "commit-ana-1", "payout-ana-2", "void-ana-2",
		"reverse-commit", "fee-p"), seqs(data), "p's entries, its payouts' commit and void, the commit's reversal, the fee on its fund")
	require.Equal(t, "program=p", sum.Scope)
	rep, err := VerifyExport(f.ctx, bytes.NewReader(data), VerifyOptions{Partial: true})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.True(t, rep.Partial)
	require.Equal(t, "program=p", rep.Scope)
	require.Positive(t, rep.Gaps)
	require.Equal(t, rep.Entries, rep.Linked+rep.Gaps)

	data, _ = f.export(t, ExportOptions{Format: FormatCSV, Filter: ExportFilter{Program: "q"}})
	require.Equal(t, names("fund-q", "award-ben", "reverse-award-ben"), seqs(data))

	from, to := exDay("2026-02-01"), exDay("2026-02-11")
	data, sum = f.export(t, ExportOptions{Format: FormatCSV, Filter: ExportFilter{From: *from, To: *to}})
	require.Equal(t, names("award-ana", "award-ben", "payout-ana-1"), seqs(data), "effective on 1 Feb included, on 11 Feb not")
	require.Equal(t, "from=2026-02-01;to=2026-02-11", sum.Scope)
	data, _ = f.export(t, ExportOptions{Format: FormatCSV, Filter: ExportFilter{From: *from, To: *to, Program: "p"}})
	require.Equal(t, names("award-ana", "payout-ana-1"), seqs(data))

	for name, c := range map[string]struct {
		opt  ExportOptions
		want error
	}{
		"unknown program":     {ExportOptions{Format: FormatCSV, Filter: ExportFilter{Program: "nope"}}, ErrUnknownProgram},
		"program with slash":  {ExportOptions{Format: FormatCSV, Filter: ExportFilter{Program: "p/fund"}}, ErrInvalid},
		"from after to":       {ExportOptions{Format: FormatCSV, Filter: ExportFilter{From: *to, To: *from}}, ErrInvalid},
		"from equals to":      {ExportOptions{Format: FormatCSV, Filter: ExportFilter{From: *to, To: *to}}, ErrInvalid},
		"unknown format":      {ExportOptions{Format: "xlsx"}, ErrInvalid},
		"empty format":        {ExportOptions{}, ErrInvalid},
		"program injection":   {ExportOptions{Format: FormatCSV, Filter: ExportFilter{Program: "p' OR '1'='1"}}, ErrInvalid},
		"program too unusual": {ExportOptions{Format: FormatCSV, Filter: ExportFilter{Program: "p q"}}, ErrInvalid},
	} {
		var buf bytes.Buffer
		_, err := f.l.Export(f.ctx, &buf, c.opt)
		require.ErrorIs(t, err, c.want, name)
		require.Zero(t, buf.Len(), "%s: nothing written", name)
	}
}

// TestExportProgress: the callback sees the total first counted, then the end.
func TestExportProgress(t *testing.T) {
	t.Parallel()
	f := exSetup(t)
	for i := range 600 {
		_, err := f.l.Post(f.ctx, NewEntry{IdempotencyKey: fmt.Sprintf("e%d", i),
			Postings: []Posting{exPosting("org/cash/stripe", Debit, "1.00", "USD"), exPosting("program/p/fund", Credit, "1.00", "USD")}})
		require.NoError(t, err)
	}
	var seen []ExportProgress
	sum, err := f.l.Export(f.ctx, io.Discard, ExportOptions{Format: FormatCSV, ProgressInterval: time.Nanosecond,
		ProgressFunc: func(p ExportProgress) { seen = append(seen, p) }})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(seen), 3, "every 256 entries, then the end")
	for _, p := range seen {
		require.Equal(t, int64(1200), p.Total)
	}
	last := seen[len(seen)-1]
	require.True(t, last.Done)
	require.Equal(t, sum.Postings, last.Postings)
	require.Equal(t, sum.Bytes, last.Bytes)
	require.False(t, seen[0].Done)
	require.Less(t, seen[0].Postings, last.Postings)
}

func TestCanonicalAmount(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, cur, want string }{
		{"12.50", "USD", "12.50"}, {"12.5", "USD", "12.50"}, {"12", "USD", "12.00"}, {"012.50", "USD", "12.50"},
		{"12.500000", "USD", "12.50"}, {"12.505", "USD", "12.505"}, {"12.5050", "USD", "12.505"}, {"0.07", "USD", "0.07"},
		{"1000", "JPY", "1000"}, {"1000.0", "JPY", "1000"}, {"1000.5", "JPY", "1000.5"}, {"1.000", "BHD", "1.000"},
		{"1e2", "USD", "1e2"}, {"1e999999999", "USD", "1e999999999"}, {"-5.00", "USD", "-5.00"}, {"-0", "USD", "0.00"},
		{"abc", "USD", "abc"}, {"", "USD", ""}, {"12.50", "XXX", "12.50"}, {"1.", "USD", "1."}, {"+1.00", "USD", "+1.00"},
		{" 1.00", "USD", " 1.00"}, {"0.10", "JPY", "0.1"}, {"000", "JPY", "0"},
	} {
		require.Equal(t, c.want, canonicalAmount(c.in, c.cur), "%q %s", c.in, c.cur)
	}
}

func TestAppendTime(t *testing.T) {
	t.Parallel()
	for _, tm := range []time.Time{
		time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), time.Date(1900, 1, 1, 0, 0, 0, 123456789, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.FixedZone("x", 3600)), time.Unix(1_800_000_000, 1000),
	} {
		require.Equal(t, tm.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), string(appendTime(nil, tm)))
	}
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		``: `{}`, `null`: `{}`, `{}`: `{}`, ` {"b": 1, "a": 2.50} `: `{"a":2.50,"b":1}`,
		`{"big": 12345678901234567890123, "e": -0.5e+10}`:             `{"big":12345678901234567890123,"e":-0.5e+10}`,
		`{"a": {"d": [3, {"z": 1, "y": 2}], "c": "x<y&z"}}`:           `{"a":{"c":"x<y&z","d":[3,{"y":2,"z":1}]}}`,
		`{"s": "\u00e9\u003c\n\t\"\\\/\b\u0001 \ud83d\udcb8 \u2028"}`: "{\"s\":\"é<\\n\\t\\\"\\\\/\\u0008\\u0001 💸 \u2028\"}",
		`{"lone": "\ud83d!"}`:                                "{\"lone\":\"\uFFFD!\"}",
		`{"k": 1, "k": 2, "a": [true, false, null, [], {}]}`: `{"a":[true,false,null,[],{}],"k":2}`,
		`{"é": 1, "z": 2, "Z": 3}`:                           `{"Z":3,"z":2,"é":1}`,
		`not json`:                                           `not json`, `{"a":1} {"b":2}`: `{"a":1} {"b":2}`, `{"a":01}`: `{"a":01}`, `{"a":1.}`: `{"a":1.}`,
		`{"a":"\x"}`: `{"a":"\x"}`, `{"a":tru}`: `{"a":tru}`, `[1,]`: `[1,]`, `{"a" 1}`: `{"a" 1}`,
		strings.Repeat("[", 300) + strings.Repeat("]", 300): strings.Repeat("[", 300) + strings.Repeat("]", 300),
	} {
		require.Equal(t, want, string(canonicalJSON([]byte(in))), in)
	}
	// PostgreSQL's jsonb text (keys by length, spaces) and the compact form agree.
	require.Equal(t, canonicalJSON([]byte(`{"n": 1.50, "flow": "award", "program": "p"}`)),
		canonicalJSON([]byte(`{"program":"p","flow":"award","n":1.50}`)))
}

// FuzzCanonicalJSON: the canonical form of valid JSON is valid JSON with the same meaning,
// and canonical already; invalid JSON is kept as written.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"b":[1,2,{"c":"\u00e9"}],"a":null}`, `[1.5e3,-0,"x\ny"]`, `"\ud83d\udcb8"`, `{"k":1,"k":2}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := canonicalJSON(in)
		trimmed := bytes.TrimSpace(in)
		if !json.Valid(in) || len(trimmed) == 0 || string(trimmed) == "null" {
			return
		}
		require.True(t, json.Valid(out), "%q -> %q", in, out)
		require.Equal(t, out, canonicalJSON(out), "canonical twice")
		var a, b any
		decA := json.NewDecoder(bytes.NewReader(in))
		decA.UseNumber()
		decB := json.NewDecoder(bytes.NewReader(out))
		decB.UseNumber()
		require.NoError(t, decA.Decode(&a))
		require.NoError(t, decB.Decode(&b))
		if utf8.Valid(in) {
			require.Equal(t, a, b, "%q -> %q", in, out)
		}
	})
}

// exRandomEntries makes n linked entries with awkward text: quotes, commas, CR, LF, tabs,
// control characters, non-ASCII, U+2028, and metadata of every JSON shape.
func exRandomEntries(rng *mrand.Rand, n int) []chainEntry {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	text := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pick("a", "Z", " ", ",", `"`, `""`, "\r", "\n", "\r\n", "\t", "\x01", "é", "—", "\u2028", "💸", "\\", "{", "'", ";", "=1+1"))
		}
		return b.String()
	}
	var out []chainEntry
	prev := genesis
	var scratch []byte
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		e := chainEntry{ID: uuid.New().String(), Seq: int64(i*3 + 1), Kind: pick("standard", "pending", "commit", "void", "reversal"),
			Key: pick("", "k-"+text()), Description: text(),
			EffectiveAt: t0.Add(time.Duration(rng.Int64N(1e15)) * time.Microsecond),
			PostedAt:    t0.Add(time.Duration(rng.Int64N(1e15)) * time.Microsecond)}
		meta := map[string]any{"program": text(), "n": json.Number(pick("1", "1.50", "-2e3", "12345678901234567890")),
			"list": []any{text(), true, nil, map[string]any{"z": 1, "a": text()}}}
		e.Metadata, _ = json.Marshal(meta)
		if e.Kind == "commit" || e.Kind == "void" || e.Kind == "reversal" {
			e.TargetID = uuid.New().String()
		}
		for l := range 2 + rng.IntN(3) {
			cur := pick("USD", "JPY", "BHD")
			exp, _ := Exponent(cur)
			e.Lines = append(e.Lines, chainLine{Line: l + 1, Account: pick("org/cash/stripe", "participant/a:b/wallet", "program/p/fund"),
				AccountType: pick("asset", "liability", "equity"), Phase: pick("posted", "hold", "release"), Side: pick("debit", "credit"),
				Amount: decimal.New(1+rng.Int64N(1e9), -exp).StringFixed(exp), Currency: cur})
		}
		if rng.IntN(8) > 0 || i == 0 {
			e.PrevHash = prev
			e.Hash = link(prev, &e, &scratch)
			prev = e.Hash
		}
		out = append(out, e)
	}
	// Sealed entries first, as in a ledger: the unsealed ones move to the end.
	slices.SortStableFunc(out, func(a, b chainEntry) int {
		if (a.Hash == nil) != (b.Hash == nil) {
			if a.Hash == nil {
				return 1
			}
			return -1
		}
		return 0
	})
	// Relink in the new order.
	prev = genesis
	for i := range out {
		out[i].Seq = int64(i*3 + 1)
		if out[i].Hash != nil {
			out[i].PrevHash = prev
			out[i].Hash = link(prev, &out[i], &scratch)
			prev = out[i].Hash
		}
	}
	return out
}

// exWrite writes entries as an export file of format.
func exWrite(t testing.TB, format ExportFormat, scope string, entries []chainEntry) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	var sealedThrough int64
	for _, e := range entries {
		if e.Hash != nil {
			sealedThrough = e.Seq
		}
	}
	var w exportWriter
	if format == FormatCSV {
		w = &csvExport{w: bw, scope: scope, sealedThrough: sealedThrough}
	} else {
		w = &jsonlExport{w: bw, scope: scope, sealedThrough: sealedThrough}
	}
	if err := w.begin(); err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if err := w.entry(&entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExportFileRoundTrip: whatever the text of an entry, an export file gives it back byte
// for byte (the links recomputed from the file match), and changing any one byte of a
// field the seal covers names that entry.
func TestExportFileRoundTrip(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, format := range []ExportFormat{FormatCSV, FormatJSONL} {
		for round := range 30 {
			entries := exRandomEntries(rng, 1+rng.IntN(20))
			data := exWrite(t, format, "all", entries)
			rep, err := VerifyExport(context.Background(), bytes.NewReader(data), VerifyOptions{})
			require.NoError(t, err, "%s round %d", format, round)
			require.True(t, rep.OK(), "%s round %d: %v\n%s", format, round, rep.Problems, data)
			sealed := 0
			for _, e := range entries {
				if e.Hash != nil {
					sealed++
				}
			}
			require.Equal(t, int64(sealed), rep.Entries)

			// Alter the description of one sealed entry: verify names it.
			i := rng.IntN(sealed)
			bad := slices.Clone(entries)
			bad[i].Description += "!"
			data = exWrite(t, format, "all", bad)
			rep, err = VerifyExport(context.Background(), bytes.NewReader(data), VerifyOptions{})
			require.NoError(t, err)
			require.Equal(t, int64(1), rep.ProblemCount, "%v", rep.Problems)
			require.Equal(t, bad[i].ID, rep.Problems[0].EntryID)
			require.Equal(t, "altered", rep.Problems[0].Kind)
		}
	}
}

// FuzzVerifyExport feeds verify's parser anything: it never panics, never reads a record
// beyond its bound, and either reads the file or says it is not an export.
func FuzzVerifyExport(f *testing.F) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	for _, format := range []ExportFormat{FormatCSV, FormatJSONL} {
		f.Add(exWrite(f, format, "all", exRandomEntries(rng, 3)))
		f.Add(exWrite(f, format, "program=p", exRandomEntries(rng, 1)))
	}
	f.Add([]byte("entry_id,seq\r\n"))
	f.Add([]byte("; hledger\n"))
	f.Add([]byte("{}\n{\"seq\":1}\n"))
	f.Add([]byte("\uFEFFentry_id,seq,kind,idempotency_key,description,effective_at,posted_at,metadata,target_id,line,account,account_type,phase,side,amount,currency,entry_hash,prev_hash,export_scope,sealed_through\r\nx,1,k,,\"a\"\"b\",t,t,{},,1,a,b,c,d,1,USD,zz,zz,all,1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := VerifyExport(context.Background(), bytes.NewReader(data), VerifyOptions{})
		if err != nil {
			require.ErrorIs(t, err, ErrExportFile)
			return
		}
		require.GreaterOrEqual(t, rep.ProblemCount, int64(len(rep.Problems)))
		require.LessOrEqual(t, len(rep.Problems), maxReported)
		for _, p := range rep.Problems {
			require.NotEmpty(t, p.Detail)
			require.True(t, utf8.ValidString(p.Kind))
		}
		if rep.HeadHash != "" {
			_, err := hex.DecodeString(rep.HeadHash)
			require.NoError(t, err)
		}
	})
}

// The CSV parser keeps every byte of a quoted field and refuses what RFC 4180 does not allow.
func TestCSVReader(t *testing.T) {
	t.Parallel()
	read := func(s string) ([][]string, error) {
		c := &csvReader{r: bufio.NewReader(strings.NewReader(s))}
		var out [][]string
		for {
			rec, err := c.record()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, slices.Clone(rec))
		}
	}
	got, err := read("a,\"b,\"\"c\"\"\r\nd\",\r\n\"\",x\ny,z")
	require.NoError(t, err)
	require.Equal(t, [][]string{{"a", "b,\"c\"\r\nd", ""}, {"", "x"}, {"y", "z"}}, got)
	for _, bad := range []string{`a"b,c`, `"abc`, "\"a\"b,c", "a\rb"} {
		_, err := read(bad)
		require.Error(t, err, "%q", bad)
	}
	long := strings.Repeat("x", maxExportRecord+1)
	_, err = read("\"" + long + "\"")
	require.ErrorContains(t, err, "longer than")
	_, err = read(long)
	require.ErrorContains(t, err, "longer than")
	// Every field survives a write and a read.
	rng := mrand.New(mrand.NewPCG(5, 6))
	for range 200 {
		var fields []string
		var line []byte
		for i := range 1 + rng.IntN(5) {
			var b strings.Builder
			for range rng.IntN(8) {
				b.WriteByte("a,\"\r\n x"[rng.IntN(7)])
			}
			fields = append(fields, b.String())
			if i > 0 {
				line = append(line, ',')
			}
			line = appendCSVField(line, b.String())
		}
		line = append(line, "\r\n"...)
		got, err := read(string(line))
		require.NoError(t, err, "%q", line)
		if len(fields) == 1 && fields[0] == "" {
			continue // an empty line is an empty record
		}
		require.Equal(t, [][]string{fields}, got, "%q", line)
	}
}

// TestCSVTextEscape: the formula escape of free-text CSV cells is one to one: every text
// comes back from the reader as it was, and only a text a spreadsheet would read as a
// formula (or one starting with ') changes in the file.
func TestCSVTextEscape(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, cell string }{
		{"=1+2", "'=1+2"}, {"'quoted", "''quoted"}, {"-5", "'-5"}, {"@x", "'@x"}, {"+1", "'+1"},
		{"\tx", "'\tx"}, {"\rx", "\"'\rx\""}, {"'", "''"}, {"''", "'''"}, {"plain", "plain"}, {"", ""},
		{"a=1", "a=1"}, {"'a", "''a"}, {`{"a":1}`, `"{""a"":1}"`},
	} {
		cell := string(appendCSVText(nil, c.in))
		require.Equal(t, c.cell, cell, "%q", c.in)
		got, err := (&csvReader{r: bufio.NewReader(strings.NewReader(cell + "\r\n"))}).record()
		require.NoError(t, err)
		require.Equal(t, c.in, unescapeCSVText(got[0]), "%q", c.in)
	}
	// A quote the writer did not add is kept: "'abc" is not "abc".
	require.Equal(t, "'abc", unescapeCSVText("'abc"))
}

// TestVerifyExportCapsLinesPerEntry: an entry of more rows than any entry the ledger holds
// is malformed; verify keeps no more than MaxPostings of them.
func TestVerifyExportCapsLinesPerEntry(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(7, 8))
	e := exRandomEntries(rng, 1)[0]
	line := e.Lines[0]
	e.Lines = nil
	for i := range MaxPostings + 5 {
		line.Line = i + 1
		e.Lines = append(e.Lines, line)
	}
	var scratch []byte
	e.PrevHash = genesis
	e.Hash = link(genesis, &e, &scratch)
	for _, format := range []ExportFormat{FormatCSV, FormatJSONL} {
		data := exWrite(t, format, "all", []chainEntry{e})
		rep, err := VerifyExport(context.Background(), bytes.NewReader(data), VerifyOptions{})
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.Equal(t, "malformed", rep.Problems[0].Kind, "%v", rep.Problems)
		require.Contains(t, rep.Problems[0].Detail, "more than 1000 postings in one entry")
	}
	e.Lines = e.Lines[:MaxPostings]
	e.Hash = link(genesis, &e, &scratch)
	rep, err := VerifyExport(context.Background(), bytes.NewReader(exWrite(t, FormatCSV, "all", []chainEntry{e})), VerifyOptions{})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
}
