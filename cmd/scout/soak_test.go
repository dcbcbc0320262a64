package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier"
)

func soakTestOptions() soakOptions {
	return soakOptions{seed: 1, duration: 3 * time.Minute, roundTrips: 200, serviceChecks: 50, interval: time.Minute,
		chOutage: 20 * time.Second, stopFor: 30 * time.Second}
}

func TestSoakPlanIsSeededAndCoversEveryFault(t *testing.T) {
	o := soakTestOptions()
	a, b := soakPlan(o, 2*time.Minute), soakPlan(o, 2*time.Minute)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two plans")
	}
	o.seed = 2
	if c := soakPlan(o, 2*time.Minute); reflect.DeepEqual(a.faults, c.faults) {
		t.Fatal("seeds 1 and 2 gave the same plan")
	}
	kinds := map[string]int{}
	var last time.Duration
	for _, f := range a.faults {
		kinds[f.kind+" "+f.target]++
		if f.at <= last {
			t.Fatalf("faults overlap or go back in time: %+v after %v", f, last)
		}
		last = f.at + f.length
	}
	for _, s := range soakServices() {
		if kinds["kill "+s] != 1 {
			t.Errorf("kill -9 of %s: %d times in one round, want 1", s, kinds["kill "+s])
		}
	}
	if kinds["nats "] != 1 || kinds["clickhouse "] != 1 {
		t.Errorf("NATS restarts and ClickHouse stops: %v", kinds)
	}
	if kinds["stop receiver-soak-a"]+kinds["stop receiver-soak-b"] != 1 {
		t.Errorf("receiver stops: %v", kinds)
	}
	if last > o.duration {
		t.Errorf("the short form's round ends at %v, after its %v", last, o.duration)
	}
	if a.breakFor != 2*time.Minute+20*time.Second {
		t.Errorf("silence lasts %v, want the detection bound and 20 s", a.breakFor)
	}

	o.duration = 30 * time.Minute
	long := soakPlan(o, 2*time.Minute)
	if len(long.faults) < 5*len(a.faults) {
		t.Errorf("30 minutes: %d faults, want several rounds of %d", len(long.faults), len(a.faults))
	}
	if f := long.faults[len(long.faults)-1]; f.at+f.length > o.duration {
		t.Errorf("last fault %+v ends after the phase", f)
	}
}

func TestSoakCheckFileLoadsAndSilencedIsSeeded(t *testing.T) {
	o := soakTestOptions()
	path := filepath.Join(t.TempDir(), "checks.yaml")
	ports := map[string]int{"svc-000-smtp": 2525}
	if err := os.WriteFile(path, []byte(soakCheckFile(o, "127.0.0.1", ports)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := checks.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	phones := map[string]bool{}
	for _, c := range f.Checks {
		kinds[c.Kind]++
		if len(c.Contacts) != 1 || phones[c.Contacts[0].Phone] {
			t.Fatalf("check %s: contacts %+v, want one number of its own", c.ID, c.Contacts)
		}
		phones[c.Contacts[0].Phone] = true
		if len(c.Sites) != 2 || c.Interval != time.Minute {
			t.Fatalf("check %s: sites %v, interval %v", c.ID, c.Sites, c.Interval)
		}
	}
	if kinds[events.KindRoundTrip] != 200 || kinds[events.KindSMTP]+kinds[events.KindIMAP]+kinds[events.KindPOP3] != 50 {
		t.Fatalf("kinds: %v", kinds)
	}
	if c := f.Lookup("svc-000-smtp"); c.Service.Port == 0 || c.Service.Host != "127.0.0.1" {
		t.Fatalf("svc-000-smtp: %+v", c.Service)
	}
	s1, s2 := pickSilenced(f, 7, 0), pickSilenced(f, 7, 0)
	if !reflect.DeepEqual(s1, s2) || len(s1) != 4+2 {
		t.Fatalf("silenced: %v and %v, want the same 4 round trips and 2 service checks", s1, s2)
	}
	for _, id := range s1 {
		if f.Lookup(id) == nil {
			t.Fatalf("silenced %s is no check", id)
		}
	}
}

func TestFakeTwilioCountsMessagesThroughTheProxy(t *testing.T) {
	ft, err := newFakeTwilio("AC"+strings.Repeat("a", 32), "token1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ft.run(ctx)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ft.caPEM) {
		t.Fatal("no CA")
	}
	proxy, _ := url.Parse(ft.proxyURL())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(proxy)
	tr.TLSClientConfig.RootCAs = pool
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	send := func(token, body string) int {
		form := url.Values{"To": {"+447700900001"}, "From": {"+15555550199"}, "Body": {body}}
		req, _ := http.NewRequest(http.MethodPost, "https://api.twilio.com/2010-04-01/Accounts/"+ft.sid+"/Messages.json", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(ft.sid, token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := send("token1", "DOWN rt-001"); got != http.StatusCreated {
		t.Fatalf("status %d, want 201", got)
	}
	if got := send("wrong", "DOWN rt-001"); got != http.StatusUnauthorized {
		t.Fatalf("bad token: status %d, want 401", got)
	}
	if _, err := client.Get("https://example.com/"); err == nil {
		t.Fatal("the proxy let a request to example.com through")
	}
	msgs, problems := ft.report()
	if len(msgs) != 1 || msgs[0].Body != "DOWN rt-001" || len(problems) != 2 {
		t.Fatalf("messages %+v, problems %v", msgs, problems)
	}
}

func TestChSeriesNextGrowth(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s chSeries
	for i, n := range []int64{10, 12, 12, 12, 15} {
		s.add(t0.Add(time.Duration(i)*time.Second), n)
	}
	if at, ok := s.nextGrowth(t0.Add(1500 * time.Millisecond)); !ok || !at.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("nextGrowth = %v %v, want t0+4s", at, ok)
	}
	if _, ok := s.nextGrowth(t0.Add(5 * time.Second)); ok {
		t.Fatal("growth after the last sample")
	}
}

func TestSoakLedgerVerdict(t *testing.T) {
	cut := time.Unix(2000, 0)
	r := &soakRun{cutoff: cut, silenced: []string{"rt-001"}, phones: map[string]string{"+447700900001": "rt-001", "+447700900002": "rt-002"}}
	l := &soakLedger{scheduled: map[string]events.TestScheduled{}, results: map[string][]soakResult{}, chIDs: map[string]bool{}}
	sched := func(id string, at time.Time) {
		l.scheduled[id] = events.TestScheduled{TestID: id, CheckID: "rt-002", Site: "soak-a", Attempt: 1, ScheduledAt: at}
	}
	sched("t1", cut.Add(-time.Minute))
	sched("t2", cut.Add(-time.Minute))
	sched("t3", cut.Add(time.Minute)) // after the cut-off: not counted
	l.results["t1"] = []soakResult{{ev: events.CheckResult{TestID: "t1"}}}
	l.chIDs["t1"] = true
	l.chFinal, l.chDistinct = 5, 4
	open := events.IncidentOpen{IncidentID: "inc-aaaaaaaaaaaa", CheckID: "rt-001", Severity: events.SeverityCritical, Notify: true}
	l.opens = []events.IncidentOpen{open, open, // published twice: one transition
		{IncidentID: "inc-bbbbbbbbbbbb", CheckID: "rt-002", Severity: events.SeverityWarning}}
	l.resolves = []events.IncidentResolved{{IncidentID: "inc-aaaaaaaaaaaa", CheckID: "rt-001", Notify: true}}
	short := notifier.ShortIncidentID("inc-aaaaaaaaaaaa")
	l.sms = []fakeSMS{
		{To: "+447700900001", Body: "DOWN rt-001. Incident #" + short},
		{To: "+447700900001", Body: "RESOLVED rt-001: OK again after 2m. Incident #" + short},
		{To: "+447700900001", Body: "RESOLVED rt-001: OK again after 2m. Incident #" + short}, // twice
	}
	v := l.verdict(r)
	if v.scheduled != 2 || v.final != 1 || v.lost != 1 || v.missingCH != 0 || v.dupRows != 1 {
		t.Fatalf("scheduled %d final %d lost %d missing %d dup %d", v.scheduled, v.final, v.lost, v.missingCH, v.dupRows)
	}
	if len(v.silencedOpened) != 1 || len(v.silencedMissing) != 0 {
		t.Fatalf("silenced opened %v missing %v", v.silencedOpened, v.silencedMissing)
	}
	if !reflect.DeepEqual(v.falseIncidents, []string{"rt-002 (warning)"}) {
		t.Fatalf("false incidents %v", v.falseIncidents)
	}
	if v.transitions != 2 || len(v.smsBad) != 1 || !strings.Contains(v.smsBad[0], "resolved") || v.smsExtra != 0 {
		t.Fatalf("transitions %d, bad %v, extra %d", v.transitions, v.smsBad, v.smsExtra)
	}
}

func TestDemoServerProcessBreaksAndMends(t *testing.T) {
	dir := t.TempDir()
	o := soakTestOptions()
	o.roundTrips, o.serviceChecks = 2, 3
	checksFile := filepath.Join(dir, "checks.yaml")
	if err := os.WriteFile(checksFile, []byte(soakCheckFile(o, demoHost, nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := checks.Load(checksFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devKeys(filepath.Join(dir, "keys"), f); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- runDemoServer(ctx, demoServerOptions{checksFile: checksFile, keysFile: filepath.Join(dir, "keys"),
			listen: "127.0.0.1:0", control: "127.0.0.1:0", state: filepath.Join(dir, "state.json"), logFile: filepath.Join(dir, "log")},
			func(string) string { return "" })
	}()
	var st demoServerState
	if err := waitFor(ctx, 10*time.Second, func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "state.json"))
		return err == nil && json.Unmarshal(data, &st) == nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 3 || st.SMTP == "" {
		t.Fatalf("state %+v: want a port per service check", st)
	}
	if _, err := os.Stat(st.CAFile); err != nil {
		t.Fatal(err)
	}
	post := func(path string) int {
		resp, err := http.Post("http://"+st.Control+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string]int{"/break?check=rt-000": 200, "/mend?check=rt-000": 200, "/break?check=svc-001-imap": 200, "/break?check=nope": 404} {
		if got := post(path); got != want {
			t.Errorf("POST %s: %d, want %d", path, got, want)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
