package app_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
)

// TestNetworkSQLAttacks writes to the network's and payouts' tables directly, as a buggy
// code path or a careless operator would, and expects the database itself to refuse each
// write by the named constraint. Nothing may change.
func TestNetworkSQLAttacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 8})
	a := buildApp(t, pool, app.Config{})
	n := a.Network
	newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
	addMentor(t, n, "mo")
	r := newRacer(t, n, "p1", "ana", "mo")
	verify(t, n, r.fourth)
	res, err := n.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, 1, res.Awarded)
	// A person without consent, enrolled.
	_, err = pool.Exec(ctx, `INSERT INTO network_people (id, name, created_by) VALUES ('nc', 'No consent', 't');
		INSERT INTO network_roles (person_id, role, granted_by) VALUES ('nc', 'participant', 't');
		INSERT INTO network_enrolments (program_id, person_id, enrolled_by) VALUES ('p1', 'nc', 't')`)
	require.NoError(t, err)

	snapshot := func() string {
		var s string
		require.NoError(t, pool.QueryRow(ctx, `SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
			SELECT 'c' || x::text AS t FROM network_conversations x UNION ALL SELECT 'r' || x::text FROM network_reviews x
			UNION ALL SELECT 'k' || x::text FROM network_connections x UNION ALL SELECT 'p' || x::text FROM network_people x
			UNION ALL SELECT 'a' || x::text FROM network_awards x UNION ALL SELECT 'd' || x::text FROM payouts_disbursements x
			UNION ALL SELECT 't' || x::text FROM payouts_transitions x UNION ALL SELECT 'n' || x::text FROM network_consents x
			UNION ALL SELECT 'u' || x::text FROM network_rules x UNION ALL SELECT 'b' || x::text FROM network_bands x) s`).Scan(&s))
		return s
	}
	before := snapshot()
	const appendOnly, consentRequired = "network_append_only", "network_consent_required"
	cases := []struct{ name, sql, constraint string }{
		{"edit a conversation", `UPDATE network_conversations SET minutes = minutes + 1`, appendOnly},
		{"delete a conversation", `DELETE FROM network_conversations`, appendOnly},
		{"delete a review", `DELETE FROM network_reviews`, appendOnly},
		{"rewrite a review", `UPDATE network_reviews SET action = 'unverify'`, appendOnly},
		{"delete a consent", `DELETE FROM network_consents`, appendOnly},
		{"edit a rule", `UPDATE network_rules SET definition = definition`, appendOnly},
		{"edit a connection", `UPDATE network_connections SET role = 'peer'`, appendOnly},
		{"delete a person", `DELETE FROM network_people WHERE id = 'nc'`, appendOnly},
		{"rewrite a birth date", `UPDATE network_people SET birth_date = '2015-01-01' WHERE id = 'ana'`, appendOnly},
		{"lower the evaluation generation", `UPDATE network_people SET eval_gen = 0 WHERE id = 'ana'`, appendOnly},
		{"a band without its history", `UPDATE network_people SET band = 'high' WHERE id = 'ana'`, "network_band_history"},
		{"a band without consent", `INSERT INTO network_bands (person_id, band, changed_by) VALUES ('nc', 'low', 't');
			UPDATE network_people SET band = 'low' WHERE id = 'nc'`, consentRequired},
		{"a new person with a band", `INSERT INTO network_people (id, name, band, created_by) VALUES ('x', 'X', 'high', 't')`, consentRequired},
		{"a connection without consent", `INSERT INTO network_connections (id, participant_id, other_id, role, origin, started_on, created_by)
			VALUES ('018f0000-0000-7000-8000-000000000001', 'nc', 'mo', 'mentor', 'matched', '2026-09-01', 't')`, consentRequired},
		{"a minor's own consent", `INSERT INTO network_people (id, name, birth_date, created_by) VALUES ('kid', 'Kid', '2015-01-01', 't');
			INSERT INTO network_consents (person_id, given, signed_by, guardian, signed_on, scope, recorded_by)
			VALUES ('kid', true, 'Kid', false, '2026-09-01', 's', 't')`, "network_consent_minor"},
		{"a conversation before its connection", `INSERT INTO network_conversations (id, connection_id, occurred_at, channel, minutes, reported_by)
			VALUES ('018f0000-0000-7000-8000-000000000002', '` + r.conn + `', '2026-08-01T10:00:00Z', 'video', 30, 't')`, "network_conversation_dates"},
		{"a rating from someone not on the connection", `INSERT INTO network_ratings (connection_id, rater_id, month, score, recorded_by)
			VALUES ('` + r.conn + `', 'nc', '2026-10-01', 8, 't')`, consentRequired},
		{"re-verify a retracted conversation", `INSERT INTO network_reviews (conversation_id, action, reviewed_by) VALUES ('` + r.fourth + `', 'retract', 't');
			INSERT INTO network_reviews (conversation_id, action, reviewed_by) VALUES ('` + r.fourth + `', 'verify', 't')`, "network_conversation_retracted"},
		{"an award without consent", `INSERT INTO network_awards (id, award_key, program_id, participant_id, rule_id, rule_version, period,
			amount, currency, kind, status, evidence, reached_at) VALUES ('018f0000-0000-7000-8000-000000000003',
			'award:p1:nc:mentor-4:once', 'p1', 'nc', 'mentor-4', 1, 'once', 50, 'USD', 'microgrant', 'insufficient_funds', '[]', now())`, consentRequired},
		{"an award paid by someone else's entry", `INSERT INTO network_awards (id, award_key, program_id, participant_id, rule_id, rule_version, period,
			amount, currency, kind, status, entry_id, posted_at, evidence, reached_at) SELECT '018f0000-0000-7000-8000-000000000004',
			'award:p1:ana:mentor-4:again', 'p1', 'ana', 'mentor-4', 1, 'again', 50, 'USD', 'microgrant', 'posted', entry_id, now(), '[]', now()
			FROM network_awards LIMIT 1`, "network_award_entry"},
		{"an award under another key", `INSERT INTO network_awards (id, award_key, program_id, participant_id, rule_id, rule_version, period,
			amount, currency, kind, status, evidence, reached_at) VALUES ('018f0000-0000-7000-8000-000000000005',
			'award:p1:ana:mentor-4:x', 'p1', 'ana', 'mentor-4', 1, 'y', 50, 'USD', 'microgrant', 'insufficient_funds', '[]', now())`, "network_awards_key"},
		{"change a paid award's amount", `UPDATE network_awards SET amount = 5000`, "network_award_entry"},
		{"change a paid award's evidence", `UPDATE network_awards SET evidence = '[]'`, appendOnly},
		{"unpay an award", `UPDATE network_awards SET status = 'insufficient_funds', entry_id = NULL, posted_at = NULL`, appendOnly},
		{"delete an award", `DELETE FROM network_awards`, appendOnly},
		{"jump a disbursement to paid", `UPDATE payouts_disbursements SET state = 'paid'`, "payouts_transition"},
		{"a legal-looking transition without its row", `UPDATE payouts_disbursements SET state = 'submitted'`, "payouts_transition"},
		{"an illegal transition with its row", `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason)
			SELECT id, state, 'paid', 't', 'r' FROM payouts_disbursements; UPDATE payouts_disbursements SET state = 'paid'`, "payouts_transition"},
		{"change a disbursement's amount", `UPDATE payouts_disbursements SET amount = 1`, "payouts_append_only"},
		{"delete a transition", `DELETE FROM payouts_transitions`, "payouts_append_only"},
		{"widen the legal transitions", `UPDATE payouts_legal_transitions SET to_state = 'paid'`, "payouts_append_only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, c.sql)
				return err
			})
			var pg *pgconn.PgError
			require.True(t, errors.As(err, &pg), "accepted: %v", err)
			require.Equal(t, c.constraint, pg.ConstraintName, "refused for another reason: %v", err)
		})
	}
	require.Equal(t, before, snapshot(), "a refused write changed something")
}
