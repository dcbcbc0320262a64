package events

import (
	"fmt"
	"strings"
	"time"
)

// Evidence is what one attempt showed, for a person to read when an
// incident opens: how the probe was submitted and who accepted it, what a
// bounce said, the hops of a return. It travels with mail.sent,
// mail.returned, mail.bounced, check.result and (as one line per attempt,
// AttemptRef.Summary) incident.open; docs/evaluation.md, "Evidence".
type Evidence struct {
	Submission *Submission `json:"submission,omitempty"`
	// Deferred is the last temporary refusal (4xx) of the customer's MX
	// while the sender kept retrying (mx delivery).
	Deferred *SMTPReply `json:"deferred,omitempty"`
	Bounce   *Bounce    `json:"bounce,omitempty"`
	// Hops are the Received: fields of a returned probe, oldest first.
	// Their times are remote clocks: informational only.
	Hops []Hop `json:"hops,omitempty"`
	// Dialogue is a service check's SMTP, IMAP or POP3 dialogue when it
	// did not pass or was slow: "C: " lines sent, "S: " lines received,
	// credentials masked (pkg/transcript). At most MaxTranscriptLines
	// lines of MaxTranscriptLine bytes.
	Dialogue []string `json:"dialogue,omitempty"`
}

// Submission is how the first hop took the probe (RFC 5321 dialogue).
type Submission struct {
	Hop string `json:"hop"` // host:port dialled
	// Server is the name the first hop gave in its 220 greeting.
	Server     string    `json:"server,omitempty"`
	TLSVersion string    `json:"tls_version,omitempty"` // "TLS1.3"; empty: plain text
	QueueID    string    `json:"queue_id,omitempty"`    // from the 250 reply to DATA
	AcceptedAt time.Time `json:"accepted_at,omitzero"`  // monitor clock
	// Transcript is the dialogue: "C: " lines sent, "S: " lines received,
	// credentials masked, the message itself left out. At most
	// MaxTranscriptLines lines of MaxTranscriptLine bytes.
	Transcript []string `json:"transcript,omitempty"`
	// Reused: the probe went on an SMTP session opened for an earlier
	// probe (a relay session carries several, RFC 5321 section 3.3), so
	// Transcript holds only this probe's transaction and the greeting,
	// TLS and login phases took no time of its own.
	Reused bool `json:"reused,omitempty"`
}

// Limits of Submission.Transcript and Evidence.Dialogue.
const (
	MaxTranscriptLines = 60
	MaxTranscriptLine  = 200
)

// Bounce is what a delivery status notification said about a probe (RFC
// 3464: Action, Status, Diagnostic-Code, Remote-MTA, Final-Recipient), or
// what a non-standard bounce said as far as it could be read.
type Bounce struct {
	Action         string `json:"action"`                    // "failed" or "delayed"
	Status         string `json:"status,omitempty"`          // RFC 3463, e.g. "5.1.1"
	Diagnostic     string `json:"diagnostic,omitempty"`      // e.g. "550 5.1.1 <x@y>: Recipient address rejected"
	RemoteMTA      string `json:"remote_mta,omitempty"`      // the server that refused
	ReportingMTA   string `json:"reporting_mta,omitempty"`   // the server that wrote the bounce
	FinalRecipient string `json:"final_recipient,omitempty"` // the address that failed
	Parser         string `json:"parser,omitempty"`          // rfc3464, exchange, qmail, exim
	// Summary is one short line: "mx1.acme.example refused the probe: 550 5.1.1 ...".
	Summary string `json:"summary"`
}

// Hop is one Received: field of a returned probe (RFC 5321 section 4.4).
type Hop struct {
	From string    `json:"from,omitempty"`
	By   string    `json:"by,omitempty"`
	With string    `json:"with,omitempty"`
	ID   string    `json:"id,omitempty"`
	At   time.Time `json:"at,omitzero"` // the field's date (remote clock)
	// DelayMS is At minus the previous hop's At (remote clocks: a wrong
	// clock makes it wrong, even negative); nil for the first hop or
	// without dates.
	DelayMS *int64 `json:"delay_ms,omitempty"`
}

// Line is the evidence in one line for an attempt of status status, as an
// incident and an SMS show it; empty when there is nothing to say (an ok
// attempt):
//
//	mx1.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>: ...   (a bounce, or a refusal)
//	accepted by relay.monitor.example as 4XyZ at 12:04:05Z; no return and no bounce   (a timeout)
//	deferred by mx1.acme.example: 451 4.7.1 greylisted; no return   (a timeout after 4xx)
func (e *Evidence) Line(status string, reply *SMTPReply) string {
	if e == nil {
		e = &Evidence{}
	}
	switch status {
	case StatusFailed:
		if e.Bounce != nil && e.Bounce.Summary != "" {
			return e.Bounce.Summary
		}
		if reply != nil {
			who := "the first hop"
			if e.Submission != nil {
				who = e.Submission.name()
			}
			return who + " refused the probe: " + reply.String()
		}
	case StatusTimeout:
		switch {
		case e.Deferred != nil:
			who := "the customer's MX"
			if e.Submission != nil {
				who = e.Submission.name()
			}
			return "deferred by " + who + ": " + e.Deferred.String() + "; no return"
		case e.Submission != nil && !e.Submission.AcceptedAt.IsZero():
			s := "accepted by " + e.Submission.name()
			if e.Submission.QueueID != "" {
				s += " as " + e.Submission.QueueID
			}
			return s + " at " + e.Submission.AcceptedAt.UTC().Format("15:04:05Z") + "; no return and no bounce"
		}
	}
	return ""
}

// name is the first hop's name: its greeting's, else the host dialled.
func (s *Submission) name() string {
	if s.Server != "" {
		return s.Server
	}
	if i := strings.LastIndexByte(s.Hop, ':'); i > 0 {
		return strings.Trim(s.Hop[:i], "[]")
	}
	return s.Hop
}

// Details is the whole evidence for a person to read, one line each,
// sub-lines indented by two spaces, as `scout incident show` and the web
// service's check page show it:
//
//	submitted  to relay.monitor.example (127.0.0.1:25, TLS1.3), queued as 4XyZ at 2026-12-05 12:00:01Z
//	  S: 220 relay.monitor.example ESMTP
//	deferred   451 4.7.1 greylisted
//	bounce     failed, status 5.1.1, reported by relay.monitor.example
//	  remote MTA       mx1.acme.example
//	hop 1      from a by b with ESMTPS id X at 2026-12-05 12:00:02Z (+1s, remote clocks)
//	dialogue
//	  S: 554 5.7.1 go away
func (e *Evidence) Details() []string {
	if e == nil {
		return nil
	}
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if s := e.Submission; s != nil {
		tls := s.TLSVersion
		if tls == "" {
			tls = "no TLS"
		}
		line := fmt.Sprintf("submitted  to %s (%s, %s)", s.name(), s.Hop, tls)
		if s.QueueID != "" {
			line += ", queued as " + s.QueueID
		}
		if !s.AcceptedAt.IsZero() {
			line += " at " + stamp(s.AcceptedAt)
		}
		out = append(out, line)
		for _, l := range s.Transcript {
			add("  %s", l)
		}
	}
	if e.Deferred != nil {
		add("deferred   %s", e.Deferred)
	}
	if b := e.Bounce; b != nil {
		add("bounce     %s, status %s, reported by %s", b.Action, orUnknown(b.Status), orUnknown(b.ReportingMTA))
		if b.RemoteMTA != "" {
			add("  remote MTA       %s", b.RemoteMTA)
		}
		if b.FinalRecipient != "" {
			add("  final recipient  %s", b.FinalRecipient)
		}
		if b.Diagnostic != "" {
			add("  diagnostic       %s", b.Diagnostic)
		}
	}
	for i, h := range e.Hops {
		delay := ""
		if h.DelayMS != nil {
			delay = fmt.Sprintf(" (+%s, remote clocks)", time.Duration(*h.DelayMS)*time.Millisecond)
		}
		add("hop %-2d     from %s by %s with %s id %s at %s%s", i+1, orUnknown(h.From), orUnknown(h.By),
			orUnknown(h.With), orUnknown(h.ID), stamp(h.At), delay)
	}
	if len(e.Dialogue) > 0 {
		out = append(out, "dialogue")
		for _, l := range e.Dialogue {
			add("  %s", l)
		}
	}
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}
