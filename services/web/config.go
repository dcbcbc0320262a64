package web

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
)

// Secret is a value that is never logged (platform.Secret).
type Secret = platform.Secret

// Config configures the web service. Every field has an environment
// variable (docs/configuration.md, "web"); zero values take the defaults
// of the envDefault tags.
type Config struct {
	// Listen is the address of the pages and the API (host:port); empty
	// serves nothing (scout dev mounts Handler on its own server).
	Listen string `env:"SCOUT_WEB_LISTEN" envDefault:":8080" zero:"setting"`
	// Token, when set, admits a request that carries it as
	// "Authorization: Bearer <token>", or the session cookie that the
	// login form sets from it. A secret: never logged.
	Token Secret `env:"SCOUT_WEB_TOKEN"`
	// AuthHeader, when set, admits a request that carries this header with
	// a non-empty value (the user name an auth proxy such as oauth2-proxy
	// sets), if it comes from an address in TrustedProxies.
	AuthHeader string `env:"SCOUT_WEB_AUTH_HEADER"`
	// TrustedProxies are the CIDRs (e.g. 10.0.0.0/8) whose AuthHeader is
	// believed; required with AuthHeader.
	TrustedProxies []string `env:"SCOUT_WEB_TRUSTED_PROXIES" envSeparator:","`
	// PublicCustomers have a public status page, /status/<customer>,
	// without credentials and without internal detail.
	PublicCustomers []string `env:"SCOUT_WEB_PUBLIC_CUSTOMERS" envSeparator:","`
	// Recent is how many results are kept in memory per check and site
	// (about 250 bytes each): the attempts table, and the plot without
	// ClickHouse.
	Recent int `env:"SCOUT_WEB_RECENT_RESULTS" envDefault:"50"`
	// Replay is how far back the stream is read at start (results and
	// incidents); it is capped by the stream's own age.
	Replay time.Duration `env:"SCOUT_WEB_REPLAY" envDefault:"24h" zero:"setting"`
	// Flush is how often changed rows are pushed to open pages (SSE).
	Flush time.Duration `env:"SCOUT_WEB_FLUSH_INTERVAL" envDefault:"1s"`
	// ClickHouseURL is ClickHouse's HTTP interface with the database as a
	// query parameter, e.g. http://scout_reader@clickhouse:8123/?database=scout;
	// empty: the plots and past incidents come from memory only.
	ClickHouseURL string `env:"SCOUT_CLICKHOUSE_HTTP_URL"`
	// ClickHousePassword is the password of the URL's user (a secret).
	ClickHousePassword Secret `env:"SCOUT_CLICKHOUSE_HTTP_PASSWORD"`
}

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// Validate reports settings that can never work, naming their variables.
// open is true when the caller admits every request (scout dev on
// loopback): then neither a token nor an auth header is needed.
func (c Config) Validate(open bool) error {
	var errs []error
	if !open && c.Token == "" && c.AuthHeader == "" {
		errs = append(errs, errors.New("SCOUT_WEB_TOKEN or SCOUT_WEB_AUTH_HEADER is required: the pages and the API are for the platform team only"))
	}
	if c.AuthHeader != "" && len(c.TrustedProxies) == 0 {
		errs = append(errs, fmt.Errorf("SCOUT_WEB_AUTH_HEADER=%s needs SCOUT_WEB_TRUSTED_PROXIES (the auth proxy's addresses)", c.AuthHeader))
	}
	if _, err := parseCIDRs(c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	for _, cu := range c.PublicCustomers {
		if !events.ValidToken(strings.TrimSpace(cu)) {
			errs = append(errs, fmt.Errorf("SCOUT_WEB_PUBLIC_CUSTOMERS: %q is not a customer id ([a-z0-9_-]{1,63})", cu))
		}
	}
	if c.Recent < 1 || c.Recent > 10000 {
		errs = append(errs, fmt.Errorf("SCOUT_WEB_RECENT_RESULTS=%d must be 1..10000", c.Recent))
	}
	if c.Replay < 0 {
		errs = append(errs, fmt.Errorf("SCOUT_WEB_REPLAY=%v must not be negative", c.Replay))
	}
	if c.Flush <= 0 {
		errs = append(errs, fmt.Errorf("SCOUT_WEB_FLUSH_INTERVAL=%v must be positive", c.Flush))
	}
	if c.ClickHouseURL != "" {
		u, err := url.Parse(c.ClickHouseURL)
		switch {
		case err != nil: // not err itself: it quotes the URL, which may hold a password
			errs = append(errs, errors.New("SCOUT_CLICKHOUSE_HTTP_URL is not a URL (http://user@host:8123/?database=scout)"))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("SCOUT_CLICKHOUSE_HTTP_URL: scheme %q is not http or https (ClickHouse's HTTP interface, port 8123)", u.Scheme))
		default:
			if _, has := u.User.Password(); has {
				errs = append(errs, errors.New("SCOUT_CLICKHOUSE_HTTP_URL holds a password: put it in SCOUT_CLICKHOUSE_HTTP_PASSWORD (a secret)"))
			}
		}
	}
	return errors.Join(errs...)
}

// parseCIDRs parses SCOUT_WEB_TRUSTED_PROXIES; a bare address is a /32
// (or /128).
func parseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("SCOUT_WEB_TRUSTED_PROXIES: %q is not a CIDR or an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
