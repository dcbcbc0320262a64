package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/imapprobe"
	"github.com/emailscout/emailscout/pkg/probe/smtpprobe"
	"github.com/emailscout/emailscout/pkg/submit"
)

// runCheckLogin logs in as the configuration says, sending and deleting
// nothing: the IMAP mailbox (greeting, capabilities, TLS, LOGIN or
// AUTHENTICATE, EXAMINE of the folder) when imap.addr is set, and the SMTP
// output (greeting, EHLO, STARTTLS, AUTH) when output is smtp. It prints
// what it sees — never a password or token, only an OAuth token's
// lifetime, scopes and, for a JWT, its audience, tenant and roles — and,
// for a failure, the problem and a hint. It returns nil when every login
// worked, else exitError 1.
func runCheckLogin(ctx context.Context, cfg *resolved, e env) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%s:\t%s\n", k, fmt.Sprintf(format, a...)) }
	ok := true
	if cfg.watchesIMAP() {
		ok = checkIMAPLogin(ctx, cfg, line) && ok
	}
	if cfg.Output == outputSMTP {
		ok = checkSMTPLogin(ctx, cfg, line) && ok
	} else {
		line("output", "%s (no login to check)", cfg.Output)
	}
	w.Flush()
	if !ok {
		return exitError{code: exitIgnored}
	}
	fmt.Fprintln(e.stdout, "all logins work")
	return nil
}

type printer func(k, format string, a ...any)

func checkIMAPLogin(ctx context.Context, cfg *resolved, line printer) bool {
	m := cfg.IMAP
	t, err := target(m.Addr, m.TLS, cfg)
	if err != nil {
		line("imap", "%v", err)
		return false
	}
	t.Username, t.Mailbox = m.Username, m.Folder
	line("imap", "%s (tls %s), user %s, folder %s", m.Addr, m.TLS, m.Username, m.Folder)
	if cfg.imapLogin != nil {
		line("imap login", "AUTHENTICATE %s (OAuth, provider %s)", strings.ToUpper(cfg.imapLogin.Mechanism), m.OAuth.Provider)
		if !tokenInfo(ctx, cfg.imapLogin, m.OAuth, "IMAP", "imap token", line) {
			return false
		}
		t.Auth = cfg.imapLogin
	} else {
		line("imap login", "LOGIN with a password")
		t.Password = cfg.imapPassword
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := imapprobe.Probe(pctx, t)
	seen(res, "imap", line)
	if res.Mailbox != nil {
		line("imap folder", "%s: %d messages", res.Mailbox.Name, res.Mailbox.Messages)
	}
	if res.Class != "" {
		line("imap problem", "%s (class %s, phase %s)", res.Err, res.Class, res.Phase)
		line("imap hint", "%s", hint(res, m.OAuth, "IMAP", m.Username))
		return false
	}
	line("imap result", "logged in and examined %s", m.Folder)
	return true
}

func checkSMTPLogin(ctx context.Context, cfg *resolved, line printer) bool {
	s := cfg.SMTP
	mode := s.TLS
	if mode == submit.TLSOpportunistic {
		mode = probe.TLSStartTLS // STARTTLS when offered: required here, to see it
	}
	t, err := target(s.Addr, mode, cfg)
	if err != nil {
		line("smtp", "%v", err)
		return false
	}
	t.HelloName = s.Helo
	if t.HelloName == "" {
		t.HelloName, _ = os.Hostname()
	}
	line("smtp", "%s (tls %s), envelope from %s", s.Addr, s.TLS, cfg.EnvelopeFrom)
	switch {
	case cfg.smtpLogin != nil:
		oauth := s.OAuth
		if oauth == nil {
			oauth = cfg.IMAP.OAuth // shared with the IMAP login
		}
		line("smtp login", "AUTH %s as %s (OAuth, provider %s)", strings.ToUpper(cfg.smtpLogin.Mechanism), s.Username, oauth.Provider)
		if cfg.smtpLogin != cfg.imapLogin && !tokenInfo(ctx, cfg.smtpLogin, oauth, "SMTP", "smtp token", line) {
			return false
		}
		t.Username, t.Auth = s.Username, cfg.smtpLogin
	case s.Username != "":
		line("smtp login", "AUTH PLAIN or LOGIN as %s with a password", s.Username)
		t.Username, t.Password = s.Username, cfg.smtpPassword
	default:
		line("smtp login", "none")
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := smtpprobe.Probe(pctx, t)
	seen(res, "smtp", line)
	if res.Class != "" {
		line("smtp problem", "%s (class %s, phase %s)", res.Err, res.Class, res.Phase)
		line("smtp hint", "%s", hint(res, s.OAuth, "SMTP", t.Username))
		return false
	}
	if t.Username != "" {
		line("smtp result", "greeted, EHLO, TLS and AUTH accepted (nothing sent)")
	} else {
		line("smtp result", "greeted, EHLO and TLS (no AUTH configured; nothing sent)")
	}
	return true
}

// target is the probe.Target of host:port in a TLS mode.
func target(addr, tlsMode string, cfg *resolved) (probe.Target, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return probe.Target{}, fmt.Errorf("%q is not host:port", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return probe.Target{}, fmt.Errorf("%q: port %q is not a number", addr, port)
	}
	return probe.Target{Host: host, Port: p, TLS: tlsMode, RootCAs: cfg.rootCAs}, nil
}

// seen prints what the server showed: its greeting, capabilities and TLS.
func seen(res probe.Result, proto string, line printer) {
	if len(res.Replies) > 0 {
		line(proto+" greeting", "%s", strings.ReplaceAll(res.Replies[0], "\n", " / "))
	}
	if len(res.Capabilities) > 0 {
		line(proto+" capabilities", "%s", strings.Join(res.Capabilities, ", "))
	}
	if res.TLS != nil {
		line(proto+" tls", "%s, certificate %s, expires %s (%d days), verified %t", res.TLS.Version, res.TLS.PeerSubject,
			res.TLS.PeerNotAfter.UTC().Format(time.DateOnly), res.TLS.DaysLeft, res.TLS.Verified)
	}
	if res.Timings.AuthMS > 0 && res.Class == "" {
		line(proto+" auth", "accepted in %.0f ms", res.Timings.AuthMS)
	}
}

// tokenInfo fetches the login's token (it stays in the cache for the
// login that follows) and prints its lifetime, its scopes and, when the
// token is a JWT (Microsoft's are), its audience, tenant and roles or
// scopes; never the token. A failure prints the provider's error and a
// hint.
func tokenInfo(ctx context.Context, login *mailauth.Login, cfg *mailauth.Config, proto, key string, line printer) bool {
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tok, err := login.Tokens.Token(tctx)
	if err != nil {
		line(key, "none: %v", err)
		line(key+" hint", "%s", tokenHint(err.Error(), cfg, proto))
		return false
	}
	if tok.Expiry.IsZero() {
		line(key, "issued, lifetime not given")
	} else {
		line(key, "issued, valid for %s (until %s)", time.Until(tok.Expiry).Round(time.Second), tok.Expiry.UTC().Format(time.RFC3339))
	}
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		line(key+" scopes", "%s", s)
	}
	claims := jwtClaims(tok.AccessToken)
	if claims == nil {
		return true
	}
	for _, c := range []string{"aud", "tid", "roles", "scp"} {
		if v, ok := claims[c]; ok {
			line(key+" "+c, "%s", claimText(v))
		}
	}
	if cfg.Provider == mailauth.ProviderMicrosoft {
		role := map[string]string{"IMAP": "IMAP.AccessAsApp", "SMTP": "SMTP.SendAsApp"}[proto]
		if roles, _ := claims["roles"].([]any); !slices.Contains(roles, any(role)) {
			line(key+" warning", "the token has no role %s: add the application permission %s of Office 365 Exchange Online to the app registration and grant admin consent", role, role)
		}
	}
	return true
}

// jwtClaims decodes the payload of a JWT (RFC 7519) without verifying it,
// for display; nil when the token is not one.
func jwtClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(b, &claims) != nil {
		return nil
	}
	return claims
}

func claimText(v any) string {
	if list, ok := v.([]any); ok {
		var s []string
		for _, x := range list {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, " ")
	}
	return fmt.Sprint(v)
}

// tokenHint explains a token endpoint's refusal by the provider's error
// code (Microsoft's AADSTS numbers, RFC 6749 section 5.2 codes).
func tokenHint(msg string, cfg *mailauth.Config, proto string) string {
	switch {
	case strings.Contains(msg, "AADSTS7000215"):
		return "the client secret is wrong: use the secret's Value (not its Secret ID) from the app registration's Certificates & secrets, or add a new secret"
	case strings.Contains(msg, "AADSTS7000222"):
		return "the client secret expired: add a new one in the app registration's Certificates & secrets and update client_secret_file"
	case strings.Contains(msg, "AADSTS700016"):
		return "no application with this client_id in this tenant: check client_id (the Application (client) ID) and tenant (wrong tenant?)"
	case strings.Contains(msg, "AADSTS90002"), strings.Contains(msg, "AADSTS900023"):
		return "tenant not found: set tenant to the Directory (tenant) ID or a verified domain such as contoso.onmicrosoft.com"
	case strings.Contains(msg, "AADSTS70011"), strings.Contains(msg, "invalid_scope"):
		return "invalid scope: app-only tokens need https://outlook.office365.com/.default (leave scopes unset)"
	case strings.Contains(msg, "unauthorized_client") && cfg.Provider == mailauth.ProviderGoogle:
		return "domain-wide delegation is missing: in the Google Admin console (Security > Access and data control > API controls > Manage Domain Wide Delegation) add the service account's client ID with the scope https://mail.google.com/"
	case strings.Contains(msg, "invalid_grant") && cfg.Provider == mailauth.ProviderRefreshToken:
		return "the refresh token was revoked or has expired: run scout-reflector login again"
	case strings.Contains(msg, "invalid_grant") && cfg.Provider == mailauth.ProviderGoogle:
		return "the subject is not a mailbox of the domain, the key was deleted, or this host's clock is off"
	case strings.Contains(msg, "invalid_client"):
		return "the token endpoint does not know this client or its secret: check client_id and the secret"
	case strings.Contains(msg, "token endpoint: HTTP 5"), strings.Contains(msg, "dial tcp"), strings.Contains(msg, "timeout"):
		return "the token endpoint could not be reached or failed: try again; check the proxy and firewall (https to " + tokenHost(cfg) + ")"
	}
	return "see the provider's error above"
}

func tokenHost(cfg *mailauth.Config) string {
	switch {
	case cfg.TokenURL != "":
		return cfg.TokenURL
	case cfg.Provider == mailauth.ProviderGoogle:
		return mailauth.GoogleTokenURL
	}
	return "login.microsoftonline.com"
}

// hint explains a failed login or folder by its class and phase.
func hint(res probe.Result, cfg *mailauth.Config, proto, user string) string {
	msg := ""
	if res.Err != nil {
		msg = res.Err.Error()
	}
	microsoft := cfg != nil && cfg.Provider == mailauth.ProviderMicrosoft
	switch {
	case res.Class == probe.ClassCredentials:
		return tokenHint(msg, cfg, proto)
	case res.Phase == probe.PhaseAuth && cfg == nil:
		return "the server refused the user name or password (Microsoft 365 and Gmail refuse passwords: use an oauth block)"
	case res.Phase == probe.PhaseAuth && strings.Contains(msg, "does not offer"):
		return "the server does not offer this SASL mechanism: try mechanism: xoauth2 (or oauthbearer), or log in over TLS (many servers offer it only then)"
	case res.Phase == probe.PhaseAuth && microsoft && proto == "IMAP":
		return "Exchange Online refused the token. Check, in Exchange Online PowerShell: the app's service principal is registered (New-ServicePrincipal -AppId <client_id> -ObjectId <object id of the enterprise application>), " +
			"it has the mailbox (Add-MailboxPermission -Identity " + user + " -User <service principal id> -AccessRights FullAccess), IMAP is on for the mailbox (Set-CASMailbox -Identity " + user + " -ImapEnabled $true), " +
			"and the app has the application permission IMAP.AccessAsApp with admin consent (see the token's roles)"
	case res.Phase == probe.PhaseAuth && microsoft && proto == "SMTP":
		return "535 from SMTP: SMTP AUTH may be off for the mailbox or the tenant (Set-CASMailbox -Identity " + user + " -SmtpClientAuthenticationDisabled $false), " +
			"the app may lack the application permission SMTP.SendAsApp with admin consent, or its service principal the mailbox (Add-MailboxPermission -Identity " + user + " -User <service principal id> -AccessRights FullAccess)"
	case res.Phase == probe.PhaseAuth && cfg != nil && cfg.Provider == mailauth.ProviderGoogle:
		return "Google refused the token: check that IMAP is on for the user (Admin console: Apps > Google Workspace > Gmail > End User Access) and that subject is the mailbox logged in as (" + user + ")"
	case res.Phase == probe.PhaseAuth:
		return "the server refused the token: check the user name (the mailbox), the token's scopes and the server's OAuth set-up"
	case res.Phase == probe.PhaseMailbox:
		return "logged in, but the folder cannot be opened: check imap.folder (e.g. INBOX) and that the login may read this mailbox"
	case res.Class == probe.ClassCertInvalid, res.Class == probe.ClassTLS:
		return "TLS failed: check the address and port, the tls mode, and tls_ca_file for a private CA"
	case res.Phase == probe.PhaseDNS, res.Phase == probe.PhaseConnect, res.Class == probe.ClassTimeout:
		return "the server could not be reached: check the address, the port and the firewall"
	}
	return "see the problem above"
}
