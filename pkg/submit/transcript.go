package submit

import (
	"bytes"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/emailscout/emailscout/pkg/events"
)

// transcript records an SMTP dialogue line by line for a person to read:
// "C: " what the client sent, "S: " what the server answered (RFC 5321
// section 4.1). Credentials are masked (AUTH and the SASL exchange that
// follows it, RFC 4954), the message itself is left out ("C: <message:
// N bytes>"), and at most events.MaxTranscriptLines lines of
// events.MaxTranscriptLine bytes are kept (the last line then says how
// many were dropped).
type transcript struct {
	mu      sync.Mutex
	lines   []string
	dropped int
	// Partial lines, per direction.
	client, server []byte
	// inData: between the 354 to DATA and the lone "." that ends the
	// message; dataBytes counts it.
	inData, dataAsked bool
	dataBytes         int
	// inAuth: from an AUTH command to the server's final (non-334) reply.
	inAuth bool
}

func (t *transcript) add(line string) {
	if len(line) > events.MaxTranscriptLine {
		line = line[:events.MaxTranscriptLine-3] + "..."
	}
	if len(t.lines) >= events.MaxTranscriptLines-1 {
		t.dropped++
		return
	}
	t.lines = append(t.lines, line)
}

// wrote records bytes the client wrote.
func (t *transcript) wrote(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.client = append(t.client, p...)
	for {
		i := bytes.Index(t.client, []byte("\r\n"))
		if i < 0 {
			return
		}
		line := string(t.client[:i])
		t.client = t.client[i+2:]
		switch {
		case t.inData:
			if line == "." {
				t.inData = false
				t.add("C: <message: " + strconv.Itoa(t.dataBytes) + " bytes>")
				t.add("C: .")
				continue
			}
			t.dataBytes += len(line) + 2
		case t.inAuth:
			t.add("C: ****")
		case strings.HasPrefix(strings.ToUpper(line), "AUTH "):
			t.inAuth = true
			mech, _, _ := strings.Cut(line[5:], " ")
			if len(line) > 5+len(mech) {
				t.add("C: AUTH " + mech + " ****")
			} else {
				t.add("C: AUTH " + mech)
			}
		default:
			if strings.EqualFold(line, "DATA") {
				t.dataAsked = true
			}
			t.add("C: " + line)
		}
	}
}

// read records bytes the client read.
func (t *transcript) read(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.server = append(t.server, p...)
	for {
		i := bytes.Index(t.server, []byte("\r\n"))
		if i < 0 {
			return
		}
		line := string(t.server[:i])
		t.server = t.server[i+2:]
		last := len(line) < 4 || line[3] != '-'
		if t.inAuth && strings.HasPrefix(line, "334") {
			t.add("S: 334 ****")
			continue
		}
		if t.inAuth && last {
			t.inAuth = false
		}
		if t.dataAsked && strings.HasPrefix(line, "354") {
			t.dataAsked, t.inData, t.dataBytes = false, true, 0
		} else if last {
			t.dataAsked = false
		}
		t.add("S: " + line)
	}
}

// Lines returns the transcript so far.
func (t *transcript) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if t.dropped > 0 {
		out = append(out, "... "+strconv.Itoa(t.dropped)+" more lines")
	}
	return out
}

// recordingConn is a net.Conn whose traffic a transcript records. It wraps
// the connection the SMTP dialogue is spoken on: the TCP connection, then
// the TLS connection after STARTTLS (so the transcript is the plain text).
type recordingConn struct {
	net.Conn
	t *transcript
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.t.read(p[:n])
	}
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.t.wrote(p[:n])
	}
	return n, err
}

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
