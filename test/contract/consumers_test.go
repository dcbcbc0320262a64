package contract

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/sender"
)

// discard is a recorder.Writer that keeps nothing.
type discard struct{}

func (discard) Insert(context.Context, *recorder.Rows) error { return nil }
func (discard) Ping(context.Context) error                   { return nil }

// TestBoundConsumersFilterWhatTheirRoutersHandle runs every consuming
// service on a real nats-server and reads its durable consumer back from
// the server: the filter subjects are exactly the names its router handles
// ("<name>.>", or "<name>.<site>.>" for a site's sender). A service that
// bound a consumer by hand, or a handler without a subscription, fails it.
func TestBoundConsumersFilterWhatTheirRoutersHandle(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	f, err := checks.Parse("checks.yaml", []byte(`
sites: [eu-west]
checks:
  - {id: acme-rt, customer: acme, kind: roundtrip, target: webscout@acme.example}
`))
	if err != nil {
		t.Fatal(err)
	}
	const keySpec = "acme:k1:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"
	keys, err := probemail.ParseKeys(keySpec)
	if err != nil {
		t.Fatal(err)
	}
	scfg := sender.Defaults()
	scfg.Site, scfg.ReturnAddress, scfg.ProbeKeys, scfg.RelayAddr = "eu-west", "scout@eu-west.return.test", keySpec, "127.0.0.1:1"
	s, err := sender.New(scfg, sender.Deps{Checks: f, JetStream: js, Publisher: platform.JetStreamPublisher{JS: js}, Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evaluator.New(evaluator.Defaults(), evaluator.Deps{Checks: f, JS: js})
	if err != nil {
		t.Fatal(err)
	}
	ncfg := notifier.Defaults()
	ncfg.Env = notifier.EnvDev
	nt, err := notifier.New(ncfg, notifier.Deps{Checks: f, JS: js, Provider: notifier.NewLogProvider(&strings.Builder{})})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := recorder.Defaults()
	rcfg.DSN = "clickhouse://127.0.0.1:1/unused"
	rec, err := recorder.New(rcfg, recorder.Deps{JS: js, Writer: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for _, c := range []platform.Component{s, ev, nt, rec} {
		go func() { done <- c.Run(ctx) }()
	}
	defer func() {
		cancel()
		for range 4 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()

	want := map[string][]string{
		"sender-eu-west": filters(sender.Consumes(), "eu-west"),
		"notifier":       filters(notifier.Consumes(), ""),
		"recorder":       filters(recorder.Consumes(), ""),
	}
	// The evaluator's: one durable per partition, filtered to it.
	for p, durable := range events.EvaluatorConsumer().Durables() {
		var w []string
		for _, n := range evaluator.Consumes() {
			w = append(w, events.PartitionFilter(n, p))
		}
		slices.Sort(w)
		want[durable] = w
	}
	for durable, w := range want {
		var got []string
		for deadline := time.Now().Add(20 * time.Second); ; {
			c, err := js.Consumer(ctx, events.StreamName, durable)
			if err == nil {
				got = c.CachedInfo().Config.FilterSubjects
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("consumer %s never bound: %v", durable, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		slices.Sort(got)
		if !slices.Equal(got, w) {
			t.Errorf("consumer %s filters %v on the server, its router handles %v", durable, got, w)
		}
	}
}

// filters is the sorted filter subjects of names, narrowed to site when
// it is not empty.
func filters(names []string, site string) []string {
	var out []string
	for _, n := range names {
		if site != "" {
			n += "." + site
		}
		out = append(out, n+".>")
	}
	slices.Sort(out)
	return out
}
