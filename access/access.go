// Package access decides who may do what in Tandem (DESIGN.md §1): bearer tokens stored as
// hashes, page sessions with CSRF tokens, one policy function for every action, and an
// append-only audit trail written in the same transaction as the change it records.
//
// The HTTP layer authenticates a request into a Principal, asks Authorize before it acts,
// and records what it did with Record; nothing else in Tandem decides access.
package access

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Role is what a token may do, together with its person for ownership rules.
type Role string

// The four roles of DESIGN.md §1.
const (
	Admin       Role = "admin"
	Auditor     Role = "auditor"
	Coach       Role = "coach"
	Participant Role = "participant"
)

// Roles lists every role.
func Roles() []Role { return []Role{Admin, Auditor, Coach, Participant} }

func (r Role) valid() bool {
	switch r {
	case Admin, Auditor, Coach, Participant:
		return true
	}
	return false
}

var (
	// ErrUnauthenticated: no credentials, or a token or session that is unknown, revoked or
	// expired. HTTP answers 401.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the principal is known but may not do this. HTTP answers 403.
	ErrForbidden = errors.New("forbidden")
	// ErrFourEyes: an approval by whoever requested it.
	ErrFourEyes = fmt.Errorf("%w: four eyes", ErrForbidden)
	// ErrInvalid: a bad argument (role, name, person id, expiry).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: no such token.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyRevoked: the token was revoked before.
	ErrAlreadyRevoked = errors.New("token already revoked")
	// ErrCSRF: a state-changing form without the session's CSRF token.
	ErrCSRF = errors.New("missing or wrong CSRF token")
)

var personPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// ValidPersonID reports whether id can name a person: the characters of an account code
// segment, and not "." or ".." (which paths would resolve away).
func ValidPersonID(id string) bool {
	return personPattern.MatchString(id) && strings.Trim(id, ".") != ""
}

// Principal is an authenticated caller.
type Principal struct {
	TokenID  string // the token's id (uuid), or "" for the command line
	Name     string // the token's name, or "cli:<user>"
	Role     Role
	PersonID string // required for coaches and participants
}

// Subject identifies the principal in the audit trail and in four-eyes rules: the person if
// there is one, else the token.
func (p Principal) Subject() string {
	if p.PersonID != "" {
		return "person:" + p.PersonID
	}
	if p.TokenID != "" {
		return "token:" + p.TokenID
	}
	return p.Name
}

// DBTX is what access needs of a pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store keeps tokens, sessions and the audit trail.
type Store struct {
	db *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{db: pool} }

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}
