package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
)

// TestDemoMXKeepsASessionPerReceiver: the demo mail server sends its
// reflections to each receiver over one kept SMTP session, shared by the
// return addresses routed there, as an MTA's connection cache would, and
// refuses an address it has no route for.
func TestDemoMXKeepsASessionPerReceiver(t *testing.T) {
	a := mailtest.NewServer(t, mailtest.Options{})
	b := mailtest.NewServer(t, mailtest.Options{})
	out := newRoutedSender(map[string]string{
		"scout@eu-west.return.test": a.Addr, "scout+2@eu-west.return.test": a.Addr, "scout@us-east.return.test": b.Addr,
	})
	for i, rcpt := range []string{"scout@eu-west.return.test", "Scout+2@EU-west.return.test", "scout@eu-west.return.test", "scout@us-east.return.test", "scout@us-east.return.test"} {
		msg := []byte(fmt.Sprintf("Subject: %d\r\n\r\nreflection\r\n", i))
		if err := out.Send(context.Background(), "probe@acme.example", []string{rcpt}, msg); err != nil {
			t.Fatalf("reflection %d to %s: %v", i, rcpt, err)
		}
	}
	err := out.Send(context.Background(), "probe@acme.example", []string{"scout@nowhere.test"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.Contains(err.Error(), "no route to scout@nowhere.test") {
		t.Errorf("an unrouted return address: err = %v, want no route", err)
	}
	out.close()
	if got := len(a.Wait(3, 10*time.Second)); got != 3 {
		t.Errorf("receiver a got %d reflections, want 3", got)
	}
	if got := len(b.Wait(2, 10*time.Second)); got != 2 {
		t.Errorf("receiver b got %d reflections, want 2", got)
	}
	if na, nb := a.Connections(), b.Connections(); na != 1 || nb != 1 {
		t.Errorf("SMTP sessions: %d to a and %d to b, want one each", na, nb)
	}
}
