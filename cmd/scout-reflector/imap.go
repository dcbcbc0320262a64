package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/jonboulle/clockwork"
)

// runIMAP is imap mode: watch the folder until the process is stopped.
func runIMAP(ctx context.Context, cfg *resolved, e env) error {
	log, closeLog, err := newLogger(cfg, e)
	if err != nil {
		return err
	}
	defer closeLog()
	return watchIMAP(ctx, cfg, e, clockwork.NewRealClock(), log)
}

// watchIMAP runs the watcher on clock (a fake one in tests).
func watchIMAP(ctx context.Context, cfg *resolved, e env, clock clockwork.Clock, log *slog.Logger) error {
	host, _, _ := net.SplitHostPort(cfg.IMAP.Addr)
	seen, err := reflector.NewFileSeen(cfg.StateDir, e.now)
	if err != nil {
		return configErrorf("state_dir: %w", err)
	}
	out, closeOut := newSender(cfg, true)
	defer closeOut()
	r := reflector.New(reflectorConfig(cfg), timeoutSender{out, cfg}, seen, e.now)
	w, err := newIMAPWatch(imapwatch.Config{
		Addr:      cfg.IMAP.Addr,
		TLS:       cfg.IMAP.TLS,
		TLSConfig: cfg.tlsConfig(host),
		Username:  cfg.IMAP.Username,
		Password:  cfg.imapPassword,
		Auth:      cfg.imapAuth(),
		// With OAuth: a new session, with a new token, before the token
		// expires (Exchange Online ends sessions whose token expired).
		RenewBeforeExpiry: cfg.renewBeforeExpiry(),
		Folder:            cfg.IMAP.Folder,
		IdleRefresh:       cfg.IMAP.IdleRefresh,
		PollInterval:      cfg.IMAP.PollInterval,
		FastPoll:          cfg.IMAP.FastPoll,
	}, r, clock, log)
	if err != nil {
		return configError{err}
	}
	logLogins(log, cfg)
	err = w.Run(ctx)
	if errors.Is(err, imapwatch.ErrRejected) {
		log.Error("configuration error; exit 78", "error", err)
		return logged{configError{err}}
	}
	return err
}

// newIMAPWatch returns the watcher of wc's folder that answers its probes
// with r; with wc.FastPoll it polls fast around each predicted probe
// arrival (dueProbes).
func newIMAPWatch(wc imapwatch.Config, r *reflector.Reflector, clock clockwork.Clock, log *slog.Logger) (*imapwatch.Watcher, error) {
	h := imapReflector{r: r, log: log}
	if wc.FastPoll > 0 {
		h.due = newDueProbes(clock, nil) // its expect is the watcher's, below
	}
	w, err := imapwatch.New(wc, h, clock, log)
	if err != nil {
		return nil, err
	}
	if h.due != nil {
		h.due.expect = w.Expect
	}
	return w, nil
}

// imapReflector answers the probes of the watched folder (an
// imapwatch.Handler): a probe is deleted once its reflection was sent, or
// when it is a verified probe answered before or too old; anything else,
// foreign mail above all, is never touched. A temporary send failure leaves
// the probe for a retry; a permanent one leaves it alone (logged).
type imapReflector struct {
	r   *reflector.Reflector
	log *slog.Logger
	due *dueProbes // nil: no fast poll
}

var _ imapwatch.Handler = imapReflector{}

// Want implements imapwatch.Handler: only mail with an X-Scout-Probe
// header, no larger than a probe can be, is fetched.
func (h imapReflector) Want(m *imapwatch.Message) bool {
	ret, err := probemail.ParseReturned(m.Header)
	if err != nil || ret.HeaderValue == "" {
		h.log.Debug("ignored", "uid", m.UID, "reason", reflector.ReasonNotProbe)
		return false
	}
	if m.Size > probemail.MaxMessageBytes {
		h.log.Info("ignored", "uid", m.UID, "reason", "larger than a probe can be", "size_bytes", m.Size)
		return false
	}
	return true
}

// Handle implements imapwatch.Handler.
func (h imapReflector) Handle(ctx context.Context, m *imapwatch.Message, msg []byte) imapwatch.Action {
	from, ok := m.ReturnPath()
	if !ok {
		from = reflector.UnknownSender
	}
	var arrived time.Time
	if h.due != nil {
		arrived = h.due.clock.Now()
	}
	d, err := h.r.Handle(ctx, msg, from)
	if h.due != nil && d.Action == reflector.ActionReflect {
		h.due.arrived(d.Probe, arrived)
	}
	attrs := append([]any{"uid", m.UID, "action", d.Action}, probeAttrs(d)...)
	switch {
	case err != nil && fault.MarkedTemporary(err):
		h.log.Warn("reflection not sent; trying again later", append(attrs, "error", err)...)
		return imapwatch.Retry
	case err != nil:
		h.log.Error("reflection not sent (permanent failure); the probe is left in the folder", append(attrs, "error", err)...)
		return imapwatch.Keep
	case d.Action == reflector.ActionReflect:
		h.log.Info("reflected", attrs...)
		return imapwatch.Delete
	case d.Reason == reflector.ReasonAnswered || d.Reason == reflector.ReasonStale:
		h.log.Info("deleting a verified probe that needs no answer", attrs...)
		return imapwatch.Delete
	}
	h.log.Info("ignored", attrs...)
	return imapwatch.Keep
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

// timeoutSender bounds each send by the configured timeout.
type timeoutSender struct {
	s   reflector.Sender
	cfg *resolved
}

func (t timeoutSender) Send(ctx context.Context, from string, to []string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	return t.s.Send(ctx, from, to, msg)
}
