package notifier

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier/internal/sms"
)

// OpenText is the SMS for an opened incident, e.g.
//
//	DOWN ACME mail round trip: no return from 2 of 3 sites; retest failed. Since 12:04 UTC, sites eu-west, us-east. Incident #inc-rtkkowtutap5
//
// name is the check's name. The text fits one SMS segment (160 GSM-7
// characters, 70 when the name needs UCS-2): the check name is shortened
// first (to 16 characters), then the reason (to 24), the site list becomes
// a count, the reason and then the sites are dropped, and last the name is
// cut to 4 characters; the incident id is never cut. Shortening cuts at a
// word boundary (see truncate).
func OpenText(ev events.IncidentOpen, name string) string {
	label := "DOWN"
	if ev.Severity == events.SeverityWarning {
		label = warningLabel(ev.Sites)
	}
	since := ev.Since
	if since.IsZero() {
		since = ev.OpenedAt
	}
	var sites []string
	for _, v := range ev.Sites {
		sites = append(sites, v.Site)
	}
	sort.Strings(sites)
	siteList, siteCount := "", ""
	switch len(sites) {
	case 0:
	case 1:
		siteList, siteCount = "site "+sites[0], "1 site"
	default:
		siteList, siteCount = "sites "+strings.Join(sites, ", "), fmt.Sprintf("%d sites", len(sites))
	}
	id := ShortIncidentID(ev.IncidentID)
	render := func(f []string) string { // name, reason, sites
		s := label + " " + f[0]
		if f[1] != "" {
			s += ": " + f[1]
		}
		s = stop(s) + " Since " + since.UTC().Format("15:04") + " UTC"
		if f[2] != "" {
			s += ", " + f[2]
		}
		return s + ". Incident #" + id
	}
	return fit(render, []string{oneLine(name), gsmOnly(strings.TrimRight(oneLine(ev.Reason), ". ")), siteList}, []step{
		{field: 0, min: 16},
		{field: 1, min: 24},
		{field: 2, swap: true, with: siteCount},
		{field: 1, swap: true},
		{field: 2, swap: true},
		{field: 0, min: 4},
	})
}

// ResolvedText is the SMS for a resolved incident, e.g.
//
//	RESOLVED ACME mail round trip: OK again after 1h25m (since 12:04 UTC). Incident #inc-rtkkowtutap5
//
// or, when the check was removed from the check file while the incident
// was open (events.ResolvedCheckRemoved: the service did not recover,
// monitoring stopped),
//
//	CLOSED ACME mail round trip: check removed after 1h25m (since 12:04 UTC). Incident #inc-rtkkowtutap5
//
// The duration runs from the first failing attempt (Since) to ResolvedAt.
// It fits one segment like OpenText: the name is shortened first.
func ResolvedText(ev events.IncidentResolved, name string) string {
	since := ev.Since
	if since.IsZero() {
		since = ev.OpenedAt
	}
	dur := Duration(ev.ResolvedAt.Sub(since))
	id := ShortIncidentID(ev.IncidentID)
	render := func(f []string) string { // name, since
		s := "RESOLVED " + f[0] + ": OK again after " + dur
		if ev.Reason == events.ResolvedCheckRemoved {
			s = "CLOSED " + f[0] + ": check removed after " + dur
		}
		if f[1] != "" {
			s += " (" + f[1] + ")"
		}
		return s + ". Incident #" + id
	}
	return fit(render, []string{oneLine(name), "since " + since.UTC().Format("15:04") + " UTC"}, []step{
		{field: 0, min: 16},
		{field: 1, swap: true},
		{field: 0, min: 4},
	})
}

// ShortIncidentID is the incident id as shown in an SMS. The evaluator's
// ids ("inc-" and 12 base32 characters, e.g. inc-rtkkowtutap5) and any other
// id are shown whole; only a 24-character random id of the events.NewTestID
// form is cut to its first 8 characters (40 bits, enough to find it by
// prefix).
func ShortIncidentID(id string) string {
	if events.ValidTestID(id) {
		return id[:8]
	}
	return id
}

// Duration formats d for a person: "45s", "25m", "1h25m", "2h", "3d4h".
func Duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if h == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, h)
}

// warningLabel names a warning incident after its sites' verdicts.
func warningLabel(votes []events.SiteVote) string {
	label := ""
	for _, v := range votes {
		l := strings.ToUpper(v.Verdict)
		if l != "SLOW" && l != "DEGRADED" {
			return "WARNING"
		}
		if label != "" && label != l {
			return "WARNING"
		}
		label = l
	}
	if label == "" {
		return "WARNING"
	}
	return label
}

// step shortens one field of a text: truncate it down to min characters
// or, with swap, replace it by with (when that is shorter; "" drops it).
type step struct {
	field int
	min   int
	swap  bool
	with  string
}

// fit renders fields and, while the text needs more than one segment,
// applies the steps in order, each only as far as needed. If every step is
// spent the text is returned as is (the provider splits it).
func fit(render func([]string) string, fields []string, steps []step) string {
	ok := func() bool { return sms.Fits(render(fields)) }
	for _, s := range steps {
		if ok() {
			break
		}
		cur := fields[s.field]
		if s.swap {
			if len([]rune(s.with)) < len([]rune(cur)) {
				fields[s.field] = s.with
			}
			continue
		}
		for n := len([]rune(cur)) - 1; n >= s.min && !ok(); n-- {
			fields[s.field] = truncate(cur, n)
		}
	}
	return render(fields)
}

// truncate shortens s to at most n characters. It cuts at the last word
// boundary (space) that keeps at least half of the room, else inside the
// word, drops the separators left at the end (spaces and , ; : - – —) and
// marks the cut with "..." — or with "…" when s needs UCS-2 anyway (one
// character instead of three; in a GSM-7 text "…" would turn the whole SMS
// into UCS-2 and halve its room). Below 5 characters it cuts without a
// mark.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	if n <= 4 {
		return string(r[:n])
	}
	mark := "..."
	if sms.Analyze(s).Encoding == sms.UCS2 {
		mark = "…"
	}
	room := n - len([]rune(mark))
	cut := room
	if r[room] != ' ' { // the cut falls inside a word
		for i := room - 1; i >= (room+1)/2; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
	}
	return strings.TrimRight(string(r[:cut]), " ,;:-–—") + mark
}

// stop ends a sentence with a period, unless it ends with one already (a
// name shortened to "..." or "…").
func stop(s string) string {
	if strings.HasSuffix(s, ".") || strings.HasSuffix(s, "…") {
		return s
	}
	return s + "."
}

// oneLine collapses every run of white space (including line breaks) into
// one space.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// gsmOnly keeps machine-made text (reasons quote SMTP replies) in the GSM-7
// alphabet, so that a typographic quote in a server's reply cannot halve
// the room of the whole message: common look-alikes are mapped, anything
// else becomes '?'.
func gsmOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case sms.Septets(r) > 0:
			b.WriteRune(r)
		case r == '‘' || r == '’' || r == '‚' || r == '′' || r == '`' || r == '´':
			b.WriteByte('\'')
		case r == '“' || r == '”' || r == '„' || r == '″':
			b.WriteByte('"')
		case r == '–' || r == '—' || r == '‐' || r == '−':
			b.WriteByte('-')
		case r == '…':
			b.WriteString("...")
		case r == '\t':
			b.WriteByte(' ')
		case r == 'ç':
			b.WriteByte('c')
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}
