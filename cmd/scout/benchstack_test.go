package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCPUMeterNeverNegative: the meter charges this process's
// busy work to "ours" (300 ms of CPU, by getrusage(2), at least half
// counted), no category goes negative while processes start and exit
// during the step (a start-and-end difference did, when a local(8)
// exited), and end() can be called again. The work is counted in CPU
// time, not wall time: on a loaded machine 300 ms of wall time may hold
// far less of it.
func TestCPUMeterNeverNegative(t *testing.T) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	m := startCPUMeter(nil)
	x := 0
	for start := cpu(); cpu()-start < 300*time.Millisecond; {
		x++
	}
	for range 3 {
		if err := exec.Command("sh", "-c", "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done").Run(); err != nil {
			t.Fatal(err)
		}
	}
	used := m.end()
	if used.self < 0.15 {
		t.Errorf("ours %.3f s after 300 ms of busy work, want at least 0.15 s", used.self)
	}
	for name, v := range map[string]float64{"ours": used.self, "reflector": used.reflector, "postfix": used.postfix, "dovecot": used.dovecot, "machine": used.machine} {
		if v < 0 {
			t.Errorf("%s: %.3f s, negative", name, v)
		}
	}
	if used.machine < used.self-0.05 {
		t.Errorf("machine %.3f s < ours %.3f s", used.machine, used.self)
	}
	if again := m.end(); again != used {
		t.Errorf("a second end() gave %+v, want %+v", again, used)
	}
	_ = x
}

// TestForwardOverSMTP: --reflector-smtp rewrites the documented .forward
// line to send over SMTP with the probe mailbox as envelope sender, puts
// the line back afterwards, and refuses an address off loopback or a
// .forward that is not the reflector's.
func TestForwardOverSMTP(t *testing.T) {
	const documented = `"|/usr/local/bin/scout-reflector --key-file=/home/webscout/.scout-reflector/keys"` + "\n"
	path := filepath.Join(t.TempDir(), ".forward")
	if err := os.WriteFile(path, []byte(documented), 0o644); err != nil {
		t.Fatal(err)
	}
	restore, err := forwardOverSMTP(path, "127.0.0.1:25")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := `"|/usr/local/bin/scout-reflector --key-file=/home/webscout/.scout-reflector/keys --smtp=127.0.0.1:25 --smtp-tls=none --mailbox=webscout@acme.example"` + "\n"
	if string(got) != want {
		t.Errorf(".forward during the run:\n%s\nwant\n%s", got, want)
	}
	restore()
	if got, _ := os.ReadFile(path); string(got) != documented {
		t.Errorf(".forward after the run: %q, want the documented line back", got)
	}

	for _, addr := range []string{"192.0.2.1:25", "mail.example:25", "127.0.0.1"} {
		if _, err := forwardOverSMTP(path, addr); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: err = %v, want a refusal naming loopback", addr, err)
		}
	}
	if err := os.WriteFile(path, []byte("\\webscout, other@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := forwardOverSMTP(path, "127.0.0.1:25"); err == nil || !strings.Contains(err.Error(), "not the documented reflector line") {
		t.Errorf("a foreign .forward: err = %v", err)
	}
}

// TestIMAPFastPollFlag: --imap-fast-poll reaches the IMAP-mode reflector's
// command line only when set, and a value the services refuse is a usage
// error (exit 2) before anything starts.
func TestIMAPFastPollFlag(t *testing.T) {
	has := func(args []string) bool { return slices.Contains(args, "--fast-poll=50ms") }
	if args := imapReflectorArgs("/stack", "/run/keys", "/run/state", 50*time.Millisecond); !has(args) {
		t.Errorf("with 50ms: %q, want --fast-poll=50ms", args)
	}
	for _, a := range imapReflectorArgs("/stack", "/run/keys", "/run/state", 0) {
		if strings.HasPrefix(a, "--fast-poll") {
			t.Errorf("with 0: %q, want the reflector's own default", a)
		}
	}
	for _, d := range []time.Duration{5 * time.Millisecond, time.Minute} {
		o := stackBenchOptions{startRate: 4, growth: 1.5, step: time.Second, checks: 1, imapFastPoll: d}
		err := runStackBench(context.Background(), o, io.Discard)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "--imap-fast-poll") {
			t.Errorf("--imap-fast-poll %v: err = %v, want a usage error naming the flag", d, err)
		}
	}
}
