package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		var since, dsn string
		cmd := &cobra.Command{
			Use:   "history CHECK",
			Short: "Print a check's hourly round-trip percentiles from ClickHouse",
			Long: `Print the hourly p50 / p90 / p99 round-trip time per site of one check, from the
ClickHouse database the recorder writes (the documented query "hourly p50/p90/p99",
docs/analytics.md). Times are UTC.`,
			Example: "  scout history acme-roundtrip --since 2d --clickhouse clickhouse://127.0.0.1:9000/scout",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				check := args[0]
				if !events.ValidToken(check) {
					return exitError{code: 2, err: fmt.Errorf("check id %q is not [a-z0-9_-]{1,63}", check)}
				}
				d, err := parseSince(since)
				if err != nil {
					return exitError{code: 2, err: fmt.Errorf("--since: %w", err)}
				}
				if dsn == "" {
					dsn = getenv("SCOUT_CLICKHOUSE_DSN")
				}
				if dsn == "" {
					return exitError{code: 2, err: fmt.Errorf("no ClickHouse: give --clickhouse DSN or set SCOUT_CLICKHOUSE_DSN")}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				st, err := recorder.OpenStore(ctx, dsn)
				if err != nil {
					return err
				}
				defer st.Close()
				to := time.Now().UTC().Truncate(time.Second).Add(time.Second)
				from := to.Add(-d)
				rows, err := st.HourlyRTT(ctx, check, from, to)
				if err != nil {
					return err
				}
				return printHistory(cmd.OutOrStdout(), check, from, to, rows)
			},
		}
		cmd.Flags().StringVar(&since, "since", "7d", "how far back: a Go duration (36h, 90m) or days (7d)")
		cmd.Flags().StringVar(&dsn, "clickhouse", "", "ClickHouse DSN, clickhouse://host:9000/database (default $SCOUT_CLICKHOUSE_DSN)")
		return cmd
	})
}

// parseSince reads a positive Go duration or a whole number of days ("7d").
func parseSince(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number of days (7d) or a duration (36h)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not a number of days (7d) or a duration (36h)", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return d, nil
}

// printHistory writes the hourly percentiles as an aligned table.
func printHistory(w io.Writer, check string, from, to time.Time, rows []recorder.HourlyRTT) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintf(w, "no round-trip attempts of %s between %s and %s (UTC)\n", check, from.Format("2006-01-02 15:04"), to.Format("2006-01-02 15:04"))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOUR (UTC)\tSITE\tATTEMPTS\tRETURNED\tP50\tP90\tP99")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.Hour.UTC().Format("2006-01-02 15:04"), r.Site,
			r.Attempts, r.Returned, formatMS(r.P50MS), formatMS(r.P90MS), formatMS(r.P99MS))
	}
	return tw.Flush()
}

// formatMS shows milliseconds as a duration rounded to 0.1 s ("41.2s",
// "12m30.1s"), under a second in milliseconds, and "-" for NULL.
func formatMS(ms *int64) string {
	if ms == nil {
		return "-"
	}
	d := time.Duration(*ms) * time.Millisecond
	if d < time.Second {
		return d.String()
	}
	return d.Round(100 * time.Millisecond).String()
}
