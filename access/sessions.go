package access

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SessionTTL is how long a page session lasts after sign-in.
const SessionTTL = 12 * time.Hour

// Session is a signed-in browser: the cookie value (shown once, stored hashed) and the CSRF
// token its forms must carry.
type Session struct {
	ID        string // the cookie value
	CSRF      string
	ExpiresAt time.Time
	Principal Principal
}

// randomString is n random bytes, base64url: secrets, session ids and CSRF tokens.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// SignIn checks a token secret typed into the sign-in form and opens a session for it. The
// browser's previous session (previous, a cookie value or "") is ended.
func (s *Store) SignIn(ctx context.Context, secret, previous, requestID string) (Session, error) {
	p, err := s.Authenticate(ctx, secret)
	if err != nil {
		return Session{}, err
	}
	sess := Session{ID: randomString(32), CSRF: randomString(32), Principal: p}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if previous != "" {
			if _, err := tx.Exec(ctx, `UPDATE access_sessions SET ended_at = clock_timestamp()
				WHERE hash = $1 AND ended_at IS NULL`, hashSecret(previous)); err != nil {
				return err
			}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO access_sessions (hash, token_id, csrf, expires_at)
			VALUES ($1, $2, $3, clock_timestamp() + $4::interval) RETURNING expires_at`,
			hashSecret(sess.ID), p.TokenID, sess.CSRF, fmt.Sprintf("%d seconds", int(SessionTTL.Seconds()))).Scan(&sess.ExpiresAt); err != nil {
			return err
		}
		return Record(ctx, tx, Event{Actor: p, Action: "session.sign_in", Record: "token:" + p.TokenID, RequestID: requestID})
	})
	if err != nil {
		return Session{}, fmt.Errorf("sign in: %w", err)
	}
	return sess, nil
}

// Session finds the open session of a cookie value, checking its token again (a revoked or
// expired token ends its sessions too).
func (s *Store) Session(ctx context.Context, id string) (Session, error) {
	var sess Session
	var tok Token
	var ended *time.Time
	var role string
	err := s.db.QueryRow(ctx, `SELECT s.csrf, s.expires_at, s.ended_at,
			t.id::text, t.name, t.role, coalesce(t.person_id, ''), t.expires_at, t.revoked_at
		  FROM access_sessions s JOIN access_tokens t ON t.id = s.token_id
		 WHERE s.hash = $1`, hashSecret(id)).Scan(&sess.CSRF, &sess.ExpiresAt, &ended,
		&tok.ID, &tok.Name, &role, &tok.PersonID, &tok.ExpiresAt, &tok.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, fmt.Errorf("%w: unknown session", ErrUnauthenticated)
	}
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	if ended != nil || !time.Now().Before(sess.ExpiresAt) {
		return Session{}, fmt.Errorf("%w: session ended", ErrUnauthenticated)
	}
	tok.Role = Role(role)
	if sess.Principal, err = tok.principal(time.Now()); err != nil {
		return Session{}, err
	}
	sess.ID = id
	return sess, nil
}

// SignOut ends a session.
func (s *Store) SignOut(ctx context.Context, sess Session, requestID string) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE access_sessions SET ended_at = clock_timestamp() WHERE hash = $1 AND ended_at IS NULL`,
			hashSecret(sess.ID)); err != nil {
			return fmt.Errorf("sign out: %w", err)
		}
		return Record(ctx, tx, Event{Actor: sess.Principal, Action: "session.sign_out", Record: "token:" + sess.Principal.TokenID, RequestID: requestID})
	})
}

// CheckCSRF compares a form's CSRF token with the session's in constant time.
func (sess Session) CheckCSRF(got string) error {
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		return ErrCSRF
	}
	return nil
}
