package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/audited"
	"github.com/tandemledger/tandem/ledger"
)

// writer is the audited ledger for this request's principal.
func (s *Server) writer(r *http.Request) audited.Ledger {
	p, _ := principalFrom(r.Context())
	return audited.Ledger{L: s.ledger, Pool: s.pool, Actor: p, RequestID: requestID(r.Context())}
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) {
	var na ledger.NewAccount
	if err := decode(r, &na); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	a, created, err := s.writer(r).CreateAccount(r.Context(), na)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/ledger/accounts/"+a.Code)
	}
	writeJSON(w, status, a)
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	q := r.URL.Query()
	accts, err := s.ledger.Accounts(r.Context(), ledger.AccountFilter{Prefix: q.Get("prefix"), After: q.Get("after"), Limit: int(limit)})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if accts == nil {
		accts = []ledger.Account{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": accts})
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	a, err := s.ledger.Account(r.Context(), r.PathValue("code"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) closeAccount(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Code string `json:"code"`
	}
	if err := decode(r, &body); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	a, err := s.writer(r).CloseAccount(r.Context(), body.Code)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) getBalance(w http.ResponseWriter, r *http.Request) {
	var at ledger.AsOf
	var err error
	if at.Seq, err = queryInt(r, "as_of_seq"); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if v := r.URL.Query().Get("as_of"); v != "" {
		if at.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
			s.writeProblem(w, r, fmt.Errorf("%w: as_of: %q is not an RFC 3339 time such as 2026-11-22T12:00:00Z", ledger.ErrInvalid, v))
			return
		}
	}
	b, err := s.ledger.Balance(r.Context(), r.PathValue("code"), at)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) getStatement(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	st, err := s.ledger.Statement(r.Context(), r.PathValue("code"), ledger.StatementFilter{After: r.URL.Query().Get("after"), Limit: int(limit)})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) postEntry(kind ledger.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ne ledger.NewEntry
		if err := decode(r, &ne); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		key, err := idempotencyKey(r, ne.IdempotencyKey)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		ne.IdempotencyKey = key
		e, err := s.writer(r).Post(r.Context(), kind, ne)
		s.writeEntry(w, r, e, err)
	}
}

func (s *Server) writeEntry(w http.ResponseWriter, r *http.Request, e ledger.Entry, err error) {
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	status := http.StatusCreated
	if e.Replayed {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/ledger/entries/"+e.ID.String())
	writeJSON(w, status, e)
}

func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Entries []ledger.NewEntry `json:"entries"`
	}
	if err := decode(r, &body); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	entries, err := s.writer(r).PostBatch(r.Context(), body.Entries)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"entries": entries})
}

func (s *Server) resolve(kind ledger.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathUUID(r)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		var res ledger.Resolution
		if r.ContentLength != 0 {
			if err := decode(r, &res); err != nil {
				s.writeProblem(w, r, err)
				return
			}
		}
		if res.IdempotencyKey, err = idempotencyKey(r, res.IdempotencyKey); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		e, err := s.writer(r).Resolve(r.Context(), kind, id, res)
		s.writeEntry(w, r, e, err)
	}
}

func (s *Server) listEntries(w http.ResponseWriter, r *http.Request) {
	after, limit, err := pageParams(r, "after_seq")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	entries, err := s.ledger.Entries(r.Context(), ledger.EntryFilter{AfterSeq: after, Limit: int(limit)})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeList(w, "entries", entries, "next_after_seq", func(e ledger.Entry) int64 { return e.Seq })
}

func (s *Server) getEntry(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	e, err := s.ledger.Entry(r.Context(), id)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) trialBalance(w http.ResponseWriter, r *http.Request) {
	tb, err := s.ledger.TrialBalance(r.Context())
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tb)
}

func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	d, err := s.ledger.Check(r.Context())
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if d == nil {
		d = []ledger.Discrepancy{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": len(d) == 0, "discrepancies": d})
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	after, limit, err := pageParams(r, "after_id")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	lines, err := s.access.Audit(r.Context(), access.AuditFilter{AfterID: after, Record: r.URL.Query().Get("record"), Limit: int(limit)})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeList(w, "lines", lines, "next_after_id", func(l access.AuditLine) int64 { return l.ID })
}
