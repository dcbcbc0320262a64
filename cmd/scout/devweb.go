package main

import (
	"context"
	"net/http"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/web"
	"golang.org/x/sync/errgroup"
)

// serveHTTP serves scout dev's --http listener: /metrics, /healthz and
// /readyz of the whole process, and every other path from the web service
// (the status pages, /events and the JSON API), which it runs in g. The
// pages are open to everyone: the listener is on loopback unless --http
// says otherwise. With $SCOUT_CLICKHOUSE_HTTP_URL set, a check page's plots
// come from that ClickHouse.
func (w *devWorld) serveHTTP(ctx context.Context, g *errgroup.Group) error {
	cfg := web.Defaults()
	cfg.Listen = "" // served below
	if w.opts.getenv != nil {
		cfg.ClickHouseURL = w.opts.getenv("SCOUT_CLICKHOUSE_HTTP_URL")
		cfg.ClickHousePassword = web.Secret(w.opts.getenv("SCOUT_CLICKHOUSE_HTTP_PASSWORD"))
	}
	pages, err := web.New(cfg, web.Deps{Checks: w.checks, JS: w.js, Logger: w.log, Registerer: w.reg, Health: w.health, Open: true})
	if err != nil {
		return err
	}
	g.Go(func() error { return pages.Run(ctx) })
	ops := platform.HTTPHandler(w.health, w.reg)
	mux := http.NewServeMux()
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, ops)
	}
	mux.Handle("/", pages.Handler())
	g.Go(func() error { return platform.ServeListener(ctx, w.httpLn, mux, 5*time.Second, w.log) })
	return nil
}
