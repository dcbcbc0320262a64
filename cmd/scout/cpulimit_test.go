package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCPULimit puts a busy process under a limit of a quarter of a core:
// the kernel throttles it (cpu.stat counts throttled periods), and the
// cgroup is gone once deleted. Where this process may not create a cgroup
// (not root, no writable cpu controller), newCPULimit and scout scale
// --evaluator-cpu say so instead of measuring without the limit.
func TestCPULimit(t *testing.T) {
	name := fmt.Sprintf("scout-test-%d", os.Getpid())
	l, err := newCPULimit(name, 0.25)
	if err != nil {
		if !errors.Is(err, errNoCPULimit) {
			t.Fatalf("newCPULimit: %v, want an error wrapping errNoCPULimit", err)
		}
		t.Logf("no writable cgroup here: %v", err)
		var out bytes.Buffer
		o := scaleOptions{checks: []int{10}, sites: 1, interval: time.Minute, warmup: time.Second, window: time.Second, evaluatorCPU: 0.25}
		if err := runScale(context.Background(), o, &out); !errors.Is(err, errNoCPULimit) || !strings.Contains(err.Error(), "--evaluator-cpu") {
			t.Fatalf("scout scale --evaluator-cpu without a cgroup: %v, want the flag named and errNoCPULimit", err)
		}
		return
	}
	busy := exec.Command("sh", "-c", "while :; do :; done")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = busy.Process.Kill()
			_ = busy.Wait()
		}
	}
	defer func() {
		stop()
		_ = l.delete()
	}()
	if err := l.add(busy.Process.Pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		periods, throttled, err := l.throttled()
		if err != nil {
			t.Fatal(err)
		}
		if throttled > 0 {
			t.Logf("%d of %d periods throttled", throttled, periods)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a busy loop under a 0.25-core limit was never throttled (%d periods)", periods)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := l.delete(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := newCPULimit(name, 0); !errors.Is(err, errNoCPULimit) {
		t.Errorf("a limit of 0 cores: %v, want an error", err)
	}
}
