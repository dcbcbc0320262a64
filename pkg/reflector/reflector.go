// Package reflector answers Email Scout probes on the customer's side: it
// verifies a probe, stamps it (probemail.Reflect) and mails it back to the
// signed return address. It is the library behind the scout-reflector
// command and the demo mail server of `scout dev`.
//
// The rules (docs/reflector.md):
//
//   - Unsigned, badly signed or foreign mail is ignored: no reply, no error.
//   - A reflected message, a bounce (empty envelope sender, MAILER-DAEMON)
//     and any Auto-Submitted mail (RFC 3834) are never answered: no loops,
//     no backscatter.
//   - A probe is answered at most once (SeenStore), and not at all when its
//     signed start is older than Config.MaxAge (a replay).
//   - A send failure is returned classified: an error marked temporary
//     (fault.MarkedTemporary) asks the caller to retry later (exit 75,
//     EX_TEMPFAIL, in pipe mode).
package reflector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// Actions of a Decision.
const (
	ActionReflect = "reflect"
	ActionIgnore  = "ignore"
)

// Reasons for ActionIgnore.
const (
	ReasonNotProbe     = "not a probe: no X-Scout-Probe header"
	ReasonMalformed    = "malformed probe header"
	ReasonBadSignature = "signature does not verify for this mailbox"
	ReasonUnknownKey   = "signed with a key this reflector does not have"
	ReasonReflected    = "already a reflection (loop guard)"
	ReasonAutoSubmit   = "Auto-Submitted mail is never answered (RFC 3834)"
	ReasonBounce       = "a bounce (empty envelope sender or MAILER-DAEMON) is never answered"
	ReasonStale        = "probe is older than max age (replay?)"
	ReasonAnswered     = "this probe was answered already"
	ReasonUnreadable   = "message header cannot be read"
)

// Sender delivers a reflection. Implementations: Sendmail, SMTP.
type Sender interface {
	// Send submits msg from the envelope sender from (may be empty: the
	// implementation's default) to the recipients. Errors that may pass
	// (a 4xx reply, a network error) are marked temporary (pkg/fault).
	Send(ctx context.Context, from string, to []string, msg []byte) error
}

// SeenStore remembers answered probes.
type SeenStore interface {
	// Claim records that testID is being answered now; false means it was
	// claimed before.
	Claim(testID string) (bool, error)
	// Release forgets a claim whose reflection could not be sent, so that a
	// later delivery may answer.
	Release(testID string) error
}

// Config configures a Reflector.
type Config struct {
	// Keys verifies probes (the customer's keys; several for rotation).
	Keys probemail.KeyLookup
	// Mailboxes are the probe addresses this reflector answers for (lower
	// case). A probe is verified against its To addresses; when Mailboxes is
	// not empty, only those addresses are tried. The first one is the From
	// of reflections when the probe's To is not in the list.
	Mailboxes []string
	// EnvelopeFrom is the envelope sender of reflections; empty leaves it to
	// the Sender (sendmail: the user running the reflector).
	EnvelopeFrom string
	// MaxAge: probes whose signed start is older are not answered. Zero
	// means DefaultMaxAge.
	MaxAge time.Duration
}

// DefaultMaxAge is Config.MaxAge's default. A delayed probe is still
// answered (late returns are data); a week-old one is a replay.
const DefaultMaxAge = 48 * time.Hour

// Reflector decides and answers.
type Reflector struct {
	cfg    Config
	sender Sender
	seen   SeenStore
	now    func() time.Time
}

// New returns a Reflector. seen may be nil (no duplicate protection beyond
// the loop rules); now is the clock (time.Now in production).
func New(cfg Config, sender Sender, seen SeenStore, now func() time.Time) *Reflector {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	for i, m := range cfg.Mailboxes {
		cfg.Mailboxes[i] = strings.ToLower(strings.TrimSpace(m))
	}
	return &Reflector{cfg: cfg, sender: sender, seen: seen, now: now}
}

// Decision is what the reflector does with one message.
type Decision struct {
	Action  string // ActionReflect or ActionIgnore
	Reason  string // for ActionIgnore: one of the Reason constants
	Detail  string // more detail for logs (the verification error, ...)
	Probe   probemail.Probe
	ProbeTo string // the address the probe verified for
	Out     []byte // the reflection, for ActionReflect
}

// Decide applies the rules to msg without any side effect. envelopeFrom is
// the envelope sender when the caller knows it (Postfix sets $SENDER, empty
// for a bounce); pass UnknownSender when it is not known, and the mbox
// "From " line, if any, is read instead.
func (r *Reflector) Decide(msg []byte, envelopeFrom string) Decision {
	if envelopeFrom == UnknownSender {
		if f, ok := mboxSender(msg); ok {
			envelopeFrom = f
		}
	}
	ret, err := probemail.ParseReturned(msg)
	if err != nil {
		return Decision{Action: ActionIgnore, Reason: ReasonUnreadable, Detail: err.Error()}
	}
	if ret.HeaderValue == "" {
		return Decision{Action: ActionIgnore, Reason: ReasonNotProbe}
	}
	if ret.Reflected() || ret.ProbeTo != "" {
		return Decision{Action: ActionIgnore, Reason: ReasonReflected}
	}
	if ret.AutoSubmitted != "" {
		return Decision{Action: ActionIgnore, Reason: ReasonAutoSubmit, Detail: "Auto-Submitted: " + ret.AutoSubmitted}
	}
	if isBounce(envelopeFrom, ret.From) {
		return Decision{Action: ActionIgnore, Reason: ReasonBounce, Detail: "envelope sender " + envelopeFrom}
	}
	if ret.HeaderErr != nil {
		return Decision{Action: ActionIgnore, Reason: ReasonMalformed, Detail: ret.HeaderErr.Error()}
	}
	p, probeTo, err := r.verify(ret)
	if err != nil {
		reason := ReasonBadSignature
		if errors.Is(err, probemail.ErrUnknownKey) {
			reason = ReasonUnknownKey
		}
		return Decision{Action: ActionIgnore, Reason: reason, Detail: err.Error()}
	}
	now := r.now()
	if age := now.Sub(p.StartedAt); age > r.cfg.MaxAge {
		return Decision{Action: ActionIgnore, Reason: ReasonStale, Probe: p, Detail: fmt.Sprintf("started %s ago", age.Truncate(time.Second))}
	}
	from := probeTo
	if len(r.cfg.Mailboxes) > 0 && !contains(r.cfg.Mailboxes, probeTo) {
		from = r.cfg.Mailboxes[0]
	}
	out, err := probemail.Reflect(probemail.StripMboxFrom(msg), p, probeTo, from, now)
	if err != nil {
		return Decision{Action: ActionIgnore, Reason: ReasonUnreadable, Detail: err.Error()}
	}
	return Decision{Action: ActionReflect, Probe: p, ProbeTo: probeTo, Out: out}
}

// Handle decides and, for a probe, sends the reflection and records it as
// answered. The error is nil when the message was ignored or answered; a
// send failure is returned as is (check fault.MarkedTemporary), and the claim is
// released so that a retry can answer.
func (r *Reflector) Handle(ctx context.Context, msg []byte, envelopeFrom string) (Decision, error) {
	d := r.Decide(msg, envelopeFrom)
	if d.Action != ActionReflect {
		return d, nil
	}
	if r.seen != nil {
		fresh, err := r.seen.Claim(d.Probe.TestID)
		if err != nil {
			return d, fault.Temporary(fmt.Errorf("record probe %s as answered: %w", d.Probe.TestID, err))
		}
		if !fresh {
			d.Action, d.Reason = ActionIgnore, ReasonAnswered
			return d, nil
		}
	}
	if err := r.sender.Send(ctx, r.cfg.EnvelopeFrom, []string{d.Probe.ReturnTo}, d.Out); err != nil {
		if r.seen != nil {
			_ = r.seen.Release(d.Probe.TestID)
		}
		return d, fmt.Errorf("send reflection of %s to %s: %w", d.Probe.TestID, d.Probe.ReturnTo, err)
	}
	return d, nil
}

// verify tries the probe's To addresses (or the configured mailboxes).
func (r *Reflector) verify(ret *probemail.Returned) (probemail.Probe, string, error) {
	candidates := r.cfg.Mailboxes
	if len(candidates) == 0 {
		candidates = ret.To
	}
	if len(candidates) == 0 {
		return probemail.Probe{}, "", fmt.Errorf("%w: the message has no To address", probemail.ErrBadSignature)
	}
	var firstErr error
	for _, to := range candidates {
		p, _, err := probemail.Verify(ret.HeaderValue, to, r.cfg.Keys)
		if err == nil {
			return p, to, nil
		}
		if firstErr == nil || errors.Is(err, probemail.ErrUnknownKey) {
			firstErr = err
		}
	}
	return probemail.Probe{}, "", firstErr
}

// MboxSender returns the envelope sender written in a leading mbox "From "
// line (as Postfix's local(8) writes before piping a message to a command:
// "From sender date"), and false when msg has no such line. Decide reads it
// when the envelope sender is UnknownSender.
func MboxSender(msg []byte) (string, bool) { return mboxSender(msg) }

// mboxSender reads the envelope sender from a leading mbox "From " line.
func mboxSender(msg []byte) (string, bool) {
	if !strings.HasPrefix(string(msg[:min(len(msg), 5)]), "From ") {
		return "", false
	}
	line := string(msg[5:min(len(msg), 1024)])
	if i := strings.IndexAny(line, " \r\n"); i >= 0 {
		line = line[:i]
	}
	return line, true
}

// UnknownSender is the envelopeFrom to pass when the envelope sender is
// not known (IMAP mode, a file argument without $SENDER).
const UnknownSender = "\x00unknown"

func isBounce(envelopeFrom, headerFrom string) bool {
	e := strings.ToLower(strings.Trim(strings.TrimSpace(envelopeFrom), "<>"))
	if envelopeFrom != UnknownSender && (e == "" || strings.HasPrefix(e, "mailer-daemon")) {
		return true
	}
	return strings.HasPrefix(headerFrom, "mailer-daemon@") || strings.HasPrefix(headerFrom, "postmaster@")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
