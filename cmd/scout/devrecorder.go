package main

import (
	"errors"
	"log/slog"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// newDevRecorder runs the recorder in-process for --clickhouse.
func newDevRecorder(dsn string, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer, h *platform.Health) (platform.Component, error) {
	return nil, errors.New("--clickhouse: the recorder is not part of this build yet")
}
