package notifier

import (
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier/internal/sms"
)

func TestOpenText(t *testing.T) {
	base := events.IncidentOpen{
		IncidentID: "ab2cd3efgh4ijk5lmn6opq7r", Severity: events.SeverityCritical,
		Since: time.Date(2026, 11, 29, 12, 4, 59, 0, time.FixedZone("CET", 3600)), OpenedAt: t0,
		Reason: "no return from 2 of 3 sites; retest failed",
		Sites:  []events.SiteVote{{Site: "us-east", Verdict: "down"}, {Site: "eu-west", Verdict: "down"}},
	}
	with := func(f func(*events.IncidentOpen)) events.IncidentOpen {
		ev := base
		f(&ev)
		return ev
	}
	cases := []struct {
		name  string
		ev    events.IncidentOpen
		check string
		want  string
		enc   sms.Encoding
	}{
		{"critical", base, "ACME mail round trip",
			"DOWN ACME mail round trip: no return from 2 of 3 sites; retest failed. Since 11:04 UTC, sites eu-west, us-east. Incident #ab2cd3ef", sms.GSM7},
		{"slow warning", with(func(e *events.IncidentOpen) {
			e.Severity, e.Reason = events.SeverityWarning, "returns after 2m from 2 of 3 sites"
			e.Sites = []events.SiteVote{{Site: "eu-west", Verdict: "slow"}, {Site: "us-east", Verdict: "slow"}}
		}), "ACME", "SLOW ACME: returns after 2m from 2 of 3 sites. Since 11:04 UTC, sites eu-west, us-east. Incident #ab2cd3ef", sms.GSM7},
		{"mixed warning, one site, reason with a line break and a period", with(func(e *events.IncidentOpen) {
			e.Severity, e.Reason = events.SeverityWarning, "certificate expires\n in 5 days."
			e.Sites = []events.SiteVote{{Site: "eu-west", Verdict: "degraded"}}
		}), "ACME", "DEGRADED ACME: certificate expires in 5 days. Since 11:04 UTC, site eu-west. Incident #ab2cd3ef", sms.GSM7},
		{"evaluator's incident id is shown whole", with(func(e *events.IncidentOpen) { e.IncidentID = "inc-rtkkowtutap5" }), "ACME mail round trip",
			"DOWN ACME mail round trip: no return from 2 of 3 sites; retest failed. Since 11:04 UTC, sites eu-west, us-east. Incident #inc-rtkkowtutap5", sms.GSM7},
		{"non-random incident id is kept whole", with(func(e *events.IncidentOpen) { e.IncidentID = "acme-2026-11-29-1204" }), "ACME",
			"DOWN ACME: no return from 2 of 3 sites; retest failed. Since 11:04 UTC, sites eu-west, us-east. Incident #acme-2026-11-29-1204", sms.GSM7},
		// A long name is shortened first, and only as far as needed.
		{"long name", base, "Example Corporation International Holdings mail round trip from every region",
			"DOWN Example Corporation International Holdings mail...: no return from 2 of 3 sites; retest failed. Since 11:04 UTC, sites eu-west, us-east. Incident #ab2cd3ef", sms.GSM7},
		// A typographic quote in an SMTP reply must not turn the text into UCS-2.
		{"reason with typographic quotes", with(func(e *events.IncidentOpen) {
			e.Reason = "550 “mailbox unavailable” – user’s quota exceeded…"
		}), "ACME",
			"DOWN ACME: 550 \"mailbox unavailable\" - user's quota exceeded... Since 11:04 UTC, sites eu-west, us-east. Incident #ab2cd3ef", sms.GSM7},
		// A name that needs UCS-2 leaves 70 characters: the reason and the
		// site names give way, the incident id stays.
		{"ucs-2 name", base, "Łódź Poczta",
			"DOWN Łódź Poczta. Since 11:04 UTC, 2 sites. Incident #ab2cd3ef", sms.UCS2},
		{"long ucs-2 name", base, "Poczta Łódź – sprawdzenie pełnej drogi wiadomości",
			"DOWN Poczta Łódź… Since 11:04 UTC, 2 sites. Incident #ab2cd3ef", sms.UCS2},
		{"gsm-7 accents keep 160", base, "Müller Ærø Zürich",
			"DOWN Müller Ærø Zürich: no return from 2 of 3 sites; retest failed. Since 11:04 UTC, sites eu-west, us-east. Incident #ab2cd3ef", sms.GSM7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := OpenText(tc.ev, tc.check)
			if got != tc.want {
				t.Errorf("text\n%q\nwant\n%q", got, tc.want)
			}
			c := sms.Analyze(got)
			if c.Segments != 1 || c.Encoding != tc.enc {
				t.Errorf("%s, %d units, %d segments; want one %s segment", c.Encoding, c.Units, c.Segments, tc.enc)
			}
		})
	}
}

func TestResolvedText(t *testing.T) {
	ev := events.IncidentResolved{IncidentID: "ab2cd3efgh4ijk5lmn6opq7r", Since: t0, OpenedAt: t0.Add(5 * time.Minute), ResolvedAt: t0.Add(26*time.Hour + 3*time.Minute)}
	cases := []struct {
		name, check, want string
	}{
		{"short", "ACME mail round trip", "RESOLVED ACME mail round trip: OK again after 1d2h (since 12:04 UTC). Incident #ab2cd3ef"},
		{"long name", strings.Repeat("Globex ", 25), "RESOLVED Globex Globex Globex Globex Globex Globex Globex Globex Globex Globex Globex Globex...: OK again after 1d2h (since 12:04 UTC). Incident #ab2cd3ef"},
		{"ucs-2 name", "Łódź Poczta – sprawdzenie pełnej drogi", "RESOLVED Łódź Poczta…: OK again after 1d2h. Incident #ab2cd3ef"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ResolvedText(ev, tc.check)
			if got != tc.want {
				t.Errorf("text\n%q\nwant\n%q", got, tc.want)
			}
			if !sms.Fits(got) {
				t.Errorf("%+v: more than one segment", sms.Analyze(got))
			}
		})
	}
	// A removed check's incident is closed, not recovered.
	removed := ev
	removed.Reason = events.ResolvedCheckRemoved
	if got, want := ResolvedText(removed, "ACME mail round trip"), "CLOSED ACME mail round trip: check removed after 1d2h (since 12:04 UTC). Incident #ab2cd3ef"; got != want {
		t.Errorf("text\n%q\nwant\n%q", got, want)
	}
	// Without Since, the duration runs from OpenedAt.
	ev.Since = time.Time{}
	if got := ResolvedText(ev, "ACME"); !strings.Contains(got, "after 1d1h (since 12:09 UTC)") {
		t.Errorf("text %q", got)
	}
}

// TestTextsAlwaysFit: whatever the name, a text that can fit in one segment
// does, and the incident id is never cut.
func TestTextsAlwaysFit(t *testing.T) {
	id := "ab2cd3efgh4ijk5lmn6opq7r"
	open := events.IncidentOpen{IncidentID: id, Severity: events.SeverityCritical, OpenedAt: t0,
		Reason: strings.Repeat("very long reason ", 20), Sites: []events.SiteVote{{Site: "a"}, {Site: "b"}, {Site: "c"}}}
	res := events.IncidentResolved{IncidentID: id, Since: t0, ResolvedAt: t0.Add(time.Hour)}
	for _, name := range []string{"", "x", strings.Repeat("ab", 100), strings.Repeat("ł", 100), strings.Repeat("€", 100), strings.Repeat("😀", 60), "a\nb\tc"} {
		removed := res
		removed.Reason = events.ResolvedCheckRemoved
		for _, text := range []string{OpenText(open, name), ResolvedText(res, name), ResolvedText(removed, name)} {
			if !sms.Fits(text) {
				t.Errorf("name %q: %q is %+v", name, text, sms.Analyze(text))
			}
			if !strings.HasSuffix(text, "Incident #ab2cd3ef") {
				t.Errorf("name %q: %q lost the incident id", name, text)
			}
			if strings.ContainsAny(text, "\n\t") {
				t.Errorf("name %q: %q has a line break or tab", name, text)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		s    string
		n    int
		want string
	}{
		{"ACME mail", 9, "ACME mail"},
		{"Example Corporation mail round trip", 24, "Example Corporation..."},      // at the word boundary
		{"Example Corporation mail round trip", 27, "Example Corporation mail..."}, // the cut falls on a space
		{"Supercalifragilistic mail", 12, "Supercali..."},                          // no boundary in the second half: inside the word
		{"ACME mail, Europe - main", 18, "ACME mail..."},                           // separators before the cut are dropped
		{"Poczta Łódź – sprawdzenie", 16, "Poczta Łódź…"},                          // UCS-2 anyway: the one-character mark
		{"Globex", 4, "Glob"},                                                      // no room for a mark
		{"Globex", 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			got := truncate(tc.s, tc.n)
			if got != tc.want {
				t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
			if n := len([]rune(got)); n > tc.n {
				t.Errorf("%q is %d characters, over %d", got, n, tc.n)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 25*time.Minute + 59*time.Second: "25m", time.Hour: "1h",
		85 * time.Minute: "1h25m", 48 * time.Hour: "2d", 75 * time.Hour: "3d3h",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

func BenchmarkOpenText(b *testing.B) {
	ev := events.IncidentOpen{IncidentID: "ab2cd3efgh4ijk5lmn6opq7r", Severity: events.SeverityCritical, OpenedAt: t0,
		Reason: "no return from 2 of 3 sites; retest failed", Sites: []events.SiteVote{{Site: "eu-west"}, {Site: "us-east"}}}
	for _, name := range []string{"ACME mail round trip", strings.Repeat("Example Corporation ", 6), "Łódź Poczta – sprawdzenie"} {
		b.Run(sms.Analyze(name).Encoding.String()+"-"+map[bool]string{true: "long", false: "short"}[len(name) > 40], func(b *testing.B) {
			for b.Loop() {
				OpenText(ev, name)
			}
		})
	}
}
