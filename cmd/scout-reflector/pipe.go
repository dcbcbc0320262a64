package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emailscout/emailscout/pkg/submit"
)

// runMessage is pipe mode (path empty: the message on stdin) and file mode.
// It returns nil when the message was reflected or ignored, or when the
// reflection failed for good (logged: the probe must not bounce); a
// temporary error (exit 75) when the MTA should retry; a configError (exit
// 78) when the configuration is broken.
func runMessage(ctx context.Context, cfg *resolved, e env, path string) error {
	log, closeLog, err := newLogger(cfg, e)
	if err != nil {
		return err
	}
	defer closeLog()

	msg, err := readMessage(e.stdin, path)
	if errors.Is(err, probemail.ErrTooLarge) {
		// Probes are about 1 KiB: this is someone else's mail.
		log.Info("ignored", "reason", "larger than a probe can be", "limit_bytes", probemail.MaxMessageBytes)
		return nil
	}
	if err != nil {
		log.Error("cannot read the message; exit 75 so that the MTA retries", "error", err)
		return logged{fault.Temporary(err)}
	}
	sender := reflector.UnknownSender
	if v, ok := e.lookupEnv(envSender); ok {
		sender = v
	}
	out, _ := newSender(cfg, false)
	r := reflector.New(reflectorConfig(cfg), out, &lazySeen{dir: cfg.StateDir, now: e.now}, e.now)
	sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	d, err := r.Handle(sctx, msg, sender)
	attrs := decisionAttrs(d)
	var ce configError
	switch {
	case err == nil && d.Action == reflector.ActionReflect:
		log.Info("reflected", attrs...)
		return nil
	case err == nil:
		log.Info("ignored", attrs...)
		return nil
	case errors.As(err, &ce):
		log.Error("configuration error; exit 78", append(attrs, "error", err)...)
		return logged{err}
	case fault.MarkedTemporary(err):
		log.Error("reflection not sent; exit 75 so that the MTA retries", append(attrs, "error", err)...)
		return logged{err}
	}
	log.Error("reflection not sent and not retried (permanent failure); the monitor will record a timeout", append(attrs, "error", err)...)
	return nil
}

// readMessage reads stdin (path empty) or the file, at most
// probemail.MaxMessageBytes. Past that it returns ErrTooLarge, having read
// stdin to its end so that the MTA sees the whole message taken.
func readMessage(stdin io.Reader, path string) ([]byte, error) {
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return probemail.ReadMessage(f)
	}
	msg, err := probemail.ReadMessage(stdin)
	if errors.Is(err, probemail.ErrTooLarge) {
		_, _ = io.Copy(io.Discard, stdin)
	}
	return msg, err
}

func reflectorConfig(cfg *resolved) reflector.Config {
	return reflector.Config{
		Keys:         cfg.keys,
		Mailboxes:    append([]string(nil), cfg.Mailboxes...),
		EnvelopeFrom: cfg.EnvelopeFrom,
		MaxAge:       cfg.MaxAge,
	}
}

// newSender returns the configured output and what ends it. With keep
// (imap mode: one process for many reflections) the SMTP output keeps its
// sessions open between reflections (reflector.SMTP.Pool) and the closer
// ends them with QUIT; a pipe run sends one reflection and keeps nothing.
func newSender(cfg *resolved, keep bool) (reflector.Sender, func()) {
	if cfg.Output != outputSMTP {
		return reflector.Sendmail{Path: cfg.Sendmail}, func() {}
	}
	host, _, _ := net.SplitHostPort(cfg.SMTP.Addr)
	helo := cfg.SMTP.Helo
	if helo == "" {
		helo, _ = os.Hostname()
	}
	out := reflector.SMTP{Config: submit.Config{
		Addr:      cfg.SMTP.Addr,
		TLS:       cfg.SMTP.TLS,
		TLSConfig: cfg.tlsConfig(host),
		Username:  cfg.SMTP.Username,
		Password:  cfg.smtpPassword,
		Auth:      cfg.smtpAuth(),
		HelloName: helo,
	}}
	if !keep {
		return out, func() {}
	}
	out.Pool = submit.NewPool(out.Config)
	return out, out.Pool.Close
}

// newLogger writes to the log file when one is set (level info: every
// reflection and every ignored message), else to stderr at level warn, so
// that a successful run prints nothing (Exim's return_output would turn any
// output into a bounce). --verbose lowers the level to debug.
func newLogger(cfg *resolved, e env) (*slog.Logger, func(), error) {
	w, level, closeFn := e.stderr, slog.LevelWarn, func() {}
	if cfg.mode == modeIMAP {
		level = slog.LevelInfo
	}
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, configErrorf("log_file: %w", err)
		}
		w, level, closeFn = f, slog.LevelInfo, func() { _ = f.Close() }
	}
	if cfg.Verbose {
		level = slog.LevelDebug
		if cfg.LogFile == "" {
			level = slog.LevelInfo
		}
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("mode", cfg.mode), closeFn, nil
}

func decisionAttrs(d reflector.Decision) []any {
	a := []any{"action", d.Action}
	if d.Reason != "" {
		a = append(a, "reason", d.Reason)
	}
	if d.Detail != "" {
		a = append(a, "detail", d.Detail)
	}
	if d.Probe.TestID != "" {
		a = append(a, "test_id", d.Probe.TestID, "check", d.Probe.CheckID, "site", d.Probe.Site,
			"attempt", d.Probe.Attempt, "return_to", d.Probe.ReturnTo)
	}
	return a
}

// lazySeen is a reflector.FileSeen created on first use, so that foreign
// mail never touches the state directory. A directory that cannot be
// created for lack of permission is a configuration error.
type lazySeen struct {
	dir  string
	now  func() time.Time
	seen *reflector.FileSeen
}

func (l *lazySeen) open() error {
	if l.seen != nil {
		return nil
	}
	s, err := reflector.NewFileSeen(l.dir, l.now)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
			return configErrorf("state_dir %s: %w", l.dir, err)
		}
		return fmt.Errorf("state_dir %s: %w", l.dir, err)
	}
	l.seen = s
	return nil
}

// Claim implements reflector.SeenStore.
func (l *lazySeen) Claim(testID string) (bool, error) {
	if err := l.open(); err != nil {
		return false, err
	}
	ok, err := l.seen.Claim(testID)
	if errors.Is(err, fs.ErrPermission) {
		return false, configErrorf("state_dir %s: %w", l.dir, err)
	}
	return ok, err
}

// Release implements reflector.SeenStore.
func (l *lazySeen) Release(testID string) error {
	if err := l.open(); err != nil {
		return err
	}
	return l.seen.Release(testID)
}
