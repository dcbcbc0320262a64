// Package twiliotest is a fake Twilio Messages API on 127.0.0.1 for tests.
//
// twilio-go has no base-URL option, so Transport returns an
// http.RoundTripper that sends requests for https://api.twilio.com to the
// fake server instead (and refuses any other host). The server checks what
// the real API checks first: Basic auth with the account SID and auth
// token, the path /2010-04-01/Accounts/<sid>/Messages.json and the form
// fields To, From or MessagingServiceSid, and Body; it answers with queued
// responses (201 with a message SID, 429, 500, 400 with a Twilio JSON error
// body, ...) and records every request.
package twiliotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Response is one queued answer. Status 0 or 201 creates the message.
type Response struct {
	Status int
	// Code and Message form the Twilio error body of a non-2xx answer,
	// e.g. 21211 "The 'To' number is not a valid phone number.".
	Code    int
	Message string
	// RawBody replaces the JSON body (e.g. an HTML page from a proxy).
	RawBody string
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
	// Delay holds the answer back (to overlap two senders).
	Delay time.Duration
}

// Request is one request the server received.
type Request struct {
	To                  string
	From                string
	MessagingServiceSid string
	Body                string
	// Status is what the server answered.
	Status int
	// SID is the message SID of a created message.
	SID string
	// Problem says why the server refused a malformed request (bad auth,
	// path, or fields); empty for well-formed ones.
	Problem string
}

// Server is a running fake.
type Server struct {
	AccountSID string
	AuthToken  string

	srv *httptest.Server

	mu       sync.Mutex
	queue    []Response
	requests []Request
	next     int
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// Start runs a fake for the account sid and token on 127.0.0.1 and stops
// it when the test ends.
func Start(t testing.TB, accountSID, authToken string) *Server {
	t.Helper()
	s := &Server{AccountSID: accountSID, AuthToken: authToken}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the server's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server; requests then fail with a network error.
func (s *Server) Close() { s.srv.Close() }

// Respond queues answers for the next requests, in order; once the queue
// is empty every well-formed request gets 201.
func (s *Server) Respond(rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, rs...)
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Created returns the requests answered 201: the messages Twilio would
// have sent.
func (s *Server) Created() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Status == http.StatusCreated {
			out = append(out, r)
		}
	}
	return out
}

// Problems returns the problems of malformed requests (none in a good run).
func (s *Server) Problems() []string {
	var out []string
	for _, r := range s.Requests() {
		if r.Problem != "" {
			out = append(out, r.Problem)
		}
	}
	return out
}

// Transport returns a RoundTripper that sends requests for api.twilio.com
// to the fake over plain HTTP on 127.0.0.1 and refuses any other host, so
// that a test can never reach the real API.
func (s *Server) Transport() http.RoundTripper {
	base := s.srv.Client().Transport
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host != "api.twilio.com" {
			return nil, fmt.Errorf("twiliotest: refusing a request to %s (only api.twilio.com is faked)", req.URL.Host)
		}
		r := req.Clone(req.Context())
		r.URL.Scheme = "http"
		r.URL.Host = strings.TrimPrefix(s.srv.URL, "http://")
		r.Host = ""
		return base.RoundTrip(r)
	})
}

// Client returns an http.Client using Transport.
func (s *Server) Client() *http.Client { return &http.Client{Transport: s.Transport()} }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{}
	problem := func(status, code int, msg string) {
		rec.Status, rec.Problem = status, msg
		s.record(rec)
		writeError(w, status, code, msg, "")
	}
	if r.Method != http.MethodPost {
		problem(http.StatusMethodNotAllowed, 20004, "method "+r.Method+" not allowed")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.AccountSID || pass != s.AuthToken {
		problem(http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if want := "/2010-04-01/Accounts/" + s.AccountSID + "/Messages.json"; r.URL.Path != want {
		problem(http.StatusNotFound, 20404, "path "+r.URL.Path+" is not "+want)
		return
	}
	if err := r.ParseForm(); err != nil {
		problem(http.StatusBadRequest, 0, "form: "+err.Error())
		return
	}
	rec.To, rec.From, rec.MessagingServiceSid, rec.Body = r.PostForm.Get("To"), r.PostForm.Get("From"), r.PostForm.Get("MessagingServiceSid"), r.PostForm.Get("Body")
	switch {
	case !e164.MatchString(rec.To):
		problem(http.StatusBadRequest, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", rec.To))
		return
	case rec.From == "" && rec.MessagingServiceSid == "":
		problem(http.StatusBadRequest, 21603, "A 'From' phone number or MessagingServiceSid is required.")
		return
	case rec.Body == "":
		problem(http.StatusBadRequest, 21602, "Message body is required.")
		return
	}

	s.mu.Lock()
	resp := Response{Status: http.StatusCreated}
	if len(s.queue) > 0 {
		resp = s.queue[0]
		s.queue = s.queue[1:]
		if resp.Status == 0 {
			resp.Status = http.StatusCreated
		}
	}
	if resp.Status == http.StatusCreated {
		s.next++
		rec.SID = fmt.Sprintf("SM%032x", s.next)
	}
	s.mu.Unlock()

	if resp.Delay > 0 {
		select {
		case <-time.After(resp.Delay):
		case <-r.Context().Done():
		}
	}
	rec.Status = resp.Status
	s.record(rec)
	if resp.RetryAfter != "" {
		w.Header().Set("Retry-After", resp.RetryAfter)
	}
	if resp.RawBody != "" {
		w.WriteHeader(resp.Status)
		fmt.Fprint(w, resp.RawBody)
		return
	}
	if resp.Status != http.StatusCreated {
		writeError(w, resp.Status, resp.Code, resp.Message, resp.RetryAfter)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": rec.SID, "account_sid": s.AccountSID, "to": rec.To, "from": rec.From,
		"messaging_service_sid": rec.MessagingServiceSid, "body": rec.Body, "status": "queued", "num_segments": "1",
	})
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

// writeError writes Twilio's error body: {"code", "message", "more_info",
// "status"}.
func writeError(w http.ResponseWriter, status, code int, msg, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code": code, "message": msg, "status": status,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
	})
}
