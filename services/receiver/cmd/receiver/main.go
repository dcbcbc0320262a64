// Command receiver runs the Email Scout receiver of one site: the SMTP
// server of the return domain, which verifies returned probes and publishes
// mail.returned before it answers 250, or (SCOUT_RECEIVER_MODE=imap) the
// watcher of the return mailbox, which deletes a return only after
// mail.returned is stored. Configuration comes from the environment
// (docs/configuration.md).
package main

import (
	"context"
	"io"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/receiver"
)

func main() { platform.Main("receiver", run) }

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
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
	})
	if err != nil {
		rt.NC.Close()
		return err
	}
	return rt.Serve(ctx, r)
}
