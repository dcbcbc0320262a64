package dsn

import (
	"regexp"
	"strings"
)

// parseText reads a non-standard notice from the bounce's text, trying
// Exchange, qmail and Exim in that order. It sets r.Parser when it
// recognises a notice, and reports whether it found a recipient.
func parseText(text []byte, r *Report) bool {
	ls := lines(text)
	switch {
	case hasFold(text, "Diagnostic information for administrators"),
		hasFold(text, "Remote Server returned '"),
		hasFold(text, "Generating server:"):
		r.Parser = ParserExchange
		act := ActionFailed
		if hasFold(text, "Delivery is delayed to these recipients") || hasFold(text, "hasn't been delivered yet") {
			act = ActionDelayed
		}
		parseExchange(ls, act, r)
	case hasFold(text, "This is the qmail-send program at"):
		r.Parser = ParserQmail
		parseQmail(ls, r)
	case hasFold(text, "created automatically by mail delivery software"):
		r.Parser = ParserExim
		act := ActionFailed
		if hasFold(text, "has not yet been delivered to") {
			act = ActionDelayed
		}
		parseExim(ls, act, r)
	default:
		return false
	}
	return len(r.Recipients) > 0
}

var enhancedCode = regexp.MustCompile(`(?:^|[\s(#])([245]\.\d{1,3}\.\d{1,3})(?:$|[\s),;])`)

// enhancedOf returns the first RFC 3463 status code in s, or "".
func enhancedOf(s string) string {
	if m := enhancedCode.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// withDiagnostic sets the diagnostic of rc from text, and the reply code and
// status it contains (unless rc has a status).
func withDiagnostic(rc Recipient, text string) Recipient {
	rc.Diagnostic = diagnostic(text)
	rc.Code = smtpCode(rc.Diagnostic)
	if rc.Status == "" {
		rc.Status = enhancedOf(rc.Diagnostic)
	}
	return rc
}

// addRecipient appends rc to r within MaxRecipients.
func addRecipient(r *Report, rc Recipient) {
	if len(r.Recipients) < MaxRecipients {
		r.Recipients = append(r.Recipients, rc)
	}
}

// hostOf returns the host name of "mx.example [192.0.2.1]", "[192.0.2.1]"
// or "mx.example.".
func hostOf(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return strings.TrimSuffix(strings.Trim(f[0], "[]():'"), ".")
}

var (
	exGenerating = regexp.MustCompile(`(?i)^generating server:\s*(\S+)`)
	exReceiving  = regexp.MustCompile(`(?i)^receiving server:\s*(\S+)`)
	exAddress    = regexp.MustCompile(`^<?(?:mailto:)?([^\s<>@]+@[^\s<>@]+?)>?$`)
	exYourMsg    = regexp.MustCompile(`(?i)your message to <?([^\s<>@]+@[^\s<>@]+?)>? couldn.t be delivered`)
	exHashDiag   = regexp.MustCompile(`^#(\d{3}[ -].*?)(?:\s*##.*)?$`)
)

// parseExchange reads an Exchange NDR: "Generating server: <host>" names
// the reporting MTA; each address alone on a line followed by "Remote Server
// returned '<reply>'" (Exchange 2007 and later, Exchange Online) or
// "#<reply> ##" (Exchange 2010 and later) is a recipient. The text ends at
// "Original message headers:".
func parseExchange(ls []string, act string, r *Report) {
	var last, named, remote string
	for _, l := range ls {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Original message headers:") {
			break
		}
		if m := exGenerating.FindStringSubmatch(l); m != nil && r.ReportingMTA == "" {
			r.ReportingMTA = hostOf(m[1])
		}
		if m := exReceiving.FindStringSubmatch(l); m != nil {
			remote = hostOf(m[1])
		}
		if m := exYourMsg.FindStringSubmatch(l); m != nil && named == "" {
			named = m[1]
		}
		if m := exAddress.FindStringSubmatch(l); m != nil {
			last = m[1]
			continue
		}
		if diag, st, ok := exchangeDiagnostic(l); ok {
			addRecipient(r, withDiagnostic(Recipient{FinalRecipient: firstOf(last, named), Action: act, Status: st}, diag))
			last = ""
		}
	}
	if len(r.Recipients) == 0 && firstOf(named, last) != "" {
		addRecipient(r, Recipient{FinalRecipient: firstOf(named, last), Action: act})
	}
	for i := range r.Recipients {
		if r.Recipients[i].RemoteMTA == "" {
			r.Recipients[i].RemoteMTA = remote
		}
	}
}

// exchangeDiagnostic returns the reply of an Exchange diagnostic line, and
// the status it names apart from the reply (Exchange 2007's "< #5.1.1
// smtp;550 ...>").
func exchangeDiagnostic(l string) (diag, status string, ok bool) {
	// The index is of l itself: strings.ToLower may change the length of
	// a line that is not valid UTF-8 (found by FuzzParse).
	if loc := exReturned.FindStringIndex(l); loc != nil {
		diag = l[loc[1]:]
		if j := strings.LastIndexByte(diag, '\''); j >= 0 {
			diag = diag[:j]
		}
		diag = strings.TrimSpace(strings.Trim(diag, "<> "))
		if strings.HasPrefix(diag, "#") {
			code, rest, _ := strings.Cut(diag[1:], " ")
			_, diag = typed(rest)
			status = statusPattern.FindString(code)
		}
		return diag, status, true
	}
	if m := exHashDiag.FindStringSubmatch(l); m != nil {
		return m[1], "", true
	}
	return "", "", false
}

var (
	exReturned  = regexp.MustCompile(`(?i)remote server returned '`)
	qmailHost   = regexp.MustCompile(`(?i)qmail-send program at (\S+)`)
	qmailRcpt   = regexp.MustCompile(`^<([^<>\s]+)>:$`)
	qmailSaid   = regexp.MustCompile(`^(.*?)\s*said:\s*(.*)$`)
	qmailRemote = regexp.MustCompile(`^(?:Connected to (\S+) but|(\S+) does not like recipient|Giving up on (\S+))`)
)

// parseQmail reads qmail-send's failure notice: "This is the qmail-send
// program at <host>." names the reporting MTA, and each paragraph that
// starts with "<address>:" is a recipient, whose "<remote> said: <reply>"
// line is the diagnostic (the whole paragraph when there is none). The
// text ends at the "--- " line before the copy of the message. qmail sends
// notices only when it gives up, so every recipient failed.
func parseQmail(ls []string, r *Report) {
	var addr string
	var para []string
	flush := func() {
		if addr != "" {
			addRecipient(r, qmailRecipient(addr, para))
		}
		addr, para = "", nil
	}
	for _, l := range ls {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "--- ") {
			break
		}
		if m := qmailHost.FindStringSubmatch(l); m != nil && r.ReportingMTA == "" {
			r.ReportingMTA = hostOf(m[1])
		}
		switch m := qmailRcpt.FindStringSubmatch(l); {
		case m != nil:
			flush()
			addr = m[1]
		case l == "":
			flush()
		case addr != "":
			para = append(para, l)
		}
	}
	flush()
}

// qmailRecipient reads one recipient paragraph of a qmail notice.
func qmailRecipient(addr string, para []string) Recipient {
	rc := Recipient{FinalRecipient: addr, Action: ActionFailed}
	var reply []string
	for _, l := range para {
		if m := qmailSaid.FindStringSubmatch(l); m != nil && reply == nil {
			if !strings.EqualFold(m[1], "Remote host") {
				rc.RemoteMTA = hostOf(m[1])
			}
			reply = []string{m[2]}
			continue
		}
		if m := qmailRemote.FindStringSubmatch(l); m != nil && rc.RemoteMTA == "" {
			rc.RemoteMTA = hostOf(firstOf(m[1], m[2], m[3]))
		}
		if reply != nil && !strings.HasPrefix(l, "Giving up on ") {
			reply = append(reply, l)
		}
	}
	if reply == nil {
		reply = para
	}
	return withDiagnostic(rc, strings.Join(reply, " "))
}

var (
	eximAddress = regexp.MustCompile(`^  <?([^\s<>@]+@[^\s<>@]+?)>?\s*$`)
	eximHost    = regexp.MustCompile(`^host (\S+) \[[^\]]*\](?::\s*(.*))?$`)
	eximQueueOn = regexp.MustCompile(`(?i)on the queue on (\S+?)\.?$`)
)

// parseExim reads Exim's notice: each address indented by two spaces after
// the introduction is a recipient, and the lines indented further below it
// say why: "host <name> [<ip>]" names the remote MTA, "SMTP error from
// remote mail server after <command>:" introduces its reply, other lines
// are Exim's own explanation. The text ends at the "------ " line before
// the copy of the message.
func parseExim(ls []string, act string, r *Report) {
	var cur *Recipient
	var reply []string
	flush := func() {
		if cur != nil {
			addRecipient(r, withDiagnostic(*cur, strings.Join(reply, " ")))
		}
		cur, reply = nil, nil
	}
	for _, l := range ls {
		if strings.HasPrefix(l, "------ ") {
			break
		}
		if m := eximQueueOn.FindStringSubmatch(strings.TrimSpace(l)); m != nil && r.ReportingMTA == "" {
			r.ReportingMTA = m[1]
		}
		if m := eximAddress.FindStringSubmatch(l); m != nil {
			flush()
			cur = &Recipient{FinalRecipient: m[1], Action: act}
			continue
		}
		if cur == nil {
			continue
		}
		if !strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "\t") {
			flush()
			continue
		}
		d := strings.TrimSpace(l)
		m := eximHost.FindStringSubmatch(d)
		switch {
		case m != nil:
			cur.RemoteMTA = hostOf(m[1])
			if m[2] != "" {
				reply = append(reply, m[2])
			}
		case strings.HasPrefix(d, "SMTP error from remote mail"), strings.HasPrefix(d, "(generated from"):
		default:
			reply = append(reply, d)
		}
	}
	flush()
}
