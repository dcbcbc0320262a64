package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/natsauth"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// natsConfig runs `scout nats-config args...` and returns its output.
func natsConfig(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"nats-config"}, args...), func(string) string { return "" }, &out)
	return out.String(), err
}

// parseNATSConfig parses conf with nats-server's own configuration parser,
// each user's public key (and the leaf seed) in the environment as the
// chart's Secrets give them.
func parseNATSConfig(t *testing.T, conf string, users []string) *server.Options {
	t.Helper()
	for _, u := range users {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		t.Setenv(natsauth.User{Name: u}.NKeyVar(), pub)
	}
	leaf, _ := nkeys.CreateUser()
	seed, _ := leaf.Seed()
	t.Setenv(natsauth.LeafSeedVar, string(seed))
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the output: %v\n%s", err, conf)
	}
	return opts
}

// TestNATSConfigHub: the hub's configuration names every user of the
// deployment once, in account SCOUT with JetStream, each with the
// permissions its role needs and not more (spot checks of the issue's
// examples), and nats-server takes it.
func TestNATSConfigHub(t *testing.T) {
	out, err := natsConfig(t, "--sites", "eu-west,us-east", "--domain", "scout", "--leaf-sites", "us-east")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"provision", "scheduler", "sender-eu-west", "sender-us-east", "receiver-eu-west", "receiver-us-east",
		"evaluator", "notifier", "recorder", "web", "leaf-us-east"}
	opts := parseNATSConfig(t, out, want)
	var got []string
	pub := map[string][]string{}  // user -> publish allow
	deny := map[string][]string{} // user -> publish deny
	byKey := map[string]string{}  // public key -> user
	for _, u := range want {
		byKey[os.Getenv(natsauth.User{Name: u}.NKeyVar())] = u
	}
	for _, nk := range opts.Nkeys {
		u := byKey[nk.Nkey]
		got = append(got, u)
		if nk.Account == nil || nk.Account.Name != natsauth.Account {
			t.Errorf("user %s is not in account %s", u, natsauth.Account)
		}
		if nk.Permissions != nil && nk.Permissions.Publish != nil {
			pub[u], deny[u] = nk.Permissions.Publish.Allow, nk.Permissions.Publish.Deny
		}
		if u == natsauth.ProvisionUser && nk.Permissions != nil {
			t.Errorf("provision has permission limits: it creates the stream and buckets")
		}
		if u == natsauth.ProvisionUser {
			continue
		}
		// Replies only; a receiver (and a leaf node carrying one) also
		// follows its own site's mail.sent.
		wantSub := []string{"_INBOX.>"}
		for _, site := range []string{"eu-west", "us-east"} {
			if u == "receiver-"+site || u == "leaf-"+site {
				wantSub = append(wantSub, "mail.sent."+site+".>")
			}
		}
		if nk.Permissions == nil || nk.Permissions.Subscribe == nil || !slices.Equal(nk.Permissions.Subscribe.Allow, wantSub) {
			var got any = nk.Permissions
			if nk.Permissions != nil && nk.Permissions.Subscribe != nil {
				got = nk.Permissions.Subscribe.Allow
			}
			t.Errorf("user %s: subscribe permissions %v, want %v", u, got, wantSub)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("users %v, want %v", got, want)
	}
	// Only the JetStream domain of the hub is set on the account.
	if !strings.Contains(out, "jetstream: enabled") {
		t.Error("JetStream is not enabled in the account")
	}
	for _, c := range []struct {
		user     string
		has, not []string
	}{
		{"receiver-eu-west", []string{"mail.returned.>", "mail.bounced.>", "$JS.API.INFO", "$JS.scout.API.INFO"}, []string{"incident.open.>", "mail.sent.>", "mail.sent.eu-west.>"}},
		{"sender-eu-west", []string{"mail.sent.eu-west.>", "service.checked.eu-west.>", "$JS.API.CONSUMER.MSG.NEXT.SCOUT.sender-eu-west", "$JS.ACK.SCOUT.sender-eu-west.>"},
			[]string{"mail.returned.>", "mail.sent.us-east.>", "mail.sent.>", "$JS.API.CONSUMER.MSG.NEXT.SCOUT.sender-us-east"}},
		{"evaluator", []string{"incident.open.>", "check.result.>", "$KV.scout_incidents.>"}, []string{"notification.sent.>"}},
		{"notifier", []string{"notification.sent.>", "notification.failed.>"}, []string{"incident.open.>", "check.result.>"}},
		{"recorder", []string{"$JS.API.CONSUMER.MSG.NEXT.SCOUT.recorder"}, []string{"incident.open.>"}},
		{"leaf-us-east", []string{"mail.sent.us-east.>", "mail.returned.>", "$JS.scout.API.CONSUMER.MSG.NEXT.SCOUT.sender-us-east"}, []string{"incident.open.>", "mail.sent.eu-west.>"}},
	} {
		for _, s := range c.has {
			if !slices.Contains(pub[c.user], s) {
				t.Errorf("%s may not publish %s: %v", c.user, s, pub[c.user])
			}
		}
		for _, s := range c.not {
			if slices.Contains(pub[c.user], s) {
				t.Errorf("%s may publish %s", c.user, s)
			}
		}
	}
	// The notifier publishes only notification.* (and JetStream's API).
	for _, s := range pub["notifier"] {
		if !strings.HasPrefix(s, "notification.") && !strings.HasPrefix(s, "$") {
			t.Errorf("notifier may publish %s", s)
		}
	}
	// The web service reads the stream with ordered consumers but cannot
	// pull another service's durable consumer.
	if !slices.Contains(deny["web"], "$JS.API.CONSUMER.MSG.NEXT.SCOUT.evaluator-p00") {
		t.Errorf("web may pull the evaluator's consumer: deny %v", deny["web"])
	}
}

// TestNATSConfigLeaf: `--leaf SITE` prints a leaf node server that
// nats-server takes: one remote, the hub over TLS with the CA file, in
// account SCOUT, with the seed from $SCOUT_LEAF_SEED; the site's two users
// and no other; no JetStream of its own.
func TestNATSConfigLeaf(t *testing.T) {
	cert, _ := mailtest.Certificate(t, "127.0.0.1")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[1]}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := natsConfig(t, "--sites", "eu-west,ap-south", "--domain", "scout", "--leaf", "ap-south",
		"--hub-url", "tls://nats-leaf.scout.example:7422", "--ca", caFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := parseNATSConfig(t, out, []string{"sender-ap-south", "receiver-ap-south"})
	if opts.JetStream {
		t.Error("the leaf node runs JetStream: the site must use the hub's")
	}
	if len(opts.LeafNode.Remotes) != 1 {
		t.Fatalf("%d remotes, want the hub", len(opts.LeafNode.Remotes))
	}
	r := opts.LeafNode.Remotes[0]
	if len(r.URLs) != 1 || r.URLs[0].String() != "tls://nats-leaf.scout.example:7422" || r.LocalAccount != natsauth.Account {
		t.Errorf("remote %v in account %s", r.URLs, r.LocalAccount)
	}
	if r.Nkey == "" && r.Credentials == "" {
		t.Error("the remote has no credentials")
	}
	if r.TLSConfig == nil || r.TLSConfig.RootCAs == nil {
		t.Error("the remote does not verify the hub with the CA file")
	} else {
		ca, _ := x509.ParseCertificate(cert.Certificate[1])
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if !r.TLSConfig.RootCAs.Equal(pool) {
			t.Error("the remote's CA is not the CA file's")
		}
	}
	if len(opts.Nkeys) != 2 {
		t.Errorf("%d users on the leaf node, want the site's sender and receiver", len(opts.Nkeys))
	}
}

// TestNATSConfigErrors: a configuration nats-server would refuse, or that
// would not secure a leaf node, is an error (exit status 2) saying why.
func TestNATSConfigErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no sites"},
		{[]string{"--sites", "eu west"}, "not [a-z0-9_-]"},
		{[]string{"--sites", "eu-west,eu-west"}, "listed twice"},
		{[]string{"--sites", "eu-west", "--leaf-sites", "ap-south"}, "not one of"},
		{[]string{"--sites", "eu-west", "--leaf", "eu-west", "--hub-url", "tls://h:7422", "--ca", "/ca.crt"}, "JetStream domain"},
		{[]string{"--sites", "eu-west", "--domain", "scout", "--leaf", "eu-west", "--hub-url", "nats://h:7422", "--ca", "/ca.crt"}, "must be tls://"},
		{[]string{"--sites", "eu-west", "--domain", "scout", "--leaf", "eu-west", "--hub-url", "tls://h:7422"}, "CA file is required"},
	} {
		_, err := natsConfig(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != 2 {
			t.Errorf("nats-config %v: %v (exit %d), want exit 2 and %q", c.args, err, exitCode(err), c.want)
		}
	}
}
