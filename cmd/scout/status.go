package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emailscout/emailscout/services/web"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		return newStatusCmd(getenv, http.DefaultClient, time.Now)
	})
}

// Exit codes of `scout status`: the worst state, as `scout check` counts.
const (
	statusUp      = 0 // every check up (or not yet tried)
	statusWarning = 1 // a check in warning
	statusDown    = 2 // a check down: a critical incident is open
	statusFailed  = 3 // the API could not be read
)

// newStatusCmd is `scout status`: the web service's overview
// (GET /api/v1/overview, services/web/openapi.yaml) in the terminal. hc
// makes the request, now ages the attempts.
func newStatusCmd(getenv func(string) string, hc *http.Client, now func() time.Time) *cobra.Command {
	var apiURL, token, customer, state string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every check's state at every site and the open incidents (from the web service's API)",
		Long: `status prints the overview of the web page in the terminal: every check
with its state (down first), each site's verdict with the newest attempt's
round-trip time or dialogue time, its age and, when it failed, why; and the
open incident of a check with its reason. It reads GET /api/v1/overview of the
web service (scout dev serves it on its --http address).

The token is sent as "Authorization: Bearer"; it is the web service's
SCOUT_WEB_TOKEN. Exit status: 0 all up, 1 a check in warning, 2 a check down,
3 the API could not be read.`,
		Example: `  scout status                                   # scout dev on this machine
  kubectl -n email-scout port-forward svc/scout-web 8080:80 &
  SCOUT_WEB_TOKEN=... scout status --url http://127.0.0.1:8080 --state down
  scout status --customer acme --json | jq '.checks[].state'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			ov, raw, err := fetchOverview(ctx, hc, apiURL, token, customer, state)
			if err != nil {
				return exitError{code: statusFailed, err: err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				_, err = out.Write(raw)
			} else {
				printOverview(out, ov, now())
			}
			if err != nil {
				return err
			}
			switch {
			case ov.Counts.Down > 0:
				return exitError{code: statusDown, err: errSilent}
			case ov.Counts.Warning > 0:
				return exitError{code: statusWarning, err: errSilent}
			}
			return nil
		},
	}
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	def := getenv("SCOUT_WEB_URL")
	if def == "" {
		def = "http://127.0.0.1:9090"
	}
	f := cmd.Flags()
	f.StringVar(&apiURL, "url", def, "the web service's base URL (default $SCOUT_WEB_URL, else scout dev's http://127.0.0.1:9090)")
	f.StringVar(&token, "token", getenv("SCOUT_WEB_TOKEN"), "bearer token of the web service (default $SCOUT_WEB_TOKEN)")
	f.StringVar(&customer, "customer", "", "only this customer's checks")
	f.StringVar(&state, "state", "", "only checks in this state: up, warning, down or unknown")
	f.BoolVar(&asJSON, "json", false, "print the API's JSON (services/web/openapi.yaml, Overview)")
	return cmd
}

// fetchOverview reads GET /api/v1/overview and returns it decoded and as
// read. Errors name the URL and, for a refusal, the status and what to do.
func fetchOverview(ctx context.Context, hc *http.Client, base, token, customer, state string) (*web.Overview, []byte, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + "/api/v1/overview")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("--url %q: give the web service's base URL, http://host:port", base)
	}
	q := url.Values{}
	if customer != "" {
		q.Set("customer", customer)
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("read the overview: %w (is the web service or scout dev running? give --url)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read the overview from %s: %w", u.Redacted(), err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, nil, fmt.Errorf("%s: 401 Unauthorized: give the web service's token with --token or $SCOUT_WEB_TOKEN", u.Redacted())
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("%s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	var ov web.Overview
	if err := json.Unmarshal(body, &ov); err != nil {
		return nil, nil, fmt.Errorf("%s: not an overview: %w", u.Redacted(), err)
	}
	return &ov, body, nil
}

// printOverview writes the overview as a table, one line per check and
// site, the open incident under its check.
func printOverview(w io.Writer, ov *web.Overview, now time.Time) {
	c := ov.Counts
	fmt.Fprintf(w, "%d checks: %d down, %d warning, %d up, %d unknown   (as of %s)\n\n",
		len(ov.Checks), c.Down, c.Warning, c.Up, c.Unknown, ov.GeneratedAt.UTC().Format("2006-01-02 15:04:05Z"))
	if len(ov.Checks) == 0 {
		return
	}
	// The table is aligned without the incident lines, which are put
	// under their check afterwards (a long reason must not widen a column).
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tCHECK\tKIND\tTARGET\tSITE\tVERDICT\tLAST\tTIME\tAGO")
	after := map[int]string{} // table line index -> incident line
	row := 0
	for _, ch := range ov.Checks {
		head := []string{strings.ToUpper(ch.State), ch.ID, ch.Kind, ch.Target}
		if len(ch.Sites) == 0 {
			fmt.Fprintln(tw, strings.Join(append(head, "-", "-", "-", "-", "-"), "\t"))
			row++
		}
		for i, s := range ch.Sites {
			if i > 0 {
				head = []string{"", "", "", ""}
			}
			last, took, ago := "-", "-", "-"
			if s.LastStatus != "" {
				last = s.LastStatus
				if s.ErrorClass != "" {
					last += " (" + s.ErrorClass + ")"
				}
			}
			switch {
			case s.RTTMS != nil:
				took = strconv.FormatInt(*s.RTTMS, 10) + " ms"
			case s.Timings != nil && s.Timings.TotalMS > 0:
				took = strconv.FormatFloat(s.Timings.TotalMS, 'f', 0, 64) + " ms"
			}
			if s.LastAttemptAt != nil {
				ago = age(now.Sub(*s.LastAttemptAt))
			}
			fmt.Fprintln(tw, strings.Join(append(head, s.Site, s.Verdict, last, took, ago), "\t"))
			row++
		}
		if in := ch.Incident; in != nil {
			after[row] = fmt.Sprintf("  -> %s incident %s since %s: %s", in.Severity, in.ID, in.Since.UTC().Format("2006-01-02 15:04:05Z"), in.Reason)
		}
	}
	_ = tw.Flush()
	for i, line := range strings.SplitAfter(strings.TrimSuffix(table.String(), "\n"), "\n") {
		io.WriteString(w, strings.TrimRight(line, " \n")+"\n")
		if in, ok := after[i]; ok { // i counts the header: row i is line i
			fmt.Fprintln(w, in)
		}
	}
}

// age is a duration as a person reads an age: "42s", "5m", "3h", "2d".
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
