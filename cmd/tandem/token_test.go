package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
)

// setupTokenCLI is setupCLI that also keeps a pool on the test's database, to check what the
// commands stored. Like setupCLI it sets DATABASE_URL: no t.Parallel.
func setupTokenCLI(t *testing.T) (*cliBundle, *pgxpool.Pool) {
	pool, url := dbtest.NewWithURL(t)
	t.Setenv("DATABASE_URL", url)
	return &cliBundle{t: t}, pool
}

var secretPattern = regexp.MustCompile(`tdm_[A-Za-z0-9_-]{43}`)

// onlySecret returns the one secret out shows (it may repeat it), failing if there is none
// or more than one different.
func onlySecret(t *testing.T, out string) string {
	t.Helper()
	all := secretPattern.FindAllString(out, -1)
	require.NotEmpty(t, all, out)
	for _, s := range all {
		require.Equal(t, all[0], s, "one secret per create: %s", out)
	}
	return all[0]
}

func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestTokenCLI(t *testing.T) {
	c, pool := setupTokenCLI(t)
	ctx := context.Background()
	store := access.New(pool)

	// create prints the secret, which authenticates as the token's principal.
	out := c.ok("", "token", "create", "--role", "participant", "--person", "ana", "--name", "Ana's phone")
	secret := onlySecret(t, out)
	p, err := store.Authenticate(ctx, secret)
	require.NoError(t, err)
	require.Equal(t, access.Participant, p.Role)
	require.Equal(t, "ana", p.PersonID)
	require.Equal(t, "Ana's phone", p.Name)
	anaID := p.TokenID
	require.Contains(t, out, `token `+anaID+` for "Ana's phone" (participant, person ana)`)
	require.Contains(t, out, "This is the only time it is shown")
	// Only its hash is stored.
	require.Equal(t, 0, countRows(t, pool, `SELECT count(*) FROM access_tokens t WHERE strpos(t::text, $1) > 0`,
		strings.TrimPrefix(secret, "tdm_")))

	// --json, flags in any order, with an expiry.
	out = c.ok("", "token", "create", "--json", "--expires", "720h", "--name", "ops", "--role", "admin")
	var created struct {
		Token     string     `json:"token"`
		ID        string     `json:"id"`
		Role      string     `json:"role"`
		PersonID  string     `json:"person_id"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	require.Equal(t, "admin", created.Role)
	require.Empty(t, created.PersonID)
	require.NotNil(t, created.ExpiresAt)
	require.WithinDuration(t, time.Now().Add(720*time.Hour), *created.ExpiresAt, time.Minute)
	p, err = store.Authenticate(ctx, created.Token)
	require.NoError(t, err)
	require.Equal(t, created.ID, p.TokenID)
	require.NotEqual(t, secret, created.Token)

	out = c.ok("", "token", "create", "--role", "auditor", "--name", "brief", "--expires", "1ms")
	briefSecret := onlySecret(t, out)
	time.Sleep(20 * time.Millisecond)

	// list shows every token, never a secret.
	out = c.ok("", "token", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^id\s+name\s+role\s+person\s+created\s+expires\s+status$`, lines[0])
	require.Regexp(t, `^\S+\s+brief\s+auditor\s+-\s+\S+\s+\S+\s+expired$`, lines[1], "newest first")
	require.Regexp(t, `^`+created.ID+`\s+ops\s+admin\s+-\s+\S+\s+`+regexp.QuoteMeta(created.ExpiresAt.Format(time.RFC3339))+`\s+active$`, lines[2])
	require.Regexp(t, `^`+anaID+`\s+Ana's phone\s+participant\s+ana\s+\S+\s+never\s+active$`, lines[3])
	out += c.ok("", "token", "list", "--json")
	for _, s := range []string{secret, created.Token, briefSecret} {
		require.NotContains(t, out, strings.TrimPrefix(s, "tdm_"))
	}
	require.Empty(t, secretPattern.FindAllString(out, -1))
	var listed struct {
		Tokens []access.Token `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.ok("", "token", "list", "--json")), &listed))
	require.Len(t, listed.Tokens, 3)
	require.Equal(t, anaID, listed.Tokens[2].ID)

	// revoke ends the token; a second revoke fails.
	out = c.ok("", "token", "revoke", anaID)
	require.Regexp(t, `^revoked token `+anaID+` \(Ana's phone, participant\) at \S+\n$`, out)
	require.NotContains(t, out, strings.TrimPrefix(secret, "tdm_"))
	_, err = store.Authenticate(ctx, secret)
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	require.Regexp(t, anaID+`\s+Ana's phone\s+participant\s+ana\s+\S+\s+never\s+revoked \S+\n`, c.ok("", "token", "list"))
	_, err = c.run("", "token", "revoke", anaID)
	require.ErrorIs(t, err, access.ErrAlreadyRevoked)
	_, err = c.run("", "token", "revoke", "0193a0a0-0000-7000-8000-000000000000")
	require.ErrorIs(t, err, access.ErrNotFound)
	_, err = c.run("", "token", "revoke", "nope")
	require.ErrorIs(t, err, access.ErrInvalid)
	// The other tokens still work.
	_, err = store.Authenticate(ctx, created.Token)
	require.NoError(t, err)

	// Every change is in the trail, as the command line's user.
	actor := cliActor().Name
	require.True(t, strings.HasPrefix(actor, "cli:"), actor)
	trail, err := store.Audit(ctx, access.AuditFilter{Limit: 1000})
	require.NoError(t, err)
	var got []string
	for _, l := range trail {
		require.Equal(t, actor, l.Actor)
		require.Empty(t, l.TokenID)
		require.Equal(t, "admin", l.Role)
		got = append(got, l.Action+" "+l.Record)
	}
	require.Equal(t, []string{"token.create token:" + anaID, "token.create token:" + created.ID,
		"token.create token:" + listed.Tokens[0].ID, "token.revoke token:" + anaID}, got)
	var revokedBy string
	require.NoError(t, pool.QueryRow(ctx, `SELECT revoked_by FROM access_tokens WHERE id = $1`, anaID).Scan(&revokedBy))
	require.Equal(t, actor, revokedBy)

	require.Contains(t, c.ok("", "token", "help"), "tandem token create")
}

func TestTokenCLIBadInput(t *testing.T) {
	c, pool := setupTokenCLI(t)
	cases := []struct {
		name string
		args []string
		want error
	}{
		{"no command", []string{"token"}, errUsage},
		{"unknown command", []string{"token", "frob"}, errUsage},
		{"unknown flag", []string{"token", "create", "--role", "admin", "--name", "x", "--bogus"}, errUsage},
		{"bad duration", []string{"token", "create", "--role", "admin", "--name", "x", "--expires", "soon"}, errUsage},
		{"flag without value", []string{"token", "create", "--name", "x", "--role"}, errUsage},
		{"create takes no argument", []string{"token", "create", "--role", "admin", "--name", "x", "extra"}, errUsage},
		{"list takes no argument", []string{"token", "list", "extra"}, errUsage},
		{"list has no --role", []string{"token", "list", "--role", "admin"}, errUsage},
		{"revoke without id", []string{"token", "revoke"}, errUsage},
		{"revoke two ids", []string{"token", "revoke", "a", "b"}, errUsage},
		{"revoke has no --name", []string{"token", "revoke", "--name", "x", "0193a0a0-0000-7000-8000-000000000000"}, errUsage},
		{"bad role", []string{"token", "create", "--role", "root", "--name", "x"}, access.ErrInvalid},
		{"no role", []string{"token", "create", "--name", "x"}, access.ErrInvalid},
		{"no name", []string{"token", "create", "--role", "admin"}, access.ErrInvalid},
		{"participant without person", []string{"token", "create", "--role", "participant", "--name", "x"}, access.ErrInvalid},
		{"bad person", []string{"token", "create", "--role", "coach", "--name", "x", "--person", "a/b"}, access.ErrInvalid},
		{"negative expiry", []string{"token", "create", "--role", "admin", "--name", "x", "--expires", "-1h"}, access.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.run("", tc.args...)
			require.ErrorIs(t, err, tc.want, out)
			if tc.want != errUsage {
				require.NotErrorIs(t, err, errUsage, "a bad value is not a usage error (exit 1, not 2)")
			}
			require.Empty(t, secretPattern.FindAllString(out, -1), "no token printed")
		})
	}
	require.Equal(t, 0, countRows(t, pool, `SELECT count(*) FROM access_tokens`))
	require.Equal(t, 0, countRows(t, pool, `SELECT count(*) FROM audit_log`))
}

// TestCLIWritesAreAudited: ledger changes from the command line are in the trail as
// "cli:<user>"; reads and harmless repeats are not.
func TestCLIWritesAreAudited(t *testing.T) {
	c, pool := setupTokenCLI(t)
	ctx := context.Background()
	store := access.New(pool)

	c.ok("", "ledger", "account", "create", "--code", "org/cash/stripe", "--type", "asset", "--currency", "USD")
	trail, err := store.Audit(ctx, access.AuditFilter{})
	require.NoError(t, err)
	require.Len(t, trail, 1)
	l := trail[0]
	require.True(t, strings.HasPrefix(l.Actor, "cli:"), l.Actor)
	require.Equal(t, cliActor().Name, l.Actor)
	require.Empty(t, l.TokenID)
	require.Equal(t, "admin", l.Role)
	require.Empty(t, l.PersonID)
	require.Equal(t, "ledger.account.create", l.Action)
	require.Equal(t, "account:org/cash/stripe", l.Record)
	require.Equal(t, "ok", l.Outcome)
	require.Nil(t, l.Before)
	var after map[string]any
	require.NoError(t, json.Unmarshal(l.After, &after))
	require.Equal(t, "org/cash/stripe", after["code"])
	require.Equal(t, "asset", after["type"])

	c.ok("", "ledger", "account", "create", "--code", "org/cash/stripe", "--type", "asset", "--currency", "USD")
	c.ok("", "ledger", "account", "create", "--code", "program/p/fund", "--type", "equity", "--currency", "USD", "--no-overdraft")
	out := c.ok(entry("gift-1", "org/cash/stripe", "program/p/fund", "10.00"), "ledger", "post", "--json")
	id := between(out, `"id": "`, `"`)
	require.NotEmpty(t, id, out)
	c.ok(entry("gift-1", "org/cash/stripe", "program/p/fund", "10.00"), "ledger", "post")
	c.ok("", "ledger", "balance", "program/p/fund")
	c.ok("", "ledger", "trial-balance")
	_, err = c.run(entry("refund-1", "program/p/fund", "org/cash/stripe", "11.00"), "ledger", "post")
	require.ErrorIs(t, err, ledger.ErrInsufficientFunds, "refused changes leave no line")

	trail, err = store.Audit(ctx, access.AuditFilter{})
	require.NoError(t, err)
	var got []string
	for _, l := range trail {
		require.Equal(t, cliActor().Name, l.Actor)
		got = append(got, l.Action+" "+l.Record)
	}
	require.Equal(t, []string{"ledger.account.create account:org/cash/stripe", "ledger.account.create account:program/p/fund",
		"ledger.entry.post entry:" + id}, got)
	require.Equal(t, 1, countRows(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'ledger.entry.post' AND record = $1`, "entry:"+id))
}
