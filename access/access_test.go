package access_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/dbtest"
)

var (
	ctx    = context.Background()
	tester = access.Principal{Name: "cli:tester", Role: access.Admin}
)

func newStore(t *testing.T) (*access.Store, *pgxpool.Pool) {
	t.Helper()
	pool := dbtest.New(t)
	return access.New(pool), pool
}

func mint(t *testing.T, s *access.Store, nt access.NewToken) (access.Token, string) {
	t.Helper()
	tok, secret, err := s.CreateToken(ctx, tester, nt)
	require.NoError(t, err)
	return tok, secret
}

func auditLines(t *testing.T, s *access.Store) []access.AuditLine {
	t.Helper()
	lines, err := s.Audit(ctx, access.AuditFilter{Limit: 1000})
	require.NoError(t, err)
	return lines
}

func TestCreateTokenStoresOnlyTheHash(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	before := time.Now()
	tok, secret := mint(t, s, access.NewToken{Name: "  Ana's phone  ", Role: access.Participant, PersonID: "ana", TTL: time.Hour})

	require.True(t, strings.HasPrefix(secret, "tdm_"), secret)
	require.Len(t, secret, len("tdm_")+43, "32 random bytes, base64url without padding")
	require.Equal(t, "Ana's phone", tok.Name, "the name is trimmed")
	require.Equal(t, access.Participant, tok.Role)
	require.Equal(t, "ana", tok.PersonID)
	require.Equal(t, tester.Subject(), tok.CreatedBy)
	require.Nil(t, tok.RevokedAt)
	require.Empty(t, tok.RevokedBy)
	require.NotNil(t, tok.ExpiresAt)
	require.WithinDuration(t, before.Add(time.Hour), *tok.ExpiresAt, 5*time.Second)
	require.WithinDuration(t, before, tok.CreatedAt, 5*time.Second)

	// The row holds the hash and nothing that contains the secret.
	var row string
	var hash []byte
	require.NoError(t, pool.QueryRow(ctx, `SELECT t::text, hash FROM access_tokens t WHERE id = $1`, tok.ID).Scan(&row, &hash))
	want := sha256.Sum256([]byte(secret))
	require.Equal(t, want[:], hash)
	body := strings.TrimPrefix(secret, "tdm_")
	require.NotContains(t, row, body)
	require.NotContains(t, strings.ToLower(row), strings.ToLower(body))
	// Nor does any other table access writes.
	var all string
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce((SELECT string_agg(a::text, ',') FROM audit_log a), '') ||
		coalesce((SELECT string_agg(s::text, ',') FROM access_sessions s), '')`).Scan(&all))
	require.NotContains(t, all, body)

	// The creation is in the trail, by whoever created it.
	lines := auditLines(t, s)
	require.Len(t, lines, 1)
	require.Equal(t, "token.create", lines[0].Action)
	require.Equal(t, "token:"+tok.ID, lines[0].Record)
	require.Equal(t, "cli:tester", lines[0].Actor)
	require.Equal(t, "admin", lines[0].Role)
	require.Empty(t, lines[0].TokenID)
	require.Equal(t, "ok", lines[0].Outcome)
	var after access.Token
	require.NoError(t, json.Unmarshal(lines[0].After, &after))
	require.Equal(t, tok.ID, after.ID)

	// Secrets are random.
	_, secret2 := mint(t, s, access.NewToken{Name: "again", Role: access.Participant, PersonID: "ana"})
	require.NotEqual(t, secret, secret2)

	// Without a TTL the token does not expire.
	forever, _ := mint(t, s, access.NewToken{Name: "forever", Role: access.Admin})
	require.Nil(t, forever.ExpiresAt)
}

func TestTokensNeverShowSecrets(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	toks, err := s.Tokens(ctx)
	require.NoError(t, err)
	require.Empty(t, toks)

	first, s1 := mint(t, s, access.NewToken{Name: "first", Role: access.Admin})
	second, s2 := mint(t, s, access.NewToken{Name: "second", Role: access.Coach, PersonID: "cy"})
	_, err = s.RevokeToken(ctx, tester, first.ID)
	require.NoError(t, err)

	toks, err = s.Tokens(ctx)
	require.NoError(t, err)
	require.Len(t, toks, 2)
	require.Equal(t, second.ID, toks[0].ID, "newest first")
	require.Equal(t, first.ID, toks[1].ID)
	require.Equal(t, "cy", toks[0].PersonID)
	require.NotNil(t, toks[1].RevokedAt)
	require.Equal(t, tester.Subject(), toks[1].RevokedBy)
	b, err := json.Marshal(toks)
	require.NoError(t, err)
	for _, secret := range []string{s1, s2} {
		require.NotContains(t, string(b), strings.TrimPrefix(secret, "tdm_"))
		require.NotContains(t, fmt.Sprintf("%+v", toks), strings.TrimPrefix(secret, "tdm_"))
	}
}

func TestNewTokenValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		nt    access.NewToken
		field string // "" means valid
	}{
		{"admin", access.NewToken{Name: "a", Role: access.Admin}, ""},
		{"auditor", access.NewToken{Name: "a", Role: access.Auditor}, ""},
		{"admin with a person", access.NewToken{Name: "a", Role: access.Admin, PersonID: "ops.1"}, ""},
		{"coach", access.NewToken{Name: "a", Role: access.Coach, PersonID: "cy"}, ""},
		{"participant", access.NewToken{Name: "a", Role: access.Participant, PersonID: "A-b_c.d:e"}, ""},
		{"with ttl", access.NewToken{Name: "a", Role: access.Admin, TTL: time.Hour}, ""},
		{"name of 200", access.NewToken{Name: strings.Repeat("n", 200), Role: access.Admin}, ""},
		{"empty role", access.NewToken{Name: "a"}, "role"},
		{"bad role", access.NewToken{Name: "a", Role: "root"}, "role"},
		{"role in capitals", access.NewToken{Name: "a", Role: "Admin"}, "role"},
		{"empty name", access.NewToken{Name: "", Role: access.Admin}, "name"},
		{"blank name", access.NewToken{Name: "  \t ", Role: access.Admin}, "name"},
		{"name of 201", access.NewToken{Name: strings.Repeat("n", 201), Role: access.Admin}, "name"},
		{"participant without person", access.NewToken{Name: "a", Role: access.Participant}, "person"},
		{"coach without person", access.NewToken{Name: "a", Role: access.Coach}, "person"},
		{"person with a slash", access.NewToken{Name: "a", Role: access.Participant, PersonID: "ana/wallet"}, "person"},
		{"person with a space", access.NewToken{Name: "a", Role: access.Participant, PersonID: "an a"}, "person"},
		{"person too long", access.NewToken{Name: "a", Role: access.Participant, PersonID: strings.Repeat("p", 101)}, "person"},
		{"negative ttl", access.NewToken{Name: "a", Role: access.Admin, TTL: -time.Second}, "expires"},
		{"name reserved for the CLI", access.NewToken{Name: "cli:root", Role: access.Admin}, "name"},
		{"person of dots", access.NewToken{Name: "a", Role: access.Participant, PersonID: ".."}, "person"},
		{"person of one dot", access.NewToken{Name: "a", Role: access.Participant, PersonID: "."}, "person"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.nt.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, access.ErrInvalid)
			require.Contains(t, err.Error(), tc.field+":")
		})
	}

	// CreateToken validates too, and stores nothing when it refuses.
	s, pool := newStore(t)
	_, _, err := s.CreateToken(ctx, tester, access.NewToken{Name: "x", Role: access.Participant})
	require.ErrorIs(t, err, access.ErrInvalid)
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM access_tokens) + (SELECT count(*) FROM audit_log)`).Scan(&n))
	require.Equal(t, 0, n)
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	tok, secret := mint(t, s, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	p, err := s.Authenticate(ctx, secret)
	require.NoError(t, err)
	require.Equal(t, access.Principal{TokenID: tok.ID, Name: "ana", Role: access.Participant, PersonID: "ana"}, p)
	require.Equal(t, "person:ana", p.Subject())

	admin, adminSecret := mint(t, s, access.NewToken{Name: "ops", Role: access.Admin})
	p, err = s.Authenticate(ctx, adminSecret)
	require.NoError(t, err)
	require.Equal(t, "token:"+admin.ID, p.Subject())

	revokedTok, revoked := mint(t, s, access.NewToken{Name: "old", Role: access.Admin})
	_, err = s.RevokeToken(ctx, tester, revokedTok.ID)
	require.NoError(t, err)
	_, expired := mint(t, s, access.NewToken{Name: "short", Role: access.Admin, TTL: time.Millisecond})
	time.Sleep(20 * time.Millisecond)

	cases := map[string]string{
		"empty":              "",
		"no prefix":          strings.TrimPrefix(secret, "tdm_"),
		"unknown":            "tdm_" + strings.Repeat("A", 43),
		"one character off":  secret[:len(secret)-1] + string(rune(secret[len(secret)-1])^1),
		"revoked":            revoked,
		"expired":            expired,
		"with trailing data": secret + "x",
	}
	for name, secret := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := s.Authenticate(ctx, secret)
			require.ErrorIs(t, err, access.ErrUnauthenticated)
			require.Equal(t, access.Principal{}, p)
		})
	}
	_, err = s.Authenticate(ctx, revoked)
	require.Contains(t, err.Error(), "revoked")
	_, err = s.Authenticate(ctx, expired)
	require.Contains(t, err.Error(), "expired")
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	tok, secret := mint(t, s, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	_, bossSecret := mint(t, s, access.NewToken{Name: "boss", Role: access.Admin})
	by, err := s.Authenticate(ctx, bossSecret)
	require.NoError(t, err)

	got, err := s.RevokeToken(ctx, by, tok.ID)
	require.NoError(t, err)
	require.Equal(t, tok.ID, got.ID)
	require.Equal(t, "token:"+by.TokenID, got.RevokedBy)
	require.NotNil(t, got.RevokedAt)
	require.WithinDuration(t, time.Now(), *got.RevokedAt, 5*time.Second)
	require.Equal(t, by.Subject(), got.RevokedBy)
	_, err = s.Authenticate(ctx, secret)
	require.ErrorIs(t, err, access.ErrUnauthenticated)

	_, err = s.RevokeToken(ctx, by, tok.ID)
	require.ErrorIs(t, err, access.ErrAlreadyRevoked)
	_, err = s.RevokeToken(ctx, by, "0193a0a0-0000-7000-8000-0000000000ff")
	require.ErrorIs(t, err, access.ErrNotFound)
	_, err = s.RevokeToken(ctx, by, "not-a-uuid")
	require.ErrorIs(t, err, access.ErrInvalid)

	// One trail line for the revocation, with before and after; none for the refusals.
	var revokes []access.AuditLine
	for _, l := range auditLines(t, s) {
		if l.Action == "token.revoke" {
			revokes = append(revokes, l)
		}
	}
	require.Len(t, revokes, 1)
	require.Equal(t, "token:"+tok.ID, revokes[0].Record)
	require.Equal(t, "boss", revokes[0].Actor)
	require.Equal(t, by.TokenID, revokes[0].TokenID)
	var before, after access.Token
	require.NoError(t, json.Unmarshal(revokes[0].Before, &before))
	require.NoError(t, json.Unmarshal(revokes[0].After, &after))
	require.Nil(t, before.RevokedAt)
	require.NotNil(t, after.RevokedAt)
}

func TestAnyAdmin(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ok, err := s.AnyAdmin(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	mint(t, s, access.NewToken{Name: "auditor", Role: access.Auditor})
	mint(t, s, access.NewToken{Name: "short", Role: access.Admin, TTL: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	ok, err = s.AnyAdmin(ctx)
	require.NoError(t, err)
	require.False(t, ok, "auditors and expired admins do not count")
	admin, _ := mint(t, s, access.NewToken{Name: "ops", Role: access.Admin})
	ok, err = s.AnyAdmin(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	_, err = s.RevokeToken(ctx, tester, admin.ID)
	require.NoError(t, err)
	ok, err = s.AnyAdmin(ctx)
	require.NoError(t, err)
	require.False(t, ok, "a revoked admin does not count")
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	var (
		admin       = access.Principal{TokenID: "t-admin", Name: "ops", Role: access.Admin}
		admin2      = access.Principal{TokenID: "t-admin2", Name: "ops2", Role: access.Admin, PersonID: "kim"}
		personAdmin = access.Principal{TokenID: "t-admin3", Name: "pat", Role: access.Admin, PersonID: "pat"}
		cli         = access.Principal{Name: "cli:root", Role: access.Admin}
		auditor     = access.Principal{TokenID: "t-aud", Name: "aud", Role: access.Auditor}
		coach       = access.Principal{TokenID: "t-cy", Name: "cy", Role: access.Coach, PersonID: "cy"}
		ana         = access.Principal{TokenID: "t-ana", Name: "ana", Role: access.Participant, PersonID: "ana"}
		noPerson    = access.Principal{TokenID: "t-x", Name: "x", Role: access.Participant}
		badRole     = access.Principal{TokenID: "t-r", Name: "r", Role: "root", PersonID: "ana"}
		zero        = access.Principal{}

		anaRec    = access.Resource{Owner: "ana"}
		cyRec     = access.Resource{Owner: "cy"}
		benRec    = access.Resource{Owner: "ben"}
		assigned  = access.Resource{Owner: "ana", Coaches: []string{"cy"}} // ana's record; cy coaches her
		otherCoa  = access.Resource{Owner: "ben", Coaches: []string{"dee"}}
		benByAna  = access.Resource{Owner: "ben", Coaches: []string{"ana"}} // ana is no coach: means nothing
		program   = access.Resource{}
		byAdmin   = access.Resource{RequestedBy: admin.Subject()}
		byPat     = access.Resource{RequestedBy: "person:pat"}
		byCLI     = access.Resource{RequestedBy: "cli:root"}
		byNoone   = access.Resource{}
		readOwn   = []access.Action{access.LedgerAccountRead, access.LedgerBalanceRead, access.LedgerStatementRead}
		readOther = []access.Action{access.LedgerAccountList, access.LedgerEntryList, access.LedgerEntryRead,
			access.LedgerTrialBalance, access.LedgerCheck, access.AuditRead}
		writes = []access.Action{access.LedgerAccountCreate, access.LedgerAccountClose, access.LedgerEntryPost,
			access.LedgerEntryHold, access.LedgerBatchPost, access.LedgerEntryCommit, access.LedgerEntryVoid,
			access.LedgerEntryReverse, access.DisbursementApprove}
		anaPart  = access.Resource{Owner: "ana", OwnerRole: access.Participant}
		cyCoach  = access.Resource{Owner: "cy", OwnerRole: access.Coach}
		cyPart   = access.Resource{Owner: "cy", OwnerRole: access.Participant} // cy was a participant first
		anaCoach = access.Resource{Owner: "ana", OwnerRole: access.Coach}
		approve  = []access.Action{access.DisbursementApprove}
		// ana's wallet, whose coach is cy: he reads what she reads of it
		anaWallet = access.Resource{Owner: "ana", OwnerRole: access.Participant, Coaches: []string{"cy"}}
		// connections are rated by their two sides, each as themselves
		rate  = []access.Action{access.ConnectionRate}
		anaMo = access.Resource{Owner: "ana", OwnerRole: access.Participant, Coaches: []string{"cy"}, Other: "mo"}
		anaCy = access.Resource{Owner: "ana", OwnerRole: access.Participant, Coaches: []string{"cy"}, Other: "cy"}
		benMo = access.Resource{Owner: "ben", OwnerRole: access.Participant, Coaches: []string{"dee"}, Other: "mo"}
	)
	nonApprove := append(append(append([]access.Action{}, readOwn...), readOther...), writes[:len(writes)-1]...)
	type row struct {
		who     access.Principal
		actions []access.Action
		res     access.Resource
		allowed bool
	}
	all := append(append(append([]access.Action{}, readOwn...), readOther...), writes...)
	rows := []row{
		// admins: everything, on anything (approving has rules of its own, below)
		{admin, nonApprove, anaRec, true}, {admin, nonApprove, program, true}, {admin, nonApprove, benRec, true},
		{cli, nonApprove, program, true},
		// ownership is per role: a participant's records are not their coach records
		{ana, readOwn, anaPart, true}, {ana, readOwn, anaCoach, false},
		{coach, readOwn, cyCoach, true}, {coach, readOwn, cyPart, true}, {coach, readOwn, anaPart, false},
		// auditors: every read, no write
		{auditor, readOwn, anaRec, true}, {auditor, readOwn, program, true}, {auditor, readOther, program, true},
		{auditor, writes, program, false}, {auditor, writes, anaRec, false}, {auditor, writes, byNoone, false},
		// participants: their own records, read only
		{ana, readOwn, anaRec, true},
		{ana, readOwn, benRec, false}, {ana, readOwn, program, false}, {ana, readOwn, benByAna, false},
		{ana, readOther, anaRec, false}, {ana, readOther, program, false},
		{ana, writes, anaRec, false}, {ana, writes, program, false},
		// coaches: their own records and their participants', read only
		{coach, readOwn, cyRec, true}, {coach, readOwn, assigned, true},
		{coach, readOwn, anaRec, false}, {coach, readOwn, otherCoa, false}, {coach, readOwn, program, false},
		{coach, readOther, cyRec, false}, {coach, readOther, program, false},
		{coach, writes, cyRec, false}, {coach, writes, assigned, false},
		{coach, readOwn, anaWallet, true},
		// ratings: a side, as themselves; not the participant's coach for her
		{ana, rate, anaMo, true}, {ana, rate, benMo, false}, {coach, rate, anaMo, false}, {coach, rate, anaCy, true},
		{coach, rate, benMo, false}, {auditor, rate, anaMo, false}, {admin, rate, anaMo, true}, {noPerson, rate, anaMo, false},
		// nobody else
		{noPerson, readOwn, program, false}, {noPerson, readOwn, access.Resource{Owner: ""}, false},
		{badRole, all, anaRec, false}, {zero, all, program, false},
		// four eyes are two people: an approver names their person, the requester is known
		// and someone else
		{admin, approve, byAdmin, false}, {admin, approve, byPat, false}, // no person behind the token
		{admin2, approve, byAdmin, true}, {admin2, approve, byPat, true},
		{admin2, approve, byNoone, false},    // requester unknown
		{personAdmin, approve, byPat, false}, // same person, any token
		{personAdmin, approve, byAdmin, true},
		{cli, approve, byCLI, false}, {cli, approve, byPat, false},
		{auditor, []access.Action{access.DisbursementApprove}, byAdmin, false},
		{coach, []access.Action{access.DisbursementApprove}, assigned, false},
		// requesting something does not stop an admin doing anything else to it
		{admin, writes[:len(writes)-1], byAdmin, true},
	}
	for _, r := range rows {
		for _, a := range r.actions {
			t.Run(fmt.Sprintf("%s(%s)/%s/%+v", r.who.Role, r.who.PersonID, a, r.res), func(t *testing.T) {
				err := access.Authorize(r.who, a, r.res)
				if r.allowed {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, access.ErrForbidden)
				require.NotErrorIs(t, err, access.ErrUnauthenticated)
			})
		}
	}
	require.ErrorContains(t, access.Authorize(personAdmin, access.DisbursementApprove, byPat), "another admin must approve")
	require.ErrorContains(t, access.Authorize(admin, access.DisbursementApprove, byPat), "names its person")
	require.ErrorContains(t, access.Authorize(admin2, access.DisbursementApprove, byNoone), "requester is unknown")
}

func TestReadOnlyActions(t *testing.T) {
	t.Parallel()
	want := map[access.Action]bool{
		access.LedgerAccountCreate: false, access.LedgerAccountList: true, access.LedgerAccountRead: true,
		access.LedgerAccountClose: false, access.LedgerBalanceRead: true, access.LedgerStatementRead: true,
		access.LedgerEntryPost: false, access.LedgerEntryHold: false, access.LedgerBatchPost: false,
		access.LedgerEntryList: true, access.LedgerEntryRead: true, access.LedgerEntryCommit: false,
		access.LedgerEntryVoid: false, access.LedgerEntryReverse: false, access.LedgerTrialBalance: true,
		access.LedgerCheck: true, access.AuditRead: true, access.DisbursementApprove: false,
		"something.new": false, // an unknown action is a write: auditors may not take it
	}
	for a, ro := range want {
		require.Equal(t, ro, a.ReadOnly(), a)
	}
	require.Equal(t, []access.Role{access.Admin, access.Auditor, access.Coach, access.Participant}, access.Roles())
}

func TestAccountResource(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]access.Resource{
		"participant/ana/wallet": {Owner: "ana", OwnerRole: access.Participant},
		"participant/ana":        {Owner: "ana", OwnerRole: access.Participant},
		"coach/cy/wallet":        {Owner: "cy", OwnerRole: access.Coach},
		"program/p/fund":         {},
		"org/cash/stripe":        {},
		"participant":            {},
		"Participant/ana/wallet": {},
		"mentor/ana/wallet":      {},
		"x/participant/ana":      {},
	} {
		require.Equal(t, want, access.AccountResource(code), code)
	}
}

func TestPrincipalSubject(t *testing.T) {
	t.Parallel()
	require.Equal(t, "person:ana", access.Principal{TokenID: "t", Name: "n", PersonID: "ana"}.Subject())
	require.Equal(t, "token:t", access.Principal{TokenID: "t", Name: "n"}.Subject())
	require.Equal(t, "cli:me", access.Principal{Name: "cli:me"}.Subject())
	require.True(t, access.ValidPersonID("a.b:c-d_9"))
	require.False(t, access.ValidPersonID(""))
	require.False(t, access.ValidPersonID("a/b"))
	require.False(t, access.ValidPersonID(strings.Repeat("a", 101)))
}

// requireAppendOnly asserts that err is the append-only trigger's refusal.
func requireAppendOnly(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%s: want a refusal, got %v", what, err)
	require.Equal(t, "access_append_only", pgErr.ConstraintName, "%s: %v", what, err)
	require.Equal(t, "23001", pgErr.Code, "%s: restrict_violation", what)
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	require.NoError(t, access.Record(ctx, pool, access.Event{Actor: tester, Action: "test.thing", Record: "x:1",
		Before: map[string]int{"n": 1}, After: map[string]int{"n": 2}, Detail: "d", RequestID: "r"}))
	lines := auditLines(t, s)
	require.Len(t, lines, 1)
	l := lines[0]
	require.Equal(t, "cli:tester", l.Actor)
	require.Equal(t, "admin", l.Role)
	require.Equal(t, "test.thing", l.Action)
	require.Equal(t, "x:1", l.Record)
	require.Equal(t, "ok", l.Outcome)
	require.JSONEq(t, `{"n":1}`, string(l.Before))
	require.JSONEq(t, `{"n":2}`, string(l.After))
	require.Equal(t, "d", l.Detail)
	require.Equal(t, "r", l.RequestID)

	for _, sql := range []string{
		`UPDATE audit_log SET actor = 'someone else'`,
		`UPDATE audit_log SET outcome = 'denied'`,
		`UPDATE audit_log SET after = NULL`,
		`DELETE FROM audit_log`,
		`DELETE FROM audit_log WHERE id = ` + fmt.Sprint(l.ID),
		`TRUNCATE audit_log`,
		`TRUNCATE audit_log, access_sessions, access_tokens`,
	} {
		_, err := pool.Exec(ctx, sql)
		requireAppendOnly(t, err, sql)
	}
	require.Equal(t, lines, auditLines(t, s), "unchanged")

	// The trail refuses malformed lines.
	require.Error(t, access.Record(ctx, pool, access.Event{Actor: tester, Action: "Not An Action"}))
	require.Error(t, access.Record(ctx, pool, access.Event{Actor: tester, Action: "single"}))
	require.Len(t, auditLines(t, s), 1)
}

func TestTokensChangeOnlyByRevocation(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	tok, _ := mint(t, s, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	id := tok.ID

	for _, sql := range []string{
		`UPDATE access_tokens SET name = 'renamed' WHERE id = $1`,
		`UPDATE access_tokens SET role = 'admin' WHERE id = $1`,
		`UPDATE access_tokens SET person_id = 'ben' WHERE id = $1`,
		`UPDATE access_tokens SET hash = sha256('tdm_other'::bytea) WHERE id = $1`,
		`UPDATE access_tokens SET created_at = now() - interval '1 day' WHERE id = $1`,
		`UPDATE access_tokens SET created_by = 'someone' WHERE id = $1`,
		`UPDATE access_tokens SET expires_at = now() + interval '1 year' WHERE id = $1`,
		`UPDATE access_tokens SET id = gen_random_uuid() WHERE id = $1`,
		`DELETE FROM access_tokens WHERE id = $1`,
	} {
		_, err := pool.Exec(ctx, sql, id)
		requireAppendOnly(t, err, sql)
	}
	_, err := pool.Exec(ctx, `TRUNCATE access_tokens CASCADE`)
	requireAppendOnly(t, err, "truncate")

	// Revoking is the one change, and it happens once.
	_, err = pool.Exec(ctx, `UPDATE access_tokens SET revoked_at = now(), revoked_by = 'sql' WHERE id = $1`, id)
	require.NoError(t, err)
	for _, sql := range []string{
		`UPDATE access_tokens SET revoked_at = NULL, revoked_by = NULL WHERE id = $1`,
		`UPDATE access_tokens SET revoked_by = 'someone else' WHERE id = $1`,
		`UPDATE access_tokens SET revoked_at = now() + interval '1 day' WHERE id = $1`,
		`DELETE FROM access_tokens WHERE id = $1`,
	} {
		_, err := pool.Exec(ctx, sql, id)
		requireAppendOnly(t, err, sql)
	}
	var name string
	var revokedBy string
	require.NoError(t, pool.QueryRow(ctx, `SELECT name, revoked_by FROM access_tokens WHERE id = $1`, id).Scan(&name, &revokedBy))
	require.Equal(t, "ana", name)
	require.Equal(t, "sql", revokedBy)
}

func TestApplyIsAllOrNothing(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	_, err := pool.Exec(ctx, `CREATE TABLE scratch (v text)`)
	require.NoError(t, err)
	count := func(table string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n))
		return n
	}
	actor := access.Principal{TokenID: "0193a0a0-0000-7000-8000-000000000001", Name: "ops", Role: access.Admin}
	// audit_log.token_id references a token: make it real.
	_, err = pool.Exec(ctx, `INSERT INTO access_tokens (id, name, role, hash, created_by) VALUES ($1, 'ops', 'admin', sha256('x'::bytea), 'test')`, actor.TokenID)
	require.NoError(t, err)

	// fn fails: neither the change nor the line.
	boom := errors.New("boom")
	err = access.Apply(ctx, pool, actor, "req-1", func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO scratch VALUES ('failed')`); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "scratch.insert", Record: "scratch:failed"}, boom
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 0, count("scratch"))
	require.Equal(t, 0, count("audit_log"))

	// The line cannot be written: the change rolls back with it.
	err = access.Apply(ctx, pool, actor, "req-2", func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO scratch VALUES ('unrecorded')`); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "NOT VALID", Record: "scratch:unrecorded"}, nil
	})
	require.Error(t, err)
	require.Equal(t, 0, count("scratch"))
	require.Equal(t, 0, count("audit_log"))

	// No action (a replay): the work commits, nothing is recorded.
	err = access.Apply(ctx, pool, actor, "req-3", func(tx pgx.Tx) (access.Event, error) {
		_, err := tx.Exec(ctx, `INSERT INTO scratch VALUES ('quiet')`)
		return access.Event{}, err
	})
	require.NoError(t, err)
	require.Equal(t, 1, count("scratch"))
	require.Equal(t, 0, count("audit_log"))

	// Success: both, with the actor and request id given to Apply (not whatever fn said).
	err = access.Apply(ctx, pool, actor, "req-4", func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO scratch VALUES ('done')`); err != nil {
			return access.Event{}, err
		}
		return access.Event{Actor: access.Principal{Name: "impostor"}, RequestID: "forged", Action: "scratch.insert",
			Record: "scratch:done", After: map[string]string{"v": "done"}}, nil
	})
	require.NoError(t, err)
	require.Equal(t, 2, count("scratch"))
	lines := auditLines(t, s)
	require.Len(t, lines, 1)
	require.Equal(t, "ops", lines[0].Actor)
	require.Equal(t, actor.TokenID, lines[0].TokenID)
	require.Equal(t, "req-4", lines[0].RequestID)
	require.Equal(t, "scratch.insert", lines[0].Action)
	require.Equal(t, "scratch:done", lines[0].Record)
	require.JSONEq(t, `{"v":"done"}`, string(lines[0].After))
	require.Nil(t, lines[0].Before)
}

func TestAuditFilter(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	for i := 0; i < 5; i++ {
		require.NoError(t, access.Record(ctx, pool, access.Event{Actor: tester, Action: "test.n", Record: fmt.Sprintf("n:%d", i%2),
			Denied: i == 4}))
	}
	all := auditLines(t, s)
	require.Len(t, all, 5)
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i].ID, all[i-1].ID, "oldest first")
	}
	require.Equal(t, "denied", all[4].Outcome)
	got, err := s.Audit(ctx, access.AuditFilter{Record: "n:1"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	got, err = s.Audit(ctx, access.AuditFilter{AfterID: all[1].ID, Limit: 2})
	require.NoError(t, err)
	require.Equal(t, []int64{all[2].ID, all[3].ID}, []int64{got[0].ID, got[1].ID})
	require.Len(t, got, 2)
	got, err = s.Audit(ctx, access.AuditFilter{Limit: -1})
	require.NoError(t, err)
	require.Len(t, got, 5)
	got, err = s.Audit(ctx, access.AuditFilter{AfterID: all[4].ID})
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestSessions(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	tok, secret := mint(t, s, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})

	sess, err := s.SignIn(ctx, secret, "", "req-in")
	require.NoError(t, err)
	require.NotEmpty(t, sess.ID)
	require.NotEmpty(t, sess.CSRF)
	require.NotEqual(t, sess.ID, sess.CSRF)
	require.Equal(t, tok.ID, sess.Principal.TokenID)
	require.WithinDuration(t, time.Now().Add(access.SessionTTL), sess.ExpiresAt, time.Minute)

	// Only the hash of the cookie value is stored.
	var rows string
	require.NoError(t, pool.QueryRow(ctx, `SELECT string_agg(s::text, ',') FROM access_sessions s`).Scan(&rows))
	require.NotContains(t, rows, sess.ID)
	h := sha256.Sum256([]byte(sess.ID))
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM access_sessions WHERE hash = $1`, h[:]).Scan(&n))
	require.Equal(t, 1, n)

	got, err := s.Session(ctx, sess.ID)
	require.NoError(t, err)
	require.Equal(t, sess.CSRF, got.CSRF)
	require.Equal(t, sess.Principal, got.Principal)
	_, err = s.Session(ctx, sess.ID+"x")
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	_, err = s.Session(ctx, "")
	require.ErrorIs(t, err, access.ErrUnauthenticated)

	require.NoError(t, got.CheckCSRF(sess.CSRF))
	for _, bad := range []string{"", "x", sess.CSRF + "x", sess.CSRF[1:], strings.ToUpper(sess.CSRF)} {
		if bad == sess.CSRF {
			continue
		}
		require.ErrorIs(t, got.CheckCSRF(bad), access.ErrCSRF, bad)
	}
	require.ErrorIs(t, access.Session{}.CheckCSRF(""), access.ErrCSRF, "an empty token never matches")

	// Two sign-ins are two sessions; signing out ends one.
	other, err := s.SignIn(ctx, secret, "", "req-in-2")
	require.NoError(t, err)
	require.NotEqual(t, sess.ID, other.ID)
	require.NotEqual(t, sess.CSRF, other.CSRF)
	require.NoError(t, s.SignOut(ctx, sess, "req-out"))
	_, err = s.Session(ctx, sess.ID)
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	_, err = s.Session(ctx, other.ID)
	require.NoError(t, err)

	// Revoking the token ends the rest.
	_, err = s.RevokeToken(ctx, tester, tok.ID)
	require.NoError(t, err)
	_, err = s.Session(ctx, other.ID)
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	_, err = s.SignIn(ctx, secret, "", "req-in-3")
	require.ErrorIs(t, err, access.ErrUnauthenticated)

	// An expired token's sessions end with it.
	shortTok, short := mint(t, s, access.NewToken{Name: "short", Role: access.Auditor, TTL: time.Second})
	sess3, err := s.SignIn(ctx, short, "", "")
	require.NoError(t, err)
	_, err = s.Session(ctx, sess3.ID)
	require.NoError(t, err)
	require.True(t, sess3.ExpiresAt.After(*shortTok.ExpiresAt), "the session outlives its token on paper")
	time.Sleep(time.Until(*shortTok.ExpiresAt) + 20*time.Millisecond)
	_, err = s.Session(ctx, sess3.ID)
	require.ErrorIs(t, err, access.ErrUnauthenticated)

	// The trail has the sign-ins and the sign-out, with their request ids.
	var seen []string
	for _, l := range auditLines(t, s) {
		if strings.HasPrefix(l.Action, "session.") {
			seen = append(seen, l.Action+"/"+l.RequestID)
		}
	}
	require.Equal(t, []string{"session.sign_in/req-in", "session.sign_in/req-in-2", "session.sign_out/req-out", "session.sign_in/"}, seen)
}

// TestAuditLimitAtMost1000 asks for more lines than the maximum: it gets the maximum, as the
// ledger's filters do (a regression: Audit once fell back to the default of 100).
func TestAuditLimitAtMost1000(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	_, err := pool.Exec(ctx, `INSERT INTO audit_log (actor, action, record, outcome)
		SELECT 'cli:tester', 'test.bulk', 'n:' || i, 'ok' FROM generate_series(1, 1005) AS i`)
	require.NoError(t, err)
	for _, c := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {1, 1}, {1000, 1000}, {1001, 1000}, {5000, 1000}} {
		got, err := s.Audit(ctx, access.AuditFilter{Limit: c.limit})
		require.NoError(t, err)
		require.Equal(t, c.want, len(got), "limit %d", c.limit)
	}
}

// Signing in again from the same browser ends the session it had.
func TestSignInEndsThePreviousSession(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, secret, err := s.CreateToken(ctx, tester, access.NewToken{Name: "again", Role: access.Auditor})
	require.NoError(t, err)
	first, err := s.SignIn(ctx, secret, "", "r1")
	require.NoError(t, err)
	second, err := s.SignIn(ctx, secret, first.ID, "r2")
	require.NoError(t, err)
	_, err = s.Session(ctx, first.ID)
	require.ErrorIs(t, err, access.ErrUnauthenticated)
	_, err = s.Session(ctx, second.ID)
	require.NoError(t, err)
}

// TestRecordStoresAnyText: no text an event carries — invalid UTF-8, NUL, in the record, the
// detail, the request id or the before and after — can make its trail line fail.
func TestRecordStoresAnyText(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	bad := "a\x00b\xffc"
	require.NoError(t, access.Record(ctx, pool, access.Event{Actor: access.Principal{Name: "cli:" + bad, Role: access.Admin},
		Action: "test.thing", Record: "x:" + bad, Detail: bad, RequestID: bad,
		Before: map[string]string{bad: bad}, After: []string{bad}}))
	require.NoError(t, access.Record(ctx, pool, access.Event{Actor: tester, Action: "test.denied", Record: bad,
		Denied: true, Detail: bad, RequestID: bad}))
	lines := auditLines(t, s)
	require.Len(t, lines, 2)
	want := `a\x00b` + "\uFFFD" + "c"
	require.Equal(t, "x:"+want, lines[0].Record)
	require.Equal(t, want, lines[0].Detail)
	require.Equal(t, want, lines[0].RequestID)
	require.Equal(t, "cli:"+want, lines[0].Actor)
	require.JSONEq(t, fmt.Sprintf(`{%q:%q}`, want, want), string(lines[0].Before))
	require.JSONEq(t, fmt.Sprintf(`[%q]`, want), string(lines[0].After))
	require.Equal(t, want, lines[1].Record)
	require.Equal(t, "denied", lines[1].Outcome)
}

// TestRefusalsFold: a refusal repeated by the same token on the same action and record
// within a minute counts on one line; another record, action or token, or a change, is a
// line of its own. The count is the only change a line takes.
func TestRefusalsFold(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	tok, _ := mint(t, s, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	ana := access.Principal{TokenID: tok.ID, Name: "ana", Role: access.Participant, PersonID: "ana"}
	refuse := func(p access.Principal, action, record string) {
		t.Helper()
		require.NoError(t, access.Record(ctx, pool, access.Event{Actor: p, Action: action, Record: record, Denied: true, Detail: "no"}))
	}
	before := len(auditLines(t, s))
	for range 5 {
		refuse(ana, "ledger.balance.read", "account:participant/ben/wallet")
	}
	refuse(ana, "ledger.balance.read", "account:participant/cy/wallet")
	refuse(ana, "ledger.statement.read", "account:participant/ben/wallet")
	refuse(tester, "ledger.balance.read", "account:participant/ben/wallet")
	refuse(tester, "ledger.balance.read", "account:participant/ben/wallet")
	for range 2 { // changes never fold
		require.NoError(t, access.Record(ctx, pool, access.Event{Actor: ana, Action: "test.change", Record: "x:1"}))
	}
	lines := auditLines(t, s)[before:]
	// Lines per refusal, with their repeats summed: a minute may turn during the test, which
	// starts a second line for the same refusal.
	count, lineCount := map[string]int{}, map[string]int{}
	var order []string
	for _, l := range lines {
		k := fmt.Sprintf("%s %s %s %s", l.Actor, l.Action, l.Record, l.Outcome)
		if _, seen := count[k]; !seen {
			order = append(order, k)
		}
		count[k] += l.Repeats
		lineCount[k]++
	}
	require.Equal(t, []string{
		"ana ledger.balance.read account:participant/ben/wallet denied",
		"ana ledger.balance.read account:participant/cy/wallet denied",
		"ana ledger.statement.read account:participant/ben/wallet denied",
		"cli:tester ledger.balance.read account:participant/ben/wallet denied",
		"ana test.change x:1 ok",
	}, order)
	require.Equal(t, map[string]int{
		"ana ledger.balance.read account:participant/ben/wallet denied":        5,
		"ana ledger.balance.read account:participant/cy/wallet denied":         1,
		"ana ledger.statement.read account:participant/ben/wallet denied":      1,
		"cli:tester ledger.balance.read account:participant/ben/wallet denied": 2,
		"ana test.change x:1 ok": 2,
	}, count)
	require.Equal(t, 2, lineCount["ana test.change x:1 ok"], "changes never fold")
	require.LessOrEqual(t, lineCount["ana ledger.balance.read account:participant/ben/wallet denied"], 2, "repeats fold")

	require.Greater(t, lines[0].Repeats, 1) // unless a minute turned right after the first
	require.NotNil(t, lines[0].LastAt, "a folded line says when its latest repeat was")
	require.False(t, lines[0].LastAt.Before(lines[0].At))
	require.Nil(t, lines[len(lines)-1].LastAt, "a line without repeats has no latest repeat")

	first := lines[0].ID
	for _, sql := range []string{
		`UPDATE audit_log SET repeats = repeats + 1 WHERE outcome = 'ok'`,
		`UPDATE audit_log SET repeats = 1 WHERE id = ` + fmt.Sprint(first),
		`UPDATE audit_log SET repeats = repeats + 1, detail = 'changed' WHERE id = ` + fmt.Sprint(first),
		`UPDATE audit_log SET record = 'x' WHERE id = ` + fmt.Sprint(first),
		`DELETE FROM audit_log WHERE id = ` + fmt.Sprint(first),
	} {
		_, err := pool.Exec(ctx, sql)
		requireAppendOnly(t, err, sql)
	}
}

// TestRefusalsFoldAsTheServersRole: the server's role (granted by the migrations) counts a
// repeated refusal on its first line, and may change nothing else of the trail: no other
// column (a privilege it lacks), no count going down (the trigger).
func TestRefusalsFoldAsTheServersRole(t *testing.T) {
	t.Parallel()
	owner, app := dbtest.NewApp(t)
	for range 3 {
		require.NoError(t, access.Record(ctx, app, access.Event{Actor: tester, Action: "test.denied", Record: "x:1", Denied: true}))
	}
	var n, lines int
	require.NoError(t, owner.QueryRow(ctx, `SELECT sum(repeats), count(*) FROM audit_log WHERE action = 'test.denied'`).Scan(&n, &lines))
	require.Equal(t, 3, n)
	require.LessOrEqual(t, lines, 2)

	var pgErr *pgconn.PgError
	_, err := app.Exec(ctx, `UPDATE audit_log SET detail = 'rewritten' WHERE action = 'test.denied'`)
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42501", pgErr.Code, "another column of the trail: %v", err)
	_, err = app.Exec(ctx, `UPDATE audit_log SET repeats = 1, last_at = now() WHERE action = 'test.denied' AND repeats > 1`)
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "access_append_only", pgErr.ConstraintName, "a count going down: %v", err)
	_, err = app.Exec(ctx, `DELETE FROM audit_log WHERE action = 'test.denied'`)
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42501", pgErr.Code, "deleting a line: %v", err)

	// A count grows by one repeat at a time, within the minute, never into the future.
	for name, sql := range map[string]string{
		"inflate a count":       `UPDATE audit_log SET repeats = repeats + 5, last_at = clock_timestamp() WHERE action = 'test.denied'`,
		"last_at in the future": `UPDATE audit_log SET repeats = repeats + 1, last_at = clock_timestamp() + interval '10 seconds' WHERE action = 'test.denied'`,
		"last_at going back":    `UPDATE audit_log SET repeats = repeats + 1, last_at = at - interval '1 second' WHERE action = 'test.denied'`,
	} {
		_, err = app.Exec(ctx, sql)
		require.ErrorAs(t, err, &pgErr, name)
		require.Equal(t, "access_append_only", pgErr.ConstraintName, "%s: %v", name, err)
	}
	// A line whose minute has passed takes no more repeats, whether by the fold or directly.
	_, err = owner.Exec(ctx, `INSERT INTO audit_log (at, actor, action, record, outcome, fold_key)
		VALUES (clock_timestamp() - interval '5 minutes', 'tester', 'test.stale', 'x:2', 'denied', 'stale')`)
	require.NoError(t, err)
	for name, sql := range map[string]string{
		"fold after the minute":            `SELECT audit_log_fold('stale', clock_timestamp())`,
		"fold within the old minute, late": `SELECT audit_log_fold('stale', (SELECT at FROM audit_log WHERE fold_key = 'stale'))`,
		"bump after the minute":            `UPDATE audit_log SET repeats = repeats + 1, last_at = clock_timestamp() WHERE fold_key = 'stale'`,
	} {
		_, err = app.Exec(ctx, sql)
		require.ErrorAs(t, err, &pgErr, name)
		require.Equal(t, "access_append_only", pgErr.ConstraintName, "%s: %v", name, err)
	}
	require.NoError(t, owner.QueryRow(ctx, `SELECT sum(repeats) FROM audit_log WHERE action LIKE 'test.%'`).Scan(&n))
	require.Equal(t, 4, n)

	// A fold still counts as the server's role after all those refusals.
	require.NoError(t, access.Record(ctx, app, access.Event{Actor: tester, Action: "test.denied", Record: "x:1", Denied: true}))
	require.NoError(t, owner.QueryRow(ctx, `SELECT sum(repeats) FROM audit_log WHERE action = 'test.denied'`).Scan(&n))
	require.Equal(t, 4, n)
}
