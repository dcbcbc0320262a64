package main

import (
	"log/slog"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// newDevRecorder runs the recorder in-process for --clickhouse, with its
// defaults (recorder.Defaults: batches of up to 1000 rows or 2s).
func newDevRecorder(dsn string, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer, h *platform.Health) (platform.Component, error) {
	cfg := recorder.Defaults()
	cfg.DSN = dsn
	return recorder.New(cfg, recorder.Deps{JS: js, Health: h, Logger: log, Registerer: reg})
}
