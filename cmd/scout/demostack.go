package main

import (
	"log/slog"
	"maps"
	"time"

	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emailscout/emailscout/services/sender"
)

// demoStackConfig is the monitor against the demo mail server, as `scout
// dev` and `scout bench` share it: every service from its defaults, the
// senders submitting to the demo server (plain SMTP on loopback), a
// receiver per site, and waits shortened where one process on one machine
// has nothing far away. Scheduler, notifier and recorder are left to the
// caller.
func demoStackConfig(keys string) stack.Config {
	cfg := stack.Config{ProbeKeys: keys, Sender: sender.Defaults(), Evaluator: evaluator.Defaults()}
	cfg.Sender.RelayTLS = "none"
	cfg.Sender.SubmitTimeout = 10 * time.Second
	rcfg := receiver.Defaults()
	rcfg.Timeout = time.Minute // the demo server's sessions
	cfg.Receiver = &rcfg
	cfg.Evaluator.SubmitGrace, cfg.Evaluator.Settle = 5*time.Second, 500*time.Millisecond
	return cfg
}

// newDemoStack builds the demo "customer" mail server and the stack that
// probes it: the senders submit to the demo server (cfg's relay address
// is set here), whose reflector mails each reflection to
// the receiver of the probe's site, as MX records would route it. The
// senders' EHLO name is their default, the domain of the site's return
// address.
func newDemoStack(cfg stack.Config, deps stack.Deps, breaks []string, log *slog.Logger) (*demoServer, *stack.Stack, error) {
	routes := map[string]string{}
	demo, err := newDemoServer(deps.Checks.Current(), cfg.ProbeKeys, routes, breaks, log)
	if err != nil {
		return nil, nil, err
	}
	cfg.Sender.RelayAddr = demo.addr()
	st, err := stack.New(cfg, deps)
	if err != nil {
		demo.close()
		return nil, nil, err
	}
	maps.Copy(routes, st.ReturnRoutes()) // before anything runs
	return demo, st, nil
}
