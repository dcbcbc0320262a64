package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/services/notifier/delivery"
	"github.com/emailscout/emailscout/services/notifier/internal/webhook"
)

type received struct {
	auth, key, ctype string
	payload          webhook.Payload
}

func server(t *testing.T, status int, header map[string]string) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p webhook.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("body: %v", err)
		}
		mu.Lock()
		got = append(got, received{r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type"), p})
		mu.Unlock()
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("answer body"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

func msg() delivery.Message {
	return delivery.Message{To: "+15555550100", Contact: "ACME on-call", Text: "DOWN ACME", IncidentID: "inc1",
		CheckID: "acme-roundtrip", CheckName: "ACME", Customer: "acme", Transition: "open", Severity: "critical", Key: "inc1:open:15555550100"}
}

func TestSend(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		header    map[string]string
		wantErr   bool
		temporary bool
		retry     time.Duration
		id        string
	}{
		{"200 with request id", 200, map[string]string{"X-Request-Id": "req-1"}, false, false, 0, "req-1"},
		{"204", 204, nil, false, false, 0, ""},
		{"429 with retry-after", 429, map[string]string{"Retry-After": "30"}, true, true, 30 * time.Second, ""},
		{"502", 502, nil, true, true, 0, ""},
		{"404", 404, nil, true, false, 0, ""},
		{"401", 401, nil, true, false, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := server(t, tc.status, tc.header)
			p, err := webhook.New(webhook.Config{URL: srv.URL + "/hook/SECRET", Token: "tok", HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			id, err := p.Send(context.Background(), msg())
			if (err != nil) != tc.wantErr || id != tc.id {
				t.Fatalf("Send = %q, %v", id, err)
			}
			if err != nil {
				var de *delivery.Error
				if !errors.As(err, &de) || de.Retry != tc.temporary || de.Status != tc.status || de.RetryAfter != tc.retry {
					t.Errorf("error %+v", err)
				}
			}
			r := got()
			if len(r) != 1 {
				t.Fatalf("%d requests", len(r))
			}
			if r[0].auth != "Bearer tok" || r[0].key != "inc1:open:15555550100" || r[0].ctype != "application/json" {
				t.Errorf("headers %+v", r[0])
			}
			if want := (webhook.Payload{V: 1, Text: "DOWN ACME", To: "+15555550100", Contact: "ACME on-call", IncidentID: "inc1",
				CheckID: "acme-roundtrip", CheckName: "ACME", Customer: "acme", Transition: "open", Severity: "critical"}); r[0].payload != want {
				t.Errorf("payload %+v", r[0].payload)
			}
		})
	}
}

// TestNetworkErrorHidesURL: an unreachable endpoint is temporary, and the
// error does not repeat the URL (chat webhook URLs hold secrets).
func TestNetworkErrorHidesURL(t *testing.T) {
	srv, _ := server(t, 200, nil)
	url := srv.URL + "/hook/SECRET"
	srv.Close()
	p, err := webhook.New(webhook.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(context.Background(), msg())
	if fault.MarkedPermanent(err) || delivery.Answered(err) || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []string{"", "hooks.example/x", "ftp://127.0.0.1/x", "http://"} {
		if _, err := webhook.New(webhook.Config{URL: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "/x") {
			t.Errorf("error repeats the URL: %v", err)
		}
	}
}
