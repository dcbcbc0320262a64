// Command evaluator runs the Email Scout evaluator service. Configuration
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
	"github.com/emailscout/emailscout/services/evaluator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "evaluator:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	type env struct {
		platform.Base
		evaluator.Config
	}
	cfg, err := platform.LoadEnv[env](getenv)
	if err != nil {
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
