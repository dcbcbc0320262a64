package main

import (
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/jonboulle/clockwork"
)

// Around each predicted arrival the watch polls fast from dueLead before
// to dueTail after it. The lead covers the server's IDLE delay in the
// arrival the prediction is made from, and some jitter in the mail
// system. A probe that comes later than the window is still seen, by IDLE.
const (
	dueLead = 2 * time.Second
	dueTail = 5 * time.Second
)

// Intervals outside these bounds are not a check's schedule: two probes a
// millisecond apart come from two sites' retests, and a day is the longest
// interval a check file allows.
const (
	dueMinInterval = time.Second
	dueMaxInterval = 24 * time.Hour
)

// dueProbes predicts when the next probe of each check and site arrives
// and makes the watch poll fast around that moment (imapwatch's Expect
// with imap.fast_poll), so that a reflection does not wait for the
// server's IDLE notification (Dovecot's is about half a second) and the
// round trip describes the mail system, not our wait. A site sends a
// check's probes at a fixed phase of its interval, so the next one
// arrives about one interval, the difference of the two probes' start
// times, after the last one did. The first probe of a check and site
// teaches its start time and the second its interval; from then on each
// arrival arms the next window. Confirmation attempts (attempt > 1) come
// off the schedule and teach nothing. Safe for concurrent use.
type dueProbes struct {
	clock  clockwork.Clock
	expect func(until time.Time) // the watch's Expect

	mu     sync.Mutex
	last   map[string]lastProbe // by check and site
	pruned time.Time            // the last removal of forgotten checks
}

type lastProbe struct {
	started time.Time // the probe's StartedAt (the monitor's clock)
	at      time.Time // when it arrived (this host's clock)
	timer   clockwork.Timer
}

// dueForget: a check and site that sent no probe for this long (twice the
// longest interval) is forgotten, so that checks removed from the monitor
// do not stay in memory until the reflector restarts.
const dueForget = 2 * dueMaxInterval

func newDueProbes(clock clockwork.Clock, expect func(until time.Time)) *dueProbes {
	return &dueProbes{clock: clock, expect: expect, last: map[string]lastProbe{}}
}

// arrived records that verified probe p arrived at (this host's clock).
func (d *dueProbes) arrived(p probemail.Probe, at time.Time) {
	if p.Attempt != 1 {
		return
	}
	key := p.CheckID + "\x00" + p.Site
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, seen := d.last[key]
	if seen && !p.StartedAt.After(prev.started) {
		return // an older probe, late or reflected again
	}
	d.prune(at)
	next := lastProbe{started: p.StartedAt, at: at}
	if seen {
		if prev.timer != nil {
			prev.timer.Stop()
		}
		if interval := p.StartedAt.Sub(prev.started); interval >= dueMinInterval && interval <= dueMaxInterval {
			due := at.Add(interval)
			until := due.Add(dueTail)
			next.timer = d.clock.AfterFunc(max(due.Add(-dueLead).Sub(d.clock.Now()), 0), func() { d.expect(until) })
		}
	}
	d.last[key] = next
}

// prune forgets the checks and sites whose last probe arrived more than
// dueForget before now, at most once an hour. d.mu is held.
func (d *dueProbes) prune(now time.Time) {
	if now.Sub(d.pruned) < time.Hour {
		return
	}
	d.pruned = now
	for key, l := range d.last {
		if now.Sub(l.at) > dueForget {
			if l.timer != nil {
				l.timer.Stop()
			}
			delete(d.last, key)
		}
	}
}
