// Package imapwatch watches one IMAP folder and hands each new message to a
// Handler, which says whether to keep it, delete it, or look at it again
// later. It is shared by scout-reflector's imap mode (answer each probe, then
// delete it) and the receiver's IMAP mode (store each returned probe, then
// delete it).
//
// Rules (docs/field-cases.md, c10, docs/reflector.md):
//
//   - Messages are found by UID, never by date or a server-side SEARCH:
//     each scan fetches UIDs from the next one not yet handled
//     ("UID FETCH n:*", RFC 3501 section 6.4.8) and keeps only UIDs >= n,
//     since "n:*" also returns the last message when n is past it. A
//     changed UIDVALIDITY (RFC 3501 section 2.3.1.1) invalidates every
//     remembered UID: the folder is scanned again from UID 1.
//   - Only the header is fetched first (BODY.PEEK[HEADER], with RFC822.SIZE
//     and INTERNALDATE; PEEK leaves \Seen alone). Handler.Want decides from
//     it whether the whole message is fetched and handed to Handler.Handle.
//   - Delete flags the message \Deleted and expunges it (UID EXPUNGE when
//     UIDPLUS, RFC 4315, is offered, else EXPUNGE) at the end of the scan.
//     The watcher moves past a deleted UID only once the server confirmed
//     the expunge; if the connection breaks first, the message is handed
//     over again, so handlers must be idempotent. Keep leaves the message
//     alone for good (while the UIDVALIDITY lasts). Retry leaves it and
//     hands it over again at the next scan, which comes at the latest
//     Config.RetryInterval later, with its first Message.SeenAt.
//   - A handler that also implements Sweeper is offered, every
//     Config.SweepInterval, the header of every message that earlier scans
//     kept, and says which to delete (clean-up of stale messages).
//   - New mail is awaited with IDLE (RFC 2177), re-issued every
//     Config.IdleRefresh (the RFC asks clients to re-issue within 29
//     minutes, and some servers and NAT boxes drop idle connections much
//     sooner), or by NOOP every Config.PollInterval when the server does
//     not offer IDLE. IDLE alone is not trusted: servers exist whose IDLE
//     stays open but stops announcing new mail, so the watcher also ends
//     IDLE every Config.PollInterval, asks with NOOP, scans and idles
//     again.
//   - The login is LOGIN with Config.Username and Config.Password, or,
//     with Config.Auth, AUTHENTICATE (RFC 3501 section 6.2.2) with the
//     SASL client Auth gives for each session: XOAUTH2 or OAUTHBEARER
//     (RFC 7628) with a fresh OAuth token from pkg/mailauth. With
//     Config.RenewBeforeExpiry the session is ended and a new one logged
//     in before the token expires (Exchange Online drops a session whose
//     token expired).
//   - A lost connection is re-established with exponential backoff
//     (cenkalti/backoff/v5); the watcher's state survives it.
package imapwatch

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-sasl"
	"github.com/jonboulle/clockwork"
)

// TLS modes of Config.TLS.
const (
	TLSImplicit = "implicit" // TLS from the first byte (port 993, RFC 8314)
	TLSStartTLS = "starttls" // STARTTLS (RFC 3501 section 6.2.1)
	TLSNone     = "none"     // plain text; for loopback servers only
)

// Authenticator gives the SASL client of one login (pkg/mailauth.Login
// is one): called before each session, so that every session logs in
// with a valid token. expiry is when the credential expires (zero: not
// known). An error marked permanent (pkg/fault) is a configuration
// error; any other is retried like a lost connection.
type Authenticator interface {
	SASL(ctx context.Context) (c sasl.Client, expiry time.Time, err error)
}

// Config says which folder to watch and how.
type Config struct {
	Addr      string      // host:port
	TLS       string      // one of the TLS modes
	TLSConfig *tls.Config // nil: ServerName from Addr, system roots
	Username  string      // LOGIN user, when Auth is nil; also named in errors
	Password  string
	// Auth, when not nil, logs in with AUTHENTICATE and the SASL client it
	// gives (OAuth: XOAUTH2 or OAUTHBEARER) instead of LOGIN.
	Auth Authenticator
	// RenewBeforeExpiry, when positive, ends the session (LOGOUT) this long
	// before the expiry Auth gave and logs in again at once with a new
	// credential. Choose it shorter than the token cache's renewal margin
	// (pkg/mailauth.Cache: 12 min for a 1 h token), so that the new session
	// gets a new token; a session whose token is already that close to
	// expiry is not renewed early. Zero: sessions are not renewed.
	RenewBeforeExpiry time.Duration
	Folder            string // "INBOX" when empty
	// IdleRefresh is how long one IDLE runs before it is re-issued (and the
	// folder scanned again). Zero means 9 minutes.
	IdleRefresh time.Duration
	// PollInterval is the scan interval: with NOOP when IDLE is not
	// offered, and while IDLE runs too (IDLE is ended, NOOP asks for news,
	// the folder is scanned, IDLE is issued again), for servers whose IDLE
	// stops announcing new mail. Zero means 1 minute.
	PollInterval time.Duration
	// FastPoll, when positive, is the scan interval while mail is
	// expected (Watcher.Expect): the watcher leaves IDLE, asks with NOOP
	// and scans every FastPoll until the expectation ends, so that a
	// message is seen within FastPoll of its delivery rather than after
	// the server's IDLE notification (Dovecot waits about half a second).
	// Zero: IDLE (or PollInterval) only.
	FastPoll time.Duration
	// RetryInterval bounds the wait before a message the handler answered
	// Retry is handed over again. Zero means 30 seconds.
	RetryInterval time.Duration
	// SweepInterval is how often a Sweeper handler is offered the kept
	// messages. Zero means 10 minutes.
	SweepInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before a reconnection. Zero
	// means 1 second and 5 minutes.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a connection attempt; zero means 30 seconds.
	DialTimeout time.Duration
}

// Action is a handler's decision on one message.
type Action int

const (
	// Keep leaves the message in the folder and never hands it over again
	// (until the UIDVALIDITY changes or the watcher is restarted); a
	// Sweeper sees it in later sweeps.
	Keep Action = iota
	// Delete flags the message \Deleted and expunges it.
	Delete
	// Retry leaves the message and hands it over again at the next scan,
	// at the latest Config.RetryInterval later: a temporary failure.
	Retry
)

func (a Action) String() string {
	switch a {
	case Keep:
		return "keep"
	case Delete:
		return "delete"
	case Retry:
		return "retry"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Message is one message of the folder as a scan saw it.
type Message struct {
	UID    imap.UID
	Header []byte // the header section (RFC 5322), CRLF line ends, with the blank line
	Size   int64  // RFC822.SIZE in bytes
	// InternalDate is the server's INTERNALDATE (RFC 3501 section 2.3.3):
	// usually the delivery time, on the server's clock, in whole seconds.
	InternalDate time.Time
	// SeenAt is the watcher's clock when a scan first listed the message
	// (the FETCH response arrived): the message was in the folder by then.
	// A message handed over again after Retry keeps its first SeenAt.
	SeenAt time.Time
	// NotBefore is the watcher's clock when it sent the last command that
	// would have shown the message had it been there (the previous scan's
	// FETCH, or a NOOP that found the folder empty) in the same session:
	// the message arrived between NotBefore and SeenAt. Zero when not
	// known (the first scan of a session).
	NotBefore time.Time
}

// ReturnPath reads the envelope sender the delivering server recorded in
// the Return-Path field (RFC 5321 section 4.4): "" for the null sender
// "<>"; ok is false when the field is absent or holds no address (a
// forged or broken field must not pass for a sender, nor carry a line
// break into logs and events).
func (m *Message) ReturnPath() (addr string, ok bool) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Header))
	if err != nil {
		return "", false
	}
	v, ok := msg.Header["Return-Path"]
	if !ok || len(v) == 0 {
		return "", false
	}
	value := strings.TrimSpace(v[0])
	if value == "<>" {
		return "", true
	}
	a, err := mail.ParseAddress(value)
	if err != nil {
		return "", false
	}
	return a.Address, true
}

// Handler decides on the messages of the folder. Calls come from one
// goroutine, one message at a time, in UID order.
type Handler interface {
	// Want decides from the header alone whether the message concerns the
	// handler. false keeps it (Keep) without fetching the rest.
	Want(m *Message) bool
	// Handle decides on a message Want accepted; msg is the whole message
	// as stored (BODY.PEEK[]). ctx ends when the watcher stops.
	Handle(ctx context.Context, m *Message, msg []byte) Action
}

// Sweeper is implemented by a Handler that cleans up: every
// Config.SweepInterval it is offered the header of each message that an
// earlier scan kept, and returns true for those to delete.
type Sweeper interface {
	Sweep(m *Message) bool
}

// ErrRejected is wrapped by Run's error when the server refused the login
// or the folder, or the token endpoint refused the credential (an error
// marked permanent), before any session succeeded: a configuration error.
// Such errors are marked permanent (pkg/fault).
var ErrRejected = errors.New("IMAP server refused")

// credentialRefused is ErrRejected for a credential refused before the
// server was asked (by the token endpoint): its text is the cause's, not
// "IMAP server refused".
type credentialRefused struct{ err error }

func (c credentialRefused) Error() string        { return c.err.Error() }
func (c credentialRefused) Unwrap() error        { return c.err }
func (c credentialRefused) Is(target error) bool { return target == ErrRejected }

// errRenew ends a session whose credential is about to expire.
var errRenew = errors.New("session renewed before its credential expires")

// Watcher watches one folder. Its state (the folder's UIDVALIDITY, the
// next UID to look at, messages waiting for a retry) lives as long as the
// Watcher, across reconnections.
type Watcher struct {
	cfg     Config
	h       Handler
	sweeper Sweeper // h, when it is one
	clock   clockwork.Clock
	log     *slog.Logger

	uidValidity uint32
	next        imap.UID
	kept        map[imap.UID]bool      // UIDs >= next kept while an earlier one waits for a retry
	firstSeen   map[imap.UID]time.Time // SeenAt of messages waiting for a retry
	retryAt     time.Time              // zero: no retry pending
	lastSweep   time.Time
	connected   bool // a session reached SELECT once
	// lookedAt: when the last command that lists new mail (a scan's
	// FETCH, a NOOP that found the folder empty) was sent in this session;
	// the next scan's messages arrived after it (Message.NotBefore).
	lookedAt time.Time

	mu          sync.Mutex
	status      error
	expectUntil time.Time     // Expect: fast polling until then
	wake        chan struct{} // Expect: ends an IDLE or a poll's wait
}

// New returns a Watcher. It fails when cfg cannot work.
func New(cfg Config, h Handler, clock clockwork.Clock, log *slog.Logger) (*Watcher, error) {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("imap address %q: %w", cfg.Addr, err)
	}
	switch cfg.TLS {
	case TLSImplicit, TLSStartTLS, TLSNone:
	default:
		return nil, fmt.Errorf("imap tls mode %q is not implicit, starttls or none", cfg.TLS)
	}
	if cfg.Folder == "" {
		cfg.Folder = "INBOX"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.IdleRefresh, 9*time.Minute)
	def(&cfg.PollInterval, time.Minute)
	def(&cfg.RetryInterval, 30*time.Second)
	def(&cfg.SweepInterval, 10*time.Minute)
	def(&cfg.MinBackoff, time.Second)
	def(&cfg.MaxBackoff, 5*time.Minute)
	def(&cfg.DialTimeout, 30*time.Second)
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, h: h, clock: clock, log: log, next: 1,
		kept: map[imap.UID]bool{}, firstSeen: map[imap.UID]time.Time{},
		lastSweep: clock.Now(), status: errors.New("not connected yet"), wake: make(chan struct{}, 1)}
	w.sweeper, _ = h.(Sweeper)
	return w, nil
}

// Expect says that mail is due before until: with Config.FastPoll the
// watcher ends IDLE (or its poll's wait) at once and scans every FastPoll
// until then. Expectations add up (the latest until counts). Safe for
// concurrent use; without FastPoll it does nothing.
func (w *Watcher) Expect(until time.Time) {
	if w.cfg.FastPoll <= 0 {
		return
	}
	w.mu.Lock()
	later := until.After(w.expectUntil)
	if later {
		w.expectUntil = until
	}
	w.mu.Unlock()
	if later {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// expecting reports whether mail is expected at now (Expect).
func (w *Watcher) expecting(now time.Time) bool {
	if w.cfg.FastPoll <= 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return now.Before(w.expectUntil)
}

// Status is nil while a session watches the folder, else why not (for
// readiness checks). It is safe for concurrent use.
func (w *Watcher) Status() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

func (w *Watcher) setStatus(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status = err
}

// Run watches until ctx ends, reconnecting with backoff, and then returns
// nil. It returns early only with an error wrapping ErrRejected (marked
// permanent), when the very first session's login or SELECT is refused
// (wrong password, refused token, a token endpoint's permanent refusal
// such as a revoked client secret, no such folder), naming the server's
// text; later refusals are retried like any failure.
func (w *Watcher) Run(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = w.cfg.MinBackoff
	b.MaxInterval = w.cfg.MaxBackoff
	defer w.setStatus(errors.New("stopped"))
	for {
		err := w.session(ctx, b)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errRenew) {
			w.log.Info("logging in again before the token expires")
			continue
		}
		w.setStatus(fmt.Errorf("IMAP session ended: %w", err))
		if errors.Is(err, ErrRejected) && !w.connected {
			return err
		}
		wait := b.NextBackOff()
		w.log.Warn("IMAP session ended; reconnecting", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-w.clock.After(wait):
		}
	}
}

// session runs one connection: login, select, then scan and wait until
// something fails.
func (w *Watcher) session(ctx context.Context, b backoff.BackOff) error {
	updates := make(chan struct{}, 1)
	notify := func() {
		select {
		case updates <- struct{}{}:
		default:
		}
	}
	var (
		sc     sasl.Client
		expiry time.Time
	)
	if w.cfg.Auth != nil {
		var err error
		sc, expiry, err = w.cfg.Auth.SASL(ctx)
		if err != nil {
			if fault.MarkedPermanent(err) {
				return fault.Permanent(credentialRefused{fmt.Errorf("login as %s: %w", w.cfg.Username, err)})
			}
			return fmt.Errorf("login as %s: %w", w.cfg.Username, err)
		}
	}
	c, err := w.dial(&imapclient.Options{
		WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader},
		Dialer:      &net.Dialer{Timeout: w.cfg.DialTimeout},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					notify()
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", w.cfg.Addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	if err := c.WaitGreeting(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if sc != nil {
		if err := w.authenticate(c, sc); err != nil {
			return err
		}
	} else {
		if c.Caps().Has(imap.CapLoginDisabled) {
			return fault.Permanent(fmt.Errorf("%w the login: LOGINDISABLED (use TLS)", ErrRejected))
		}
		if err := c.Login(w.cfg.Username, w.cfg.Password).Wait(); err != nil {
			return rejected("login as "+w.cfg.Username, err)
		}
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		return fmt.Errorf("capability: %w", err)
	}
	selectSent := w.clock.Now()
	sel, err := c.Select(w.cfg.Folder, nil).Wait()
	if err != nil {
		return rejected("select "+w.cfg.Folder, err)
	}
	if sel.UIDValidity != w.uidValidity {
		if w.uidValidity != 0 {
			w.log.Warn("UIDVALIDITY changed: every remembered UID is void; scanning the folder again",
				"folder", w.cfg.Folder, "old", w.uidValidity, "new", sel.UIDValidity)
		}
		w.uidValidity, w.next = sel.UIDValidity, 1
		clear(w.kept)
		clear(w.firstSeen)
		w.retryAt = time.Time{}
	}
	w.connected = true
	w.setStatus(nil)
	b.Reset()
	var renewAt time.Time
	if w.cfg.RenewBeforeExpiry > 0 && !expiry.IsZero() {
		if at := expiry.Add(-w.cfg.RenewBeforeExpiry); at.After(w.clock.Now()) {
			renewAt = at
		} else {
			w.log.Warn("the token expires sooner than RenewBeforeExpiry: this session is not renewed early",
				"expiry", expiry, "renew_before", w.cfg.RenewBeforeExpiry)
		}
	}
	idle, uidplus := caps.Has(imap.CapIdle), caps.Has(imap.CapUIDPlus)
	w.log.Info("watching", "server", w.cfg.Addr, "folder", w.cfg.Folder, "messages", sel.NumMessages,
		"uidvalidity", sel.UIDValidity, "idle", idle, "uidplus", uidplus)
	// imapclient updates c.Mailbox() just after Select's Wait returns:
	// the first scan goes by the SELECT response.
	empty := sel.NumMessages == 0
	w.lookedAt = time.Time{}
	if empty {
		w.lookedAt = selectSent // nothing was there then
	}
	var asked time.Time // when the last wait's NOOP was sent; zero: none
	wasFast := false    // the last wait polled fast
	for {
		if mb := c.Mailbox(); mb != nil {
			empty = mb.NumMessages == 0
		}
		if empty && !asked.IsZero() {
			w.lookedAt = asked // the folder was empty when the NOOP was answered
		}
		if !empty {
			if err := w.scan(ctx, c, uidplus); err != nil {
				return err
			}
		}
		if w.sweeper != nil && !w.clock.Now().Before(w.lastSweep.Add(w.cfg.SweepInterval)) {
			if !empty {
				if err := w.sweep(c, uidplus); err != nil {
					return err
				}
			}
			w.lastSweep = w.clock.Now()
		}
		empty = false
		wait := w.cfg.PollInterval
		if idle {
			wait = min(w.cfg.IdleRefresh, w.cfg.PollInterval)
		}
		now := w.clock.Now()
		fast := w.expecting(now)
		if fast {
			wait = min(wait, w.cfg.FastPoll)
			if !wasFast {
				// A window opened while the watcher was busy (an IDLE
				// ended by another update, say): ask at once, as when it
				// opens during IDLE.
				wait = 0
			}
			// Polling fast already: a wake says nothing more.
			select {
			case <-w.wake:
			default:
			}
		}
		wasFast = fast
		if !renewAt.IsZero() {
			wait = min(wait, max(renewAt.Sub(now), time.Millisecond))
		}
		if !w.retryAt.IsZero() {
			wait = min(wait, max(w.retryAt.Sub(now), time.Millisecond))
		}
		if w.sweeper != nil {
			wait = min(wait, max(w.lastSweep.Add(w.cfg.SweepInterval).Sub(now), time.Millisecond))
		}
		asked = time.Time{}
		if idle && !fast {
			asked, err = w.idle(ctx, c, updates, wait)
		} else {
			asked, err = w.poll(ctx, c, updates, wait, fast)
		}
		if err != nil {
			return err
		}
		if !renewAt.IsZero() && !w.clock.Now().Before(renewAt) {
			if err := c.Logout().Wait(); err != nil {
				w.log.Debug("logout before renewal", "error", err)
			}
			return errRenew
		}
	}
}

// authenticate runs AUTHENTICATE with sc. A refusal names the server's
// text and, when the SASL client kept one, its error challenge (RFC 7628
// section 3.2.2); it is marked permanent.
func (w *Watcher) authenticate(c *imapclient.Client, sc sasl.Client) error {
	mech, _, err := sc.Start()
	if err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	err = c.Authenticate(dummyResponse{sc})
	if err == nil {
		return nil
	}
	what := "authenticate " + mech + " as " + w.cfg.Username
	if f, ok := sc.(interface{ Failure() error }); ok && f.Failure() != nil {
		err = fmt.Errorf("%w (%w)", err, f.Failure())
	}
	return rejected(what, err)
}

// dummyResponse sends the empty response that XOAUTH2 gives to an error
// challenge as the one byte 0x01, the dummy response of RFC 7628 section
// 3.2.3. imapclient writes an empty response as "=" (RFC 4959's notation
// for an empty initial response), which Dovecot 2.3 refuses in a continued
// response with "BAD Invalid base64 data in continued response", hiding
// its real refusal; after 0x01 it sends its tagged NO [AUTHENTICATIONFAILED].
type dummyResponse struct{ sasl.Client }

func (d dummyResponse) Next(challenge []byte) ([]byte, error) {
	resp, err := d.Client.Next(challenge)
	if err == nil && len(resp) == 0 {
		resp = []byte{0x01}
	}
	return resp, err
}

func (w *Watcher) dial(opts *imapclient.Options) (*imapclient.Client, error) {
	host, _, _ := net.SplitHostPort(w.cfg.Addr)
	tc := w.cfg.TLSConfig
	if tc == nil {
		tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	opts.TLSConfig = tc
	switch w.cfg.TLS {
	case TLSImplicit:
		return imapclient.DialTLS(w.cfg.Addr, opts)
	case TLSStartTLS:
		return imapclient.DialStartTLS(w.cfg.Addr, opts)
	}
	return imapclient.DialInsecure(w.cfg.Addr, opts)
}

// rejected classifies a refused command (a tagged NO or BAD) as
// ErrRejected, marked permanent.
func rejected(what string, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return fault.Permanent(fmt.Errorf("%w %s: %w", ErrRejected, what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// idle waits in IDLE for new mail, for d, or for the end. When d ran out,
// it asks for news with NOOP after IDLE ended: a server whose IDLE stopped
// announcing new mail reports it then (RFC 3501 section 6.1.2).
func (w *Watcher) idle(ctx context.Context, c *imapclient.Client, updates <-chan struct{}, d time.Duration) (asked time.Time, err error) {
	cmd, err := c.Idle()
	if err != nil {
		return asked, fmt.Errorf("idle: %w", err)
	}
	t := w.clock.NewTimer(d)
	defer t.Stop()
	timedOut := false
	select {
	case <-updates:
	case <-t.Chan():
		timedOut = true
	case <-w.wake: // mail is due: poll fast from now on
		timedOut = true
	case <-ctx.Done():
		return asked, ctx.Err()
	case <-c.Closed():
		return asked, errors.New("connection closed during IDLE")
	}
	if err := cmd.Close(); err != nil {
		return asked, fmt.Errorf("idle done: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return asked, fmt.Errorf("idle: %w", err)
	}
	if timedOut {
		asked = w.clock.Now()
		if err := c.Noop().Wait(); err != nil {
			return time.Time{}, fmt.Errorf("noop: %w", err)
		}
	}
	return asked, nil
}

// poll waits d (or, unless fast already, until Expect wakes it), then asks
// for news with NOOP; asked is when the NOOP was sent. News the server
// gave meanwhile (an EXISTS with the answer to a scan's commands) ends the
// wait at once: while probes come fast, a scan does not wait a fast poll
// for the mail that arrived during the one before.
func (w *Watcher) poll(ctx context.Context, c *imapclient.Client, updates <-chan struct{}, d time.Duration, fast bool) (asked time.Time, err error) {
	var wake <-chan struct{}
	if !fast {
		wake = w.wake
	}
	select {
	case <-updates:
	default:
		t := w.clock.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.Chan():
		case <-updates:
		case <-wake:
		case <-ctx.Done():
			return asked, ctx.Err()
		case <-c.Closed():
			return asked, errors.New("connection closed")
		}
	}
	asked = w.clock.Now()
	if err := c.Noop().Wait(); err != nil {
		return time.Time{}, fmt.Errorf("noop: %w", err)
	}
	// The news this NOOP brought (imapclient hands it over before the
	// NOOP's completion) is what the scan after it looks at: it must not
	// end the next wait too.
	select {
	case <-updates:
	default:
	}
	return asked, nil
}

var headerSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}

// fetchHeaders fetches UID, size, internal date and header of set, in UID
// order, and the clock when they arrived.
func (w *Watcher) fetchHeaders(c *imapclient.Client, set imap.UIDSet) ([]*imapclient.FetchMessageBuffer, time.Time, error) {
	msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{headerSection}}).Collect()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("fetch headers %s: %w", set, err)
	}
	now := w.clock.Now()
	slices.SortFunc(msgs, func(a, b *imapclient.FetchMessageBuffer) int { return cmp.Compare(a.UID, b.UID) })
	return msgs, now, nil
}

func message(m *imapclient.FetchMessageBuffer, seenAt, notBefore time.Time) *Message {
	return &Message{UID: m.UID, Header: m.FindBodySection(headerSection), Size: m.RFC822Size,
		InternalDate: m.InternalDate, SeenAt: seenAt, NotBefore: notBefore}
}

// scan hands over every message from UID w.next on. The caller skips it
// when the folder is empty ("n:*" names no message then).
func (w *Watcher) scan(ctx context.Context, c *imapclient.Client, uidplus bool) error {
	notBefore, sent := w.lookedAt, w.clock.Now()
	msgs, now, err := w.fetchHeaders(c, imap.UIDSet{imap.UIDRange{Start: w.next, Stop: 0}}) // next:*
	if err != nil {
		return err
	}
	w.lookedAt = sent
	var del imap.UIDSet
	next := w.next
	held := false // a message waits for a retry: next stays at it
	firstSeen := map[imap.UID]time.Time{}
	for _, m := range msgs {
		if m.UID < w.next {
			continue // "n:*" with n past the last UID returns the last message
		}
		act := Keep
		if !w.kept[m.UID] {
			seenAt, nb, ok := w.firstSeen[m.UID], notBefore, true
			if seenAt.IsZero() {
				seenAt, ok = now, false
			}
			if ok {
				nb = time.Time{} // seen by an earlier scan: its bound is gone
			}
			act = w.handle(ctx, c, message(m, seenAt, nb))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if act == Retry {
				firstSeen[m.UID] = seenAt
			}
		}
		switch act {
		case Delete:
			del.AddNum(m.UID)
		case Retry:
			held = true
		case Keep:
			if held {
				w.kept[m.UID] = true
			}
		}
		if !held {
			next = m.UID + 1
		}
	}
	if len(del) > 0 {
		if err := w.delete(c, del, uidplus); err != nil {
			return err
		}
	}
	w.next = next
	w.firstSeen = firstSeen
	for uid := range w.kept {
		if uid < next {
			delete(w.kept, uid)
		}
	}
	w.retryAt = time.Time{}
	if held {
		w.retryAt = now.Add(w.cfg.RetryInterval)
	}
	return nil
}

// handle fetches what the handler wants of one message and asks it.
func (w *Watcher) handle(ctx context.Context, c *imapclient.Client, m *Message) Action {
	if !w.h.Want(m) {
		return Keep
	}
	body := &imap.FetchItemBodySection{Peek: true}
	full, err := c.Fetch(imap.UIDSetNum(m.UID), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil || len(full) != 1 {
		w.log.Warn("cannot fetch the message; trying again later", "uid", m.UID, "error", err)
		return Retry
	}
	return w.h.Handle(ctx, m, full[0].FindBodySection(body))
}

// sweep offers the Sweeper every message below w.next (handled and kept
// by earlier scans) and deletes those it names.
func (w *Watcher) sweep(c *imapclient.Client, uidplus bool) error {
	if w.next <= 1 {
		return nil
	}
	msgs, now, err := w.fetchHeaders(c, imap.UIDSet{imap.UIDRange{Start: 1, Stop: w.next - 1}})
	if err != nil {
		return err
	}
	var del imap.UIDSet
	for _, m := range msgs {
		if m.UID < w.next && w.sweeper.Sweep(message(m, now, time.Time{})) {
			del.AddNum(m.UID)
		}
	}
	w.log.Debug("swept", "messages", len(msgs), "deleting", del.String())
	if len(del) == 0 {
		return nil
	}
	return w.delete(c, del, uidplus)
}

// delete flags the messages \Deleted and expunges them: UID EXPUNGE of just
// these UIDs with UIDPLUS; plain EXPUNGE otherwise (which also removes
// messages another client flagged \Deleted, as that client asked).
func (w *Watcher) delete(c *imapclient.Client, uids imap.UIDSet, uidplus bool) error {
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := c.Store(uids, store, nil).Close(); err != nil {
		return fmt.Errorf("store \\Deleted %s: %w", uids, err)
	}
	var err error
	if uidplus {
		err = c.UIDExpunge(uids).Close()
	} else {
		err = c.Expunge().Close()
	}
	if err != nil {
		return fmt.Errorf("expunge %s: %w", uids, err)
	}
	w.log.Debug("deleted", "uids", uids.String(), "uid_expunge", uidplus)
	return nil
}
