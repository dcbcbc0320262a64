// Command web runs the Email Scout web service: status pages and a JSON
// API for people. Configuration comes from the environment
// (docs/configuration.md).
package main

import (
	"context"
	"io"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/web"
)

func main() { platform.Main("web", run) }

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	type env struct {
		platform.Base
		web.Config
	}
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
		return err
	}
	if err := cfg.Config.Validate(false); err != nil {
		return err
	}
	rt, err := platform.Start(ctx, cfg.Base, "web", stdout)
	if err != nil {
		return err
	}
	w, err := web.New(cfg.Config, web.Deps{
		Checks:     rt.Checks,
		JS:         rt.JS,
		Logger:     rt.Logger,
		Registerer: rt.Registry,
		Health:     rt.Health,
	})
	if err != nil {
		return err
	}
	return rt.Serve(ctx, w)
}
