package receiver

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a connection is refused (label "reason" of
// scout_receiver_connections_refused_total).
const (
	RefusedMaxConnections = "max_connections" // Config.MaxConnections are open
	RefusedMaxPerIP       = "max_per_ip"      // Config.MaxConnectionsPerIP are open from the client's address
)

// tooManyConnections is the reply to a connection over a cap, in place of
// the greeting (RFC 5321 section 4.2.3: 421, service not available; RFC
// 3463 4.7.0: a policy refusal). The client tries again later.
const tooManyConnections = "421 4.7.0 Too many connections, try again later\r\n"

// refuseWriteTimeout bounds the write of tooManyConnections: the socket is
// new, so its send buffer is empty and the write does not block.
const refuseWriteTimeout = time.Second

// capListener caps the connections open at once, overall and per remote
// address (an IPv4 address, or the /64 of an IPv6 address, which one
// client usually holds whole). A connection over a cap is answered
// tooManyConnections and closed before the SMTP server sees it. It counts
// open, refused and timed-out connections in metrics.
type capListener struct {
	net.Listener
	max, maxPerIP int
	metrics       *metrics

	mu    sync.Mutex
	open  int
	perIP map[string]int
}

func newCapListener(l net.Listener, max, maxPerIP int, m *metrics) *capListener {
	return &capListener{Listener: l, max: max, maxPerIP: maxPerIP, metrics: m, perIP: map[string]int{}}
}

// Accept returns the next connection within the caps; the ones over a cap
// are refused on the way.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ipKey(c.RemoteAddr())
		if reason := l.admit(key); reason != "" {
			l.metrics.connRefused.WithLabelValues(reason).Inc()
			_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
			_, _ = c.Write([]byte(tooManyConnections))
			_ = c.Close()
			continue
		}
		return &cappedConn{Conn: c, l: l, key: key}, nil
	}
}

// admit counts a new connection from key in, or returns the reason
// (Refused*) it is over a cap.
func (l *capListener) admit(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.max:
		return RefusedMaxConnections
	case l.perIP[key] >= l.maxPerIP:
		return RefusedMaxPerIP
	}
	l.open++
	l.perIP[key]++
	l.metrics.connOpen.Set(float64(l.open))
	return ""
}

// release counts a connection from key out.
func (l *capListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[key]--; l.perIP[key] <= 0 {
		delete(l.perIP, key)
	}
	l.metrics.connOpen.Set(float64(l.open))
}

// ipKey is the cap's key of a remote address: the IPv4 address, or the
// IPv6 /64; the whole string when it is not an IP address.
func ipKey(a net.Addr) string {
	host := a.String()
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip4 := ta.IP.To4(); ip4 != nil {
			return ip4.String()
		}
		return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// cappedConn is an admitted connection: Close counts it out (once). A
// read that timed out is counted, and every later read fails with its
// error: the SMTP server then answers 421 4.4.2 and closes, even when the
// timeout ended a message (Data) rather than a command.
type cappedConn struct {
	net.Conn
	l        *capListener
	key      string
	once     sync.Once
	timedOut atomic.Pointer[error]
}

func (c *cappedConn) Read(p []byte) (int, error) {
	if err := c.timedOut.Load(); err != nil {
		return 0, *err
	}
	n, err := c.Conn.Read(p)
	if isTimeout(err) && c.timedOut.CompareAndSwap(nil, &err) {
		c.l.metrics.connTimeouts.Inc()
	}
	return n, err
}

// isTimeout reports whether err is a network timeout (a read deadline).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}
