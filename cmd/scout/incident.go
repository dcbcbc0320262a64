package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newIncidentCmd)
}

func newIncidentCmd(getenv func(string) string) *cobra.Command {
	var natsURL string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Show an incident with the evidence of every attempt behind it",
	}
	cmd.PersistentFlags().StringVar(&natsURL, "nats", "", "NATS server (default $SCOUT_NATS_URL, else nats://127.0.0.1:4222; scout dev prints its own)")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print an incident and the evidence of its attempts (from the event stream)",
		Long: `Print one incident: its check, severity, reason and sites, then every attempt
that voted, each with its evidence: the submission (the first hop's name, TLS,
the queue id, the whole SMTP dialogue with credentials masked), a deferral, a
bounce (Remote-MTA, Status, Diagnostic-Code), the Received hops of a return.
It reads the JetStream stream, which keeps events 7 days by default; older
incidents are in ClickHouse (docs/analytics.md). ID may be the short id of an
SMS (its first characters).`,
		Example: "  scout incident show inc-rtkkowtutap5 --nats nats://127.0.0.1:4222",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			js, closeFn, err := connectJS(ctx, natsURL, getenv)
			if err != nil {
				return err
			}
			defer closeFn()
			rep, err := loadIncident(ctx, js, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printIncident(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the incident and its attempts' results as JSON")
	cmd.AddCommand(show)
	return cmd
}

// connectJS connects to NATS for a read-only look at the stream, with the
// credentials and TLS of the environment (platform.NATSAuth).
func connectJS(ctx context.Context, url string, getenv func(string) string) (jetstream.JetStream, func(), error) {
	if url == "" {
		url = getenv("SCOUT_NATS_URL")
	}
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	auth, err := platform.LoadEnv[platform.NATSAuth](getenv)
	if err != nil {
		return nil, nil, exitError{code: 2, err: err}
	}
	opts, err := auth.Options()
	if err != nil {
		return nil, nil, exitError{code: 2, err: err}
	}
	nc, err := nats.Connect(url, append(opts, nats.Name("scout-cli"), nats.Timeout(10*time.Second))...)
	if err != nil {
		return nil, nil, exitError{code: 1, err: fmt.Errorf("connect to NATS at %s: %w (give --nats)", platform.RedactURLs(url), err)}
	}
	var js jetstream.JetStream
	if auth.JSDomain != "" {
		js, err = jetstream.NewWithDomain(nc, auth.JSDomain)
	} else {
		js, err = jetstream.New(nc)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}

// incidentReport is an incident with its resolution and the results of
// the attempts that voted for it.
type incidentReport struct {
	Open     events.IncidentOpen           `json:"open"`
	Resolved *events.IncidentResolved      `json:"resolved,omitempty"`
	Results  map[string]events.CheckResult `json:"results"` // by test id
}

// loadIncident finds incident id (or the one whose id starts with it) in
// the stream, its resolution, and the check.result of every attempt it
// names.
func loadIncident(ctx context.Context, js jetstream.JetStream, id string) (*incidentReport, error) {
	var rep incidentReport
	found := false
	err := scan(ctx, js, []string{events.SubjectIncidentOpen + ".>"}, time.Time{}, func(data []byte) bool {
		ev, err := events.Decode[events.IncidentOpen](data)
		if err == nil && (ev.IncidentID == id || strings.HasPrefix(ev.IncidentID, id) && len(id) >= 6) {
			rep.Open, found = ev, true
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, exitError{code: 1, err: fmt.Errorf("no incident %q in the stream (it keeps 7 days of events; older ones are in ClickHouse)", id)}
	}
	c := rep.Open.CheckID
	if err := scan(ctx, js, []string{events.CheckSubject(events.SubjectIncidentResolved, c)}, rep.Open.OpenedAt.Add(-time.Minute), func(data []byte) bool {
		if ev, err := events.Decode[events.IncidentResolved](data); err == nil && ev.IncidentID == rep.Open.IncidentID {
			rep.Resolved = &ev
			return false
		}
		return true
	}); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, v := range rep.Open.Sites {
		for _, a := range v.Attempts {
			want[a.TestID] = true
		}
	}
	rep.Results = map[string]events.CheckResult{}
	from := rep.Open.Since.Add(-time.Hour)
	err = scan(ctx, js, events.StoredFilters(events.SiteCheckSubject(events.SubjectCheckResult, "*", c)), from, func(data []byte) bool {
		if r, err := events.Decode[events.CheckResult](data); err == nil && want[r.TestID] {
			if prev, ok := rep.Results[r.TestID]; !ok || r.Revision > prev.Revision {
				rep.Results[r.TestID] = r
			}
		}
		return true
	})
	return &rep, err
}

// scan hands every stored message on filters, from start on (zero: the
// beginning), to fn until fn returns false or the stream's end is reached.
func scan(ctx context.Context, js jetstream.JetStream, filters []string, start time.Time, fn func([]byte) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters}
	if !start.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return fmt.Errorf("read the stream: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read the stream: %w", err)
	}
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read the stream: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			left--
			if !fn(msg.Data()) {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read the stream: %w", err)
		}
		if got == 0 {
			return nil
		}
	}
	return nil
}

// printIncident writes rep for a person.
func printIncident(w io.Writer, rep *incidentReport) {
	o := rep.Open
	fmt.Fprintf(w, "Incident %s  %s  %s\n", o.IncidentID, strings.ToUpper(o.Severity), o.CheckID)
	if o.CheckName != "" {
		fmt.Fprintf(w, "  check     %s (%s, customer %s)\n", o.CheckName, o.Kind, o.Customer)
	}
	fmt.Fprintf(w, "  reason    %s\n", o.Reason)
	fmt.Fprintf(w, "  since     %s (first failing attempt)\n", stamp(o.Since))
	fmt.Fprintf(w, "  opened    %s (quorum %d of %d eligible sites)\n", stamp(o.OpenedAt), o.Quorum, o.Eligible)
	if rep.Resolved != nil {
		fmt.Fprintf(w, "  resolved  %s: %s\n", stamp(rep.Resolved.ResolvedAt), rep.Resolved.Reason)
	} else {
		fmt.Fprintln(w, "  resolved  not yet (or not in the stream)")
	}
	if !o.Notify {
		fmt.Fprintf(w, "  silenced  %s\n", o.Silenced)
	}
	for _, v := range o.Sites {
		fmt.Fprintf(w, "\nSite %s: %s\n", v.Site, v.Verdict)
		for _, a := range v.Attempts {
			fmt.Fprintf(w, "  attempt %d  %s  %s  test %s\n", a.Attempt, strings.ToUpper(a.Status), stamp(a.StartedAt), a.TestID)
			if a.Summary != "" {
				fmt.Fprintf(w, "    %s\n", a.Summary)
			}
			r, ok := rep.Results[a.TestID]
			if !ok {
				fmt.Fprintln(w, "    (its check.result is no longer in the stream)")
				continue
			}
			printEvidence(w, r)
		}
	}
}

// printEvidence writes the evidence of one attempt's result, indented.
func printEvidence(w io.Writer, r events.CheckResult) {
	if r.Error != "" && r.Error != r.Summary {
		fmt.Fprintf(w, "    error      %s\n", r.Error)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "    warning    %s\n", warn)
	}
	for _, l := range r.Evidence.Details() {
		fmt.Fprintf(w, "    %s\n", l)
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
