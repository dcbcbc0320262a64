package testkit_test

import (
	"os"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total"}, []string{"kind", "status"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h_seconds"}, []string{"kind"})
	empty := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "empty_total"}, []string{"kind"})
	reg.MustRegister(c, g, h, empty)
	c.WithLabelValues("smtp", "ok").Add(2)
	c.WithLabelValues("smtp", "failed").Add(3)
	c.WithLabelValues("imap", "ok").Add(5)
	g.Set(-1.5)
	h.WithLabelValues("smtp").Observe(0.1)
	h.WithLabelValues("smtp").Observe(9)
	h.WithLabelValues("imap").Observe(1)

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
		found  bool
	}{
		{"c_total", nil, 10, true},
		{"c_total", map[string]string{"kind": "smtp"}, 5, true},
		{"c_total", map[string]string{"kind": "smtp", "status": "ok"}, 2, true},
		{"c_total", map[string]string{"kind": "pop3"}, 0, false},
		{"c_total", map[string]string{"site": "eu"}, 0, false},
		{"g", nil, -1.5, true},
		{"h_seconds", map[string]string{"kind": "smtp"}, 2, true},
		{"empty_total", nil, 0, false},
		{"missing", nil, 0, false},
	} {
		got, found := testkit.Metric(t, reg, tc.name, tc.labels)
		if got != tc.want || found != tc.found {
			t.Errorf("Metric(%s%v) = %v, %v; want %v, %v", tc.name, tc.labels, got, found, tc.want, tc.found)
		}
	}
}

func TestLogBufferLines(t *testing.T) {
	var b testkit.LogBuffer
	for _, l := range []string{`{"level":"ERROR","msg":"a"}`, `{"level":"INFO","msg":"a"}`, `{"level":"ERROR","msg":"b"}`} {
		if _, err := b.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Lines(`"level":"ERROR"`); len(got) != 2 {
		t.Errorf("ERROR lines %q, want 2", got)
	}
	if got := b.Lines(`"level":"ERROR"`, `"msg":"b"`); len(got) != 1 || !strings.Contains(got[0], `"msg":"b"`) {
		t.Errorf("lines %q, want the one ERROR b", got)
	}
	if got := b.Lines(); len(got) != 3 {
		t.Errorf("all lines %q, want 3 (no empty line)", got)
	}
}

func TestConfigMapDir(t *testing.T) {
	d := testkit.NewConfigMapDir(t, "checks.yaml", "one")
	read := func() string {
		b, err := os.ReadFile(d.Path())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(); got != "one" {
		t.Fatalf("read %q", got)
	}
	if fi, err := os.Lstat(d.Path()); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is not a symlink (%v)", d.Path(), err)
	}
	d.Update("two")
	if got := read(); got != "two" {
		t.Fatalf("after Update, read %q", got)
	}
}

// TestWaitFor returns as soon as the condition holds, asking no more.
func TestWaitFor(t *testing.T) {
	calls := 0
	testkit.WaitFor(t, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
}
