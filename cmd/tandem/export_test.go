package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// exportLedger posts a small history through the CLI: a gift, awards and a payout held and
// committed, in USD.
func exportLedger(t *testing.T, c *cliBundle, awards int) {
	t.Helper()
	c.ok("", "ledger", "account", "create", "--code", "org/cash/stripe", "--type", "asset", "--currency", "USD")
	c.ok("", "ledger", "account", "create", "--code", "program/p/fund", "--type", "equity", "--currency", "USD", "--no-overdraft")
	c.ok("", "ledger", "account", "create", "--code", "participant/x/wallet", "--type", "liability", "--currency", "USD", "--no-overdraft")
	c.ok(entry("gift", "org/cash/stripe", "program/p/fund", "1000.00"), "ledger", "post")
	for i := range awards {
		c.ok(entry(fmt.Sprintf("award-%d", i), "program/p/fund", "participant/x/wallet", "2.50"), "ledger", "post")
	}
	out := c.ok(entry("payout", "participant/x/wallet", "org/cash/stripe", "1.00"), "ledger", "post-pending", "--json")
	c.ok("", "ledger", "commit", between(out, `"id": "`, `"`))
}

// runSplit runs the command with stdout and stderr apart.
func runSplit(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestExportAndVerifyCLI(t *testing.T) {
	c := setupCLI(t)
	exportLedger(t, c, 300)
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "ledger.csv")

	// Before the seal: the export carries no links, verify of the database finds none.
	_, stderr, err := runSplit("export", "--out", csvFile, "--progress", "1ns")
	require.NoError(t, err, stderr)
	require.Regexp(t, `export: [\d,]+ of 608 postings \(\d+%\)`, stderr, "progress lines, with the percentage")
	require.Contains(t, stderr, "export: wrote 608 postings of 303 entries")
	require.Contains(t, stderr, "no entry in it is sealed yet")
	data, err := os.ReadFile(csvFile)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), "entry_id,seq,kind,"))
	out := c.ok("", "verify")
	require.Contains(t, out, "nothing is sealed yet; 303 entries wait for the seal job")
	out = c.ok("", "verify", csvFile)
	require.Contains(t, out, "no entry in the file carries seal links")

	// Seal, then the database and a new export verify.
	out = c.ok("", "verify", "--seal", "--progress", "1ns")
	require.Contains(t, out, "seal: 303 new entries sealed")
	require.Regexp(t, `verify: [\d,]+ of 303 entries`, out)
	require.Contains(t, out, "the database: the seal holds: 303 entries recomputed through seq")
	stdout, stderr, err := runSplit("export", "--out", csvFile, "--quiet")
	require.NoError(t, err)
	require.Empty(t, stdout)
	require.Empty(t, stderr, "--quiet")
	out = c.ok("", "verify", csvFile)
	require.Contains(t, out, "(csv export, scope all): the chain holds: 303 entries recomputed and linked")
	out = c.ok("", "verify", csvFile, "--json")
	var rep ledger.VerifyReport
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep))
	require.Equal(t, int64(303), rep.Entries)

	// JSON Lines to standard output, the program's only, verifies as a partial export when the
	// auditor says one is expected (--partial); verify expects a whole export otherwise.
	stdout, stderr, err = runSplit("export", "--format", "jsonl", "--out", "-", "--program", "p", "--from", "2000-01-01")
	require.NoError(t, err, stderr)
	require.Contains(t, stderr, "to standard output")
	require.Equal(t, 602, strings.Count(stdout, "\n"), "the gift and the awards: the payout neither touches the fund nor names the program")
	jsonl := filepath.Join(dir, "p.jsonl")
	require.NoError(t, os.WriteFile(jsonl, []byte(stdout), 0o600))
	out, err = c.run("", "verify", jsonl)
	require.ErrorIs(t, err, ledger.ErrSealBroken)
	require.Contains(t, out, "the seal does NOT verify")
	require.Contains(t, out, "it is not verifiable as a whole export")
	require.Contains(t, out, "tandem verify --partial")
	out = c.ok("", "verify", jsonl, "--partial")
	require.Contains(t, out, "a filtered export: continuity could only be checked within the file")
	require.Regexp(t, `head link [0-9a-f]{64} \(seq \d+\)`, out)
	_, err = c.run("", "verify", "--partial")
	require.ErrorIs(t, err, errUsage)

	// Every export is in the audit trail, with who ran it.
	pool, err := openPool(context.Background())
	require.NoError(t, err)
	defer pool.Close()
	var actor, role, record, detail string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT actor, coalesce(role, ''), record, detail FROM audit_log
		WHERE action = 'ledger.export' ORDER BY id DESC LIMIT 1`).Scan(&actor, &role, &record, &detail))
	require.Equal(t, cliActor().Name, actor)
	require.Equal(t, "admin", role)
	require.Equal(t, "from=2000-01-01;program=p", record)
	require.Contains(t, detail, "completed: format jsonl, 602 postings of 301 entries")
	require.Contains(t, detail, "through seq ")
	var exports int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'ledger.export'`).Scan(&exports))
	require.Equal(t, int64(3), exports, "the three exports so far")

	// hledger from the extension.
	journal := filepath.Join(dir, "ledger.journal")
	c.ok("", "export", "--out", journal)
	data, err = os.ReadFile(journal)
	require.NoError(t, err)
	require.Contains(t, string(data), "assets:org:cash:stripe")
	_, err = c.run("", "verify", journal)
	require.ErrorIs(t, err, ledger.ErrExportFile)

	// An altered row: verify names the entry and fails.
	data, err = os.ReadFile(csvFile)
	require.NoError(t, err)
	lines := strings.Split(string(data), "\r\n")
	victim := lines[10]
	id, seq := strings.Split(victim, ",")[0], strings.Split(victim, ",")[1]
	lines[10] = strings.Replace(victim, "2.50", "25.00", 1)
	tampered := filepath.Join(dir, "tampered.csv")
	require.NoError(t, os.WriteFile(tampered, []byte(strings.Join(lines, "\r\n")), 0o600))
	out, err = c.run("", "verify", tampered)
	require.ErrorIs(t, err, ledger.ErrSealBroken)
	require.Contains(t, out, "the seal does NOT verify")
	require.Contains(t, out, fmt.Sprintf("entry %s (seq %s): hash differs", id, seq))

	// A posting altered in the database behind the triggers: verify names the entry.
	conn, err := pool.Acquire(context.Background())
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "UPDATE ledger_postings SET amount = 0.01 WHERE entry_id = $1 AND line = 1", id)
	require.NoError(t, err)
	conn.Release()
	out, err = c.run("", "verify")
	require.ErrorIs(t, err, ledger.ErrSealBroken)
	require.Contains(t, out, fmt.Sprintf("entry %s (seq %s): hash differs — altered after sealing", id, seq))

	// An audit line rewritten behind the triggers: verify names it too.
	var auditID int64
	// The first export's line, sealed by 'verify --seal' above.
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT min(id) FROM audit_log WHERE action = 'ledger.export'`).Scan(&auditID))
	conn, err = pool.Acquire(context.Background())
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "UPDATE audit_log SET actor = 'someone else' WHERE id = $1", auditID)
	require.NoError(t, err)
	conn.Release()
	out, err = c.run("", "verify")
	require.ErrorIs(t, err, ledger.ErrSealBroken)
	require.Regexp(t, fmt.Sprintf(`audit line %d \(ledger\.export .* by someone else, .*\): hash differs — altered after sealing`, auditID), out)
}

func TestExportCLIBadInput(t *testing.T) {
	c := setupCLI(t)
	exportLedger(t, c, 1)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.csv")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no --out", []string{"export", "--format", "csv"}, "needs --out"},
		{"unknown format", []string{"export", "--format", "xlsx", "--out", out}, `"xlsx" is not an export format`},
		{"format not told", []string{"export", "--out", filepath.Join(dir, "x.txt")}, "say --format"},
		{"bad date", []string{"export", "--out", out, "--from", "yesterday"}, `--from: invalid request: from: "yesterday" is not a date`},
		{"from after to", []string{"export", "--out", out, "--from", "2026-02-01", "--to", "2026-01-01"}, "is not after from"},
		{"unknown program", []string{"export", "--out", out, "--program", "nope"}, `unknown program: "nope" has no accounts`},
		{"a positional argument", []string{"export", out}, "takes no arguments"},
		{"bad flag", []string{"export", "--out", out, "--frobnicate"}, "flag provided but not defined"},
		{"verify two files", []string{"verify", "a", "b"}, "at most one file"},
		{"verify --seal with a file", []string{"verify", "--seal", "a.csv"}, "cannot be used when verifying a file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.run("", tc.args...)
			require.ErrorIs(t, err, errUsage)
			require.Contains(t, err.Error()+got, tc.want)
			_, statErr := os.Stat(out)
			require.True(t, os.IsNotExist(statErr), "no file written")
		})
	}
	// A directory that does not exist: an error, and nothing left behind.
	_, err := c.run("", "export", "--out", filepath.Join(dir, "missing", "x.csv"))
	require.ErrorContains(t, err, "no such file or directory")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "no temporary file left")
	_, err = c.run("", "verify", filepath.Join(dir, "nope.csv"))
	require.ErrorContains(t, err, "no such file or directory")
	garbage := filepath.Join(dir, "garbage.csv")
	require.NoError(t, os.WriteFile(garbage, []byte("hello,world\n"), 0o600))
	_, err = c.run("", "verify", garbage)
	require.ErrorIs(t, err, ledger.ErrExportFile)
}
