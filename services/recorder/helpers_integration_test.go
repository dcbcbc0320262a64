//go:build integration

package recorder_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/services/recorder"
)

// openStore creates database db on srv, migrates it and returns the store.
func openStore(t testing.TB, srv *chtest.Server, db string) *recorder.Store {
	t.Helper()
	ctx := natstest.Context(t)
	if err := recorder.CreateDatabase(ctx, srv.DSN(db)); err != nil {
		t.Fatal(err)
	}
	st, err := recorder.OpenStore(ctx, srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx, recorder.Migrations()); err != nil {
		t.Fatal(err)
	}
	return st
}

// rawConn is a plain clickhouse-go connection for the test's own reads.
func rawConn(t testing.TB, srv *chtest.Server, db string) driver.Conn {
	t.Helper()
	opts, err := recorder.ParseDSN(srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func count(t testing.TB, ctx context.Context, conn driver.Conn, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// tryCount is count for polling: an error (the table does not exist yet)
// reads as "not yet".
func tryCount(ctx context.Context, conn driver.Conn, query string, args ...any) (uint64, string) {
	var n uint64
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, err.Error()
	}
	return n, ""
}

// eventually polls cond every 100 ms until it holds or ctx ends.
func eventually(t testing.TB, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: gave up: %s", what, state)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// utc is a time on 2026-11-29 (UTC), to the millisecond.
func utc(h, m, s, milli int) time.Time {
	return time.Date(2026, 11, 29, h, m, s, milli*int(time.Millisecond), time.UTC)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dbName(t testing.TB) string {
	return strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
}
