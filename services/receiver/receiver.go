package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emersion/go-smtp"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is refused (Rejection.Reason, label "reason" of
// scout_receiver_rejected_total).
const (
	ReasonRecipient     = "recipient"      // RCPT for an address that is not a return address
	ReasonMalformed     = "malformed"      // the header cannot be read, or X-Scout-Probe is malformed
	ReasonUnsigned      = "unsigned"       // no X-Scout-Probe header
	ReasonUnknownCheck  = "unknown_check"  // the signed check is not in the check file
	ReasonUnknownKey    = "unknown_key"    // the signing key id is unknown
	ReasonBadSignature  = "bad_signature"  // the HMAC does not verify (forged or altered)
	ReasonWrongCustomer = "wrong_customer" // signed with another customer's key
	ReasonReplay        = "replay"         // started longer than MaxAge ago
	ReasonFuture        = "future"         // started more than futureSkew ahead of our clock
	ReasonTooLarge      = "too_large"      // over MaxBytes
)

// futureSkew tolerates clock differences between monitor sites: a signed
// start further ahead than this is refused.
const futureSkew = 5 * time.Minute

// drainTimeout bounds the wait for returns being stored at shutdown.
const drainTimeout = 5 * time.Second

// Rejection is a message refused for good: forged, replayed, unsigned or
// not for us. SMTP answers it with 550 (5.7.1, or 5.6.0 when malformed).
type Rejection struct {
	Reason string // Reason*
	TestID string // the test the message claims, when one was found
	Err    error
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// StoreError is a verified return that JetStream did not acknowledge in
// time. It is temporary: SMTP answers 451 and the MTA retries.
type StoreError struct {
	TestID string
	Err    error
}

func (e *StoreError) Error() string { return "store return of test " + e.TestID + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// Envelope is what the transport knows about one message.
type Envelope struct {
	// From is the envelope sender (MAIL FROM; in IMAP mode the Return-Path
	// field); empty for the null sender.
	From string
	// Via is ModeSMTP or ModeIMAP.
	Via string
	// ReceivedAt is when the whole message was in (monitor clock): the end
	// of the DATA in SMTP mode; in IMAP mode when a scan of the mailbox
	// first listed the message, or, while the watcher polls fast, the
	// middle of the window it arrived in (ArrivedAfter).
	ReceivedAt time.Time
	// ArrivedAfter and ListedAt, in IMAP mode while the watcher polls
	// fast: the message came into the mailbox after the scan at
	// ArrivedAfter and before the one at ListedAt, and ReceivedAt is the
	// middle of that window. Zero otherwise.
	ArrivedAfter, ListedAt time.Time
	// Remote is the peer address (IMAP: server, mailbox and UID), for logs.
	Remote string
}

// receivedAt returns when a probe started at startedAt came in:
// ReceivedAt, except when its poll window opened before startedAt. A
// probe cannot arrive before it is sent, so the window is then startedAt
// to ListedAt, and its middle is returned: without it, a probe that
// came back within the fast poll of its start could get a received_at
// before its started_at, a negative round trip.
func (env Envelope) receivedAt(startedAt time.Time) time.Time {
	if env.ArrivedAfter.IsZero() || !startedAt.After(env.ArrivedAfter) || startedAt.After(env.ListedAt) {
		return env.ReceivedAt
	}
	return startedAt.Add(env.ListedAt.Sub(startedAt) / 2)
}

// Outcomes of Take.
const (
	OutcomeStored    = "stored"    // a new mail.returned is in the stream
	OutcomeDuplicate = "duplicate" // the stream already held this test's return
	OutcomeBounce    = "bounce"    // null sender: a bounce stored as mail.bounced, or accepted and dropped
)

// Deps are the receiver's collaborators.
type Deps struct {
	Checks    checks.Source      // read per return: a reload applies from the next one
	Publisher platform.Publisher // must wait for JetStream's ack (platform.JetStreamPublisher)
	Keyring   *probemail.Keyring // verifies probes (Config.Keyring)
	// LookupTXT fetches DKIM keys (Config.DKIM); nil means the system
	// resolver, bounded by Config.DKIMTimeout.
	LookupTXT func(name string) ([]string, error)
	// Listener, when set, is served instead of listening on Config.Listen
	// (`scout dev` and tests pass 127.0.0.1:0). Run closes it. SMTP mode.
	Listener net.Listener
	// IMAPTLS verifies the IMAP server's certificate (IMAP mode); nil means
	// the system roots and SCOUT_RECEIVER_IMAP_SERVER as server name.
	IMAPTLS *tls.Config
	// Sent, in IMAP mode, delivers the site's mail.sent events as they are
	// published (core NATS: platform.NATSSubscriber), so that the mailbox
	// is polled fast while probes are out (Config.IMAPFastPoll); nil: IDLE
	// only.
	Sent Subscriber
	// TokenHTTP fetches the OAuth tokens of IMAP mode (SCOUT_RECEIVER_IMAP_OAUTH_*)
	// from the provider's token endpoint; nil means a client with a 30 s
	// timeout.
	TokenHTTP  *http.Client
	Clock      clockwork.Clock       // nil: the real clock
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	Health     *platform.Health      // nil: no readiness reporting
}

// Receiver takes returned probes in.
type Receiver struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	returns map[string]bool    // lower-case return addresses
	domains map[string]bool    // their lower-case domains (postmaster@)
	verp    verpIndex          // VERP hashes of the check file's (site, check)
	ln      net.Listener       // SMTP mode
	srv     *smtp.Server       // SMTP mode
	watcher *imapwatch.Watcher // IMAP mode
	// cleanupAge: a verified probe of this site older than this, found in
	// the mailbox and not taken, is deleted (IMAP mode).
	cleanupAge time.Duration

	mu       sync.Mutex
	closing  bool
	inflight sync.WaitGroup
}

// New validates cfg and deps. In SMTP mode it loads the TLS certificate and
// opens the listener (or takes Deps.Listener), so that Addr is known before
// Run; Run must be called to serve and release the listener. In IMAP mode
// it prepares the mailbox watcher; Run connects.
func New(cfg Config, deps Deps) (*Receiver, error) {
	platform.FillDefaults(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Checks == nil || deps.Publisher == nil || deps.Keyring == nil {
		return nil, errors.New("receiver: Checks, Publisher and Keyring are required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Health == nil {
		deps.Health = platform.NewHealth()
	}
	r := &Receiver{
		cfg: cfg, deps: deps, returns: map[string]bool{}, domains: map[string]bool{},
		log: deps.Logger.With("component", "receiver", "site", cfg.Site),
	}
	for _, a := range cfg.ReturnAddresses {
		a = strings.ToLower(strings.TrimSpace(a))
		r.returns[a] = true
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			r.domains[a[i+1:]] = true
		}
	}
	m, err := newMetrics(deps.Registerer, cfg.Site)
	if err != nil {
		return nil, err
	}
	r.metrics = m
	if cfg.Mode == ModeIMAP {
		if err := r.newWatcher(); err != nil {
			return nil, err
		}
		return r, nil
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("SCOUT_RECEIVER_TLS_CERT=%q, SCOUT_RECEIVER_TLS_KEY=%q: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	r.srv = r.newServer(tlsConfig)
	ln := deps.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("SCOUT_RECEIVER_LISTEN=%q: %w", cfg.Listen, err)
		}
	}
	r.ln = newCapListener(ln, cfg.MaxConnections, cfg.MaxConnectionsPerIP, r.metrics)
	deps.Health.Set("smtp", errors.New("not serving yet"))
	return r, nil
}

// Addr is the address the SMTP server listens on; nil in IMAP mode.
func (r *Receiver) Addr() net.Addr {
	if r.ln == nil {
		return nil
	}
	return r.ln.Addr()
}

// Run serves SMTP, or watches the mailbox, until ctx ends.
//
// SMTP mode: at the end it stops accepting, lets returns being stored
// finish (at most a few seconds) and closes every connection; an MTA cut
// off before its 250 retries, so nothing is lost.
//
// IMAP mode: it reconnects after any failure with backoff, and returns an
// error only when the server refuses the first login or the mailbox
// (naming SCOUT_RECEIVER_IMAP_USER or SCOUT_RECEIVER_IMAP_MAILBOX). A
// return being stored when ctx ends stays in the mailbox and is taken at
// the next start.
func (r *Receiver) Run(ctx context.Context) error {
	if r.watcher != nil {
		return r.runIMAP(ctx)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.srv.Serve(r.ln) }()
	r.deps.Health.Set("smtp", nil)
	r.log.Info("receiving returns", "addr", r.ln.Addr().String(), "return_addresses", r.cfg.ReturnAddresses,
		"starttls", r.srv.TLSConfig != nil)
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("receiver: smtp serve: %w", err)
	case <-ctx.Done():
	}
	r.deps.Health.Set("smtp", errors.New("stopped"))
	_ = r.ln.Close() // no new connections
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	drained := make(chan struct{})
	go func() { r.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		r.log.Warn("returns still being stored at shutdown; their senders will retry")
	}
	_ = r.srv.Close()
	if err == nil {
		<-errc
	}
	return err
}

// lookupTXT is Deps.LookupTXT, or the system resolver bounded by
// Config.DKIMTimeout.
func (r *Receiver) lookupTXT(name string) ([]string, error) {
	if r.deps.LookupTXT != nil {
		return r.deps.LookupTXT(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DKIMTimeout)
	defer cancel()
	return net.DefaultResolver.LookupTXT(ctx, name)
}

// begin registers a message being handled; false once shutting down.
func (r *Receiver) begin() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.inflight.Add(1)
	return true
}

// acceptsRecipient reports whether addr is a return address.
func (r *Receiver) acceptsRecipient(addr string) bool {
	return r.returns[strings.ToLower(strings.TrimSpace(addr))]
}

// Take verifies one returned message and stores its mail.returned. It
// returns the outcome (Outcome*) and nil, a *Rejection (refuse for good) or a
// *StoreError (try again later). It is independent of the transport.
func (r *Receiver) Take(ctx context.Context, msg []byte, env Envelope) (string, error) {
	log := r.log.With("via", env.Via, "remote", env.Remote, "mail_from", env.From)
	ret, perr := probemail.ParseReturned(msg)
	// From the null sender only a reflection (its own signed header and
	// stamp, as an RFC 3834 auto-reply may be sent) can count; anything
	// else is a bounce or DSN, and a bounce is never refused: a refused
	// bounce becomes a double bounce. It is dropped and reported.
	nullSender := env.From == ""
	dropBounce := func(why string) (string, error) {
		// A bounce sent to the plain return address (VERP off, or a system
		// that bounces to the header From) still counts when it quotes a
		// probe whose signature verifies.
		if rep, t := r.quotedProbeBounce(msg); t != nil {
			return r.storeBounce(ctx, log.With("test_id", t.testID, "check", t.check, "probe_site", t.site), rep, *t, events.MatchedQuotedProbe, env)
		}
		r.metrics.bounces.WithLabelValues(BounceUnmatched).Inc()
		attrs := []any{"test_id", bounceTestID(msg, ret)}
		if ret != nil {
			attrs = append(attrs, "subject", ret.Subject)
		}
		if why != "" {
			attrs = append(attrs, "error", why)
		}
		log.Warn("bounce from the null sender dropped", attrs...)
		return OutcomeBounce, nil
	}
	if nullSender && (perr != nil || ret.HeaderErr != nil || !ret.Reflected()) {
		return dropBounce("")
	}
	reject := func(rej *Rejection) (string, error) {
		if nullSender {
			return dropBounce(rej.Error())
		}
		return "", r.reject(log, rej)
	}
	if perr != nil {
		reason := ReasonMalformed
		if errors.Is(perr, probemail.ErrTooLarge) {
			reason = ReasonTooLarge
		}
		return reject(&Rejection{Reason: reason, Err: perr})
	}
	if ret.HeaderErr != nil {
		reason := ReasonMalformed
		if errors.Is(ret.HeaderErr, probemail.ErrNoProbe) {
			reason = ReasonUnsigned
		}
		return reject(&Rejection{Reason: reason, TestID: ret.TestID, Err: ret.HeaderErr})
	}
	claimed := ret.Probe
	check := r.deps.Checks.Current().Lookup(claimed.CheckID)
	if check == nil {
		return reject(&Rejection{Reason: ReasonUnknownCheck, TestID: claimed.TestID,
			Err: fmt.Errorf("check %q is not configured", claimed.CheckID)})
	}
	to := ret.ProbeTo
	if to == "" {
		to = check.Target
	}
	p, key, err := probemail.Verify(ret.HeaderValue, to, r.deps.Keyring)
	if err != nil {
		reason := ReasonBadSignature
		if errors.Is(err, probemail.ErrUnknownKey) {
			reason = ReasonUnknownKey
		}
		return reject(&Rejection{Reason: reason, TestID: claimed.TestID, Err: err})
	}
	if key.Customer != check.Customer {
		return reject(&Rejection{Reason: ReasonWrongCustomer, TestID: p.TestID,
			Err: fmt.Errorf("key %q belongs to %q, check %q to %q", key.ID, key.Customer, check.ID, check.Customer)})
	}
	env.ReceivedAt = env.receivedAt(p.StartedAt)
	switch age := env.ReceivedAt.Sub(p.StartedAt); {
	case age > r.cfg.MaxAge:
		return reject(&Rejection{Reason: ReasonReplay, TestID: p.TestID,
			Err: fmt.Errorf("probe started %s ago, more than %s", age.Truncate(time.Second), r.cfg.MaxAge)})
	case age < -futureSkew:
		return reject(&Rejection{Reason: ReasonFuture, TestID: p.TestID,
			Err: fmt.Errorf("probe starts %s after our clock", (-age).Truncate(time.Second))})
	}

	ev := events.MailReturned{
		V: events.SchemaVersion, TestID: p.TestID, CheckID: p.CheckID, Site: p.Site, Attempt: p.Attempt,
		KeyID: key.ID, StartedAt: p.StartedAt, ReflectedAt: ret.ReflectedAt, ReceivedAt: env.ReceivedAt.UTC(),
		Via: env.Via, Hops: ret.Hops, MatchedBy: ret.MatchedBy, Path: ret.Path,
	}
	if len(ret.Received) > 0 {
		ev.Evidence = &events.Evidence{Hops: ret.Received}
	}
	if r.cfg.DKIM {
		ev.DKIM = probemail.VerifyDKIM(msg, r.lookupTXT)
	}
	log = log.With("test_id", p.TestID, "check", p.CheckID, "probe_site", p.Site, "attempt", p.Attempt)
	pctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	t0 := time.Now()
	dup, err := r.deps.Publisher.Publish(pctx, ev)
	r.metrics.storeSeconds.Observe(time.Since(t0).Seconds())
	if err != nil {
		if fault.MarkedPermanent(err) {
			return reject(&Rejection{Reason: ReasonMalformed, TestID: p.TestID, Err: err})
		}
		r.metrics.storeFailures.Inc()
		log.Error("return not stored; asking the sender to retry", "error", err)
		return "", &StoreError{TestID: p.TestID, Err: err}
	}
	if dup {
		r.metrics.duplicates.Inc()
		log.Info("duplicate return accepted and ignored")
		return OutcomeDuplicate, nil
	}
	r.metrics.returns.Inc()
	rt := probemail.Measure(p.StartedAt, env.ReceivedAt, ret.ReflectedAt)
	log.Info("return stored", "rtt_ms", rt.RTT.Milliseconds(), "hops", ret.Hops)
	return OutcomeStored, nil
}

func (r *Receiver) reject(log *slog.Logger, rej *Rejection) error {
	r.metrics.rejected.WithLabelValues(rej.Reason).Inc()
	log.Warn("return refused", "reason", rej.Reason, "test_id", rej.TestID, "error", rej.Err)
	return rej
}

var (
	// bounceProbeID finds the test id in a probe header quoted by a DSN
	// (RFC 3464 text/rfc822-headers part), folded or not.
	bounceProbeID = regexp.MustCompile(`(?i)X-Scout-Probe:(?:[^\r\n]|\r?\n[ \t])*?\bid=([a-z0-9_-]{1,63})`)
	// bounceMessageID finds a probe's or reflection's Message-ID.
	bounceMessageID = regexp.MustCompile(`(?i)<(?:scout|reflected)\.([a-z0-9_-]{1,63})@`)
)

// bounceTestID returns the test a bounce is about, for the log: from the
// message's own header fields, else from the original message's header
// quoted in the report; "" when none is found.
func bounceTestID(msg []byte, ret *probemail.Returned) string {
	if ret != nil && ret.TestID != "" {
		return ret.TestID
	}
	for _, re := range []*regexp.Regexp{bounceProbeID, bounceMessageID} {
		if m := re.FindSubmatch(msg); m != nil {
			return strings.ToLower(string(m[1]))
		}
	}
	return ""
}
