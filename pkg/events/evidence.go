package events

import (
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
}

// Limits of Submission.Transcript.
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
