package ledger_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// auditLines appends n audit lines as access.Record writes them, some with JSON before and
// after, some without, and returns their ids.
func auditLines(t *testing.T, b *testBundle, n int) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		var id int64
		var before, after any
		if i%2 == 0 {
			before, after = fmt.Sprintf(`{"state": "approved", "n": %d}`, i), `{"state": "paid", "amount": "10.00"}`
		}
		require.NoError(t, b.pool.QueryRow(b.ctx, `INSERT INTO audit_log (actor, role, person_id, action, record, outcome, before, after, detail, request_id)
			VALUES ('dana', 'admin', NULLIF($1, ''), 'payouts.disbursement.approve', $2, 'ok', $3, $4, '', 'req-1') RETURNING id`,
			map[bool]string{true: "adm", false: ""}[i%3 == 0], fmt.Sprintf("disbursement:%d", i), before, after).Scan(&id))
		ids = append(ids, id)
	}
	return ids
}

func auditKinds(rep ledger.VerifyReport) map[int64]string {
	out := map[int64]string{}
	for _, p := range rep.Problems {
		if p.AuditID != 0 {
			out[p.AuditID] = p.Kind
		}
	}
	return out
}

// TestAuditTrailIsSealed: the seal job seals the audit trail too, and a verification names
// a line rewritten, deleted or slipped in behind the triggers' back, as a superuser could.
func TestAuditTrailIsSealed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sealHistory(t, b, 3)
	ids := auditLines(t, b, 6)
	res, err := b.ledger.Seal(b.ctx, ledger.SealOptions{BatchSize: 4})
	require.NoError(t, err)
	require.Equal(t, int64(6), res.AuditSealed)
	require.Len(t, res.AuditHeadHash, 64)
	rep := verifyOK(t, b)
	require.Equal(t, int64(6), rep.AuditLines)
	require.Equal(t, res.AuditHeadHash, rep.AuditHeadHash)
	require.Equal(t, int64(6), rep.Verification.AuditLines)

	// Sealing again seals nothing; a new line is sealed at the head.
	res, err = b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	require.Zero(t, res.AuditSealed)
	auditLines(t, b, 1)
	st, err := b.ledger.SealStatus(b.ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.AuditUnsealed)
	require.Equal(t, int64(6), st.AuditHead.Lines)
	res, err = b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.AuditSealed)
	verifyOK(t, b)

	asSuperuser(t, b, `UPDATE audit_log SET actor = 'eli' WHERE id = $1`, ids[1])
	asSuperuser(t, b, `UPDATE audit_log SET after = '{"state": "paid", "amount": "99.00"}' WHERE id = $1`, ids[2])
	asSuperuser(t, b, `UPDATE audit_log SET person_id = '' WHERE id = $1`, ids[3]) // NULL → ''
	asSuperuser(t, b, `DELETE FROM audit_log WHERE id = $1`, ids[4])
	rep, err = b.ledger.Verify(b.ctx, ledger.VerifyOptions{Actor: "test"})
	require.NoError(t, err)
	require.ErrorIs(t, rep.Err(), ledger.ErrSealBroken)
	require.Equal(t, map[int64]string{ids[1]: "audit_altered", ids[2]: "audit_altered", ids[3]: "audit_altered",
		ids[4]: "audit_missing"}, auditKinds(rep))
	require.Contains(t, rep.Problems[0].Detail, fmt.Sprintf("audit line %d (payouts.disbursement.approve disbursement:1 by eli", ids[1]))
	require.Contains(t, rep.Problems[0].Detail, "altered after sealing")
	require.False(t, rep.Verification.OK)
}

// TestAuditLineInsertedAmongSealedOnes: a line slipped in below the audit chain's head is
// named, not sealed quietly as if it had always been there.
func TestAuditLineInsertedAmongSealedOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auditLines(t, b, 2)
	var gap int64 // a number drawn by a transaction that rolled back
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT nextval('audit_log_id_seq')`).Scan(&gap))
	auditLines(t, b, 1)
	_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	verifyOK(t, b)

	asSuperuser(t, b, `INSERT INTO audit_log (id, actor, action, outcome) OVERRIDING SYSTEM VALUE
		VALUES ($1, 'ghost', 'payouts.disbursement.approve', 'ok')`, gap)
	rep, err := b.ledger.Verify(b.ctx, ledger.VerifyOptions{Actor: "test"})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{gap: "audit_inserted"}, auditKinds(rep))
	require.Contains(t, rep.Problems[0].Detail, "by ghost")

	// The seal job does not take it in later.
	res, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	require.Zero(t, res.AuditSealed)
	rep, err = b.ledger.Verify(b.ctx, ledger.VerifyOptions{Actor: "test"})
	require.NoError(t, err)
	require.Equal(t, map[int64]string{gap: "audit_inserted"}, auditKinds(rep))
}

// TestAuditLineTakesItsNumberAfterItsTransactionID: the sealer's wait for transactions in
// flight covers every audit line numbered before it looked, because a line's transaction
// has an id before the line draws its number. A row trigger, which fires once the row has its
// number, sees the id already assigned in a transaction that wrote nothing before.
func TestAuditLineTakesItsNumberAfterItsTransactionID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(b.ctx, `
		CREATE FUNCTION probe() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF pg_current_xact_id_if_assigned() IS NULL THEN
				RAISE EXCEPTION 'line % numbered before its transaction had an id', NEW.id;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER probe BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION probe();`)
	require.NoError(t, err)
	// Several: drawing a number assigns an id by itself only when it logs the sequence (one
	// draw in 32).
	for range 5 {
		_, err = b.pool.Exec(b.ctx, `INSERT INTO audit_log (actor, action, outcome) VALUES ('dana', 'payouts.disbursement.approve', 'ok')`)
		require.NoError(t, err)
	}
}

// TestVerificationDurationInMilliseconds: the recorded duration is whole milliseconds,
// written to the hundredth of a second without floating point.
func TestVerificationDurationInMilliseconds(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int64]string{0: "0.00 s", 4: "0.00 s", 5: "0.01 s", 30: "0.03 s", 1234: "1.23 s", 61995: "62.00 s"} {
		require.Equal(t, want, ledger.Verification{DurationMS: ms}.Duration(), "%d ms", ms)
	}
	b := setup(t)
	sealHistory(t, b, 3)
	_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	rep := verifyOK(t, b)
	st, err := b.ledger.SealStatus(b.ctx)
	require.NoError(t, err)
	require.Equal(t, rep.Elapsed.Milliseconds(), st.LastVerification.DurationMS)
	var seconds *float64
	var ms int64
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT seconds, duration_ms FROM ledger_seal_verifications WHERE id = $1`,
		rep.Verification.ID).Scan(&seconds, &ms))
	require.Nil(t, seconds, "no float any more")
	require.Equal(t, rep.Elapsed.Milliseconds(), ms)
	_, err = b.pool.Exec(b.ctx, `INSERT INTO ledger_seal_verifications (actor, ok, entries, head_seq, problems, seconds)
		VALUES ('x', true, 0, 0, 0, 0.5)`)
	require.Error(t, err, "a new row gives duration_ms, not seconds")
}
