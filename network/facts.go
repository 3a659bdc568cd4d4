package network

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
)

// The evaluation protocol. River keeps at most one evaluate_milestones job per (participant,
// generation) among available, pending, scheduled, retryable and running jobs, so a burst of
// facts for one participant runs one evaluation. Running jobs must be among those states
// (River requires it), which would swallow a fact that arrives while its participant's
// evaluation runs — unless that fact asks for a new generation. So:
//
//   - every fact reads the participant's eval_gen FOR SHARE (lockFacts) before it writes,
//     and asks for the evaluation of that generation in the same transaction;
//   - every evaluation first bumps eval_gen (an UPDATE, which waits for the facts holding the
//     share lock to commit, and makes later facts wait for the evaluation to commit) and only
//     then reads the facts.
//
// A fact therefore either commits before an evaluation reads (and is seen by it), or reads
// the bumped generation after that evaluation commits and asks for a new job, which no
// running job can swallow. Facts do not block each other (share locks).

// lockFacts takes the share locks of the protocol on people (in id order, so two facts never
// deadlock) and returns the evaluations to ask for: those of the enrolled participants among
// them. People who are not participants are locked too: a band change locks its person
// exclusively before it lists their connections, so a connection made at the same moment
// is either listed or made after the band is visible.
func lockFacts(ctx context.Context, tx pgx.Tx, people ...string) ([]Evaluation, error) {
	people = slices.Compact(slices.Sorted(slices.Values(people)))
	rows, err := tx.Query(ctx, `SELECT p.id, p.eval_gen, EXISTS (SELECT 1 FROM network_enrolments e WHERE e.person_id = p.id)
		FROM network_people p WHERE p.id = ANY($1) ORDER BY p.id FOR SHARE OF p`, people)
	if err != nil {
		return nil, fmt.Errorf("lock people: %w", err)
	}
	var evals []Evaluation
	var e Evaluation
	var enrolled bool
	if _, err := pgx.ForEachRow(rows, []any{&e.Participant, &e.Gen, &enrolled}, func() error {
		if enrolled {
			evals = append(evals, e)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock people: %w", err)
	}
	return evals, nil
}

// fact runs a change of the network: lock the participants it concerns, make the change,
// ask for their evaluation, and write the audit line — one transaction.
func (s *Store) fact(ctx context.Context, by By, people []string, change func(tx pgx.Tx) (access.Event, error)) error {
	return s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		evals, err := lockFacts(ctx, tx, people...)
		if err != nil {
			return access.Event{}, err
		}
		ev, err := change(tx)
		if err != nil || ev.Action == "" {
			return ev, err
		}
		if len(evals) > 0 {
			if err := s.jobs.EvaluateTx(ctx, tx, evals); err != nil {
				return access.Event{}, fmt.Errorf("ask for evaluation: %w", err)
			}
		}
		return ev, nil
	})
}

// NewProgram describes a program to create.
type NewProgram struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Currency         string `json:"currency"`
	StartsOn         string `json:"starts_on"`
	EndsOn           string `json:"ends_on"`
	AutoApproveLimit string `json:"auto_approve_limit"`
}

// CreateProgram creates a program with its fund account (program/<id>/fund, equity,
// no_overdraft: an award can never overdraw it) and the organisation's cash account in its
// currency if there is none yet.
func (s *Store) CreateProgram(ctx context.Context, by By, np NewProgram) (Program, error) {
	starts, err := ParseDate("starts_on", np.StartsOn)
	if err != nil {
		return Program{}, err
	}
	ends, err := ParseDate("ends_on", np.EndsOn)
	if err != nil {
		return Program{}, err
	}
	switch {
	case !programID.MatchString(np.ID):
		return Program{}, invalid("id", "%q: 1–63 lower-case letters, digits and dashes", np.ID)
	case strings.TrimSpace(np.Name) == "" || len(np.Name) > 200:
		return Program{}, invalid("name", "required, at most 200 characters")
	case ends.Before(starts.Time):
		return Program{}, invalid("ends_on", "%s is before starts_on %s", np.EndsOn, np.StartsOn)
	}
	if _, ok := ledger.Exponent(np.Currency); !ok {
		return Program{}, invalid("currency", "%q is not a currency the ledger keeps", np.Currency)
	}
	limit := "0"
	if np.AutoApproveLimit != "" && np.AutoApproveLimit != "0" {
		d, err := ledger.ParseAmount(np.AutoApproveLimit, np.Currency)
		if err != nil {
			return Program{}, fmt.Errorf("auto_approve_limit: %w", err)
		}
		limit = d.String()
	}
	var p Program
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		fund := "program/" + np.ID + "/fund"
		for _, na := range []ledger.NewAccount{
			{Code: fund, Type: ledger.Equity, Currency: np.Currency, NoOverdraft: true,
				Metadata: json.RawMessage(fmt.Sprintf(`{"program":%q}`, np.ID))},
			{Code: CashAccount(np.Currency), Type: ledger.Asset, Currency: np.Currency},
		} {
			if _, _, err := s.ledger.CreateAccountTx(ctx, tx, na); err != nil {
				return access.Event{}, fmt.Errorf("account %s: %w", na.Code, err)
			}
		}
		row := tx.QueryRow(ctx, `INSERT INTO network_programs (id, name, currency, starts_on, ends_on, fund_account, auto_approve_limit, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+programColumns,
			np.ID, strings.TrimSpace(np.Name), np.Currency, starts.Time, ends.Time, fund, limit, actorName(by))
		var err error
		if p, err = scanProgram(row); err != nil {
			return access.Event{}, translate(err)
		}
		return access.Event{Action: "network.program.create", Record: "program:" + p.ID, After: p}, nil
	})
	return p, err
}

// Fund posts donor money into a program's fund (DESIGN.md §4: cash debited, fund credited)
// under idempotency key, and asks for the awards waiting for funds to be paid.
func (s *Store) Fund(ctx context.Context, by By, program, amount, key string) (ledger.Entry, error) {
	p, err := s.Program(ctx, program)
	if err != nil {
		return ledger.Entry{}, err
	}
	amt, err := ledger.ParseAmount(amount, p.Currency)
	if err != nil {
		return ledger.Entry{}, fmt.Errorf("amount: %w", err)
	}
	if strings.TrimSpace(key) == "" {
		return ledger.Entry{}, invalid("idempotency_key", "required, so that a retried funding is not posted twice")
	}
	if strings.HasPrefix(key, "award:") {
		return ledger.Entry{}, invalid("idempotency_key", "award:… keys belong to awards")
	}
	var e ledger.Entry
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		// Waits for the evaluations of this program in flight: see evaluateIn.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM network_programs WHERE id = $1 FOR NO KEY UPDATE`, p.ID); err != nil {
			return access.Event{}, fmt.Errorf("lock program: %w", err)
		}
		var err error
		e, err = s.ledger.PostTx(ctx, tx, ledger.NewEntry{
			IdempotencyKey: key,
			Description:    "donor funds program " + p.ID,
			Metadata:       json.RawMessage(fmt.Sprintf(`{"program":%q,"flow":"fund"}`, p.ID)),
			Postings: []ledger.Posting{
				{Account: CashAccount(p.Currency), Side: ledger.Debit, Amount: amt, Currency: p.Currency},
				{Account: p.FundAccount, Side: ledger.Credit, Amount: amt, Currency: p.Currency},
			},
		})
		if err != nil || e.Replayed {
			return access.Event{}, err
		}
		if err := s.jobs.ReleaseTx(ctx, tx, p.ID); err != nil {
			return access.Event{}, fmt.Errorf("ask for waiting awards: %w", err)
		}
		return access.Event{Action: "network.program.fund", Record: "program:" + p.ID, After: e}, nil
	})
	return e, err
}

// NewPerson describes a person to record. Only enrolment data: band and everything else
// about their network wait for their consent.
type NewPerson struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Roles     []string `json:"roles"`
	Interests []string `json:"interests"`
	BirthDate string   `json:"birth_date"`
}

// AddPerson records a person with their roles.
func (s *Store) AddPerson(ctx context.Context, by By, np NewPerson) (Person, error) {
	switch {
	case !access.ValidPersonID(np.ID):
		return Person{}, invalid("id", "%q: 1–100 letters, digits and _ . : -", np.ID)
	case strings.TrimSpace(np.Name) == "" || len(np.Name) > 200:
		return Person{}, invalid("name", "required, at most 200 characters")
	case len(np.Roles) == 0:
		return Person{}, invalid("roles", "at least one of %s", strings.Join(PersonRoles, ", "))
	case len(np.Interests) > 50:
		return Person{}, invalid("interests", "at most 50")
	}
	for _, r := range np.Roles {
		if !slices.Contains(PersonRoles, r) {
			return Person{}, invalid("roles", "%q: one of %s", r, strings.Join(PersonRoles, ", "))
		}
	}
	var birth *time.Time
	if np.BirthDate != "" {
		d, err := ParseDate("birth_date", np.BirthDate)
		if err != nil {
			return Person{}, err
		}
		if d.After(s.now()) {
			return Person{}, invalid("birth_date", "%s is in the future", np.BirthDate)
		}
		birth = &d.Time
	}
	interests := make([]string, 0, len(np.Interests))
	for _, i := range np.Interests {
		if i = strings.ToLower(strings.TrimSpace(i)); i == "" || len(i) > 50 {
			return Person{}, invalid("interests", "each 1–50 characters")
		}
		interests = append(interests, i)
	}
	var p Person
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO network_people (id, name, interests, birth_date, created_by) VALUES ($1, $2, $3, $4, $5)`,
			np.ID, strings.TrimSpace(np.Name), interests, birth, actorName(by)); err != nil {
			return access.Event{}, translate(err)
		}
		for _, r := range slices.Compact(slices.Sorted(slices.Values(np.Roles))) {
			if _, err := tx.Exec(ctx, `INSERT INTO network_roles (person_id, role, granted_by) VALUES ($1, $2, $3)`, np.ID, r, actorName(by)); err != nil {
				return access.Event{}, err
			}
		}
		var err error
		if p, err = s.personTx(ctx, tx, np.ID); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "network.person.create", Record: "person:" + p.ID, After: p}, nil
	})
	return p, err
}

// AddRole gives a person another role. A participant who becomes a coach keeps both: that
// is near-peer conversion, counted by the metrics.
func (s *Store) AddRole(ctx context.Context, by By, person, role string) (Person, error) {
	if !slices.Contains(PersonRoles, role) {
		return Person{}, invalid("role", "%q: one of %s", role, strings.Join(PersonRoles, ", "))
	}
	var p Person
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		tag, err := tx.Exec(ctx, `INSERT INTO network_roles (person_id, role, granted_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			person, role, actorName(by))
		if err != nil {
			return access.Event{}, translate(err)
		}
		if p, err = s.personTx(ctx, tx, person); err != nil || tag.RowsAffected() == 0 {
			return access.Event{}, err
		}
		return access.Event{Action: "network.person.role", Record: "person:" + person, After: map[string]string{"role": role}}, nil
	})
	return p, err
}

// RecordTaxForm records that a person's tax form (W-9) is on file: coach stipends wait for it
// (DESIGN.md §7). It is never taken back (the database refuses it); a form on file stays.
func (s *Store) RecordTaxForm(ctx context.Context, by By, person string) (Person, error) {
	var p Person
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		tag, err := tx.Exec(ctx, `UPDATE network_people SET tax_form = true WHERE id = $1 AND NOT tax_form`, person)
		if err != nil {
			return access.Event{}, translate(err)
		}
		if p, err = s.personTx(ctx, tx, person); err != nil || tag.RowsAffected() == 0 {
			return access.Event{}, err
		}
		return access.Event{Action: "network.person.tax_form", Record: "person:" + person, After: map[string]bool{"tax_form_on_file": true}}, nil
	})
	return p, err
}

// NewConsent is a consent record: given or withdrawn, signed by the person or (a minor's)
// by a guardian, naming the records, purpose and recipients (Scope).
type NewConsent struct {
	Given    bool   `json:"given"`
	SignedBy string `json:"signed_by"`
	Guardian bool   `json:"guardian"`
	SignedOn string `json:"signed_on"`
	Scope    string `json:"scope"`
}

// RecordConsent records a consent or its withdrawal. Giving consent can make awards due, so
// the person's milestones are evaluated.
func (s *Store) RecordConsent(ctx context.Context, by By, person string, nc NewConsent) (Person, error) {
	signed, err := ParseDate("signed_on", nc.SignedOn)
	if err != nil {
		return Person{}, err
	}
	switch {
	case strings.TrimSpace(nc.SignedBy) == "" || len(nc.SignedBy) > 200:
		return Person{}, invalid("signed_by", "the name of who signed, at most 200 characters")
	case strings.TrimSpace(nc.Scope) == "" || len(nc.Scope) > 2000:
		return Person{}, invalid("scope", "the records, purpose and recipients consented to, at most 2000 characters")
	case signed.After(s.now()):
		return Person{}, invalid("signed_on", "%s is in the future", nc.SignedOn)
	}
	var p Person
	err = s.fact(ctx, by, []string{person}, func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO network_consents (person_id, given, signed_by, guardian, signed_on, scope, recorded_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, person, nc.Given, strings.TrimSpace(nc.SignedBy), nc.Guardian, signed.Time,
			strings.TrimSpace(nc.Scope), actorName(by)); err != nil {
			return access.Event{}, translate(err)
		}
		var err error
		if p, err = s.personTx(ctx, tx, person); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "network.person.consent", Record: "person:" + person, After: nc}, nil
	})
	return p, err
}

// SetBand records a person's socio-economic band ("low", "high" or "" for unknown) with the
// reason; the history is kept. It can change the outcome of the person's own rules and of
// every participant connected to them, so all of them are evaluated.
func (s *Store) SetBand(ctx context.Context, by By, person, band, reason string) (Person, error) {
	if band != "" && !slices.Contains(Bands, band) {
		return Person{}, invalid("band", "%q: low, high, or empty for unknown", band)
	}
	if len(reason) > 500 {
		return Person{}, invalid("reason", "at most 500 characters")
	}
	var p Person
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		// Lock the person first, then list whom the band concerns: a connection being made
		// to them holds a share lock on them (Connect), so it is either listed here or made
		// after this commits and evaluated with the new band.
		var before *string
		if err := tx.QueryRow(ctx, `SELECT band FROM network_people WHERE id = $1 FOR UPDATE`, person).Scan(&before); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return access.Event{}, fmt.Errorf("%w: person %q", ErrNotFound, person)
			}
			return access.Event{}, err
		}
		connected, err := connectedParticipants(ctx, tx, person)
		if err != nil {
			return access.Event{}, err
		}
		evals, err := lockFacts(ctx, tx, append(connected, person)...)
		if err != nil {
			return access.Event{}, err
		}
		if (before == nil && band == "") || (before != nil && *before == band) {
			var err error
			p, err = s.personTx(ctx, tx, person)
			return access.Event{}, err
		}
		nb := nullable(band)
		if _, err := tx.Exec(ctx, `INSERT INTO network_bands (person_id, band, changed_by, reason) VALUES ($1, $2, $3, $4)`,
			person, nb, actorName(by), reason); err != nil {
			return access.Event{}, translate(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE network_people SET band = $2 WHERE id = $1`, person, nb); err != nil {
			return access.Event{}, translate(err)
		}
		if p, err = s.personTx(ctx, tx, person); err != nil {
			return access.Event{}, err
		}
		if err := s.jobs.EvaluateTx(ctx, tx, evals); err != nil {
			return access.Event{}, fmt.Errorf("ask for evaluation: %w", err)
		}
		return access.Event{Action: "network.person.band", Record: "person:" + person,
			Before: map[string]any{"band": before}, After: map[string]any{"band": nb}, Detail: reason}, nil
	})
	return p, err
}

// connectedParticipants lists the participants with a connection to person.
func connectedParticipants(ctx context.Context, tx pgx.Tx, person string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT DISTINCT participant_id FROM network_connections WHERE other_id = $1`, person)
	if err != nil {
		return nil, fmt.Errorf("connected participants of %s: %w", person, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Enrol enrols a participant in a program, with their coach if given, and opens their wallet
// in the program's currency (a participant's wallet has one currency: a second program must
// use the same one).
func (s *Store) Enrol(ctx context.Context, by By, program, person, coach string) (Enrolment, error) {
	p, err := s.Program(ctx, program)
	if err != nil {
		return Enrolment{}, err
	}
	var e Enrolment
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if err := requireRole(ctx, tx, person, "participant"); err != nil {
			return access.Event{}, err
		}
		if coach != "" {
			if err := requireRole(ctx, tx, coach, "coach"); err != nil {
				return access.Event{}, err
			}
		}
		// no_overdraft: a wallet never pays out more than was awarded into it.
		if _, _, err := s.ledger.CreateAccountTx(ctx, tx, ledger.NewAccount{Code: WalletAccount(person), Type: ledger.Liability,
			NoOverdraft: true, Currency: p.Currency, Metadata: json.RawMessage(fmt.Sprintf(`{"person":%q}`, person))}); err != nil {
			if errors.Is(err, ledger.ErrAccountExists) {
				return access.Event{}, fmt.Errorf("%w: %s already has a wallet in another currency than %s's %s", ErrExists, person, program, p.Currency)
			}
			return access.Event{}, err
		}
		err := tx.QueryRow(ctx, `INSERT INTO network_enrolments (program_id, person_id, coach_id, enrolled_by) VALUES ($1, $2, $3, $4)
			RETURNING program_id, person_id, coalesce(coach_id, ''), enrolled_at`, program, person, nullable(coach), actorName(by)).
			Scan(&e.ProgramID, &e.PersonID, &e.CoachID, &e.EnrolledAt)
		if err != nil {
			return access.Event{}, translate(err)
		}
		// Enrolment makes the participant's rules apply: evaluate (the lock is taken now
		// that the enrolment exists).
		evals, err := lockFacts(ctx, tx, person)
		if err != nil {
			return access.Event{}, err
		}
		if err := s.jobs.EvaluateTx(ctx, tx, evals); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "network.enrolment.create", Record: "person:" + person, After: e}, nil
	})
	return e, err
}

// AssignCoach changes the coach of a participant in a program ("" removes the coach).
func (s *Store) AssignCoach(ctx context.Context, by By, program, person, coach string) (Enrolment, error) {
	var e Enrolment
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if coach != "" {
			if err := requireRole(ctx, tx, coach, "coach"); err != nil {
				return access.Event{}, err
			}
		}
		var before string
		err := tx.QueryRow(ctx, `SELECT coalesce(coach_id, '') FROM network_enrolments WHERE program_id = $1 AND person_id = $2 FOR UPDATE`,
			program, person).Scan(&before)
		if errors.Is(err, pgx.ErrNoRows) {
			return access.Event{}, fmt.Errorf("%w: %s is not enrolled in %s", ErrNotFound, person, program)
		} else if err != nil {
			return access.Event{}, err
		}
		err = tx.QueryRow(ctx, `UPDATE network_enrolments SET coach_id = $3 WHERE program_id = $1 AND person_id = $2
			RETURNING program_id, person_id, coalesce(coach_id, ''), enrolled_at`, program, person, nullable(coach)).
			Scan(&e.ProgramID, &e.PersonID, &e.CoachID, &e.EnrolledAt)
		if err != nil {
			return access.Event{}, translate(err)
		}
		return access.Event{Action: "network.enrolment.coach", Record: "person:" + person,
			Before: map[string]string{"coach": before}, After: e}, nil
	})
	return e, err
}

func requireRole(ctx context.Context, tx pgx.Tx, person, role string) error {
	var has, exists bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM network_people WHERE id = $1),
		EXISTS (SELECT 1 FROM network_roles WHERE person_id = $1 AND role = $2)`, person, role).Scan(&exists, &has)
	switch {
	case err != nil:
		return err
	case !exists:
		return fmt.Errorf("%w: person %q", ErrNotFound, person)
	case !has:
		return invalid("person", "%s is not a %s (add the role first)", person, role)
	}
	return nil
}

// NewConnection describes a connection of a participant with another person.
type NewConnection struct {
	ParticipantID string `json:"participant_id"`
	OtherID       string `json:"other_id"`
	Role          string `json:"role"`
	Origin        string `json:"origin"`
	StartedOn     string `json:"started_on"`
}

// Connect records a connection. Both people need consent on file.
func (s *Store) Connect(ctx context.Context, by By, nc NewConnection) (Connection, error) {
	switch {
	case !slices.Contains(ConnectionRoles, nc.Role):
		return Connection{}, invalid("role", "%q: one of %s", nc.Role, strings.Join(ConnectionRoles, ", "))
	case !slices.Contains(Origins, nc.Origin):
		return Connection{}, invalid("origin", "%q: one of %s", nc.Origin, strings.Join(Origins, ", "))
	case nc.ParticipantID == nc.OtherID:
		return Connection{}, invalid("other_id", "a participant cannot connect with themselves")
	}
	started, err := ParseDate("started_on", nc.StartedOn)
	if err != nil {
		return Connection{}, err
	}
	if started.After(s.now()) {
		return Connection{}, invalid("started_on", "%s is in the future", nc.StartedOn)
	}
	id := uuid.Must(uuid.NewV7())
	var c Connection
	// Both people are locked (shared): see SetBand.
	err = s.fact(ctx, by, []string{nc.ParticipantID, nc.OtherID}, func(tx pgx.Tx) (access.Event, error) {
		for _, p := range []string{nc.ParticipantID, nc.OtherID} {
			if err := requirePerson(ctx, tx, p); err != nil {
				return access.Event{}, err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO network_connections (id, participant_id, other_id, role, origin, started_on, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, nc.ParticipantID, nc.OtherID, nc.Role, nc.Origin, started.Time, actorName(by)); err != nil {
			return access.Event{}, translate(err)
		}
		var err error
		if c, err = s.connectionTx(ctx, tx, id); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "network.connection.create", Record: "connection:" + c.ID, After: c}, nil
	})
	return c, err
}

func requirePerson(ctx context.Context, tx pgx.Tx, person string) error {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM network_people WHERE id = $1)`, person).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: person %q", ErrNotFound, person)
	}
	return nil
}

// EndConnection ends a connection on a date, or (Retracted) withdraws it as recorded in
// error: a retracted connection and its conversations count for nothing.
type EndConnection struct {
	EndedOn   string `json:"ended_on"`
	Retracted bool   `json:"retracted"`
	Reason    string `json:"reason"`
}

// End records the end or retraction of a connection, once.
func (s *Store) End(ctx context.Context, by By, id string, ec EndConnection) (Connection, error) {
	cid, err := uuid.Parse(id)
	if err != nil {
		return Connection{}, fmt.Errorf("%w: connection %q", ErrNotFound, id)
	}
	ended := Date{s.now().UTC().Truncate(24 * time.Hour)}
	if ec.EndedOn != "" {
		if ended, err = ParseDate("ended_on", ec.EndedOn); err != nil {
			return Connection{}, err
		}
	}
	if r := strings.TrimSpace(ec.Reason); r == "" || len(r) > 500 {
		return Connection{}, invalid("reason", "required (why it ended or was retracted), at most 500 characters")
	}
	c, err := s.Connection(ctx, id)
	if err != nil {
		return Connection{}, err
	}
	if ended.Before(c.StartedOn.Time) || ended.After(s.now()) {
		return Connection{}, invalid("ended_on", "%s: between the connection's start (%s) and today", ended.Format(time.DateOnly),
			c.StartedOn.Format(time.DateOnly))
	}
	err = s.fact(ctx, by, []string{c.ParticipantID}, func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO network_connection_ends (connection_id, ended_on, retracted, reason, recorded_by)
			VALUES ($1, $2, $3, $4, $5)`, cid, ended.Time, ec.Retracted, strings.TrimSpace(ec.Reason), actorName(by)); err != nil {
			if errors.Is(translate(err), ErrExists) {
				return access.Event{}, fmt.Errorf("%w: connection %s has already ended or been retracted", ErrRetracted, id)
			}
			return access.Event{}, translate(err)
		}
		before := c
		var err error
		if c, err = s.connectionTx(ctx, tx, cid); err != nil {
			return access.Event{}, err
		}
		action := "network.connection.end"
		if ec.Retracted {
			action = "network.connection.retract"
		}
		return access.Event{Action: action, Record: "connection:" + id, Before: before, After: c, Detail: ec.Reason}, nil
	})
	return c, err
}

// NewRating is one side's rating of a connection for a month ("2026-10").
type NewRating struct {
	RaterID string `json:"rater_id"`
	Month   string `json:"month"`
	Score   int    `json:"score"`
}

// Rate records a monthly relationship rating (1–10) from one side of a connection.
func (s *Store) Rate(ctx context.Context, by By, connection string, nr NewRating) error {
	cid, err := uuid.Parse(connection)
	if err != nil {
		return fmt.Errorf("%w: connection %q", ErrNotFound, connection)
	}
	month, err := time.Parse("2006-01", nr.Month)
	if err != nil {
		return invalid("month", "%q is not a month like 2026-10", nr.Month)
	}
	if month.After(s.now()) {
		return invalid("month", "%s has not begun", nr.Month)
	}
	if nr.Score < 1 || nr.Score > 10 {
		return invalid("score", "%d: from 1 to 10", nr.Score)
	}
	c, err := s.Connection(ctx, connection)
	if err != nil {
		return err
	}
	if c.Retracted {
		return fmt.Errorf("%w: connection %s", ErrRetracted, connection)
	}
	return s.fact(ctx, by, []string{c.ParticipantID}, func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO network_ratings (connection_id, rater_id, month, score, recorded_by) VALUES ($1, $2, $3, $4, $5)`,
			cid, nr.RaterID, month, nr.Score, actorName(by)); err != nil {
			if errors.Is(translate(err), ErrExists) {
				return access.Event{}, fmt.Errorf("%w: %s has rated connection %s for %s already", ErrExists, nr.RaterID, connection, nr.Month)
			}
			return access.Event{}, translate(err)
		}
		return access.Event{Action: "network.connection.rate", Record: "connection:" + connection, After: nr}, nil
	})
}

// NewConversation describes a conversation to log. Verified asks for it to be verified as
// it is logged: only a coach of the participant or an admin may (the API checks who asks).
type NewConversation struct {
	ConnectionID   string    `json:"connection_id"`
	OccurredAt     time.Time `json:"occurred_at"`
	Channel        string    `json:"channel"`
	Minutes        int       `json:"minutes"`
	Resources      []string  `json:"resources"`
	Note           string    `json:"note"`
	Verified       bool      `json:"verified"`
	IdempotencyKey string    `json:"idempotency_key"`
}

// LogConversation records a conversation. With an idempotency key, logging the same
// conversation again returns the first (Replayed) instead of counting it twice.
func (s *Store) LogConversation(ctx context.Context, by By, nc NewConversation) (Conversation, error) {
	cid, resources, err := s.checkConversation(nc)
	if err != nil {
		return Conversation{}, err
	}
	hash := conversationHash(nc, resources)
	id := uuid.Must(uuid.NewV7())
	var out Conversation
	// The busiest write of the network, so in as few round trips as it takes: the
	// participant's share lock (the protocol of lockFacts) read with the connection, the
	// insert returning what the answer needs, the job, the audit line.
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		var ev Evaluation
		err := tx.QueryRow(ctx, `SELECT p.id, p.eval_gen, c.other_id, c.role FROM network_connections c
			JOIN network_people p ON p.id = c.participant_id WHERE c.id = $1 FOR SHARE OF p`, cid).
			Scan(&ev.Participant, &ev.Gen, &out.OtherID, &out.Role)
		if errors.Is(err, pgx.ErrNoRows) {
			return access.Event{}, fmt.Errorf("%w: connection %s", ErrNotFound, nc.ConnectionID)
		} else if err != nil {
			return access.Event{}, fmt.Errorf("lock participant: %w", err)
		}
		var key *string
		if nc.IdempotencyKey != "" {
			key = &nc.IdempotencyKey
		}
		err = tx.QueryRow(ctx, `INSERT INTO network_conversations (id, connection_id, occurred_at, channel, minutes, resources, note,
			reported_by, idempotency_key, request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (idempotency_key) DO NOTHING RETURNING recorded_at`,
			id, cid, nc.OccurredAt, nc.Channel, nc.Minutes, resources, nc.Note, actorName(by), key, hash).Scan(&out.RecordedAt)
		if errors.Is(err, pgx.ErrNoRows) { // the key was used before
			var prior uuid.UUID
			var priorHash []byte
			if err := tx.QueryRow(ctx, `SELECT id, request_hash FROM network_conversations WHERE idempotency_key = $1`, key).
				Scan(&prior, &priorHash); err != nil {
				return access.Event{}, err
			}
			if string(priorHash) != string(hash) {
				return access.Event{}, fmt.Errorf("%w: %q was used for conversation %s", ErrIdempotencyConflict, nc.IdempotencyKey, prior)
			}
			out, err = s.conversationTx(ctx, tx, prior)
			out.Replayed = true
			return access.Event{}, err
		} else if err != nil {
			return access.Event{}, translate(err)
		}
		out.ID, out.ConnectionID, out.ParticipantID, out.OccurredAt = id.String(), cid.String(), ev.Participant, nc.OccurredAt
		out.Channel, out.Minutes, out.Resources, out.Note, out.ReportedBy, out.Status = nc.Channel, nc.Minutes, resources, nc.Note, actorName(by), "unverified"
		if nc.Verified {
			if err := notAParty(by, ev.Participant, out.OtherID); err != nil {
				return access.Event{}, err
			}
			var at time.Time
			if err := tx.QueryRow(ctx, `INSERT INTO network_reviews (conversation_id, action, reviewed_by, reason)
				VALUES ($1, 'verify', $2, 'verified when logged') RETURNING reviewed_at`, id, actorName(by)).Scan(&at); err != nil {
				return access.Event{}, translate(err)
			}
			out.Status, out.ReviewedBy, out.ReviewedAt = "verified", actorName(by), &at
		}
		if err := s.jobs.EvaluateTx(ctx, tx, []Evaluation{ev}); err != nil {
			return access.Event{}, fmt.Errorf("ask for evaluation: %w", err)
		}
		return access.Event{Action: "network.conversation.create", Record: "conversation:" + out.ID, After: out}, nil
	})
	return out, err
}

// checkConversation validates a conversation to log, returning its connection id and its
// resources sorted and without repeats.
func (s *Store) checkConversation(nc NewConversation) (uuid.UUID, []string, error) {
	cid, err := uuid.Parse(nc.ConnectionID)
	if err != nil {
		return uuid.UUID{}, nil, fmt.Errorf("%w: connection %q", ErrNotFound, nc.ConnectionID)
	}
	switch {
	case nc.OccurredAt.IsZero():
		return cid, nil, invalid("occurred_at", "required, e.g. 2026-11-20T16:00:00Z")
	case nc.OccurredAt.After(s.now().Add(5 * time.Minute)):
		return cid, nil, invalid("occurred_at", "%s is in the future", nc.OccurredAt.Format(time.RFC3339))
	case !slices.Contains(Channels, nc.Channel):
		return cid, nil, invalid("channel", "%q: one of %s", nc.Channel, strings.Join(Channels, ", "))
	case nc.Minutes < 1 || nc.Minutes > 1440:
		return cid, nil, invalid("minutes", "%d: from 1 to 1440", nc.Minutes)
	case len(nc.Note) > 2000:
		return cid, nil, invalid("note", "at most 2000 characters")
	case len(nc.IdempotencyKey) > 200:
		return cid, nil, invalid("idempotency_key", "at most 200 characters")
	}
	resources := slices.Compact(slices.Sorted(slices.Values(nc.Resources)))
	for _, r := range resources {
		if !slices.Contains(ResourceKinds, r) {
			return cid, nil, invalid("resources", "%q: each one of %s", r, strings.Join(ResourceKinds, ", "))
		}
	}
	if resources == nil {
		resources = []string{}
	}
	return cid, resources, nil
}

func conversationHash(nc NewConversation, resources []string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%s\x00%s\x00%t", nc.ConnectionID, nc.OccurredAt.UTC().Format(time.RFC3339Nano),
		nc.Channel, nc.Minutes, strings.Join(resources, ","), nc.Note, nc.Verified)
	return h.Sum(nil)
}

// Review actions on a conversation.
const (
	ReviewVerify   = "verify"
	ReviewUnverify = "unverify"
	ReviewRetract  = "retract"
)

// Review verifies a conversation, withdraws its verification (unverify) or retracts it as
// reported in error (final). Verifying a verified conversation changes nothing.
func (s *Store) Review(ctx context.Context, by By, conversation, action, reason string) (Conversation, error) {
	id, err := uuid.Parse(conversation)
	if err != nil {
		return Conversation{}, fmt.Errorf("%w: conversation %q", ErrNotFound, conversation)
	}
	if !slices.Contains([]string{ReviewVerify, ReviewUnverify, ReviewRetract}, action) {
		return Conversation{}, invalid("action", "%q: verify, unverify or retract", action)
	}
	if len(reason) > 500 {
		return Conversation{}, invalid("reason", "at most 500 characters")
	}
	if action != ReviewVerify && strings.TrimSpace(reason) == "" {
		return Conversation{}, invalid("reason", "required to %s a conversation", action)
	}
	cv, err := s.Conversation(ctx, conversation)
	if err != nil {
		return Conversation{}, err
	}
	var out Conversation
	err = s.fact(ctx, by, []string{cv.ParticipantID}, func(tx pgx.Tx) (access.Event, error) {
		before, err := s.conversationTx(ctx, tx, id)
		if err != nil {
			return access.Event{}, err
		}
		if action == ReviewVerify {
			if err := notAParty(by, before.ParticipantID, before.OtherID); err != nil {
				return access.Event{}, err
			}
		}
		switch {
		case before.Status == "retracted":
			return access.Event{}, fmt.Errorf("%w: conversation %s", ErrRetracted, conversation)
		case (action == ReviewVerify && before.Status == "verified") || (action == ReviewUnverify && before.Status == "unverified"):
			out = before // nothing to change
			return access.Event{}, nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO network_reviews (conversation_id, action, reviewed_by, reason) VALUES ($1, $2, $3, $4)`,
			id, action, actorName(by), strings.TrimSpace(reason)); err != nil {
			return access.Event{}, translate(err)
		}
		if out, err = s.conversationTx(ctx, tx, id); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "network.conversation." + action, Record: "conversation:" + conversation,
			Before: map[string]string{"status": before.Status}, After: map[string]string{"status": out.Status}, Detail: reason}, nil
	})
	return out, err
}

// notAParty refuses a verification by someone on the connection (four eyes).
func notAParty(by By, participant, other string) error {
	if by.PersonID != "" && (by.PersonID == participant || by.PersonID == other) {
		return fmt.Errorf("%w: %s is on this connection and may not verify its conversations: their coach or an admin does", ErrFourEyes, by.PersonID)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
