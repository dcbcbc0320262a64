//go:build integration

package system

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/recorder"
)

// TestNotificationsLandInClickHouse runs the notifier (webhook provider
// against a loopback receiver) and the recorder (a real clickhouse-server)
// on one embedded NATS: an incident told to two contacts, one accepted and
// one refused, and a silenced incident, give one sent, one failed and two
// suppressed rows, the suppressed ones with their reason. Before the router
// (and migration 4) every suppressed notification was terminated as
// malformed and never recorded.
func TestNotificationsLandInClickHouse(t *testing.T) {
	ch := chtest.Start(t)
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))

	// The webhook receiver accepts one number and refuses the other
	// permanently (400).
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			To string `json:"to"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if body.To == "+15555550199" {
			http.Error(w, "unknown number", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Request-Id", "req-1")
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()

	f, err := checks.Parse("checks.yaml", []byte(`
sites: [eu-west]
checks:
  - id: acme-rt
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
    contacts:
      - {name: ops, phone: "+15555550100"}
      - {name: gone, phone: "+15555550199"}
`))
	if err != nil {
		t.Fatal(err)
	}
	ncfg := notifier.Defaults()
	ncfg.Env, ncfg.Provider, ncfg.WebhookURL = notifier.EnvDev, notifier.ProviderWebhook, notifier.Secret(hook.URL)
	provider, err := notifier.NewProvider(ncfg, notifier.ProviderDeps{HTTPClient: hook.Client()})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := notifier.New(ncfg, notifier.Deps{Checks: f, JS: js, Provider: provider})
	if err != nil {
		t.Fatal(err)
	}
	db := "notifications_" + fmt.Sprint(time.Now().UnixNano())
	rcfg := recorder.Defaults()
	rcfg.DSN, rcfg.BatchWait = ch.DSN(db), 200*time.Millisecond
	rec, err := recorder.New(rcfg, recorder.Deps{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	for _, c := range []platform.Component{nt, rec} {
		go func() { done <- c.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	})

	at := time.Now().UTC().Truncate(time.Second)
	pub := platform.JetStreamPublisher{JS: js}
	for _, open := range []events.IncidentOpen{
		{V: 1, IncidentID: "inc-told", CheckID: "acme-rt", Customer: "acme", Kind: events.KindRoundTrip,
			Severity: events.SeverityCritical, Since: at, OpenedAt: at, Reason: "no return from 2 of 2 sites", Notify: true},
		{V: 1, IncidentID: "inc-silenced", CheckID: "acme-rt", Customer: "acme", Kind: events.KindRoundTrip,
			Severity: events.SeverityCritical, Since: at, OpenedAt: at, Reason: "no return from 2 of 2 sites", Notify: false,
			Silenced: "maintenance window"},
	} {
		if _, err := pub.Publish(ctx, open); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string]int{"sent": 1, "failed": 1, "suppressed": 2}
	deadline := time.Now().Add(60 * time.Second)
	var got map[string]int
	for {
		got = map[string]int{}
		rows, err := chQuery(ch, fmt.Sprintf("SELECT outcome, count() FROM %s.notifications FINAL GROUP BY outcome", db))
		if err == nil {
			for _, r := range rows {
				var n int
				fmt.Sscan(r[1], &n)
				got[r[0]] = n
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notifications in ClickHouse by outcome: %v (last error %v), want %v", got, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rows, err := chQuery(ch, fmt.Sprintf("SELECT reason FROM %s.notifications FINAL WHERE outcome = 'suppressed'", db))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if !strings.Contains(r[0], "maintenance window") {
			t.Errorf("suppressed row's reason %q does not say why", r[0])
		}
	}
}

// chQuery runs query over ClickHouse's HTTP interface and returns its
// tab-separated rows.
func chQuery(ch *chtest.Server, query string) ([][]string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/?query=%s", ch.HTTPPort, url.QueryEscape(query)))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clickhouse: %s: %s", resp.Status, body)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows, nil
}
