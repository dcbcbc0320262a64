// Package testkit holds the small test helpers that several services'
// tests share: a goroutine-safe log sink, a reader of Prometheus metrics
// from a registry, a directory mounted like a ConfigMap and a wait for an
// asynchronous outcome. It is imported by tests only.
package testkit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LogBuffer is a goroutine-safe io.Writer that keeps everything written to
// it: the log sink of a service under test, read while it runs.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it never fails.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the non-empty lines written so far that contain every one
// of parts.
func (b *LogBuffer) Lines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// Metric returns the sum, over the series of the metric called name whose
// labels include every pair in labels (nil: all series), of a counter's or
// gauge's value or a histogram's sample count; found is false when no
// series matches (a vector with no children is not gathered at all). A
// failing Gather fails the test.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (sum float64, found bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			found = true
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, found
}

// MustMetric is Metric for a metric that must exist: it fails the test
// when no series matches.
func MustMetric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := Metric(t, g, name, labels)
	if !ok {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return v
}

// ConfigMapDir is a directory laid out as kubelet mounts a ConfigMap
// (AtomicWriter): <dir>/<name> -> ..data/<name>, ..data -> a version
// directory. Update writes a new version directory and swaps ..data to it
// with one rename, as kubelet does when the ConfigMap changes.
type ConfigMapDir struct {
	t       testing.TB
	dir     string
	name    string
	version int
}

// NewConfigMapDir mounts one key, name, with content in a new temporary
// directory.
func NewConfigMapDir(t testing.TB, name, content string) *ConfigMapDir {
	d := &ConfigMapDir{t: t, dir: t.TempDir(), name: name}
	d.Update(content)
	if err := os.Symlink(filepath.Join("..data", name), d.Path()); err != nil {
		t.Fatal(err)
	}
	return d
}

// Path is the file a container reads: <dir>/<name>.
func (d *ConfigMapDir) Path() string { return filepath.Join(d.dir, d.name) }

// Update puts content in force as the next version.
func (d *ConfigMapDir) Update(content string) {
	d.t.Helper()
	d.version++
	v := fmt.Sprintf("..2026_12_04_21_00_%02d.%d", d.version, os.Getpid())
	must := func(err error) {
		if err != nil {
			d.t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(d.dir, v), 0o755))
	must(os.WriteFile(filepath.Join(d.dir, v, d.name), []byte(content), 0o644))
	must(os.Symlink(v, filepath.Join(d.dir, "..data_tmp")))
	must(os.Rename(filepath.Join(d.dir, "..data_tmp"), filepath.Join(d.dir, "..data")))
}

// WaitFor polls cond every 10 ms until it holds, and fails the test,
// naming what it waited for, when it does not within 15 s: for outcomes
// that arrive asynchronously (a KV watch, a server push). It bounds a wait,
// it does not time the code under test.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
