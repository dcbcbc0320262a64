// Package natstest runs a real, embedded nats-server with JetStream for
// tests, and helpers to wait for the asynchronous outcomes of event flows.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
	URL string
	Dir string // JetStream store directory
}

// Start runs a nats-server with JetStream on 127.0.0.1 (random port) and
// its store in a fresh temporary directory, and shuts it down when the test
// ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartAt(t, t.TempDir(), -1)
}

// StartAt runs a nats-server with its store in dir on port (-1: random),
// for tests that restart the server on the same store.
func StartAt(t testing.TB, dir string, port int) *Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	t.Cleanup(s.Shutdown)
	return &Server{Server: s, URL: s.ClientURL(), Dir: dir}
}

// Connect returns a client connection and JetStream context with the events
// stream and buckets provisioned; both are closed when the test ends.
func Connect(t testing.TB, s *Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatalf("natstest: provision: %v", err)
	}
	return nc, js
}

// Context returns a context bounded by the test's deadline (see
// mailtest.Context).
func Context(t testing.TB) context.Context {
	t.Helper()
	return mailtest.Context(t)
}
