package network

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/internal/textfmt"
)

// Facts are what a participant's milestones are evaluated on: everything recorded about
// their network in one program, as of one moment. Retracted connections and conversations
// are not in it.
type Facts struct {
	Participant string
	Band        string // "" when unknown
	Consent     bool
	EnrolledAt  time.Time
	// Term is the program's: things outside [TermStart, TermEnd) do not count.
	TermStart, TermEnd time.Time
	Connections        []ConnectionFact
	Conversations      []ConversationFact
	Ratings            []RatingFact
}

// ConnectionFact is one of the participant's connections.
type ConnectionFact struct {
	ID        uuid.UUID
	OtherID   string
	Role      string
	Origin    string
	StartedOn time.Time
	EndedOn   *time.Time // nil while active
	OtherBand string
}

// ConversationFact is a conversation on one of the connections.
type ConversationFact struct {
	ID           uuid.UUID
	ConnectionID uuid.UUID
	OccurredAt   time.Time
	Channel      string
	Minutes      int
	Resources    []string
	Verified     bool
}

// RatingFact is one side's rating of a connection for a month.
type RatingFact struct {
	ConnectionID  uuid.UUID
	Month         time.Time
	ByParticipant bool
	Score         int
}

// Progress is where a participant stands on one rule.
type Progress struct {
	RuleID  string          `json:"rule_id"`
	Version int             `json:"version"`
	Title   string          `json:"title"`
	Kind    string          `json:"count_kind"` // what the rule counts (Rule.Count)
	Met     bool            `json:"met"`
	Count   decimal.Decimal `json:"count"`
	Target  decimal.Decimal `json:"target"`
	// Missing says in words what is still needed ("" once met and not repeating).
	Missing string `json:"missing,omitempty"`
	// Due lists the awards the facts entitle the participant to, by period.
	Due []Due `json:"due,omitempty"`
}

// Due is one award a rule's facts call for.
type Due struct {
	Period    string    `json:"period"`
	ReachedAt time.Time `json:"reached_at"`
	Evidence  []string  `json:"evidence"`
}

// item is one counted thing, in time order.
type item struct {
	at time.Time
	id string
}

// Evaluate says where the facts stand on rule r at now. It is a pure function: the same
// facts, rule and moment give the same answer, which is what makes awards reproducible and
// the rules easy to test.
func Evaluate(f Facts, r Rule, now time.Time) Progress {
	p := Progress{RuleID: r.ID, Title: r.Title, Kind: r.Count, Target: r.AtLeast}
	if r.Count == CountEconomicConnectedess {
		evaluateEC(f, r, now, &p)
	} else {
		items, noun := countItems(f, r)
		evaluateItems(items, noun, r, now, &p)
	}
	if !f.Consent {
		p.Due = nil
		p.Missing = strings.TrimSpace("no consent on file, so no award can be made. " + p.Missing)
	}
	return p
}

// countItems lists what r counts, in time order, with a noun for messages.
func countItems(f Facts, r Rule) ([]item, string) {
	conns := make(map[uuid.UUID]ConnectionFact, len(f.Connections))
	for _, c := range f.Connections {
		conns[c.ID] = c
	}
	w := r.Where
	inTerm := func(t time.Time) bool { return !t.Before(f.TermStart) && t.Before(f.TermEnd) }
	connOK := func(c ConnectionFact) bool {
		return (w.Role == "" || c.Role == w.Role) && (w.Origin == "" || c.Origin == w.Origin) &&
			(!w.CrossClass || crossClass(f.Band, c.OtherBand)) && (w.OtherBand == "" || c.OtherBand == w.OtherBand)
	}
	var items []item
	noun := strings.TrimSpace(w.Role + " " + strings.ReplaceAll(r.Count, "_", " "))
	switch r.Count {
	case CountConversations, CountWellResourced:
		verifiedOnly := r.Count == CountWellResourced || w.countedVerified()
		for _, cv := range f.Conversations {
			c, ok := conns[cv.ConnectionID]
			switch {
			case !ok || !connOK(c) || !inTerm(cv.OccurredAt):
			case verifiedOnly && !cv.Verified:
			case w.Channel != "" && cv.Channel != w.Channel:
			case cv.Minutes < w.MinMinutes:
			case w.Resource != "" && !slices.Contains(cv.Resources, w.Resource):
			case r.Count == CountWellResourced && len(cv.Resources) == 0:
			default:
				items = append(items, item{cv.OccurredAt, cv.ID.String()})
			}
		}
		if verifiedOnly {
			noun = "verified " + noun
		}
	case CountConnections:
		// A connection counts from its start, or with with_conversation from its first
		// verified conversation.
		first := map[uuid.UUID]time.Time{}
		for _, cv := range f.Conversations {
			if t, seen := first[cv.ConnectionID]; cv.Verified && (!seen || cv.OccurredAt.Before(t)) {
				first[cv.ConnectionID] = cv.OccurredAt
			}
		}
		for _, c := range f.Connections {
			at := c.StartedOn
			if w.WithConversation {
				t, ok := first[c.ID]
				if !ok {
					continue
				}
				if t.After(at) {
					at = t
				}
			}
			if connOK(c) && inTerm(at) {
				items = append(items, item{at, c.ID.String()})
			}
		}
		if w.WithConversation {
			noun += " with a verified conversation"
		}
	case CountRatedMonths:
		type key struct {
			conn  uuid.UUID
			month time.Time
		}
		sides := map[key][2]int{}
		for _, rt := range f.Ratings {
			k := key{rt.ConnectionID, rt.Month}
			s := sides[k]
			if rt.ByParticipant {
				s[0] = rt.Score
			} else {
				s[1] = rt.Score
			}
			sides[k] = s
		}
		months := map[time.Time]bool{}
		for k, s := range sides {
			if c, ok := conns[k.conn]; ok && connOK(c) && s[0] >= w.MinRating && s[1] >= w.MinRating && inTerm(k.month) {
				months[k.month] = true
			}
		}
		for m := range months {
			items = append(items, item{m, m.Format("2006-01")})
		}
		noun = fmt.Sprintf("months rated %d or more by both sides", w.MinRating)
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	if r.Count == CountRatedMonths && r.Where.Consecutive {
		items = longestRuns(items)
		noun = "consecutive " + noun
	}
	return items, noun
}

// longestRuns keeps the months of runs of consecutive months, each run after the previous,
// so that "at least N in a window" means N consecutive months: it marks each month with the
// start of its run and spaces runs apart (see evaluateItems' use of runs).
func longestRuns(items []item) []item {
	out := make([]item, 0, len(items))
	for i, it := range items {
		if i > 0 && !items[i-1].at.AddDate(0, 1, 0).Equal(it.at) {
			out = append(out, item{id: ""}) // a break between runs
		}
		out = append(out, it)
	}
	return out
}

// evaluateItems applies r's threshold, window and repetition to counted items.
func evaluateItems(items []item, noun string, r Rule, now time.Time, p *Progress) {
	n := int(r.AtLeast.IntPart())
	groups := groupsOf(items, n, r.WithinDays)
	switch r.Repeat {
	case RepeatOnce:
		p.Count = decimal.NewFromInt(int64(bestCount(items, r.WithinDays)))
		if len(groups) > 0 {
			p.Met = true
			p.Due = []Due{groups[0].due("once")}
		}
	case RepeatMonthly:
		p.Count = decimal.Zero
		for _, m := range months(items) {
			if g := groupsOf(m.items, n, 0); len(g) > 0 && len(p.Due) < r.Cap.Awards {
				p.Due = append(p.Due, g[0].due(m.month))
			}
			if m.month == now.UTC().Format("2006-01") {
				p.Count = decimal.NewFromInt(int64(len(m.items)))
			}
		}
		p.Met = len(p.Due) > 0
	case RepeatEach:
		if r.Cap.Per == "month" {
			// A monthly cap counts each month on its own things: what is left over in one
			// month does not carry into the next.
			for _, m := range months(items) {
				for k, g := range groupsOf(m.items, n, r.WithinDays) {
					if k < r.Cap.Awards {
						p.Due = append(p.Due, g.due(fmt.Sprintf("%s#%d", m.month, k+1)))
					}
				}
			}
		} else {
			for _, g := range groups {
				if len(p.Due) < r.Cap.Awards {
					p.Due = append(p.Due, g.due(fmt.Sprintf("#%d", len(p.Due)+1)))
				}
			}
		}
		p.Count = decimal.NewFromInt(int64(countReal(items)))
		p.Met = len(p.Due) > 0
	}
	p.Missing = missing(items, noun, n, r, now, p)
}

func missing(items []item, noun string, n int, r Rule, now time.Time, p *Progress) string {
	window := ""
	if r.WithinDays > 0 {
		window = " within " + textfmt.Days(r.WithinDays)
	}
	switch r.Repeat {
	case RepeatOnce:
		if p.Met {
			return ""
		}
		return fmt.Sprintf("%d more %s%s (%s of %d so far)", n-int(p.Count.IntPart()), noun, window, p.Count, n)
	case RepeatMonthly:
		if len(p.Due) >= r.Cap.Awards {
			return fmt.Sprintf("cap reached: %d awards this term", r.Cap.Awards)
		}
		left := n - int(p.Count.IntPart())
		if left <= 0 {
			return ""
		}
		return fmt.Sprintf("%d more %s in %s", left, noun, now.UTC().Format("January 2006"))
	default:
		if r.Cap.Per == "term" && len(p.Due) >= r.Cap.Awards {
			return fmt.Sprintf("cap reached: %d awards this term", r.Cap.Awards)
		}
		used := 0
		for _, d := range p.Due {
			if strings.HasPrefix(d.Period, now.UTC().Format("2006-01")+"#") {
				used++
			}
		}
		if r.Cap.Per == "month" && used >= r.Cap.Awards {
			return fmt.Sprintf("cap reached: %d awards in %s", r.Cap.Awards, now.UTC().Format("January 2006"))
		}
		// What counts toward the next award: the things after the last award's evidence
		// (this month's only, under a monthly cap), and with a window only those recent
		// enough that one more thing now could complete a group with them.
		scope := items
		if r.Cap.Per == "month" {
			scope = nil
			for _, m := range months(items) {
				if m.month == now.UTC().Format("2006-01") {
					scope = m.items
				}
			}
		}
		from := 0
		if gs := groupsOf(scope, n, r.WithinDays); len(gs) > 0 {
			lastID := gs[len(gs)-1][n-1].id
			for i, it := range scope {
				if it.id == lastID {
					from = i + 1
				}
			}
		}
		rest := 0
		for _, it := range scope[from:] {
			if it.id != "" && (r.WithinDays == 0 || now.Sub(it.at) <= time.Duration(r.WithinDays)*24*time.Hour) {
				rest++
			}
		}
		return fmt.Sprintf("%d more %s%s for the next award", max(n-rest, 1), noun, window)
	}
}

type monthItems struct {
	month string
	items []item
}

// months splits items (in time order) by calendar month, UTC, leaving out run breaks.
func months(items []item) []monthItems {
	var out []monthItems
	for _, it := range items {
		if it.id == "" {
			continue
		}
		m := it.at.UTC().Format("2006-01")
		if len(out) == 0 || out[len(out)-1].month != m {
			out = append(out, monthItems{month: m})
		}
		out[len(out)-1].items = append(out[len(out)-1].items, it)
	}
	return out
}

// group is n items that together reach a rule once.
type group []item

func (g group) reachedAt() time.Time { return g[len(g)-1].at }

func (g group) due(period string) Due {
	ev := make([]string, len(g))
	for i, it := range g {
		ev[i] = it.id
	}
	return Due{Period: period, ReachedAt: g.reachedAt(), Evidence: ev}
}

// groupsOf splits items, in order, into disjoint groups of n, each spanning at most
// withinDays (0: no limit) and never across a run break (an item with an empty id). One piece
// of evidence belongs to at most one group: "one piece of evidence fires one rule".
func groupsOf(items []item, n, withinDays int) []group {
	var out []group
	start := 0
	for j := 0; j < len(items); j++ {
		if items[j].id == "" {
			start = j + 1
			continue
		}
		if withinDays > 0 {
			for items[j].at.Sub(items[start].at) > time.Duration(withinDays)*24*time.Hour {
				start++
			}
		}
		if j-start+1 >= n {
			out = append(out, group(slices.Clone(items[j-n+1:j+1])))
			start = j + 1
		}
	}
	return out
}

// bestCount is the most items in any window of withinDays (all real items without one).
func bestCount(items []item, withinDays int) int {
	best, start := 0, 0
	for j := 0; j < len(items); j++ {
		if items[j].id == "" {
			start = j + 1
			continue
		}
		for withinDays > 0 && items[j].at.Sub(items[start].at) > time.Duration(withinDays)*24*time.Hour {
			start++
		}
		best = max(best, j-start+1)
	}
	return best
}

func countReal(items []item) int {
	n := 0
	for _, it := range items {
		if it.id != "" {
			n++
		}
	}
	return n
}

func crossClass(a, b string) bool { return a != "" && b != "" && a != b }

// EconomicConnectedness is a participant's EC after Chetty et al. (Nature 2022), as DOMAIN.md
// defines it for one person: EC_i = 2 × high-band connections ÷ active connections. Only
// connections active at the moment (started, not ended) whose other person has a known band
// count, on both sides of the fraction. 1.0 means high-band connections in proportion to
// their half of the population; 0 means none. With no counted connection EC is 0 and
// counted is 0.
func EconomicConnectedness(conns []ConnectionFact, at time.Time) (ec decimal.Decimal, high, counted int) {
	for _, c := range conns {
		if c.OtherBand == "" || c.StartedOn.After(at) || (c.EndedOn != nil && !c.EndedOn.After(at)) {
			continue
		}
		counted++
		if c.OtherBand == "high" {
			high++
		}
	}
	if counted == 0 {
		return decimal.Zero, 0, 0
	}
	return decimal.NewFromInt(int64(2*high)).DivRound(decimal.NewFromInt(int64(counted)), 4), high, counted
}

func evaluateEC(f Facts, r Rule, now time.Time, p *Progress) {
	ec, high, n := EconomicConnectedness(f.Connections, now)
	p.Count = ec
	// Exact comparisons: 2h/n ≥ t ⟺ 2h ≥ t·n, and 2h/n − 2h₀/n₀ ≥ x ⟺ 2h·n₀ − 2h₀·n ≥ x·n·n₀.
	twoH := decimal.NewFromInt(int64(2 * high))
	var met bool
	if r.UpBy.IsPositive() {
		// The baseline is the network the participant came with: connections that started
		// before the day of enrolment (a match made on that day is the program's doing).
		enrolDay := f.EnrolledAt.UTC().Truncate(24 * time.Hour)
		base, high0, n0 := EconomicConnectedness(f.Connections, enrolDay.Add(-time.Nanosecond))
		p.Target = base.Add(r.UpBy)
		switch {
		case n == 0:
		case n0 == 0: // no baseline connections: the baseline is 0
			met = twoH.GreaterThanOrEqual(r.UpBy.Mul(decimal.NewFromInt(int64(n))))
		default:
			lhs := twoH.Mul(decimal.NewFromInt(int64(n0))).Sub(decimal.NewFromInt(int64(2 * high0 * n)))
			met = lhs.GreaterThanOrEqual(r.UpBy.Mul(decimal.NewFromInt(int64(n * n0))))
		}
	} else {
		met = n > 0 && twoH.GreaterThanOrEqual(r.AtLeast.Mul(decimal.NewFromInt(int64(n))))
	}
	if met {
		p.Met = true
		p.Due = []Due{{Period: "once", ReachedAt: now, Evidence: []string{fmt.Sprintf("ec=%s (%d of %d connections high-band)", ec, high, n)}}}
		return
	}
	p.Missing = fmt.Sprintf("economic connectedness %s, needs %s (%d of %d counted connections are high-band)",
		ec.StringFixed(2), p.Target.StringFixed(2), high, n)
}
