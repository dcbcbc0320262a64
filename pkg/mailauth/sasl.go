package mailauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// SASL mechanism names.
const (
	MechXOAuth2     = "XOAUTH2"
	MechOAuthBearer = sasl.OAuthBearer // "OAUTHBEARER", RFC 7628
)

// ChallengeError is what the server said, in its SASL challenge, about a
// bearer token it refused: the JSON of RFC 7628 section 3.2.2 that both
// OAUTHBEARER and XOAUTH2 servers send, e.g. Google's {"status":"400",
// "schemes":"Bearer","scope":"https://mail.google.com/"}.
type ChallengeError struct {
	Mechanism string // MechXOAuth2 or MechOAuthBearer
	Status    string // the error status, e.g. "401" or "invalid_token"
	Schemes   string
	Scope     string
}

func (e *ChallengeError) Error() string {
	s := fmt.Sprintf("%s refused: status %q", e.Mechanism, e.Status)
	if e.Schemes != "" {
		s += fmt.Sprintf(", schemes %q", e.Schemes)
	}
	if e.Scope != "" {
		s += fmt.Sprintf(", scope %q", e.Scope)
	}
	return s
}

// Client is a SASL client that carries a bearer token. After a failed
// exchange, Failure returns the server's ChallengeError (nil when the
// server sent none): the caller adds it to the server's final refusal.
type Client interface {
	sasl.Client
	Failure() error
}

// NewClient returns the SASL client of mechanism (xoauth2 or oauthbearer,
// either case) that logs in as user with the access token. It fails when
// user or token contain the ^A separator (0x01) or mechanism is unknown.
func NewClient(mechanism, user, token string) (Client, error) {
	if strings.ContainsRune(user, '\x01') || strings.ContainsRune(token, '\x01') {
		return nil, errors.New("user name or token contains ^A")
	}
	switch strings.ToLower(mechanism) {
	case XOAuth2, "":
		return &xoauth2Client{user: user, token: token}, nil
	case OAuthBearer:
		return &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token})}, nil
	}
	return nil, fmt.Errorf("SASL mechanism %q is not xoauth2 or oauthbearer", mechanism)
}

// xoauth2Client is the XOAUTH2 mechanism as Google and Microsoft document
// it: the initial response is "user=" user ^A "auth=Bearer " token ^A ^A.
// A refusal comes as a challenge holding JSON; the client answers it with
// an empty response and the server then fails the exchange.
type xoauth2Client struct {
	user, token string
	failure     error
	challenged  bool
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return MechXOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if c.challenged {
		return nil, errors.New("XOAUTH2: unexpected second challenge")
	}
	c.challenged = true
	c.failure = challengeError(MechXOAuth2, challenge)
	return []byte{}, nil
}

func (c *xoauth2Client) Failure() error { return c.failure }

// String names the mechanism and user, not the token.
func (c *xoauth2Client) String() string { return MechXOAuth2 + " client for " + c.user }

// oauthBearerClient is go-sasl's OAUTHBEARER client, except that it
// answers an error challenge with the ^A dummy response that RFC 7628
// section 3.2.3 asks for (go-sasl returns an error instead, which leaves
// the exchange unfinished), so that the server's final refusal arrives.
type oauthBearerClient struct {
	sasl.Client
	failure error
}

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if c.failure != nil {
		return nil, errors.New("OAUTHBEARER: unexpected second challenge")
	}
	_, err := c.Client.Next(challenge)
	var oe *sasl.OAuthBearerError
	if errors.As(err, &oe) {
		c.failure = &ChallengeError{Mechanism: MechOAuthBearer, Status: oe.Status, Schemes: oe.Schemes, Scope: oe.Scope}
	} else {
		c.failure = challengeError(MechOAuthBearer, challenge)
	}
	return []byte{0x01}, nil
}

func (c *oauthBearerClient) Failure() error { return c.failure }

// String names the mechanism, not the token.
func (c *oauthBearerClient) String() string { return MechOAuthBearer + " client" }

// challengeError decodes the JSON of an error challenge; one that is not
// JSON is quoted (at most 200 bytes).
func challengeError(mech string, challenge []byte) error {
	var v struct {
		Status  string `json:"status"`
		Schemes string `json:"schemes"`
		Scope   string `json:"scope"`
	}
	if err := json.Unmarshal(challenge, &v); err != nil {
		return fmt.Errorf("%s refused with challenge %q", mech, oneLine(string(challenge), 200))
	}
	return &ChallengeError{Mechanism: mech, Status: v.Status, Schemes: v.Schemes, Scope: v.Scope}
}

// Login is one OAuth login: a user, a mechanism and where its tokens come
// from. It implements the Authenticator of pkg/imapwatch and pkg/submit.
type Login struct {
	Username  string      // the mailbox, e.g. scout@example.com
	Mechanism string      // xoauth2 (default) or oauthbearer
	Tokens    TokenSource // usually a *Cache
}

// New returns the Login of cfg for the mailbox username (NewTokenSource,
// then Mechanism from cfg).
func New(cfg Config, username string, opts Options) (*Login, error) {
	src, err := NewTokenSource(cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Login{Username: username, Mechanism: cfg.mechanism(), Tokens: src}, nil
}

// SASL fetches a token (from the cache: a valid one) and returns a SASL
// client (a Client: after a refusal, its Failure names the server's
// challenge) that logs in with it, and when the token expires (zero: not
// known). Token errors are returned as the TokenSource marked them.
func (l *Login) SASL(ctx context.Context) (sasl.Client, time.Time, error) {
	t, err := l.Tokens.Token(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	c, err := NewClient(l.Mechanism, l.Username, t.AccessToken)
	if err != nil {
		return nil, time.Time{}, err
	}
	return c, t.Expiry, nil
}

// LogValue logs the user and mechanism.
func (l *Login) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", l.Username), slog.String("mechanism", l.Mechanism))
}
