// Command receiver runs the Email Scout receiver of one site: the SMTP
// server of the return domain, which verifies returned probes and publishes
// mail.returned before it answers 250, or (SCOUT_RECEIVER_MODE=imap) the
// watcher of the return mailbox, which deletes a return only after
// mail.returned is stored. Configuration comes from the environment
// (docs/configuration.md).
//
// "receiver check-login" logs in to the IMAP-mode return mailbox once with
// the same environment, says what it sees and exits 0, or names the
// problem and exits 1 (receiver.CheckLogin).
package main

import (
	"context"
	"io"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/receiver"
)

func main() { platform.Main("receiver", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "check-login" {
		return checkLogin(ctx, getenv, stdout)
	}
	type env struct {
		platform.Base
		receiver.Config
	}
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
		return err
	}
	if err := cfg.Config.Validate(); err != nil {
		return err
	}
	keys, err := cfg.Config.Keyring()
	if err != nil {
		return err
	}
	rt, err := platform.Start(ctx, cfg.Base, "receiver", stdout)
	if err != nil {
		return err
	}
	r, err := receiver.New(cfg.Config, receiver.Deps{
		Checks:     rt.Checks,
		Publisher:  platform.JetStreamPublisher{JS: rt.JS},
		Keyring:    keys,
		Logger:     rt.Logger,
		Registerer: rt.Registry,
		Health:     rt.Health,
		Sent:       platform.NATSSubscriber{NC: rt.NC},
	})
	if err != nil {
		rt.NC.Close()
		return err
	}
	return rt.Serve(ctx, r)
}

// checkLogin is "receiver check-login": the return mailbox's login, once,
// within 60 s.
func checkLogin(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := platform.LoadEnv[receiver.Config](getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return receiver.CheckLogin(ctx, cfg, nil, nil, stdout)
}
