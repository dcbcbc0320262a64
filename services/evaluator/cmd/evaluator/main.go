// Command evaluator runs the Email Scout evaluator service. Configuration
// comes from the environment (docs/configuration.md).
package main

import (
	"context"
	"io"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/evaluator"
)

func main() { platform.Main("evaluator", run) }

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	type env struct {
		platform.Base
		evaluator.Config
	}
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
		return err
	}
	if err := cfg.Config.Validate(); err != nil {
		return err
	}
	rt, err := platform.Start(ctx, cfg.Base, "evaluator", stdout)
	if err != nil {
		return err
	}
	e, err := evaluator.New(cfg.Config, evaluator.Deps{
		Checks:     rt.Checks,
		JS:         rt.JS,
		Logger:     rt.Logger,
		Registerer: rt.Registry,
		Health:     rt.Health,
	})
	if err != nil {
		return err
	}
	return rt.Serve(ctx, e)
}
