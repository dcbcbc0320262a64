// Command notifier runs the Email Scout notifier service: SMS (Twilio), a
// webhook, or in development printed lines, for incident transitions.
// Configuration comes from the environment (docs/configuration.md).
package main

import (
	"context"
	"io"
	"os"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/notifier"
)

func main() { platform.Main("notifier", run) }

type env struct {
	platform.Base
	notifier.Config
}

// setup reads the configuration and builds the provider, so that a missing
// credential stops the service before it connects to anything.
func setup(getenv func(string) string, stdout io.Writer) (env, notifier.Provider, error) {
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
		return cfg, nil, err
	}
	if err := cfg.Config.Validate(); err != nil {
		return cfg, nil, err
	}
	log, err := platform.NewLogger(stdout, cfg.LogLevel)
	if err != nil {
		return cfg, nil, err
	}
	p, err := notifier.NewProvider(cfg.Config, notifier.ProviderDeps{Stdout: stdout, Logger: log.With("service", "notifier")})
	return cfg, p, err
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	cfg, provider, err := setup(getenv, stdout)
	if err != nil {
		return err
	}
	rt, err := platform.Start(ctx, cfg.Base, "notifier", stdout)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	n, err := notifier.New(cfg.Config, notifier.Deps{
		Checks:     rt.Checks,
		JS:         rt.JS,
		Provider:   provider,
		ReplicaID:  host,
		Logger:     rt.Logger,
		Registerer: rt.Registry,
		Health:     rt.Health,
	})
	if err != nil {
		return err
	}
	return rt.Serve(ctx, n)
}
