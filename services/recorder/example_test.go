package recorder_test

import (
	"context"
	"log/slog"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Running the recorder in-process, as `scout dev --clickhouse DSN` does:
// only the DSN is needed, the other settings take their defaults. Run
// returns after ctx ends.
func ExampleNew() {
	var (
		ctx    context.Context     // the process's context
		js     jetstream.JetStream // connected to the (embedded) NATS server
		health *platform.Health    // the process's readiness
		log    *slog.Logger
		reg    prometheus.Registerer
	)
	r, err := recorder.New(recorder.Config{DSN: "clickhouse://127.0.0.1:9000/scout"},
		recorder.Deps{JS: js, Health: health, Logger: log, Registerer: reg})
	if err != nil {
		log.Error("history is off", "error", err)
		return
	}
	go func() { _ = r.Run(ctx) }()
}
