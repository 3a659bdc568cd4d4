package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Exports for auditors (DESIGN.md §9): every posting of the ledger's final history, one a row
// with its entry's and account's fields and the entry's seal links, as CSV (RFC 4180) or JSON
// Lines; or an hledger journal whose `hledger balance` equals the trial balance.
//
// An export streams: the entries and their postings are read in sequence order as they
// arrive (see streamEntries) and written through a buffer. Memory stays flat however long
// the ledger is: make bench measures the peak resident memory of `tandem export` over
// 1,000,000 postings.

// ExportFormat is an export's file format.
type ExportFormat string

const (
	// FormatCSV is RFC 4180 CSV with a header row, CRLF line ends and one posting a row.
	FormatCSV ExportFormat = "csv"
	// FormatJSONL is JSON Lines: one object a posting, with the same fields as the CSV.
	FormatJSONL ExportFormat = "jsonl"
	// FormatHledger is an hledger (and ledger-cli) journal of the posted amounts.
	FormatHledger ExportFormat = "hledger"
)

// ParseExportFormat reads a format name; the error lists the accepted ones.
func ParseExportFormat(s string) (ExportFormat, error) {
	switch f := ExportFormat(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatCSV, FormatJSONL, FormatHledger:
		return f, nil
	case "json", "ndjson":
		return FormatJSONL, nil
	case "journal", "ledger":
		return FormatHledger, nil
	}
	return "", invalid("format", "%q is not an export format: use csv, jsonl or hledger", truncate(s, 20))
}

// Extension is the file name extension of the format, with its dot.
func (f ExportFormat) Extension() string {
	switch f {
	case FormatJSONL:
		return ".jsonl"
	case FormatHledger:
		return ".journal"
	}
	return ".csv"
}

// ContentType is the format's media type.
func (f ExportFormat) ContentType() string {
	switch f {
	case FormatJSONL:
		return "application/jsonl; charset=utf-8"
	case FormatHledger:
		return "text/plain; charset=utf-8"
	}
	return "text/csv; charset=utf-8; header=present"
}

// ExportFilter selects what an export holds. The zero value is the whole final history.
//
// From and To bound the entries' effective time (the business date, not the posting time):
// From is inclusive, To exclusive, so consecutive months never share an entry.
//
// Program selects the entries of one program's money: those with a posting on one of its
// accounts (program/<P>/...), those whose metadata names it ("program": "<P>", as every
// network and payouts entry for it does: awards, grants, instalments, stipends, payouts to
// participant and coach wallets, fund returns), and the commits, voids and reversals of
// those entries (which carry no metadata of their own).
type ExportFilter struct {
	From    time.Time
	To      time.Time
	Program string
}

// Filtered reports whether the filter leaves anything out.
func (f ExportFilter) Filtered() bool {
	return !f.From.IsZero() || !f.To.IsZero() || f.Program != ""
}

// Validate checks the filter without the database.
func (f ExportFilter) Validate() error {
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return invalid("to", "%s is not after from (%s): to is exclusive", exportDate(f.To), exportDate(f.From))
	}
	if f.Program != "" {
		if err := ValidateCode("program/" + f.Program + "/x"); err != nil || strings.Contains(f.Program, "/") {
			return invalid("program", "%q is not a program id", truncate(f.Program, 40))
		}
	}
	return nil
}

// Scope describes the filter in the export_scope column: "all", or its parts such as
// "from=2026-01-01;to=2026-02-01;program=stem-2027". Verify reads it to know whether the
// file should hold an unbroken chain.
func (f ExportFilter) Scope() string {
	if !f.Filtered() {
		return "all"
	}
	var parts []string
	if !f.From.IsZero() {
		parts = append(parts, "from="+exportDate(f.From))
	}
	if !f.To.IsZero() {
		parts = append(parts, "to="+exportDate(f.To))
	}
	if f.Program != "" {
		parts = append(parts, "program="+f.Program)
	}
	return strings.Join(parts, ";")
}

// exportDate prints a bound as a date when it is midnight UTC, else in RFC 3339.
func exportDate(t time.Time) string {
	t = t.UTC()
	if t.Equal(t.Truncate(24 * time.Hour)) {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339Nano)
}

// ParseExportTime reads a filter bound: a date (2026-11-22, midnight UTC) or an RFC 3339
// time. Empty is no bound (the zero time).
func ParseExportTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1900 || t.Year() > 9999 {
		return time.Time{}, invalid(field, "%q is not a date like 2026-11-22 or a time like 2026-11-22T12:00:00Z", truncate(s, 40))
	}
	return t, nil
}

// ErrUnknownProgram: an export asked for a program that has no account in the ledger.
var ErrUnknownProgram = fmt.Errorf("%w: unknown program", ErrInvalid)

// ExportOptions tune an export.
type ExportOptions struct {
	Format ExportFormat
	Filter ExportFilter
	// ProgressFunc, when set, is called about every ProgressInterval (default 1s) while the
	// export runs, and once at the end with Done set.
	ProgressFunc     func(ExportProgress)
	ProgressInterval time.Duration
}

// ExportProgress is how far an export got.
type ExportProgress struct {
	Postings int64 // written so far
	Entries  int64
	Total    int64 // postings the export will hold, counted before it started
	Bytes    int64
	Elapsed  time.Duration
	Done     bool
}

// ExportSummary is what an export wrote.
type ExportSummary struct {
	Format   ExportFormat `json:"format"`
	Scope    string       `json:"scope"`
	Postings int64        `json:"postings"`
	Entries  int64        `json:"entries"`
	Bytes    int64        `json:"bytes"`
	// ThroughSeq: the export holds final history up to this sequence number (see settle).
	ThroughSeq int64 `json:"through_seq"`
	// SealedThrough is the last entry sealed when the export started (every row's
	// sealed_through): each exported entry numbered up to it carries its links.
	SealedThrough int64 `json:"sealed_through"`
	// Sealed is how many of the exported entries carry their seal links; LastHash is the
	// link of the last of them, to compare with `tandem verify` of the database.
	Sealed   int64         `json:"sealed_entries"`
	LastSeq  int64         `json:"last_sealed_seq,omitempty"`
	LastHash string        `json:"last_hash,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// AuditDetail is the detail of an export's audit line (action "ledger.export"): what it
// held and whether it completed or was aborted (failed is the reason; nil when it
// completed). sent is the bytes that left, however far the export got.
func (s ExportSummary) AuditDetail(format ExportFormat, sent int64, failed error) string {
	last := s.LastHash
	if last == "" {
		last = "none"
	}
	d := fmt.Sprintf("format %s, %d postings of %d entries, %d bytes, through seq %d, sealed through seq %d, last link %s",
		format, s.Postings, s.Entries, sent, s.ThroughSeq, s.SealedThrough, last)
	if failed != nil {
		return "aborted: " + d + " (so far): " + failed.Error()
	}
	return "completed: " + d
}

// CheckExport validates opt against the database (the program exists) without exporting:
// an HTTP handler calls it before it sends headers, since a stream cannot turn into an error
// document half way.
func (l *Ledger) CheckExport(ctx context.Context, opt ExportOptions) error {
	if _, err := ParseExportFormat(string(opt.Format)); err != nil {
		return err
	}
	if err := opt.Filter.Validate(); err != nil {
		return err
	}
	if opt.Filter.Program == "" {
		return nil
	}
	var known bool
	if err := l.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger_accounts WHERE starts_with(code, $1))`,
		"program/"+opt.Filter.Program+"/").Scan(&known); err != nil {
		return fmt.Errorf("export: look up program: %w", err)
	}
	if !known {
		return fmt.Errorf("%w: %q has no accounts in the ledger (program/%s/...)", ErrUnknownProgram, opt.Filter.Program, opt.Filter.Program)
	}
	return nil
}

// Export writes the ledger's final history (every entry numbered up to the highest number
// handed out when it starts, once those still committing have committed; see settle) to w in
// opt.Format, in sequence order, reading one snapshot. Nothing is written before the
// options are checked, so an error about them leaves w untouched; an error later leaves w
// with a part of the export (write to a temporary file, or abort the response). It does not
// close w. It holds two of the pool's connections while it runs, and waits for entries
// still committing first: do not call it while holding an open write transaction.
//
// A filtered hledger journal holds the filtered entries only: its balances are their sums.
func (l *Ledger) Export(ctx context.Context, w io.Writer, opt ExportOptions) (ExportSummary, error) {
	start := time.Now()
	format, err := ParseExportFormat(string(opt.Format))
	if err != nil {
		return ExportSummary{}, err
	}
	if err := l.CheckExport(ctx, opt); err != nil {
		return ExportSummary{}, err
	}
	final, _, err := l.settle(ctx)
	if err != nil {
		return ExportSummary{}, fmt.Errorf("export: %w", err)
	}
	sum := ExportSummary{Format: format, Scope: opt.Filter.Scope(), ThroughSeq: final}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	every := opt.ProgressInterval
	if every <= 0 {
		every = time.Second
	}
	progress := func(total int64, done bool) {
		if opt.ProgressFunc != nil {
			opt.ProgressFunc(ExportProgress{Postings: sum.Postings, Entries: sum.Entries, Total: total,
				Bytes: cw.n + int64(bw.Buffered()), Elapsed: time.Since(start), Done: done})
		}
	}
	sel := selection{through: final, filter: opt.Filter}
	var ew exportWriter
	var total int64
	before := func(tx pgx.Tx) error {
		if opt.ProgressFunc != nil {
			q, args := sel.countSQL()
			if err := tx.QueryRow(ctx, q, args...).Scan(&total); err != nil {
				return fmt.Errorf("count postings: %w", err)
			}
		}
		// In the snapshot the entries are read from, so that every entry numbered up to it
		// is read with its links.
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM ledger_seal WHERE seq <= $1`, final).
			Scan(&sum.SealedThrough); err != nil {
			return fmt.Errorf("read the seal's head: %w", err)
		}
		switch format {
		case FormatCSV:
			ew = &csvExport{w: bw, scope: sum.Scope, sealedThrough: sum.SealedThrough}
		case FormatJSONL:
			ew = &jsonlExport{w: bw, scope: sum.Scope, sealedThrough: sum.SealedThrough}
		case FormatHledger:
			h := &hledgerExport{w: bw, scope: sum.Scope, through: final}
			if err := h.prepare(ctx, tx); err != nil {
				return err
			}
			ew = h
		}
		return ew.begin()
	}
	next := time.Now().Add(every)
	var lastHash []byte // streamEntries makes a new one for each entry
	err = l.streamEntries(ctx, sel, before, func(e *chainEntry) error {
		if err := ew.entry(e); err != nil {
			return err
		}
		sum.Entries++
		sum.Postings += int64(len(e.Lines))
		if e.Hash != nil {
			sum.Sealed++
			sum.LastSeq, lastHash = e.Seq, e.Hash
		}
		if opt.ProgressFunc != nil && sum.Entries%256 == 0 && time.Now().After(next) {
			next = time.Now().Add(every)
			progress(total, false)
		}
		return nil
	})
	if err == nil {
		err = ew.end()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		sum.Bytes, sum.LastHash = cw.n, hex.EncodeToString(lastHash)
		sum.Elapsed = time.Since(start)
		progress(total, true)
	}
	if err != nil {
		return sum, fmt.Errorf("export %s: %w", format, err)
	}
	return sum, nil
}

// countingWriter counts what reaches the destination.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// chainEntry is an entry as exports and the seal see it: every field the canonical encoding
// covers, in the text both the database and an export file give back exactly, and the
// entry's seal links when it is sealed. Readers reuse one chainEntry: a callback must not
// keep it.
type chainEntry struct {
	ID          string
	Seq         int64
	Kind        string
	Key         string
	Description string
	EffectiveAt time.Time
	PostedAt    time.Time
	Metadata    []byte // JSON as stored; canonicalised when hashed
	TargetID    string // "" when none
	Lines       []chainLine
	Hash        []byte // nil when not sealed
	PrevHash    []byte
}

// chainLine is one posting of a chainEntry.
type chainLine struct {
	Line        int
	Account     string
	AccountType string
	Phase       string
	Side        string
	Amount      string // canonicalAmount
	Currency    string
}

// selection says which entries a stream reads: numbered after after and up to through,
// filtered; noLinks leaves out their seal links (the sealer, which is making them: joining
// the links of a small range cost a scan of all of them).
type selection struct {
	after, through int64
	filter         ExportFilter
	noLinks        bool
}

// entriesSQL is the FROM item of the selected entries and its arguments.
func (s selection) entriesSQL() (string, []any) {
	args := []any{s.after, s.through}
	where := []string{"x.seq > $1", "x.seq <= $2"}
	if !s.filter.From.IsZero() {
		args = append(args, s.filter.From)
		where = append(where, fmt.Sprintf("x.effective_at >= $%d", len(args)))
	}
	if !s.filter.To.IsZero() {
		args = append(args, s.filter.To)
		where = append(where, fmt.Sprintf("x.effective_at < $%d", len(args)))
	}
	if s.filter.Program != "" {
		args = append(args, s.filter.Program)
		n := len(args)
		// Entries of the program's money (ExportFilter), then what resolved or reversed them:
		// a reversal of a commit is two links away from the pending entry that named the program.
		where = append(where, fmt.Sprintf(`x.id IN (
			WITH direct AS (
				SELECT d.id FROM ledger_entries d WHERE d.metadata->>'program' = $%[1]d
				UNION
				SELECT p.entry_id FROM ledger_postings p
				 WHERE p.account_id IN (SELECT a.id FROM ledger_accounts a WHERE starts_with(a.code, 'program/' || $%[1]d || '/'))
			)
			SELECT id FROM direct
			UNION SELECT r.id FROM ledger_entries r WHERE r.target_id IN (SELECT id FROM direct)
			UNION SELECT r2.id FROM ledger_entries r2 JOIN ledger_entries r1 ON r2.target_id = r1.id
			 WHERE r1.target_id IN (SELECT id FROM direct))`, n))
	}
	return "(SELECT * FROM ledger_entries x WHERE " + strings.Join(where, " AND ") + ")", args
}

// countSQL counts the postings of the selection.
func (s selection) countSQL() (string, []any) {
	from, args := s.entriesSQL()
	return "SELECT coalesce(sum(e.posting_count), 0) FROM " + from + " e", args
}

// postingsSQL selects the postings of the selection in sequence and line order, in the way
// that suits its size:
//   - everything from the start (an export, a verification): the postings by their own
//     sequence numbers, one scan of the table, which is read whole anyway;
//   - a range after a point (a seal batch): each entry's postings by its primary key. The
//     planner, left to itself, scanned the whole table for every batch of a few thousand
//     (OFFSET 0 keeps it from flattening the lateral join back into a hash join);
//   - a filter (a program, dates): the postings of the selected entries, as the planner
//     sees fit for how many there are.
func (s selection) postingsSQL() (string, []any) {
	const cols = `SELECT p.seq, p.entry_id, p.line, a.code, a.type, p.phase, p.side, p.amount::text, p.currency`
	switch {
	case !s.filter.Filtered() && s.after == 0:
		return cols + ` FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id
			WHERE p.seq > $1 AND p.seq <= $2 ORDER BY p.seq, p.line`, []any{s.after, s.through}
	case !s.filter.Filtered():
		return cols + ` FROM (SELECT x.id FROM ledger_entries x WHERE x.seq > $1 AND x.seq <= $2) x
			CROSS JOIN LATERAL (SELECT * FROM ledger_postings p WHERE p.entry_id = x.id OFFSET 0) p
			JOIN ledger_accounts a ON a.id = p.account_id
			ORDER BY p.seq, p.line`, []any{s.after, s.through}
	}
	from, args := s.entriesSQL()
	return cols + ` FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id
		WHERE p.entry_id IN (SELECT x.id FROM ` + from + ` x) ORDER BY p.seq, p.line`, args
}

// snapshotID is the shape of pg_export_snapshot()'s answer, checked before it is spliced
// into SET TRANSACTION SNAPSHOT (which takes no parameters).
var snapshotID = regexp.MustCompile(`^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?$`)

// streamEntries calls fn for every selected entry with its postings and seal links, in
// sequence order, reading the rows as they arrive. before, when set, runs first in the same
// snapshot (to count, or read what a format declares up front).
//
// Entries and postings are two queries on two connections sharing one snapshot
// (pg_export_snapshot), merged here by sequence number: joining them in SQL cost the
// server twice the time of the two ordered scans, and an export's speed is the server's.
// Rows are read as wire bytes in binary format rather than through Scan, whose conversions
// and allocations per column were most of the client's time; the repeated short strings
// (account codes, types, phases, sides, currencies) are interned.
func (l *Ledger) streamEntries(ctx context.Context, sel selection, before func(pgx.Tx) error, fn func(*chainEntry) error) error {
	var txs [2]pgx.Tx
	for i := range txs {
		conn, err := l.db.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("read entries: %w", err)
		}
		defer conn.Release()
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return fmt.Errorf("read entries: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
		txs[i] = tx
	}
	var snap string
	if err := txs[0].QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snap); err != nil {
		return fmt.Errorf("read entries: export snapshot: %w", err)
	}
	if !snapshotID.MatchString(snap) {
		return fmt.Errorf("read entries: unexpected snapshot id %q", snap)
	}
	if _, err := txs[1].Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snap+`'`); err != nil {
		return fmt.Errorf("read entries: share snapshot: %w", err)
	}
	for _, tx := range txs {
		// The queries are long scans that JIT would compile for ~100 ms and gain nothing.
		if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
			return fmt.Errorf("read entries: %w", err)
		}
	}
	if before != nil {
		if err := before(txs[0]); err != nil {
			return err
		}
	}
	// The queries run under a context of their own, cancelled when the stream stops early:
	// closing rows not read to the end would otherwise read and discard the rest first.
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	binaryResults := pgx.QueryResultFormats{pgx.BinaryFormatCode}
	from, args := sel.entriesSQL()
	links := `s.hash, s.prev_hash FROM ` + from + ` e LEFT JOIN ledger_seal s ON s.seq = e.seq AND s.entry_id = e.id`
	if sel.noLinks {
		links = `NULL::bytea, NULL::bytea FROM ` + from + ` e`
	}
	entryRows, err := txs[0].Query(qctx, `SELECT e.id, e.seq, e.kind, coalesce(e.idempotency_key, ''), e.description,
			e.effective_at, e.posted_at, e.metadata::text, e.target_id, `+links+`
		ORDER BY e.seq`, append([]any{binaryResults}, args...)...)
	if err != nil {
		return fmt.Errorf("read entries: %w", err)
	}
	defer entryRows.Close()
	q, args := sel.postingsSQL()
	postingRows, err := txs[1].Query(qctx, q, append([]any{binaryResults}, args...)...)
	if err != nil {
		return fmt.Errorf("read postings: %w", err)
	}
	defer postingRows.Close()
	finished := false
	defer func() { // on the way out early, cancel the queries before their rows are closed
		if !finished {
			stop()
		}
	}()

	// Each stream is read and decoded by a goroutine of its own, a batch at a time, so that
	// both server processes keep sending while the caller writes: read in turn by one
	// goroutine, each waited for the other with its socket full. A decoder that fails
	// cancels the merge before anything more is passed on: its channel is closed only at
	// the end of its rows, so an entry is never handed over without all its postings.
	gctx, cancel := context.WithCancel(qctx)
	defer cancel()
	entries := make(chan []streamedEntry, 4)
	postings := make(chan []streamedPosting, 4)
	var wg sync.WaitGroup
	var decodeErr [2]error
	decode := func(i int, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				decodeErr[i] = err
				cancel()
			}
		}()
	}
	decode(0, func() error { return decodeEntries(gctx, entryRows, entries) })
	decode(1, func() error { return decodePostings(gctx, postingRows, postings) })
	err = mergeStreams(gctx, entries, postings, fn)
	if err == nil {
		// Postings after the last entry, which only an edit behind the database's back leaves.
		err = drainPostings(gctx, postings)
	}
	cancel()
	wg.Wait()
	for _, derr := range decodeErr {
		if derr != nil && !errors.Is(derr, context.Canceled) {
			return derr
		}
	}
	if err != nil {
		return err
	}
	finished = true
	return nil
}

// drainPostings reads what the postings' decoder still sends, until it closes.
func drainPostings(ctx context.Context, postings <-chan []streamedPosting) error {
	for {
		select {
		case _, ok := <-postings:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// streamedEntry is an entry as decoded from its row, before its postings are attached.
type streamedEntry struct {
	chainEntry
	id [16]byte
}

// streamedPosting is a posting as decoded from its row.
type streamedPosting struct {
	seq   int64
	entry [16]byte
	line  chainLine
}

// streamBatch is how many rows a decoder hands over at a time.
const streamBatch = 512

var errUnexpectedValue = errors.New("unexpected value")

// decodeEntries decodes the entries' rows into batches; it closes out after the last row
// only, not on an error.
func decodeEntries(ctx context.Context, rows pgx.Rows, out chan<- []streamedEntry) error {
	small := newInterner(1_000)
	batch := make([]streamedEntry, 0, streamBatch)
	send := func() error {
		select {
		case out <- batch:
			batch = make([]streamedEntry, 0, streamBatch)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for rows.Next() {
		v := rows.RawValues()
		if len(v) != 11 || len(v[0]) != 16 || len(v[1]) != 8 {
			return fmt.Errorf("read entries: %w in id or seq", errUnexpectedValue)
		}
		eff, ok1 := pgTime(v[5])
		pst, ok2 := pgTime(v[6])
		if !ok1 || !ok2 {
			return fmt.Errorf("read entries: %w in effective_at or posted_at", errUnexpectedValue)
		}
		e := streamedEntry{id: [16]byte(v[0])}
		e.chainEntry = chainEntry{ID: uuid.UUID(e.id).String(), Seq: int64(binary.BigEndian.Uint64(v[1])), Kind: small.get(v[2]),
			Key: string(v[3]), Description: string(v[4]), EffectiveAt: eff, PostedAt: pst, Metadata: append([]byte(nil), v[7]...)}
		if v[8] != nil {
			if len(v[8]) != 16 {
				return fmt.Errorf("read entries: %w in target_id", errUnexpectedValue)
			}
			e.TargetID = uuid.UUID(v[8]).String()
		}
		if v[9] != nil {
			e.Hash, e.PrevHash = append([]byte(nil), v[9]...), append([]byte(nil), v[10]...)
		}
		batch = append(batch, e)
		if len(batch) == streamBatch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read entries: %w", err)
	}
	if len(batch) > 0 {
		if err := send(); err != nil {
			return err
		}
	}
	close(out)
	return nil
}

// decodePostings decodes the postings' rows into batches; it closes out after the last row
// only, not on an error.
func decodePostings(ctx context.Context, rows pgx.Rows, out chan<- []streamedPosting) error {
	codes, small := newInterner(100_000), newInterner(1_000)
	batch := make([]streamedPosting, 0, 2*streamBatch)
	send := func() error {
		select {
		case out <- batch:
			batch = make([]streamedPosting, 0, 2*streamBatch)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for rows.Next() {
		v := rows.RawValues()
		if len(v) != 9 || len(v[0]) != 8 || len(v[1]) != 16 || len(v[2]) != 2 {
			return fmt.Errorf("read postings: %w in seq, entry_id or line", errUnexpectedValue)
		}
		currency := small.get(v[8])
		batch = append(batch, streamedPosting{seq: int64(binary.BigEndian.Uint64(v[0])), entry: [16]byte(v[1]),
			line: chainLine{Line: int(int16(binary.BigEndian.Uint16(v[2]))), Account: codes.get(v[3]),
				AccountType: small.get(v[4]), Phase: small.get(v[5]), Side: small.get(v[6]),
				Amount: canonicalAmount(string(v[7]), currency), Currency: currency}})
		if len(batch) == cap(batch) {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read postings: %w", err)
	}
	if len(batch) > 0 {
		if err := send(); err != nil {
			return err
		}
	}
	close(out)
	return nil
}

// mergeStreams attaches to each entry the postings of its sequence number and entry id and
// calls fn, in sequence order. Postings of no selected entry (only an edit behind the
// database's back makes them) are passed over; the entry that lost them no longer hashes to
// its link.
func mergeStreams(ctx context.Context, entries <-chan []streamedEntry, postings <-chan []streamedPosting, fn func(*chainEntry) error) error {
	var (
		pbatch []streamedPosting
		pi     int
		pdone  bool
		lines  []chainLine
	)
	// peek returns the next posting, nil after the last.
	peek := func() (*streamedPosting, error) {
		for pi >= len(pbatch) && !pdone {
			select {
			case b, ok := <-postings:
				if !ok {
					pdone = true
					break
				}
				pbatch, pi = b, 0
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if pi >= len(pbatch) {
			return nil, nil
		}
		return &pbatch[pi], nil
	}
	for {
		var batch []streamedEntry
		var ok bool
		select {
		case batch, ok = <-entries:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return nil
		}
		for i := range batch {
			e := &batch[i]
			lines = lines[:0]
			for {
				p, err := peek()
				if err != nil {
					return err
				}
				if p == nil || p.seq > e.Seq {
					break
				}
				if p.seq == e.Seq && p.entry == e.id {
					lines = append(lines, p.line)
				}
				pi++
			}
			e.Lines = lines
			if err := fn(&e.chainEntry); err != nil {
				return err
			}
		}
	}
}

// pgEpoch is PostgreSQL's timestamp origin: binary timestamptz values count microseconds
// from it.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// pgTime decodes a binary timestamptz; false for infinities and bad lengths.
func pgTime(b []byte) (time.Time, bool) {
	if len(b) != 8 {
		return time.Time{}, false
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, false
	}
	return pgEpoch.Add(time.Duration(us/1e6) * time.Second).Add(time.Duration(us%1e6) * time.Microsecond), true
}

// interner shares the strings a stream repeats, up to max distinct ones (beyond that it
// allocates), so memory stays bounded however many accounts the ledger has. The last few
// strings are compared before the map: a column of phases or currencies repeats a handful
// of values, and a comparison is cheaper than a hash.
type interner struct {
	m      map[string]string
	max    int
	recent [4]string
	i      int
}

func newInterner(max int) *interner { return &interner{m: map[string]string{}, max: max} }

func (in *interner) get(b []byte) string {
	for _, s := range in.recent {
		if s == string(b) && s != "" {
			return s
		}
	}
	s, ok := in.m[string(b)]
	if !ok {
		s = string(b)
		if len(in.m) < in.max {
			in.m[s] = s
		}
	}
	in.recent[in.i%len(in.recent)] = s
	in.i++
	return s
}

// exportWriter writes one format.
type exportWriter interface {
	begin() error
	entry(e *chainEntry) error
	end() error
}

// exportColumns are the CSV header and the JSON Lines keys, in order.
var exportColumns = []string{"entry_id", "seq", "kind", "idempotency_key", "description", "effective_at", "posted_at",
	"metadata", "target_id", "line", "account", "account_type", "phase", "side", "amount", "currency",
	"entry_hash", "prev_hash", "export_scope", "sealed_through"}

// csvTextColumns are the CSV columns of free text, which a spreadsheet could read as a
// formula: a cell of them that starts with one of csvFormulaStart is written with a ' before
// it (OWASP's CSV injection advice), and verify's reader takes exactly that ' away again.
var csvTextColumns = []string{"idempotency_key", "description", "metadata", "account"}

// csvFormulaStart are the first characters that make a spreadsheet read a cell as a formula,
// and the quote itself, so that a text that starts with one keeps it (the escape is one to
// one).
const csvFormulaStart = "=+-@\t\r'"

// appendCSVText writes a free-text field: with a leading ' when it could start a formula.
func appendCSVText[S ~string | ~[]byte](b []byte, s S) []byte {
	if len(s) > 0 && strings.IndexByte(csvFormulaStart, s[0]) >= 0 {
		return appendCSVField(b, "'"+string(s))
	}
	return appendCSVField(b, s)
}

// unescapeCSVText undoes appendCSVText: it removes one ' that stands before a formula's first
// character (or another '), and only that.
func unescapeCSVText(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.IndexByte(csvFormulaStart, s[1]) >= 0 {
		return s[1:]
	}
	return s
}

// rowBufs are an export writer's buffers: the entry's columns are the same on each of its
// rows, so they are encoded once (head: before the posting's columns, tail: after them).
type rowBufs struct{ head, tail, row []byte }

// csvExport writes RFC 4180 CSV by hand: encoding/csv turns a carriage return inside a field
// into nothing (with UseCRLF) or its reader drops it before a newline, and a description
// must come back byte for byte for verify to recompute its hash.
type csvExport struct {
	w             *bufio.Writer
	scope         string
	sealedThrough int64
	rowBufs
}

func (c *csvExport) begin() error {
	_, err := c.w.WriteString(strings.Join(exportColumns, ",") + "\r\n")
	return err
}

func (c *csvExport) entry(e *chainEntry) error {
	h := c.head[:0]
	h = appendCSVField(h, e.ID)
	h = append(h, ',')
	h = strconv.AppendInt(h, e.Seq, 10)
	h = append(h, ',')
	h = appendCSVField(h, e.Kind)
	h = append(h, ',')
	h = appendCSVText(h, e.Key)
	h = append(h, ',')
	h = appendCSVText(h, e.Description)
	h = append(h, ',')
	h = appendTime(h, e.EffectiveAt)
	h = append(h, ',')
	h = appendTime(h, e.PostedAt)
	h = append(h, ',')
	h = appendCSVText(h, e.Metadata)
	h = append(h, ',')
	h = appendCSVField(h, e.TargetID)
	h = append(h, ',')
	t := append(c.tail[:0], ',')
	t = appendHex(t, e.Hash)
	t = append(t, ',')
	t = appendHex(t, e.PrevHash)
	t = append(t, ',')
	t = appendCSVField(t, c.scope)
	t = append(t, ',')
	t = strconv.AppendInt(t, c.sealedThrough, 10)
	t = append(t, '\r', '\n')
	c.head, c.tail = h, t
	for i := range e.Lines {
		l := &e.Lines[i]
		r := append(c.row[:0], h...)
		r = strconv.AppendInt(r, int64(l.Line), 10)
		r = append(r, ',')
		r = appendCSVText(r, l.Account)
		r = append(r, ',')
		r = appendCSVField(r, l.AccountType)
		r = append(r, ',')
		r = appendCSVField(r, l.Phase)
		r = append(r, ',')
		r = appendCSVField(r, l.Side)
		r = append(r, ',')
		r = appendCSVField(r, l.Amount)
		r = append(r, ',')
		r = appendCSVField(r, l.Currency)
		r = append(r, t...)
		c.row = r
		if _, err := c.w.Write(r); err != nil {
			return err
		}
	}
	return nil
}

func (c *csvExport) end() error { return nil }

// appendCSVField quotes a field when it holds a comma, a quote or a line break, doubling
// its quotes (RFC 4180 §2).
func appendCSVField[S ~string | ~[]byte](b []byte, s S) []byte {
	quote := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ',' || c == '"' || c == '\r' || c == '\n' {
			quote = true
			break
		}
	}
	if !quote {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func appendHex(b []byte, h []byte) []byte {
	if h == nil {
		return b
	}
	return hex.AppendEncode(b, h)
}

// jsonlExport writes one JSON object a posting, keys in exportColumns order.
type jsonlExport struct {
	w             *bufio.Writer
	scope         string
	sealedThrough int64
	rowBufs
}

func (j *jsonlExport) begin() error { return nil }

func (j *jsonlExport) entry(e *chainEntry) error {
	h := append(j.head[:0], `{"entry_id":`...)
	h = appendJSONString(h, e.ID)
	h = append(h, `,"seq":`...)
	h = strconv.AppendInt(h, e.Seq, 10)
	h = append(h, `,"kind":`...)
	h = appendJSONString(h, e.Kind)
	h = append(h, `,"idempotency_key":`...)
	h = appendJSONNullable(h, e.Key)
	h = append(h, `,"description":`...)
	h = appendJSONString(h, e.Description)
	h = append(h, `,"effective_at":"`...)
	h = appendTime(h, e.EffectiveAt)
	h = append(h, `","posted_at":"`...)
	h = appendTime(h, e.PostedAt)
	h = append(h, `","metadata":`...)
	if json.Valid(e.Metadata) {
		h = append(h, e.Metadata...)
	} else { // only a damaged row: keep it readable, as a string
		h = appendJSONString(h, string(e.Metadata))
	}
	h = append(h, `,"target_id":`...)
	h = appendJSONNullable(h, e.TargetID)
	h = append(h, `,"line":`...)
	t := append(j.tail[:0], `,"entry_hash":`...)
	t = appendJSONNullable(t, hex.EncodeToString(e.Hash))
	t = append(t, `,"prev_hash":`...)
	t = appendJSONNullable(t, hex.EncodeToString(e.PrevHash))
	t = append(t, `,"export_scope":`...)
	t = appendJSONString(t, j.scope)
	t = append(t, `,"sealed_through":`...)
	t = strconv.AppendInt(t, j.sealedThrough, 10)
	t = append(t, "}\n"...)
	j.head, j.tail = h, t
	for i := range e.Lines {
		l := &e.Lines[i]
		r := append(j.row[:0], h...)
		r = strconv.AppendInt(r, int64(l.Line), 10)
		r = append(r, `,"account":`...)
		r = appendJSONString(r, l.Account)
		r = append(r, `,"account_type":`...)
		r = appendJSONString(r, l.AccountType)
		r = append(r, `,"phase":`...)
		r = appendJSONString(r, l.Phase)
		r = append(r, `,"side":`...)
		r = appendJSONString(r, l.Side)
		r = append(r, `,"amount":`...)
		r = appendJSONString(r, l.Amount)
		r = append(r, `,"currency":`...)
		r = appendJSONString(r, l.Currency)
		r = append(r, t...)
		j.row = r
		if _, err := j.w.Write(r); err != nil {
			return err
		}
	}
	return nil
}

func (j *jsonlExport) end() error { return nil }

func appendJSONNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// appendJSONString writes s as a JSON string that decodes back to s (invalid UTF-8, which
// PostgreSQL text never holds, becomes U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not in JavaScript strings
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// hledgerExport writes a journal that hledger 1.25 (Debian's) and ledger-cli read:
//
//   - account names are the codes with '/' as ':' (a ':' inside a segment is written %3A),
//     under a top-level account by type (assets, liabilities, equity, revenues, expenses),
//     each declared with its hledger type, so `hledger bs` and `hledger is` read sensibly;
//   - each entry is a transaction on its effective date (the posting date as secondary date),
//     its sequence number as the code, its id, kind and seal link as tags;
//   - only posted lines are postings (debits positive, credits negative), so `hledger
//     balance` is the trial balance; holds and their releases move no posted balance and are
//     kept as comments, and a pending entry is marked pending (!).
type hledgerExport struct {
	w       *bufio.Writer
	scope   string
	through int64
	// names maps an account code to its journal name; accounts are listed once up front.
	names      map[string]string
	currencies []string
	accounts   []string // declarations, in code order
	buf        []byte
}

// hledgerTops are the top-level accounts by type, with hledger's type letters.
var hledgerTops = map[string][2]string{
	"asset": {"assets", "A"}, "liability": {"liabilities", "L"}, "equity": {"equity", "E"},
	"revenue": {"revenues", "R"}, "expense": {"expenses", "X"},
}

// prepare reads the accounts and currencies (the declarations precede the transactions).
func (h *hledgerExport) prepare(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT code, type FROM ledger_accounts ORDER BY code`)
	if err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	h.names = map[string]string{}
	var code, typ string
	if _, err := pgx.ForEachRow(rows, []any{&code, &typ}, func() error {
		name := hledgerAccount(code, typ)
		h.names[code] = name
		h.accounts = append(h.accounts, fmt.Sprintf("account %s  ; type: %s", name, hledgerTops[typ][1]))
		return nil
	}); err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT DISTINCT currency FROM ledger_accounts ORDER BY currency`)
	if err != nil {
		return fmt.Errorf("read currencies: %w", err)
	}
	h.currencies, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read currencies: %w", err)
	}
	return nil
}

// hledgerAccount is an account's journal name.
func hledgerAccount(code, typ string) string {
	top := hledgerTops[typ][0]
	if top == "" {
		top = "unknown"
	}
	return top + ":" + strings.ReplaceAll(strings.ReplaceAll(code, ":", "%3A"), "/", ":")
}

func (h *hledgerExport) begin() error {
	var b strings.Builder
	fmt.Fprintf(&b, "; Tandem ledger export (hledger journal), final history through entry %d, scope %s.\n", h.through, h.scope)
	b.WriteString("; Postings are the posted lines: `hledger balance` equals Tandem's trial balance.\n")
	b.WriteString("; Holds and releases (pending entries, commits, voids) are comments; pending entries are marked !.\n\n")
	for _, c := range h.currencies {
		// A commodity directive fixes the places and the decimal mark (1.000 BHD is one
		// dinar, not a thousand) in hledger and ledger-cli alike; hledger's decimal-mark
		// directive would stop ledger-cli.
		exp, _ := Exponent(c)
		fmt.Fprintf(&b, "commodity 1000.%s %s\n", strings.Repeat("0", int(exp)), c)
	}
	b.WriteString("\n")
	for _, a := range h.accounts {
		b.WriteString(a)
		b.WriteString("\n")
	}
	b.WriteString("\n")
	_, err := h.w.WriteString(b.String())
	return err
}

func (h *hledgerExport) entry(e *chainEntry) error {
	b := h.buf[:0]
	b = e.EffectiveAt.UTC().AppendFormat(b, time.DateOnly)
	b = append(b, '=')
	b = e.PostedAt.UTC().AppendFormat(b, time.DateOnly)
	if e.Kind == string(KindPending) {
		b = append(b, " !"...)
	}
	b = append(b, " ("...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, ") "...)
	// On the transaction line a ';' would start a comment: cut the description short and
	// read what follows as tags (a planted "seal:..."). It is written as ','; the full
	// description, when the line cannot show it, follows in a comment as a JSON string whose
	// commas are escaped, since a comma in a comment ends a tag's value and starts another.
	desc := strings.ReplaceAll(strings.Join(strings.Fields(e.Description), " "), ";", ",")
	full := desc != e.Description && e.Description != ""
	if desc == "" {
		desc = e.Kind + " entry"
	}
	b = append(b, desc...)
	if full {
		b = append(b, "\n    ; description: "...)
		b = append(b, strings.ReplaceAll(string(appendJSONString(nil, e.Description)), ",", `\u002c`)...)
	}
	b = append(b, "\n    ; entry:"...)
	b = append(b, e.ID...)
	b = append(b, ", kind:"...)
	b = append(b, e.Kind...)
	if e.TargetID != "" {
		b = append(b, ", target:"...)
		b = append(b, e.TargetID...)
	}
	if e.Hash != nil {
		b = append(b, ", seal:"...)
		b = hex.AppendEncode(b, e.Hash)
	}
	b = append(b, '\n')
	for i := range e.Lines {
		l := &e.Lines[i]
		name, ok := h.names[l.Account]
		if !ok {
			name = hledgerAccount(l.Account, l.AccountType)
		}
		if l.Phase != string(PhasePosted) {
			b = append(b, "    ; "...)
			b = append(b, l.Phase...)
			b = append(b, ": "...)
			b = append(b, name...)
			b = append(b, ' ')
			b = append(b, l.Side...)
			b = append(b, ' ')
			b = append(b, l.Amount...)
			b = append(b, ' ')
			b = append(b, l.Currency...)
			b = append(b, '\n')
			continue
		}
		b = append(b, "    "...)
		b = append(b, name...)
		b = append(b, "  "...)
		if l.Side == string(Credit) {
			b = append(b, '-')
		}
		b = append(b, l.Amount...)
		b = append(b, ' ')
		b = append(b, l.Currency...)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	h.buf = b
	_, err := h.w.Write(b)
	return err
}

func (h *hledgerExport) end() error { return nil }

// --- Reading an export back (verify) ---------------------------------------------------------

// ErrExportFile: an export file could not be read (not an export, malformed rows).
var ErrExportFile = errors.New("not a readable Tandem export")

// exportRow is one posting row of an export file, as written.
type exportRow struct {
	EntryID        string          `json:"entry_id"`
	Seq            int64           `json:"seq"`
	Kind           string          `json:"kind"`
	IdempotencyKey *string         `json:"idempotency_key"`
	Description    string          `json:"description"`
	EffectiveAt    string          `json:"effective_at"`
	PostedAt       string          `json:"posted_at"`
	Metadata       json.RawMessage `json:"metadata"`
	TargetID       *string         `json:"target_id"`
	Line           int             `json:"line"`
	Account        string          `json:"account"`
	AccountType    string          `json:"account_type"`
	Phase          string          `json:"phase"`
	Side           string          `json:"side"`
	Amount         string          `json:"amount"`
	Currency       string          `json:"currency"`
	EntryHash      *string         `json:"entry_hash"`
	PrevHash       *string         `json:"prev_hash"`
	ExportScope    string          `json:"export_scope"`
	SealedThrough  int64           `json:"sealed_through"`
	// where is the row's place in the file, for messages ("line 12").
	where string
}

// rowReader reads an export file's rows in order; io.EOF at the end.
type rowReader interface {
	next() (*exportRow, error)
}

// maxExportRecord bounds one row of an export file, so a damaged or hostile file cannot make
// verify read without end: the largest legitimate row (16 KiB of metadata, 1000 characters
// of description, a 255-byte key) is far smaller.
const maxExportRecord = 1 << 20

// newRowReader detects the format from the content: a CSV export starts with its header
// row, a JSON Lines export with '{'. hledger journals lack fields the seal covers (keys,
// metadata, holds' amounts) and are refused with a hint.
func newRowReader(r io.Reader) (rowReader, ExportFormat, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	peek, err := br.Peek(len(exportColumns[0]) + 3)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, "", fmt.Errorf("%w: %v", ErrExportFile, err)
	}
	if bytes.HasPrefix(peek, []byte("\uFEFF")) { // a byte order mark, as spreadsheets write
		_, _ = br.Discard(3)
		peek = peek[3:]
	}
	switch {
	case len(peek) == 0:
		return nil, "", fmt.Errorf("%w: the file is empty", ErrExportFile)
	case peek[0] == '{':
		return &jsonlReader{r: br}, FormatJSONL, nil
	case bytes.HasPrefix(peek, []byte("entry_id")):
		c := &csvReader{r: br}
		if err := c.header(); err != nil {
			return nil, "", err
		}
		return c, FormatCSV, nil
	case peek[0] == ';':
		return nil, FormatHledger, fmt.Errorf("%w: an hledger journal does not carry every field the seal covers; verify a CSV or JSON Lines export", ErrExportFile)
	}
	return nil, "", fmt.Errorf("%w: expected a CSV export (header entry_id,seq,...) or JSON Lines", ErrExportFile)
}

// jsonlReader reads JSON Lines.
type jsonlReader struct {
	r    *bufio.Reader
	line int
	buf  []byte
}

func (j *jsonlReader) next() (*exportRow, error) {
	for {
		j.line++
		b, err := readLine(j.r, j.buf[:0])
		j.buf = b
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: line %d: %v", ErrExportFile, j.line, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			if err != nil { // io.EOF
				return nil, io.EOF
			}
			continue
		}
		var row exportRow
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&row); derr != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrExportFile, j.line, derr)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: line %d: more than one value", ErrExportFile, j.line)
		}
		row.where = fmt.Sprintf("line %d", j.line)
		return &row, nil
	}
}

// readLine reads up to and without '\n' (and a '\r' before it), bounded by maxExportRecord.
// At the end of the input it returns what it read with io.EOF.
func readLine(r *bufio.Reader, b []byte) ([]byte, error) {
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxExportRecord {
			return b, fmt.Errorf("a line is longer than %d bytes", maxExportRecord)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(b, "\r\n"), err
	}
}

// csvReader reads RFC 4180 CSV exactly: a quoted field keeps every byte, carriage returns
// and line feeds included (encoding/csv drops a carriage return before a line feed).
type csvReader struct {
	r      *bufio.Reader
	line   int // 1-based line of the next byte
	cols   map[string]int
	fields []string
	field  []byte
}

// header reads the header row and checks every column is there.
func (c *csvReader) header() error {
	c.line = 1
	rec, err := c.record()
	if err != nil {
		return fmt.Errorf("%w: header: %v", ErrExportFile, err)
	}
	c.cols = map[string]int{}
	for i, name := range rec {
		c.cols[name] = i
	}
	for _, name := range exportColumns {
		if _, ok := c.cols[name]; !ok {
			return fmt.Errorf("%w: the header has no %s column", ErrExportFile, name)
		}
	}
	if len(c.cols) != len(rec) {
		return fmt.Errorf("%w: the header repeats a column", ErrExportFile)
	}
	return nil
}

func (c *csvReader) next() (*exportRow, error) {
	start := c.line
	rec, err := c.record()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: line %d: %v", ErrExportFile, start, err)
	}
	if len(rec) != len(c.cols) {
		return nil, fmt.Errorf("%w: line %d: %d fields, the header has %d", ErrExportFile, start, len(rec), len(c.cols))
	}
	get := func(name string) string { return rec[c.cols[name]] }
	for _, name := range csvTextColumns {
		rec[c.cols[name]] = unescapeCSVText(rec[c.cols[name]])
	}
	nullable := func(name string) *string {
		if v := get(name); v != "" {
			return &v
		}
		return nil
	}
	row := &exportRow{EntryID: get("entry_id"), Kind: get("kind"), IdempotencyKey: nullable("idempotency_key"),
		Description: get("description"), EffectiveAt: get("effective_at"), PostedAt: get("posted_at"),
		Metadata: json.RawMessage(get("metadata")), TargetID: nullable("target_id"), Account: get("account"),
		AccountType: get("account_type"), Phase: get("phase"), Side: get("side"), Amount: get("amount"),
		Currency: get("currency"), EntryHash: nullable("entry_hash"), PrevHash: nullable("prev_hash"),
		ExportScope: get("export_scope"), where: fmt.Sprintf("line %d", start)}
	if row.Seq, err = strconv.ParseInt(get("seq"), 10, 64); err != nil {
		return nil, fmt.Errorf("%w: line %d: seq %q is not a number", ErrExportFile, start, truncate(get("seq"), 30))
	}
	if row.Line, err = strconv.Atoi(get("line")); err != nil {
		return nil, fmt.Errorf("%w: line %d: line %q is not a number", ErrExportFile, start, truncate(get("line"), 30))
	}
	if row.SealedThrough, err = strconv.ParseInt(get("sealed_through"), 10, 64); err != nil {
		return nil, fmt.Errorf("%w: line %d: sealed_through %q is not a number", ErrExportFile, start, truncate(get("sealed_through"), 30))
	}
	return row, nil
}

// record reads one record; io.EOF when the input ends before it starts.
func (c *csvReader) record() ([]string, error) {
	c.fields = c.fields[:0]
	size := 0
	if _, err := c.r.Peek(1); err != nil {
		return nil, io.EOF
	}
	for {
		c.field = c.field[:0]
		b, err := c.r.ReadByte()
		if err == nil && b == '"' {
			for { // a quoted field: everything up to the closing quote, "" for a quote
				b, err = c.r.ReadByte()
				if err != nil {
					return nil, errors.New("a quoted field is not closed")
				}
				if b == '\n' {
					c.line++
				}
				if b == '"' {
					if nb, perr := c.r.Peek(1); perr == nil && nb[0] == '"' {
						_, _ = c.r.ReadByte()
					} else {
						break
					}
				}
				c.field = append(c.field, b)
				if size+len(c.field) > maxExportRecord {
					return nil, fmt.Errorf("a record is longer than %d bytes", maxExportRecord)
				}
			}
			b, err = c.r.ReadByte()
		} else {
			for err == nil && b != ',' && b != '\n' && b != '\r' {
				if b == '"' {
					return nil, errors.New(`a quote inside an unquoted field (RFC 4180 quotes the whole field)`)
				}
				c.field = append(c.field, b)
				if size+len(c.field) > maxExportRecord {
					return nil, fmt.Errorf("a record is longer than %d bytes", maxExportRecord)
				}
				b, err = c.r.ReadByte()
			}
		}
		size += len(c.field)
		c.fields = append(c.fields, string(c.field))
		switch {
		case err != nil: // the last record may end without a line break
			return c.fields, nil
		case b == ',':
			continue
		case b == '\r':
			if nb, perr := c.r.ReadByte(); perr != nil || nb != '\n' {
				return nil, errors.New("a carriage return outside quotes not followed by a line feed")
			}
			c.line++
			return c.fields, nil
		case b == '\n':
			c.line++
			return c.fields, nil
		default:
			return nil, fmt.Errorf("%q after a closing quote (expected a comma or a line break)", rune(b))
		}
	}
}
