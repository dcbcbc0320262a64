//go:build integration

package recorder_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/prometheus/client_golang/prometheus"
)

// TestClickHouseOutage stops ClickHouse for 60 seconds in the middle of a
// stream of results and starts it again: every result lands exactly once,
// readiness reports the outage while it lasts, and the backlog waits in
// JetStream.
func TestClickHouseOutage(t *testing.T) {
	ch := chtest.Start(t)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	ctx := natstest.Context(t)
	db := dbName(t)
	reg := prometheus.NewRegistry()
	health := platform.NewHealth()
	startRecorder(t, ctx, recorder.Config{DSN: ch.DSN(db), BatchSize: 50, BatchWait: 200 * time.Millisecond, MaxBackoff: 2 * time.Second},
		recorder.Deps{JS: js, Registerer: reg, Health: health})
	conn := rawConn(t, ch, "default")
	pub := platform.JetStreamPublisher{JS: js}

	// The stream: one result every 20 ms until stop is closed.
	var (
		mu        sync.Mutex
		published []string
		pubErr    error
	)
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	base := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	go func() {
		defer close(streamDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rtt := int64(1000 + i)
			ev := events.CheckResult{
				V: 1, TestID: fmt.Sprintf("out%021d", i), CheckID: "acme-roundtrip", Customer: "acme",
				Site: []string{"eu-west", "us-east"}[i%2], Kind: events.KindRoundTrip, Attempt: 1,
				Status: events.StatusOK, Revision: 1, StartedAt: base.Add(time.Duration(i) * time.Second),
				FinishedAt: base.Add(time.Duration(i)*time.Second + time.Duration(rtt)*time.Millisecond), RTTMS: &rtt,
			}
			if _, err := pub.Publish(ctx, ev); err != nil {
				mu.Lock()
				pubErr = err
				mu.Unlock()
				return
			}
			mu.Lock()
			published = append(published, ev.TestID)
			mu.Unlock()
		}
	}()
	landed := func() (uint64, string) {
		return tryCount(ctx, conn, "SELECT count() FROM "+db+".check_results FINAL")
	}
	eventually(t, ctx, "rows before the outage", func() (bool, string) {
		n, e := landed()
		return n >= 50, fmt.Sprintf("%d rows %s", n, e)
	})

	ch.Stop()
	t.Log("clickhouse stopped")
	outageStart := time.Now()
	eventually(t, ctx, "readiness reports clickhouse down", func() (bool, string) {
		err := health.Ready()
		return err != nil && strings.Contains(err.Error(), recorder.HealthClickHouse), fmt.Sprint(err)
	})
	time.Sleep(60*time.Second - time.Since(outageStart))
	cons, err := js.Consumer(ctx, events.StreamName, events.RecorderConsumer().Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if backlog := info.NumPending + uint64(info.NumAckPending); backlog < 1000 {
		t.Errorf("after 60 s without ClickHouse the consumer holds %d messages (pending %d, ack pending %d), want the backlog (about 3000)",
			backlog, info.NumPending, info.NumAckPending)
	}
	ch.Start()
	t.Logf("clickhouse started again after %s", time.Since(outageStart).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	<-streamDone
	mu.Lock()
	ids := published
	err = pubErr
	mu.Unlock()
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	want := uint64(len(ids))
	eventually(t, ctx, "every result after the outage", func() (bool, string) {
		n, e := landed()
		return n == want, fmt.Sprintf("%d of %d rows %s", n, want, e)
	})
	if n := count(t, ctx, conn, "SELECT uniqExact(test_id) FROM "+db+".check_results FINAL"); n != want {
		t.Errorf("%d distinct test ids, want %d", n, want)
	}
	rows, err := conn.Query(ctx, "SELECT test_id FROM "+db+".check_results FINAL")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got[id]++
	}
	rows.Close()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("result %s landed %d times, want once", id, got[id])
		}
	}
	raw := count(t, ctx, conn, "SELECT count() FROM "+db+".check_results")
	failures := testkit.MustMetric(t, reg, "scout_recorder_insert_failures_total", nil)
	t.Logf("%d results published, %d rows with FINAL, %d physical rows before merges, %v failed inserts during the outage", want, want, raw, failures)
	if failures == 0 {
		t.Error("no failed insert counted during the outage")
	}
	eventually(t, ctx, "ready again", func() (bool, string) {
		err := health.Ready()
		return err == nil, fmt.Sprint(err)
	})
	eventually(t, ctx, "consumer drained", func() (bool, string) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumAckPending == 0 && info.NumPending == 0, fmt.Sprintf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
	})
}
