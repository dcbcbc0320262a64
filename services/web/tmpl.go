package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

func parsePages(funcs template.FuncMap) (*template.Template, error) {
	return template.New("pages").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
}

// funcs are the templates' helpers; "ago" reads the service's clock.
func (w *Web) funcs() template.FuncMap {
	return template.FuncMap{
		"ago": func(t any) string {
			var at time.Time
			switch v := t.(type) {
			case time.Time:
				at = v
			case *time.Time:
				if v == nil {
					return ""
				}
				at = *v
			}
			return ago(w.clock.Now().Sub(at))
		},
		"iso": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.UTC().Format(time.RFC3339)
			case *time.Time:
				if v != nil {
					return v.UTC().Format(time.RFC3339)
				}
			}
			return ""
		},
		"utc": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.UTC().Format("2006-01-02 15:04:05 UTC")
			case *time.Time:
				if v != nil {
					return v.UTC().Format("2006-01-02 15:04:05 UTC")
				}
			}
			return ""
		},
		"rtt": func(p *int64) string {
			if p == nil {
				return ""
			}
			return fmtMS(float64(*p))
		},
		"msf": func(p *float64) string {
			if p == nil {
				return ""
			}
			return fmtMS(*p)
		},
		"phases":       phases,
		"stateLabel":   stateLabel,
		"publicLabel":  publicLabel,
		"verdictLabel": verdictLabel,
		"verdictClass": verdictClass,
		"statusClass":  statusClass,
		"evidenceText": func(e *events.Evidence) string { return strings.Join(e.Details(), "\n") },
		"isRoundTrip":  func(kind string) bool { return kind == events.KindRoundTrip },
		"duration": func(a time.Time, b *time.Time) string {
			if b == nil {
				return ""
			}
			return b.Sub(a).Round(time.Second).String()
		},
	}
}

// ago says how long ago something was, for people: "12 s ago", "5 min
// ago", "3 h ago", "2 d ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d d ago", int(d.Hours()/24))
}

// phases lists a service check's non-zero phase timings:
// "connect 2 ms · tls 12 ms · total 40 ms".
func phases(t *events.Timings) string {
	if t == nil {
		return ""
	}
	var parts []string
	for _, p := range []struct {
		name string
		ms   float64
	}{{"dns", t.DNSMS}, {"connect", t.ConnectMS}, {"greeting", t.GreetingMS}, {"tls", t.TLSMS}, {"capabilities", t.CapsMS},
		{"auth", t.AuthMS}, {"transfer", t.TransferMS}, {"mailbox", t.MailboxMS}, {"total", t.TotalMS}} {
		if p.ms > 0 {
			parts = append(parts, p.name+" "+fmtMS(p.ms))
		}
	}
	return strings.Join(parts, " · ")
}

func stateLabel(s string) string {
	switch s {
	case StateUp:
		return "Up"
	case StateWarning:
		return "Warning"
	case StateDown:
		return "Down"
	}
	return "No data"
}

// publicLabel is a state as a customer's status page says it.
func publicLabel(s string) string {
	switch s {
	case StateUp:
		return "Operational"
	case StateWarning:
		return "Degraded"
	case StateDown:
		return "Outage"
	}
	return "No data yet"
}

func verdictLabel(v string) string {
	switch v {
	case verdictUp:
		return "up"
	case verdictSlow:
		return "slow"
	case verdictDegraded:
		return "degraded"
	case verdictSuspect:
		return "failing, confirming"
	case verdictDown:
		return "down"
	case verdictFailing:
		return "failing"
	}
	return "no data"
}

// verdictClass is the colour class of a site verdict: up, warning, down,
// unknown.
func verdictClass(v string) string {
	switch v {
	case verdictUp:
		return StateUp
	case verdictSlow, verdictDegraded, verdictSuspect, verdictFailing:
		return StateWarning
	case verdictDown:
		return StateDown
	}
	return StateUnknown
}

// statusClass is the colour class of an attempt's status.
func statusClass(s string) string {
	switch s {
	case events.StatusOK:
		return StateUp
	case events.StatusSlow, events.StatusDegraded, events.StatusMonitorError:
		return StateWarning
	case events.StatusTimeout, events.StatusFailed:
		return StateDown
	}
	return StateUnknown
}
