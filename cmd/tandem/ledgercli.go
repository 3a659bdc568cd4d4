package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/internal/audited"
	"github.com/tandemledger/tandem/ledger"
)

const ledgerUsage = `usage: tandem ledger <command> [flags]

accounts:
  account create --code C --type asset|liability|equity|revenue|expense --currency USD
                 [--no-overdraft] [--metadata JSON]
  account show CODE
  account list [--prefix P] [--after CODE] [--limit N]
  account close CODE

entries (an entry is JSON on stdin or --file F:
  {"idempotency_key": "k", "description": "…", "effective_at": "2026-11-22T00:00:00Z",
   "metadata": {}, "postings": [{"account": "…", "side": "debit", "amount": "12.50", "currency": "USD"}, …]}):
  post         [--file F] [--idempotency-key K]   post an entry
  post-pending [--file F] [--idempotency-key K]   hold amounts until commit or void
  batch        [--file F]                         {"entries": [...]}, all or nothing
  commit ID    [--file F] [--idempotency-key K]   post a pending entry; F may hold
                                                  {"postings": [...]} for a partial commit
  void ID      [--idempotency-key K]              cancel a pending entry
  reverse ID   [--idempotency-key K]              undo a posted entry
  entry ID                                        show an entry
  entries      [--after-seq N] [--limit N]        list entries in sequence order

reading:
  balance CODE [--as-of TIME | --as-of-seq N]     TIME is RFC 3339, e.g. 2026-11-22T12:00:00Z
  statement CODE [--after CURSOR] [--limit N] [--all]  postings with the running balance
  trial-balance                                   every balance; debits equal credits
  check                                           recompute balances from postings

Every command takes --json to print JSON instead of text.
`

func ledgerCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, ledgerUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: tandem ledger needs a command", errUsage)
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	if cmd == "account" {
		if len(rest) == 0 {
			fmt.Fprint(stderr, ledgerUsage)
			return fmt.Errorf("%w: tandem ledger account needs create, show, list or close", errUsage)
		}
		cmd, rest = "account "+rest[0], rest[1:]
	}
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("tandem ledger "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.json, "json", false, "print JSON")
	var (
		file, key, code, typ, currency, metadata, prefix, after, asOf string
		noOverdraft, all                                              bool
		limit                                                         int
		afterSeq, asOfSeq                                             int64
		cursor                                                        string
	)
	switch cmd {
	case "account create":
		fs.StringVar(&code, "code", "", "account code, e.g. program/stem-2027/fund")
		fs.StringVar(&typ, "type", "", "asset, liability, equity, revenue or expense")
		fs.StringVar(&currency, "currency", "", "ISO 4217 code, e.g. USD")
		fs.BoolVar(&noOverdraft, "no-overdraft", false, "refuse postings that take the available balance below zero")
		fs.StringVar(&metadata, "metadata", "", "JSON object")
	case "account list":
		fs.StringVar(&prefix, "prefix", "", "only codes starting with this")
		fs.StringVar(&after, "after", "", "page: codes after this one")
		fs.IntVar(&limit, "limit", 100, "page size (at most 1000)")
	case "post", "post-pending", "batch", "commit":
		fs.StringVar(&file, "file", "", "read JSON from this file instead of stdin")
		fs.StringVar(&key, "idempotency-key", "", "idempotency key (overrides the JSON's)")
	case "void", "reverse":
		fs.StringVar(&key, "idempotency-key", "", "idempotency key")
	case "entries":
		fs.Int64Var(&afterSeq, "after-seq", 0, "page: entries after this sequence number")
		fs.IntVar(&limit, "limit", 100, "page size (at most 1000)")
	case "balance":
		fs.StringVar(&asOf, "as-of", "", "balance as of this time (RFC 3339), by posting time")
		fs.Int64Var(&asOfSeq, "as-of-seq", 0, "balance after the entries numbered up to N")
	case "statement":
		fs.StringVar(&cursor, "after", "", "page: the cursor printed at the end of the previous page")
		fs.IntVar(&limit, "limit", 100, "page size (at most 1000)")
		fs.BoolVar(&all, "all", false, "print every page")
	case "account show", "account close", "entry", "trial-balance", "check":
	default:
		fmt.Fprint(stderr, ledgerUsage)
		return fmt.Errorf("%w: unknown ledger command %q", errUsage, cmd)
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	wantArgs := map[string]int{"account show": 1, "account close": 1, "commit": 1, "void": 1, "reverse": 1,
		"entry": 1, "balance": 1, "statement": 1}[cmd]
	if len(pos) != wantArgs {
		return fmt.Errorf("%w: tandem ledger %s takes %d argument(s), got %d (%s)", errUsage, cmd, wantArgs, len(pos), strings.Join(pos, " "))
	}

	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	l := ledger.New(pool, &ledger.Config{MaxBatch: 1, Workers: 1})
	defer l.Close()
	// Changes from the command line are recorded in the audit trail like any other.
	w := audited.Ledger{L: l, Pool: pool, Actor: cliActor()}

	switch cmd {
	case "account create":
		na := ledger.NewAccount{Code: code, Type: ledger.AccountType(typ), Currency: strings.ToUpper(currency), NoOverdraft: noOverdraft}
		if metadata != "" {
			na.Metadata = json.RawMessage(metadata)
		}
		a, created, err := w.CreateAccount(ctx, na)
		if err != nil {
			return err
		}
		if !c.json {
			if created {
				fmt.Fprintln(stdout, "created account")
			} else {
				fmt.Fprintln(stdout, "account exists with these attributes")
			}
		}
		return c.account(a)
	case "account show":
		a, err := l.Account(ctx, pos[0])
		if err != nil {
			return err
		}
		return c.account(a)
	case "account list":
		accts, err := l.Accounts(ctx, ledger.AccountFilter{Prefix: prefix, After: after, Limit: limit})
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(map[string]any{"accounts": accts})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "code\ttype\tposted\tavailable\tcurrency\tflags\t")
		for _, a := range accts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", a.Code, a.Type, fmtAmt(a.Balance.Posted, a.Currency),
				fmtAmt(a.Balance.Available, a.Currency), a.Currency, flags(a))
		}
		return tw.Flush()
	case "account close":
		a, err := w.CloseAccount(ctx, pos[0])
		if err != nil {
			return err
		}
		return c.account(a)
	case "post", "post-pending":
		var ne ledger.NewEntry
		if err := c.readJSON(file, &ne); err != nil {
			return err
		}
		if key != "" {
			ne.IdempotencyKey = key
		}
		kind := ledger.KindStandard
		if cmd == "post-pending" {
			kind = ledger.KindPending
		}
		e, err := w.Post(ctx, kind, ne)
		if err != nil {
			return err
		}
		return c.entry(e)
	case "batch":
		var body struct {
			Entries []ledger.NewEntry `json:"entries"`
		}
		if err := c.readJSON(file, &body); err != nil {
			return err
		}
		entries, err := w.PostBatch(ctx, body.Entries)
		if err != nil {
			return err
		}
		return c.entries(entries)
	case "commit", "void", "reverse":
		id, err := uuid.Parse(pos[0])
		if err != nil {
			return fmt.Errorf("%w: %q is not an entry id", errUsage, pos[0])
		}
		var res ledger.Resolution
		if cmd == "commit" && file != "" {
			if err := c.readJSON(file, &res); err != nil {
				return err
			}
		}
		if key != "" {
			res.IdempotencyKey = key
		}
		kind := map[string]ledger.Kind{"commit": ledger.KindCommit, "void": ledger.KindVoid, "reverse": ledger.KindReversal}[cmd]
		e, err := w.Resolve(ctx, kind, id, res)
		if err != nil {
			return err
		}
		return c.entry(e)
	case "entry":
		id, err := uuid.Parse(pos[0])
		if err != nil {
			return fmt.Errorf("%w: %q is not an entry id", errUsage, pos[0])
		}
		e, err := l.Entry(ctx, id)
		if err != nil {
			return err
		}
		return c.entry(e)
	case "entries":
		entries, err := l.Entries(ctx, ledger.EntryFilter{AfterSeq: afterSeq, Limit: limit})
		if err != nil {
			return err
		}
		return c.entries(entries)
	case "balance":
		var at ledger.AsOf
		at.Seq = asOfSeq
		if asOf != "" {
			t, err := time.Parse(time.RFC3339Nano, asOf)
			if err != nil {
				return fmt.Errorf("%w: --as-of %q is not an RFC 3339 time such as 2026-11-22T12:00:00Z", errUsage, asOf)
			}
			at.Time = t
		}
		b, err := l.Balance(ctx, pos[0], at)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(b)
		}
		when := "now"
		switch {
		case at.Seq != 0:
			when = fmt.Sprintf("as of seq %d", at.Seq)
		case !at.Time.IsZero():
			when = "as of " + at.Time.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%s, %s (last entry seq %d, %d postings)\n", b.Account, when, b.Seq, b.Version)
		c.balanceLines(b)
		return nil
	case "statement":
		for {
			st, err := l.Statement(ctx, pos[0], ledger.StatementFilter{After: cursor, Limit: limit})
			if err != nil {
				return err
			}
			if c.json {
				if err := c.printJSON(st); err != nil {
					return err
				}
			} else {
				if cursor == "" {
					fmt.Fprintf(stdout, "statement of %s (%s, %s)\n", st.Account.Code, st.Account.Type, st.Account.Currency)
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				if cursor == "" {
					fmt.Fprintln(tw, "#\tseq\tposted at\tkind\tphase\tdebit\tcredit\tbalance\tavailable\tdescription")
				}
				for _, ln := range st.Lines {
					dr, cr := "", ""
					if ln.Posting.Side == ledger.Debit {
						dr = fmtAmt(ln.Posting.Amount, ln.Posting.Currency)
					} else {
						cr = fmtAmt(ln.Posting.Amount, ln.Posting.Currency)
					}
					fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ln.Version, ln.Seq,
						ln.PostedAt.UTC().Format(time.RFC3339), ln.Kind, ln.Posting.Phase, dr, cr,
						fmtAmt(ln.Balance.Posted, ln.Posting.Currency), fmtAmt(ln.Balance.Available, ln.Posting.Currency), ln.Description)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if st.Next != "" && !all {
					fmt.Fprintf(stdout, "more: --after %s\n", st.Next)
				}
			}
			if st.Next == "" || !all {
				return nil
			}
			cursor = st.Next
		}
	case "trial-balance":
		tb, err := l.TrialBalance(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(tb)
		}
		fmt.Fprintf(stdout, "trial balance as of seq %d\n", tb.AsOfSeq)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "account\ttype\tdebit\tcredit\t")
		for _, ln := range tb.Lines {
			dr, cr := "", ""
			if ln.Debit.IsPositive() {
				dr = fmtAmt(ln.Debit, ln.Currency) + " " + ln.Currency
			} else {
				cr = fmtAmt(ln.Credit, ln.Currency) + " " + ln.Currency
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", ln.Account, ln.Type, dr, cr)
		}
		for _, t := range tb.Totals {
			mark := "balanced"
			if !t.Balanced {
				mark = "NOT BALANCED"
			}
			fmt.Fprintf(tw, "total %s\t%s\t%s\t%s\t\n", t.Currency, mark, fmtAmt(t.Debits, t.Currency)+" "+t.Currency, fmtAmt(t.Credits, t.Currency)+" "+t.Currency)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, t := range tb.Totals {
			if !t.Balanced {
				return errors.New("trial balance does not balance")
			}
		}
		return nil
	case "check":
		d, err := l.Check(ctx)
		if err != nil {
			return err
		}
		if c.json {
			if err := c.printJSON(map[string]any{"ok": len(d) == 0, "discrepancies": d}); err != nil {
				return err
			}
		} else if len(d) == 0 {
			fmt.Fprintln(stdout, "ledger is sound: every balance equals the sum of its postings, every currency balances")
		} else {
			for _, x := range d {
				fmt.Fprintln(stdout, strings.TrimSpace(x.Account+" "+x.Problem))
			}
		}
		if len(d) > 0 {
			return fmt.Errorf("check found %d discrepancies", len(d))
		}
		return nil
	}
	return nil
}

// parseInterspersed parses flags that may come before or after the positional arguments
// ("balance CODE --as-of-seq 3"), which the flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	json           bool
}

func (c *cli) readJSON(file string, v any) error {
	var r io.Reader = c.stdin
	name := "stdin"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		r, name = f, file
	}
	dec := json.NewDecoder(io.LimitReader(r, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, ledger.ErrInvalid) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: no JSON on %s", ledger.ErrInvalid, name)
		}
		return fmt.Errorf("%w: malformed JSON on %s: %v", ledger.ErrInvalid, name, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object on %s", ledger.ErrInvalid, name)
	}
	return nil
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) account(a ledger.Account) error {
	if c.json {
		return c.printJSON(a)
	}
	fmt.Fprintf(c.stdout, "%s  %s %s%s\n", a.Code, a.Type, a.Currency, map[bool]string{true: "  " + flags(a), false: ""}[flags(a) != ""])
	fmt.Fprintf(c.stdout, "  created %s", a.CreatedAt.UTC().Format(time.RFC3339))
	if a.ClosedAt != nil {
		fmt.Fprintf(c.stdout, ", closed %s", a.ClosedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(c.stdout)
	if len(a.Metadata) > 0 && string(a.Metadata) != "{}" {
		fmt.Fprintf(c.stdout, "  metadata %s\n", a.Metadata)
	}
	c.balanceLines(a.Balance)
	return nil
}

func (c *cli) balanceLines(b ledger.Balance) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  posted\t%s %s\t\n", fmtAmt(b.Posted, b.Currency), b.Currency)
	fmt.Fprintf(tw, "  pending\t%s %s\t\n", fmtAmt(b.Pending, b.Currency), b.Currency)
	fmt.Fprintf(tw, "  available\t%s %s\t\n", fmtAmt(b.Available, b.Currency), b.Currency)
	_ = tw.Flush()
}

// entries prints a list of entries, as one JSON object or one entry after another.
func (c *cli) entries(entries []ledger.Entry) error {
	if c.json {
		return c.printJSON(map[string]any{"entries": entries})
	}
	for _, e := range entries {
		if err := c.entry(e); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) entry(e ledger.Entry) error {
	if c.json {
		return c.printJSON(e)
	}
	fmt.Fprintf(c.stdout, "entry %s  seq %d  %s", e.ID, e.Seq, e.Kind)
	if e.Replayed {
		fmt.Fprint(c.stdout, "  (already posted with this idempotency key: nothing new written)")
	}
	fmt.Fprintln(c.stdout)
	fmt.Fprintf(c.stdout, "  posted %s, effective %s\n", e.PostedAt.UTC().Format(time.RFC3339Nano), e.EffectiveAt.UTC().Format(time.RFC3339))
	if e.Description != "" {
		fmt.Fprintf(c.stdout, "  %s\n", e.Description)
	}
	if e.IdempotencyKey != "" {
		fmt.Fprintf(c.stdout, "  idempotency key %s\n", e.IdempotencyKey)
	}
	if e.TargetID != nil {
		fmt.Fprintf(c.stdout, "  %s of %s\n", e.Kind, e.TargetID)
	}
	if e.ResolvedBy != nil {
		fmt.Fprintf(c.stdout, "  resolved by %s\n", e.ResolvedBy)
	}
	if e.ReversedBy != nil {
		fmt.Fprintf(c.stdout, "  reversed by %s\n", e.ReversedBy)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, ln := range e.Lines {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s %s\n", ln.Line, ln.Phase, ln.Side, ln.Account, fmtAmt(ln.Amount, ln.Currency), ln.Currency)
	}
	return tw.Flush()
}

func flags(a ledger.Account) string {
	var f []string
	if a.NoOverdraft {
		f = append(f, "no_overdraft")
	}
	if a.ClosedAt != nil {
		f = append(f, "closed")
	}
	return strings.Join(f, ",")
}

func fmtAmt(d decimal.Decimal, currency string) string { return ledger.FormatAmount(d, currency) }
