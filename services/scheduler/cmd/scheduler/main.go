// Command scheduler runs the Email Scout scheduler service. Configuration
// comes from the environment (docs/configuration.md).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/scheduler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scheduler:", err)
		os.Exit(1)
	}
}

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
