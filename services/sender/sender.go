package sender

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/checktarget"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Error classes of mail.sent (MailSent.ErrorClass). The service checks'
// classes are pkg/probe's (docs/service-checks.md); ClassStale and
// ClassProbeBuild are the same words there (probe.ClassStale,
// probe.ClassBadTarget).
const (
	ClassStale            = probe.ClassStale     // picked up after NotAfter; nothing was sent
	ClassNoKey            = "no_key"             // no signing key for the check's customer
	ClassProbeBuild       = probe.ClassBadTarget // the probe could not be built (bad target)
	ClassRelayRefused     = "relay_refused"      // our relay answered 4xx/5xx
	ClassRelayUnreachable = "relay_unreachable"  // no connection / no answer from our relay
	ClassRelayTLS         = "relay_tls"          // STARTTLS or implicit TLS with our relay failed
	ClassRelayAuth        = "relay_auth"         // our relay refused our credentials
	ClassMXRefused        = "mx_refused"         // the customer's MX answered 5xx
	ClassMXDeferred       = "mx_deferred"        // the customer's MX answered 4xx: retried until the attempt's timeout (mail.sent "deferred")
	ClassMXUnreachable    = "mx_unreachable"     // no MX host of the customer answered
	ClassMXTLS            = "mx_tls"             // every reachable MX broke the TLS handshake
	ClassNoMX             = "no_mx"              // DNS: no MX and no address, a null MX (RFC 7505), or a lookup failure
)

// Resolver finds the MX hosts of a domain and the addresses of a host, for
// mx delivery. *net.Resolver implements it; tests route a domain to
// 127.0.0.1.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Deps are the sender's collaborators.
type Deps struct {
	Checks checks.Source // read per test: a reload applies from the next one
	// JetStream binds the site's consumer (events.SenderConsumer).
	JetStream jetstream.JetStream
	// Publisher publishes mail.sent.
	Publisher platform.Publisher
	// Keyring signs probes (Config.Keyring).
	Keyring *probemail.Keyring
	// Resolver is used in mx delivery; nil means the system resolver.
	Resolver Resolver
	// RelayTLS verifies the relay's certificate; nil means the system roots
	// and the host of SCOUT_RELAY_ADDR as server name.
	RelayTLS *tls.Config
	// LookupEnv reads the password of a service check from the variable
	// its password_env names, and the OAuth client secret or service
	// account key path from those its oauth block names (os.LookupEnv in
	// a main); nil means no variable is set, so every check with a login
	// is a monitor_error.
	LookupEnv func(string) (string, bool)
	// ServiceRootCAs verify the certificates of service checks; nil means
	// the system roots.
	ServiceRootCAs *x509.CertPool
	// ServiceResolver looks up the hosts of service checks; nil means the
	// system resolver. `scout dev` resolves its demo host with it.
	ServiceResolver HostResolver
	// TokenHTTP fetches OAuth tokens (the relay's SCOUT_RELAY_OAUTH_*,
	// service checks' oauth blocks) from the providers' token endpoints;
	// nil means a client with a 30 s timeout.
	TokenHTTP  *http.Client
	Clock      clockwork.Clock       // nil: the real clock
	Rand       io.Reader             // orders MX hosts of equal preference; nil: crypto/rand
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	Health     *platform.Health      // nil: no readiness reporting
}

// Sender submits the probes of one site.
type Sender struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	memo    *memo[events.MailSent]
	// probes: round trips, the probe built at a test's first delivery
	probes *memo[builtProbe]
	// observations: service checks, the observation of a test
	observations *memo[events.ServiceChecked]
	dkim         *probemail.DKIMSigner // nil: probes are not DKIM-signed
	// logins: the OAuth logins of service checks, one per check, whose
	// token caches serve every run
	logins *checktarget.Logins
	// relayAuth: the relay's OAuth login (SCOUT_RELAY_OAUTH_*); nil: a
	// password or no login
	relayAuth submit.Authenticator
	// relay keeps the relay's SMTP sessions open between probes (relay
	// delivery; nil in mx delivery)
	relay *submit.Pool
	// maxDeliver is the consumer's delivery bound: the last delivery must
	// report, since JetStream will not deliver again.
	maxDeliver int
}

// New validates cfg and deps and returns a Sender. Registering the metrics
// on deps.Registerer fails when another Sender registered there already.
func New(cfg Config, deps Deps) (*Sender, error) {
	platform.FillDefaults(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Checks == nil || deps.JetStream == nil || deps.Publisher == nil || deps.Keyring == nil {
		return nil, errors.New("sender: Checks, JetStream, Publisher and Keyring are required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Rand == nil {
		deps.Rand = rand.Reader
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Resolver == nil {
		deps.Resolver = &net.Resolver{}
	}
	if deps.Health == nil {
		deps.Health = platform.NewHealth()
	}
	if deps.LookupEnv == nil {
		deps.LookupEnv = func(string) (string, bool) { return "", false }
	}
	log := deps.Logger.With("component", "sender", "site", cfg.Site, "delivery", cfg.Delivery)
	f := deps.Checks.Current()
	if len(f.ForSite(cfg.Site)) == 0 {
		log.Warn("no check runs at this site", "checks_file", f.Path)
	}
	for _, c := range f.ForSite(cfg.Site) {
		if c.Service == nil {
			continue
		}
		if v := c.Service.PasswordEnv; v != "" {
			if pw, ok := deps.LookupEnv(v); !ok || pw == "" {
				log.Error("service check password not set: the check will report monitor_error", "check", c.ID, "password_env", v)
			}
		}
	}
	m, err := newMetrics(deps.Registerer, cfg.Site)
	if err != nil {
		return nil, err
	}
	dkimSigner, err := cfg.DKIM()
	if err != nil {
		return nil, err
	}
	relayLogin, err := cfg.relayLogin(deps.Clock, deps.TokenHTTP)
	if err != nil {
		return nil, err
	}
	s := &Sender{
		cfg: cfg, deps: deps, log: log, metrics: m, memo: newMemo[events.MailSent](), probes: newMemo[builtProbe](), observations: newMemo[events.ServiceChecked](),
		logins:     checktarget.NewLogins(deps.Clock, deps.TokenHTTP),
		maxDeliver: events.SenderConsumer(cfg.Site).MaxDeliver, dkim: dkimSigner,
	}
	if relayLogin != nil {
		s.relayAuth = relayLogin
	}
	if cfg.Delivery == DeliveryRelay {
		rc := cfg.relayConfig()
		rc.TLSConfig, rc.Auth = deps.RelayTLS, s.relayAuth
		s.relay = submit.NewPool(rc)
		s.relay.MaxMessages = cfg.RelaySessionMessages
	}
	return s, nil
}

// Run binds the site's durable consumer (retrying while NATS is away) and
// handles tests until ctx ends. Deliveries of one test go to the same
// worker. It returns nil after ctx ends and in-flight submissions finish.
func (s *Sender) Run(ctx context.Context) error {
	cons, err := platform.NewConsumer(platform.ConsumerConfig{
		Def: events.SenderConsumer(s.cfg.Site), Router: s.router(), Workers: s.cfg.Workers, Key: platform.KeyByMsgID,
		// A service check may run longer than the ack wait allows.
		KeepAlive: true,
	}, platform.ConsumerDeps{JS: s.deps.JetStream, Logger: s.log, Registerer: s.deps.Registerer, Health: s.deps.Health})
	if err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	if s.relay != nil {
		defer s.relay.Close()
	}
	return cons.Run(ctx)
}

// router routes the site's scheduled tests to onScheduled.
func (s *Sender) router() *platform.Router {
	r := platform.NewRouter()
	platform.On(r, s.onScheduled)
	return r
}

// Consumes returns the subject names the sender consumes (its router's),
// for the contract tests of test/contract.
func Consumes() []string { return (&Sender{}).router().Names() }

func (s *Sender) onScheduled(ctx context.Context, ev *events.TestScheduled) error {
	return s.Handle(ctx, *ev, platform.Delivered(ctx))
}

// Handle runs one delivery (delivered counts from 1) of a scheduled test:
// a round trip (roundTrip: build, sign and submit the probe, publish
// mail.sent) or a service check (serviceCheck: run the prober, publish
// service.checked). It returns what the consumer should do: nil (ack: the
// event is stored, or the test is stale: the check file in force no longer
// has its check, site or kind), an error marked fault.Permanent (term: the
// test is for another site) or another error (redeliver later: a temporary
// failure inside the send window, or the event could not be published).
func (s *Sender) Handle(ctx context.Context, ev events.TestScheduled, delivered uint64) error {
	log := s.log.With("test_id", ev.TestID, "check", ev.CheckID, "attempt", ev.Attempt)
	if ev.Site != s.cfg.Site {
		log.Error("test for another site dropped", "test_site", ev.Site)
		return fault.Permanent(fmt.Errorf("test %s is for site %q, this sender serves %q", ev.TestID, ev.Site, s.cfg.Site))
	}
	// A test the check file in force does not match was scheduled from
	// another version of the file (a reload reaches pods at different
	// times): it is stale, not poison, so it is acknowledged and counted,
	// not terminated (which the alert ScoutConsumerDroppedMessages reads).
	f := s.deps.Checks.Current()
	check := f.Lookup(ev.CheckID)
	stale := ""
	switch {
	case check == nil:
		stale = staleUnknownCheck
		log.Warn("test for an unknown check dropped", "checks_file", f.Path)
	case !check.HasSite(s.cfg.Site):
		stale = staleSiteRemoved
		log.Warn("test for a check that does not run at this site dropped", "sites", check.Sites)
	case ev.Kind != check.Kind:
		stale = staleKindChanged
		log.Warn("test whose kind differs from its check's dropped", "kind", ev.Kind, "check_kind", check.Kind)
	}
	if stale != "" {
		s.metrics.stale.WithLabelValues(stale).Inc()
		return nil
	}
	switch check.Kind {
	case events.KindRoundTrip:
		return s.roundTrip(ctx, log, ev, check, delivered)
	case events.KindSMTP, events.KindIMAP, events.KindPOP3:
		return s.serviceCheck(ctx, log, ev, check)
	}
	log.Error("test of a kind this sender does not run dropped", "kind", ev.Kind)
	return fault.Permanent(fmt.Errorf("test %s: kind %q is not handled by the sender", ev.TestID, ev.Kind))
}

// sendWindow returns the end of ev's send window: a test picked up later
// runs nothing (the monitor was too slow; events.TestScheduled.NotAfter).
func sendWindow(ev events.TestScheduled, check *checks.Check) time.Time {
	if !ev.NotAfter.IsZero() {
		return ev.NotAfter
	}
	return ev.ScheduledAt.Add(check.SendWindow())
}
