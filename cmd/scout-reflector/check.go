package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
)

// runCheck prints what the reflector would do with the message on stdin or
// in path, sending nothing and recording nothing. It returns exitError 1
// when the message would be ignored.
func runCheck(cfg *resolved, e env, path, sender string, senderSet bool) error {
	msg, err := readMessage(e.stdin, path)
	if err != nil {
		fmt.Fprintln(e.stderr, "scout-reflector check:", err)
		return exitError{code: exitIgnored}
	}
	source := "from --sender"
	if !senderSet {
		sender, source = reflector.UnknownSender, ""
		if v, ok := e.lookupEnv(envSender); ok {
			sender, source = v, "from $SENDER"
		}
	}
	d := reflector.New(reflectorConfig(cfg), nil, nil, e.now).Decide(msg, sender)
	if d.Action == reflector.ActionReflect {
		// As Handle would: a probe answered before is not answered again.
		seen := &reflector.FileSeen{Dir: cfg.StateDir}
		if done, err := seen.Answered(d.Probe.TestID); err == nil && done {
			d.Action, d.Reason = reflector.ActionIgnore, reflector.ReasonAnswered
			d.Detail = "recorded in " + cfg.StateDir + " (delete the file named " + d.Probe.TestID + " to answer it again)"
		}
	}
	printDecision(e.stdout, cfg, d, msg, sender, source, e.now())
	if d.Action != reflector.ActionReflect {
		return exitError{code: exitIgnored}
	}
	return nil
}

// printDecision prints the decision d on msg. sender is the envelope
// sender given to Decide (reflector.UnknownSender when not known) and
// source where it came from ("$SENDER", "--sender", or "" when unknown).
func printDecision(out io.Writer, cfg *resolved, d reflector.Decision, msg []byte, sender, source string, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%s:\t%s\n", k, fmt.Sprintf(format, a...)) }
	line("verdict", "%s", d.Action)
	if d.Reason != "" {
		line("reason", "%s", d.Reason)
	}
	if d.Detail != "" {
		line("detail", "%s", d.Detail)
	}
	if d.Reason == reflector.ReasonBadSignature {
		line("why", "%s", signatureDiagnosis(cfg, msg))
	}
	if sender == reflector.UnknownSender {
		if s, ok := reflector.MboxSender(msg); ok {
			sender, source = s, "read from the mbox From line; $SENDER not set"
		}
	}
	switch {
	case sender == reflector.UnknownSender:
		line("envelope sender", "unknown ($SENDER not set and no mbox From line: bounces are recognised by the header From only)")
	case sender == "":
		line("envelope sender", "<> (a bounce; %s)", source)
	default:
		line("envelope sender", "%s (%s)", sender, source)
	}
	p := d.Probe
	verified := p.TestID != ""
	if !verified {
		// Show what the message claims, to help with a key or address
		// mismatch; none of it is trusted.
		if ret, err := probemail.ParseReturned(msg); err == nil && ret.HeaderErr == nil {
			p = ret.Probe
		}
	}
	if p.TestID != "" {
		label := "probe"
		if !verified {
			label = "probe (unverified)"
		}
		line(label, "test %s, check %s, site %s, attempt %d, key %s", p.TestID, p.CheckID, p.Site, p.Attempt, p.KeyID)
		line("started at", "%s (%s ago)", p.StartedAt.UTC().Format(probemail.StampLayout), now.Sub(p.StartedAt).Round(time.Second))
		line("return to", "%s", p.ReturnTo)
	}
	if d.ProbeTo != "" {
		line("probe to", "%s", d.ProbeTo)
	}
	if d.Action != reflector.ActionReflect {
		return
	}
	switch cfg.Output {
	case outputSMTP:
		line("output", "SMTP %s (tls %s%s), MAIL FROM:<%s> RCPT TO:<%s>", cfg.SMTP.Addr, cfg.SMTP.TLS, authNote(cfg), cfg.EnvelopeFrom, p.ReturnTo)
	default:
		from := ""
		if cfg.EnvelopeFrom != "" {
			from = " -f " + cfg.EnvelopeFrom
		}
		line("output", "%s -oi%s -- %s", cfg.Sendmail, from, p.ReturnTo)
	}
	w.Flush()
	fmt.Fprintln(out, "reflection header:")
	sc := bufio.NewScanner(bytes.NewReader(d.Out))
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" {
			break
		}
		fmt.Fprintln(out, "  "+l)
	}
}

func authNote(cfg *resolved) string {
	if cfg.smtpLogin != nil {
		return ", AUTH " + strings.ToUpper(cfg.smtpLogin.Mechanism) + " (OAuth) as " + cfg.SMTP.Username
	}
	if cfg.SMTP.Username == "" {
		return ""
	}
	return ", AUTH as " + cfg.SMTP.Username
}

// signatureDiagnosis tells why a probe header that names a known key does
// not verify. The signature covers the probe's To address (pkg/probemail),
// so a probe verified against the configured mailboxes fails when it was
// sent to another mailbox; verifying it against the message's own To
// addresses tells that case from a probe changed on the way or signed with
// another secret under the same key id, which HMAC cannot tell apart.
func signatureDiagnosis(cfg *resolved, msg []byte) string {
	ret, err := probemail.ParseReturned(msg)
	if err != nil {
		return "the message cannot be read: " + err.Error()
	}
	to := ret.To
	if len(cfg.Mailboxes) > 0 {
		for _, addr := range to {
			if _, _, err := probemail.Verify(ret.HeaderValue, addr, cfg.keys); err == nil {
				return fmt.Sprintf("this probe is addressed to %s, another mailbox than %s (the signature covers the To address):"+
					" it verifies for %s; add that mailbox (--mailbox) if this reflector answers for it",
					addr, strings.Join(cfg.Mailboxes, ", "), addr)
			}
		}
	}
	if len(to) == 0 {
		return "the message has no To address, and the signature covers the probe's To address"
	}
	either := ""
	if len(cfg.Mailboxes) > 0 {
		either = " either"
	}
	return fmt.Sprintf("the signature does not verify for the probe's own To (%s)%s: the probe was changed on the way"+
		" (a rewritten To or X-Scout-Probe field), or it was signed with another secret under the same key id"+
		" (compare the key file's line with Email Scout's)", strings.Join(to, ", "), either)
}
