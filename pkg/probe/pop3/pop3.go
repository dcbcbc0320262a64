// Package pop3 is a small, strict POP3 client for one short session:
// greeting, CAPA, STLS, USER/PASS or AUTH (SASL, RFC 5034: XOAUTH2 and
// OAUTHBEARER for OAuth), STAT, QUIT.
//
// It follows RFC 1939 (POP3: "+OK"/"-ERR" status indicators, multi-line
// responses ended by a lone "." with byte-stuffing, section 3), RFC 2449
// (CAPA, section 5, and extended response codes in brackets, section 8,
// such as [IN-USE] and [LOGIN-DELAY]), RFC 3206 (the [SYS/TEMP],
// [SYS/PERM] and [AUTH] codes) and RFC 2595 (STLS, section 4: after the
// +OK, the client starts the TLS handshake at once and then forgets the
// capabilities it had).
//
// Strictness: every command gets exactly one response, which must begin
// with "+OK" or "-ERR" (upper case, then a space or the end of the line);
// data the server sends before a command is written (unsolicited data, or
// plain text injected after the +OK to STLS) is a *ProtocolError, and so is
// a malformed response. A negative response is an *Error with the RFC 2449
// response code, if any.
//
// A POP3 session sees a snapshot of the maildrop taken at login and holds
// an exclusive lock on it until QUIT (RFC 1939 section 8): a poller must use
// a fresh session each time and always QUIT (docs/field-cases.md, c14). The client
// does not reconnect or keep sessions.
//
// Deadlines are the caller's: close the connection (or set its deadline)
// to bound a session.
package pop3

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
)

// MaxRead bounds the bytes read from the server in one session, so that a
// hostile server cannot make the client use unbounded memory.
const MaxRead = 1 << 20

// maxMultiLines bounds the lines of one multi-line response.
const maxMultiLines = 1024

// Error is a negative ("-ERR") response.
type Error struct {
	Command string // the command answered ("greeting" for the greeting)
	// Code is the RFC 2449 extended response code without brackets, upper
	// case ("IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM", "AUTH"), or "".
	Code string
	Text string // the text after the code
}

func (e *Error) Error() string {
	s := "pop3 " + e.Command + ": -ERR"
	if e.Code != "" {
		s += " [" + e.Code + "]"
	}
	if e.Text != "" {
		s += " " + e.Text
	}
	return s
}

// Temporary reports whether the refusal is temporary: the maildrop is
// locked by another session ([IN-USE], RFC 2449 section 8.1.1), logins come
// too often ([LOGIN-DELAY], section 8.1.2), or the server has a passing
// problem ([SYS/TEMP], RFC 3206 section 4).
func (e *Error) Temporary() bool {
	switch e.Code {
	case "IN-USE", "LOGIN-DELAY", "SYS/TEMP":
		return true
	}
	return false
}

// ProtocolError is a response that breaks RFC 1939, or data the server
// sent when none was due.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "pop3 protocol violation: " + e.Msg }

func protocolf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// Client is one POP3 session on a connection. It is not safe for
// concurrent use.
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	r    *textproto.Reader
	// Trace, when not nil, receives every line the server sends, without
	// CRLF, in order. It never sees what the client sends, so never a
	// password.
	Trace func(line string)
}

// NewClient starts a session on conn; read the greeting next.
func NewClient(conn net.Conn) *Client {
	c := &Client{}
	c.Upgrade(conn)
	return c
}

// Conn returns the connection the session runs on.
func (c *Client) Conn() net.Conn { return c.conn }

// Upgrade continues the session on conn, the TLS connection made over
// Conn() after STLS.
func (c *Client) Upgrade(conn net.Conn) {
	c.conn = conn
	c.br = bufio.NewReader(&limitReader{r: conn, n: MaxRead})
	c.r = textproto.NewReader(c.br)
}

// Greeting reads the server's greeting (RFC 1939 section 4) and returns its
// text; "-ERR" gives an *Error.
func (c *Client) Greeting() (string, error) {
	return c.status("greeting")
}

// Capa sends CAPA and returns the capability lines (RFC 2449 section 5),
// e.g. "STLS", "USER", "SASL PLAIN", "RESP-CODES". A server without CAPA
// answers "-ERR": an *Error.
func (c *Client) Capa() ([]string, error) {
	if err := c.cmd("CAPA", "CAPA"); err != nil {
		return nil, err
	}
	if _, err := c.status("CAPA"); err != nil {
		return nil, err
	}
	return c.multiLine()
}

// STLS asks to start TLS (RFC 2595 section 4). After nil, the caller must
// do the TLS handshake on Conn() at once, call Upgrade with the TLS
// connection, and forget the capabilities (send CAPA again). Plain text
// that arrives after the +OK is a *ProtocolError (command injection).
func (c *Client) STLS() error {
	if err := c.cmd("STLS", "STLS"); err != nil {
		return err
	}
	if _, err := c.status("STLS"); err != nil {
		return err
	}
	if n := c.br.Buffered(); n > 0 {
		return protocolf("%d bytes of plain text after the +OK to STLS, before the handshake: %q", n, c.peek())
	}
	return nil
}

// User sends USER name (RFC 1939 section 7).
func (c *Client) User(name string) error {
	if err := checkArg(name); err != nil {
		return err
	}
	if err := c.cmd("USER", "USER "+name); err != nil {
		return err
	}
	_, err := c.status("USER")
	return err
}

// Pass sends PASS password (RFC 1939 section 7). On success the session is
// in the TRANSACTION state, holding the maildrop's lock until Quit.
func (c *Client) Pass(password string) error {
	if err := checkArg(password); err != nil {
		return err
	}
	if err := c.cmd("PASS", "PASS "+password); err != nil {
		return err
	}
	_, err := c.status("PASS")
	return err
}

// maxAuthLine is the longest AUTH command with an initial response
// (RFC 5034 section 4: 255 octets, CRLF included, as RFC 2449 limits
// command lines); a longer initial response is sent after an empty
// challenge instead. OAuth tokens (Microsoft's run to 2 KB) usually are.
const maxAuthLine = 255

// Auth logs in with the SASL mechanism of sc (RFC 5034: AUTH mechanism
// [initial-response], base64 challenges "+ ..." answered by base64 lines,
// "*" to cancel): the initial response goes on the AUTH line when the
// line fits in 255 octets ("=" for an empty one), else as the answer to
// the server's first, empty, challenge. "+OK" is success; "-ERR" is an
// *Error (e.g. [AUTH]). An error of sc cancels the exchange with "*".
// Trace sees the server's lines only, never the credential.
func (c *Client) Auth(sc sasl.Client) error {
	mech, ir, err := sc.Start()
	if err != nil {
		return err
	}
	if err := checkArg(mech); err != nil || strings.ContainsRune(mech, ' ') {
		return fmt.Errorf("pop3: bad SASL mechanism %q", mech)
	}
	line := "AUTH " + mech
	switch {
	case ir == nil:
	case len(ir) == 0:
		line += " ="
		ir = nil
	case len(line)+1+base64.StdEncoding.EncodedLen(len(ir))+2 <= maxAuthLine:
		line += " " + base64.StdEncoding.EncodeToString(ir)
		ir = nil
	}
	if err := c.cmd("AUTH", line); err != nil {
		return err
	}
	for range 4 {
		l, err := c.readLine()
		if err != nil {
			return err
		}
		challenge, ok := indicator(l, "+")
		if !ok {
			if _, ok := indicator(l, "+OK"); ok {
				return nil
			}
			if rest, ok := indicator(l, "-ERR"); ok {
				return negative("AUTH", rest)
			}
			return protocolf("response %q to AUTH is neither +OK, -ERR nor a challenge", l)
		}
		var resp []byte
		if ir != nil {
			if challenge != "" {
				return protocolf("AUTH: challenge %q where an empty one was due for the initial response", challenge)
			}
			resp, ir = ir, nil
		} else {
			dec, derr := base64.StdEncoding.DecodeString(challenge)
			if derr != nil {
				_ = c.cancelAuth()
				return protocolf("AUTH: challenge %q is not base64", challenge)
			}
			if resp, err = sc.Next(dec); err != nil {
				if cerr := c.cancelAuth(); cerr != nil {
					return cerr
				}
				return err
			}
		}
		if _, err := io.WriteString(c.conn, base64.StdEncoding.EncodeToString(resp)+"\r\n"); err != nil {
			return err
		}
	}
	return protocolf("AUTH: more than 4 challenges")
}

// cancelAuth sends "*" and reads the server's -ERR (RFC 5034 section 4).
func (c *Client) cancelAuth() error {
	if _, err := io.WriteString(c.conn, "*\r\n"); err != nil {
		return err
	}
	_, err := c.status("AUTH")
	var e *Error
	if errors.As(err, &e) {
		return nil
	}
	return err
}

// negative is the *Error of a "-ERR" response's text.
func negative(command, rest string) *Error {
	e := &Error{Command: command, Text: rest}
	if code, text, ok := strings.Cut(rest, "]"); ok && strings.HasPrefix(code, "[") {
		e.Code, e.Text = strings.ToUpper(code[1:]), strings.TrimSpace(text)
	}
	return e
}

// Stat sends STAT and returns the number of messages in the maildrop and
// its size in octets (RFC 1939 section 5, "drop listing").
func (c *Client) Stat() (count int, size int64, err error) {
	if err := c.cmd("STAT", "STAT"); err != nil {
		return 0, 0, err
	}
	text, err := c.status("STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(text)
	if len(f) >= 2 {
		n, err1 := strconv.Atoi(f[0])
		sz, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 == nil && err2 == nil && n >= 0 && sz >= 0 {
			return n, sz, nil
		}
	}
	return 0, 0, protocolf("STAT answer %q is not \"+OK <count> <size>\"", text)
}

// Quit sends QUIT (RFC 1939 section 6): the server leaves the maildrop as
// it was (nothing was deleted) and releases its lock.
func (c *Client) Quit() error {
	if err := c.cmd("QUIT", "QUIT"); err != nil {
		return err
	}
	_, err := c.status("QUIT")
	return err
}

// checkArg refuses arguments that would end the command line early.
func checkArg(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return errors.New("pop3: argument contains CR, LF or NUL")
	}
	return nil
}

// cmd writes one command line, after checking that the server has not
// sent anything unasked.
func (c *Client) cmd(name, line string) error {
	if n := c.br.Buffered(); n > 0 {
		return protocolf("%d bytes of unsolicited data before %s: %q", n, name, c.peek())
	}
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err
}

// readLine reads one line without its CRLF. A CR or NUL inside the line
// breaks RFC 1939 (CR and LF come only as the line's end, section 3) and is
// a *ProtocolError: it would otherwise reach results and logs.
func (c *Client) readLine() (string, error) {
	line, err := c.r.ReadLine()
	if err != nil {
		return "", err
	}
	if c.Trace != nil {
		c.Trace(line)
	}
	if strings.ContainsAny(line, "\r\x00") {
		return "", protocolf("line %q holds a bare CR or a NUL", line)
	}
	return line, nil
}

// status reads a single-line response: "+OK" gives its text, "-ERR" an
// *Error.
func (c *Client) status(command string) (string, error) {
	line, err := c.readLine()
	if err != nil {
		return "", err
	}
	if rest, ok := indicator(line, "+OK"); ok {
		return rest, nil
	}
	if rest, ok := indicator(line, "-ERR"); ok {
		return "", negative(command, rest)
	}
	return "", protocolf("response %q to %s is neither +OK nor -ERR", line, command)
}

// indicator reports whether line starts with the status indicator ind
// followed by a space or the end of the line, and returns the rest.
func indicator(line, ind string) (string, bool) {
	rest, ok := strings.CutPrefix(line, ind)
	if !ok {
		return "", false
	}
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' {
		return "", false
	}
	return rest[1:], true
}

// multiLine reads the lines of a multi-line response up to the lone ".",
// undoing byte-stuffing (RFC 1939 section 3).
func (c *Client) multiLine() ([]string, error) {
	var lines []string
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		if line == "." {
			return lines, nil
		}
		if len(lines) >= maxMultiLines {
			return nil, protocolf("multi-line response longer than %d lines", maxMultiLines)
		}
		lines = append(lines, strings.TrimPrefix(line, "."))
	}
}

func (c *Client) peek() string {
	b, _ := c.br.Peek(min(c.br.Buffered(), 80))
	return string(b)
}

type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, protocolf("the server sent more than %d bytes", MaxRead)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
