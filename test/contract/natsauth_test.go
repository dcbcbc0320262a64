package contract

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/natsauth"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/emailscout/emailscout/services/web"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// authServer is a nats-server configured with the users and permissions
// that `scout nats-config` renders (natsauth.AccountsConfig), each with a
// fresh NKey whose seed is in a file.
type authServer struct {
	URL   string
	seeds map[string]string // user -> seed file
	dir   string
}

// serverTLS, when set, makes startAuthServer require TLS with these PEM
// files.
type serverTLS struct{ cert, key string }

// startAuthServer runs nats-server from the generated configuration of
// sites' users, parsed by nats-server's own configuration parser.
func startAuthServer(t *testing.T, sites []string, tlsFiles *serverTLS) *authServer {
	t.Helper()
	users, err := natsauth.Users(natsauth.Options{Sites: sites})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &authServer{seeds: map[string]string{}, dir: dir}
	for _, u := range users {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		t.Setenv(u.NKeyVar(), pub) // what the chart's env gives nats-server, from a Secret
		a.seeds[u.Name] = filepath.Join(dir, u.Name+".nk")
		if err := os.WriteFile(a.seeds[u.Name], seed, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := natsauth.AccountsConfig(users)
	conf += fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\n", filepath.Join(dir, "js"))
	if tlsFiles != nil {
		conf += fmt.Sprintf("tls { cert_file: %q, key_file: %q }\n", tlsFiles.cert, tlsFiles.key)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the generated configuration: %v\n%s", err, conf)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	a.URL = s.ClientURL()
	return a
}

// connect connects as user with platform.Connect, the services' own
// connection code; its log goes to sink.
func (a *authServer) connect(t *testing.T, ctx context.Context, user string, sink *testkit.LogBuffer) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return a.connectWith(t, ctx, user, platform.NATSAuth{NKeyFile: a.seeds[user]}, sink)
}

func (a *authServer) connectWith(t *testing.T, ctx context.Context, user string, auth platform.NATSAuth, sink *testkit.LogBuffer) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, js, err := platform.Connect(cctx, a.URL, "scout-"+user, auth, slog.New(slog.NewTextHandler(sink, nil)).With("user", user))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

const authChecks = `
sites: [eu-west, us-east]
checks:
  - {id: acme-rt, customer: acme, kind: roundtrip, target: webscout@acme.example, interval: 1m,
     contacts: [{name: Ops, phone: "+15555550123"}]}
`

const authKeys = "acme:k1:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"

// TestServicesRunAsTheirOwnNATSUsers runs the scheduler, a site's sender,
// the evaluator, the notifier, the recorder and the web service, each
// connected as its own user of the generated configuration, and drives
// events through them: the scheduler's test reaches the sender (which
// publishes mail.sent), the evaluator takes it, an incident opens, the
// notifier writes its receipt and publishes notification.sent, and the
// recorder and the web service read everything. Every durable consumer
// is bound and acknowledged up to date, and no connection saw a
// permissions violation: each user can do all its service needs.
func TestServicesRunAsTheirOwnNATSUsers(t *testing.T) {
	srv := startAuthServer(t, []string{"eu-west", "us-east"}, nil)
	sink := &testkit.LogBuffer{}
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()

	_, adminJS := srv.connect(t, ctx, natsauth.ProvisionUser, sink)
	if err := platform.Provision(ctx, adminJS, platform.ProvisionOptions{Replicas: 1, Update: true}); err != nil {
		t.Fatalf("provision as %s: %v", natsauth.ProvisionUser, err)
	}
	f, err := checks.Parse("checks.yaml", []byte(authChecks))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := probemail.ParseKeys(authKeys)
	if err != nil {
		t.Fatal(err)
	}
	logger := func(user string) *slog.Logger { return slog.New(slog.NewTextHandler(sink, nil)).With("user", user) }

	_, schedJS := srv.connect(t, ctx, "scheduler", sink)
	sch, err := scheduler.New(scheduler.Defaults(), scheduler.Deps{Checks: f, Publisher: platform.JetStreamPublisher{JS: schedJS}, Logger: logger("scheduler")})
	if err != nil {
		t.Fatal(err)
	}
	_, sendJS := srv.connect(t, ctx, "sender-eu-west", sink)
	scfg := sender.Defaults()
	scfg.Site, scfg.ReturnAddress, scfg.ProbeKeys, scfg.RelayAddr = "eu-west", "scout@eu-west.return.test", authKeys, "127.0.0.1:1"
	snd, err := sender.New(scfg, sender.Deps{Checks: f, JetStream: sendJS, Publisher: platform.JetStreamPublisher{JS: sendJS}, Keyring: keys, Logger: logger("sender-eu-west")})
	if err != nil {
		t.Fatal(err)
	}
	_, evJS := srv.connect(t, ctx, "evaluator", sink)
	ev, err := evaluator.New(evaluator.Defaults(), evaluator.Deps{Checks: f, JS: evJS, Logger: logger("evaluator")})
	if err != nil {
		t.Fatal(err)
	}
	_, notJS := srv.connect(t, ctx, "notifier", sink)
	ncfg := notifier.Defaults()
	ncfg.Env = notifier.EnvDev
	nt, err := notifier.New(ncfg, notifier.Deps{Checks: f, JS: notJS, Provider: notifier.NewLogProvider(&strings.Builder{}), Logger: logger("notifier")})
	if err != nil {
		t.Fatal(err)
	}
	_, recJS := srv.connect(t, ctx, "recorder", sink)
	rcfg := recorder.Defaults()
	rcfg.DSN = "clickhouse://127.0.0.1:1/unused"
	rec, err := recorder.New(rcfg, recorder.Deps{JS: recJS, Writer: discard{}, Logger: logger("recorder")})
	if err != nil {
		t.Fatal(err)
	}
	_, webJS := srv.connect(t, ctx, "web", sink)
	webHealth := platform.NewHealth()
	wcfg := web.Defaults()
	wcfg.Token = platform.Secret("contract-test-token")
	wcfg.Listen = "127.0.0.1:0" // loopback, any free port
	wb, err := web.New(wcfg, web.Deps{Checks: f, JS: webJS, Health: webHealth, Logger: logger("web")})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for _, c := range []platform.Component{sch, snd, ev, nt, rec, wb} {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("run %T: %v", c, err)
			}
		})
	}
	defer wg.Wait()
	defer cancel()

	// A test as the scheduler publishes it (its next slot may be a minute
	// away); the sender's relay is unreachable, so it retries until the
	// test's send window closes (2 s) and then publishes mail.sent as a
	// monitor_error, which the evaluator takes.
	now := time.Now().UTC()
	ts := events.TestScheduled{V: events.SchemaVersion, TestID: "t-auth-1", CheckID: "acme-rt", Site: "eu-west",
		Kind: events.KindRoundTrip, Attempt: 1, Reason: events.ReasonInterval, ScheduledAt: now, NotAfter: now.Add(2 * time.Second)}
	if _, err := (platform.JetStreamPublisher{JS: schedJS}).Publish(ctx, ts); err != nil {
		t.Fatalf("scheduler publishes test.scheduled: %v", err)
	}
	waitSubject(t, ctx, adminJS, events.SiteCheckSubject(events.SubjectMailSent, "eu-west", "acme-rt"), sink)
	// An incident as the evaluator publishes it: the notifier sends,
	// keeps its receipt in KV and publishes notification.sent.
	evPub := platform.JetStreamPublisher{JS: evJS}
	open := events.IncidentOpen{V: events.SchemaVersion, IncidentID: "inc-auth1", CheckID: "acme-rt", Customer: "acme",
		Kind: "roundtrip", Severity: events.SeverityCritical, Reason: "test", Since: now.Add(-time.Minute), OpenedAt: now,
		Sites: []events.SiteVote{{Site: "eu-west", Verdict: "down"}, {Site: "us-east", Verdict: "down"}}, Quorum: 2, Eligible: 2, Notify: true}
	if _, err := evPub.Publish(ctx, open); err != nil {
		t.Fatalf("evaluator publishes incident.open: %v", err)
	}
	waitSubject(t, ctx, adminJS, events.CheckSubject(events.SubjectNotificationSent, "acme-rt"), sink)

	evaluatorDurable := events.EvaluatorConsumer().PartitionDurable(events.PartitionOf("acme-rt"))
	for _, durable := range []string{evaluatorDurable, "notifier", "recorder"} {
		waitAcked(t, ctx, adminJS, durable)
	}
	// The sender's relay refuses, so it gives its tests back (a nak with a
	// delay) to retry them: redeliveries long before the 2-minute ack wait
	// show that its naks, on $JS.ACK, got through.
	waitNaked(t, ctx, adminJS, "sender-eu-west")
	deadline := time.Now().Add(20 * time.Second)
	for webHealth.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("web never caught up (KV watch, ordered consumer): %v", webHealth.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	kv, err := adminJS.KeyValue(ctx, events.BucketNotifications)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := kv.ListKeys(ctx); err != nil || len(keysOf(keys)) == 0 {
		t.Errorf("the notifier wrote no receipt in %s: %v", events.BucketNotifications, err)
	}
	if logs := sink.String(); strings.Contains(strings.ToLower(logs), "permissions violation") {
		t.Errorf("a service hit a permissions violation:\n%s", logs)
	}
}

func keysOf(l jetstream.KeyLister) []string {
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out
}

// waitSubject waits until the stream holds a message on subject.
func waitSubject(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string, logs fmt.Stringer) {
	t.Helper()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		for _, f := range events.StoredFilters(subject) {
			if _, err := s.GetLastMsgForSubject(ctx, f); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing was published on %s; logs:\n%s", subject, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAcked waits until durable has had messages delivered and every one
// acknowledged, with nothing pending.
func waitAcked(t *testing.T, ctx context.Context, js jetstream.JetStream, durable string) {
	t.Helper()
	var info *jetstream.ConsumerInfo
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := js.Consumer(ctx, events.StreamName, durable)
		if err == nil {
			if info, err = c.Info(ctx); err == nil && info.Delivered.Stream > 0 && info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream == info.Delivered.Stream {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s: not bound, or not acknowledged up to date: %+v, %v", durable, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNaked waits until durable has redelivered a message: its client
// acknowledged negatively (a nak), which the ack wait alone would take
// minutes to do.
func waitNaked(t *testing.T, ctx context.Context, js jetstream.JetStream, durable string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		// A redelivery advances the consumer's delivery sequence past the
		// stream's (the ack wait is 2 minutes: only a nak redelivers now).
		if c, err := js.Consumer(ctx, events.StreamName, durable); err == nil {
			if info, err := c.Info(ctx); err == nil && info.Delivered.Consumer > info.Delivered.Stream {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s: no nak got through", durable)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNATSUsersAreRefusedWhatTheyDoNotProduce: each user's credentials are
// refused with a permissions violation for a subject its service does not
// produce or a consumer that is not its own, and nothing reaches the
// stream; the same users may do what their services do.
func TestNATSUsersAreRefusedWhatTheyDoNotProduce(t *testing.T) {
	srv := startAuthServer(t, []string{"eu-west", "us-east"}, nil)
	ctx := natstest.Context(t)
	sink := &testkit.LogBuffer{}
	_, adminJS := srv.connect(t, ctx, natsauth.ProvisionUser, sink)
	if err := platform.Provision(ctx, adminJS, platform.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	refused := []struct{ user, subject string }{
		{"receiver-eu-west", "incident.open.acme-rt"},
		{"receiver-eu-west", "check.result.eu-west.acme-rt"},
		{"sender-eu-west", "mail.returned.eu-west.acme-rt"},
		{"sender-eu-west", "mail.sent.us-east.acme-rt"}, // another site's
		{"notifier", "incident.open.acme-rt"},
		{"notifier", "check.result.eu-west.acme-rt"},
		{"scheduler", "check.result.eu-west.acme-rt"},
		{"recorder", "notification.sent.acme-rt"},
		{"web", "incident.resolved.acme-rt"},
		{"web", "$KV." + events.BucketIncidents + ".acme-rt"},
		{"web", "$JS.API.CONSUMER.MSG.NEXT.SCOUT.evaluator-p00"},
		{"evaluator", "$JS.API.CONSUMER.MSG.NEXT.SCOUT.notifier"},
		{"evaluator", "$JS.API.STREAM.DELETE.SCOUT"},
		{"sender-eu-west", "$JS.API.CONSUMER.CREATE.SCOUT.sender-us-east"},
		{"sender-eu-west", "$KV." + events.BucketNotifications + ".x"},
	}
	for _, c := range refused {
		t.Run(c.user+"/"+c.subject, func(t *testing.T) {
			errs := make(chan error, 4)
			nc, err := nats.Connect(srv.URL, nkeyOpt(t, srv.seeds[c.user]), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
			if err != nil {
				t.Fatalf("connect as %s: %v", c.user, err)
			}
			defer nc.Close()
			if err := nc.Publish(c.subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			select {
			case err := <-errs:
				if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(err.Error(), "Permissions Violation") {
					t.Errorf("%s publishing %s: %v, want a permissions violation", c.user, c.subject, err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s may publish %s", c.user, c.subject)
			}
		})
	}
	st, err := adminJS.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("refused publications reached the stream: %v, %v", info.State, err)
	}

	// Through JetStream, as the services publish: the receiver's
	// incident.open is not stored, its mail.returned is.
	_, recvJS := srv.connect(t, ctx, "receiver-eu-west", sink)
	pub := platform.JetStreamPublisher{JS: recvJS}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	open := events.IncidentOpen{V: events.SchemaVersion, IncidentID: "inc-forged", CheckID: "acme-rt", Customer: "acme",
		Kind: "roundtrip", Severity: events.SeverityCritical, Reason: "forged", OpenedAt: time.Now().UTC()}
	if _, err := pub.Publish(pctx, open); err == nil {
		t.Error("the receiver's credentials published incident.open")
	}
	ret := events.MailReturned{V: events.SchemaVersion, TestID: "t-auth1", CheckID: "acme-rt", Site: "eu-west", Attempt: 1,
		KeyID: "k1", StartedAt: time.Now().UTC().Add(-time.Second), ReceivedAt: time.Now().UTC()}
	if _, err := pub.Publish(ctx, ret); err != nil {
		t.Errorf("the receiver cannot publish mail.returned: %v", err)
	}
	if !strings.Contains(sink.String(), "Permissions Violation for Publish to \\\"incident.open.acme-rt\\\"") &&
		!strings.Contains(sink.String(), "Permissions Violation for Publish to \"incident.open.acme-rt\"") {
		t.Errorf("the refusal was not logged as a permissions violation:\n%s", sink.String())
	}
}

func nkeyOpt(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// TestNATSRequiresCredentials: where users are configured, a client
// without credentials, or with an unknown key, is refused at connect.
func TestNATSRequiresCredentials(t *testing.T) {
	srv := startAuthServer(t, []string{"eu-west"}, nil)
	ctx, cancel := context.WithTimeout(natstest.Context(t), 3*time.Second)
	defer cancel()
	sink := &testkit.LogBuffer{}
	_, _, err := platform.Connect(ctx, srv.URL, "scout-anonymous", platform.NATSAuth{}, slog.New(slog.NewTextHandler(sink, nil)))
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("connect without credentials: %v, want an authorization violation", err)
	}
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(stranger, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(natstest.Context(t), 3*time.Second)
	defer cancel2()
	_, _, err = platform.Connect(ctx2, srv.URL, "scout-stranger", platform.NATSAuth{NKeyFile: stranger}, slog.New(slog.NewTextHandler(sink, nil)))
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("connect with an unknown NKey: %v, want an authorization violation", err)
	}
	if strings.Contains(sink.String(), string(seed)) {
		t.Error("a seed was logged")
	}
}

// TestNATSOverTLSWithCAFile: a server with a certificate from a fresh CA;
// a service with SCOUT_NATS_TLS_CA connects over TLS as its user, one
// without the CA is refused by certificate verification.
func TestNATSOverTLSWithCAFile(t *testing.T) {
	cert, _ := mailtest.Certificate(t, "127.0.0.1", "localhost")
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	files := &serverTLS{cert: write("server.crt", "CERTIFICATE", cert.Certificate[0]), key: write("server.key", "PRIVATE KEY", keyDER)}
	caFile := write("ca.crt", "CERTIFICATE", cert.Certificate[1])
	srv := startAuthServer(t, []string{"eu-west"}, files)
	ctx := natstest.Context(t)
	sink := &testkit.LogBuffer{}

	nc, js := srv.connectWith(t, ctx, "receiver-eu-west", platform.NATSAuth{NKeyFile: srv.seeds["receiver-eu-west"], CAFile: caFile}, sink)
	if st, err := nc.TLSConnectionState(); err != nil || !st.HandshakeComplete {
		t.Fatalf("not TLS: %v", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Errorf("JetStream over TLS as the receiver: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, _, err = platform.Connect(cctx, srv.URL, "scout-no-ca", platform.NATSAuth{NKeyFile: srv.seeds["receiver-eu-west"]}, slog.New(slog.NewTextHandler(sink, nil)))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("TLS without the CA file: %v, want a certificate error", err)
	}
}

// TestRolesPublishWhatServicesBuild: the subject names each role of
// events.Roles may publish are exactly those of the event types its
// service's code builds (an `events.T{` literal outside tests), and
// docs/architecture.md's "from" column names exactly the roles that
// publish each subject. A service that starts publishing a new event
// without its role (and so its NATS permissions) fails it.
func TestRolesPublishWhatServicesBuild(t *testing.T) {
	typeNames := map[string][]string{
		"TestScheduled":      events.NamesOf[events.TestScheduled](),
		"MailSent":           events.NamesOf[events.MailSent](),
		"MailReturned":       events.NamesOf[events.MailReturned](),
		"MailBounced":        events.NamesOf[events.MailBounced](),
		"CheckTimeout":       events.NamesOf[events.CheckTimeout](),
		"CheckResult":        events.NamesOf[events.CheckResult](),
		"ServiceChecked":     events.NamesOf[events.ServiceChecked](),
		"IncidentOpen":       events.NamesOf[events.IncidentOpen](),
		"IncidentResolved":   events.NamesOf[events.IncidentResolved](),
		"MonitorHealthEvent": events.NamesOf[events.MonitorHealthEvent](),
		"Notification":       events.NamesOf[events.Notification](),
	}
	if len(typeNames) != len(events.SubjectNames())-2 { // Notification has three names
		t.Fatalf("the event types here cover %d types; the catalog has %d names", len(typeNames), len(events.SubjectNames()))
	}
	literal := regexp.MustCompile(`events\.([A-Z][A-Za-z]+)\{`)
	for _, r := range events.Roles {
		var built []string
		files, _ := filepath.Glob(filepath.Join(root, "services", r.Service, "*.go"))
		if len(files) == 0 {
			t.Fatalf("role %s: no services/%s", r.Service, r.Service)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range literal.FindAllStringSubmatch(string(data), -1) {
				built = union(built, typeNames[m[1]])
			}
		}
		slices.Sort(built)
		pubs := slices.Sorted(slices.Values(r.Publishes))
		if !slices.Equal(built, pubs) {
			t.Errorf("role %s publishes %v (pkg/events/roles.go), services/%s builds events on %v", r.Service, pubs, r.Service, built)
		}
	}
	for _, row := range subjectTable(t) {
		for _, name := range row.names {
			var from []string
			for _, r := range events.Roles {
				if slices.Contains(r.Publishes, name) {
					from = append(from, r.Service)
				}
			}
			sort.Strings(from)
			if !slices.Equal(from, row.from) {
				t.Errorf("docs/architecture.md:%d: %s comes from %v, the roles that publish it are %v", row.line, name, row.from, from)
			}
		}
	}
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}
