package receiver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/prometheus/client_golang/prometheus"
)

func loadConfig(vars map[string]string) (receiver.Config, error) {
	return platform.LoadEnv[receiver.Config](func(k string) string { return vars[k] })
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(map[string]string{
		"SCOUT_SITE": "eu-west", "SCOUT_PROBE_KEYS": keySpec,
		"SCOUT_RETURN_ADDRESSES": "scout-return+eu-west@monitor.example, Scout-Return+US-East@monitor.example",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":2525" || cfg.Mode != "smtp" || cfg.MaxBytes != probemail.MaxMessageBytes || cfg.MaxAge != 48*time.Hour ||
		cfg.Timeout != 5*time.Minute || cfg.StoreTimeout != 10*time.Second || len(cfg.ReturnAddresses) != 2 ||
		cfg.CommandTimeout != time.Minute || cfg.MaxConnections != 1000 || cfg.MaxConnectionsPerIP != 50 {
		t.Errorf("defaults %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	if _, err := cfg.Keyring(); err != nil {
		t.Error(err)
	}
	if cfg.IMAPTLS != "implicit" || cfg.IMAPPort != 0 || cfg.IMAPMailbox != "INBOX" || cfg.IMAPPollInterval != 10*time.Second ||
		cfg.IMAPIdleRefresh != 9*time.Minute || cfg.IMAPCleanupMargin != time.Hour {
		t.Errorf("imap defaults %+v", cfg)
	}
	cfg, err = loadConfig(map[string]string{
		"SCOUT_SITE": "eu-west", "SCOUT_PROBE_KEYS": keySpec, "SCOUT_RETURN_ADDRESSES": "scout-return+eu-west@monitor.example",
		"SCOUT_RECEIVER_MODE": "imap", "SCOUT_RECEIVER_IMAP_SERVER": "imap.monitor.example",
		"SCOUT_RECEIVER_IMAP_USER": "scout-return", "SCOUT_RECEIVER_IMAP_PASSWORD": "pw",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("imap mode with server, user and password: %v", err)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	if _, err := loadConfig(map[string]string{}); err == nil ||
		!strings.Contains(err.Error(), "SCOUT_SITE") || !strings.Contains(err.Error(), "SCOUT_RETURN_ADDRESSES") || !strings.Contains(err.Error(), "SCOUT_PROBE_KEYS") {
		t.Errorf("missing variables: %v", err)
	}
	cases := []struct {
		name   string
		change func(*receiver.Config)
		want   string
	}{
		{"site", func(c *receiver.Config) { c.Site = "eu.west" }, `SCOUT_SITE="eu.west"`},
		{"mode", func(c *receiver.Config) { c.Mode = "pop3" }, `SCOUT_RECEIVER_MODE="pop3"`},
		{"listen", func(c *receiver.Config) { c.Listen = "2525" }, `SCOUT_RECEIVER_LISTEN="2525"`},
		{"return address", func(c *receiver.Config) { c.ReturnAddresses = []string{"not an address"} }, `SCOUT_RETURN_ADDRESSES: "not an address"`},
		{"no return address", func(c *receiver.Config) { c.ReturnAddresses = nil }, "SCOUT_RETURN_ADDRESSES: no address"},
		{"max bytes", func(c *receiver.Config) { c.MaxBytes = 10 << 20 }, "SCOUT_RECEIVER_MAX_BYTES=10485760"},
		{"tls pair", func(c *receiver.Config) { c.TLSCert = "/etc/scout/cert.pem" }, "set both or neither"},
		{"max age", func(c *receiver.Config) { c.MaxAge = time.Second }, "SCOUT_RECEIVER_MAX_AGE=1s"},
		{"store timeout", func(c *receiver.Config) { c.StoreTimeout = 0 }, "SCOUT_RECEIVER_STORE_TIMEOUT=0s"},
		{"command timeout", func(c *receiver.Config) { c.CommandTimeout = 10 * time.Minute }, "SCOUT_RECEIVER_COMMAND_TIMEOUT=10m0s"},
		{"max connections", func(c *receiver.Config) { c.MaxConnections = 0 }, "SCOUT_RECEIVER_MAX_CONNECTIONS=0"},
		{"max connections per ip", func(c *receiver.Config) { c.MaxConnectionsPerIP = 2000 }, "SCOUT_RECEIVER_MAX_CONNECTIONS_PER_IP=2000"},
		{"keys", func(c *receiver.Config) { c.ProbeKeys = "" }, "SCOUT_PROBE_KEYS"},
		{"imap server", imapMode(func(c *receiver.Config) { c.IMAPServer = "" }), "SCOUT_RECEIVER_IMAP_SERVER"},
		{"imap server with port", imapMode(func(c *receiver.Config) { c.IMAPServer = "imap.example:993" }), `SCOUT_RECEIVER_IMAP_SERVER="imap.example:993"`},
		{"imap port", imapMode(func(c *receiver.Config) { c.IMAPPort = 70000 }), "SCOUT_RECEIVER_IMAP_PORT=70000"},
		{"imap tls", imapMode(func(c *receiver.Config) { c.IMAPTLS = "ssl" }), `SCOUT_RECEIVER_IMAP_TLS="ssl"`},
		{"imap password in clear", imapMode(func(c *receiver.Config) { c.IMAPServer, c.IMAPTLS = "imap.example", "none" }), "SCOUT_RECEIVER_IMAP_TLS=none"},
		{"imap user", imapMode(func(c *receiver.Config) { c.IMAPUser = "" }), "SCOUT_RECEIVER_IMAP_USER"},
		{"imap password", imapMode(func(c *receiver.Config) { c.IMAPPassword = "" }), "SCOUT_RECEIVER_IMAP_PASSWORD"},
		{"imap mailbox", imapMode(func(c *receiver.Config) { c.IMAPMailbox = " " }), "SCOUT_RECEIVER_IMAP_MAILBOX"},
		{"imap poll", imapMode(func(c *receiver.Config) { c.IMAPPollInterval = 0 }), "SCOUT_RECEIVER_IMAP_POLL_INTERVAL=0s"},
		{"imap idle", imapMode(func(c *receiver.Config) { c.IMAPIdleRefresh = 30 * time.Minute }), "SCOUT_RECEIVER_IMAP_IDLE_REFRESH=30m0s"},
		{"imap cleanup margin", imapMode(func(c *receiver.Config) { c.IMAPCleanupMargin = time.Second }), "SCOUT_RECEIVER_IMAP_CLEANUP_MARGIN=1s"},
	}
	base := config()
	imapMode(func(*receiver.Config) {})(&base)
	if err := base.Validate(); err != nil {
		t.Fatalf("the imap base configuration is not valid: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config()
			tc.change(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
	cfg := config()
	cfg.ProbeKeys = "acme:k1"
	if _, err := cfg.Keyring(); err == nil || !strings.Contains(err.Error(), "SCOUT_PROBE_KEYS") {
		t.Errorf("bad key list: %v", err)
	}
	// An address in use: New fails naming the variable.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg = config()
	cfg.Listen = busy.Addr().String()
	keys, _ := probemail.ParseKeys(keySpec)
	f, _ := checks.Parse("c.yaml", []byte(checkFile))
	if _, err := receiver.New(cfg, receiver.Deps{Checks: f, Publisher: nopPublisher{}, Keyring: keys}); err == nil || !strings.Contains(err.Error(), "SCOUT_RECEIVER_LISTEN") {
		t.Errorf("address in use: %v", err)
	}
}

// imapMode returns change applied to a valid IMAP mode configuration.
func imapMode(change func(*receiver.Config)) func(*receiver.Config) {
	return func(c *receiver.Config) {
		c.Mode, c.IMAPServer, c.IMAPTLS, c.IMAPUser, c.IMAPPassword = receiver.ModeIMAP, "127.0.0.1", "none", "u", "pw"
		c.IMAPMailbox, c.IMAPPollInterval, c.IMAPIdleRefresh, c.IMAPCleanupMargin = "INBOX", time.Second, time.Minute, time.Hour
		change(c)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	cfg := config()
	cfg.IMAPPassword = "imap-pw-BwcHBwcH"
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg, "keys", cfg.ProbeKeys)
	for _, out := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), buf.String()} {
		if strings.Contains(out, "BwcHBwcH") || !strings.Contains(out, "redacted") {
			t.Errorf("secret printed or not marked: %s", out)
		}
	}
}

// TestSitesShareARegistry: receivers of two sites register their metrics
// on one registry (`scout dev`), told apart by the site label.
func TestSitesShareARegistry(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	for _, s := range []string{"eu-west", "us-east"} {
		cfg := config()
		cfg.Site = s
		r, err := receiver.New(cfg, receiver.Deps{Checks: e.checks, Publisher: nopPublisher{}, Keyring: e.keys, Registerer: reg})
		if err != nil {
			t.Fatalf("site %s: %v", s, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.Run(ctx); err != nil { // releases the listener
			t.Error(err)
		}
	}
}
