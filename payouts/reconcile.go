package payouts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/network"
)

// Difference kinds between a provider's records and the ledger.
const (
	MissingInLedger     = "missing_in_ledger"
	MissingAtProvider   = "missing_at_provider"
	AmountMismatch      = "amount_mismatch"
	CurrencyMismatch    = "currency_mismatch"
	DestinationMismatch = "destination_mismatch"
	StatusMismatch      = "status_mismatch"
	// UnrecordedSend: the provider made the transfer of an attempt whose answer the ledger
	// never recorded (the process died between sending and recording). Reconciliation
	// records the reference and applies the provider's outcome, and reports it once.
	UnrecordedSend = "unrecorded_send"
)

// Reconciliation is one run of Reconcile.
type Reconciliation struct {
	ID              int64        `json:"id"`
	Provider        string       `json:"provider"`
	Since           time.Time    `json:"since"`
	StartedAt       time.Time    `json:"started_at"`
	ProviderRecords int          `json:"provider_records"`
	LedgerRecords   int          `json:"ledger_records"`
	Differences     []Difference `json:"differences"`
}

// Difference is one thing the provider and the ledger disagree on.
type Difference struct {
	Kind           string `json:"kind"`
	Disbursement   string `json:"disbursement_id,omitempty"`
	ProviderRef    string `json:"provider_ref,omitempty"`
	LedgerAmount   string `json:"ledger_amount,omitempty"`
	ProviderAmount string `json:"provider_amount,omitempty"`
	Detail         string `json:"detail"`
}

// ledgerPayout is an attempt as the ledger knows it.
type ledgerPayout struct {
	disbursement, ref, key, dest, currency, outcome string
	amount, returned                                decimal.Decimal
	attempt                                         int
	matched                                         bool // an unsent attempt the provider has a transfer for
}

// Reconcile compares the provider's transfers since since with the attempts the ledger
// made, applies what the provider settled or returned that the ledger missed (a lost
// webhook), and records the run with every difference: a transfer the ledger does not know
// (missing_in_ledger), a sent attempt the provider does not have (missing_at_provider), and
// amounts, currencies, destinations or outcomes that disagree. Attempts younger than a
// minute that have no reference yet are in flight and not compared; an older one the
// provider has a transfer for (matched by idempotency key) was sent and never recorded: it is
// reported once (unrecorded_send) and the transfer's reference and outcome are applied.
//
// The run and each change it applies have their audit lines, by the payout jobs' principal
// (SystemActor): see ReconcileBy.
func (s *Store) Reconcile(ctx context.Context, since time.Time) (Reconciliation, error) {
	return s.ReconcileBy(ctx, network.By{Principal: SystemActor}, since)
}

// ReconcileBy is Reconcile asked for by someone (an admin): the run is recorded with its
// audit line (payouts.reconciliation.run) in one transaction, and each change applied from
// the provider's word (an entry posted or voided, a disbursement moved on, a reference
// recorded) with its own line (payouts.reconciliation.apply) in the transaction making it,
// all in by's name. An update a webhook or the settle job recorded after the provider was
// listed is left alone, without a line.
func (s *Store) ReconcileBy(ctx context.Context, by network.By, since time.Time) (Reconciliation, error) {
	prov := s.provider.Name()
	run := Reconciliation{Provider: prov, Since: since, Differences: []Difference{}}
	rows, err := s.db.Query(ctx, `SELECT a.disbursement_id::text, a.attempt, coalesce(a.provider_ref, ''), a.idempotency_key, a.destination, d.currency,
		coalesce(a.outcome, ''), d.amount::text, a.returned::text
		FROM payouts_attempts a JOIN payouts_disbursements d ON d.id = a.disbursement_id
		WHERE a.provider = $1 AND a.submitted_at >= $2 AND (a.provider_ref IS NOT NULL OR a.submitted_at < clock_timestamp() - interval '1 minute')`,
		prov, since)
	if err != nil {
		return run, fmt.Errorf("reconcile: read attempts: %w", err)
	}
	byRef := map[string]*ledgerPayout{}
	var unsent []*ledgerPayout
	unsentByKey := map[string]*ledgerPayout{}
	var lp ledgerPayout
	var amount, returned string
	if _, err := pgx.ForEachRow(rows, []any{&lp.disbursement, &lp.attempt, &lp.ref, &lp.key, &lp.dest, &lp.currency, &lp.outcome, &amount, &returned}, func() error {
		p := lp
		p.amount, p.returned = decimal.RequireFromString(amount), decimal.RequireFromString(returned)
		if p.ref == "" {
			unsent = append(unsent, &p)
			if p.outcome == "" {
				unsentByKey[p.key] = &p
			}
		} else {
			byRef[p.ref] = &p
		}
		run.LedgerRecords++
		return nil
	}); err != nil {
		return run, fmt.Errorf("reconcile: read attempts: %w", err)
	}
	seen := map[string]bool{}
	add := func(d Difference) { run.Differences = append(run.Differences, d) }
	// What the provider knows and the ledger has not heard yet (a lost webhook): a transfer
	// settled while the attempt is open, or returned after it was paid. Applied after the
	// run is recorded, as the provider's word, like a webhook.
	type update struct {
		l *ledgerPayout
		r Record
	}
	var updates []update
	err = s.provider.List(ctx, since, func(r Record) error {
		run.ProviderRecords++
		l, ok := byRef[r.Ref]
		if u := unsentByKey[r.IdempotencyKey]; !ok && r.IdempotencyKey != "" && u != nil && u.disbursement == r.Disbursement {
			// Sent, and the answer never recorded: the reference and the outcome are applied.
			l, ok = u, true
			delete(unsentByKey, r.IdempotencyKey)
			l.matched = true
			outcome := "not settled yet; its settlement is asked for"
			switch {
			case r.Settled && r.Failed:
				outcome = "failed"
			case r.Settled:
				outcome = "paid"
			}
			add(Difference{Kind: UnrecordedSend, Disbursement: l.disbursement, ProviderRef: r.Ref, LedgerAmount: l.amount.String(),
				ProviderAmount: r.Amount.String(), Detail: fmt.Sprintf("attempt %d reached %s as %s (%s), which the ledger had not recorded: recorded now",
					l.attempt, prov, r.Ref, outcome)})
			updates = append(updates, update{l, r})
		} else if ok && (l.outcome == "" && r.Settled || l.outcome == string(OutcomePaid) && r.Returned.GreaterThan(l.returned)) {
			updates = append(updates, update{l, r})
		}
		if !ok {
			add(Difference{Kind: MissingInLedger, ProviderRef: r.Ref, Disbursement: validUUID(r.Disbursement),
				ProviderAmount: r.Amount.String(), Detail: fmt.Sprintf("%s transfer %s of %s %s to %s has no attempt in the ledger",
					prov, r.Ref, r.Amount, r.Currency, r.Destination)})
			return nil
		}
		seen[r.Ref] = true
		base := Difference{Disbursement: l.disbursement, ProviderRef: r.Ref, LedgerAmount: l.amount.String(), ProviderAmount: r.Amount.String()}
		if !strings.EqualFold(r.Currency, l.currency) {
			d := base
			d.Kind, d.Detail = CurrencyMismatch, fmt.Sprintf("ledger %s, provider %s", l.currency, r.Currency)
			add(d)
		}
		if !r.Amount.Equal(l.amount) {
			d := base
			d.Kind, d.Detail = AmountMismatch, fmt.Sprintf("ledger %s, provider %s", l.amount, r.Amount)
			add(d)
		}
		if r.Destination != "" && r.Destination != l.dest {
			d := base
			d.Kind, d.Detail = DestinationMismatch, fmt.Sprintf("ledger %s, provider %s", l.dest, r.Destination)
			add(d)
		}
		switch {
		case r.Failed && l.outcome == string(OutcomePaid):
			d := base
			d.Kind, d.Detail = StatusMismatch, "the provider failed it; the ledger shows it paid"
			add(d)
		case !r.Failed && l.outcome == string(OutcomeFailed) && !r.Returned.GreaterThanOrEqual(r.Amount):
			d := base
			d.Kind, d.Detail = StatusMismatch, "the provider paid it; the ledger shows it failed"
			add(d)
		case !r.Returned.Equal(l.returned) && l.outcome == string(OutcomePaid):
			d := base
			d.Kind, d.Detail = StatusMismatch, fmt.Sprintf("returned: ledger %s, provider %s", l.returned, r.Returned)
			add(d)
		}
		return nil
	})
	if err != nil {
		return run, fmt.Errorf("reconcile: list %s: %w", prov, err)
	}
	for ref, l := range byRef {
		if !seen[ref] && l.outcome != string(OutcomeFailed) {
			add(Difference{Kind: MissingAtProvider, Disbursement: l.disbursement, ProviderRef: ref, LedgerAmount: l.amount.String(),
				Detail: fmt.Sprintf("attempt %d (%s) is not among %s's transfers", l.attempt, l.outcome, prov)})
		}
	}
	for _, l := range unsent {
		if l.outcome == "" && !l.matched {
			add(Difference{Kind: MissingAtProvider, Disbursement: l.disbursement, LedgerAmount: l.amount.String(),
				Detail: fmt.Sprintf("attempt %d was opened over a minute ago and never reached %s (its submit job will resend it)", l.attempt, prov)})
		}
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO payouts_reconciliations (provider, since, provider_records, ledger_records, differences)
			VALUES ($1, $2, $3, $4, $5) RETURNING id, started_at`, prov, since, run.ProviderRecords, run.LedgerRecords, len(run.Differences)).
			Scan(&run.ID, &run.StartedAt); err != nil {
			return err
		}
		for _, d := range run.Differences {
			if _, err := tx.Exec(ctx, `INSERT INTO payouts_differences (run_id, kind, disbursement_id, provider_ref, ledger_amount, provider_amount, detail)
				VALUES ($1, $2, NULLIF($3, '')::uuid, NULLIF($4, ''), NULLIF($5, '')::numeric, NULLIF($6, '')::numeric, $7)`,
				run.ID, d.Kind, d.Disbursement, d.ProviderRef, d.LedgerAmount, d.ProviderAmount, d.Detail); err != nil {
				return err
			}
		}
		return access.Record(ctx, tx, access.Event{Actor: by.Principal, RequestID: by.RequestID, Action: string(access.ReconciliationRun),
			Record: fmt.Sprintf("reconciliation:%d", run.ID),
			After: map[string]any{"provider": run.Provider, "since": run.Since, "provider_records": run.ProviderRecords,
				"ledger_records": run.LedgerRecords, "differences": len(run.Differences)},
			Detail: fmt.Sprintf("reconciled %s since %s: %d provider records, %d ledger records, %d differences",
				run.Provider, run.Since.UTC().Format(time.DateOnly), run.ProviderRecords, run.LedgerRecords, len(run.Differences))})
	})
	if err != nil {
		return run, fmt.Errorf("reconcile: record run: %w", err)
	}
	for _, u := range updates {
		id, err := uuid.Parse(u.l.disbursement)
		if err != nil {
			return run, err
		}
		receipt := Receipt{Ref: u.r.Ref, Outcome: OutcomePaid, Returned: u.r.Returned}
		if !u.r.Settled {
			receipt = Receipt{Ref: u.r.Ref, Outcome: OutcomePending}
		} else if u.r.Failed {
			receipt = Receipt{Ref: u.r.Ref, Outcome: OutcomeFailed, Reason: "the provider failed it (found by reconciliation)"}
		}
		source := fmt.Sprintf("reconciliation run %d", run.ID)
		if err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			// What the provider was listed against was read before: a webhook or the settle
			// job may have recorded it since. The line says what this apply changed, if
			// anything, from the attempt as read under the lock.
			c, err := s.recordChange(ctx, tx, id, u.l.attempt, receipt, by.Name, source)
			if err != nil || !c.changed() {
				return err
			}
			return access.Record(ctx, tx, access.Event{Actor: by.Principal, RequestID: by.RequestID, Action: "payouts.reconciliation.apply",
				Record: "disbursement:" + u.l.disbursement,
				Before: map[string]any{"attempt": u.l.attempt, "provider_ref": c.before.ref, "outcome": c.before.outcome, "returned": c.before.returned},
				After: map[string]any{"attempt": u.l.attempt, "provider_ref": c.after.ref, "outcome": c.after.outcome, "returned": c.after.returned,
					"reason": c.reason, "reconciliation": run.ID},
				Detail: fmt.Sprintf("%s: %s reports attempt %d as %s (%s)", source, prov, u.l.attempt, receipt.Outcome, u.r.Ref)})
		}); err != nil {
			return run, fmt.Errorf("reconcile: apply %s: %w", u.r.Ref, err)
		}
	}
	if len(run.Differences) > 0 {
		s.logger.WarnContext(ctx, "payout reconciliation found differences", "run", run.ID, "provider", prov, "differences", len(run.Differences))
	}
	return run, nil
}

func validUUID(s string) string {
	if len(s) == 36 && strings.Count(s, "-") == 4 {
		return s
	}
	return ""
}

// Reconciliations returns the latest runs with their differences, newest first.
func (s *Store) Reconciliations(ctx context.Context, limit int) ([]Reconciliation, error) {
	if limit <= 0 || limit > 100 {
		limit = 10
	}
	rows, err := s.db.Query(ctx, `SELECT id, provider, since, started_at, provider_records, ledger_records FROM payouts_reconciliations
		ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	runs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Reconciliation, error) {
		var x Reconciliation
		err := r.Scan(&x.ID, &x.Provider, &x.Since, &x.StartedAt, &x.ProviderRecords, &x.LedgerRecords)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	for i := range runs {
		rows, err := s.db.Query(ctx, `SELECT kind, coalesce(disbursement_id::text, ''), coalesce(provider_ref, ''), coalesce(ledger_amount::text, ''),
			coalesce(provider_amount::text, ''), detail FROM payouts_differences WHERE run_id = $1 ORDER BY id`, runs[i].ID)
		if err != nil {
			return nil, err
		}
		if runs[i].Differences, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Difference]); err != nil {
			return nil, err
		}
	}
	return runs, nil
}
