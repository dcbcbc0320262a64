package platform

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// RunFunc is a service's run function: it reads its configuration through
// getenv, logs to stdout and returns when ctx ends (nil) or on a fatal error.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Main is the whole main function of a service command: run with a context
// that SIGINT and SIGTERM cancel (graceful shutdown), and on error print
// "<name>: <error>" to stderr and exit 1. "<name> --version" prints the
// build (pkg/buildinfo) and exits 0 without reading any configuration.
func Main(name string, run RunFunc) {
	if wantsVersion(os.Args[1:]) {
		printVersion(os.Stdout, name)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
