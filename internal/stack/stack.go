// Package stack composes the whole monitor in one process: a sender and a
// receiver per site, the evaluator, and optionally the scheduler, the
// notifier and the recorder, on one JetStream. It is the one wiring of the
// services that `scout dev`, `scout bench` and the end-to-end tests use,
// so that what they run is what production runs, one process per service
// apart.
//
// It is its own module (it requires every service; no service requires
// it), under internal/ so that only this repository imports it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Config says which services run and how. Each service's settings start
// from its Defaults() (the envDefault tags); the stack fills what is per
// site (Site, ReturnAddress, ReturnAddresses, ProbeKeys, Listen).
type Config struct {
	// Sites run a sender (and a receiver, when Receiver is set) each;
	// empty means every site of the check file.
	Sites []string
	// ReturnAddress is a site's return address; nil means
	// ReturnAddressOf ("scout@<site>.return.test", a reserved name).
	ReturnAddress func(site string) string
	// ProbeKeys is the keys' spec (SCOUT_PROBE_KEYS format).
	ProbeKeys string

	Sender    sender.Config
	Evaluator evaluator.Config
	// Receiver, when set, runs one receiver per site with this
	// configuration (in SMTP mode each on Deps.ReceiverListener); nil runs
	// none (the caller runs its own, as the end-to-end tests do to stop
	// and start them).
	Receiver *receiver.Config
	// Scheduler, when set, runs the scheduler; nil runs none (the caller
	// publishes tests, as `scout bench` does).
	Scheduler *scheduler.Config
	// Notifier, when set, runs the notifier with Deps.Provider.
	Notifier *notifier.Config
	// Recorder, when set, records into ClickHouse.
	Recorder *recorder.Config
}

// Deps are the stack's collaborators, shared by every service.
type Deps struct {
	Checks checks.Source
	JS     jetstream.JetStream
	Clock  clockwork.Clock // nil: the real clock
	Logger *slog.Logger    // nil: discard
	// Registerer gets every service's metrics; nil: none.
	Registerer prometheus.Registerer
	Health     *platform.Health // nil: none
	// SenderDeps adjusts the deps of one site's sender (the relay's TLS,
	// the service checks' resolver and password lookup); nil: none.
	SenderDeps func(site string, d *sender.Deps)
	// ReceiverDeps adjusts the deps of one site's receiver (IMAP TLS).
	ReceiverDeps func(site string, d *receiver.Deps)
	// ReceiverListener gives a site's receiver its SMTP listener; nil
	// listens on 127.0.0.1:0.
	ReceiverListener func(site string) (net.Listener, error)
	// Provider sends the notifier's messages (required with
	// Config.Notifier).
	Provider notifier.Provider
}

// ReturnAddressOf is a site's default return address (.test is reserved
// for testing, RFC 2606).
func ReturnAddressOf(site string) string { return "scout@" + site + ".return.test" }

// Stack is the composed monitor. Its services are there to be inspected
// (the evaluator's NextTimer, a receiver's address); Run runs them all.
type Stack struct {
	Senders   map[string]*sender.Sender
	Receivers map[string]*receiver.Receiver
	Evaluator *evaluator.Evaluator
	Scheduler *scheduler.Scheduler // nil when not configured
	Notifier  *notifier.Notifier   // nil when not configured
	Recorder  *recorder.Recorder   // nil when not configured

	returnAddr func(string) string
	sites      []string
	listeners  []net.Listener // the receivers', closed by Run (or by New when it fails)
}

// New builds every configured service (validating each configuration) but
// starts none. The receivers' SMTP listeners are open when it returns, so
// that mail can be routed to ReturnRoutes before Run.
func New(cfg Config, deps Deps) (*Stack, error) {
	if deps.Checks == nil || deps.JS == nil {
		return nil, errors.New("stack: Checks and JS are required")
	}
	keyring, err := probemail.ParseKeys(cfg.ProbeKeys)
	if err != nil {
		return nil, fmt.Errorf("stack: probe keys: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Stack{Senders: map[string]*sender.Sender{}, Receivers: map[string]*receiver.Receiver{},
		returnAddr: cfg.ReturnAddress, sites: cfg.Sites}
	if s.returnAddr == nil {
		s.returnAddr = ReturnAddressOf
	}
	if len(s.sites) == 0 {
		s.sites = deps.Checks.Current().AllSites()
	}
	pub := platform.JetStreamPublisher{JS: deps.JS}
	for _, site := range s.sites {
		if cfg.Receiver != nil {
			if s.Receivers[site], err = s.newReceiver(*cfg.Receiver, site, cfg.ProbeKeys, keyring, pub, deps); err != nil {
				s.close()
				return nil, err
			}
		}
		scfg := cfg.Sender
		scfg.Site, scfg.ReturnAddress, scfg.ProbeKeys = site, s.returnAddr(site), sender.Secret(cfg.ProbeKeys)
		sd := sender.Deps{Checks: deps.Checks, JetStream: deps.JS, Publisher: pub, Keyring: keyring, Clock: deps.Clock,
			Logger: deps.Logger, Registerer: deps.Registerer, Health: deps.Health}
		if deps.SenderDeps != nil {
			deps.SenderDeps(site, &sd)
		}
		if s.Senders[site], err = sender.New(scfg, sd); err != nil {
			s.close()
			return nil, fmt.Errorf("stack: sender %s: %w", site, err)
		}
	}
	if s.Evaluator, err = evaluator.New(cfg.Evaluator, evaluator.Deps{Checks: deps.Checks, JS: deps.JS, Clock: deps.Clock,
		Logger: deps.Logger, Registerer: deps.Registerer, Health: deps.Health}); err != nil {
		s.close()
		return nil, err
	}
	if cfg.Scheduler != nil {
		if s.Scheduler, err = scheduler.New(*cfg.Scheduler, scheduler.Deps{Checks: deps.Checks, Publisher: pub, Clock: deps.Clock,
			Logger: deps.Logger, Registerer: deps.Registerer}); err != nil {
			s.close()
			return nil, err
		}
	}
	if cfg.Notifier != nil {
		if s.Notifier, err = notifier.New(*cfg.Notifier, notifier.Deps{Checks: deps.Checks, JS: deps.JS, Provider: deps.Provider,
			Clock: deps.Clock, Logger: deps.Logger, Health: deps.Health, Registerer: deps.Registerer}); err != nil {
			s.close()
			return nil, err
		}
	}
	if cfg.Recorder != nil {
		if s.Recorder, err = recorder.New(*cfg.Recorder, recorder.Deps{JS: deps.JS, Clock: deps.Clock, Logger: deps.Logger,
			Health: deps.Health, Registerer: deps.Registerer}); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) newReceiver(cfg receiver.Config, site, keys string, keyring *probemail.Keyring, pub platform.Publisher, deps Deps) (*receiver.Receiver, error) {
	cfg.Site, cfg.ReturnAddresses, cfg.ProbeKeys = site, []string{s.returnAddr(site)}, receiver.Secret(keys)
	rd := receiver.Deps{Checks: deps.Checks, Publisher: pub, Keyring: keyring, Clock: deps.Clock,
		Logger: deps.Logger, Registerer: deps.Registerer, Health: deps.Health, Sent: platform.NATSSubscriber{NC: deps.JS.Conn()}}
	if cfg.Mode == "" || cfg.Mode == receiver.ModeSMTP {
		listen := func(string) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
		if deps.ReceiverListener != nil {
			listen = deps.ReceiverListener
		}
		ln, err := listen(site)
		if err != nil {
			return nil, fmt.Errorf("stack: receiver %s: %w", site, err)
		}
		rd.Listener = ln
		s.listeners = append(s.listeners, ln)
		cfg.Listen = ln.Addr().String()
	}
	if deps.ReceiverDeps != nil {
		deps.ReceiverDeps(site, &rd)
	}
	r, err := receiver.New(cfg, rd)
	if err != nil {
		return nil, fmt.Errorf("stack: receiver %s: %w", site, err)
	}
	return r, nil
}

// close releases what New opened before it failed (the receivers'
// listeners, which Run would close).
func (s *Stack) close() {
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// ReturnRoutes maps each SMTP receiver's return address to its host:port,
// as DNS MX records (or a transport map) route the reflections.
func (s *Stack) ReturnRoutes() map[string]string {
	routes := map[string]string{}
	for site, r := range s.Receivers {
		if a := r.Addr(); a != nil {
			routes[s.returnAddr(site)] = a.String()
		}
	}
	return routes
}

// Components returns every service of the stack, receivers first.
func (s *Stack) Components() []platform.Component {
	var cs []platform.Component
	for _, site := range s.sites {
		if r := s.Receivers[site]; r != nil {
			cs = append(cs, r)
		}
	}
	for _, site := range s.sites {
		cs = append(cs, s.Senders[site])
	}
	cs = append(cs, s.Evaluator)
	if s.Scheduler != nil {
		cs = append(cs, s.Scheduler)
	}
	if s.Notifier != nil {
		cs = append(cs, s.Notifier)
	}
	if s.Recorder != nil {
		cs = append(cs, s.Recorder)
	}
	return cs
}

// Run runs every service until ctx ends or one fails; it returns nil when
// ctx ended.
func (s *Stack) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range s.Components() {
		g.Go(func() error { return c.Run(gctx) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}
