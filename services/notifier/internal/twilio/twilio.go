// Package twilio sends SMS through Twilio's Programmable Messaging API
// (POST /2010-04-01/Accounts/<sid>/Messages.json) with twilio-go.
//
// It imports only twilio-go/client and twilio-go/rest/api/v2010: the root
// package of twilio-go compiles every Twilio API and takes minutes to build.
//
// twilio-go ignores contexts and has no base-URL option. Send therefore
// builds a small client per message whose transport carries the context
// (cancellation and deadline reach the HTTP request) and notes the HTTP
// status and Retry-After of the answer, which twilio-go's errors drop; the
// transport underneath is the injected http.Client's, so tests can send the
// requests to a local fake (internal/twiliotest).
package twilio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/emailscout/emailscout/services/notifier/delivery"
	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// Name is the provider name used in metrics and events.
const Name = "twilio"

// Config is a Twilio account and sender.
type Config struct {
	// AccountSID is "AC" and 32 hex digits (TWILIO_ACCOUNT_SID).
	AccountSID string
	// AuthToken is the account's auth token (TWILIO_AUTH_TOKEN): a secret,
	// redacted by LogValue.
	AuthToken string
	// From is the sender: an E.164 number or an alphanumeric sender id of
	// up to 11 characters (TWILIO_FROM). Optional with MessagingServiceSID.
	From string
	// MessagingServiceSID is "MG" and 32 hex digits
	// (TWILIO_MESSAGING_SERVICE_SID); Twilio then picks the sender.
	MessagingServiceSID string
	// HTTPClient sends the requests; nil means a client with a 10s timeout.
	// Redirects are never followed.
	HTTPClient *http.Client
}

// LogValue implements slog.LogValuer: the auth token never reaches a log.
func (c Config) LogValue() slog.Value {
	token := ""
	if c.AuthToken != "" {
		token = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("account_sid", c.AccountSID),
		slog.String("auth_token", token),
		slog.String("from", c.From),
		slog.String("messaging_service_sid", c.MessagingServiceSID),
	)
}

// Provider sends SMS through one Twilio account. It is safe for concurrent
// use.
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

var (
	accountSID   = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSID   = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	alnum        = regexp.MustCompile(`^[A-Za-z0-9]+$`)
	e164         = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	alphaSender  = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	hasLetter    = regexp.MustCompile(`[A-Za-z]`)
	errNoAccount = errors.New("TWILIO_ACCOUNT_SID is not set")
)

// Name implements the notifier's Provider: "twilio".
func (p *Provider) Name() string { return Name }

// Validate reports every problem of the configuration, naming the
// environment variable each comes from.
func (p *Provider) Validate() error {
	c := p.cfg
	var errs []error
	switch {
	case c.AccountSID == "":
		errs = append(errs, errNoAccount)
	case !accountSID.MatchString(c.AccountSID):
		errs = append(errs, fmt.Errorf("TWILIO_ACCOUNT_SID %q is not AC followed by 32 hex digits", c.AccountSID))
	}
	switch {
	case c.AuthToken == "":
		errs = append(errs, errors.New("TWILIO_AUTH_TOKEN is not set"))
	case !alnum.MatchString(c.AuthToken):
		errs = append(errs, errors.New("TWILIO_AUTH_TOKEN may hold only letters and digits"))
	}
	switch {
	case c.From == "" && c.MessagingServiceSID == "":
		errs = append(errs, errors.New("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID must be set"))
	case c.From != "" && !e164.MatchString(c.From) && !(alphaSender.MatchString(c.From) && hasLetter.MatchString(c.From)):
		errs = append(errs, fmt.Errorf("TWILIO_FROM %q is neither an E.164 number such as +15555550100 nor an alphanumeric sender id of up to 11 characters", c.From))
	}
	if c.MessagingServiceSID != "" && !serviceSID.MatchString(c.MessagingServiceSID) {
		errs = append(errs, fmt.Errorf("TWILIO_MESSAGING_SERVICE_SID %q is not MG followed by 32 hex digits", c.MessagingServiceSID))
	}
	return errors.Join(errs...)
}

// Send creates one message to m.To with m.Text and returns its message SID
// ("SM..."). Errors are *delivery.Error: temporary for 429, 5xx and no
// answer; permanent for other 4xx (21211 invalid number, 21608 unverified
// number on a trial account, 21610 the recipient replied STOP, ...).
//
// An answer 2xx whose body cannot be read still means Twilio accepted the
// message: Send then returns an empty SID and no error, so that the message
// is not sent twice.
func (p *Provider) Send(ctx context.Context, m delivery.Message) (string, error) {
	base := p.cfg.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	if t := p.cfg.HTTPClient.Timeout; t > 0 {
		// The client's timeout travels in the context: the transport
		// below replaces the request's context.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	tr := &observingTransport{ctx: ctx, base: base}
	c := &client.Client{
		Credentials: client.NewCredentials(p.cfg.AccountSID, p.cfg.AuthToken),
		HTTPClient: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	c.SetAccountSid(p.cfg.AccountSID)
	// A RequestHandler built by hand: NewRequestHandler reads TWILIO_EDGE
	// and TWILIO_REGION from the environment.
	api := openapi.NewApiService(&client.RequestHandler{Client: c})

	params := &openapi.CreateMessageParams{}
	params.SetTo(m.To)
	params.SetBody(m.Text)
	if p.cfg.From != "" {
		params.SetFrom(p.cfg.From)
	}
	if p.cfg.MessagingServiceSID != "" {
		params.SetMessagingServiceSid(p.cfg.MessagingServiceSID)
	}
	msg, err := api.CreateMessage(params)
	if err == nil {
		if msg.Sid == nil {
			return "", nil
		}
		return *msg.Sid, nil
	}
	status, retryAfter := tr.answer()
	if status >= 200 && status < 300 {
		return "", nil // accepted; only the body was unreadable
	}
	e := &delivery.Error{Provider: Name, Status: status, Err: err,
		RetryAfter: delivery.ParseRetryAfter(retryAfter, time.Now())}
	var rest *client.TwilioRestError
	if errors.As(err, &rest) {
		if e.Status == 0 {
			e.Status = rest.Status
		}
		e.Code = rest.Code
		e.Err = fmt.Errorf("%d %s", rest.Code, rest.Message)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && e.Status == 0 {
		e.Err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	e.Retry = e.Status == 0 || delivery.TemporaryStatus(e.Status) || e.Code == 20429
	return "", e
}

// observingTransport puts ctx on the request (twilio-go builds requests
// without one) and notes the status and Retry-After of the answer. One
// instance serves one Send.
type observingTransport struct {
	ctx  context.Context
	base http.RoundTripper

	status     int
	retryAfter string
}

func (t *observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req.WithContext(t.ctx))
	if err == nil {
		t.status = resp.StatusCode
		t.retryAfter = resp.Header.Get("Retry-After")
	}
	return resp, err
}

func (t *observingTransport) answer() (int, string) { return t.status, t.retryAfter }
