package receiver_test

import (
	"bufio"
	"bytes"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
)

// BenchmarkProbeUnderLoad measures what a real probe's return costs (one
// delivery: connect to the 250, JetStream's ack included) alone and under
// hostile load, with the receiver binary (built from ./cmd/receiver) in
// its own process, so that the RSS it reports is the receiver's alone
// (docs/hardening.md):
//
//	go test -run XXX -bench ProbeUnderLoad -benchtime 300x ./services/receiver
//
// Loads: none; 2,000 idle connections held open (the caps are raised to
// 2,100 for this, as all come from 127.0.0.1, to measure holding them
// all); and floods of 8 clients, a new connection per message, as fast as
// they can: junk (junkMail), forged probes (forgedMail), messages 10 times
// the size limit (oversizeMail). It reports the p50/p99 of the probe
// delivery, flood messages/s (junk/s), the receiver's CPU (100% is one
// core) and its RSS at the end and at its peak (VmRSS, VmHWM).
func BenchmarkProbeUnderLoad(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "receiver")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/receiver").CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/receiver: %v\n%s", err, out)
	}
	for _, load := range []string{"alone", "idle_2000", "junk_flood", "forged_flood", "oversize_flood"} {
		b.Run(load, func(b *testing.B) {
			e := newEnv(b)
			vars := map[string]string{"SCOUT_RECEIVER_COMMAND_TIMEOUT": "5m"}
			if load == "idle_2000" {
				raiseFileLimit(b, 5000)
				vars["SCOUT_RECEIVER_MAX_CONNECTIONS"], vars["SCOUT_RECEIVER_MAX_CONNECTIONS_PER_IP"] = "2100", "2100"
			}
			proc, addr := e.startProcess(bin, vars)
			msgs := make([][]byte, b.N)
			for i := range msgs {
				p := probe(b)
				p.StartedAt = time.Now().Add(-4 * time.Second) // the process runs on the real clock
				msgs[i] = reflection(b, p, acmeKey, target, time.Now().Add(-time.Second))
			}
			var junk atomic.Int64
			stop := func() {}
			switch load {
			case "idle_2000":
				for range 2000 {
					if _, code, msg := dial(b, addr); code != 220 {
						b.Fatalf("idle connection: %d %s", code, msg)
					}
				}
			case "junk_flood":
				stop = flood(addr, 8, &junk, junkMail)
			case "forged_flood":
				stop = flood(addr, 8, &junk, forgedMail(b))
			case "oversize_flood":
				stop = flood(addr, 8, &junk, oversizeMail)
			}
			lat := make([]time.Duration, 0, b.N)
			cpu0 := procCPU(proc.Pid)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if reply, phase := send(b, addr, target, returnAddr, msgs[i]); reply.Code != 250 {
					b.Fatalf("probe: %v in %s", reply, phase)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cpu := procCPU(proc.Pid) - cpu0
			rss, peak := procRSS(proc.Pid)
			stop()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
			b.ReportMetric(float64(junk.Load())/elapsed.Seconds(), "junk/s")
			b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "recv_cpu_%")
			b.ReportMetric(float64(rss)/(1<<20), "rss_MB")
			b.ReportMetric(float64(peak)/(1<<20), "peak_rss_MB")
			if n := e.count(); n != b.N {
				b.Fatalf("%d stored for %d probes", n, b.N)
			}
		})
	}
}

// startProcess runs the receiver binary on a free 127.0.0.1 port with the
// test's configuration plus vars, connected to the test's NATS server,
// until the end of the benchmark; it returns once the server greets.
func (e *env) startProcess(bin string, vars map[string]string) (*os.Process, string) {
	e.t.Helper()
	dir := e.t.TempDir()
	checksFile := filepath.Join(dir, "checks.yaml")
	if err := os.WriteFile(checksFile, []byte(checkFile), 0o600); err != nil {
		e.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"SCOUT_SITE=" + site, "SCOUT_NATS_URL=" + e.srv.URL, "SCOUT_CHECKS_FILE=" + checksFile,
		"SCOUT_HTTP_ADDR=127.0.0.1:0", "SCOUT_RETURN_ADDRESSES=" + returnAddr, "SCOUT_PROBE_KEYS=" + keySpec,
		"SCOUT_RECEIVER_LISTEN=" + addr, "SCOUT_RECEIVER_DKIM=false",
	}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return cmd.Process, addr
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the receiver process does not listen on %s", addr)
		}
	}
}

// flood starts n clients delivering msg to rcpt (client i's own pick)
// to addr, a new connection per message, until the returned stop is
// called. sent counts the messages answered. The clients are as cheap as
// can be (rawDeliver), so that the CPU they take from the machine is not
// taken for the receiver's cost.
func flood(addr string, n int, sent *atomic.Int64, pick func(i int) (rcpt string, msg []byte)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcpt, msg := pick(i)
			data := dotStuffed(msg)
			for {
				select {
				case <-done:
					return
				default:
				}
				if rawDeliver(addr, rcpt, data) {
					sent.Add(1)
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// dotStuffed is msg as the data of DATA (RFC 5321 section 4.5.2), ended
// by <CRLF>.<CRLF>.
func dotStuffed(msg []byte) []byte {
	var b bytes.Buffer
	w := textproto.NewWriter(bufio.NewWriter(&b))
	dw := w.DotWriter()
	_, _ = dw.Write(msg)
	_ = dw.Close()
	_ = w.W.Flush()
	return b.Bytes()
}

// rawDeliver sends one message (data: dot-stuffed, terminated) to rcpt at
// addr, and reports whether the server answered it to the end (a refusal
// counts; a connection error does not).
func rawDeliver(addr, rcpt string, data []byte) bool {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(conn)
	step := func(line string) int {
		if line != "" {
			if err := tp.PrintfLine("%s", line); err != nil {
				return 0
			}
		}
		code, _, _ := tp.ReadResponse(0)
		return code
	}
	if step("") != 220 || step("EHLO flood.example") != 250 || step("MAIL FROM:<flood@elsewhere.example>") != 250 {
		return false
	}
	if code := step("RCPT TO:<" + rcpt + ">"); code != 250 {
		step("QUIT")
		return code >= 400
	}
	if step("DATA") != 354 {
		return false
	}
	if _, err := conn.Write(data); err != nil {
		return false
	}
	code, _, _ := tp.ReadResponse(0)
	step("QUIT")
	return code >= 200
}

// junkMail: unsigned 4 KB spam to the return address (550 at DATA) from
// even clients, to a foreign recipient (550 at RCPT) from odd ones.
func junkMail(i int) (string, []byte) {
	rcpt := returnAddr
	if i%2 == 1 {
		rcpt = "victim@elsewhere.example"
	}
	return rcpt, []byte("From: spam@elsewhere.example\r\nTo: " + returnAddr + "\r\nSubject: cheap watches\r\n\r\n" +
		strings.Repeat("Buy cheap watches now, best prices on the internet, limited offer!!\r\n", 60))
}

// forgedMail: a probe re-signed with another secret under the genuine key
// id (550 5.7.1 bad_signature: the HMAC is computed and compared).
func forgedMail(b *testing.B) func(int) (string, []byte) {
	forged := probemail.Key{ID: acmeKey.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{8}, 32))}
	return func(int) (string, []byte) {
		p := probe(b)
		p.StartedAt = time.Now().Add(-4 * time.Second)
		return returnAddr, reflection(b, p, forged, target, time.Now())
	}
}

// oversizeMail: 10 times the default SCOUT_RECEIVER_MAX_BYTES (552 after
// the data).
func oversizeMail(int) (string, []byte) {
	return returnAddr, []byte("From: big@elsewhere.example\r\nSubject: big\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", int(10*probemail.MaxMessageBytes/78)))
}

// procRSS returns a process's resident set size now and at its peak
// (VmRSS, VmHWM of Linux /proc), in bytes; 0 elsewhere.
func procRSS(pid int) (rss, peak int64) {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(status), "\n") {
		name, v, _ := strings.Cut(l, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch name {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

// procCPU returns the CPU time a process has used (user and system, from
// Linux /proc, in clock ticks of 10 ms); 0 elsewhere.
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(user+sys) * 10 * time.Millisecond
}
