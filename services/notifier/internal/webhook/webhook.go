// Package webhook delivers notifications as a JSON POST, for chat tools and
// on-call systems. One request per contact and incident transition:
//
//	POST <url>
//	Content-Type: application/json
//	Idempotency-Key: <incident>:<transition>:<number>
//	Authorization: Bearer <token>            (when a token is configured)
//
//	{"v":1,"text":"DOWN ACME ...","to":"+15555550100","contact":"ACME on-call",
//	 "incident_id":"...","check_id":"acme-roundtrip","check_name":"ACME mail round trip",
//	 "customer":"acme","transition":"open","severity":"critical"}
//
// Any 2xx is success (the id is the answer's X-Request-Id, if any); 408,
// 425, 429, 5xx and network errors are temporary; other statuses permanent.
// The same Idempotency-Key is sent on every retry so the receiver can drop
// duplicates.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/emailscout/emailscout/services/notifier/delivery"
)

// Name is the provider name used in metrics and events.
const Name = "webhook"

// Config is a webhook endpoint.
type Config struct {
	// URL is the absolute http or https URL to POST to. It may hold a
	// secret (chat webhooks often do): LogValue shows only its host.
	URL string
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient sends the requests; nil means a client with a 10s timeout.
	HTTPClient *http.Client
}

// LogValue implements slog.LogValuer: neither the URL's path and query nor
// the token reach a log.
func (c Config) LogValue() slog.Value {
	host := ""
	if u, err := url.Parse(c.URL); err == nil {
		host = u.Host
	}
	return slog.GroupValue(slog.String("host", host), slog.Bool("token", c.Token != ""))
}

// Payload is the JSON body of a webhook request.
type Payload struct {
	V          int    `json:"v"`
	Text       string `json:"text"`
	To         string `json:"to"`
	Contact    string `json:"contact"`
	IncidentID string `json:"incident_id"`
	CheckID    string `json:"check_id"`
	CheckName  string `json:"check_name"`
	Customer   string `json:"customer"`
	Transition string `json:"transition"`
	Severity   string `json:"severity,omitempty"`
}

// Provider posts notifications to one URL. It is safe for concurrent use.
type Provider struct {
	cfg Config
}

// New returns a Provider for cfg; the error is Validate's.
func New(cfg Config) (*Provider, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	p := &Provider{cfg: cfg}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements the notifier's Provider: "webhook".
func (p *Provider) Name() string { return Name }

// Validate checks that the URL is an absolute http or https URL.
func (p *Provider) Validate() error {
	if p.cfg.URL == "" {
		return errors.New("SCOUT_NOTIFIER_WEBHOOK_URL is not set")
	}
	u, err := url.Parse(p.cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold a secret: do not repeat it.
		return errors.New("SCOUT_NOTIFIER_WEBHOOK_URL is not an absolute http:// or https:// URL")
	}
	return nil
}

// Send posts m. Errors are *delivery.Error.
func (p *Provider) Send(ctx context.Context, m delivery.Message) (string, error) {
	body, err := json.Marshal(Payload{
		V: 1, Text: m.Text, To: m.To, Contact: m.Contact, IncidentID: m.IncidentID, CheckID: m.CheckID,
		CheckName: m.CheckName, Customer: m.Customer, Transition: m.Transition, Severity: m.Severity,
	})
	if err != nil {
		return "", &delivery.Error{Provider: Name, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return "", &delivery.Error{Provider: Name, Err: errors.New("bad webhook URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "email-scout-notifier")
	if m.Key != "" {
		req.Header.Set("Idempotency-Key", m.Key)
	}
	if p.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	}
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", &delivery.Error{Provider: Name, Retry: true, Err: fmt.Errorf("post: %w", err)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.Header.Get("X-Request-Id"), nil
	}
	e := delivery.Errorf(Name, resp.StatusCode, "%s: %s", resp.Status, bytes.TrimSpace(snippet))
	e.RetryAfter = delivery.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return "", e
}
