package platform

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

// Reload outcomes, the values of scout_checks_reloads_total{outcome}.
const (
	ReloadApplied = "applied"
	ReloadRefused = "refused"
)

// CheckFileWatcher keeps a checks.Live in step with the check file: every
// interval it reads the file and, when the bytes differ from those in
// force, validates them (checks.Parse) and puts the new file in force. A
// mounted ConfigMap changes by an atomic symlink swap (kubelet's
// AtomicWriter): reading the path always sees a whole version, so polling
// the content is enough and needs no inotify on the symlinks.
//
// An invalid or unreadable version is refused: the old file stays in
// force, the errors are logged once per version (each names the file,
// line, check and field), scout_checks_last_reload_successful drops to 0
// and the alert ScoutCheckFileRefused fires; the next valid version is
// applied and sets it back to 1.
type CheckFileWatcher struct {
	path     string
	interval time.Duration
	live     *checks.Live
	clock    clockwork.Clock
	log      *slog.Logger

	current []byte // bytes of the file in force
	refused []byte // bytes of the last refused version, logged once

	successful prometheus.Gauge
	successAt  prometheus.Gauge
	reloads    *prometheus.CounterVec
	count      prometheus.Gauge
}

// NewCheckFileWatcher watches path, whose content data was loaded into
// live, every interval (at least a second). clock nil is the real clock,
// log nil discards, reg nil registers no metrics.
func NewCheckFileWatcher(path string, data []byte, live *checks.Live, interval time.Duration, clock clockwork.Clock, log *slog.Logger, reg prometheus.Registerer) (*CheckFileWatcher, error) {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &CheckFileWatcher{
		path: path, interval: max(interval, time.Second), live: live, clock: clock, current: data,
		log: log.With("component", "checks", "checks_file", path),
		successful: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scout_checks_last_reload_successful",
			Help: "1 if the last version of the check file read was applied, 0 if it was refused (the previous one stays in force)."}),
		successAt: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scout_checks_last_reload_success_timestamp_seconds",
			Help: "Unix time the check file in force was loaded."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scout_checks_reloads_total",
			Help: "New versions of the check file seen, by outcome (applied, refused)."}, []string{"outcome"}),
		count: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scout_checks",
			Help: "Checks in the check file in force."}),
	}
	for _, o := range []string{ReloadApplied, ReloadRefused} {
		w.reloads.WithLabelValues(o)
	}
	w.successful.Set(1)
	w.successAt.Set(float64(clock.Now().UnixNano()) / 1e9)
	w.count.Set(float64(len(live.Current().Checks)))
	if err := Register(reg, w.successful, w.successAt, w.reloads, w.count); err != nil {
		return nil, err
	}
	return w, nil
}

// Run polls the file until ctx ends.
func (w *CheckFileWatcher) Run(ctx context.Context) error {
	t := w.clock.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
			w.Reload()
		}
	}
}

// Reload reads the file once and applies it if it changed and is valid.
// It returns the outcome: "" (unchanged or already refused),
// ReloadApplied or ReloadRefused.
func (w *CheckFileWatcher) Reload() string {
	data, err := os.ReadFile(w.path)
	if err == nil && bytes.Equal(data, w.current) {
		if w.refused != nil {
			// Put back as it was: the refusal no longer stands.
			w.refused = nil
			w.successful.Set(1)
			w.log.Info("check file is back to the version in force")
		}
		return ""
	}
	var f *checks.File
	if err != nil {
		err = fmt.Errorf("read check file: %w", err)
		data = []byte(err.Error()) // one log line per distinct failure
	} else {
		f, err = checks.Parse(w.path, data)
	}
	if err != nil {
		if bytes.Equal(data, w.refused) {
			return ""
		}
		w.refused = data
		w.successful.Set(0)
		w.reloads.WithLabelValues(ReloadRefused).Inc()
		w.log.Error("check file refused: the previous version stays in force", "error", err.Error(),
			"checks_in_force", len(w.live.Current().Checks))
		return ReloadRefused
	}
	old := w.live.Current()
	w.current, w.refused = data, nil
	w.live.Set(f)
	w.successful.Set(1)
	w.successAt.Set(float64(w.clock.Now().UnixNano()) / 1e9)
	w.reloads.WithLabelValues(ReloadApplied).Inc()
	w.count.Set(float64(len(f.Checks)))
	added, removed, changed := diffChecks(old, f)
	w.log.Info("check file reloaded", "checks", len(f.Checks), "added", added, "removed", removed, "changed", changed)
	for _, warn := range f.Warnings {
		w.log.Warn("check file", "warning", warn.Error())
	}
	return ReloadApplied
}

// diffChecks names the checks added to, removed from and changed between
// two versions of the file (a check is changed when its definition
// differs; where it stands in the file does not count).
func diffChecks(old, cur *checks.File) (added, removed, changed []string) {
	for _, c := range cur.Checks {
		o := old.Lookup(c.ID)
		switch {
		case o == nil:
			added = append(added, c.ID)
		case definition(*o) != definition(*c):
			changed = append(changed, c.ID)
		}
	}
	for _, c := range old.Checks {
		if cur.Lookup(c.ID) == nil {
			removed = append(removed, c.ID)
		}
	}
	return added, removed, changed
}

// definition prints what a check is, without its lines in the file. The
// expected greeting and the maintenance windows are printed by their
// pattern and description: their pointers (a compiled regexp, a time
// zone) differ between two loads of the same text.
func definition(c checks.Check) string {
	c.Line = 0
	greeting, service := "", ""
	if c.Service != nil {
		s := *c.Service
		if s.ExpectGreeting != nil {
			greeting = s.ExpectGreeting.String()
		}
		s.ExpectGreeting = nil
		service = fmt.Sprintf("%+v", s)
	}
	c.Service = nil
	windows := make([]string, len(c.Maintenance))
	for i := range c.Maintenance {
		windows[i] = c.Maintenance[i].String()
	}
	c.Maintenance = nil
	return fmt.Sprintf("%+v service=%s greeting=%q maintenance=%q", c, service, greeting, windows)
}
