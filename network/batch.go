package network

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
)

// MaxBatchConversations bounds a batch of conversations.
const MaxBatchConversations = 1000

// LogConversations records many conversations in one transaction, all or nothing: the way
// an integration imports what a messaging platform or a survey tool counted (Mentor
// Collective counts a conversation from message traffic). Each participant concerned is
// asked to be evaluated once. Conversations with an idempotency key logged before are
// returned as they were (Replayed), as LogConversation does; the same key with different
// content fails the batch. Errors name the position at fault ("conversations[3].channel").
func (s *Store) LogConversations(ctx context.Context, by By, ncs []NewConversation) ([]Conversation, error) {
	if len(ncs) == 0 || len(ncs) > MaxBatchConversations {
		return nil, invalid("conversations", "%d: from 1 to %d in a batch", len(ncs), MaxBatchConversations)
	}
	n := len(ncs)
	var (
		ids, conns                 = make([]uuid.UUID, n), make([]uuid.UUID, n)
		ats                        = make([]time.Time, n)
		channels, notes, resources = make([]string, n), make([]string, n), make([]string, n)
		minutes                    = make([]int32, n)
		keys                       = make([]*string, n)
		hashes                     = make([][]byte, n)
		verified                   []uuid.UUID
		resourceLists              = make([][]string, n)
		seenKeys                   = map[string]int{}
		distinct                   []uuid.UUID
	)
	for i, nc := range ncs {
		cid, rs, err := s.checkConversation(nc)
		if err != nil {
			return nil, fmt.Errorf("conversations[%d]: %w", i, err)
		}
		if nc.IdempotencyKey != "" {
			if j, dup := seenKeys[nc.IdempotencyKey]; dup {
				return nil, invalid(fmt.Sprintf("conversations[%d].idempotency_key", i), "%q is also conversations[%d]'s", nc.IdempotencyKey, j)
			}
			seenKeys[nc.IdempotencyKey] = i
			keys[i] = &ncs[i].IdempotencyKey
		}
		ids[i], conns[i], ats[i], channels[i], minutes[i], notes[i] = uuid.Must(uuid.NewV7()), cid, nc.OccurredAt, nc.Channel, int32(nc.Minutes), nc.Note
		resources[i], resourceLists[i], hashes[i] = strings.Join(rs, ","), rs, conversationHash(nc, rs)
		if nc.Verified {
			verified = append(verified, ids[i])
		}
		if !slices.Contains(distinct, cid) {
			distinct = append(distinct, cid)
		}
	}
	out := make([]Conversation, n)
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		// The participants' share locks (lockFacts' protocol), in id order, with the connections.
		rows, err := tx.Query(ctx, `SELECT c.id, p.id, p.eval_gen, c.other_id, c.role FROM network_connections c
			JOIN network_people p ON p.id = c.participant_id WHERE c.id = ANY($1) ORDER BY p.id FOR SHARE OF p`, distinct)
		if err != nil {
			return access.Event{}, fmt.Errorf("lock participants: %w", err)
		}
		type connInfo struct{ participant, other, role string }
		info := map[uuid.UUID]connInfo{}
		gens := map[string]int64{}
		var cid uuid.UUID
		var ci connInfo
		var gen int64
		if _, err := pgx.ForEachRow(rows, []any{&cid, &ci.participant, &gen, &ci.other, &ci.role}, func() error {
			info[cid], gens[ci.participant] = ci, gen
			return nil
		}); err != nil {
			return access.Event{}, fmt.Errorf("lock participants: %w", err)
		}
		for i, c := range conns {
			ci, ok := info[c]
			if !ok {
				return access.Event{}, fmt.Errorf("conversations[%d]: %w: connection %s", i, ErrNotFound, c)
			}
			if ncs[i].Verified {
				if err := notAParty(by, ci.participant, ci.other); err != nil {
					return access.Event{}, fmt.Errorf("conversations[%d]: %w", i, err)
				}
			}
		}
		actor := actorName(by)
		rows, err = tx.Query(ctx, `INSERT INTO network_conversations (id, connection_id, occurred_at, channel, minutes, resources,
			note, reported_by, idempotency_key, request_hash)
			SELECT id, conn, at, channel, minutes, CASE WHEN res = '' THEN '{}'::text[] ELSE string_to_array(res, ',') END,
			       note, $9, key, hash
			FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $10::bytea[])
			     AS x(id, conn, at, channel, minutes, res, note, key, hash)
			ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, recorded_at`,
			ids, conns, ats, channels, minutes, resources, notes, keys, actor, hashes)
		if err != nil {
			return access.Event{}, translate(err)
		}
		recorded := map[uuid.UUID]time.Time{}
		var id uuid.UUID
		var at time.Time
		if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error { recorded[id] = at; return nil }); err != nil {
			return access.Event{}, translate(err)
		}
		reviewedAt := map[uuid.UUID]time.Time{}
		if len(verified) > 0 {
			rows, err := tx.Query(ctx, `INSERT INTO network_reviews (conversation_id, action, reviewed_by, reason)
				SELECT v, 'verify', $2, 'verified when logged' FROM unnest($1::uuid[]) v
				WHERE v IN (SELECT id FROM network_conversations WHERE id = ANY($1)) RETURNING conversation_id, reviewed_at`, verified, actor)
			if err != nil {
				return access.Event{}, translate(err)
			}
			if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error { reviewedAt[id] = at; return nil }); err != nil {
				return access.Event{}, translate(err)
			}
		}
		var logged []string
		var evals []Evaluation
		for i := range ncs {
			c := info[conns[i]]
			rec, ok := recorded[ids[i]]
			if !ok { // an idempotent replay
				var prior uuid.UUID
				var priorHash []byte
				if err := tx.QueryRow(ctx, `SELECT id, request_hash FROM network_conversations WHERE idempotency_key = $1`, keys[i]).
					Scan(&prior, &priorHash); err != nil {
					return access.Event{}, fmt.Errorf("conversations[%d]: %w", i, err)
				}
				if string(priorHash) != string(hashes[i]) {
					return access.Event{}, fmt.Errorf("conversations[%d]: %w: %q was used for conversation %s", i, ErrIdempotencyConflict, *keys[i], prior)
				}
				if out[i], err = s.conversationTx(ctx, tx, prior); err != nil {
					return access.Event{}, err
				}
				out[i].Replayed = true
				continue
			}
			out[i] = Conversation{ID: ids[i].String(), ConnectionID: conns[i].String(), ParticipantID: c.participant, OtherID: c.other,
				Role: c.role, OccurredAt: ats[i], Channel: channels[i], Minutes: int(minutes[i]), Resources: resourceLists[i],
				Note: notes[i], ReportedBy: actor, RecordedAt: rec, Status: "unverified"}
			if t, ok := reviewedAt[ids[i]]; ok {
				out[i].Status, out[i].ReviewedBy, out[i].ReviewedAt = "verified", actor, &t
			}
			logged = append(logged, out[i].ID)
			if g, ok := gens[c.participant]; ok {
				evals = append(evals, Evaluation{Participant: c.participant, Gen: g})
				delete(gens, c.participant)
			}
		}
		if len(logged) == 0 {
			return access.Event{}, nil
		}
		if err := s.jobs.EvaluateTx(ctx, tx, evals); err != nil {
			return access.Event{}, fmt.Errorf("ask for evaluation: %w", err)
		}
		return access.Event{Action: "network.conversation.batch", Record: "batch",
			After: map[string]any{"conversations": logged, "verified": len(reviewedAt)}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
