// Command scout is Email Scout's operator tool: `scout dev` runs the whole
// system on one machine, `scout check-config` validates a check file,
// `scout keygen` makes a probe key and `scout probe` a signed probe (to test
// a reflector), and the other subcommands measure (bench) or query a
// running installation (history).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/emailscout/emailscout/cmd/internal/flaghint"
	"github.com/emailscout/emailscout/pkg/buildinfo"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "scout:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// run builds the command tree and executes args.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	root := &cobra.Command{
		Use:           "scout",
		Short:         "Email Scout: round-trip and service monitoring for mail systems",
		Version:       buildinfo.Read().String(), // --version (pkg/buildinfo)
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("scout {{.Version}}\n")
	// A flag error is a usage error (exit 2), with the flag probably meant.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitError{code: 2, err: flaghint.Suggest(c.Flags(), err)}
	})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(os.Stderr)
	for _, add := range commands {
		root.AddCommand(add(getenv))
	}
	return root.ExecuteContext(ctx)
}

// commands are the subcommands; each file of this package registers its own
// in an init function, so that subcommands can be added without touching
// this file.
var commands []func(getenv func(string) string) *cobra.Command
