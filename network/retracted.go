package network

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
)

// What happened to a piece of an award's evidence (Withdrawn.What).
const (
	// WithdrawnConversation: the conversation was retracted as reported in error.
	WithdrawnConversation = "conversation_retracted"
	// WithdrawnVerification: the conversation's verification was withdrawn (unverify) and
	// the award's rule counts verified conversations only.
	WithdrawnVerification = "verification_withdrawn"
	// WithdrawnConnection: the connection (or the connection the conversation was on) was
	// retracted as recorded in error.
	WithdrawnConnection = "connection_retracted"
)

// Withdrawn is one piece of an award's evidence that no longer counts.
type Withdrawn struct {
	Item   string    `json:"item"` // the conversation or connection id named in the award's evidence
	What   string    `json:"what"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// RetractedAward is an award paid into the wallet whose evidence was withdrawn since.
type RetractedAward struct {
	Award     Award       `json:"award"`
	Withdrawn []Withdrawn `json:"withdrawn"`
}

// RetractedEvidenceTx lists the awards paid into a wallet (status posted) of program ("" for
// every program; award narrows to one award id) with at least one piece of evidence that no
// longer counts: a retracted conversation, a conversation on a retracted connection, a
// retracted connection, or a conversation whose verification was withdrawn when the rule
// counts verified conversations only. The award's evidence lists the conversations or
// connections that fired it (Due.Evidence); awards on other evidence (months of ratings,
// economic connectedness) are not read here, nor a connection counted with_conversation
// whose first verified conversation was withdrawn while the connection stands. Oldest award
// first.
func RetractedEvidenceTx(ctx context.Context, db access.DBTX, program, award string) ([]RetractedAward, error) {
	rows, err := db.Query(ctx, `WITH ev AS MATERIALIZED (
			SELECT a.id, e.item, CASE WHEN e.item ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN e.item::uuid END AS uid
			FROM network_awards a, jsonb_array_elements_text(CASE WHEN jsonb_typeof(a.evidence) = 'array' THEN a.evidence ELSE '[]' END) e(item)
			WHERE a.status = 'posted' AND ($1 = '' OR a.program_id = $1) AND ($2 = '' OR a.id::text = $2)),
		w AS (
			SELECT ev.id, ev.item, w.what, w.reason, w.actor, w.happened
			FROM ev JOIN network_awards a ON a.id = ev.id
			JOIN network_rules ru ON ru.program_id = a.program_id AND ru.rule_id = a.rule_id AND ru.version = a.rule_version
			CROSS JOIN LATERAL (
				SELECT CASE r.action WHEN 'retract' THEN 'conversation_retracted' ELSE 'verification_withdrawn' END, r.reason, r.reviewed_by, r.reviewed_at
				FROM (SELECT action, reason, reviewed_by, reviewed_at FROM network_reviews WHERE conversation_id = ev.uid ORDER BY id DESC LIMIT 1) r
				WHERE r.action = 'retract' OR (r.action = 'unverify' AND (ru.definition->>'count' = 'well_resourced_conversations'
					OR (ru.definition->>'count' = 'conversations' AND coalesce(ru.definition->'where'->>'verified', 'true') = 'true')))
				UNION ALL
				SELECT 'connection_retracted', x.reason, x.recorded_by, x.recorded_at
				FROM network_connection_ends x
				WHERE x.retracted AND (x.connection_id = ev.uid
					OR x.connection_id = (SELECT c.connection_id FROM network_conversations c WHERE c.id = ev.uid))
			) w(what, reason, actor, happened)
			WHERE ev.uid IS NOT NULL)
		SELECT `+awardColumns+`, w_item, w_what, w_reason, w_actor, w_happened
		FROM (SELECT a.*, w.item AS w_item, w.what AS w_what, w.reason AS w_reason, w.actor AS w_actor, w.happened AS w_happened
			FROM w JOIN network_awards a ON a.id = w.id) j
		ORDER BY created_at, id, w_happened, w_item`, program, award)
	if err != nil {
		return nil, fmt.Errorf("awards with retracted evidence: %w", err)
	}
	var out []RetractedAward
	var a Award
	var wd Withdrawn
	_, err = pgx.ForEachRow(rows, append(awardDest(&a), &wd.Item, &wd.What, &wd.Reason, &wd.By, &wd.At), func() error {
		if n := len(out); n == 0 || out[n-1].Award.ID != a.ID {
			out = append(out, RetractedAward{Award: a})
		}
		last := &out[len(out)-1]
		last.Withdrawn = append(last.Withdrawn, wd)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("awards with retracted evidence: %w", err)
	}
	return out, nil
}
