package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// demoPOP3 is the POP3 side of the demo mail server (RFC 1939 with CAPA,
// RFC 2449, and STLS, RFC 2595): just enough for a service check, a greeting,
// CAPA, STLS, USER/PASS, STAT, NOOP and QUIT, on a maildrop of one message.
// It is not a mail store: no LIST, RETR or DELE.
//
// Like Dovecot by default, it refuses USER/PASS on a plain connection when
// it offers STLS (plaintext: false); while broken (scout dev --break) it
// greets with -ERR [SYS/PERM] (RFC 3206) and closes.
type demoPOP3 struct {
	ln        net.Listener
	tls       *tls.Config // STLS; nil: not offered
	plaintext bool        // USER/PASS allowed before TLS
	user, pw  string
	broken    func() bool
	size      int // octets of the one message

	wg sync.WaitGroup
}

// serve accepts sessions until ctx ends, then waits for them to end.
func (p *demoPOP3) serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = p.ln.Close() })
	defer stop()
	var conns sync.Map
	defer func() {
		conns.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); return true })
		p.wg.Wait()
	}()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("demo pop3: %w", err)
		}
		conns.Store(c, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer conns.Delete(c)
			defer c.Close()
			p.session(c)
		}()
	}
}

// session runs one POP3 session on c.
func (p *demoPOP3) session(c net.Conn) {
	br := bufio.NewReader(c)
	r := textproto.NewReader(br)
	send := func(lines ...string) bool {
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := fmt.Fprint(c, strings.Join(lines, "\r\n")+"\r\n")
		return err == nil
	}
	_, implicit := c.(*tls.Conn)
	inTLS := implicit
	if p.broken() {
		send("-ERR [SYS/PERM] Service unavailable")
		return
	}
	if !send("+OK Email Scout demo POP3 ready") {
		return
	}
	user, authed := "", false
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd = strings.ToUpper(cmd); {
		case cmd == "CAPA":
			caps := []string{"+OK Capability list follows", "USER", "IMPLEMENTATION Email-Scout-demo"}
			if p.tls != nil && !inTLS {
				caps = append(caps, "STLS")
			}
			send(append(caps, ".")...)
		case cmd == "STLS" && p.tls != nil && !inTLS && !authed:
			if br.Buffered() > 0 { // text after STLS, before the handshake: an injection
				send("-ERR STLS must be the last command before the handshake")
				return
			}
			send("+OK Begin TLS negotiation")
			tc := tls.Server(c, p.tls)
			_ = tc.SetDeadline(time.Now().Add(time.Minute))
			if tc.Handshake() != nil {
				return
			}
			_ = tc.SetDeadline(time.Time{})
			c, inTLS = tc, true
			br = bufio.NewReader(c)
			r = textproto.NewReader(br)
		case (cmd == "USER" || cmd == "PASS") && !inTLS && !p.plaintext:
			send("-ERR [AUTH] Plaintext authentication disallowed on non-secure (STLS) connections")
		case cmd == "USER" && !authed:
			user = arg
			send("+OK")
		case cmd == "PASS" && !authed && user != "":
			if user != p.user || arg != p.pw {
				user = ""
				send("-ERR [AUTH] Authentication failed")
				continue
			}
			authed = true
			send("+OK Logged in")
		case cmd == "STAT" && authed:
			send(fmt.Sprintf("+OK 1 %d", p.size))
		case cmd == "NOOP" && authed:
			send("+OK")
		case cmd == "QUIT":
			send("+OK Logging out")
			return
		default:
			send("-ERR command not valid here")
		}
	}
}
