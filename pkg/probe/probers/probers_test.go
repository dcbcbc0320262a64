package probers

import (
	"net"
	"strconv"
	"testing"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// TestFor: each service kind gets the prober that speaks its protocol (a
// POP3 greeting is a protocol error to the SMTP and IMAP probers, and
// passes only POP3's); a round trip gets none.
func TestFor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				p := &probetest.Peer{C: c}
				_ = p.Send("+OK POP3 ready")
				for {
					line, err := p.Line()
					if err != nil {
						return
					}
					switch probetest.Upper(line) {
					case "CAPA":
						_ = p.Send("+OK", "UIDL", ".")
					case "QUIT":
						_ = p.Send("+OK bye")
						return
					default:
						_ = p.Send("-ERR unknown")
					}
				}
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	n, _ := strconv.Atoi(port)
	tg := probe.Target{Host: "127.0.0.1", Port: n, TLS: checks.TLSNone}
	for kind, want := range map[string]string{events.KindSMTP: events.StatusFailed, events.KindIMAP: events.StatusFailed, events.KindPOP3: events.StatusOK} {
		r := For(kind)(probetest.Context(t), tg)
		if r.Protocol != kind || r.Status() != want {
			t.Errorf("For(%s): protocol %q status %q (%v), want %s", kind, r.Protocol, r.Status(), r.Err, want)
		}
	}
	if For(events.KindRoundTrip) != nil {
		t.Error("For(roundtrip) is not nil")
	}
}
