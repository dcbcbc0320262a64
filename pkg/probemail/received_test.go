package probemail

import (
	"testing"
	"time"
)

func TestHops(t *testing.T) {
	// As Postfix writes them, newest first: the probe's way back to the
	// monitor, then its way in.
	received := []string{
		"from mx.acme.example (mx.acme.example [127.0.0.1])\r\n\tby mail.monitor.example (Postfix) with ESMTPS id 4XyZ2\r\n\tfor <scout@monitor.example>; Sat, 05 Dec 2026 03:00:02 +0000 (UTC)",
		"by mx.acme.example (Postfix, from userid 1001) id 4AbC1; Sat, 5 Dec 2026 04:00:01 +0100 (CET)",
		"from relay.monitor.example (relay.monitor.example [127.0.0.2]) (using TLSv1.3) by mx.acme.example (Postfix) with ESMTPS id 4AbC0 for <webscout@acme.example>; Sat, 05 Dec 2026 03:00:00 +0000",
		"garbage without a date",
	}
	hops := Hops(received)
	if len(hops) != 4 {
		t.Fatalf("%d hops", len(hops))
	}
	if h := hops[0]; h.By != "" || !h.At.IsZero() {
		t.Errorf("oldest (garbage) hop %+v", h)
	}
	want := []struct {
		from, by, with, id string
		at                 time.Time
		delay              int64
	}{
		{"relay.monitor.example", "mx.acme.example", "ESMTPS", "4AbC0", time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC), -1},
		{"", "mx.acme.example", "", "4AbC1", time.Date(2026, 12, 5, 3, 0, 1, 0, time.UTC), 1000},
		{"mx.acme.example", "mail.monitor.example", "ESMTPS", "4XyZ2", time.Date(2026, 12, 5, 3, 0, 2, 0, time.UTC), 1000},
	}
	for i, w := range want {
		h := hops[i+1]
		if h.From != w.from || h.By != w.by || h.With != w.with || h.ID != w.id || !h.At.Equal(w.at) {
			t.Errorf("hop %d = %+v, want %+v", i+1, h, w)
		}
		if w.delay < 0 != (h.DelayMS == nil) || h.DelayMS != nil && *h.DelayMS != w.delay {
			t.Errorf("hop %d delay %v, want %d", i+1, h.DelayMS, w.delay)
		}
	}
	if len(Hops(make([]string, 100))) != maxHops {
		t.Error("hops are not capped")
	}
}
