// Package delivery is what the notifier and its providers share: the
// message to deliver to one contact, and the classified error a provider
// returns when it could not deliver it.
//
// A provider returns *Error so that the notifier can choose between a retry
// with backoff (Retry: HTTP 408, 425, 429, 5xx, no answer at all) and
// recording the message as failed at once (any other 4xx, such as Twilio's
// 21211 "invalid To number" or 21608 "unverified number").
package delivery

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Message is one text for one contact about one incident transition.
type Message struct {
	// To is the contact's number in E.164 form, e.g. "+15555550100".
	To string
	// Contact is the contact's name from the check file.
	Contact string
	// Text is the message, already fitted to one SMS segment.
	Text string

	IncidentID string
	CheckID    string
	CheckName  string
	Customer   string
	Transition string // "open" or "resolved"
	Severity   string // events.SeverityCritical or events.SeverityWarning
	// Key identifies this message across retries and replicas
	// ("<incident>:<transition>:<number>"); webhook receivers may use it to
	// de-duplicate.
	Key string
}

// Error is a failed delivery attempt.
type Error struct {
	Provider string
	// Status is the HTTP status of the provider's answer; 0 means there was
	// no answer (connection refused, timeout): the message may or may not
	// have been accepted.
	Status int
	// Code is the provider's error code when it gave one (Twilio: 21211,
	// 21608, 20429, ...).
	Code int
	// Retry: the error is temporary, worth retrying after a backoff
	// (Temporary reports it to pkg/fault).
	Retry bool
	// RetryAfter is the provider's Retry-After (RFC 9110 section 10.2.3),
	// zero when it sent none.
	RetryAfter time.Duration
	// Err is the underlying error.
	Err error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Retry {
		kind = "temporary"
	}
	s := e.Provider + ": " + kind
	if e.Status != 0 {
		s += " (HTTP " + strconv.Itoa(e.Status)
		if e.Code != 0 {
			s += ", code " + strconv.Itoa(e.Code)
		}
		s += ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports Retry, so that pkg/fault classifies the error. An
// error that is not an *Error (a provider bug, a cancelled context) is
// unmarked: the notifier retries it (fault.MarkedPermanent is false) and
// its retry budget bounds it.
func (e *Error) Temporary() bool { return e.Retry }

// Answered reports whether the provider answered the request that failed
// with err: a definite refusal, after which the message was certainly not
// sent. Without an answer (Status 0) the outcome is unknown.
func Answered(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status != 0
}

// RetryAfterOf returns the provider's requested delay before the next
// attempt, or zero.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// TemporaryStatus reports whether an HTTP status is worth retrying: 408
// Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx.
// Other 4xx statuses are permanent: the same request will fail again.
func TemporaryStatus(status int) bool {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests:
		return true
	case status >= 500:
		return true
	}
	return false
}

// ParseRetryAfter reads a Retry-After header value, either delay-seconds or
// an HTTP-date (RFC 9110 section 10.2.3), relative to now. It returns zero
// for an empty, malformed or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Errorf builds an *Error for provider with status and a formatted cause;
// Retry follows TemporaryStatus, or is true when status is 0.
func Errorf(provider string, status int, format string, args ...any) *Error {
	return &Error{Provider: provider, Status: status, Retry: status == 0 || TemporaryStatus(status), Err: fmt.Errorf(format, args...)}
}
