// Command scheduler runs the Email Scout scheduler service. Configuration
// comes from the environment (docs/configuration.md).
package main

import (
	"context"
	"io"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/scheduler"
)

func main() { platform.Main("scheduler", run) }

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	type env struct {
		platform.Base
		scheduler.Config
	}
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
		return err
	}
	rt, err := platform.Start(ctx, cfg.Base, "scheduler", stdout)
	if err != nil {
		return err
	}
	s, err := scheduler.New(cfg.Config, scheduler.Deps{
		Checks:     rt.Checks,
		Publisher:  platform.JetStreamPublisher{JS: rt.JS},
		Logger:     rt.Logger,
		Registerer: rt.Registry,
	})
	if err != nil {
		return err
	}
	return rt.Serve(ctx, s)
}
