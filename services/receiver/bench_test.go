package receiver_test

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkReturn delivers verified returns over loopback SMTP, a new
// connection per message as MTAs do, each answered 250 only after
// JetStream stored its mail.returned. It reports returns/s and the p50/p99
// of one delivery (connect to 250).
func BenchmarkReturn(b *testing.B) {
	e := newEnv(b)
	r := e.start(config())
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = reflection(b, probe(b), acmeKey, target, now.Add(-time.Second))
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if reply, _ := send(b, r.addr, target, returnAddr, msgs[i]); reply.Code != 250 {
			b.Fatalf("reply %v", reply)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "returns/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	if n := e.count(); n != b.N {
		b.Fatalf("%d stored for %d returns", n, b.N)
	}
}

// BenchmarkReturnParallel is BenchmarkReturn with 8 MTAs delivering at
// once.
func BenchmarkReturnParallel(b *testing.B) {
	e := newEnv(b)
	r := e.start(config())
	msgs := make(chan []byte, b.N)
	for i := 0; i < b.N; i++ {
		msgs <- reflection(b, probe(b), acmeKey, target, now.Add(-time.Second))
	}
	close(msgs)
	b.SetParallelism(4) // 4 x GOMAXPROCS(2) = 8 clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if reply, _ := send(b, r.addr, target, returnAddr, <-msgs); reply.Code != 250 {
				b.Errorf("reply %v", reply)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "returns/s")
	if n := e.count(); n != b.N {
		b.Fatalf("%d stored for %d returns", n, b.N)
	}
}
