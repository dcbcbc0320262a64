// Command recorder runs the Email Scout recorder service: events from
// JetStream into ClickHouse. Configuration comes from the environment
// (docs/configuration.md).
package main

import (
	"context"
	"io"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/prometheus/client_golang/prometheus"
)

func main() { platform.Main("recorder", run) }

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	type env struct {
		platform.Base
		recorder.Config
	}
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
		return err
	}
	if err := cfg.Config.Validate(); err != nil {
		return err
	}
	rt, err := platform.Start(ctx, cfg.Base, "recorder", stdout)
	if err != nil {
		return err
	}
	r, err := recorder.New(cfg.Config, recorder.Deps{
		JS:         rt.JS,
		Health:     rt.Health,
		Logger:     rt.Logger,
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"service": "recorder"}, rt.Registry),
	})
	if err != nil {
		return err
	}
	return rt.Serve(ctx, r)
}
