package twilio_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/services/notifier/delivery"
	"github.com/emailscout/emailscout/services/notifier/internal/twilio"
	"github.com/emailscout/emailscout/services/notifier/internal/twiliotest"
)

const (
	sid   = "AC0123456789abcdef0123456789abcdef"
	token = "fedcba9876543210fedcba9876543210"
	mg    = "MG0123456789abcdef0123456789abcdef"
)

func ctx(t *testing.T) context.Context {
	d, ok := t.Deadline()
	if !ok {
		d = time.Now().Add(time.Minute)
	}
	c, cancel := context.WithDeadline(context.Background(), d.Add(-time.Second))
	t.Cleanup(cancel)
	return c
}

func msg() delivery.Message {
	return delivery.Message{To: "+15555550100", Contact: "ACME on-call", Text: "DOWN ACME: test. Incident #abc", IncidentID: "abc", Transition: "open"}
}

func TestSend(t *testing.T) {
	cases := []struct {
		name      string
		resp      twiliotest.Response
		temporary bool
		status    int
		code      int
		retry     time.Duration
	}{
		{"429 too many requests", twiliotest.Response{Status: 429, Code: 20429, Message: "Too Many Requests", RetryAfter: "7"}, true, 429, 20429, 7 * time.Second},
		{"500", twiliotest.Response{Status: 500, Code: 20500, Message: "Internal Server Error"}, true, 500, 20500, 0},
		{"503 html from a proxy", twiliotest.Response{Status: 503, RawBody: "<html>unavailable</html>"}, true, 503, 0, 0},
		{"400 invalid number", twiliotest.Response{Status: 400, Code: 21211, Message: "The 'To' number +15555550100 is not a valid phone number."}, false, 400, 21211, 0},
		{"400 unverified on a trial account", twiliotest.Response{Status: 400, Code: 21608, Message: "The number is unverified."}, false, 400, 21608, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := twiliotest.Start(t, sid, token)
			p, err := twilio.New(twilio.Config{AccountSID: sid, AuthToken: token, From: "+15555550199", HTTPClient: fake.Client()})
			if err != nil {
				t.Fatal(err)
			}
			fake.Respond(tc.resp)
			id, err := p.Send(ctx(t), msg())
			var de *delivery.Error
			if !errors.As(err, &de) {
				t.Fatalf("Send = %q, %v; want a *delivery.Error", id, err)
			}
			if de.Retry != tc.temporary || de.Status != tc.status || de.Code != tc.code || de.RetryAfter != tc.retry {
				t.Errorf("error %+v, want temporary=%v status=%d code=%d retry-after=%v", de, tc.temporary, tc.status, tc.code, tc.retry)
			}
			if !delivery.Answered(err) {
				t.Error("an HTTP answer must count as answered")
			}
			if n := len(fake.Requests()); n != 1 {
				t.Errorf("%d requests, want 1 (the provider itself never retries)", n)
			}
		})
	}
}

func TestSendCreated(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  twilio.Config
	}{
		{"from number", twilio.Config{AccountSID: sid, AuthToken: token, From: "+15555550199"}},
		{"messaging service", twilio.Config{AccountSID: sid, AuthToken: token, MessagingServiceSID: mg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := twiliotest.Start(t, sid, token)
			tc.cfg.HTTPClient = fake.Client()
			p, err := twilio.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, err := p.Send(ctx(t), msg())
			if err != nil {
				t.Fatal(err)
			}
			got := fake.Created()
			if len(got) != 1 || got[0].SID != id || !strings.HasPrefix(id, "SM") {
				t.Fatalf("sid %q, created %+v", id, got)
			}
			r := got[0]
			if r.To != "+15555550100" || r.Body != msg().Text || r.From != tc.cfg.From || r.MessagingServiceSid != tc.cfg.MessagingServiceSID {
				t.Errorf("request %+v", r)
			}
			if p := fake.Problems(); len(p) > 0 {
				t.Errorf("malformed requests: %v", p)
			}
		})
	}
}

// TestSendWrongToken: the fake checks Basic auth; Twilio's 401 is
// permanent (retrying with the same token cannot help).
func TestSendWrongToken(t *testing.T) {
	fake := twiliotest.Start(t, sid, token)
	p, err := twilio.New(twilio.Config{AccountSID: sid, AuthToken: strings.Repeat("f", 32), From: "+15555550199", HTTPClient: fake.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(ctx(t), msg())
	var de *delivery.Error
	if !errors.As(err, &de) || de.Status != 401 || de.Code != 20003 || de.Retry {
		t.Fatalf("err = %v, want permanent 401 / 20003", err)
	}
}

// TestSendNoAnswer: a refused connection and an expired context are
// temporary and not answered (the outcome is unknown).
func TestSendNoAnswer(t *testing.T) {
	fake := twiliotest.Start(t, sid, token)
	p, err := twilio.New(twilio.Config{AccountSID: sid, AuthToken: token, From: "+15555550199", HTTPClient: fake.Client()})
	if err != nil {
		t.Fatal(err)
	}
	fake.Respond(twiliotest.Response{Delay: time.Minute})
	short, cancel := context.WithTimeout(ctx(t), 100*time.Millisecond)
	defer cancel()
	_, err = p.Send(short, msg())
	if fault.MarkedPermanent(err) || delivery.Answered(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow answer: err = %v, want temporary, unanswered, deadline exceeded", err)
	}
	fake.Close()
	_, err = p.Send(ctx(t), msg())
	if fault.MarkedPermanent(err) || delivery.Answered(err) {
		t.Errorf("closed server: err = %v, want temporary and unanswered", err)
	}
}

// TestHTTPClientTimeout: the injected client's Timeout bounds a request
// even though twilio-go builds requests without a context.
func TestHTTPClientTimeout(t *testing.T) {
	fake := twiliotest.Start(t, sid, token)
	hc := fake.Client()
	hc.Timeout = 100 * time.Millisecond
	p, err := twilio.New(twilio.Config{AccountSID: sid, AuthToken: token, From: "+15555550199", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	fake.Respond(twiliotest.Response{Delay: time.Minute})
	if _, err := p.Send(ctx(t), msg()); fault.MarkedPermanent(err) || delivery.Answered(err) {
		t.Errorf("err = %v, want a temporary timeout", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  twilio.Config
		want []string
	}{
		{"nothing", twilio.Config{}, []string{"TWILIO_ACCOUNT_SID is not set", "TWILIO_AUTH_TOKEN is not set", "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID must be set"}},
		{"malformed", twilio.Config{AccountSID: "AB12", AuthToken: "to-ken", From: "555-0100", MessagingServiceSID: "MG1"},
			[]string{`TWILIO_ACCOUNT_SID "AB12" is not AC`, "TWILIO_AUTH_TOKEN may hold only letters and digits", `TWILIO_FROM "555-0100" is neither`, `TWILIO_MESSAGING_SERVICE_SID "MG1" is not MG`}},
		{"alphanumeric sender", twilio.Config{AccountSID: sid, AuthToken: token, From: "EmailScout"}, nil},
		{"digits only is no sender id", twilio.Config{AccountSID: sid, AuthToken: token, From: "12345"}, []string{`TWILIO_FROM "12345"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := twilio.New(tc.cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("err = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), token) {
				t.Error("the error shows the token")
			}
		})
	}
}

func TestConfigLogValueRedacts(t *testing.T) {
	var b strings.Builder
	log := slog.New(slog.NewJSONHandler(&b, nil))
	log.Info("twilio", "config", twilio.Config{AccountSID: sid, AuthToken: token, From: "+15555550199"})
	if strings.Contains(b.String(), token) || !strings.Contains(b.String(), "[redacted]") || !strings.Contains(b.String(), sid) {
		t.Errorf("log line %s", b.String())
	}
	if s := fmt.Sprintf("%v", slog.AnyValue(twilio.Config{AuthToken: token}).Resolve()); strings.Contains(s, token) {
		t.Errorf("resolved value shows the token: %s", s)
	}
}

// TestTransportRefusesOtherHosts: the fake's transport never lets a request
// leave 127.0.0.1.
func TestTransportRefusesOtherHosts(t *testing.T) {
	fake := twiliotest.Start(t, sid, token)
	req, _ := http.NewRequest(http.MethodGet, "https://example.com/", nil)
	if _, err := fake.Transport().RoundTrip(req); err == nil {
		t.Fatal("a request to example.com was let through")
	}
}
