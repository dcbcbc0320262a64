package probemail

import "time"

// RoundTrip is the timing of one returned probe.
type RoundTrip struct {
	// RTT is ReceivedAt - StartedAt, both on monitor clocks: the only figure
	// verdicts use.
	RTT time.Duration
	// Outgoing (reflected_at - started_at) and Incoming (received_at -
	// reflected_at) mix the monitor's and the reflector's clocks. Nil when
	// the message carried no reflection stamp.
	Outgoing, Incoming *time.Duration
	// Skew estimates the reflector clock's offset from the monitor's,
	// assuming both legs took equally long: (Outgoing - Incoming) / 2.
	Skew *time.Duration
	// SkewSuspect: a leg is negative, which no real delivery can be, so the
	// reflector's clock is wrong by more than the leg.
	SkewSuspect bool
}

// Measure computes the round trip of a probe started at startedAt and
// received at receivedAt (both monitor clocks), reflected at reflectedAt by
// the remote clock (nil when unknown). All durations are truncated to
// milliseconds, the precision of the probe's timestamps.
func Measure(startedAt, receivedAt time.Time, reflectedAt *time.Time) RoundTrip {
	rt := RoundTrip{RTT: receivedAt.Sub(startedAt).Truncate(time.Millisecond)}
	if reflectedAt == nil {
		return rt
	}
	out := reflectedAt.Sub(startedAt).Truncate(time.Millisecond)
	in := receivedAt.Sub(*reflectedAt).Truncate(time.Millisecond)
	skew := ((out - in) / 2).Truncate(time.Millisecond)
	rt.Outgoing, rt.Incoming, rt.Skew = &out, &in, &skew
	rt.SkewSuspect = out < 0 || in < 0
	return rt
}
