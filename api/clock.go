package api

import (
	"net/http"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/payouts"
)

// clockRoutes: a sandbox program's test clock (payouts/clock.go).
//
//	GET  /v1/programs/{id}/clock            the program's time, offset and advances
//	POST /v1/programs/{id}/clock/advance    {"by":"72h"} or {"to":"2027-01-05"}, forward only
func (s *Server) clockRoutes() {
	s.handle("GET /v1/programs/{id}/clock", access.ClockRead, noResource, s.getClock)
	s.handle("POST /v1/programs/{id}/clock/advance", access.ClockAdvance, noResource, write(s, http.StatusOK, s.advanceClock))
}

func (s *Server) getClock(w http.ResponseWriter, r *http.Request) {
	c, err := s.payouts.Clock(r.Context(), r.PathValue("id"))
	s.reply(w, r, c, err)
}

func (s *Server) advanceClock(r *http.Request, m payouts.ClockMove) (any, error) {
	return s.payouts.AdvanceClock(r.Context(), by(r), r.PathValue("id"), m)
}
