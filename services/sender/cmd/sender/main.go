// Command sender runs the Email Scout sender of one site: it submits the
// round-trip probes of the site's scheduled tests and publishes mail.sent,
// and runs the site's SMTP, IMAP and POP3 service checks and publishes
// their check.result. Configuration comes from the environment
// (docs/configuration.md); service-check passwords come from the variables
// the check file's password_env names.
package main

import (
	"context"
	"io"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/sender"
)

func main() { platform.Main("sender", run) }

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	type env struct {
		platform.Base
		sender.Config
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
	rt, err := platform.Start(ctx, cfg.Base, "sender", stdout)
	if err != nil {
		return err
	}
	s, err := sender.New(cfg.Config, sender.Deps{
		Checks:     rt.Checks,
		JetStream:  rt.JS,
		Publisher:  platform.JetStreamPublisher{JS: rt.JS},
		Keyring:    keys,
		LookupEnv:  func(name string) (string, bool) { v := getenv(name); return v, v != "" },
		Logger:     rt.Logger,
		Registerer: rt.Registry,
		Health:     rt.Health,
	})
	if err != nil {
		rt.NC.Close()
		return err
	}
	return rt.Serve(ctx, s)
}
