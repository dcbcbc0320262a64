package platform_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPartitionTransformMatchesServer: the stream stores a site- and
// check-routed event with the check's partition as its last token, the one
// events.PartitionOf computes, the same for every site of a check; the
// stored subject parses back, KeyByCheck finds the check in it, and a
// check-routed subject is stored as published.
func TestPartitionTransformMatchesServer(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := natstest.Context(t)
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for i := range 200 {
		check := fmt.Sprintf("check-%d", i)
		for _, site := range []string{"eu-west", "us-east"} {
			ack, err := js.Publish(ctx, events.SiteCheckSubject(events.SubjectMailSent, site, check), []byte("{}"))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := st.GetMsg(ctx, ack.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("%s.%d", events.SiteCheckSubject(events.SubjectMailSent, site, check), events.PartitionOf(check))
			if raw.Subject != want {
				t.Fatalf("stored as %q, want %q", raw.Subject, want)
			}
			s, err := events.ParseSubject(raw.Subject)
			if err != nil || s.Site != site || s.Check != check {
				t.Errorf("ParseSubject(%q) = %+v, %v", raw.Subject, s, err)
			}
			used[events.PartitionOf(check)] = true
		}
	}
	if len(used) != events.Partitions {
		t.Errorf("200 checks fell in %d partitions, want all %d", len(used), events.Partitions)
	}
	ack, err := js.Publish(ctx, events.CheckSubject(events.SubjectIncidentOpen, "acme"), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := st.GetMsg(ctx, ack.Sequence); err != nil || raw.Subject != "incident.open.acme" {
		t.Errorf("check-routed subject stored as %q (%v), want it as published", raw.Subject, err)
	}
}

// subjectMsg is a jetstream.Msg with only a subject.
type subjectMsg struct {
	jetstream.Msg
	subject string
}

func (m subjectMsg) Subject() string { return m.subject }

func TestKeyByCheck(t *testing.T) {
	for subj, want := range map[string]string{
		"mail.sent.eu.acme-rt.7": "acme-rt", // stored (partitioned)
		"mail.sent.eu.acme-rt":   "acme-rt", // as published (a stream before partitions)
		"incident.open.acme-rt":  "acme-rt",
		"mail.sent.eu.123.7":     "123", // a check id of digits
	} {
		if got := platform.KeyByCheck(subjectMsg{subject: subj}); got != want {
			t.Errorf("KeyByCheck(%q) = %q, want %q", subj, got, want)
		}
	}
}

// TestRendezvousOwner: every partition has one owner among the members,
// and when a member goes only the partitions it owned move.
func TestRendezvousOwner(t *testing.T) {
	ids := []string{"evaluator-0-a1b2", "evaluator-1-c3d4", "evaluator-2-e5f6"}
	count := map[string]int{}
	for p := range events.Partitions {
		all := platform.RendezvousOwner(ids, p)
		count[all]++
		if got := platform.RendezvousOwner([]string{ids[2], ids[0], ids[1]}, p); got != all {
			t.Errorf("partition %d: the order of members changed the owner: %s vs %s", p, got, all)
		}
		for _, gone := range ids {
			rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == gone })
			got := platform.RendezvousOwner(rest, p)
			if all != gone && got != all {
				t.Errorf("partition %d moved from %s to %s when %s went", p, all, got, gone)
			}
		}
	}
	for _, id := range ids {
		if count[id] == 0 {
			t.Errorf("member %s owns no partition of %d: %v", id, events.Partitions, count)
		}
	}
}

// replica is one member of a partitioned consumer group in
// TestPartitionedConsumersDivideAndMove: its own connection, Members and
// consumer.
type replica struct {
	name    string
	members *platform.Members
	cancel  context.CancelFunc
	done    chan struct{}
	close   func()
}

// handledBy records which replica handled each test id.
type handledBy struct {
	mu sync.Mutex
	by map[string]string
}

func (h *handledBy) get(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.by[id]
}

func startReplica(t *testing.T, srv *natstest.Server, name string, seen *handledBy) *replica {
	t.Helper()
	nc, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	kv, err := js.KeyValue(ctx, events.BucketEvaluator)
	if err != nil {
		t.Fatal(err)
	}
	m, err := platform.NewMembers(platform.MembersConfig{Prefix: "replica.", ID: platform.NewMemberID(name),
		Partitions: events.Partitions, Heartbeat: 100 * time.Millisecond, Expiry: 5 * time.Second}, kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := platform.NewRouter()
	platform.On(r, func(_ context.Context, ev *events.MailReturned) error {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		if _, dup := seen.by[ev.TestID]; !dup {
			seen.by[ev.TestID] = name
		}
		return nil
	})
	cons, err := platform.NewConsumer(platform.ConsumerConfig{
		Def: events.ConsumerDef{Durable: "group", Partitions: events.Partitions, PriorityGroup: "group",
			AckWait: 30 * time.Second, MaxAckPending: 64, MaxDeliver: -1},
		Router: r, Workers: 2, Key: platform.KeyByCheck,
	}, platform.ConsumerDeps{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	rep := &replica{name: name, members: m, cancel: cancel, done: make(chan struct{}), close: nc.Close}
	go func() {
		defer close(rep.done)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = m.Run(ctx) }()
		go func() {
			defer wg.Done()
			if err := cons.RunPartitions(ctx, m); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
		wg.Wait()
	}()
	t.Cleanup(func() { cancel(); <-rep.done })
	return rep
}

// agreed waits until every replica sees exactly the others and they
// agree on each partition's owner; it returns the owners.
func agreed(t *testing.T, reps ...*replica) map[int]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		owners, ok := map[int]string{}, true
		for _, r := range reps {
			ok = ok && len(r.members.Live()) == len(reps)
		}
		for p := 0; ok && p < events.Partitions; p++ {
			n := 0
			for _, r := range reps {
				if r.members.Preferred(p) {
					owners[p] = r.name
					n++
				}
			}
			ok = n == 1
		}
		if ok {
			return owners
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the replicas did not agree on the partitions' owners")
	return nil
}

// publishReturns publishes one mail.returned per check and waits until
// each was handled; it returns the test ids by check.
func publishReturns(t *testing.T, js jetstream.JetStream, seen *handledBy, round string, checks int) map[string]string {
	t.Helper()
	ctx := natstest.Context(t)
	pub := platform.JetStreamPublisher{JS: js}
	ids := map[string]string{}
	for i := range checks {
		ev := returned(fmt.Sprintf("%s-%d", round, i))
		ev.CheckID = fmt.Sprintf("check-%d", i)
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		ids[ev.CheckID] = ev.TestID
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for seen.get(id) == "" {
			if time.Now().After(deadline) {
				t.Fatalf("round %s: test %s was never handled", round, id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return ids
}

// TestPartitionedConsumersDivideAndMove: two replicas of a partitioned
// consumer, on a real nats-server, divide the partitions between them and
// each handles the events of the checks in its own; when one stops, the
// other handles everything, and owns every partition once the stopped
// one's heartbeat is gone (at once when it deleted its key, after the
// expiry when it was killed).
func TestPartitionedConsumersDivideAndMove(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	seen := &handledBy{by: map[string]string{}}
	a := startReplica(t, srv, "a", seen)
	b := startReplica(t, srv, "b", seen)
	owners := agreed(t, a, b)
	publishReturns(t, js, seen, "warm", 64) // every partition pulled at its new priority
	ids := publishReturns(t, js, seen, "two", 64)
	// The server gives a partition's event to another replica while its
	// owner has no pull waiting (docs/evaluation.md, section 6: "when the
	// owner falls behind"), which a loaded machine makes happen now and
	// then (CI #39: 1 of 64), so a few may go astray, not the division.
	per, astray := map[string]int{}, []string{}
	for check, id := range ids {
		want := owners[events.PartitionOf(check)]
		if got := seen.get(id); got != want {
			astray = append(astray, fmt.Sprintf("%s (partition %d) by %s, not its owner %s", check, events.PartitionOf(check), got, want))
		}
		per[seen.get(id)]++
	}
	if len(astray) > len(ids)/8 {
		t.Errorf("%d of %d events handled by a replica that does not own their partition: %v", len(astray), len(ids), astray)
	}
	if per["a"] == 0 || per["b"] == 0 {
		t.Errorf("handled per replica %v: the replicas did not divide the checks", per)
	}

	// a stops cleanly: its key goes, b owns everything.
	a.cancel()
	<-a.done
	a.close()
	agreed(t, b)
	for check, id := range publishReturns(t, js, seen, "one", 64) {
		if got := seen.get(id); got != "b" {
			t.Errorf("after a stopped, %s handled by %s", check, got)
		}
	}

	// c joins, then is killed (its connection closes, its key stays):
	// b handles c's partitions at once, and owns them after the expiry.
	c := startReplica(t, srv, "c", seen)
	agreed(t, b, c)
	c.close() // the process is gone; its heartbeat key is not deleted
	for check, id := range publishReturns(t, js, seen, "killed", 64) {
		if got := seen.get(id); got != "b" {
			t.Errorf("after c was killed, %s handled by %s", check, got)
		}
	}
	agreed(t, b)
}

// flipPref is a Preference whose answer for every partition flips right
// after the flipOn-th call of Preferred has answered, the way a second
// change of the members can land while a partition's feeder looks at the
// first.
type flipPref struct {
	mu      sync.Mutex
	mine    bool
	changed chan struct{}
	ready   chan struct{}
	calls   int
	flipOn  int
}

func (f *flipPref) Preferred(int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	answer := f.mine
	if f.calls == f.flipOn {
		f.mine = !f.mine
		f.signal()
	}
	return answer
}

func (f *flipPref) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *flipPref) Ready() <-chan struct{} { return f.ready }

// signal announces a change; f.mu is held.
func (f *flipPref) signal() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *flipPref) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestConsumePartitionsSeesAChangeRightAfterAnother: a change that does
// not move a partition, followed at once by one that does, makes its
// feeder pull again at the new priority; the second change is not lost
// between the feeder's look at the first and its wait for the next.
func TestConsumePartitionsSeesAChangeRightAfterAnother(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLIP", Subjects: []string{"flip.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "FLIP", jetstream.ConsumerConfig{Durable: "flip", AckPolicy: jetstream.AckExplicitPolicy,
		PriorityGroups: []string{"g"}, PriorityPolicy: jetstream.PriorityPolicyPrioritized})
	if err != nil {
		t.Fatal(err)
	}
	pref := &flipPref{mine: true, changed: make(chan struct{}), ready: make(chan struct{})}
	close(pref.ready)
	done := make(chan error, 1)
	go func() {
		done <- platform.ConsumePartitions(ctx, []jetstream.Consumer{cons}, pref,
			func(context.Context, jetstream.Msg) error { return nil }, platform.ConsumeOptions{PriorityGroup: "g"})
	}()
	waitCalls := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for pref.callCount() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: Preferred was asked %d times, want %d", what, pref.callCount(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCalls(1, "the first pull")
	pref.mu.Lock()
	pref.flipOn = 2 // the feeder's look at the next change flips the partition
	pref.signal()   // a change that does not move it
	pref.mu.Unlock()
	// The feeder sees the flip, drains its pull and pulls again: it asks
	// once more to see the flip and once more for the new pull.
	waitCalls(4, "after the flip")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
