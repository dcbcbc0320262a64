// Package chtest runs a real clickhouse-server process for tests: the
// binary from PATH or /usr/sbin (Debian's clickhouse-server package;
// scripts/clickhouse.sh install), a minimal configuration and data directory in a temporary
// directory, listening on free ports of 127.0.0.1 only. A test can stop
// the server and start it again on the same ports and data, to see what
// its code does while ClickHouse is away.
//
// A missing binary fails the test with a message saying how to install it:
// tests that need ClickHouse never skip.
package chtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is the server executable looked up in PATH, then at
// debianBinary.
const Binary = "clickhouse-server"

const debianBinary = "/usr/sbin/clickhouse-server"

// Server is one clickhouse-server process (or a stopped one that can be
// started again).
type Server struct {
	t        testing.TB
	bin      string
	Dir      string // configuration, data and logs
	TCPPort  int    // native protocol
	HTTPPort int    // HTTP interface (/ping)
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start runs a clickhouse-server for the test and stops it when the test
// ends. It fails the test when the binary is missing or the server does not
// answer /ping within 30 seconds.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		// Debian installs it in /usr/sbin, which not every PATH has.
		if _, serr := os.Stat(debianBinary); serr != nil {
			t.Fatalf("chtest: %s not found in PATH (%v) nor at %s: install Debian's clickhouse-server package, e.g. scripts/clickhouse.sh install", Binary, err, debianBinary)
		}
		bin = debianBinary
	}
	s := &Server{t: t, bin: bin, Dir: t.TempDir(), TCPPort: freePort(t), HTTPPort: freePort(t)}
	if err := os.WriteFile(filepath.Join(s.Dir, "config.xml"), []byte(Config(s.Dir, s.TCPPort, s.HTTPPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "users.xml"), []byte(Users), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// DSN is the native-protocol DSN of database db on this server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("clickhouse://127.0.0.1:%d/%s?dial_timeout=2s", s.TCPPort, db)
}

// Addr is the native-protocol address, host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.TCPPort) }

// Start starts the (stopped) server and waits until it answers /ping.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("chtest: server already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, "--config-file="+filepath.Join(s.Dir, "config.xml"))
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("chtest: start %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			s.cmd = nil
			s.t.Fatalf("chtest: clickhouse-server exited at start; log:\n%s", s.log())
		default:
		}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", s.HTTPPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("chtest: clickhouse-server does not answer /ping after 30s (%v); log:\n%s", err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 30 seconds) and waits
// for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Running reports whether the server process runs.
func (s *Server) Running() bool { return s.cmd != nil }

func (s *Server) log() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "server.err.log"} {
		data, _ := os.ReadFile(filepath.Join(s.Dir, name))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", name, data)
	}
	return b.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Config is a minimal clickhouse-server configuration: loopback only,
// everything under dir, server time zone UTC. scripts/clickhouse.sh writes
// the same file.
func Config(dir string, tcpPort, httpPort int) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>%[1]s/server.log</log>
    <errorlog>%[1]s/server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>64</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
`, dir, tcpPort, httpPort)
}

// Users is the users file: user "default" without password, from loopback
// only.
const Users = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>2000000000</max_memory_usage>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default></default>
  </quotas>
</yandex>
`
