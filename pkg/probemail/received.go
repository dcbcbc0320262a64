package probemail

import (
	"net/mail"
	"strings"

	"github.com/emailscout/emailscout/pkg/events"
)

// maxHops bounds the Received: fields read from one message.
const maxHops = 30

// Hops reads the Received: fields of a message (RFC 5321 section 4.4:
// "from X by Y with P id Q for <a>; date") into hops, oldest first (a
// header lists the newest first), with the delay from the previous hop's
// date. The dates are remote clocks: the delays are informational and may
// even be negative. A field that does not parse keeps what could be read;
// at most 30 fields are read.
func Hops(received []string) []events.Hop {
	n := min(len(received), maxHops)
	hops := make([]events.Hop, 0, n)
	for i := n - 1; i >= 0; i-- {
		hops = append(hops, parseReceived(unfold(received[i])))
	}
	for i := 1; i < len(hops); i++ {
		if !hops[i].At.IsZero() && !hops[i-1].At.IsZero() {
			d := hops[i].At.Sub(hops[i-1].At).Milliseconds()
			hops[i].DelayMS = &d
		}
	}
	return hops
}

// parseReceived reads one Received: value.
func parseReceived(v string) events.Hop {
	var h events.Hop
	clauses, date, ok := cutLast(v, ";")
	if ok {
		if t, err := mail.ParseDate(strings.TrimSpace(stripComment(date))); err == nil {
			h.At = t.UTC()
		}
	}
	words := strings.Fields(stripComment(clauses))
	for i := 0; i+1 < len(words); i++ {
		val := strings.Trim(words[i+1], "<>;,")
		switch strings.ToLower(words[i]) {
		case "from":
			h.From = val
		case "by":
			h.By = val
		case "with":
			h.With = val
		case "id":
			h.ID = val
		default:
			continue
		}
		i++
	}
	return h
}

// cutLast cuts s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// stripComment removes parenthesised comments (RFC 5322 section 3.2.2),
// nested ones too.
func stripComment(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}
