package access

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// tokenPrefix marks Tandem tokens so that secret scanners and people recognise them.
const tokenPrefix = "tdm_"

// Token is a stored token: everything but the secret, which is never stored.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      Role       `json:"role"`
	PersonID  string     `json:"person_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	RevokedBy string     `json:"revoked_by,omitempty"`
}

// NewToken describes a token to create.
type NewToken struct {
	Name     string
	Role     Role
	PersonID string
	// TTL is how long the token lives; zero means it does not expire.
	TTL time.Duration
}

// Validate checks a NewToken.
func (nt NewToken) Validate() error {
	if n := strings.TrimSpace(nt.Name); n == "" || len(n) > 200 {
		return invalid("name", "required, at most 200 characters")
	}
	if strings.HasPrefix(strings.TrimSpace(nt.Name), "cli:") {
		return invalid("name", "names starting with cli: are reserved for the command line in the audit trail")
	}
	if !nt.Role.valid() {
		return invalid("role", "%q is not one of admin, auditor, coach, participant", nt.Role)
	}
	if nt.PersonID != "" && !ValidPersonID(nt.PersonID) {
		return invalid("person", "%q: letters, digits and _.:- only, at most 100", nt.PersonID)
	}
	if (nt.Role == Coach || nt.Role == Participant) && nt.PersonID == "" {
		return invalid("person", "a %s token acts for a person: give --person", nt.Role)
	}
	if nt.TTL < 0 {
		return invalid("expires", "must not be negative")
	}
	return nil
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func newSecret() string { return tokenPrefix + randomString(32) }

// CreateToken stores a new token and returns it with its secret, which is not stored and
// cannot be shown again. The creation is recorded in the audit trail by the same
// transaction.
func (s *Store) CreateToken(ctx context.Context, by Principal, nt NewToken) (Token, string, error) {
	if err := nt.Validate(); err != nil {
		return Token{}, "", err
	}
	secret := newSecret()
	id := uuid.Must(uuid.NewV7())
	var expires *time.Time
	if nt.TTL > 0 {
		t := time.Now().Add(nt.TTL).UTC()
		expires = &t
	}
	var person *string
	if nt.PersonID != "" {
		person = &nt.PersonID
	}
	var tok Token
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, `INSERT INTO access_tokens (id, name, role, person_id, hash, created_by, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING `+tokenColumns, id, strings.TrimSpace(nt.Name), string(nt.Role), person, hashSecret(secret), by.Subject(), expires)
		var err error
		if tok, err = scanToken(row); err != nil {
			return fmt.Errorf("insert token: %w", err)
		}
		return Record(ctx, tx, Event{Actor: by, Action: "token.create", Record: "token:" + tok.ID, After: tok})
	})
	if err != nil {
		return Token{}, "", fmt.Errorf("create token: %w", err)
	}
	return tok, secret, nil
}

const tokenColumns = `id::text, name, role, coalesce(person_id, ''), created_at, created_by, expires_at, revoked_at, coalesce(revoked_by, '')`

func scanToken(row pgx.Row) (Token, error) {
	var t Token
	var role string
	err := row.Scan(&t.ID, &t.Name, &role, &t.PersonID, &t.CreatedAt, &t.CreatedBy, &t.ExpiresAt, &t.RevokedAt, &t.RevokedBy)
	t.Role = Role(role)
	return t, err
}

// Tokens lists every token, newest first, without secrets.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.db.Query(ctx, `SELECT `+tokenColumns+` FROM access_tokens ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken ends a token (and its page sessions) for good.
func (s *Store) RevokeToken(ctx context.Context, by Principal, id string) (Token, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Token{}, invalid("id", "%q is not a token id", id)
	}
	var tok Token
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		before, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+` FROM access_tokens WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("token %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if before.RevokedAt != nil {
			return fmt.Errorf("token %s: %w at %s", id, ErrAlreadyRevoked, before.RevokedAt.Format(time.RFC3339))
		}
		if tok, err = scanToken(tx.QueryRow(ctx, `UPDATE access_tokens SET revoked_at = clock_timestamp(), revoked_by = $2
			WHERE id = $1 RETURNING `+tokenColumns, id, by.Subject())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE access_sessions SET ended_at = clock_timestamp() WHERE token_id = $1 AND ended_at IS NULL`, id); err != nil {
			return err
		}
		return Record(ctx, tx, Event{Actor: by, Action: "token.revoke", Record: "token:" + id, Before: before, After: tok})
	})
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	return tok, nil
}

// Authenticate turns a bearer secret into its principal. Unknown, revoked and expired
// tokens are ErrUnauthenticated, with the reason in the message for the server log (the
// client is told only that it is not authenticated).
func (s *Store) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, tokenPrefix) {
		return Principal{}, fmt.Errorf("%w: not a Tandem token", ErrUnauthenticated)
	}
	tok, err := scanToken(s.db.QueryRow(ctx, `SELECT `+tokenColumns+` FROM access_tokens WHERE hash = $1`, hashSecret(secret)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	return tok.principal(time.Now())
}

func (t Token) principal(now time.Time) (Principal, error) {
	if t.RevokedAt != nil {
		return Principal{}, fmt.Errorf("%w: token %s (%s) was revoked", ErrUnauthenticated, t.ID, t.Name)
	}
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return Principal{}, fmt.Errorf("%w: token %s (%s) expired", ErrUnauthenticated, t.ID, t.Name)
	}
	return Principal{TokenID: t.ID, Name: t.Name, Role: t.Role, PersonID: t.PersonID}, nil
}

// AnyAdmin reports whether a usable admin token exists (serve says how to make the first).
func (s *Store) AnyAdmin(ctx context.Context) (bool, error) {
	return s.IsAdmin(ctx, "")
}

// IsAdmin reports whether person holds an active admin token (any person when "").
func (s *Store) IsAdmin(ctx context.Context, person string) (bool, error) {
	var ok bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM access_tokens WHERE role = 'admin' AND ($1 = '' OR person_id = $1)
		AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))`, person).Scan(&ok)
	return ok, err
}
