package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// soakProc is one OS process of the soak (a service, nats-server, the demo
// server), supervised as Kubernetes would: an exit the soak did not cause is
// counted and the process started again after a second.
type soakProc struct {
	name string
	path string
	args []string
	env  []string
	logs string // directory of its log file

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current incarnation exited
	expected bool          // the soak stops or kills it: no restart
	starts   int
	crashes  []string // unexpected exits: "15:04:05 exit status 1"
	peakKB   int64    // highest VmHWM of any incarnation
	closed   bool     // the soak is over: never restart
}

func newSoakProc(name, path string, args, env []string, logs string) *soakProc {
	return &soakProc{name: name, path: path, args: args, env: env, logs: logs}
}

// start runs a new incarnation; its stdout and stderr go to <logs>/<name>.log.
func (p *soakProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	lf, err := os.OpenFile(filepath.Join(p.logs, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "--- soak: start %s at %s\n", p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group: a Ctrl-C of the soak reaches the soak only,
	// which then stops every process in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done, p.expected = cmd, make(chan struct{}), false
	p.starts++
	done := p.done
	go func() {
		err := cmd.Wait()
		lf.Close()
		p.mu.Lock()
		unexpected := !p.expected && !p.closed
		if unexpected {
			p.crashes = append(p.crashes, fmt.Sprintf("%s %v", time.Now().UTC().Format("15:04:05"), err))
		}
		p.mu.Unlock()
		close(done)
		if unexpected {
			time.Sleep(time.Second)
			_ = p.start()
		}
	}()
	return nil
}

func (p *soakProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// sample notes the process's peak resident set (VmHWM of /proc/PID/status).
func (p *soakProc) sample() {
	pid := p.pid()
	if pid == 0 {
		return
	}
	if kb := procHWM(pid); kb > 0 {
		p.mu.Lock()
		p.peakKB = max(p.peakKB, kb)
		p.mu.Unlock()
	}
}

// procHWM reads VmHWM (peak RSS, kB) of pid; 0 when it cannot.
func procHWM(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// signal sends sig to the current incarnation.
func (p *soakProc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return errors.New(p.name + " is not running")
	}
	return p.cmd.Process.Signal(sig)
}

// stop ends the current incarnation with sig (SIGKILL, or SIGTERM then
// SIGKILL after grace) and waits for it; it is not restarted.
func (p *soakProc) stop(sig syscall.Signal, grace time.Duration) {
	p.sample()
	p.mu.Lock()
	if p.cmd == nil {
		p.mu.Unlock()
		return
	}
	p.expected = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// close stops the process for good.
func (p *soakProc) close(grace time.Duration) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.signal(syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	p.stop(syscall.SIGTERM, grace)
}

func (p *soakProc) report() (peakKB int64, starts int, crashes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peakKB, p.starts, append([]string(nil), p.crashes...)
}
