package checks

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // weekly windows name IANA zones; containers may lack /usr/share/zoneinfo

	"go.yaml.in/yaml/v3"
)

// Window is a maintenance (quiet) window of a check: an incident that opens
// inside it is recorded, but nobody is notified. A window is either one-off
// (Start and End, absolute times) or weekly (Days at [FromMinute, ToMinute)
// local time in Location).
//
// In the check file:
//
//	maintenance:
//	  - start: 2026-12-01T22:00:00Z      # RFC 3339, with Z or an offset
//	    end: 2026-12-02T02:00:00+01:00
//	    reason: MX migration
//	  - weekly: "Sun 02:00-04:00"        # <days> HH:MM-HH:MM; days: Mon, Mon-Fri, Sat,Sun, daily
//	    timezone: Europe/Berlin          # IANA name; default UTC
//	    reason: patch window
//
// A weekly window whose end is not after its start crosses midnight
// ("Sat 23:00-01:00" runs into Sunday); 24:00 ends a window at midnight.
// Local times follow the zone's daylight saving time.
type Window struct {
	// Start and End bound a one-off window, [Start, End).
	Start, End time.Time

	// Weekly is the weekly form as written, e.g. "Sun 02:00-04:00"; empty
	// for a one-off window.
	Weekly string
	// Days the weekly window starts on, indexed by time.Weekday.
	Days [7]bool
	// FromMinute and ToMinute are minutes after local midnight (0..1440).
	FromMinute, ToMinute int
	// Location of a weekly window (time.UTC by default).
	Location *time.Location

	// Reason is the operator's note, shown in suppressed notifications.
	Reason string
	// Line is where the window starts in the check file.
	Line int
}

// Contains reports whether t falls inside the window.
func (w *Window) Contains(t time.Time) bool {
	if w.Weekly == "" {
		return !t.Before(w.Start) && t.Before(w.End)
	}
	lt := t.In(w.Location)
	y, m, d := lt.Date()
	// A window that crosses midnight may have started the day before.
	for back := 0; back <= 1; back++ {
		day := time.Date(y, m, d-back, 0, 0, 0, 0, w.Location)
		if !w.Days[day.Weekday()] {
			continue
		}
		start := time.Date(y, m, d-back, w.FromMinute/60, w.FromMinute%60, 0, 0, w.Location)
		endDay := d - back
		if w.ToMinute <= w.FromMinute {
			endDay++
		}
		end := time.Date(y, m, endDay, w.ToMinute/60, w.ToMinute%60, 0, 0, w.Location)
		if !t.Before(start) && t.Before(end) {
			return true
		}
	}
	return false
}

// String describes the window for people, e.g. "maintenance Sun 02:00-04:00
// Europe/Berlin (patch window)".
func (w *Window) String() string {
	var s string
	if w.Weekly != "" {
		s = "maintenance " + w.Weekly + " " + w.Location.String()
	} else {
		s = "maintenance " + w.Start.Format(time.RFC3339) + " to " + w.End.Format(time.RFC3339)
	}
	if w.Reason != "" {
		s += " (" + w.Reason + ")"
	}
	return s
}

// MaintenanceAt returns the first of the check's maintenance windows that
// contains t.
func (c *Check) MaintenanceAt(t time.Time) (*Window, bool) {
	for i := range c.Maintenance {
		if c.Maintenance[i].Contains(t) {
			return &c.Maintenance[i], true
		}
	}
	return nil, false
}

// rawWindow is a maintenance window as written; resolve validates it.
type rawWindow struct {
	fields map[string]string
	lines  map[string]int
	line   int
}

var windowFields = []string{"start", "end", "weekly", "timezone", "reason"}

// UnmarshalYAML implements yaml.Unmarshaler. It refuses unknown keys (the
// strict decoder does not reach inside a custom unmarshaler) and keeps each
// value's line for messages.
func (r *rawWindow) UnmarshalYAML(n *yaml.Node) error {
	r.line = n.Line
	r.fields = map[string]string{}
	r.lines = map[string]int{}
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a maintenance window is a mapping with start and end, or weekly", n.Line)}}
	}
	var errs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		known := false
		for _, f := range windowFields {
			known = known || k.Value == f
		}
		switch {
		case !known:
			errs = append(errs, fmt.Sprintf("line %d: field %s not found in a maintenance window (start, end, weekly, timezone, reason)", k.Line, k.Value))
		case v.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Sprintf("line %d: maintenance %s must be a single value", v.Line, k.Value))
		default:
			r.fields[k.Value] = v.Value
			r.lines[k.Value] = v.Line
		}
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	return nil
}

// resolve validates one window; add reports a problem in field (a
// window key, or "" for the window as a whole) at the line of that key.
func (r *rawWindow) resolve(add func(line int, field, format string, args ...any)) (Window, bool) {
	w := Window{Reason: r.fields["reason"], Line: r.line}
	ok := true
	bad := func(field, format string, args ...any) {
		line := r.line
		if l, has := r.lines[field]; has {
			line = l
		}
		add(line, field, format, args...)
		ok = false
	}
	_, hasStart := r.fields["start"]
	_, hasEnd := r.fields["end"]
	weekly, hasWeekly := r.fields["weekly"]
	tz, hasTZ := r.fields["timezone"]
	switch {
	case hasWeekly && (hasStart || hasEnd):
		bad("", "give either start and end (one-off) or weekly, not both")
		return w, false
	case hasWeekly:
		w.Location = time.UTC
		if hasTZ {
			loc, err := time.LoadLocation(tz)
			if err != nil || tz == "" || tz == "Local" {
				bad("timezone", "%q is not an IANA time zone such as Europe/Berlin or UTC", tz)
			} else {
				w.Location = loc
			}
		}
		if err := parseWeekly(weekly, &w); err != nil {
			bad("weekly", "%q %v", weekly, err)
		}
		w.Weekly = weekly
	case hasStart || hasEnd:
		if hasTZ {
			bad("timezone", "applies to weekly windows only (start and end carry their own offset)")
		}
		parsed := true
		for _, f := range []string{"start", "end"} {
			v, has := r.fields[f]
			if !has {
				bad("", "%s is required with %s", f, map[string]string{"start": "end", "end": "start"}[f])
				parsed = false
				continue
			}
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				bad(f, "%q is not an RFC 3339 time such as 2026-12-01T22:00:00Z", v)
				parsed = false
				continue
			}
			if f == "start" {
				w.Start = t
			} else {
				w.End = t
			}
		}
		if parsed && !w.End.After(w.Start) {
			bad("end", "must be after start (%s)", w.Start.Format(time.RFC3339))
		}
	default:
		bad("", "give start and end (one-off) or weekly")
	}
	return w, ok
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseWeekly reads "<days> HH:MM-HH:MM" into w.
func parseWeekly(s string, w *Window) error {
	days, span, found := strings.Cut(strings.TrimSpace(s), " ")
	span = strings.TrimSpace(span)
	from, to, dash := strings.Cut(span, "-")
	if !found || !dash {
		return fmt.Errorf(`is not "<days> HH:MM-HH:MM" such as "Sun 02:00-04:00" or "Mon-Fri 22:00-23:00"`)
	}
	if strings.EqualFold(days, "daily") {
		w.Days = [7]bool{true, true, true, true, true, true, true}
	} else {
		for _, part := range strings.Split(days, ",") {
			a, b, isRange := strings.Cut(part, "-")
			first, ok1 := weekdays[strings.ToLower(a)]
			last, ok2 := first, true
			if isRange {
				last, ok2 = weekdays[strings.ToLower(b)]
			}
			if !ok1 || !ok2 {
				return fmt.Errorf("has %q where a day (Mon..Sun), a range (Mon-Fri), a list (Sat,Sun) or daily is expected", part)
			}
			for d := first; ; d = (d + 1) % 7 {
				w.Days[d] = true
				if d == last {
					break
				}
			}
		}
	}
	var err error
	if w.FromMinute, err = clockMinute(from, false); err != nil {
		return err
	}
	if w.ToMinute, err = clockMinute(to, true); err != nil {
		return err
	}
	if w.FromMinute == w.ToMinute {
		return fmt.Errorf("is empty: start and end are the same time (use 00:00-24:00 for a whole day)")
	}
	return nil
}

// clockMinute parses "HH:MM" (00:00..23:59, or 24:00 as an end) into
// minutes after midnight.
func clockMinute(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	switch {
	case !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil:
		return 0, fmt.Errorf("has %q where a time HH:MM is expected", s)
	case end && hh == 24 && mm == 0:
		return 1440, nil
	case hh > 23 || mm > 59 || hh < 0 || mm < 0:
		return 0, fmt.Errorf("has %q, which is not a time of day (00:00 to 23:59, or 24:00 as an end)", s)
	}
	return hh*60 + mm, nil
}
