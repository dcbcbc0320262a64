package main

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/emailscout/emailscout/cmd/scout-reflector/internal/imapwatch"
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
	r := reflector.New(reflectorConfig(cfg), timeoutSender{newSender(cfg), cfg}, seen, e.now)
	w, err := imapwatch.New(imapwatch.Config{
		Addr:         cfg.IMAP.Addr,
		TLS:          cfg.IMAP.TLS,
		TLSConfig:    cfg.tlsConfig(host),
		Username:     cfg.IMAP.Username,
		Password:     cfg.imapPassword,
		Folder:       cfg.IMAP.Folder,
		IdleRefresh:  cfg.IMAP.IdleRefresh,
		PollInterval: cfg.IMAP.PollInterval,
	}, r, clock, log)
	if err != nil {
		return configError{err}
	}
	err = w.Run(ctx)
	if errors.Is(err, imapwatch.ErrRejected) {
		log.Error("configuration error; exit 78", "err", err)
		return logged{configError{err}}
	}
	return err
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
