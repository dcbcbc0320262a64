package main

import (
	"os/exec"
	"testing"
	"time"
)

// TestCPUMeterNeverNegative: the meter charges this process's
// busy work to "ours" (300 ms of it, at least half counted), no category
// goes negative while processes start and exit during the step (a
// start-and-end difference did, when a local(8) exited), and end() can be
// called again.
func TestCPUMeterNeverNegative(t *testing.T) {
	m := startCPUMeter(nil)
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
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
