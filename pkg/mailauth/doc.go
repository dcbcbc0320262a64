// Package mailauth gives Email Scout's mailbox and relay logins OAuth 2.0
// access tokens and the SASL mechanisms that carry them: XOAUTH2 (as
// Microsoft and Google document it) and OAUTHBEARER (RFC 7628).
//
// Tokens come from golang.org/x/oauth2 in one of four flows, chosen by
// Config.Provider:
//
//   - microsoft: the client credentials grant (RFC 6749 section 4.4) at the
//     Microsoft identity platform,
//     https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token, scope
//     https://outlook.office365.com/.default (x/oauth2/clientcredentials);
//   - google: a service account with domain-wide delegation, the JWT bearer
//     grant (RFC 7523) with Subject = the mailbox, scope
//     https://mail.google.com/ (x/oauth2/jwt);
//   - refresh_token: a delegated login's refresh token kept in a file
//     (RFC 6749 section 6); a rotated refresh token is written back;
//   - static: a fixed access token (tests, or a token another tool renews).
//
// Each flow is a TokenSource that fetches on every call; NewCache wraps it
// with a cache driven by an injected clock (clockwork) that fetches a new
// token well before the old one expires (see Cache), so that every
// connection and reconnection logs in with a valid token.
//
// Errors of the token endpoint name the provider's own error (RFC 6749
// section 5.2 "error" and "error_description", e.g. Microsoft's
// "AADSTS7000215: Invalid client secret provided") and are marked with
// pkg/fault: invalid_grant, invalid_client, unauthorized_client and other
// 4xx answers are permanent, 5xx answers, 429 and network errors temporary.
// No secret (client secret, private key, refresh token, access token)
// appears in an error, a log attribute or a String.
package mailauth
