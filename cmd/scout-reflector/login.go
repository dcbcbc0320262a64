package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/mailauth"
	"golang.org/x/oauth2"
)

// Flows of `login --flow`.
const (
	flowDevice = "device" // device authorization grant, RFC 8628
	flowCode   = "code"   // authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636), the redirect URL pasted back
)

// Default delegated scopes of `login` when the oauth block lists none:
// Microsoft's IMAP and SMTP AUTH permissions of the signed-in user, and
// offline_access for the refresh token; Google's full mail scope.
var (
	microsoftLoginScopes = []string{"https://outlook.office365.com/IMAP.AccessAsUser.All", "https://outlook.office365.com/SMTP.Send", "offline_access"}
	googleLoginScopes    = []string{mailauth.GoogleScope}
)

const (
	microsoftAuthFmt   = "https://login.microsoftonline.com/%s/oauth2/v2.0/authorize"
	microsoftDeviceFmt = "https://login.microsoftonline.com/%s/oauth2/v2.0/devicecode"
	microsoftTokenFmt  = "https://login.microsoftonline.com/%s/oauth2/v2.0/token"
	googleAuthURL      = "https://accounts.google.com/o/oauth2/v2/auth"
	googleDeviceURL    = "https://oauth2.googleapis.com/device/code"
)

// loginOptions are the flags of `login`.
type loginOptions struct {
	which         string // imap or smtp: the oauth block
	flow          string
	authURL       string
	deviceAuthURL string
	redirectURL   string
}

// completeLogin validates the oauth block `login` works with (imap.oauth,
// or smtp.oauth with --for smtp): provider refresh_token, with client_id,
// the token endpoint (tenant or token_url) and refresh_token_file, whose
// directory must exist. The file itself need not.
func (r *resolved) completeLogin(e env, src source) error {
	section := r.login.which
	var cfg *mailauth.Config
	switch section {
	case "imap":
		cfg = r.IMAP.OAuth
	case "smtp":
		cfg = r.SMTP.OAuth
	default:
		return fmt.Errorf("--for: %q is not imap or smtp", section)
	}
	if cfg == nil {
		return fmt.Errorf("%s: login needs an oauth block with provider: refresh_token here (%s.oauth)", src.where(section), section)
	}
	if cfg.Provider != mailauth.ProviderRefreshToken {
		return fmt.Errorf("%s: %q: login writes the refresh token file of provider refresh_token; provider %s needs no login",
			src.where(section+".oauth.provider"), cfg.Provider, cfg.Provider)
	}
	envSecret := envIMAPClientSecret
	if section == "smtp" {
		envSecret = envSMTPClientSecret
	}
	if _, errs := r.completeOAuth(e, src, section, cfg, "", envSecret); len(errs) > 0 {
		return errors.Join(errs...)
	}
	if fi, err := os.Stat(filepath.Dir(cfg.RefreshTokenFile)); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s: the directory of %s does not exist", src.where(section+".oauth.refresh_token_file"), cfg.RefreshTokenFile)
	}
	switch r.login.flow {
	case flowDevice, flowCode:
	default:
		return fmt.Errorf("--flow: %q is not device or code", r.login.flow)
	}
	r.loginOAuth = cfg
	return nil
}

// endpoint returns the authorization, device authorization and token
// endpoints of cfg: Microsoft's by tenant, Google's when token_url is
// Google's, else the flags (--auth-url, --device-auth-url) and token_url.
func (o loginOptions) endpoint(cfg *mailauth.Config) (oauth2.Endpoint, error) {
	ep := oauth2.Endpoint{TokenURL: cfg.TokenURL, AuthURL: o.authURL, DeviceAuthURL: o.deviceAuthURL, AuthStyle: oauth2.AuthStyleInParams}
	switch {
	case cfg.TokenURL == "" && cfg.Tenant != "":
		t := url.PathEscape(cfg.Tenant)
		ep.TokenURL = fmt.Sprintf(microsoftTokenFmt, t)
		if ep.AuthURL == "" {
			ep.AuthURL = fmt.Sprintf(microsoftAuthFmt, t)
		}
		if ep.DeviceAuthURL == "" {
			ep.DeviceAuthURL = fmt.Sprintf(microsoftDeviceFmt, t)
		}
	case cfg.TokenURL == mailauth.GoogleTokenURL:
		if ep.AuthURL == "" {
			ep.AuthURL = googleAuthURL
		}
		if ep.DeviceAuthURL == "" {
			ep.DeviceAuthURL = googleDeviceURL
		}
	}
	switch {
	case o.flow == flowDevice && ep.DeviceAuthURL == "":
		return ep, errors.New("--device-auth-url: the device authorization endpoint is not known for this token_url: give it")
	case o.flow == flowCode && ep.AuthURL == "":
		return ep, errors.New("--auth-url: the authorization endpoint is not known for this token_url: give it")
	}
	return ep, nil
}

// runLogin is the one-time delegated login of provider refresh_token:
// the mailbox's user signs in (device code, RFC 8628, or a browser with
// the authorization code and PKCE, RFC 7636, whose redirect address is
// pasted back) and the refresh token is written to refresh_token_file as
// {"refresh_token": "..."}, mode 0600, replacing the file atomically. It
// prints the instructions, then the file, the access token's lifetime and
// the granted scopes; never a token.
func runLogin(ctx context.Context, cfg *resolved, e env) error {
	oc := cfg.loginOAuth
	ep, err := cfg.login.endpoint(oc)
	if err != nil {
		return configError{err}
	}
	secret := string(oc.ClientSecret)
	if oc.ClientSecretFile != "" {
		b, err := os.ReadFile(oc.ClientSecretFile)
		if err != nil {
			return configErrorf("client_secret_file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	scopes := oc.Scopes
	if len(scopes) == 0 {
		scopes = microsoftLoginScopes
		if oc.TokenURL == mailauth.GoogleTokenURL {
			scopes = googleLoginScopes
		}
	}
	conf := &oauth2.Config{ClientID: oc.ClientID, ClientSecret: secret, Endpoint: ep, Scopes: scopes, RedirectURL: cfg.login.redirectURL}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, tokenHTTPClient())
	out := e.stdout
	var tok *oauth2.Token
	if cfg.login.flow == flowDevice {
		tok, err = deviceLogin(ctx, conf, out)
	} else {
		tok, err = codeLogin(ctx, conf, e.stdin, out, oc.TokenURL == mailauth.GoogleTokenURL)
	}
	if err != nil {
		return fmt.Errorf("login: %w", mailauthError(err))
	}
	if tok.RefreshToken == "" {
		return errors.New("login: the token endpoint gave no refresh token: ask for the scope offline_access (Microsoft) or consent again (Google: prompt=consent)")
	}
	if err := writeSecretJSON(oc.RefreshTokenFile, map[string]string{"refresh_token": tok.RefreshToken}); err != nil {
		return configErrorf("refresh_token_file: %w", err)
	}
	fmt.Fprintf(out, "refresh token written to %s (mode 0600)\n", oc.RefreshTokenFile)
	if !tok.Expiry.IsZero() {
		fmt.Fprintf(out, "access token: valid for %s\n", time.Until(tok.Expiry).Round(time.Second))
	}
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		fmt.Fprintf(out, "granted scopes: %s\n", s)
	}
	fmt.Fprintln(out, "next: scout-reflector check-login --config <this configuration>")
	return nil
}

// deviceLogin is the device authorization grant (RFC 8628): it shows the
// verification address and the user code, then polls the token endpoint
// until the user signed in, refused, or the code expired.
func deviceLogin(ctx context.Context, conf *oauth2.Config, out io.Writer) (*oauth2.Token, error) {
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Sign in as the probe mailbox: open %s and enter the code %s", da.VerificationURI, da.UserCode)
	if !da.Expiry.IsZero() {
		fmt.Fprintf(out, " (within %s)", time.Until(da.Expiry).Round(time.Minute))
	}
	fmt.Fprintln(out)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "or open %s\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(out, "waiting for the sign-in...")
	return conf.DeviceAccessToken(ctx, da)
}

// codeLogin is the authorization code grant with PKCE (RFC 7636, S256):
// it shows the authorization address, reads the address the browser was
// redirected to (pasted on stdin), checks its state and exchanges its code
// with the verifier.
func codeLogin(ctx context.Context, conf *oauth2.Config, in io.Reader, out io.Writer, google bool) (*oauth2.Token, error) {
	verifier := oauth2.GenerateVerifier()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	state := base64.RawURLEncoding.EncodeToString(b)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if google {
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	fmt.Fprintf(out, "Sign in as the probe mailbox: open this address in a browser:\n\n  %s\n\n", conf.AuthCodeURL(state, opts...))
	fmt.Fprintf(out, "The browser then goes to %s?code=... (the page may fail to load: that is fine).\nPaste that whole address here and press Enter:\n", conf.RedirectURL)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && strings.TrimSpace(line) == "" {
		return nil, errors.New("no redirect address on stdin")
	}
	u, err := url.Parse(strings.TrimSpace(line))
	if err != nil {
		return nil, errors.New("the pasted text is not an address")
	}
	q := u.Query()
	switch {
	case q.Get("error") != "":
		return nil, fmt.Errorf("the sign-in failed: %s: %s", q.Get("error"), q.Get("error_description"))
	case q.Get("state") != state:
		return nil, errors.New("the pasted address is not the answer to this login (state differs): start again")
	case q.Get("code") == "":
		return nil, errors.New("the pasted address has no code parameter")
	}
	return conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
}

// mailauthError names the provider's error of an x/oauth2 failure
// (RFC 6749 section 5.2 error and error_description, never the body).
func mailauthError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if msg == "" && re.Response != nil {
			msg = re.Response.Status
		}
		if re.ErrorDescription != "" {
			msg += ": " + strings.Join(strings.Fields(re.ErrorDescription), " ")
		}
		return fmt.Errorf("token endpoint: %s", msg)
	}
	return err
}

// writeSecretJSON replaces path atomically with v as JSON, mode 0600: a
// temporary file in the same directory, synced, renamed over it.
func writeSecretJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
