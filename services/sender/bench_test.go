package sender_test

import (
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
)

// BenchmarkProbe runs tests through the sender at saturation: b.N
// test.scheduled events are queued, and the clock stops when b.N mail.sent
// (status sent) are stored. Each probe is a new SMTP connection to a
// loopback relay (plain text). It reports probes/s.
func BenchmarkProbe(b *testing.B) {
	e := newEnv(b)
	relay := mailtest.NewServer(b, mailtest.Options{})
	for i := 0; i < b.N; i++ {
		e.schedule("acme-roundtrip", site, time.Hour)
	}
	cfg := relayConfig(relay.Addr)
	cfg.Workers = 8
	b.ResetTimer()
	start := time.Now()
	e.start(cfg, nil)
	sent := e.waitSent(b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	for _, m := range sent {
		if m.Status != events.SentOK {
			b.Fatalf("mail.sent %+v", m)
		}
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "probes/s")
	if n := len(relay.Messages()); n != b.N {
		b.Fatalf("relay holds %d probes for %d tests", n, b.N)
	}
}
