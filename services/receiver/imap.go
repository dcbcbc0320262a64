package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/jonboulle/clockwork"
)

// Reasons a message is deleted from the mailbox (label "reason" of
// scout_receiver_imap_deleted_total).
const (
	DeletedTaken   = "taken"   // its mail.returned is in the stream
	DeletedCleanup = "cleanup" // a verified probe of this site, not taken, older than the clean-up age
)

// unknownSender is Envelope.From for a message without Return-Path: not
// the null sender, since nothing says so.
const unknownSender = "unknown"

// newWatcher prepares IMAP mode.
func (r *Receiver) newWatcher() error {
	var longest time.Duration
	for _, c := range r.deps.Checks.Current().Checks { // the file at start
		longest = max(longest, c.Timeout)
	}
	r.cleanupAge = longest + r.cfg.IMAPCleanupMargin
	tc := r.deps.IMAPTLS
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		tc = tc.Clone()
		tc.ServerName = r.cfg.IMAPServer
	}
	wcfg := imapwatch.Config{
		Addr:         r.cfg.imapAddr(),
		TLS:          r.cfg.IMAPTLS,
		TLSConfig:    tc,
		Username:     r.cfg.IMAPUser,
		Password:     r.cfg.IMAPPassword.Reveal(),
		Folder:       r.cfg.IMAPMailbox,
		IdleRefresh:  r.cfg.IMAPIdleRefresh,
		PollInterval: r.cfg.IMAPPollInterval,
	}
	if r.deps.Sent != nil {
		wcfg.FastPoll = r.cfg.IMAPFastPoll
	}
	if login, err := r.cfg.imapLogin(r.deps.Clock, r.deps.TokenHTTP); err != nil {
		return err
	} else if login != nil {
		wcfg.Auth, wcfg.RenewBeforeExpiry = login, r.cfg.IMAPRenewBeforeExpiry
	}
	w, err := imapwatch.New(wcfg, imapHandler{r}, r.deps.Clock, r.log.With("mailbox", r.cfg.IMAPMailbox))
	if err != nil {
		return fmt.Errorf("SCOUT_RECEIVER_IMAP_SERVER=%q, SCOUT_RECEIVER_IMAP_PORT=%d: %w", r.cfg.IMAPServer, r.cfg.IMAPPort, err)
	}
	r.watcher = w
	r.deps.Health.Add("imap", w.Status)
	return nil
}

// imapLogin is the OAuth login of IMAP mode (IMAPOAuth), or nil when the
// mailbox logs in with a password. Its tokens come from the provider's
// endpoint through hc (nil: a client with a 30 s timeout), cached on
// clock.
func (c Config) imapLogin(clock clockwork.Clock, hc *http.Client) (*mailauth.Login, error) {
	if c.IMAPOAuth.Provider == "" {
		return nil, nil
	}
	login, err := mailauth.New(c.IMAPOAuth, c.IMAPUser, mailauth.Options{Clock: clock, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("SCOUT_RECEIVER_IMAP_OAUTH_*: %w", err)
	}
	return login, nil
}

// Subscriber subscribes to a subject of core NATS and calls handle with
// each message's data until unsubscribe is called.
type Subscriber interface {
	Subscribe(subject string, handle func(data []byte)) (unsubscribe func(), err error)
}

// expectReturns makes the watcher poll fast while this site's probes are
// out: each mail.sent of the site that was sent expects its return until
// the probe's start plus its check's timeout.
func (r *Receiver) expectReturns() (func(), error) {
	if r.deps.Sent == nil || r.cfg.IMAPFastPoll <= 0 {
		return func() {}, nil
	}
	subject := events.SubjectMailSent + "." + r.cfg.Site + ".>"
	return r.deps.Sent.Subscribe(subject, func(data []byte) {
		ev, err := events.Decode[events.MailSent](data)
		if err != nil || ev.Status != events.SentOK {
			return
		}
		timeout := 10 * time.Minute
		if c := r.deps.Checks.Current().Lookup(ev.CheckID); c != nil {
			timeout = c.Timeout
		}
		r.watcher.Expect(ev.StartedAt.Add(timeout))
	})
}

// envelope dates a message of the mailbox as well as the watcher can
// tell: received at the middle of the window it arrived in when that
// window is at most two fast polls wide (the watcher was polling fast;
// Take narrows it to the probe's start), else when a scan first listed
// it.
func (r *Receiver) envelope(m *imapwatch.Message, from string) Envelope {
	env := Envelope{From: from, Via: ModeIMAP, ReceivedAt: m.SeenAt,
		Remote: fmt.Sprintf("%s %s uid %d", r.cfg.imapAddr(), r.cfg.IMAPMailbox, m.UID)}
	if w := m.SeenAt.Sub(m.NotBefore); !m.NotBefore.IsZero() && r.cfg.IMAPFastPoll > 0 && w >= 0 && w <= 2*r.cfg.IMAPFastPoll {
		env.ReceivedAt, env.ArrivedAfter, env.ListedAt = m.NotBefore.Add(w/2), m.NotBefore, m.SeenAt
	}
	return env
}

// runIMAP watches the mailbox until ctx ends.
func (r *Receiver) runIMAP(ctx context.Context) error {
	stop, err := r.expectReturns()
	if err != nil {
		return fmt.Errorf("receiver: subscribe to mail.sent.%s (fast polling while probes are out): %w", r.cfg.Site, err)
	}
	defer stop()
	r.log.Info("receiving returns from a mailbox", "server", r.cfg.imapAddr(), "tls", r.cfg.IMAPTLS,
		"user", r.cfg.IMAPUser, "oauth", r.cfg.IMAPOAuth.Provider, "mailbox", r.cfg.IMAPMailbox, "return_addresses", r.cfg.ReturnAddresses,
		"cleanup_after", r.cleanupAge)
	if err := r.watcher.Run(ctx); err != nil {
		return fmt.Errorf("receiver: SCOUT_RECEIVER_IMAP_USER=%q, SCOUT_RECEIVER_IMAP_MAILBOX=%q: %w", r.cfg.IMAPUser, r.cfg.IMAPMailbox, err)
	}
	return nil
}

// ownProbe reports whether p is this receiver's: signed for this site and
// for one of its return addresses.
func (r *Receiver) ownProbe(p probemail.Probe) bool {
	return p.Site == r.cfg.Site && r.acceptsRecipient(p.ReturnTo)
}

// staleOwnProbe reports whether header carries a probe of this receiver
// (ownProbe) whose signature verifies and whose signed start is more than
// the clean-up age before now. Ages come from the signed start, never from
// IMAP dates (docs/field-cases.md, c10).
func (r *Receiver) staleOwnProbe(header []byte, now time.Time) (probemail.Probe, bool) {
	ret, err := probemail.ParseReturned(header)
	if err != nil || ret.HeaderErr != nil {
		return probemail.Probe{}, false
	}
	to := ret.ProbeTo
	if to == "" {
		if c := r.deps.Checks.Current().Lookup(ret.Probe.CheckID); c != nil {
			to = c.Target
		}
	}
	p, _, err := probemail.Verify(ret.HeaderValue, to, r.deps.Keyring)
	if err != nil || !r.ownProbe(p) {
		return probemail.Probe{}, false
	}
	return p, now.Sub(p.StartedAt) > r.cleanupAge
}

// imapHandler takes returns from the mailbox (imapwatch.Handler and
// imapwatch.Sweeper):
//
//   - a message whose probe header names another site or return address,
//     and any other mail that is not from the null sender, is never
//     fetched nor touched;
//   - this site's returns (and null-sender mail, to count and log bounces)
//     go through Take with Via "imap" and ReceivedAt the time the message
//     was first seen; a stored (or duplicate) return is deleted only after
//     JetStream acknowledged it; a store failure leaves it for a retry;
//   - what Take refuses is kept, unless it carries a verified probe of this
//     site older than the clean-up age: then it is deleted, now or by a
//     later sweep.
type imapHandler struct{ r *Receiver }

var (
	_ imapwatch.Handler = imapHandler{}
	_ imapwatch.Sweeper = imapHandler{}
)

// Want implements imapwatch.Handler.
func (h imapHandler) Want(m *imapwatch.Message) bool {
	r := h.r
	ret, err := probemail.ParseReturned(m.Header)
	switch {
	case err == nil && ret.HeaderErr == nil:
		if !r.ownProbe(ret.Probe) {
			r.log.Debug("mailbox: another site's probe left alone", "uid", m.UID, "test_id", ret.Probe.TestID,
				"probe_site", ret.Probe.Site, "return_to", ret.Probe.ReturnTo)
			return false
		}
	case nullSender(m):
		// A bounce: Take counts and logs it.
	default:
		r.log.Debug("mailbox: not a probe, left alone", "uid", m.UID)
		return false
	}
	if m.Size > r.cfg.MaxBytes {
		r.metrics.rejected.WithLabelValues(ReasonTooLarge).Inc()
		r.log.Warn("mailbox: message larger than SCOUT_RECEIVER_MAX_BYTES left alone", "uid", m.UID, "size_bytes", m.Size)
		return false
	}
	return true
}

func nullSender(m *imapwatch.Message) bool {
	from, ok := m.ReturnPath()
	return ok && from == ""
}

// Handle implements imapwatch.Handler.
func (h imapHandler) Handle(ctx context.Context, m *imapwatch.Message, msg []byte) imapwatch.Action {
	r := h.r
	from, ok := m.ReturnPath()
	if !ok {
		from = unknownSender
	}
	r.log.Debug("mailbox: message", "uid", m.UID, "seen_at", m.SeenAt, "not_before", m.NotBefore, "internal_date", m.InternalDate, "size_bytes", m.Size)
	outcome, err := r.Take(ctx, msg, r.envelope(m, from))
	var rej *Rejection
	switch {
	case err == nil && (outcome == OutcomeStored || outcome == OutcomeDuplicate):
		r.metrics.imapDeleted.WithLabelValues(DeletedTaken).Inc()
		return imapwatch.Delete
	case err == nil || errors.As(err, &rej): // a bounce, or refused for good
		if h.Sweep(m) {
			return imapwatch.Delete
		}
		return imapwatch.Keep
	}
	r.log.Warn("mailbox: return not taken; trying again later", "uid", m.UID, "error", err)
	return imapwatch.Retry
}

// Sweep implements imapwatch.Sweeper: the clean-up.
func (h imapHandler) Sweep(m *imapwatch.Message) bool {
	r := h.r
	now := r.deps.Clock.Now()
	p, stale := r.staleOwnProbe(m.Header, now)
	if !stale {
		return false
	}
	r.metrics.imapDeleted.WithLabelValues(DeletedCleanup).Inc()
	r.log.Info("mailbox: deleting a probe of this site that was not taken", "uid", m.UID, "test_id", p.TestID,
		"check", p.CheckID, "attempt", p.Attempt, "age", now.Sub(p.StartedAt).Truncate(time.Second),
		"cleanup_after", r.cleanupAge)
	return true
}
