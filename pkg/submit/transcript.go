package submit

import (
	"regexp"
	"strings"

	"github.com/emailscout/emailscout/pkg/events"
)

// greetingName is the server's name in its 220 greeting (the first word
// after the code, RFC 5321 section 4.2: "220 mx1.acme.example ESMTP"), or
// "" when the transcript has no greeting.
func greetingName(lines []string) string {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "S: 220"); ok && len(rest) > 1 {
			name, _, _ := strings.Cut(strings.TrimSpace(rest[1:]), " ")
			return name
		}
	}
	return ""
}

// queueIDPatterns find the queue id in the 250 reply to DATA, as the common
// MTAs write it.
var queueIDPatterns = []*regexp.Regexp{
	regexp.MustCompile(`queued as ([0-9A-Za-z]+)`),              // Postfix: "2.0.0 Ok: queued as 4XyZ1b2c3"
	regexp.MustCompile(`\bid=([0-9A-Za-z]+(?:-[0-9A-Za-z]+)+)`), // Exim: "OK id=1rAbCd-000123-4X"
	regexp.MustCompile(`\[InternalId=(\d+)`),                    // Exchange: "<msgid> [InternalId=123, ...] Queued mail for delivery"
	regexp.MustCompile(`^(?:OK|ok)\s+\d+\s+(\S+)\s+-\s+gsmtp`),  // Gmail: "OK  1733390000 a1b2c3si1234567abc.12 - gsmtp"
	regexp.MustCompile(`^([0-9A-Za-z]{14}) Message accepted`),   // Sendmail: "4B5C6D7E8F9G0H Message accepted for delivery"
}

// QueueID returns the queue id the server gave in its reply to DATA
// (Postfix, Exim, Exchange, Gmail, Sendmail forms), or "".
func QueueID(r *events.SMTPReply) string {
	if r == nil || r.Code/100 != 2 {
		return ""
	}
	text := strings.TrimSpace(r.Text)
	for _, re := range queueIDPatterns {
		if m := re.FindStringSubmatch(text); m != nil {
			return m[1]
		}
	}
	return ""
}
