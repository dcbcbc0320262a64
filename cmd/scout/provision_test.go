package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runProvision runs `scout provision args...` with env as the environment
// and returns its standard output.
func runProvision(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(natstest.Context(t), append([]string{"provision"}, args...), func(k string) string { return env[k] }, &out)
	return out.String(), err
}

func TestProvisionRefusesBadSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"replicas zero", nil, []string{"--replicas", "0"}, "--replicas 0: must be 1 to 5"},
		{"replicas six", nil, []string{"--replicas", "6"}, "--replicas 6: must be 1 to 5"},
		{"replicas env not a number", map[string]string{"SCOUT_STREAM_REPLICAS": "three"}, nil, `SCOUT_STREAM_REPLICAS="three": not a number`},
		{"max age", nil, []string{"--max-age", "soon"}, `--max-age: "soon" is not`},
		{"max age env", map[string]string{"SCOUT_STREAM_MAX_AGE": "-1d"}, nil, `SCOUT_STREAM_MAX_AGE: "-1d" must be positive`},
		{"max age under the duplicate window", nil, []string{"--max-age", "5m"}, "--max-age: 5m0s is shorter than the duplicate window (10m0s)"},
		{"clickhouse over http", nil, []string{"--clickhouse", "http://scout:hunter2@127.0.0.1:8123/scout"}, `scheme "http" is not supported`},
		{"clickhouse env", map[string]string{"SCOUT_CLICKHOUSE_DSN": "127.0.0.1:9000"}, nil, "ClickHouse DSN:"},
		{"timeout", nil, []string{"--timeout", "0s"}, "--timeout 0s: must be positive"},
		{"argument", nil, []string{"now"}, `unknown command "now"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// No NATS runs: a bad setting must stop the command before it
			// connects anywhere.
			_, err := runProvision(t, tt.env, append(tt.args, "--nats", natsClosedURL(t))...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
			if !strings.Contains(tt.want, "unknown command") && exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2 (usage)", exitCode(err))
			}
		})
	}
}

func TestProvisionCreatesThenChangesNothing(t *testing.T) {
	s := natstest.Start(t)
	out, err := runProvision(t, map[string]string{"SCOUT_NATS_URL": s.URL})
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	for _, want := range []string{
		"stream SCOUT: created (replicas 1, max age 7d, file storage)",
		"kv scout_evaluator: created (replicas 1, max age unlimited, file storage, history 1)",
		"kv scout_incidents: created (replicas 1, max age unlimited, file storage, history 5)",
		"kv scout_notifications: created (replicas 1, max age 90d, file storage, history 1)",
		"clickhouse: skipped (no --clickhouse and no SCOUT_CLICKHOUSE_DSN)",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	js := jetStream(t, s.URL)
	ctx := natstest.Context(t)
	sc := mustStreamConfig(t, js, events.StreamName)
	if sc.MaxAge != events.DefaultMaxAge || sc.Duplicates != events.DuplicateWindow || sc.Replicas != 1 ||
		sc.Storage != jetstream.FileStorage || strings.Join(sc.Subjects, " ") != strings.Join(events.StreamSubjects, " ") {
		t.Errorf("stream config = %+v", sc)
	}
	for _, b := range events.Buckets {
		kv, err := js.KeyValue(ctx, b.Name)
		if err != nil {
			t.Fatalf("kv %s: %v", b.Name, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.History() != int64(b.History) {
			t.Errorf("kv %s history = %d, want %d", b.Name, st.History(), b.History)
		}
	}

	// The services create what is missing with their own settings; the
	// job runs again (a Job retried, a re-applied overlay): nothing changes.
	out, err = runProvision(t, map[string]string{"SCOUT_NATS_URL": s.URL})
	if err != nil {
		t.Fatalf("second provision: %v\n%s", err, out)
	}
	if n := strings.Count(out, ": unchanged ("); n != 1+len(events.Buckets) {
		t.Errorf("second run: %d unchanged lines, want %d:\n%s", n, 1+len(events.Buckets), out)
	}
	if strings.Contains(out, "created") || strings.Contains(out, "updated") {
		t.Errorf("second run changed something:\n%s", out)
	}
}

func TestProvisionUpdatesAndKeepsEvents(t *testing.T) {
	s := natstest.Start(t)
	// A service started first and created the stream with its defaults.
	_, js := natstest.Connect(t, s)
	ctx := natstest.Context(t)
	if _, err := js.Publish(ctx, "check.result.eu-west.acme", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "test.scheduled.eu-west.acme", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	out, err := runProvision(t, map[string]string{"SCOUT_STREAM_MAX_AGE": "30d"}, "--nats", s.URL)
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	if want := "stream SCOUT: updated (max age 7d -> 30d)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if sc := mustStreamConfig(t, js, events.StreamName); sc.MaxAge != 30*24*time.Hour {
		t.Errorf("max age = %s, want 720h", sc.MaxAge)
	}
	str, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d events after the update, want the 2 published before", info.State.Msgs)
	}

	// The flag wins over the environment.
	out, err = runProvision(t, map[string]string{"SCOUT_STREAM_MAX_AGE": "30d"}, "--nats", s.URL, "--max-age", "36h")
	if err != nil || !strings.Contains(out, "stream SCOUT: updated (max age 30d -> 36h0m0s)\n") {
		t.Errorf("--max-age 36h: %v\n%s", err, out)
	}
}

func TestProvisionReplicasNeedACluster(t *testing.T) {
	s := natstest.Start(t)
	out, err := runProvision(t, nil, "--nats", s.URL, "--replicas", "3")
	if err == nil {
		t.Fatalf("replicas 3 on a single server succeeded:\n%s", out)
	}
	if !strings.Contains(err.Error(), "--replicas 3 needs a JetStream cluster of at least 3 servers") {
		t.Errorf("err = %v", err)
	}
}

func TestProvisionGivesUpWhenNATSIsAway(t *testing.T) {
	_, err := runProvision(t, nil, "--nats", natsClosedURL(t), "--timeout", "1500ms")
	if err == nil || !strings.Contains(err.Error(), "connect to nats") {
		t.Fatalf("err = %v, want a connect error", err)
	}
	if exitCode(err) != 1 {
		t.Errorf("exit code %d, want 1", exitCode(err))
	}
}

func jetStream(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func mustStreamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	sc, err := streamConfig(natstest.Context(t), js, name)
	if err != nil {
		t.Fatal(err)
	}
	if sc == nil {
		t.Fatalf("stream %s does not exist", name)
	}
	return *sc
}

// natsClosedURL is a NATS URL on loopback where nothing listens.
func natsClosedURL(t *testing.T) string {
	t.Helper()
	s := natstest.Start(t)
	u := s.URL
	s.Shutdown()
	s.WaitForShutdown()
	return u
}

func TestDescribeChange(t *testing.T) {
	base := jetstream.StreamConfig{Replicas: 3, MaxAge: 7 * 24 * time.Hour, Storage: jetstream.FileStorage, Subjects: []string{"a.>"}}
	changed := base
	changed.Replicas, changed.MaxAge, changed.Subjects = 1, 90*time.Minute, []string{"a.>", "b.>"}
	for _, tt := range []struct {
		before, after *jetstream.StreamConfig
		want          string
	}{
		{nil, &base, "created (replicas 3, max age 7d, file storage)"},
		{&base, &base, "unchanged (replicas 3, max age 7d, file storage)"},
		{&base, &changed, "updated (replicas 3 -> 1, max age 7d -> 1h30m0s, subjects [a.>] -> [a.> b.>])"},
	} {
		if got := describeChange(tt.before, tt.after); got != tt.want {
			t.Errorf("describeChange = %q, want %q", got, tt.want)
		}
	}
}
