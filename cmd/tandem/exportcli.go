package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/textfmt"
	"github.com/tandemledger/tandem/ledger"
)

const exportUsage = `usage: tandem export --out FILE [--format csv|jsonl|hledger] [--from DATE] [--to DATE] [--program P]
                     [--progress D] [--quiet]

Writes the ledger's final history for auditors, in sequence order:
  csv      RFC 4180 CSV with a header row: one posting a row, with its entry's and account's
           fields and the entry's seal links (entry_hash, prev_hash)
  jsonl    JSON Lines: the same fields, one object a posting
  hledger  an hledger/ledger-cli journal of the posted amounts: 'hledger -f FILE balance'
           equals 'tandem ledger trial-balance'; holds are comments

flags:
  --out FILE      where to write ('-': standard output). The file appears only once the
                  export is complete: it is written beside it under a temporary name first
  --format F      csv, jsonl or hledger (default: from FILE's extension, .csv .jsonl .journal)
  --from DATE     only entries effective on or after DATE (2026-01-01, or an RFC 3339 time)
  --to DATE       only entries effective before DATE (to is not included: --from 2026-01-01
                  --to 2026-02-01 is January)
  --program P     only the entries of program P's money: those on its accounts
                  (program/P/...) or naming it in their metadata (awards, grants, payouts,
                  stipends from participant and coach wallets...), and the commits, voids and
                  reversals of those
  --progress D    how often to print a progress line on standard error (default 1s)
  --quiet         print nothing on standard error (no progress, no summary)

Check an export with 'tandem verify FILE'.
`

const verifyUsage = `usage: tandem verify [FILE [--partial]] [--json] [--seal] [--progress D] [--quiet]

Without FILE, recomputes the seal's hash chain from the database (DATABASE_URL) and compares
every entry's link and every checkpoint; the result is recorded for the auditor's page.
With FILE, recomputes the chain from a CSV or JSON Lines export ('-': standard input) and
compares it with the links the file holds. FILE must be a whole export, its chain unbroken
from the first entry, unless --partial says a filtered export (--from, --to, --program) is
expected: that is checked entry by entry, its continuity only between entries that follow
each other in it. Compare the head seq and link it prints with the database's.

It names the first entry that does not match and exits with status 1 when anything does.

flags:
  --partial accept a filtered export (FILE only): gaps where the filter left entries out
  --json    print the report as JSON
  --seal    first seal the final entries not sealed yet, as the seal job does (database only)
  --progress D  how often to print a progress line on standard error (default 1s)
  --quiet   no progress lines on standard error
`

// exportFormatOf infers a format from a file name's extension.
func exportFormatOf(path string) (ledger.ExportFormat, bool) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return ledger.FormatCSV, true
	case ".jsonl", ".ndjson":
		return ledger.FormatJSONL, true
	case ".journal", ".hledger", ".ledger":
		return ledger.FormatHledger, true
	}
	return "", false
}

// exportCmd writes the ledger for auditors.
func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, exportUsage) }
	var out, format, from, to, program string
	var quiet bool
	var every time.Duration
	fs.DurationVar(&every, "progress", time.Second, "how often to print progress")
	fs.StringVar(&out, "out", "", "file to write ('-': standard output)")
	fs.StringVar(&format, "format", "", "csv, jsonl or hledger")
	fs.StringVar(&from, "from", "", "entries effective on or after this date")
	fs.StringVar(&to, "to", "", "entries effective before this date")
	fs.StringVar(&program, "program", "", "only this program's entries")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	opt, err := exportOptions(pos, out, format, from, to, program)
	if err != nil {
		return err
	}
	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	l := ledger.New(pool, &ledger.Config{MaxBatch: 1, Workers: 1})
	defer l.Close()
	if err := l.CheckExport(ctx, opt); err != nil {
		if errors.Is(err, ledger.ErrInvalid) { // an unknown program: a bad flag
			return fmt.Errorf("%w: --program: %w", errUsage, err)
		}
		return err
	}
	if !quiet && every > 0 {
		opt.ProgressInterval = every
		opt.ProgressFunc = func(p ledger.ExportProgress) {
			if p.Done {
				return
			}
			pct := ""
			if p.Total > 0 {
				pct = fmt.Sprintf(" (%d%%)", p.Postings*100/p.Total)
			}
			fmt.Fprintf(stderr, "export: %s of %s postings%s, %s, %s…\n", thousands(p.Postings), thousands(p.Total), pct,
				byteSize(p.Bytes), p.Elapsed.Round(100*time.Millisecond))
		}
	}
	var sum ledger.ExportSummary
	var sent int64
	if out == "-" {
		cw := &writeCounter{w: stdout}
		sum, err = l.Export(ctx, cw, opt)
		sent = cw.n
	} else {
		sum, err = exportToFile(ctx, l, out, opt)
		sent = sum.Bytes
	}
	// The audit trail keeps who exported what, completed or not (as the API does).
	ev := access.Event{Actor: cliActor(), Action: string(access.LedgerExport), Record: opt.Filter.Scope(),
		Detail: sum.AuditDetail(opt.Format, sent, err)}
	if aerr := access.Record(context.WithoutCancel(ctx), pool, ev); aerr != nil {
		return errors.Join(err, fmt.Errorf("export: record it in the audit trail: %w", aerr))
	}
	if err != nil {
		return err
	}
	if !quiet {
		dest := out
		if out == "-" {
			dest = "standard output"
		}
		rate := float64(sum.Postings) / max(sum.Elapsed.Seconds(), 1e-9)
		fmt.Fprintf(stderr, "export: wrote %s postings of %s entries (%s, %s) to %s in %s (%s postings/s); final history through seq %d\n",
			thousands(sum.Postings), thousands(sum.Entries), byteSize(sum.Bytes), sum.Scope, dest,
			sum.Elapsed.Round(time.Millisecond), thousands(int64(rate)), sum.ThroughSeq)
		if sum.Sealed > 0 {
			fmt.Fprintf(stderr, "export: %s entries sealed, the last (seq %d) with link %s\n", thousands(sum.Sealed), sum.LastSeq, sum.LastHash)
		} else {
			fmt.Fprintln(stderr, "export: no entry in it is sealed yet (the seal job seals final entries every minute; 'tandem verify --seal' seals now)")
		}
	}
	return nil
}

// writeCounter counts the bytes written to standard output.
type writeCounter struct {
	w io.Writer
	n int64
}

func (c *writeCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// exportOptions checks the flags before anything touches the database.
func exportOptions(pos []string, out, format, from, to, program string) (ledger.ExportOptions, error) {
	var opt ledger.ExportOptions
	if len(pos) > 0 {
		return opt, fmt.Errorf("%w: tandem export takes no arguments, got %q (did you mean --out %s?)", errUsage, strings.Join(pos, " "), pos[0])
	}
	if out == "" {
		return opt, fmt.Errorf("%w: tandem export needs --out FILE ('-' for standard output)", errUsage)
	}
	if format == "" {
		f, ok := exportFormatOf(out)
		if !ok {
			return opt, fmt.Errorf("%w: say --format csv, jsonl or hledger (the name %q does not tell)", errUsage, out)
		}
		format = string(f)
	}
	f, err := ledger.ParseExportFormat(format)
	if err != nil {
		return opt, fmt.Errorf("%w: --format: %w", errUsage, err)
	}
	opt.Format = f
	if opt.Filter.From, err = ledger.ParseExportTime("from", from); err != nil {
		return opt, fmt.Errorf("%w: --from: %w", errUsage, err)
	}
	if opt.Filter.To, err = ledger.ParseExportTime("to", to); err != nil {
		return opt, fmt.Errorf("%w: --to: %w", errUsage, err)
	}
	opt.Filter.Program = strings.TrimSpace(program)
	if err := opt.Filter.Validate(); err != nil {
		return opt, fmt.Errorf("%w: %w", errUsage, err)
	}
	return opt, nil
}

// exportToFile writes the export beside path under a temporary name and renames it into
// place once complete, so a failed or interrupted export never leaves a file that looks
// whole.
func exportToFile(ctx context.Context, l *ledger.Ledger, path string, opt ledger.ExportOptions) (ledger.ExportSummary, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.partial")
	if err != nil {
		return ledger.ExportSummary{}, fmt.Errorf("export: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	sum, err := l.Export(ctx, tmp, opt)
	if err != nil {
		return sum, err
	}
	if err := tmp.Sync(); err != nil {
		return sum, fmt.Errorf("export: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return sum, fmt.Errorf("export: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil { // CreateTemp makes it 0600
		return sum, fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	done = true
	return sum, nil
}

// verifyCmd checks the seal of the database or of an export file.
func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verifyUsage) }
	var asJSON, seal, quiet, partial bool
	var every time.Duration
	fs.DurationVar(&every, "progress", time.Second, "how often to print progress")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&seal, "seal", false, "seal the final entries first")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&partial, "partial", false, "accept a filtered export")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(pos) == 0 && partial {
		return fmt.Errorf("%w: --partial is for an export file; the database is always verified whole", errUsage)
	}
	if len(pos) > 1 {
		return fmt.Errorf("%w: tandem verify takes at most one file, got %d", errUsage, len(pos))
	}
	if len(pos) == 1 && seal {
		return fmt.Errorf("%w: --seal seals the database; it cannot be used when verifying a file", errUsage)
	}
	var rep ledger.VerifyReport
	if quiet {
		every = 0
	}
	if len(pos) == 1 {
		rep, err = verifyFile(ctx, pos[0], partial, every, stderr)
	} else {
		rep, err = verifyDatabase(ctx, seal, every, stderr)
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printVerifyReport(stdout, &rep, pos)
	}
	return rep.Err()
}

// verifyDatabase seals first when asked, then verifies the database.
func verifyDatabase(ctx context.Context, seal bool, every time.Duration, stderr io.Writer) (ledger.VerifyReport, error) {
	pool, err := openPool(ctx)
	if err != nil {
		return ledger.VerifyReport{}, err
	}
	defer pool.Close()
	l := ledger.New(pool, &ledger.Config{MaxBatch: 1, Workers: 1})
	defer l.Close()
	if seal {
		var progress func(int64)
		if every > 0 {
			progress = func(n int64) { fmt.Fprintf(stderr, "seal: %s entries sealed…\n", thousands(n)) }
		}
		res, err := l.Seal(ctx, ledger.SealOptions{ProgressFunc: progress})
		if err != nil {
			return ledger.VerifyReport{}, err
		}
		fmt.Fprintf(stderr, "seal: %s new entries sealed; the chain's head is seq %d, link %s\n", thousands(res.Sealed), res.HeadSeq, res.HeadHash)
		if res.AuditHeadHash != "" {
			fmt.Fprintf(stderr, "seal: %s new audit lines sealed; the audit chain's head link is %s\n", thousands(res.AuditSealed), res.AuditHeadHash)
		}
	}
	opt := ledger.VerifyOptions{Actor: cliActor().Name, ProgressInterval: every}
	if every > 0 {
		opt.ProgressFunc = func(p ledger.VerifyProgress) {
			if p.Done {
				return
			}
			pct := ""
			if p.Total > 0 {
				pct = fmt.Sprintf(" (%d%%)", p.Entries*100/p.Total)
			}
			fmt.Fprintf(stderr, "verify: %s of %s entries%s, %s…\n", thousands(p.Entries), thousands(p.Total), pct, p.Elapsed.Round(100*time.Millisecond))
		}
	}
	return l.Verify(ctx, opt)
}

// verifyFile verifies an export file ('-': standard input).
func verifyFile(ctx context.Context, path string, partial bool, every time.Duration, stderr io.Writer) (ledger.VerifyReport, error) {
	var r io.Reader
	var size int64
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return ledger.VerifyReport{}, fmt.Errorf("verify: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		r = f
	}
	cr := &readCounter{r: r}
	opt := ledger.VerifyOptions{ProgressInterval: every, Partial: partial}
	if every > 0 {
		opt.ProgressFunc = func(p ledger.VerifyProgress) {
			if p.Done {
				return
			}
			pct := ""
			if size > 0 {
				pct = fmt.Sprintf(" (%d%% of the file)", cr.n.Load()*100/size)
			}
			fmt.Fprintf(stderr, "verify: %s entries%s, %s…\n", thousands(p.Entries), pct, p.Elapsed.Round(100*time.Millisecond))
		}
	}
	rep, err := ledger.VerifyExport(ctx, cr, opt)
	if err != nil {
		return rep, fmt.Errorf("verify %s: %w", path, err)
	}
	return rep, nil
}

// readCounter counts the bytes read, for the progress lines.
type readCounter struct {
	r io.Reader
	n atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// printVerifyReport says what a verification found, in words.
func printVerifyReport(w io.Writer, rep *ledger.VerifyReport, pos []string) {
	what := "the database"
	if len(pos) == 1 {
		what = fmt.Sprintf("%s (%s export, scope %s)", pos[0], rep.Source, rep.Scope)
	}
	elapsed := rep.Elapsed.Round(time.Millisecond)
	if len(pos) == 0 {
		defer printAuditVerified(w, rep)
	}
	if !rep.OK() {
		fmt.Fprintf(w, "%s: the seal does NOT verify: %s problem(s) among %s sealed entries (%s)\n", what,
			thousands(rep.ProblemCount), thousands(rep.Entries), elapsed)
		for _, m := range rep.Problems {
			fmt.Fprintf(w, "  %s\n", m.Detail)
		}
		if rep.ProblemCount > int64(len(rep.Problems)) {
			fmt.Fprintf(w, "  … and %s more\n", thousands(rep.ProblemCount-int64(len(rep.Problems))))
		}
		return
	}
	switch {
	case rep.Entries == 0 && len(pos) == 0:
		fmt.Fprintf(w, "%s: nothing is sealed yet; %s entries wait for the seal job ('tandem verify --seal' seals now)\n", what, thousands(rep.Unsealed))
		return
	case rep.Entries == 0:
		fmt.Fprintf(w, "%s: no entry in the file carries seal links (%s entries were not sealed when exported): nothing to check\n", what, thousands(rep.Unsealed))
		return
	case len(pos) == 0:
		fmt.Fprintf(w, "%s: the seal holds: %s entries recomputed through seq %d, %s checkpoints match (%s)\n", what,
			thousands(rep.Entries), rep.HeadSeq, thousands(rep.Checkpoints), elapsed)
	case rep.Partial:
		fmt.Fprintf(w, "%s: every one of %s sealed entries matches its recorded link (%s)\n", what, thousands(rep.Entries), elapsed)
		fmt.Fprintf(w, "  a filtered export: continuity could only be checked within the file — %s entries follow the one before them, %s gaps where the filter left entries out\n",
			thousands(rep.Linked), thousands(rep.Gaps))
	default:
		fmt.Fprintf(w, "%s: the chain holds: %s entries recomputed and linked from the first entry through seq %d (%s)\n", what,
			thousands(rep.Entries), rep.HeadSeq, elapsed)
	}
	fmt.Fprintf(w, "  head link %s (seq %d): compare it with 'tandem verify' of the database or a checkpoint kept elsewhere\n", rep.HeadHash, rep.HeadSeq)
	if rep.Unsealed > 0 {
		fmt.Fprintf(w, "  %s entries not sealed yet were not checked\n", thousands(rep.Unsealed))
	}
}

// printAuditVerified says what a verification of the database found of the audit trail.
func printAuditVerified(w io.Writer, rep *ledger.VerifyReport) {
	if rep.AuditLines == 0 {
		fmt.Fprintf(w, "  audit trail: nothing sealed yet; %s lines wait for the seal job\n", thousands(rep.AuditUnsealed))
		return
	}
	fmt.Fprintf(w, "  audit trail: %s sealed lines recomputed, head link %s", thousands(rep.AuditLines), rep.AuditHeadHash)
	if rep.AuditUnsealed > 0 {
		fmt.Fprintf(w, "; %s lines not sealed yet were not checked", thousands(rep.AuditUnsealed))
	}
	fmt.Fprintln(w)
}

// thousands writes n with thousands separators ("1,000,000").
func thousands(n int64) string { return textfmt.GroupDigits(strconv.FormatInt(n, 10)) }

// byteSize writes a size in bytes readably ("270.6 MB").
func byteSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
