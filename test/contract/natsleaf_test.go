package contract

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	"github.com/emailscout/emailscout/services/sender"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// leafDomain is the hub's JetStream domain in the leaf node tests (the
// deploy's config.jetstream.domain and SCOUT_NATS_JS_DOMAIN).
const leafDomain = "scout"

// leafSetup is a hub (JetStream in domain leafDomain, the users of
// natsauth.HubUsers with the leaf user of site ap-south, a leaf node
// listener with TLS) and ap-south's leaf node server, configured exactly
// as `scout nats-config --leaf ap-south` renders it, connected to the hub
// over TLS with the seed of leaf-ap-south; both in-process on 127.0.0.1.
type leafSetup struct {
	hub, leaf *authServer
	hubLeaf   string // the hub's leaf node listener, tls://127.0.0.1:port
	caFile    string
	opts      natsauth.Options
	hubServer *server.Server
}

func startLeafSetup(t *testing.T) *leafSetup {
	t.Helper()
	o := natsauth.Options{Sites: []string{"eu-west", "ap-south"}, JetStreamDomain: leafDomain}
	users, err := natsauth.HubUsers(o, []string{"ap-south"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ls := &leafSetup{opts: o,
		hub:  &authServer{seeds: map[string]string{}, dir: dir},
		leaf: &authServer{seeds: map[string]string{}, dir: dir}}
	for _, u := range users {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		t.Setenv(u.NKeyVar(), pub) // the hub's and the leaf's environment, from Secrets
		ls.hub.seeds[u.Name] = filepath.Join(dir, u.Name+".nk")
		if err := os.WriteFile(ls.hub.seeds[u.Name], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if u.Name == natsauth.LeafUser("ap-south") {
			t.Setenv(natsauth.LeafSeedVar, string(seed)) // the leaf node's Secret
		}
	}
	ls.leaf.seeds = ls.hub.seeds

	// The hub's certificate, from a fresh CA; the leaf node verifies it
	// with the CA file only.
	cert, _ := mailtest.Certificate(t, "127.0.0.1", "localhost")
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
	certFile, keyFile := write("hub.crt", "CERTIFICATE", cert.Certificate[0]), write("hub.key", "PRIVATE KEY", keyDER)
	ls.caFile = write("ca.crt", "CERTIFICATE", cert.Certificate[1])

	// The hub: what the chart renders from values.yaml (jetstream.domain,
	// leafnodes with tls) and `scout nats-config --leaf-sites ap-south`.
	leafPort := freePort(t)
	ls.hubLeaf = fmt.Sprintf("tls://127.0.0.1:%d", leafPort)
	hubConf := natsauth.AccountsConfig(users) + fmt.Sprintf(`listen: "127.0.0.1:-1"
server_name: hub
jetstream { store_dir: %q, domain: %s }
leafnodes {
  listen: "127.0.0.1:%d"
  tls { cert_file: %q, key_file: %q }
}
`, filepath.Join(dir, "js"), leafDomain, leafPort, certFile, keyFile)
	ls.hubServer = runConfig(t, filepath.Join(dir, "hub.conf"), hubConf, nil)
	ls.hub.URL = ls.hubServer.ClientURL()

	// The leaf node: the configuration `scout nats-config --leaf ap-south`
	// prints, unchanged but for the client port (4222 there; a free port
	// on 127.0.0.1 here).
	leafConf, err := natsauth.LeafServerConfig(natsauth.LeafOptions{Site: "ap-south", HubURL: ls.hubLeaf, CAFile: ls.caFile}, o)
	if err != nil {
		t.Fatal(err)
	}
	leaf := runConfig(t, filepath.Join(dir, "leaf.conf"), leafConf, func(opts *server.Options) {
		opts.Host, opts.Port = "127.0.0.1", -1
		opts.ServerName = "leaf-ap-south"
		opts.LeafNode.ReconnectInterval = 100 * time.Millisecond
	})
	ls.leaf.URL = leaf.ClientURL()
	for deadline := time.Now().Add(15 * time.Second); leaf.NumLeafNodes() != 1 || ls.hubServer.NumLeafNodes() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the leaf node did not connect to the hub over TLS (leaf: %d, hub: %d leaf connections)", leaf.NumLeafNodes(), ls.hubServer.NumLeafNodes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ls
}

// freePort returns a TCP port free on 127.0.0.1 just now (the hub's leaf
// node port must be known before the leaf node's configuration is
// rendered).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runConfig writes conf to path, parses it with nats-server's own
// configuration parser, applies adjust, and runs the server until the
// test ends.
func runConfig(t *testing.T, path, conf string, adjust func(*server.Options)) *server.Server {
	t.Helper()
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses %s: %v\n%s", filepath.Base(path), err, conf)
	}
	opts.NoLog, opts.NoSigs = true, true
	if adjust != nil {
		adjust(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", filepath.Base(path))
	}
	t.Cleanup(s.Shutdown)
	return s
}

// leafTestID is a test id as the scheduler makes them (24 of a-z2-7).
const leafTestID = "leaftestaaaaaaaaaaaaaaaa"

const leafChecks = `
sites: [eu-west, ap-south]
checks:
  - {id: acme-rt, customer: acme, kind: roundtrip, target: webscout@acme.example, interval: 1m,
     contacts: [{name: Ops, phone: "+15555550123"}]}
`

// TestLeafNodeSite runs a site behind a leaf node, as docs/deploy.md
// ("Adding a site in another region") deploys it: the real sender of
// ap-south, connected to the leaf node as sender-ap-south with
// SCOUT_NATS_JS_DOMAIN, binds its durable consumer in the hub's stream
// across the JetStream domain, takes the test the scheduler published in
// the hub, submits the probe to its relay, its mail.sent lands in the
// hub's stream and its acknowledgement reaches the hub. The receiver of
// ap-south publishes mail.returned through the leaf node.
func TestLeafNodeSite(t *testing.T) {
	ls := startLeafSetup(t)
	sink := &testkit.LogBuffer{}
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()

	_, adminJS := ls.hub.connect(t, ctx, natsauth.ProvisionUser, sink)
	if err := platform.Provision(ctx, adminJS, platform.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatalf("provision in the hub: %v", err)
	}
	f, err := checks.Parse("checks.yaml", []byte(leafChecks))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := probemail.ParseKeys(authKeys)
	if err != nil {
		t.Fatal(err)
	}

	// Without the domain, a leaf node client cannot reach the hub's
	// JetStream API (nats-server denies $JS.API.> on leaf connections
	// across domains): the reason for SCOUT_NATS_JS_DOMAIN.
	_, sendJS := ls.leaf.connectWith(t, ctx, "sender-ap-south",
		platform.NATSAuth{NKeyFile: ls.leaf.seeds["sender-ap-south"], JSDomain: leafDomain}, sink)
	if _, err := sendJS.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream of the hub through the leaf node, domain %s: %v", leafDomain, err)
	}
	_, noDomainJS := ls.leaf.connectWith(t, ctx, "sender-ap-south", platform.NATSAuth{NKeyFile: ls.leaf.seeds["sender-ap-south"]}, sink)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	if _, err := noDomainJS.AccountInfo(short); err == nil {
		t.Error("the hub's JetStream answered a leaf node client without the domain; the domain test proves nothing")
	}
	cancelShort()

	scfg := sender.Defaults()
	relay := mailtest.NewServer(t, mailtest.Options{TLS: true})
	scfg.Site, scfg.ReturnAddress, scfg.ProbeKeys, scfg.RelayAddr = "ap-south", "scout@ap-south.return.test", authKeys, relay.Addr
	snd, err := sender.New(scfg, sender.Deps{Checks: f, JetStream: sendJS, Publisher: platform.JetStreamPublisher{JS: sendJS}, Keyring: keys,
		RelayTLS: &tls.Config{RootCAs: relay.RootCAs},
		Logger:   slog.New(slog.NewTextHandler(sink, nil)).With("user", "sender-ap-south")})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := snd.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("sender: %v", err)
		}
	})
	defer wg.Wait()
	defer cancel()

	// The scheduler, in the hub's cluster, publishes a test for ap-south.
	_, schedJS := ls.hub.connect(t, ctx, "scheduler", sink)
	now := time.Now().UTC()
	ts := events.TestScheduled{V: events.SchemaVersion, TestID: leafTestID, CheckID: "acme-rt", Site: "ap-south",
		Kind: events.KindRoundTrip, Attempt: 1, Reason: events.ReasonInterval, ScheduledAt: now, NotAfter: now.Add(time.Minute)}
	if _, err := (platform.JetStreamPublisher{JS: schedJS}).Publish(ctx, ts); err != nil {
		t.Fatalf("scheduler publishes test.scheduled: %v", err)
	}
	// The sender took it through the leaf node (its consumer in the hub)
	// and its mail.sent is in the hub's stream.
	waitSubject(t, ctx, adminJS, events.SiteCheckSubject(events.SubjectMailSent, "ap-south", "acme-rt"), sink)
	waitAcked(t, ctx, adminJS, events.SenderConsumer("ap-south").Durable)

	// The receiver of the site publishes through the leaf node too.
	_, recvJS := ls.leaf.connectWith(t, ctx, "receiver-ap-south",
		platform.NATSAuth{NKeyFile: ls.leaf.seeds["receiver-ap-south"], JSDomain: leafDomain}, sink)
	ret := events.MailReturned{V: events.SchemaVersion, TestID: leafTestID, CheckID: "acme-rt", Site: "ap-south", Attempt: 1,
		KeyID: "k1", StartedAt: now, ReceivedAt: now.Add(time.Second), Via: "smtp"}
	if _, err := (platform.JetStreamPublisher{JS: recvJS}).Publish(ctx, ret); err != nil {
		t.Fatalf("receiver-ap-south publishes mail.returned through the leaf node: %v", err)
	}
	waitSubject(t, ctx, adminJS, events.SiteCheckSubject(events.SubjectMailReturned, "ap-south", "acme-rt"), sink)

	if logs := sink.String(); strings.Contains(strings.ToLower(logs), "permissions violation") {
		t.Errorf("the site's services hit a permissions violation:\n%s", logs)
	}
}

// TestLeafNodeCredentialsAreBounded: what a site's leaf node may do in
// the hub is bounded by its user leaf-<site>, whatever the leaf node's own
// configuration says. A leaf node run with ap-south's seed but with a
// local user allowed everything (a compromised or misconfigured site)
// gets its site's events into the hub, and nothing else: incident.*,
// another site's mail.sent, check.result and notification.* never reach
// the hub or its stream. And the site's users, on the generated leaf configuration, are
// refused incident.open by the leaf node itself.
func TestLeafNodeCredentialsAreBounded(t *testing.T) {
	ls := startLeafSetup(t)
	sink := &testkit.LogBuffer{}
	ctx := natstest.Context(t)
	_, adminJS := ls.hub.connect(t, ctx, natsauth.ProvisionUser, sink)
	if err := platform.Provision(ctx, adminJS, platform.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}

	// On the generated leaf configuration, the receiver's credentials are
	// refused incident.open by the leaf node.
	recvNC, _ := ls.leaf.connectWith(t, ctx, "receiver-ap-south", platform.NATSAuth{NKeyFile: ls.leaf.seeds["receiver-ap-south"]}, sink)
	errs := make(chan error, 10)
	recvNC.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	if err := recvNC.Publish("incident.open.acme-rt", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := recvNC.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("receiver-ap-south publishing incident.open on the leaf node: %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("receiver-ap-south published incident.open on the leaf node without a permissions violation")
	}

	// A rogue leaf node: the seed of leaf-ap-south, and one local user
	// without any permission limit.
	rogueUser, _ := nkeys.CreateUser()
	roguePub, _ := rogueUser.PublicKey()
	rogueSeed, _ := rogueUser.Seed()
	rogueSeedFile := filepath.Join(ls.hub.dir, "rogue.nk")
	if err := os.WriteFile(rogueSeedFile, rogueSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	rogueConf := fmt.Sprintf(`leafnodes {
  remotes: [ { url: %q, account: %s, seed: $%s, tls: { ca_file: %q } } ]
}
accounts { %s { users: [ { nkey: %s } ] } }
`, ls.hubLeaf, natsauth.Account, natsauth.LeafSeedVar, ls.caFile, natsauth.Account, roguePub)
	rogue := runConfig(t, filepath.Join(ls.hub.dir, "rogue.conf"), rogueConf, func(opts *server.Options) {
		opts.Host, opts.Port = "127.0.0.1", -1
		opts.ServerName = "rogue"
		opts.LeafNode.ReconnectInterval = 100 * time.Millisecond
	})
	for deadline := time.Now().Add(15 * time.Second); rogue.NumLeafNodes() != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the rogue leaf node did not connect to the hub")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rogueNC, err := nats.Connect(rogue.ClientURL(), nats.Nkey(roguePub, rogueUser.Sign))
	if err != nil {
		t.Fatal(err)
	}
	defer rogueNC.Close()

	// What reaches the hub, seen by its provision user.
	hubNC, _ := ls.hub.connect(t, ctx, natsauth.ProvisionUser, sink)
	got := make(chan string, 100)
	sub, err := hubNC.Subscribe(">", func(m *nats.Msg) {
		if !strings.HasPrefix(m.Subject, "_INBOX.") && !strings.HasPrefix(m.Subject, "$") {
			got <- m.Subject
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := hubNC.Flush(); err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"incident.open.acme-rt", "incident.resolved.acme-rt", "mail.sent.eu-west.acme-rt", "check.result.acme-rt", "notification.sent.acme-rt"}
	allowed := "mail.sent.ap-south.acme-rt"
	// The interest of the hub's subscription reaches the rogue leaf node
	// asynchronously: publish the allowed subject until it arrives.
	for deadline := time.Now().Add(10 * time.Second); ; {
		for _, s := range forbidden {
			if err := rogueNC.Publish(s, []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
		if err := rogueNC.Publish(allowed, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := rogueNC.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != allowed {
				t.Errorf("the hub received %s from ap-south's leaf node: its user leaf-ap-south must not publish it", s)
			}
			goto arrived
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s from the rogue leaf node never reached the hub: the bound proves nothing", allowed)
		}
	}
arrived:
	// Everything published after the allowed subject arrived: the
	// forbidden subjects are sent again, then the allowed one as a marker.
	for _, s := range forbidden {
		if err := rogueNC.Publish(s, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := rogueNC.Publish(allowed, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := rogueNC.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for marker := false; !marker; {
		select {
		case s := <-got:
			if s != allowed {
				t.Errorf("the hub received %s from ap-south's leaf node: its user leaf-ap-south must not publish it", s)
				continue
			}
			marker = true
		case <-deadline:
			t.Fatal("the marker never reached the hub")
		}
	}
	stream, err := adminJS.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range forbidden {
		if _, err := stream.GetLastMsgForSubject(ctx, s); err == nil {
			t.Errorf("%s from the rogue leaf node is in the hub's stream", s)
		}
	}
}

// TestLeafNodeOverlayConfigParses: the leaf node server's configuration of
// deploy/k8s/overlays/site-ap-south, nats.conf including leaf.conf as the
// ConfigMap nats-leaf mounts them, is taken by nats-server with the
// environment nats-leaf.yaml gives it (the seed, the site's users' public
// keys): its name, client and monitoring ports, the hub as its one remote
// over TLS with the CA file (here a fresh CA at the path leaf.conf names,
// rewritten into a temporary directory), the site's two users.
func TestLeafNodeOverlayConfigParses(t *testing.T) {
	overlay := filepath.Join(root, "deploy", "k8s", "overlays", "site-ap-south")
	dir := t.TempDir()
	cert, _ := mailtest.Certificate(t, "127.0.0.1")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[1]}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nats.conf", "leaf.conf"} {
		data, err := os.ReadFile(filepath.Join(overlay, name))
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.ReplaceAll(string(data), `"/etc/nats-hub-ca/ca.crt"`, strconv.Quote(caFile))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	leaf, _ := nkeys.CreateUser()
	seed, _ := leaf.Seed()
	t.Setenv(natsauth.LeafSeedVar, string(seed))
	users := map[string]string{}
	for _, u := range []string{"sender-ap-south", "receiver-ap-south"} {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		t.Setenv(natsauth.User{Name: u}.NKeyVar(), pub)
		users[pub] = u
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats-server refuses the leaf node site's configuration: %v", err)
	}
	if opts.ServerName != "nats-leaf-ap-south" || opts.Port != 4222 || opts.HTTPPort != 8222 || opts.JetStream {
		t.Errorf("server %q, port %d, monitoring %d, JetStream %v; want nats-leaf-ap-south, 4222, 8222, none",
			opts.ServerName, opts.Port, opts.HTTPPort, opts.JetStream)
	}
	if len(opts.LeafNode.Remotes) != 1 {
		t.Fatalf("%d leaf node remotes, want the hub", len(opts.LeafNode.Remotes))
	}
	r := opts.LeafNode.Remotes[0]
	if len(r.URLs) != 1 || r.URLs[0].Scheme != "tls" || r.URLs[0].Port() != "7422" || r.LocalAccount != natsauth.Account || r.TLSConfig == nil || r.TLSConfig.RootCAs == nil {
		t.Errorf("remote %v, account %s, TLS %v: want the hub's tls://...:7422 in %s verified with the CA file", r.URLs, r.LocalAccount, r.TLSConfig != nil, natsauth.Account)
	}
	if r.Nkey != string(seed) {
		t.Errorf("the remote's NKey is not the seed of %s", natsauth.LeafSeedVar)
	}
	if len(opts.Nkeys) != 2 {
		t.Fatalf("%d users, want the site's sender and receiver", len(opts.Nkeys))
	}
	for _, nk := range opts.Nkeys {
		if users[nk.Nkey] == "" || nk.Permissions == nil {
			t.Errorf("user %s: not one of the site's, or without permissions", nk.Nkey)
		}
	}
}
