package receiver_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/services/receiver"
)

// The receiver is the internet-facing SMTP server of the return domain
// (issue 17, part 3): these tests send it what the internet sends. All of
// it runs on 127.0.0.1, so the connections of "many clients" come from
// one address; each test sets the per-address cap to what it needs and
// says so.

// smtpConn is a raw SMTP client connection.
type smtpConn struct {
	t    testing.TB
	conn net.Conn
	tp   *textproto.Conn
}

// dial connects to addr and returns the connection and the server's first
// reply (the 220 greeting, or the 421 of a connection over a cap).
func dial(t testing.TB, addr string) (*smtpConn, int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &smtpConn{t: t, conn: conn, tp: textproto.NewConn(conn)}
	code, msg := c.reply()
	return c, code, msg
}

// reply reads one reply (its code and text); 0 when the connection ended.
func (c *smtpConn) reply() (int, string) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, err.Error()
	}
	return code, msg
}

// cmd sends one command line and returns the reply.
func (c *smtpConn) cmd(line string) (int, string) {
	c.t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return 0, err.Error()
	}
	return c.reply()
}

// closed reports whether the server closed the connection (EOF or reset
// on the next read).
func (c *smtpConn) closed() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := c.tp.R.ReadByte()
	return err != nil && !isTimeoutErr(err)
}

// rest reads the replies until the server closes the connection (closed)
// or sends nothing for 30 s (not closed).
func (c *smtpConn) rest() (codes []int, msgs []string, closed bool) {
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		code, msg, err := c.tp.ReadResponse(0)
		if err != nil && code == 0 {
			return codes, msgs, errors.Is(err, io.EOF) || !isTimeoutErr(err)
		}
		codes, msgs = append(codes, code), append(msgs, msg)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// raiseFileLimit lifts this process's open-file limit to at least n (or
// the hard limit); the tests with thousands of connections need two
// descriptors each, client and server.
func raiseFileLimit(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < n {
		t.Skipf("open-file limit %d, need %d", lim.Cur, n)
	}
}

// waitMetric waits until the metric has the value want (the server counts
// a closed connection out when its goroutine ends, just after the client
// sees the close). It fails after 30 s.
func waitMetric(t testing.TB, r *running, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := testkit.MustMetric(t, r.reg, name, labels)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, v, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNeverAnOpenRelay: every recipient that is not a return address, a
// VERP address of ours or postmaster gets 550 at RCPT, whatever its
// form (source routes, %-hacks, quoted local parts, look-alike domains),
// from any sender; the message is never taken (DATA without a recipient
// gets 5xx) and nothing is stored.
func TestNeverAnOpenRelay(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	foreign := []string{
		"victim@elsewhere.example",
		"postmaster@elsewhere.example",
		"scout-return+eu-west@monitor.example.elsewhere.example",
		"scout-return+eu-west@elsewhere.example",
		"victim%elsewhere.example@monitor.example",
		`"victim@elsewhere.example"@monitor.example`,
		"victim@elsewhere.example@monitor.example",
		"@monitor.example:victim@elsewhere.example",
		"victim@[127.0.0.1]",
		"abuse@monitor.example",
		"scout-return+eu-west",
	}
	for _, from := range []string{target, "spammer@elsewhere.example", ""} {
		c, code, _ := dial(t, r.addr)
		if code != 220 {
			t.Fatalf("greeting %d", code)
		}
		if code, msg := c.cmd("EHLO relay-test.example"); code != 250 {
			t.Fatalf("EHLO: %d %s", code, msg)
		}
		for _, rcpt := range foreign {
			if code, msg := c.cmd("MAIL FROM:<" + from + ">"); code != 250 {
				t.Fatalf("MAIL FROM:<%s>: %d %s", from, code, msg)
			}
			code, msg := c.cmd("RCPT TO:<" + rcpt + ">")
			if code < 500 || code > 599 {
				t.Errorf("from <%s> RCPT TO:<%s>: %d %s, want 5xx", from, rcpt, code, msg)
			}
			if code, msg := c.cmd("DATA"); code < 500 {
				t.Errorf("from <%s> DATA after RCPT TO:<%s> refused: %d %s, want 5xx", from, rcpt, code, msg)
			}
			if code, _ := c.cmd("RSET"); code != 250 {
				t.Fatalf("RSET: %d", code)
			}
		}
		c.cmd("QUIT")
	}
	if n := e.count(); n != 0 {
		t.Errorf("%d mail.returned stored", n)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_rejected_total", map[string]string{"reason": receiver.ReasonRecipient}); v < float64(len(foreign)) {
		t.Errorf("rejected_total{reason=recipient} = %v for %d foreign recipients per sender", v, len(foreign))
	}
}

// TestOversizeMessageNotHeld: a message 40 times SCOUT_RECEIVER_MAX_BYTES
// is answered 552 (RFC 1870: 552 5.3.4, at MAIL when the client declares
// its SIZE, else after the data) and nothing is stored, and the server
// does not hold it: what the whole process allocates while it comes in
// (runtime.MemStats TotalAlloc, the client writing from one prepared
// buffer) stays far below the message's size; the same through BDAT
// (RFC 3030). The connection stays usable: a return after it is stored.
func TestOversizeMessageNotHeld(t *testing.T) {
	e := newEnv(t)
	cfg := config()
	cfg.MaxBytes = 64 << 10
	r := e.start(cfg)
	size := 40 * int(cfg.MaxBytes)
	line := strings.Repeat("x", 76) + "\r\n"
	var big bytes.Buffer
	big.WriteString("From: junk@elsewhere.example\r\nTo: " + returnAddr + "\r\nSubject: big\r\n\r\n")
	for big.Len() < size {
		big.WriteString(line)
	}
	big.WriteString(".\r\n")

	c, _, _ := dial(t, r.addr)
	c.cmd("EHLO big.example")
	if code, msg := c.cmd(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", target, big.Len())); code != 552 {
		t.Errorf("MAIL with SIZE=%d over the limit: %d %s, want 552", big.Len(), code, msg)
	}
	if code, msg := c.cmd("MAIL FROM:<" + target + ">"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, msg)
	}
	if code, msg := c.cmd("RCPT TO:<" + returnAddr + ">"); code != 250 {
		t.Fatalf("RCPT: %d %s", code, msg)
	}
	if code, msg := c.cmd("DATA"); code != 354 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	data := big.Bytes()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := c.conn.Write(data); err != nil {
		t.Fatal(err)
	}
	code, msg := c.reply()
	runtime.ReadMemStats(&after)
	if code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Errorf("reply to a %d-byte message: %d %s, want 552 5.3.4", len(data), code, msg)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	inuse := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d-byte message, limit %d: allocated %d bytes while it came in, heap in use %+d bytes", len(data), cfg.MaxBytes, alloc, inuse)
	if alloc > uint64(len(data)/4) {
		t.Errorf("allocated %d bytes for a refused %d-byte message: the server holds what it refuses", alloc, len(data))
	}
	if inuse > int64(len(data)/4) {
		t.Errorf("heap in use grew %d bytes for a refused %d-byte message", inuse, len(data))
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_rejected_total", map[string]string{"reason": receiver.ReasonTooLarge}); v != 1 {
		t.Errorf("rejected_total{reason=too_large} = %v, want 1", v)
	}
	// The same through BDAT (RFC 3030 CHUNKING, which go-smtp offers): the
	// chunk is read and dropped.
	c.cmd("MAIL FROM:<" + target + ">")
	c.cmd("RCPT TO:<" + returnAddr + ">")
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := c.tp.PrintfLine("BDAT %d LAST", len(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write(data); err != nil {
		t.Fatal(err)
	}
	code, msg = c.reply()
	runtime.ReadMemStats(&after)
	if code != 552 {
		t.Errorf("reply to a %d-byte BDAT chunk: %d %s, want 552", len(data), code, msg)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(data)/4) {
		t.Errorf("allocated %d bytes for a refused %d-byte BDAT chunk", alloc, len(data))
	}
	// The same connection then delivers a return.
	ret := reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))
	c.cmd("MAIL FROM:<" + target + ">")
	c.cmd("RCPT TO:<" + returnAddr + ">")
	if code, _ := c.cmd("DATA"); code != 354 {
		t.Fatalf("DATA after the refusal: %d", code)
	}
	w := c.tp.DotWriter()
	_, _ = w.Write(ret)
	_ = w.Close()
	if code, msg := c.reply(); code != 250 {
		t.Errorf("return after an oversize message: %d %s", code, msg)
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d stored, want 1", n)
	}
}

// TestConnectionCaps: a connection over SCOUT_RECEIVER_MAX_CONNECTIONS_PER_IP
// or SCOUT_RECEIVER_MAX_CONNECTIONS is answered 421 4.7.0 in place of the
// greeting and closed, counted by reason; the gauge follows the open
// connections, and a freed slot takes the next one.
func TestConnectionCaps(t *testing.T) {
	for _, tc := range []struct {
		name          string
		max, maxPerIP int
		reason        string
	}{
		{"per ip", 8, 3, receiver.RefusedMaxPerIP},
		{"overall", 3, 3, receiver.RefusedMaxConnections},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := config()
			cfg.MaxConnections, cfg.MaxConnectionsPerIP = tc.max, tc.maxPerIP
			r := e.start(cfg)
			var held []*smtpConn
			for range 3 {
				c, code, msg := dial(t, r.addr)
				if code != 220 {
					t.Fatalf("connection %d: %d %s", len(held)+1, code, msg)
				}
				held = append(held, c)
			}
			over, code, msg := dial(t, r.addr)
			if code != 421 || !strings.HasPrefix(msg, "4.7.0 Too many connections") {
				t.Errorf("fourth connection: %d %s, want 421 4.7.0 Too many connections", code, msg)
			}
			if !over.closed() {
				t.Error("the refused connection stays open")
			}
			if v := testkit.MustMetric(t, r.reg, "scout_receiver_connections_refused_total", map[string]string{"reason": tc.reason}); v != 1 {
				t.Errorf("connections_refused_total{reason=%s} = %v, want 1", tc.reason, v)
			}
			if v := testkit.MustMetric(t, r.reg, "scout_receiver_connections_open", nil); v != 3 {
				t.Errorf("connections_open = %v, want 3", v)
			}
			held[0].cmd("QUIT")
			waitMetric(t, r, "scout_receiver_connections_open", nil, 2)
			if _, code, msg := dial(t, r.addr); code != 220 {
				t.Errorf("after one closed: %d %s, want 220", code, msg)
			}
		})
	}
}

// TestIdleConnectionsCapped: 2,000 idle connections (from one address: the
// per-address cap is lifted to the overall one here) fill the overall cap
// of 1,000 and the other 1,000 are refused with 421 4.7.0. A probe that
// comes while a slot is free is stored at once; one that comes while all
// are taken gets 421 4.7.0 (the MTA retries), and is stored as soon as a
// slot frees. From several addresses, SCOUT_RECEIVER_MAX_CONNECTIONS_PER_IP
// keeps one client from taking them all (TestConnectionCaps).
func TestIdleConnectionsCapped(t *testing.T) {
	const max, idle = 1000, 2000
	raiseFileLimit(t, 2*idle+200)
	e := newEnv(t)
	cfg := config()
	cfg.MaxConnections, cfg.MaxConnectionsPerIP, cfg.CommandTimeout = max, max, 5*time.Minute
	r := e.start(cfg)
	greeted, refused := 0, 0
	var held []*smtpConn
	open := func(n int) {
		for range n {
			c, code, msg := dial(t, r.addr)
			switch {
			case code == 220:
				greeted++
				held = append(held, c)
			case code == 421 && strings.HasPrefix(msg, "4.7.0"):
				refused++
				_ = c.conn.Close()
			default:
				t.Fatalf("connection %d: %d %s", greeted+refused+1, code, msg)
			}
		}
	}
	open(max - 1)
	if reply, phase := send(t, r.addr, target, returnAddr, reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))); reply.Code != 250 {
		t.Fatalf("probe beside %d idle connections: %v in %s", max-1, reply, phase)
	}
	open(idle - (max - 1))
	if greeted != max || refused != idle-max {
		t.Errorf("%d idle connections: %d greeted, %d refused; want %d and %d", idle, greeted, refused, max, idle-max)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_connections_open", nil); v != max {
		t.Errorf("connections_open = %v, want %d", v, max)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_connections_refused_total", map[string]string{"reason": receiver.RefusedMaxConnections}); v != idle-max {
		t.Errorf("connections_refused_total{reason=max_connections} = %v, want %d", v, idle-max)
	}
	msg := reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))
	if reply, phase := send(t, r.addr, target, returnAddr, msg); reply.Code != 421 || reply.Enhanced != "4.7.0" {
		t.Errorf("probe while the cap is full: %v in %s, want 421 4.7.0", reply, phase)
	}
	held[0].cmd("QUIT")
	waitMetric(t, r, "scout_receiver_connections_open", nil, max-1)
	if reply, phase := send(t, r.addr, target, returnAddr, msg); reply.Code != 250 {
		t.Errorf("probe retried once a slot freed: %v in %s", reply, phase)
	}
	if n := e.count(); n != 2 {
		t.Errorf("%d returns stored, want 2", n)
	}
}

// TestIdleAndSlowConnectionsTimedOut: idle connections, slowloris ones
// (a byte of a command line every 100 ms, never a whole line) and slow
// messages (a byte of DATA every 100 ms) are all answered 421 4.4.2 and
// closed, after SCOUT_RECEIVER_COMMAND_TIMEOUT for a command line and
// SCOUT_RECEIVER_TIMEOUT for a message, however steadily they trickle;
// each is counted in scout_receiver_connection_timeouts_total, and a probe
// is stored meanwhile. (The per-address cap is lifted: all come from
// 127.0.0.1.)
func TestIdleAndSlowConnectionsTimedOut(t *testing.T) {
	const idle, slowCmd, slowData = 500, 20, 20
	raiseFileLimit(t, 2*(idle+slowCmd+slowData)+200)
	e := newEnv(t)
	cfg := config()
	cfg.MaxConnections, cfg.MaxConnectionsPerIP = 1000, 1000
	cfg.CommandTimeout, cfg.Timeout = time.Second, 2*time.Second
	r := e.start(cfg)
	var conns []*smtpConn
	for range idle {
		c, code, _ := dial(t, r.addr)
		if code != 220 {
			t.Fatalf("greeting %d", code)
		}
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	var trickling sync.WaitGroup
	trickle := func(c *smtpConn, b []byte) {
		defer trickling.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.conn.Write(b[i%len(b) : i%len(b)+1]); err != nil {
				return
			}
		}
	}
	for range slowCmd {
		c, _, _ := dial(t, r.addr)
		conns = append(conns, c)
		trickling.Add(1)
		go trickle(c, []byte("NOOPNOOPNOOP"))
	}
	for range slowData {
		c, _, _ := dial(t, r.addr)
		for _, line := range []string{"EHLO slow.example", "MAIL FROM:<" + target + ">", "RCPT TO:<" + returnAddr + ">", "DATA"} {
			if code, msg := c.cmd(line); code >= 400 {
				t.Fatalf("%s: %d %s", line, code, msg)
			}
		}
		conns = append(conns, c)
		trickling.Add(1)
		go trickle(c, []byte("Subject: slow\r\n"))
	}
	defer func() { close(stop); trickling.Wait() }()
	if reply, phase := send(t, r.addr, target, returnAddr, reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))); reply.Code != 250 {
		t.Errorf("probe beside %d idle and %d slow connections: %v in %s", idle, slowCmd+slowData, reply, phase)
	}
	for i, c := range conns {
		// An idle connection gets 421 4.4.2. A slowloris one gets 501 for
		// the partial line first (go-smtp hands it to the command parser at
		// the timeout), a slow message's gets 421 4.4.2 for its DATA; then
		// the 421 4.4.2 of the next command's read, and the close.
		codes, msgs, closed := c.rest()
		if n := len(codes); n == 0 || codes[n-1] != 421 || !strings.HasPrefix(msgs[n-1], "4.4.2") || !closed {
			t.Errorf("connection %d: replies %v %q, closed %v; want 421 4.4.2 last, and the close", i, codes, msgs, closed)
		}
	}
	waitMetric(t, r, "scout_receiver_connections_open", nil, 0)
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_connection_timeouts_total", nil); v != float64(len(conns)) {
		t.Errorf("connection_timeouts_total = %v, want %d", v, len(conns))
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d returns stored, want 1", n)
	}
}

// TestReplayedReturnCountedOnce: a captured return replayed, as it is or
// re-stamped (another reflection time, another relay's Received field),
// is answered 250 (refusing it would only teach a replaying sender to
// retry) but stored once: JetStream drops the second mail.returned of a
// test within its duplicate window (10 minutes) and the receiver counts it
// in scout_receiver_duplicates_total. Older than SCOUT_RECEIVER_MAX_AGE, a
// replay is refused (TestForgedAndStrayMailRefused, "replay of an old
// probe"); in between, the evaluator ignores a return of a finished
// attempt (scout_evaluator_duplicate_returns_total).
func TestReplayedReturnCountedOnce(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	p := probe(t)
	orig := reflection(t, p, acmeKey, target, now.Add(-time.Second))
	restamped := append([]byte("Received: from replay.example by mx.elsewhere.example; Fri, 1 May 2026 14:00:03 +0000\r\n"),
		reflection(t, p, acmeKey, target, now.Add(-2*time.Second))...)
	for i, msg := range [][]byte{orig, orig, restamped} {
		if reply, phase := send(t, r.addr, target, returnAddr, msg); reply.Code != 250 {
			t.Fatalf("delivery %d: %v in %s", i+1, reply, phase)
		}
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d mail.returned stored for one probe delivered 3 times", n)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_duplicates_total", nil); v != 2 {
		t.Errorf("duplicates_total = %v, want 2", v)
	}
}
