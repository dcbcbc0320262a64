package checks

import (
	"strings"
	"testing"
	"time"
)

func TestMaintenanceWindows(t *testing.T) {
	f, err := Load("testdata/maintenance-good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := f.Lookup("acme-roundtrip")
	if len(c.Maintenance) != 4 {
		t.Fatalf("%d windows, want 4", len(c.Maintenance))
	}
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name   string
		window int
		at     string
		want   bool
	}{
		// One-off, the end written with an offset: 02:00+01:00 is 01:00Z.
		{"before one-off", 0, "2026-12-01T21:59:59Z", false},
		{"one-off start is inside", 0, "2026-12-01T22:00:00Z", true},
		{"one-off last second", 0, "2026-12-02T00:59:59Z", true},
		{"one-off end is outside", 0, "2026-12-02T01:00:00Z", false},
		// Sun 02:00-04:00 Europe/Berlin: 01:00-03:00Z in winter, 00:00-02:00Z in summer.
		{"berlin winter inside", 1, "2026-11-29T01:30:00Z", true},
		{"berlin winter before", 1, "2026-11-29T00:59:00Z", false},
		{"berlin winter after", 1, "2026-11-29T03:00:00Z", false},
		{"berlin summer inside", 1, "2026-07-05T00:30:00Z", true},
		{"berlin summer after", 1, "2026-07-05T02:30:00Z", false},
		{"berlin monday", 1, "2026-11-30T01:30:00Z", false},
		// The spring-forward Sunday has no 02:00-03:00; the window still runs to 04:00 CEST (02:00Z).
		{"berlin dst switch", 1, "2026-03-29T01:30:00Z", true},
		{"berlin dst switch after", 1, "2026-03-29T02:00:00Z", false},
		// Fri-Sat 23:30-00:30 UTC crosses midnight.
		{"friday night", 2, "2026-12-04T23:45:00Z", true},
		{"saturday just after midnight", 2, "2026-12-05T00:15:00Z", true},
		{"saturday night", 2, "2026-12-05T23:45:00Z", true},
		{"sunday just after midnight", 2, "2026-12-06T00:15:00Z", true},
		{"sunday night", 2, "2026-12-06T23:45:00Z", false},
		{"friday just after midnight (thursday's window)", 2, "2026-12-04T00:15:00Z", false},
		{"window end", 2, "2026-12-05T00:30:00Z", false},
		// daily 12:00-12:05 New York.
		{"new york winter", 3, "2026-12-01T17:02:00Z", true},
		{"new york summer", 3, "2026-07-01T16:02:00Z", true},
		{"new york summer, winter offset", 3, "2026-07-01T17:02:00Z", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &c.Maintenance[tc.window]
			if got := w.Contains(utc(tc.at)); got != tc.want {
				t.Errorf("%s contains %s = %v, want %v", w, tc.at, got, tc.want)
			}
		})
	}
	w, ok := c.MaintenanceAt(utc("2026-11-29T01:30:00Z"))
	if !ok || w.Reason != "patch window" || !strings.Contains(w.String(), "Sun 02:00-04:00 Europe/Berlin (patch window)") {
		t.Errorf("MaintenanceAt = %v, %v", w, ok)
	}
	if _, ok := c.MaintenanceAt(utc("2026-11-30T09:00:00Z")); ok {
		t.Error("Monday 09:00 is in no window")
	}
	if w.Line != 13 {
		t.Errorf("window line %d, want 13", w.Line)
	}
}
