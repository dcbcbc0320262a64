//go:build integration

package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/internal/natstest"
)

// TestProvisionClickHouse runs `scout provision` against a real
// clickhouse-server (Debian's package, started by scripts/clickhouse.sh on
// free loopback ports): the first run creates the database and applies
// every migration, the second finds the schema up to date, and the tables
// answer the analysts' queries (`scout history`).
func TestProvisionClickHouse(t *testing.T) {
	script, err := filepath.Abs("../../scripts/clickhouse.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tcp, http := freePort(t), freePort(t)
	start := exec.Command(script, "start", fmt.Sprint(tcp), fmt.Sprint(http), dir)
	dsnOut, err := start.Output()
	if err != nil {
		t.Fatalf("scripts/clickhouse.sh start: %v (%s)", err, exitStderr(err))
	}
	t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
	// A database of its own: the script's DSN names "scout".
	dsn := strings.Replace(strings.TrimSpace(string(dsnOut)), "/scout", "/provision_test", 1)

	s := natstest.Start(t)
	out, err := runProvision(t, map[string]string{"SCOUT_CLICKHOUSE_DSN": dsn}, "--nats", s.URL)
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	if !strings.Contains(out, "clickhouse "+dsn+": applied migrations 1") {
		t.Errorf("first run did not apply the migrations:\n%s", out)
	}
	out, err = runProvision(t, nil, "--nats", s.URL, "--clickhouse", dsn)
	if err != nil || !strings.Contains(out, "clickhouse "+dsn+": schema up to date (version ") {
		t.Errorf("second run: %v\n%s", err, out)
	}
	var hist strings.Builder
	if err := run(natstest.Context(t), []string{"history", "acme-roundtrip", "--clickhouse", dsn}, func(string) string { return "" }, &hist); err != nil {
		t.Fatalf("history on the provisioned schema: %v", err)
	}
	if !strings.Contains(hist.String(), "no round-trip attempts of acme-roundtrip") {
		t.Errorf("history: %s", hist.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
