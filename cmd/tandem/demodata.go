package main

import (
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// The demo's people and the plan of what happens to them. Everything here is data: the plan
// is drawn from seeded generators relative to the day the demo runs, so two runs on the same
// day load the same program (see planDemo); demo.go then records it through the stores, as
// real use would.

// demoSeed seeds the demo's generator: change it and the demo tells another story.
const demoSeed = 2026

// demoRules are DOMAIN.md's example milestone rules that Tandem's rule language expresses.
var demoRules = []string{
	`{"id": "mentor-4", "title": "Met your mentor 4 times within 60 days", "count": "conversations",
	  "where": {"role": "mentor", "verified": true}, "at_least": 4, "within_days": 60,
	  "award": {"amount": "50.00", "kind": "microgrant"}, "repeat": "once"}`,
	`{"id": "well-resourced", "title": "A conversation that carried a resource (at most $90 a month)", "count": "well_resourced_conversations",
	  "at_least": 1, "award": {"amount": "30.00", "kind": "microgrant"}, "repeat": "each", "cap": {"awards": 3, "per": "month"}}`,
	`{"id": "bridge", "title": "A new high-band connection and a conversation with them (at most 3 a term)", "count": "connections",
	  "where": {"other_band": "high", "with_conversation": true}, "at_least": 1,
	  "award": {"amount": "40.00", "kind": "microgrant"}, "repeat": "each", "cap": {"awards": 3, "per": "term"}}`,
	`{"id": "ec-up", "title": "Economic connectedness up 0.2 from your baseline", "count": "economic_connectedness",
	  "up_by": "0.2", "award": {"amount": "75.00", "kind": "microgrant"}, "repeat": "once"}`,
	`{"id": "rated-3", "title": "Mentor pair rated 7 or more by both sides for 3 months in a row", "count": "rated_months",
	  "where": {"role": "mentor", "min_rating": 7, "consecutive": true}, "at_least": 3,
	  "award": {"amount": "25.00", "kind": "microgrant"}, "repeat": "once"}`,
}

// The program's money, from DOMAIN.md: awards within 100.00 are approved automatically, two
// admins approve from 500.00, and a person receives at most 1,000.00 a month and 4,000.00 a
// year (about UpTogether's $3,200 over two years, plus milestone awards). A failed payout not
// fixed within a week is forfeited (UpTogether). Coaches earn 20.00 a verified session: two
// sessions a mentee a month make DOMAIN.md's $40 per mentee-month.
const (
	demoFunding         = "20000.00"
	demoAutoApprove     = "100.00"
	demoDualControl     = "500.00"
	demoMonthlyCap      = "1000.00"
	demoYearlyCap       = "4000.00"
	demoRemediationDays = 7
	demoStipendRate     = "20.00"
)

// demoPerson is someone the demo records. About says who they are: for readers of this
// file, and in the admins' token names.
type demoPerson struct {
	key, name, about string // key: the person's id without the demo's prefix
	interests        []string
	band             string // "" for unknown
	w9               bool   // coaches: a W-9 on file
}

// demoParticipant is one of the 40 participants.
type demoParticipant struct {
	demoPerson
	birth    time.Time
	guardian string // who signs the consent of a minor
	coach    int    // index into demoPlan.coaches
	tier     int    // engagement: tierLow, tierMid, tierHigh
	bank     string // payout destination (sandbox)
}

const (
	tierLow = iota
	tierMid
	tierHigh
)

// demoConn is a connection to record; other is a person's key.
type demoConn struct {
	participant int
	other       string
	role        string
	origin      string
	started     time.Time
	byCoach     bool // recorded by the participant's coach, else by the program lead
}

// Who logs or reviews a conversation.
const (
	byNobody = iota
	byParticipant
	byCoach
	byLead
)

// demoConv is a conversation to log on conns[conn].
type demoConv struct {
	conn      int
	at        time.Time
	channel   string
	minutes   int
	resources []string
	reporter  int  // byParticipant or byCoach
	verified  bool // verified as it is logged (by a coach who is not on the connection)
	review    int  // who verifies it later: byNobody, byCoach or byLead
	retract   string
	note      string
}

// demoRating is one side's rating of a mentor connection for a month.
type demoRating struct {
	conn          int
	month         string
	byParticipant bool
	score         int
}

// demoPlan is the whole story.
type demoPlan struct {
	now, start         time.Time // start: the program's first day
	consentOn          time.Time // when this year's people signed their consent
	coaches, alumni    []demoPerson
	mentors, pros      []demoPerson
	participants       []demoParticipant
	conns              []demoConn
	convs              []demoConv
	ratings            []demoRating
	fairConns          []demoConn  // today's career fair, recorded after the history
	fairConvs          []demoConv  // on fairConns
	proOf              map[int]int // participant → the professional they know
	lead, ops, finance demoPerson  // the admins
}

// The stories the demo tells about particular participants (keys).
const (
	storyMaya     = "maya-torres"    // signs in as the participant: 3 of 4 mentor talks verified
	storyRent     = "jamal-robinson" // an emergency grant above the dual-control threshold
	storyLaptop   = "sofia-rossi"    // a grant rejected with a reason
	storyLicence  = "carlos-mendoza" // a grant waiting for approval
	storyTransit  = "priscila-souza" // a payout that fails, then is paid to her new account
	storyFrozen   = "tyler-jackson"  // a payout that fails and waits for a new destination
	storyDupe     = "diego-morales"  // logs a conversation twice; his coach retracts one
	storyCoach    = "lee-okafor"     // signs in as the coach
	storyNoW9     = "kim-dao"        // a coach whose stipend is held: no W-9 yet
	demoFairLabel = "Riverside career fair"
)

// demoParticipantNames: 40 participants with their interests (sectors, for matching).
var demoParticipantNames = []struct{ name, interests string }{
	{"Maya Torres", "nursing,biology"}, {"Jon Reyes", "engineering,automotive"}, {"Aaliyah Carter", "law,public-service"},
	{"Diego Morales", "software,music"}, {"Fatima Hassan", "healthcare,biology"}, {"Tyrell Washington", "finance,business"},
	{"Sofia Rossi", "design,media"}, {"Kwame Asante", "engineering,construction"}, {"Lily Tran", "education,music"},
	{"Mateo Vargas", "skilled-trades,electrical"}, {"Zoe Campbell", "media,design"}, {"Ibrahim Diallo", "software,engineering"},
	{"Hannah Schultz", "biology,healthcare"}, {"Jamal Robinson", "business,hospitality"}, {"Priscila Souza", "nursing,healthcare"},
	{"Ethan Park", "finance,law"}, {"Mariana López", "education,public-service"}, {"Noah Friedman", "construction,skilled-trades"},
	{"Ayesha Khan", "law,business"}, {"Carlos Mendoza", "automotive,skilled-trades"}, {"Jade Williams", "healthcare,public-service"},
	{"Oluwaseun Adeyemi", "software,finance"}, {"Emily Novak", "design,construction"}, {"Darnell Jenkins", "hospitality,business"},
	{"Valentina Cruz", "biology,education"}, {"Samir Patel", "engineering,software"}, {"Keisha Brown", "law,media"},
	{"Andrés Silva", "electrical,engineering"}, {"Chloe Martin", "nursing,education"}, {"Yusuf Demir", "finance,business"},
	{"Rosa Jiménez", "hospitality,healthcare"}, {"Tyler Jackson", "automotive,engineering"}, {"Mei Lin", "design,software"},
	{"Gabriel Okoro", "public-service,law"}, {"Destiny Harris", "education,healthcare"}, {"Ali Rezaei", "construction,engineering"},
	{"Naomi Berger", "media,music"}, {"José Ramírez", "skilled-trades,construction"}, {"Amina Bello", "nursing,biology"},
	{"Lucas Moreau", "finance,software"},
}

// demoCoaches were participants of the earlier cohort and now coach (near-peer conversion).
var demoCoaches = []demoPerson{
	{key: "lee-okafor", name: "Lee Okafor", about: "2025 cohort; studies nursing at Riverside CC", interests: []string{"nursing", "healthcare"}, band: "low", w9: true},
	{key: "jasmine-reyes", name: "Jasmine Reyes", about: "2025 cohort; electrician apprentice", interests: []string{"electrical", "skilled-trades"}, band: "low", w9: true},
	{key: "andre-baptiste", name: "Andre Baptiste", about: "2025 cohort; studies accounting", interests: []string{"finance", "business"}, band: "low", w9: true},
	{key: "kim-dao", name: "Kim Dao", about: "2025 cohort; studies graphic design", interests: []string{"design", "media"}, band: "low"},
}

// demoAlumni are the rest of the earlier cohort; some are peers of this year's participants.
var demoAlumni = []demoPerson{
	{key: "tomas-ruiz", name: "Tomás Ruiz", band: "low"}, {key: "brianna-hall", name: "Brianna Hall", band: "low"},
	{key: "devon-price", name: "Devon Price", band: "low"}, {key: "amara-obi", name: "Amara Obi", band: "low"},
	{key: "luis-fernandez", name: "Luis Fernández", band: "low"}, {key: "hana-sato", name: "Hana Sato", band: "high"},
	{key: "marcus-bell", name: "Marcus Bell", band: "low"}, {key: "grace-kim", name: "Grace Kim", band: "low"},
}

// demoMentors: volunteers matched on shared interests (iMentor), mostly high-band.
var demoMentors = []demoPerson{
	{key: "ruth-feld", name: "Ruth Feld", about: "nurse practitioner", interests: []string{"nursing", "healthcare", "biology"}, band: "high"},
	{key: "david-chen", name: "David Chen", about: "software engineer", interests: []string{"software", "engineering"}, band: "high"},
	{key: "patricia-alvarez", name: "Patricia Alvarez", about: "public defender", interests: []string{"law", "public-service"}, band: "high"},
	{key: "samuel-osei", name: "Samuel Osei", about: "credit union loan officer", interests: []string{"finance", "business"}, band: "high"},
	{key: "helen-brooks", name: "Helen Brooks", about: "high-school teacher", interests: []string{"education", "media", "music"}, band: "high"},
	{key: "raymond-diaz", name: "Raymond Díaz", about: "union electrician", interests: []string{"electrical", "skilled-trades", "construction"}, band: "low"},
	{key: "karen-walsh", name: "Karen Walsh", about: "UX designer", interests: []string{"design", "media"}, band: "high"},
	{key: "victor-nguyen", name: "Victor Nguyen", about: "mechanical engineer", interests: []string{"engineering", "automotive"}, band: "high"},
	{key: "angela-moore", name: "Angela Moore", about: "hospital social worker", interests: []string{"healthcare", "public-service"}, band: "high"},
	{key: "farid-rahman", name: "Farid Rahman", about: "restaurant owner", interests: []string{"hospitality", "business"}, band: "low"},
	{key: "lucia-romano", name: "Lucia Romano", about: "music teacher", interests: []string{"music", "education"}, band: "high"},
	{key: "james-whitaker", name: "James Whitaker", about: "corporate lawyer", interests: []string{"law", "finance"}, band: "high"},
	{key: "nia-johnson", name: "Nia Johnson", about: "community organiser", interests: []string{"public-service", "education"}, band: "low"},
	{key: "ben-adler", name: "Ben Adler", about: "product manager", interests: []string{"software", "design"}, band: "high"},
	{key: "carmen-ortiz", name: "Carmen Ortiz", about: "lab scientist", interests: []string{"biology", "healthcare", "nursing"}, band: "high"},
	{key: "gloria-mensah", name: "Gloria Mensah", about: "construction project manager", interests: []string{"construction", "skilled-trades", "automotive"}, band: "high"},
}

// demoPros: professionals a coach or mentor introduces, and who came to the career fair.
var demoPros = []demoPerson{
	{key: "omar-haddad", name: "Omar Haddad", about: "software engineer", interests: []string{"software", "engineering"}, band: "high"},
	{key: "sandra-lee", name: "Sandra Lee", about: "recruiter, Riverside Regional Hospital", interests: []string{"healthcare", "nursing", "biology"}, band: "high"},
	{key: "miguel-santos", name: "Miguel Santos", about: "apprenticeship coordinator, IBEW local", interests: []string{"electrical", "skilled-trades", "construction"}, band: "high"},
	{key: "rebecca-stone", name: "Rebecca Stone", about: "bank branch manager", interests: []string{"finance", "business", "hospitality"}, band: "high"},
	{key: "thomas-grant", name: "Thomas Grant", about: "architect", interests: []string{"design", "construction", "engineering"}, band: "high"},
	{key: "yvonne-clarke", name: "Yvonne Clarke", about: "paralegal", interests: []string{"law", "public-service"}, band: "low"},
	{key: "ahmed-yusuf", name: "Ahmed Yusuf", about: "lab technician", interests: []string{"biology", "healthcare"}, band: "low"},
	{key: "julia-park", name: "Julia Park", about: "college admissions officer", interests: []string{"education", "public-service", "media", "music"}, band: "high"},
	{key: "kevin-obrien", name: "Kevin O'Brien", about: "auto shop owner", interests: []string{"automotive", "skilled-trades"}, band: "high"},
	{key: "leah-goldberg", name: "Leah Goldberg", about: "hotel operations manager", interests: []string{"hospitality", "business", "design"}, band: "high"},
}

// The admins: each holds a token with their person, so four eyes can be shown.
var (
	demoLead    = demoPerson{key: "dana-whitfield", name: "Dana Whitfield", about: "program lead"}
	demoOps     = demoPerson{key: "eli-navarro", name: "Eli Navarro", about: "operations"}
	demoFinance = demoPerson{key: "priya-raman", name: "Priya Raman", about: "finance"}
)

var demoGuardians = []string{"mother", "father", "aunt", "grandmother", "legal guardian"}

// slug turns a name into an id: lower case ASCII letters, digits and dashes.
func slug(name string) string {
	r := strings.NewReplacer("á", "a", "é", "e", "í", "i", "ó", "o", "ú", "u", "ñ", "n", "'", "", " ", "-")
	var b strings.Builder
	for _, c := range r.Replace(strings.ToLower(name)) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// firstName is the first word of a name.
func firstName(name string) string { f, _, _ := strings.Cut(name, " "); return f }

// planDemo draws the demo's story for the program year around now. Every draw depends on
// the day only: each participant has a generator of their own, seeded with (demoSeed, their
// index), every value is drawn whether or not it is used, and what happened is filtered
// afterwards by the day (conversations before today; the career fair today). Two runs on
// the same day therefore plan the same program; only the career fair's time follows the
// clock (it ended a little before the demo runs).
func planDemo(now time.Time) *demoPlan {
	now = now.UTC()
	thisMonth := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	pl := &demoPlan{now: now, start: thisMonth.AddDate(0, -3, 0), coaches: demoCoaches, alumni: demoAlumni,
		mentors: demoMentors, pros: demoPros, proOf: map[int]int{},
		lead: demoLead, ops: demoOps, finance: demoFinance}
	pl.consentOn = pl.start.AddDate(0, 0, -5)
	today := now.Truncate(24 * time.Hour)
	day := func(d int) time.Time { return pl.start.AddDate(0, 0, d) }
	// rng is the generator in use: the cohort's, then each participant's, then the fair's.
	rng := demoRand(0)
	// at is a moment of day between 9:00 and 20:00; ok is false unless its day has ended
	// (today's conversations are left out, whatever the hour).
	at := func(d time.Time) (time.Time, bool) {
		t := d.Truncate(24 * time.Hour).Add(9*time.Hour + time.Duration(rng.IntN(11*60))*time.Minute)
		return t, t.Before(today)
	}
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	chance := func(p float64) bool { return rng.Float64() < p }

	// Participants: 16 to 24 years old (Backrs takes 15 to 24), mostly low-band, a few minors.
	for i, pn := range demoParticipantNames {
		p := demoParticipant{demoPerson: demoPerson{key: slug(pn.name), name: pn.name, interests: strings.Split(pn.interests, ",")}}
		age := 18 + rng.IntN(7)
		if chance(0.15) {
			age = 16 + rng.IntN(2)
		}
		p.birth = today.AddDate(-age, -rng.IntN(12), -rng.IntN(28))
		if p.birth.AddDate(18, 0, 0).After(pl.consentOn) {
			p.guardian = pick(demoGuardians...)
		}
		p.band = "low"
		if rng.IntN(20) >= 17 {
			p.band = "high"
		}
		switch t := rng.IntN(10); {
		case t < 3:
			p.tier = tierHigh
		case t < 8:
			p.tier = tierMid
		}
		p.coach = i % len(demoCoaches)
		p.bank = "sandbox:riverside-cu-" + p.key
		switch p.key {
		case storyMaya:
			p.band, p.tier = "low", tierMid
		case storyRent:
			p.tier = tierLow // few awards: room under the monthly cap for the grant
		case storyTransit, storyFrozen:
			p.tier = tierMid
		}
		pl.participants = append(pl.participants, p)
	}
	// Two participants' bands are not known yet: their intake forms are missing.
	pl.participants[17].band, pl.participants[33].band = "", ""

	conn := func(c demoConn) int { pl.conns = append(pl.conns, c); return len(pl.conns) - 1 }
	conv := func(c demoConv) { pl.convs = append(pl.convs, c) }
	mentorLoad := map[int]int{}
	for i, p := range pl.participants {
		rng = demoRand(1 + i)
		coach := pl.coaches[p.coach]
		// The near-peer coach: matched in the first week.
		cc := conn(demoConn{participant: i, other: coach.key, role: "near_peer_coach", origin: "matched", started: day(rng.IntN(7))})
		for m := 0; m < 4; m++ {
			monthStart := pl.start.AddDate(0, m, 0)
			n := []int{rng.IntN(2), 1, 2}[p.tier] // sessions this month
			for range n {
				d := monthStart.AddDate(0, 0, rng.IntN(28))
				if d.Before(pl.conns[cc].started.AddDate(0, 0, 1)) {
					d = pl.conns[cc].started.AddDate(0, 0, 1)
				}
				t, ok := at(d)
				var res []string
				if chance(0.2) {
					res = []string{pick("advice", "information", "scholarship_lead")}
				}
				checked, channel, minutes := chance(0.97), pick("in_person", "in_person", "video"), 30+5*rng.IntN(7)
				if !ok {
					continue
				}
				review := byNobody
				if t.Before(today.AddDate(0, 0, -7)) && checked {
					review = byLead // the coach is on the connection: the program lead verifies
				}
				conv(demoConv{conn: cc, at: t, channel: channel, minutes: minutes, resources: res, reporter: byCoach, review: review})
			}
		}
		// Peers: another participant of the same coach, and sometimes an alumnus.
		peers := []string{pl.participantKey((i + len(demoCoaches)) % len(demoParticipantNames))}
		if chance(0.35) {
			peers = append(peers, pl.alumni[rng.IntN(len(pl.alumni))].key)
		}
		for _, other := range peers {
			pc := conn(demoConn{participant: i, other: other, role: "peer", origin: "self_reported", started: day(rng.IntN(30)), byCoach: true})
			for k := range 1 + rng.IntN(1+p.tier) {
				t, ok := at(pl.conns[pc].started.AddDate(0, 0, 2+k*15+rng.IntN(10)))
				var res []string
				if chance(0.25) {
					res = []string{"information"}
				}
				checked, channel, minutes := chance(0.6), pick("message", "message", "in_person", "phone"), 15+5*rng.IntN(6)
				if !ok {
					continue
				}
				review := byNobody
				if t.Before(today.AddDate(0, 0, -5)) && checked {
					review = byCoach
				}
				conv(demoConv{conn: pc, at: t, channel: channel, minutes: minutes, resources: res, reporter: byParticipant, review: review})
			}
		}
		// The mentor: matched on a shared interest in the first weeks, at most 3 mentees each.
		mi := pl.matchMentor(p, mentorLoad, rng)
		if p.key == storyMaya {
			mi = 0 // Ruth Feld, a nurse practitioner: Maya wants to study nursing
		}
		mentorLoad[mi]++
		started := day(7 + rng.IntN(18))
		if p.key == storyMaya {
			started = today.AddDate(0, 0, -45)
		}
		mc := conn(demoConn{participant: i, other: pl.mentors[mi].key, role: "mentor", origin: "matched", started: started})
		var talks []time.Time
		if p.key == storyMaya {
			// Three talks verified by her coach; the fourth, three days ago, waits for him.
			for _, d := range []int{-40, -30, -18, -3} {
				t, _ := at(today.AddDate(0, 0, d))
				talks = append(talks, t)
			}
		} else {
			gap := [][2]int{{28, 16}, {18, 8}, {12, 6}}[p.tier] // days between talks: at least, plus up to
			for d := started.AddDate(0, 0, 2+rng.IntN(5)); d.Before(today); d = d.AddDate(0, 0, gap[0]+rng.IntN(gap[1])) {
				t, _ := at(d)
				talks = append(talks, t)
			}
		}
		verifyP := []float64{0.7, 0.9, 0.95}[p.tier]
		for k, t := range talks {
			var res []string
			if chance(0.3) {
				res = []string{pick("advice", "advice", "information", "introduction", "referral", "scholarship_lead")}
			}
			checked, channel, minutes := chance(verifyP), pick("video", "in_person", "phone"), 30+15*rng.IntN(3)
			review := byNobody
			if t.Before(today.AddDate(0, 0, -5)) && (p.key == storyMaya || checked) {
				review = byCoach
			}
			if p.key == storyMaya && k == 1 {
				res = []string{"advice"}
			}
			conv(demoConv{conn: mc, at: t, channel: channel, minutes: minutes, resources: res, reporter: byParticipant, review: review})
		}
		if p.key == storyDupe && len(talks) > 0 {
			conv(demoConv{conn: mc, at: talks[len(talks)-1].Add(time.Minute), channel: "video", minutes: 45, reporter: byParticipant,
				retract: "logged twice: the same talk as the one before"})
		}
		// Monthly pair ratings (iMentor) for the months that have ended; the least engaged
		// do not answer the survey.
		for m := time.Date(started.Year(), started.Month(), 1, 0, 0, 0, 0, time.UTC); m.Before(pl.start.AddDate(0, 3, 0)) && p.tier != tierLow; m = m.AddDate(0, 1, 0) {
			lo := []int{5, 6, 7}[p.tier]
			pl.ratings = append(pl.ratings, demoRating{conn: mc, month: m.Format("2006-01"), byParticipant: true, score: lo + rng.IntN(11-lo)},
				demoRating{conn: mc, month: m.Format("2006-01"), score: lo + rng.IntN(11-lo)})
		}
		// A professional, introduced by the coach or mentor in the second or third month.
		if chance([]float64{0.1, 0.35, 0.7}[p.tier]) && p.key != storyMaya {
			pi := pl.matchPro(p, rng)
			started := day(35 + rng.IntN(55))
			if started.After(today.AddDate(0, 0, -4)) {
				started = today.AddDate(0, 0, -4)
			}
			pl.proOf[i] = pi
			pc := conn(demoConn{participant: i, other: pl.pros[pi].key, role: "professional", origin: "matched", started: started, byCoach: true})
			for k := range 1 + rng.IntN(2) {
				t, ok := at(started.AddDate(0, 0, k*(7+rng.IntN(14))))
				res := []string{pick("introduction", "referral", "internship", "job_offer", "scholarship_lead")}
				channel, minutes := pick("in_person", "video"), 30+15*rng.IntN(2)
				if !ok {
					continue
				}
				conv(demoConv{conn: pc, at: t, channel: channel, minutes: minutes, resources: res,
					reporter: byCoach, verified: true, note: "met with " + firstName(pl.pros[pi].name)})
			}
		}
	}
	// Today's career fair: eight participants without a professional meet one; the coach who
	// brought them logs it. A new high-band connection raises their economic connectedness.
	rng = demoRand(1 + len(pl.participants))
	for i, p := range pl.participants {
		if _, ok := pl.proOf[i]; ok || len(pl.fairConns) == 8 || p.tier == tierLow {
			continue
		}
		pi := pl.matchPro(p, rng)
		if p.key == storyMaya {
			pi = 1 // Sandra Lee, the hospital's recruiter
		}
		pl.proOf[i] = pi
		pl.fairConns = append(pl.fairConns, demoConn{participant: i, other: pl.pros[pi].key, role: "professional", origin: "matched",
			started: today, byCoach: true})
		t := now.Add(-time.Duration(10+rng.IntN(110)) * time.Minute)
		if t.Before(today) {
			t = today // a demo run just after midnight: the fair was today, and not in the future
		}
		pl.fairConvs = append(pl.fairConvs, demoConv{conn: len(pl.fairConns) - 1, at: t, channel: "in_person", minutes: 20,
			resources: []string{"introduction"}, reporter: byCoach, verified: true, note: demoFairLabel})
	}
	return pl
}

// demoRand is the demo's generator number stream: 0 for the cohort, 1+i for participant i,
// and one more for the career fair.
func demoRand(stream int) *rand.Rand { return rand.New(rand.NewPCG(demoSeed, uint64(stream))) }

func (pl *demoPlan) participantKey(i int) string { return pl.participants[i].key }

// participantIndex is the index of the participant with key, or -1.
func (pl *demoPlan) participantIndex(key string) int {
	return slices.IndexFunc(pl.participants, func(p demoParticipant) bool { return p.key == key })
}

// matchMentor picks a mentor sharing an interest with p (iMentor matches on interests) who
// has fewer than 3 mentees, else the least loaded.
func (pl *demoPlan) matchMentor(p demoParticipant, load map[int]int, rng *rand.Rand) int {
	var shared, free []int
	for i, m := range pl.mentors {
		if load[i] >= 3 {
			continue
		}
		free = append(free, i)
		for _, x := range p.interests {
			if slices.Contains(m.interests, x) {
				shared = append(shared, i)
				break
			}
		}
	}
	if len(shared) > 0 {
		return shared[rng.IntN(len(shared))]
	}
	return free[rng.IntN(len(free))]
}

// matchPro picks a professional of one of p's sectors.
func (pl *demoPlan) matchPro(p demoParticipant, rng *rand.Rand) int {
	var shared []int
	for i, pr := range pl.pros {
		for _, x := range p.interests {
			if slices.Contains(pr.interests, x) {
				shared = append(shared, i)
				break
			}
		}
	}
	if len(shared) == 0 {
		return rng.IntN(len(pl.pros))
	}
	return shared[rng.IntN(len(shared))]
}
