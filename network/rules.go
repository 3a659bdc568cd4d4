package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/ledger"
)

// Rule is a milestone rule as a program declares it (DESIGN.md §6), e.g.
//
//	{"id": "mentor-4", "title": "Met your mentor 4 times within 60 days",
//	 "count": "conversations", "where": {"role": "mentor"},
//	 "at_least": 4, "within_days": 60,
//	 "award": {"amount": "50.00", "kind": "microgrant"}, "repeat": "once"}
//
// What can be counted (Count):
//   - "conversations": conversations on the participant's connections. Only verified ones
//     count unless where.verified is false.
//   - "well_resourced_conversations": verified conversations that carried at least one
//     resource (where.resource: a given kind).
//   - "connections": distinct connections made (where.role, origin, cross_class, other_band;
//     with_conversation: only once a verified conversation happened on it). A connection that
//     later ended still counts: it was made; a retracted one does not.
//   - "economic_connectedness": the participant's EC (see EconomicConnectedness) at least
//     AtLeast, or up by UpBy from their baseline (connections begun before the day of
//     enrolment).
//   - "rated_months": months in which both sides rated a connection at least
//     where.min_rating (consecutive: the longest run of consecutive months).
//
// Repeat is "once" (one award ever), "monthly" (one award for each calendar month, UTC, in
// which the count is reached within that month) or "each" (one award for every AtLeast
// things counted). Cap bounds how many awards a repeating rule makes: per month or per term
// (the whole program).
type Rule struct {
	ID         string          `json:"id"`
	Title      string          `json:"title"`
	Count      string          `json:"count"`
	Where      Where           `json:"where"`
	AtLeast    decimal.Decimal `json:"at_least"`
	UpBy       decimal.Decimal `json:"up_by"`
	WithinDays int             `json:"within_days,omitempty"`
	Award      RuleAward       `json:"award"`
	Repeat     string          `json:"repeat"`
	Cap        *Cap            `json:"cap,omitempty"`
}

// Where narrows what a rule counts. Which fields apply depends on Rule.Count.
type Where struct {
	Role             string `json:"role,omitempty"`
	Origin           string `json:"origin,omitempty"`
	Verified         *bool  `json:"verified,omitempty"`
	Channel          string `json:"channel,omitempty"`
	MinMinutes       int    `json:"min_minutes,omitempty"`
	Resource         string `json:"resource,omitempty"`
	CrossClass       bool   `json:"cross_class,omitempty"`
	OtherBand        string `json:"other_band,omitempty"`
	WithConversation bool   `json:"with_conversation,omitempty"`
	MinRating        int    `json:"min_rating,omitempty"`
	Consecutive      bool   `json:"consecutive,omitempty"`
}

// RuleAward is what reaching the rule pays.
type RuleAward struct {
	Amount decimal.Decimal `json:"amount"`
	Kind   string          `json:"kind"`
	// Currency is the program's (ParseRule's): the amount is written with its places
	// ("50.00"). It is not part of the rule's JSON.
	Currency string `json:"-"`
}

// MarshalJSON writes the amount with its currency's places.
func (a RuleAward) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Amount string `json:"amount"`
		Kind   string `json:"kind"`
	}{ledger.FormatAmount(a.Amount, a.Currency), a.Kind})
}

// Cap bounds the awards of a repeating rule: at most Awards per Per ("month" or "term").
type Cap struct {
	Awards int    `json:"awards"`
	Per    string `json:"per"`
}

// Things a rule can count.
const (
	CountConversations        = "conversations"
	CountWellResourced        = "well_resourced_conversations"
	CountConnections          = "connections"
	CountEconomicConnectedess = "economic_connectedness"
	CountRatedMonths          = "rated_months"
)

// Repeat values.
const (
	RepeatOnce    = "once"
	RepeatMonthly = "monthly"
	RepeatEach    = "each"
)

// Vocabularies of DESIGN.md §5.
var (
	ConnectionRoles = []string{"mentor", "near_peer_coach", "peer", "professional"}
	Origins         = []string{"matched", "self_reported"}
	Channels        = []string{"in_person", "video", "phone", "message"}
	ResourceKinds   = []string{"information", "advice", "introduction", "referral", "job_offer", "internship", "scholarship_lead"}
	Bands           = []string{"low", "high"}
	AwardKinds      = []string{"microgrant"}
)

// whereFields lists the Where fields each count accepts.
var whereFields = map[string][]string{
	CountConversations:        {"role", "origin", "verified", "channel", "min_minutes", "resource", "cross_class", "other_band"},
	CountWellResourced:        {"role", "origin", "channel", "min_minutes", "resource", "cross_class", "other_band"},
	CountConnections:          {"role", "origin", "cross_class", "other_band", "with_conversation"},
	CountEconomicConnectedess: {},
	CountRatedMonths:          {"role", "min_rating", "consecutive"},
}

var ruleID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// MaxAtLeast bounds a count threshold; MaxWithinDays a window.
const (
	MaxAtLeast    = 10000
	MaxWithinDays = 3660
	MaxRuleBytes  = 4096
)

// ParseRule reads and validates a rule for a program in currency. Every error wraps
// ErrInvalid (an amount error wraps ledger.ErrInvalidAmount instead) and names the field at
// fault: "where.rol: unknown field", "at_least: 2.5 is not
// a whole number", "award.amount: 50.001 has more than 2 decimal places for USD".
func ParseRule(data []byte, currency string) (Rule, error) {
	if len(data) > MaxRuleBytes {
		return Rule{}, invalid("rule", "%d bytes; at most %d", len(data), MaxRuleBytes)
	}
	var raw struct {
		ID         string          `json:"id"`
		Title      string          `json:"title"`
		Count      string          `json:"count"`
		Where      json.RawMessage `json:"where"`
		AtLeast    json.RawMessage `json:"at_least"`
		UpBy       json.RawMessage `json:"up_by"`
		WithinDays json.RawMessage `json:"within_days"`
		Award      json.RawMessage `json:"award"`
		Repeat     string          `json:"repeat"`
		Cap        json.RawMessage `json:"cap"`
	}
	if err := strictDecode(data, &raw); err != nil {
		return Rule{}, invalid("rule", "%v", err)
	}
	r := Rule{ID: raw.ID, Title: strings.TrimSpace(raw.Title), Count: raw.Count, Repeat: raw.Repeat}
	if !ruleID.MatchString(r.ID) {
		return Rule{}, invalid("id", "%q: use 1–64 lower-case letters, digits and dashes", r.ID)
	}
	if r.Title == "" || len(r.Title) > 200 {
		return Rule{}, invalid("title", "required, at most 200 characters")
	}
	allowed, ok := whereFields[r.Count]
	if !ok {
		return Rule{}, invalid("count", "%q: one of %s", r.Count, strings.Join(slices.Sorted(maps.Keys(whereFields)), ", "))
	}
	if err := parseWhere(raw.Where, allowed, &r.Where); err != nil {
		return Rule{}, err
	}
	if r.Count == CountRatedMonths && r.Where.MinRating == 0 {
		return Rule{}, invalid("where.min_rating", "required: the rating both sides must give (1–10)")
	}
	var err error
	if r.Count == CountEconomicConnectedess {
		if r.AtLeast, r.UpBy, err = parseECThreshold(raw.AtLeast, raw.UpBy); err != nil {
			return Rule{}, err
		}
	} else {
		if len(raw.UpBy) > 0 {
			return Rule{}, invalid("up_by", "only economic_connectedness rules rise from a baseline")
		}
		n, err := wholeNumber("at_least", raw.AtLeast, 1, MaxAtLeast)
		if err != nil {
			return Rule{}, err
		}
		r.AtLeast = decimal.NewFromInt(int64(n))
	}
	if len(raw.WithinDays) > 0 {
		if r.Count == CountEconomicConnectedess || r.Count == CountRatedMonths {
			return Rule{}, invalid("within_days", "does not apply to %s", r.Count)
		}
		if r.WithinDays, err = wholeNumber("within_days", raw.WithinDays, 1, MaxWithinDays); err != nil {
			return Rule{}, err
		}
	}
	if r.Award, err = parseAward(raw.Award, currency); err != nil {
		return Rule{}, err
	}
	if err := r.parseRepeat(raw.Cap); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func (r *Rule) parseRepeat(capJSON json.RawMessage) error {
	switch r.Repeat {
	case RepeatOnce:
		if len(capJSON) > 0 {
			return invalid("cap", "a rule that pays once needs no cap")
		}
		return nil
	case RepeatMonthly, RepeatEach:
	default:
		return invalid("repeat", "%q: once, monthly or each", r.Repeat)
	}
	switch {
	case r.Count == CountEconomicConnectedess:
		return invalid("repeat", "economic connectedness is reached once")
	case r.Repeat == RepeatMonthly && r.WithinDays > 0:
		return invalid("within_days", "a monthly rule counts within each calendar month")
	case r.Repeat == RepeatMonthly && r.Count == CountRatedMonths:
		return invalid("repeat", "rated months accumulate across months: use once or each")
	}
	if len(capJSON) == 0 {
		return invalid("cap", "a repeating rule needs a cap, e.g. {\"awards\": 3, \"per\": \"month\"}")
	}
	var c struct {
		Awards json.RawMessage `json:"awards"`
		Per    string          `json:"per"`
	}
	if err := strictDecode(capJSON, &c); err != nil {
		return invalid("cap", "%v", err)
	}
	n, err := wholeNumber("cap.awards", c.Awards, 1, 1000)
	if err != nil {
		return err
	}
	switch {
	case c.Per != "month" && c.Per != "term":
		return invalid("cap.per", "%q: month or term", c.Per)
	case c.Per == "month" && r.Repeat == RepeatMonthly:
		return invalid("cap.per", "a monthly rule pays at most once a month already: cap it per term")
	}
	r.Cap = &Cap{Awards: n, Per: c.Per}
	return nil
}

func parseWhere(data json.RawMessage, allowed []string, w *Where) error {
	if len(data) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return invalid("where", "an object of conditions: %v", err)
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return invalid("where."+k, "this count takes no conditions")
			}
			return invalid("where."+k, "unknown field for this count (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
	if err := strictDecode(data, w); err != nil {
		return invalid("where", "%v", err)
	}
	checks := []struct {
		field, value string
		vocab        []string
	}{
		{"role", w.Role, ConnectionRoles}, {"origin", w.Origin, Origins}, {"channel", w.Channel, Channels},
		{"resource", w.Resource, ResourceKinds}, {"other_band", w.OtherBand, Bands},
	}
	for _, c := range checks {
		if c.value != "" && !slices.Contains(c.vocab, c.value) {
			return invalid("where."+c.field, "%q: one of %s", c.value, strings.Join(c.vocab, ", "))
		}
	}
	switch {
	case w.MinMinutes < 0 || w.MinMinutes > 1440:
		return invalid("where.min_minutes", "%d: between 1 and 1440", w.MinMinutes)
	case fields["min_rating"] != nil && (w.MinRating < 1 || w.MinRating > 10):
		return invalid("where.min_rating", "%d: between 1 and 10", w.MinRating)
	case w.CrossClass && w.OtherBand != "":
		return invalid("where.cross_class", "use cross_class or other_band, not both")
	}
	return nil
}

func parseECThreshold(atLeast, upBy json.RawMessage) (decimal.Decimal, decimal.Decimal, error) {
	if (len(atLeast) == 0) == (len(upBy) == 0) {
		return decimal.Zero, decimal.Zero, invalid("at_least", "economic connectedness takes at_least or up_by (from the baseline), exactly one")
	}
	field, data := "at_least", atLeast
	if len(upBy) > 0 {
		field, data = "up_by", upBy
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(data, &n); err != nil {
			return decimal.Zero, decimal.Zero, invalid(field, "a decimal such as \"0.2\"")
		}
		s = n.String()
	}
	d, err := decimal.NewFromString(s)
	if err != nil || !d.IsPositive() || d.GreaterThan(decimal.NewFromInt(2)) || d.Exponent() < -2 {
		return decimal.Zero, decimal.Zero, invalid(field, "%q: economic connectedness runs from 0 to 2; give a positive value with at most 2 places", s)
	}
	if field == "up_by" {
		return decimal.Zero, d, nil
	}
	return d, decimal.Zero, nil
}

func parseAward(data json.RawMessage, currency string) (RuleAward, error) {
	if len(data) == 0 {
		return RuleAward{}, invalid("award", "required: {\"amount\": \"50.00\", \"kind\": \"microgrant\"}")
	}
	var a struct {
		Amount json.RawMessage `json:"amount"`
		Kind   string          `json:"kind"`
	}
	if err := strictDecode(data, &a); err != nil {
		return RuleAward{}, invalid("award", "%v", err)
	}
	var s string
	if err := json.Unmarshal(a.Amount, &s); err != nil {
		return RuleAward{}, invalid("award.amount", "a decimal string such as \"50.00\"")
	}
	amount, err := ledger.ParseAmount(s, currency)
	if err != nil {
		return RuleAward{}, fmt.Errorf("award.amount: %w", err)
	}
	if !slices.Contains(AwardKinds, a.Kind) {
		return RuleAward{}, invalid("award.kind", "%q: one of %s (coach stipends come from a stipend policy, not a rule)",
			a.Kind, strings.Join(AwardKinds, ", "))
	}
	return RuleAward{Amount: amount, Kind: a.Kind, Currency: currency}, nil
}

// wholeNumber reads a JSON integer in [lo, hi].
func wholeNumber(field string, data json.RawMessage, lo, hi int) (int, error) {
	if len(data) == 0 {
		return 0, invalid(field, "required: a whole number from %d to %d", lo, hi)
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return 0, invalid(field, "%s is not a number: write it without quotes", data)
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		return 0, invalid(field, "%s is not a number", data)
	}
	d, err := decimal.NewFromString(n.String())
	if err != nil || !d.IsInteger() {
		return 0, invalid(field, "%s is not a whole number", n)
	}
	if d.LessThan(decimal.NewFromInt(int64(lo))) || d.GreaterThan(decimal.NewFromInt(int64(hi))) {
		return 0, invalid(field, "%s: from %d to %d", n, lo, hi)
	}
	return int(d.IntPart()), nil
}

// strictDecode decodes one JSON object, refusing unknown fields and trailing data.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return errors.New("trailing data after the object")
	}
	return nil
}

// MarshalJSON writes the rule as ParseRule reads it: amounts as strings, thresholds as
// numbers, absent options left out.
func (r Rule) MarshalJSON() ([]byte, error) {
	out := map[string]any{"id": r.ID, "title": r.Title, "count": r.Count, "repeat": r.Repeat,
		"award": r.Award}
	if w := r.Where; w != (Where{}) {
		out["where"] = w
	} else {
		out["where"] = map[string]any{}
	}
	switch {
	case r.Count == CountEconomicConnectedess && r.UpBy.IsPositive():
		out["up_by"] = r.UpBy.String()
	case r.Count == CountEconomicConnectedess:
		out["at_least"] = r.AtLeast.String()
	default:
		out["at_least"] = r.AtLeast.IntPart()
	}
	if r.WithinDays > 0 {
		out["within_days"] = r.WithinDays
	}
	if r.Cap != nil {
		out["cap"] = r.Cap
	}
	return json.Marshal(out)
}

// countedVerified reports whether only verified conversations count.
func (w Where) countedVerified() bool { return w.Verified == nil || *w.Verified }
