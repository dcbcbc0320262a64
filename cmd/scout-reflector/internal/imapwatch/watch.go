// Package imapwatch watches one IMAP folder for Email Scout probes, hands
// each to a reflector and deletes the probes it answered. It is
// scout-reflector's imap mode: the route for Exchange, Microsoft 365, Gmail
// and any server where no program can be hooked into delivery.
//
// Rules (shared/cases c10, DESIGN "Reflector rules"):
//
//   - Messages are found by UID, never by date or a server-side SEARCH:
//     each scan fetches UIDs from the last one seen ("UID FETCH n:*",
//     RFC 3501 section 6.4.8) and keeps only UIDs >= n, since "n:*" also
//     returns the last message when n is past it. A changed UIDVALIDITY
//     (RFC 3501 section 2.3.1.1) invalidates every remembered UID: the
//     folder is scanned again from UID 1.
//   - Only the header is fetched first (BODY.PEEK[HEADER], which leaves
//     \Seen alone); the whole message only when it carries X-Scout-Probe.
//   - A probe is deleted (\Deleted, then UID EXPUNGE when UIDPLUS, RFC 4315,
//     is offered, else EXPUNGE) after its reflection was sent, or when it is
//     a verified probe answered before or too old. Anything else, foreign
//     mail above all, is never touched.
//   - New mail is awaited with IDLE (RFC 2177), re-issued every
//     Config.IdleRefresh (the RFC asks clients to re-issue within 29
//     minutes, and some servers and NAT boxes drop idle connections much
//     sooner), or by scanning every Config.PollInterval when the server does
//     not offer IDLE.
//   - A lost connection is re-established with exponential backoff
//     (cenkalti/backoff). A temporary send failure leaves the probe in place
//     for the next scan; a permanent one is logged and the probe left alone.
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
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
	"github.com/jonboulle/clockwork"
)

// TLS modes of Config.TLS.
const (
	TLSImplicit = "implicit" // TLS from the first byte (port 993, RFC 8314)
	TLSStartTLS = "starttls" // STARTTLS (RFC 3501 section 6.2.1)
	TLSNone     = "none"     // plain text; for loopback servers only
)

// Config says which folder to watch and how.
type Config struct {
	Addr      string      // host:port
	TLS       string      // one of the TLS modes
	TLSConfig *tls.Config // nil: ServerName from Addr, system roots
	Username  string
	Password  string
	Folder    string // "INBOX" when empty
	// IdleRefresh is how long one IDLE runs before it is re-issued (and the
	// folder scanned again). Zero means 9 minutes.
	IdleRefresh time.Duration
	// PollInterval is the scan interval when IDLE is not offered. Zero
	// means 1 minute.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before a reconnection. Zero
	// means 1 second and 5 minutes.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a connection attempt; zero means 30 seconds.
	DialTimeout time.Duration
}

// Handler answers one message: reflector.Reflector is one. envelopeFrom is
// the message's Return-Path, or reflector.UnknownSender when it has none.
type Handler interface {
	Handle(ctx context.Context, msg []byte, envelopeFrom string) (reflector.Decision, error)
}

// ErrRejected is wrapped by Run's error when the server refused the login
// or the folder before any session succeeded: a configuration error.
var ErrRejected = errors.New("IMAP server refused")

// Watcher watches one folder. Its state (the folder's UIDVALIDITY and the
// next UID to look at) lives as long as the Watcher, across reconnections.
type Watcher struct {
	cfg   Config
	h     Handler
	clock clockwork.Clock
	log   *slog.Logger

	uidValidity uint32
	next        imap.UID
	connected   bool // a session reached SELECT once
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
	if cfg.IdleRefresh <= 0 {
		cfg.IdleRefresh = 9 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Minute
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 30 * time.Second
	}
	return &Watcher{cfg: cfg, h: h, clock: clock, log: log, next: 1}, nil
}

// Run watches until ctx ends, reconnecting with backoff, and then returns
// nil. It returns early only with an error wrapping ErrRejected, when the
// very first session's LOGIN or SELECT is refused (wrong password, no such
// folder); later refusals are retried like any failure.
func (w *Watcher) Run(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = w.cfg.MinBackoff
	b.MaxInterval = w.cfg.MaxBackoff
	for {
		err := w.session(ctx, b)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRejected) && !w.connected {
			return err
		}
		wait := b.NextBackOff()
		w.log.Warn("IMAP session ended; reconnecting", "err", err, "in", wait)
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
	if c.Caps().Has(imap.CapLoginDisabled) {
		return fmt.Errorf("%w the login: LOGINDISABLED (use TLS)", ErrRejected)
	}
	if err := c.Login(w.cfg.Username, w.cfg.Password).Wait(); err != nil {
		return rejected("login as "+w.cfg.Username, err)
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		return fmt.Errorf("capability: %w", err)
	}
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
	}
	w.connected = true
	b.Reset()
	idle, uidplus := caps.Has(imap.CapIdle), caps.Has(imap.CapUIDPlus)
	w.log.Info("watching", "server", w.cfg.Addr, "folder", w.cfg.Folder, "messages", sel.NumMessages,
		"uidvalidity", sel.UIDValidity, "idle", idle, "uidplus", uidplus)
	// imapclient updates c.Mailbox() just after Select's Wait returns:
	// the first scan goes by the SELECT response.
	empty := sel.NumMessages == 0
	for {
		if mb := c.Mailbox(); mb != nil {
			empty = mb.NumMessages == 0
		}
		if !empty {
			if err := w.scan(ctx, c, uidplus); err != nil {
				return err
			}
		}
		empty = false
		if idle {
			err = w.idle(ctx, c, updates)
		} else {
			err = w.poll(ctx, c)
		}
		if err != nil {
			return err
		}
	}
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

// rejected classifies a refused command (a tagged NO or BAD) as ErrRejected.
func rejected(what string, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return fmt.Errorf("%w %s: %w", ErrRejected, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// idle waits in IDLE for new mail, the refresh timer or the end.
func (w *Watcher) idle(ctx context.Context, c *imapclient.Client, updates <-chan struct{}) error {
	cmd, err := c.Idle()
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	t := w.clock.NewTimer(w.cfg.IdleRefresh)
	defer t.Stop()
	select {
	case <-updates:
	case <-t.Chan():
	case <-ctx.Done():
		return ctx.Err()
	case <-c.Closed():
		return errors.New("connection closed during IDLE")
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("idle done: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}

// poll waits PollInterval, then asks for news with NOOP.
func (w *Watcher) poll(ctx context.Context, c *imapclient.Client) error {
	select {
	case <-w.clock.After(w.cfg.PollInterval):
	case <-ctx.Done():
		return ctx.Err()
	case <-c.Closed():
		return errors.New("connection closed")
	}
	if err := c.Noop().Wait(); err != nil {
		return fmt.Errorf("noop: %w", err)
	}
	return nil
}

var headerSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}

// outcome of one message.
type outcome int

const (
	outcomeKeep   outcome = iota // not ours, or not answerable: never touched
	outcomeDelete                // answered (now or before), or a verified stale probe
	outcomeRetry                 // temporary failure: look again on the next scan
)

// scan looks at every message from UID w.next on. The caller skips it
// when the folder is empty ("n:*" names no message then).
func (w *Watcher) scan(ctx context.Context, c *imapclient.Client, uidplus bool) error {
	set := imap.UIDSet{imap.UIDRange{Start: w.next, Stop: 0}} // next:*
	msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{headerSection}}).Collect()
	if err != nil {
		return fmt.Errorf("fetch headers %s: %w", set, err)
	}
	slices.SortFunc(msgs, func(a, b *imapclient.FetchMessageBuffer) int { return cmp.Compare(a.UID, b.UID) })
	var del imap.UIDSet
	retry := false
	for _, m := range msgs {
		if m.UID < w.next {
			continue // "n:*" with n past the last UID returns the last message
		}
		switch w.handle(ctx, c, m) {
		case outcomeDelete:
			del.AddNum(m.UID)
		case outcomeRetry:
			retry = true
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retry {
			w.next = m.UID + 1
		}
	}
	if len(del) == 0 {
		return nil
	}
	return w.delete(c, del, uidplus)
}

// handle decides on one message whose header was fetched.
func (w *Watcher) handle(ctx context.Context, c *imapclient.Client, m *imapclient.FetchMessageBuffer) outcome {
	hdr := m.FindBodySection(headerSection)
	ret, err := probemail.ParseReturned(hdr)
	if err != nil || ret.HeaderValue == "" {
		w.log.Debug("ignored", "uid", m.UID, "reason", reflector.ReasonNotProbe)
		return outcomeKeep
	}
	if m.RFC822Size > probemail.MaxMessageBytes {
		w.log.Info("ignored", "uid", m.UID, "reason", "larger than a probe can be", "size_bytes", m.RFC822Size)
		return outcomeKeep
	}
	uid := imap.UIDSetNum(m.UID)
	full, err := c.Fetch(uid, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(full) != 1 {
		w.log.Warn("cannot fetch the probe; trying again on the next scan", "uid", m.UID, "err", err)
		return outcomeRetry
	}
	msg := full[0].FindBodySection(&imap.FetchItemBodySection{Peek: true})
	d, err := w.h.Handle(ctx, msg, returnPath(hdr))
	attrs := append([]any{"uid", m.UID, "action", d.Action}, probeAttrs(d)...)
	switch {
	case err != nil && reflector.IsTemporary(err):
		w.log.Warn("reflection not sent; trying again on the next scan", append(attrs, "err", err)...)
		return outcomeRetry
	case err != nil:
		w.log.Error("reflection not sent (permanent failure); the probe is left in the folder", append(attrs, "err", err)...)
		return outcomeKeep
	case d.Action == reflector.ActionReflect:
		w.log.Info("reflected", attrs...)
		return outcomeDelete
	case d.Reason == reflector.ReasonAnswered || d.Reason == reflector.ReasonStale:
		w.log.Info("deleting a verified probe that needs no answer", attrs...)
		return outcomeDelete
	}
	w.log.Info("ignored", attrs...)
	return outcomeKeep
}

func probeAttrs(d reflector.Decision) []any {
	var a []any
	if d.Reason != "" {
		a = append(a, "reason", d.Reason)
	}
	if d.Detail != "" {
		a = append(a, "detail", d.Detail)
	}
	if d.Probe.TestID != "" {
		a = append(a, "test_id", d.Probe.TestID, "check", d.Probe.CheckID, "site", d.Probe.Site, "return_to", d.Probe.ReturnTo)
	}
	return a
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

// returnPath reads the envelope sender the delivering server recorded in
// Return-Path ("" for a bounce's "<>"), or reflector.UnknownSender.
func returnPath(hdr []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(hdr))
	if err != nil {
		return reflector.UnknownSender
	}
	v, ok := m.Header["Return-Path"]
	if !ok || len(v) == 0 {
		return reflector.UnknownSender
	}
	return strings.Trim(strings.TrimSpace(v[0]), "<>")
}
