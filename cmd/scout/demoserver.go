package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

// `scout demo-server` runs the demo "customer" mail server of `scout dev`
// (demo.go, demoservices.go) as a process of its own, for `scout soak`,
// whose services are separate processes: the MX with the reflector for
// round-trip checks, and one SMTP, IMAP or POP3 listener per service check
// whose host is demo.scout.test. A loopback HTTP control endpoint breaks
// and mends checks while it runs (what `scout dev --break` does at start).
// It is hidden: an implementation part of the soak, not an operator tool.

// demoServerState is what `scout demo-server` writes to --state once it
// listens, for the process that started it.
type demoServerState struct {
	// SMTP is the MX of the round-trip checks' probe mailboxes (host:port).
	SMTP string `json:"smtp"`
	// Control is the control endpoint (host:port): POST /break?check=ID,
	// POST /mend?check=ID, GET /broken.
	Control string `json:"control"`
	// Ports maps each service check on demo.scout.test to its listener's
	// port on 127.0.0.1.
	Ports map[string]int `json:"ports"`
	// CAFile is the PEM file of the authority that signed the demo
	// certificate (it names demo.scout.test and 127.0.0.1).
	CAFile string `json:"ca_file"`
}

type demoServerOptions struct {
	checksFile string
	keysFile   string
	routes     []string
	listen     string
	control    string
	state      string
	logFile    string
}

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		var o demoServerOptions
		cmd := &cobra.Command{
			Use:    "demo-server",
			Short:  "Run scout dev's demo customer mail server (reflector, SMTP/IMAP/POP3 sides) as its own process",
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runDemoServer(cmd.Context(), o, getenv)
			},
		}
		f := cmd.Flags()
		f.StringVar(&o.checksFile, "checks", "", "check file (service checks on demo.scout.test get a listener each)")
		f.StringVar(&o.keysFile, "keys-file", "", "probe keys (SCOUT_PROBE_KEYS format)")
		f.StringArrayVar(&o.routes, "route", nil, "RETURN-ADDRESS=HOST:PORT: where reflections to that address go (repeatable)")
		f.StringVar(&o.listen, "listen", "127.0.0.1:0", "the MX's SMTP address")
		f.StringVar(&o.control, "control", "127.0.0.1:0", "the control endpoint's address")
		f.StringVar(&o.state, "state", "", "write the listening addresses here (JSON) once ready")
		f.StringVar(&o.logFile, "log", "", "log file (default: stderr)")
		return cmd
	})
}

func runDemoServer(ctx context.Context, o demoServerOptions, getenv func(string) string) error {
	if o.checksFile == "" || o.keysFile == "" || o.state == "" {
		return exitError{code: 2, err: errors.New("demo-server: --checks, --keys-file and --state are required")}
	}
	f, err := checks.Load(o.checksFile)
	if err != nil {
		return err
	}
	keys, err := os.ReadFile(o.keysFile)
	if err != nil {
		return err
	}
	routes := map[string]string{}
	for _, r := range o.routes {
		addr, hostport, ok := strings.Cut(r, "=")
		if !ok {
			return exitError{code: 2, err: fmt.Errorf("--route %q: want RETURN-ADDRESS=HOST:PORT", r)}
		}
		routes[strings.ToLower(addr)] = hostport
	}
	logOut := os.Stderr
	if o.logFile != "" {
		lf, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer lf.Close()
		logOut = lf
	}
	log, err := platform.NewLogger(logOut, "info")
	if err != nil {
		return err
	}
	// SCOUT_DEMO_PASSWORD, when set, is the demo mailbox's password (the
	// soak gives the same to the senders); else a random one.
	services, err := newDemoServices(f, nil, getenv(demoPasswordEnv), log)
	if err != nil {
		return err
	}
	mx, err := newDemoServer(f, strings.TrimSpace(string(keys)), routes, nil, log)
	if err != nil {
		services.close()
		return err
	}
	if o.listen != "127.0.0.1:0" { // newDemoServer listens on any port; move it
		mx.close()
		if mx.ln, err = net.Listen("tcp", o.listen); err != nil {
			services.close()
			return err
		}
	}
	ctl, err := net.Listen("tcp", o.control)
	if err != nil {
		mx.close()
		services.close()
		return err
	}
	kinds := map[string]string{}
	st := demoServerState{SMTP: mx.addr(), Control: ctl.Addr().String(), Ports: map[string]int{},
		CAFile: filepath.Join(filepath.Dir(o.state), "demo-ca.pem")}
	for _, c := range f.Checks {
		kinds[c.ID] = c.Kind
		if c.Kind != events.KindRoundTrip && isDemoHost(c.Service.Host) {
			st.Ports[c.ID] = c.Service.Port
		}
	}
	if err := os.WriteFile(st.CAFile, services.caPEM, 0o644); err != nil {
		return err
	}
	data, _ := json.Marshal(st)
	tmp := o.state + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, o.state); err != nil {
		return err
	}

	mux := http.NewServeMux()
	set := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			id := r.URL.Query().Get("check")
			kind, ok := kinds[id]
			if !ok {
				http.Error(w, "no such check: "+id, http.StatusNotFound)
				return
			}
			if kind == events.KindRoundTrip {
				mx.setBroken(id, on)
			} else {
				services.setBroken(id, on)
			}
			log.Info("demo server: check broken", "check", id, "broken", on)
			fmt.Fprintln(w, "ok")
		}
	}
	mux.Handle("/break", set(true))
	mux.Handle("/mend", set(false))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return services.run(ctx) })
	g.Go(func() error { return mx.run(ctx) })
	g.Go(func() error {
		errc := make(chan error, 1)
		go func() { errc <- hs.Serve(ctl) }()
		select {
		case <-ctx.Done():
			_ = hs.Close()
			return nil
		case err := <-errc:
			return err
		}
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
