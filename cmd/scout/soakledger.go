package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// soakResult is one check.result as the stream holds it.
type soakResult struct {
	at time.Time // stream time
	ev events.CheckResult
}

type soakTransition struct {
	incident, check, transition string
	notify                      bool
}

// soakLedger is the soak's books, kept from the outside.
type soakLedger struct {
	scheduled   map[string]events.TestScheduled // test id -> its test.scheduled
	schedAt     []time.Time                     // stream times of the scheduler's test.scheduled
	results     map[string][]soakResult         // test id -> its results (revisions)
	resultOrder []soakResult                    // in stream order
	resultDups  int                             // a test id and revision in the stream more than once
	opens       []events.IncidentOpen
	resolves    []events.IncidentResolved
	notifyAt    []time.Time // stream times of notification.* events

	chRaw, chFinal, chDistinct int64
	chIDs                      map[string]bool

	kvOpen []string // checks with an open incident in the KV at the end

	sms         []fakeSMS
	smsProblems []string
}

// ledger reads the books once the system settled.
func (r *soakRun) ledger(ctx context.Context) (*soakLedger, error) {
	l := &soakLedger{scheduled: map[string]events.TestScheduled{}, results: map[string][]soakResult{}, chIDs: map[string]bool{}}
	nc, err := nats.Connect(r.natsURL, nats.Name("scout-soak-ledger"))
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := l.readStream(ctx, js); err != nil {
		return nil, fmt.Errorf("ledger: stream: %w", err)
	}
	if err := l.readKV(ctx, js); err != nil {
		return nil, fmt.Errorf("ledger: kv: %w", err)
	}
	q := func(s string) (int64, error) {
		out, err := r.chQuery(ctx, s)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	}
	if l.chRaw, err = q("SELECT count() FROM check_results"); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if l.chFinal, err = q("SELECT count() FROM check_results FINAL"); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if l.chDistinct, err = q("SELECT uniqExact(test_id) FROM check_results FINAL"); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	ids, err := r.chQuery(ctx, "SELECT DISTINCT test_id FROM check_results")
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	for _, id := range readLines(ids) {
		l.chIDs[id] = true
	}
	l.sms, l.smsProblems = r.twilio.report()
	return l, nil
}

func (l *soakLedger) readStream(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectTestScheduled + ".>", events.SubjectCheckResult + ".>", "incident.>", "notification.>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	seen := map[string]bool{} // test id + revision of results
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			return err
		}
		n := 0
		pending := uint64(1)
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return err
			}
			pending = md.NumPending
			subj := msg.Subject()
			switch {
			case strings.HasPrefix(subj, events.SubjectTestScheduled+"."):
				var ev events.TestScheduled
				if json.Unmarshal(msg.Data(), &ev) == nil {
					if _, ok := l.scheduled[ev.TestID]; !ok {
						l.scheduled[ev.TestID] = ev
					}
					if ev.Reason == events.ReasonInterval {
						l.schedAt = append(l.schedAt, md.Timestamp)
					}
				}
			case strings.HasPrefix(subj, events.SubjectCheckResult+"."):
				var ev events.CheckResult
				if json.Unmarshal(msg.Data(), &ev) == nil {
					key := ev.TestID + ":" + strconv.Itoa(ev.Revision)
					if seen[key] {
						l.resultDups++
					}
					seen[key] = true
					res := soakResult{at: md.Timestamp, ev: ev}
					l.results[ev.TestID] = append(l.results[ev.TestID], res)
					l.resultOrder = append(l.resultOrder, res)
				}
			case strings.HasPrefix(subj, events.SubjectIncidentOpen+"."):
				var ev events.IncidentOpen
				if json.Unmarshal(msg.Data(), &ev) == nil {
					l.opens = append(l.opens, ev)
				}
			case strings.HasPrefix(subj, events.SubjectIncidentResolved+"."):
				var ev events.IncidentResolved
				if json.Unmarshal(msg.Data(), &ev) == nil {
					l.resolves = append(l.resolves, ev)
				}
			case strings.HasPrefix(subj, "notification."):
				l.notifyAt = append(l.notifyAt, md.Timestamp)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if n == 0 || pending == 0 {
			return nil
		}
	}
}

func (l *soakLedger) readKV(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, events.BucketIncidents)
	if err != nil {
		return err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return err
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var st struct {
			Open *events.IncidentOpen `json:"open"`
		}
		if json.Unmarshal(e.Value(), &st) == nil && st.Open != nil {
			l.kvOpen = append(l.kvOpen, k)
		}
	}
	slices.Sort(l.kvOpen)
	return nil
}

// soakVerdict is the outcome of the books.
type soakVerdict struct {
	scheduled, final, lost, missingCH int
	lostIDs, missingIDs               []string
	dupRows                           int64
	silencedOpened                    []string // silenced checks with an incident
	silencedMissing                   []string // silenced checks without one
	falseIncidents                    []string // "check (severity)" on healthy checks
	transitions                       int
	smsBad                            []string // transitions without exactly one SMS
	smsExtra                          int      // SMS that match no transition
	smsTotal                          int
}

func (l *soakLedger) verdict(r *soakRun) soakVerdict {
	var v soakVerdict
	for id, t := range l.scheduled {
		if t.ScheduledAt.After(r.cutoff) {
			continue
		}
		v.scheduled++
		if len(l.results[id]) == 0 {
			v.lost++
			v.lostIDs = append(v.lostIDs, fmt.Sprintf("%s (%s %s attempt %d, %s)", id, t.CheckID, t.Site, t.Attempt, t.ScheduledAt.UTC().Format("15:04:05")))
			continue
		}
		v.final++
		if !l.chIDs[id] {
			v.missingCH++
			v.missingIDs = append(v.missingIDs, fmt.Sprintf("%s (%s %s, result at %s)", id, t.CheckID, t.Site, l.results[id][0].at.UTC().Format("15:04:05")))
		}
	}
	slices.Sort(v.lostIDs)
	v.dupRows = l.chFinal - l.chDistinct

	silenced := map[string]bool{}
	for _, id := range r.silenced {
		silenced[id] = true
	}
	opened := map[string]bool{}
	falses := map[string]bool{}
	for _, o := range l.opens {
		if silenced[o.CheckID] {
			opened[o.CheckID] = true
		} else {
			falses[o.CheckID+" ("+o.Severity+")"] = true
		}
	}
	for _, id := range r.silenced {
		if opened[id] {
			v.silencedOpened = append(v.silencedOpened, id)
		} else {
			v.silencedMissing = append(v.silencedMissing, id)
		}
	}
	for f := range falses {
		v.falseIncidents = append(v.falseIncidents, f)
	}
	slices.Sort(v.falseIncidents)

	// SMS: each transition that notifies must have exactly one message to
	// its check's number announcing it (by the incident's short id).
	phoneOf := map[string]string{}
	for phone, check := range r.phones {
		phoneOf[check] = phone
	}
	var trans []soakTransition
	seen := map[string]bool{}
	for _, o := range l.opens {
		if k := "open:" + o.IncidentID; !seen[k] && o.Notify {
			seen[k] = true
			trans = append(trans, soakTransition{o.IncidentID, o.CheckID, "open", o.Notify})
		}
	}
	for _, o := range l.resolves {
		if k := "resolved:" + o.IncidentID; !seen[k] && o.Notify {
			seen[k] = true
			trans = append(trans, soakTransition{o.IncidentID, o.CheckID, "resolved", o.Notify})
		}
	}
	v.transitions = len(trans)
	v.smsTotal = len(l.sms)
	matched := 0
	for _, t := range trans {
		short := notifier.ShortIncidentID(t.incident)
		n := 0
		for _, m := range l.sms {
			if m.To == phoneOf[t.check] && smsTransition(m.Body) == t.transition && strings.Contains(m.Body, short) {
				n++
			}
		}
		matched += n
		if n != 1 {
			v.smsBad = append(v.smsBad, fmt.Sprintf("%s %s of %s: %d SMS", t.check, t.transition, short, n))
		}
	}
	v.smsExtra = len(l.sms) - matched
	return v
}

// gap is the time from a fault's start to the next result that needed the
// faulted part; ok is false when none came before the books were read.
func (l *soakLedger) gap(r *soakRun, f soakFault) (time.Duration, string, bool) {
	site := ""
	if i := strings.Index(f.target, "-"); i > 0 {
		site = f.target[i+1:]
	}
	firstResult := func(match func(soakResult) bool) (time.Duration, bool) {
		for _, res := range l.resultOrder {
			if res.at.After(f.start) && match(res) {
				return res.at.Sub(f.start), true
			}
		}
		return 0, false
	}
	good := func(res soakResult) bool {
		return res.ev.Status == events.StatusOK || res.ev.Status == events.StatusSlow
	}
	var d time.Duration
	var ok bool
	var what string
	switch {
	case f.kind == "kill" && f.target == "scheduler":
		what = "next test.scheduled of the scheduler"
		for _, t := range l.schedAt {
			if t.After(f.start) {
				d, ok = t.Sub(f.start), true
				break
			}
		}
	case f.kind == "kill" && strings.HasPrefix(f.target, "sender-"):
		what = "next good result at " + site + " of a test started after the kill"
		d, ok = firstResult(func(res soakResult) bool {
			return res.ev.Site == site && good(res) && res.ev.StartedAt.After(f.start)
		})
	case f.kind == "stop":
		what = "next round trip at " + site + " received after SIGCONT, from SIGCONT"
		from := f.end
		for _, res := range l.resultOrder {
			if res.at.After(from) && res.ev.Site == site && res.ev.Kind == events.KindRoundTrip && good(res) &&
				res.ev.ReceivedAt != nil && res.ev.ReceivedAt.After(from) {
				d, ok = res.at.Sub(from), true
				break
			}
		}
	case strings.HasPrefix(f.target, "receiver-"):
		what = "next round trip at " + site + " received after the kill"
		d, ok = firstResult(func(res soakResult) bool {
			return res.ev.Site == site && res.ev.Kind == events.KindRoundTrip && good(res) &&
				res.ev.ReceivedAt != nil && res.ev.ReceivedAt.After(f.start)
		})
	case f.kind == "kill" && f.target == "evaluator":
		what = "next check.result"
		d, ok = firstResult(func(soakResult) bool { return true })
	case f.kind == "nats":
		what = "next check.result published after NATS was back"
		d, ok = firstResult(func(res soakResult) bool { return res.at.After(f.end) })
	case f.kind == "kill" && f.target == "notifier":
		what = "next notification (only when one was due)"
		for _, t := range l.notifyAt {
			if t.After(f.start) {
				d, ok = t.Sub(f.start), true
				break
			}
		}
	case f.kind == "kill" && f.target == "recorder":
		what = "next rows in ClickHouse"
		var t time.Time
		if t, ok = r.chRows.nextGrowth(f.start); ok {
			d = t.Sub(f.start)
		}
	case f.kind == "clickhouse":
		what = "next rows in ClickHouse, from its start"
		var t time.Time
		if t, ok = r.chRows.nextGrowth(f.end); ok {
			d = t.Sub(f.end)
		}
	}
	return d, what, ok
}

// print writes the table and reports whether every must held.
func (l *soakLedger) print(w io.Writer, r *soakRun) bool {
	v := l.verdict(r)
	allOK := true
	must := func(ok bool) string {
		if ok {
			return "ok"
		}
		allOK = false
		return "FAIL"
	}
	fmt.Fprintf(w, "\nEmail Scout soak, seed %d: %d round-trip + %d service checks every %v at %d sites; %v of faults (warm-up %v); books read %v after the faults\n",
		r.o.seed, r.o.roundTrips, r.o.serviceChecks, r.o.interval, len(soakSites), r.o.duration, r.o.warmup, r.booksAt.Sub(r.faultEnd).Round(time.Second))
	fmt.Fprintf(w, "tests scheduled before the cut-off (test.scheduled at or before the end of the faults, retests included): the books count these.\n\n")
	row := func(name, value, rule, result string) {
		fmt.Fprintf(w, "| %-52s | %-22s | %-18s | %-4s |\n", name, value, rule, result)
	}
	row("what", "measured", "must", "")
	fmt.Fprintf(w, "|%s|%s|%s|%s|\n", strings.Repeat("-", 54), strings.Repeat("-", 24), strings.Repeat("-", 20), strings.Repeat("-", 6))
	row("tests scheduled", strconv.Itoa(v.scheduled), "", "")
	row("final results (check.result)", strconv.Itoa(v.final), "", "")
	row("lost (scheduled, no result)", strconv.Itoa(v.lost), "0", must(v.lost == 0))
	row("results missing in ClickHouse", strconv.Itoa(v.missingCH), "0", must(v.missingCH == 0))
	row("duplicated rows in ClickHouse (FINAL)", strconv.FormatInt(v.dupRows, 10), "0", must(v.dupRows == 0))
	row("  rows before merging (raw, FINAL, distinct tests)", fmt.Sprintf("%d, %d, %d", l.chRaw, l.chFinal, l.chDistinct), "", "")
	row("  check.result published twice (stream)", strconv.Itoa(l.resultDups), "", "")
	row("incidents opened for silenced checks", fmt.Sprintf("%d of %d", len(v.silencedOpened), len(r.silenced)), "= silenced set", must(len(v.silencedMissing) == 0))
	row("false incidents (healthy checks)", strconv.Itoa(len(v.falseIncidents)), "0", must(len(v.falseIncidents) == 0))
	row("incident transitions told (open, resolved)", fmt.Sprintf("%d (%d, %d)", v.transitions, len(l.opens), len(l.resolves)), "", "")
	row("SMS per incident transition", fmt.Sprintf("%d SMS, %d not 1", v.smsTotal, len(v.smsBad)), "exactly 1", must(len(v.smsBad) == 0 && v.smsExtra == 0))
	row("  SMS matching no transition", strconv.Itoa(v.smsExtra), "0", "")
	row("  malformed requests at the fake Twilio", strconv.Itoa(len(l.smsProblems)), "", "")
	row("incidents still open at the end (KV)", strconv.Itoa(len(l.kvOpen)), "0", must(len(l.kvOpen) == 0))

	var longest time.Duration
	var longestWhat string
	var lines []string
	for _, f := range r.faults {
		d, what, ok := l.gap(r, f)
		val := "none before the books"
		if ok {
			val = d.Round(100 * time.Millisecond).String()
			if f.kind == "kill" && d > longest && f.target != "notifier" {
				longest, longestWhat = d, f.target
			}
		}
		lines = append(lines, fmt.Sprintf("  %s  %-52s → %-8s (%s)", f.start.UTC().Format("15:04:05"), f.describe(), val, what))
	}
	row("longest gap from a kill -9 to the next result", fmt.Sprintf("%v (%s)", longest.Round(100*time.Millisecond), longestWhat), "", "")
	var rss []string
	for _, p := range r.allProcs() {
		kb, starts, crashes := p.report()
		s := fmt.Sprintf("%s %.0f MB", p.name, float64(kb)/1024)
		if starts > 1 {
			s += fmt.Sprintf(" (%d starts)", starts)
		}
		if len(crashes) > 0 {
			s += fmt.Sprintf(" [%d unexpected exits]", len(crashes))
		}
		rss = append(rss, s)
	}
	r.chSampleMu.Lock()
	rss = append(rss, fmt.Sprintf("clickhouse-server %.0f MB", float64(r.chPeakKB)/1024))
	r.chSampleMu.Unlock()
	fmt.Fprintf(w, "\npeak RSS (VmHWM, highest of every start): %s\n", strings.Join(rss, " · "))
	fmt.Fprintf(w, "\nfaults (start UTC, what → time to the next result that needed the faulted part):\n%s\n", strings.Join(lines, "\n"))
	detail := func(title string, xs []string) {
		if len(xs) == 0 {
			return
		}
		sort.Strings(xs)
		if len(xs) > 20 {
			xs = append(xs[:20], fmt.Sprintf("... and %d more", len(xs)-20))
		}
		fmt.Fprintf(w, "%s:\n  %s\n", title, strings.Join(xs, "\n  "))
	}
	detail("lost tests", v.lostIDs)
	detail("results not in ClickHouse", v.missingIDs)
	detail("silenced checks without an incident", v.silencedMissing)
	detail("false incidents", v.falseIncidents)
	detail("transitions without exactly one SMS", v.smsBad)
	detail("incidents still open", l.kvOpen)
	detail("fake Twilio problems", l.smsProblems)
	for _, p := range r.allProcs() {
		if _, _, crashes := p.report(); len(crashes) > 0 {
			detail("unexpected exits of "+p.name, crashes)
		}
	}
	if allOK {
		fmt.Fprintln(w, "\nsoak: every must held")
	} else {
		fmt.Fprintln(w, "\nsoak: a must FAILED")
	}
	return allOK
}
