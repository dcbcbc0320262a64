package main

import (
	"fmt"
	"strings"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(func(string) string) *cobra.Command {
		return &cobra.Command{
			Use:   "check-config FILE",
			Short: "Validate a check definition file and list its checks",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				f, err := checks.Load(args[0])
				if err != nil {
					return exitError{code: 2, err: err}
				}
				out := cmd.OutOrStdout()
				for _, c := range f.Checks {
					fmt.Fprintf(out, "%-24s %-10s %-28s sites=%v interval=%v timeout=%v slow=%v retries=%d quorum=%d/%d\n",
						c.ID, c.Kind, c.Where(), c.Sites, c.Interval, c.Timeout, c.Slow, c.Retries, c.EffectiveQuorum(), len(c.Sites))
					// The numbers as SMS will be sent to (E.164, however written).
					var to []string
					for _, ct := range c.Contacts {
						to = append(to, ct.Name+" "+ct.Phone)
					}
					if len(to) > 0 {
						fmt.Fprintf(out, "%24s contacts: %s\n", "", strings.Join(to, ", "))
					}
				}
				for _, w := range f.Warnings {
					fmt.Fprintf(out, "warning: %s\n", w)
				}
				fmt.Fprintf(out, "%s: %d checks OK", args[0], len(f.Checks))
				if len(f.Warnings) > 0 {
					fmt.Fprintf(out, " (%d warnings)", len(f.Warnings))
				}
				fmt.Fprintln(out)
				return nil
			},
		}
	})
}
