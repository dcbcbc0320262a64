package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// printer writes what `scout dev` shows: one line per finished attempt,
// incidents, the monitor's health, the SMS that would be sent, and a
// summary.
type printer struct {
	mu     sync.Mutex
	w      io.Writer
	checks *checks.File
	start  time.Time

	statuses  map[string]int            // status -> count
	perCheck  map[string]map[string]int // check -> status -> count
	rtts      []int64
	opened    int
	resolved  int
	smsCount  int
	returned  int
	lastState map[string]string // site -> monitor health
}

func newPrinter(w io.Writer, f *checks.File) *printer {
	return &printer{w: w, checks: f, start: time.Now(), statuses: map[string]int{}, perCheck: map[string]map[string]int{}, lastState: map[string]string{}}
}

func (p *printer) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (p *printer) note(format string, args ...any) { p.line("-- "+format, args...) }

// smsWriter receives the notifier's log provider lines.
func (p *printer) smsWriter() io.Writer { return smsLines{p} }

type smsLines struct{ p *printer }

func (s smsLines) Write(b []byte) (int, error) {
	s.p.mu.Lock()
	s.p.smsCount++
	s.p.mu.Unlock()
	s.p.line("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// follow prints events as JetStream stores them (duplicates dropped by
// their message ids never show), from now on, until ctx ends.
func (p *printer) follow(ctx context.Context, js jetstream.JetStream) error {
	c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"check.result.>", "incident.>", "monitor.health.>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := c.Consume(func(m jetstream.Msg) { p.event(m.Subject(), m.Data()) })
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

func (p *printer) event(subject string, data []byte) {
	subj, err := events.ParseSubject(subject)
	if err != nil {
		return
	}
	switch subj.Name {
	case events.SubjectCheckResult:
		var r events.CheckResult
		if json.Unmarshal(data, &r) != nil {
			return
		}
		p.result(&r)
	case events.SubjectIncidentOpen:
		var o events.IncidentOpen
		if json.Unmarshal(data, &o) != nil {
			return
		}
		p.mu.Lock()
		p.opened++
		p.mu.Unlock()
		p.line("INCIDENT OPEN     %s  %s: %s  [%s, since %s]", o.CheckID, o.Severity, o.Reason, o.IncidentID, o.Since.Local().Format("15:04:05"))
	case events.SubjectIncidentResolved:
		var r events.IncidentResolved
		if json.Unmarshal(data, &r) != nil {
			return
		}
		p.mu.Lock()
		p.resolved++
		p.mu.Unlock()
		p.line("INCIDENT RESOLVED %s  outage %v (since the first failed attempt), open %v: %s  [%s]", r.CheckID,
			r.ResolvedAt.Sub(r.Since).Round(time.Second), r.ResolvedAt.Sub(r.OpenedAt).Round(time.Second), r.Reason, r.IncidentID)
	case events.SubjectMonitorHealth:
		var h events.MonitorHealthEvent
		if json.Unmarshal(data, &h) != nil {
			return
		}
		p.mu.Lock()
		prev := p.lastState[h.Site]
		p.lastState[h.Site] = h.Status
		p.mu.Unlock()
		if prev != "" || h.Status != events.MonitorOK {
			p.line("MONITOR %-9s %s: %s", h.Site, h.Status, h.Reason)
		}
	}
}

func (p *printer) result(r *events.CheckResult) {
	p.mu.Lock()
	if r.Revision <= 1 {
		p.statuses[r.Status]++
		if p.perCheck[r.CheckID] == nil {
			p.perCheck[r.CheckID] = map[string]int{}
		}
		p.perCheck[r.CheckID][r.Status]++
	}
	if r.RTTMS != nil {
		p.returned++
		if !r.Late {
			p.rtts = append(p.rtts, *r.RTTMS)
		}
	}
	p.mu.Unlock()
	detail := ""
	switch {
	case r.RTTMS != nil:
		detail = fmt.Sprintf("rtt_ms=%d", *r.RTTMS)
		if r.Late {
			detail += " (late return, verdict kept)"
		}
	case r.Kind != events.KindRoundTrip && r.Status != events.StatusMonitorError:
		detail = serviceDetail(r)
	case r.Reply != nil:
		detail = r.Reply.String()
	case r.Error != "":
		detail = r.Error
	}
	why := ""
	if r.Reason == events.ReasonRetest || r.Reason == events.ReasonConfirm {
		why = " " + r.Reason
	}
	p.line("%-20s %-8s #%d%-8s %-13s %s", r.CheckID, r.Site, r.Attempt, why, r.Status, detail)
}

// serviceDetail describes a service check's result: the total time and
// TLS for a dialogue that passed, e.g. "total_ms=4.1 TLS1.3 cert 89d"; the
// phase, the server's reply (or the error) and the class for one that did
// not, e.g. "capabilities: 554 5.7.1 Service unavailable [refused,
// total_ms=1.2]".
func serviceDetail(r *events.CheckResult) string {
	d := fmt.Sprintf("total_ms=%.1f", r.Timings.TotalMS)
	if r.TLS != nil {
		d += fmt.Sprintf(" %s cert %dd", r.TLS.Version, r.TLS.DaysLeft)
	}
	if r.ErrorClass == "" {
		return d
	}
	what := r.Reply.String()
	if what == "" {
		what = r.Error
	}
	return fmt.Sprintf("%s: %s [%s, %s]", r.Phase, what, r.ErrorClass, d)
}

// roundTrips is the number of probes that came back.
func (p *printer) roundTrips() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.returned
}

func (p *printer) summary() {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for _, n := range p.statuses {
		total += n
	}
	fmt.Fprintf(p.w, "\nSummary after %v: %d attempts, %d round trips", time.Since(p.start).Round(time.Second), total, p.returned)
	if len(p.rtts) > 0 {
		s := append([]int64(nil), p.rtts...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		fmt.Fprintf(p.w, " (rtt p50 %d ms, max %d ms)", s[len(s)/2], s[len(s)-1])
	}
	fmt.Fprintf(p.w, "; incidents opened %d, resolved %d; SMS %d\n", p.opened, p.resolved, p.smsCount)
	for _, c := range p.checks.Checks {
		counts := p.perCheck[c.ID]
		var parts []string
		for _, st := range []string{events.StatusOK, events.StatusSlow, events.StatusTimeout, events.StatusFailed, events.StatusMonitorError, events.StatusDegraded} {
			if counts[st] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", st, counts[st]))
			}
		}
		if len(parts) == 0 {
			parts = []string{"no results"}
		}
		fmt.Fprintf(p.w, "  %-20s %s\n", c.ID, strings.Join(parts, ", "))
	}
}
