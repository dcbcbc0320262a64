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
	if !senderSet {
		sender = reflector.UnknownSender
		if v, ok := e.lookupEnv(envSender); ok {
			sender = v
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
	printDecision(e.stdout, cfg, d, msg, sender, e.now())
	if d.Action != reflector.ActionReflect {
		return exitError{code: exitIgnored}
	}
	return nil
}

func printDecision(out io.Writer, cfg *resolved, d reflector.Decision, msg []byte, sender string, now time.Time) {
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
	switch sender {
	case reflector.UnknownSender:
		line("envelope sender", "unknown ($SENDER not set; read from the mbox From line when there is one)")
	case "":
		line("envelope sender", "<> (a bounce)")
	default:
		line("envelope sender", "%s", sender)
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
	if cfg.SMTP.Username == "" {
		return ""
	}
	return ", AUTH as " + cfg.SMTP.Username
}
