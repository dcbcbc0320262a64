//go:build integration

package recorder_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
)

// BenchmarkInsert measures Store.Insert of check_results batches against a
// real clickhouse-server on loopback, and reports rows/s.
func BenchmarkInsert(b *testing.B) {
	ch := chtest.Start(b)
	st := openStore(b, ch, "bench")
	ctx := natstest.Context(b)
	for _, size := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			start := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
			rows := recorder.Rows{Results: make([]recorder.ResultRow, size)}
			n := 0
			b.ResetTimer()
			for b.Loop() {
				for i := range rows.Results {
					n++
					rtt := int64(1000 + n%5000)
					reply := &events.SMTPReply{Code: 250, Enhanced: "2.0.0", Text: "OK queued"}
					at := start.Add(time.Duration(n) * time.Second)
					rows.Results[i] = recorder.ResultRowFrom(events.CheckResult{
						V: 1, TestID: fmt.Sprintf("b%d-%d", size, n), CheckID: "acme-roundtrip", Customer: "acme",
						Site: "eu-west", Kind: events.KindRoundTrip, Attempt: 1, Status: events.StatusOK, Revision: 1,
						StartedAt: at, SentAt: &at, ReceivedAt: &at, FinishedAt: at, RTTMS: &rtt, Reply: reply,
						Timings: events.Timings{ConnectMS: 1.5, TransferMS: 20, TotalMS: 25, PeerAddress: "127.0.0.1:25"},
					})
				}
				if err := st.Insert(ctx, &rows); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
