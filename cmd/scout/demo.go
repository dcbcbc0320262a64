package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emersion/go-smtp"
)

// demoServer is the demo "customer" mail server of `scout dev`: an SMTP
// server (go-smtp) that accepts mail for every check's probe mailbox and,
// like a .forward pipe, hands each message to the reflector library, which
// mails the reflection to the receiver of the probe's site. Delivery is
// asynchronous, as an MTA's is: the DATA is acknowledged first.
type demoServer struct {
	srv     *smtp.Server
	ln      net.Listener
	refl    *reflector.Reflector
	out     *routedSender
	targets map[string]string // probe mailbox -> check id
	log     *slog.Logger
	queue   chan queued

	mu     sync.Mutex
	broken map[string]bool // check id -> swallow its probes
}

type queued struct {
	from string
	msg  []byte
	// first is when the first delivery of the reflection was tried (zero:
	// not yet).
	first time.Time
}

// Reflections that fail for a reason other than a permanent refusal (the
// receiver answers 451, is stopped or restarting) are tried again, as an
// MTA's queue does: every reflectRetryEvery, for at most reflectRetryFor.
const (
	reflectRetryEvery = 2 * time.Second
	reflectRetryFor   = 5 * time.Minute
	// reflectParallel bounds the reflections being delivered at once.
	reflectParallel = 256
)

func newDemoServer(f *checks.File, keySpec string, routes map[string]string, breaks []string, log *slog.Logger) (*demoServer, error) {
	keys, err := probemail.ParseKeys(keySpec)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &demoServer{ln: ln, targets: map[string]string{}, broken: map[string]bool{}, log: log.With("component", "demo-mail-server"),
		queue: make(chan queued, 4096)}
	for _, c := range f.Checks {
		if c.Target != "" {
			d.targets[strings.ToLower(c.Target)] = c.ID
		}
	}
	for _, b := range breaks {
		d.broken[b] = true
	}
	d.out = newRoutedSender(routes)
	d.refl = reflector.New(reflector.Config{Keys: keys}, d.out, reflector.NewMemorySeen(time.Now), time.Now)
	d.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &demoSession{d: d}, nil }))
	d.srv.Domain = "mx.customers.test"
	d.srv.MaxMessageBytes = probemail.MaxMessageBytes
	d.srv.ReadTimeout, d.srv.WriteTimeout = time.Minute, time.Minute
	return d, nil
}

func (d *demoServer) addr() string { return d.ln.Addr().String() }

// close releases the listener of a server that will not run.
func (d *demoServer) close() { _ = d.ln.Close(); d.out.close() }

func (d *demoServer) unbreak() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.broken)
}

// reflect hands one message to the reflector, and queues it again when the
// reflection could not be delivered for a reason other than a permanent
// refusal.
func (d *demoServer) reflect(ctx context.Context, q queued) {
	if q.first.IsZero() {
		q.first = time.Now()
	}
	dec, err := d.refl.Handle(ctx, q.msg, q.from)
	switch {
	case err != nil && ctx.Err() == nil && !fault.MarkedPermanent(err) && time.Since(q.first) < reflectRetryFor:
		d.log.Info("reflection deferred, trying again", "test_id", dec.Probe.TestID, "error", err)
		d.retryLater(ctx, q)
	case err != nil:
		d.log.Warn("reflection not sent", "test_id", dec.Probe.TestID, "error", err)
	case dec.Action != reflector.ActionReflect:
		d.log.Info("message not reflected", "reason", dec.Reason, "detail", dec.Detail)
	}
}

// setBroken breaks (on) or mends one check: its probes are swallowed while
// it is broken.
func (d *demoServer) setBroken(check string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.broken[check] = true
	} else {
		delete(d.broken, check)
	}
}

// retryLater puts q back on the queue after reflectRetryEvery (a full
// queue drops it, as a full MTA queue would refuse it).
func (d *demoServer) retryLater(ctx context.Context, q queued) {
	time.AfterFunc(reflectRetryEvery, func() {
		select {
		case <-ctx.Done():
		case d.queue <- q:
		default:
			d.log.Warn("reflection dropped: queue full")
		}
	})
}

func (d *demoServer) isBroken(check string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.broken[check]
}

// run serves until ctx ends. Each reflection is delivered by a goroutine
// of its own, at most reflectParallel at once, as an MTA runs many local
// deliveries and connections at once: a receiver that hangs (stopped,
// or slow to answer) holds only the reflections to it, never those to the
// other sites.
func (d *demoServer) run(ctx context.Context) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, reflectParallel)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var q queued
			select {
			case <-ctx.Done():
				return
			case q = <-d.queue:
			}
			select {
			case <-ctx.Done():
				return
			case sem <- struct{}{}:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				d.reflect(ctx, q)
			}()
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(d.ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("demo mail server: %w", err)
	}
	_ = d.srv.Close()
	wg.Wait()
	d.out.close()
	return nil
}

type demoSession struct {
	d      *demoServer
	from   string
	checks []string
}

func (s *demoSession) Reset()        { s.from, s.checks = "", nil }
func (s *demoSession) Logout() error { return nil }
func (s *demoSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *demoSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	check, ok := s.d.targets[strings.ToLower(to)]
	if !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox here"}
	}
	s.checks = append(s.checks, check)
	return nil
}
func (s *demoSession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, c := range s.checks {
		if s.d.isBroken(c) {
			s.d.log.Info("swallowed a probe (--break)", "check", c)
			return nil
		}
	}
	select {
	case s.d.queue <- queued{from: s.from, msg: msg}:
		return nil
	default:
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "queue full, try later"}
	}
}

// routedSender submits a reflection to the receiver of its return address,
// as DNS MX records would route it, on a kept SMTP session per receiver
// (submit.Pool), as an MTA under load reuses its connections (Postfix's
// connection cache).
type routedSender struct {
	routes map[string]string // return address -> receiver host:port, filled before anything runs

	mu     sync.Mutex
	pools  map[string]*submit.Pool // by receiver host:port
	closed bool
}

func newRoutedSender(routes map[string]string) *routedSender {
	return &routedSender{routes: routes, pools: map[string]*submit.Pool{}}
}

func (r *routedSender) Send(ctx context.Context, from string, to []string, msg []byte) error {
	for _, rcpt := range to {
		p, err := r.pool(rcpt)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = p.Send(sctx, from, []string{rcpt}, msg)
		cancel()
		if err != nil {
			return err // a 4xx reply is marked temporary already (submit.Error)
		}
	}
	return nil
}

// pool returns the session pool of rcpt's receiver.
func (r *routedSender) pool(rcpt string) (*submit.Pool, error) {
	addr, ok := r.routes[strings.ToLower(rcpt)]
	if !ok {
		return nil, fmt.Errorf("no route to %s", rcpt)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("demo mail server stopped")
	}
	p, ok := r.pools[addr]
	if !ok {
		p = submit.NewPool(submit.Config{Addr: addr, TLS: submit.TLSNone, HelloName: "mx.customers.test"})
		r.pools[addr] = p
	}
	return p, nil
}

// close ends the kept sessions (QUIT).
func (r *routedSender) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, p := range r.pools {
		p.Close()
	}
}
