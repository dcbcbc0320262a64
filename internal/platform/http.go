package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health collects readiness checks. A service is ready when every check
// passes: typically the NATS connection and each bound consumer.
type Health struct {
	mu     sync.Mutex
	checks map[string]func() error
}

// NewHealth returns an empty Health (ready).
func NewHealth() *Health { return &Health{checks: map[string]func() error{}} }

// Add registers or replaces a named check.
func (h *Health) Add(name string, check func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = check
}

// Set registers a check that returns err (nil: ready), for components that
// report their state as it changes.
func (h *Health) Set(name string, err error) { h.Add(name, func() error { return err }) }

// Ready runs every check and joins the failures, each prefixed with its
// name, in name order.
func (h *Health) Ready() error {
	h.mu.Lock()
	names := make([]string, 0, len(h.checks))
	checks := make(map[string]func() error, len(h.checks))
	for n, c := range h.checks {
		names = append(names, n)
		checks[n] = c // a copy: Set may replace checks while they run
	}
	h.mu.Unlock()
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		if err := checks[n](); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// HTTPHandler returns the mux with /healthz (the process serves), /readyz (200
// when Ready, else 503 with the reasons) and /metrics (gatherer), which
// speaks the OpenMetrics text format to a scraper that asks for it (Accept:
// application/openmetrics-text) and Prometheus's text format otherwise.
func HTTPHandler(h *Health, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	return mux
}

// ServeHTTP listens on addr and serves handler until ctx ends, then shuts
// down, waiting at most shutdownTimeout for open requests. An empty addr
// serves nothing and returns when ctx ends.
func ServeHTTP(ctx context.Context, addr string, handler http.Handler, shutdownTimeout time.Duration, log *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", addr, err)
	}
	return ServeListener(ctx, l, handler, shutdownTimeout, log)
}

// ServeListener is ServeHTTP on a listener the caller opened, so that a
// port already taken is reported before anything else starts; it serves
// until ctx ends and closes l.
func ServeListener(ctx context.Context, l net.Listener, handler http.Handler, shutdownTimeout time.Duration, log *slog.Logger) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Info("http listening", "addr", l.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// Register registers every collector with reg, and nothing when reg is nil
// (a service built without metrics). It returns the first error
// prometheus.Registerer.Register returns, such as
// prometheus.AlreadyRegisteredError for a metric name registered twice.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
