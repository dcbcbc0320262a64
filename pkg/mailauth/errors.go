package mailauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/emailscout/emailscout/pkg/fault"
	"golang.org/x/oauth2"
)

// EndpointError is a token endpoint's refusal (RFC 6749 section 5.2). Its
// text names the provider's error and description, never the request:
// "token endpoint: invalid_client: AADSTS7000215: Invalid client secret
// provided. ...". It is marked with pkg/fault (see Temporary).
type EndpointError struct {
	Status      int    // HTTP status code
	Code        string // "error", e.g. invalid_client; "" when the body had none
	Description string // "error_description", on one line, at most 400 bytes
}

func (e *EndpointError) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint: ")
	if e.Code == "" {
		fmt.Fprintf(&b, "HTTP %d %s", e.Status, http.StatusText(e.Status))
	} else {
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	return b.String()
}

// Temporary reports whether a retry may succeed: a 5xx answer or 429 Too
// Many Requests. invalid_grant, invalid_client, unauthorized_client and
// every other 4xx answer are permanent: the credential or the
// registration must change first.
func (e *EndpointError) Temporary() bool {
	switch e.Code {
	case "invalid_grant", "invalid_client", "unauthorized_client":
		return false
	}
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}

// endpointError turns what x/oauth2 returned into an error that names the
// provider's error and is marked temporary or permanent. A
// *oauth2.RetrieveError becomes an *EndpointError (its Body, which may
// echo the request, is dropped); anything else (a network error, a
// response that is not a token) is marked temporary.
func endpointError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fault.Temporary(fmt.Errorf("token endpoint: %w", err))
	}
	e := &EndpointError{Code: re.ErrorCode, Description: re.ErrorDescription}
	if re.Response != nil {
		e.Status = re.Response.StatusCode
	}
	if e.Code == "" {
		// x/oauth2/jwt does not parse the error body: RFC 6749 section 5.2 JSON.
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &body) == nil {
			e.Code, e.Description = body.Error, body.Description
		}
	}
	e.Code = oneLine(e.Code, 64)
	e.Description = oneLine(e.Description, 400)
	return e
}

// oneLine folds line breaks into spaces and cuts s to n bytes (at a rune
// boundary).
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
