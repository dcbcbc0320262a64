package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

//go:embed openapi.yaml
var openAPI []byte

// overviewPageSize is how many checks one overview page lists.
const overviewPageSize = 500

// Handler returns the pages, the API and the live updates:
//
//	GET /                      overview (?customer=, ?state=, ?page=)
//	GET /checks/{id}           one check: plots, attempts, incidents
//	GET /events                server-sent events for open pages
//	GET /api/v1/...            the JSON API (openapi.yaml)
//	GET /status/{customer}     public status page (SCOUT_WEB_PUBLIC_CUSTOMERS)
//	GET, POST /login; POST /logout
//	GET /static/...            style sheet and script
//
// Everything but /status/, /login, /static/ and the OpenAPI document
// answers 401 without credentials.
func (w *Web) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", w.team(w.pageOverview))
	mux.HandleFunc("GET /checks/{id}", w.team(w.pageCheck))
	mux.HandleFunc("GET /events", w.team(w.events))
	mux.HandleFunc("GET /api/v1/overview", w.team(w.apiOverview))
	mux.HandleFunc("GET /api/v1/checks", w.team(w.apiChecks))
	mux.HandleFunc("GET /api/v1/checks/{id}", w.team(w.apiCheck))
	mux.HandleFunc("GET /api/v1/incidents", w.team(w.apiIncidents))
	mux.HandleFunc("GET /api/v1/openapi.yaml", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/yaml")
		rw.Write(openAPI)
	})
	mux.HandleFunc("GET /status/{customer}", w.pageStatus)
	mux.HandleFunc("GET /login", w.pageLogin)
	mux.HandleFunc("POST /login", w.postLogin)
	mux.HandleFunc("POST /logout", w.postLogout)
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return secureHeaders(mux)
}

// secureHeaders sets a strict Content-Security-Policy (no inline script,
// nothing from other origins) and the usual hardening headers.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := rw.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(rw, r)
	})
}

type userKey struct{}

// team admits the platform team only: without credentials an API or
// /events request gets 401 with a JSON error, a page 401 with the login
// form (or, without a token, a pointer to the auth proxy).
func (w *Web) team(h http.HandlerFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		user, ok := w.auth.user(r)
		if ok {
			rw.Header().Set("Cache-Control", "no-store")
			h(rw, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
			return
		}
		rw.Header().Set("WWW-Authenticate", `Bearer realm="email-scout"`)
		if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/events" {
			writeJSON(rw, http.StatusUnauthorized, map[string]string{"error": "unauthorized: send Authorization: Bearer <SCOUT_WEB_TOKEN>, or sign in through the auth proxy"})
			return
		}
		w.renderLogin(rw, http.StatusUnauthorized, r.URL.RequestURI(), "")
	}
}

func userOf(r *http.Request) string {
	u, _ := r.Context().Value(userKey{}).(string)
	return u
}

// page is what every page's layout shows.
type page struct {
	Title  string
	User   string // "" on public pages
	Now    time.Time
	Live   bool   // the page follows /events
	Check  string // the check a check page follows
	Public bool
}

type overviewPage struct {
	page
	O         Overview
	Open      []CheckSummary // the checks with an open incident
	Customers []string
	Filter    filter
	PageNo    int
	Pages     int
	PrevURL   string
	NextURL   string
}

// pageOverview is GET /: every check of the filter with its sites, open
// incidents first.
func (w *Web) pageOverview(rw http.ResponseWriter, r *http.Request) {
	f := w.deps.Checks.Current()
	keep := filter{Customer: r.URL.Query().Get("customer"), State: r.URL.Query().Get("state")}
	o := w.overview(f, keep)
	p := overviewPage{page: page{Title: "Overview", User: userOf(r), Now: w.clock.Now(), Live: true},
		Customers: customers(f), Filter: keep, PageNo: 1}
	for _, s := range o.Checks {
		if s.Incident != nil {
			p.Open = append(p.Open, s)
		}
	}
	p.Pages = max(1, (len(o.Checks)+overviewPageSize-1)/overviewPageSize)
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n >= 1 {
		p.PageNo = min(n, p.Pages)
	}
	lo := (p.PageNo - 1) * overviewPageSize
	o.Checks = o.Checks[lo:min(lo+overviewPageSize, len(o.Checks))]
	p.O = o
	if p.PageNo > 1 {
		p.PrevURL = pageURL(keep, p.PageNo-1)
	}
	if p.PageNo < p.Pages {
		p.NextURL = pageURL(keep, p.PageNo+1)
	}
	w.renderPage(rw, http.StatusOK, "overview", p)
}

func pageURL(f filter, n int) string {
	q := url.Values{}
	if f.Customer != "" {
		q.Set("customer", f.Customer)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	q.Set("page", strconv.Itoa(n))
	return "/?" + q.Encode()
}

// customers returns the customers of f's checks, sorted, each once.
func customers(f *checks.File) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range f.Checks {
		if !seen[c.Customer] {
			seen[c.Customer] = true
			out = append(out, c.Customer)
		}
	}
	slices.Sort(out)
	return out
}

type checkPage struct {
	page
	D         CheckDetail
	Day, Week template.HTML
	Source    string // where the plots come from
	Note      string // why ClickHouse was not used
	Recent    int    // results kept per site
}

// pageCheck is GET /checks/{id}: the check's state, its round-trip (or
// total) times over 24 h and 7 d, its attempts and its incidents.
func (w *Web) pageCheck(rw http.ResponseWriter, r *http.Request) {
	f := w.deps.Checks.Current()
	c := f.Lookup(r.PathValue("id"))
	if c == nil {
		w.renderPage(rw, http.StatusNotFound, "notfound", page{Title: "No such check", User: userOf(r), Now: w.clock.Now()})
		return
	}
	d := w.detail(c)
	now := w.clock.Now()
	p := checkPage{page: page{Title: d.Check.Name, User: userOf(r), Now: now, Live: true, Check: c.ID}, D: d, Recent: w.cfg.Recent}
	what := "Round trip"
	if c.Kind != events.KindRoundTrip {
		what = "Total dialogue time"
	}
	day, week, source, note := w.plots(r.Context(), c, now)
	p.Day = plotSVG(what+", last 24 hours", day, now.Add(-24*time.Hour), now, 3*time.Hour, "15:04")
	p.Week = plotSVG(what+", last 7 days", week, now.Add(-7*24*time.Hour), now, 24*time.Hour, "Mon 02")
	p.Source, p.Note = source, note
	p.D.Incidents = w.pastIncidents(r.Context(), c, d.Incidents)
	w.renderPage(rw, http.StatusOK, "check", p)
}

// plots returns check c's series over 24 h (5-minute medians) and 7 d
// (hourly medians) from ClickHouse, or from the results in memory when
// ClickHouse is not configured or fails (note says why).
func (w *Web) plots(ctx context.Context, c *checks.Check, now time.Time) (day, week []series, source, note string) {
	if w.history != nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d, err := w.history.series(ctx, c.ID, c.Kind, now.Add(-24*time.Hour), now, 5*time.Minute)
		if err == nil {
			var wk []series
			if wk, err = w.history.series(ctx, c.ID, c.Kind, now.Add(-7*24*time.Hour), now, time.Hour); err == nil {
				return bySite(c.Sites, d), bySite(c.Sites, wk), "ClickHouse (medians per 5 minutes and per hour)", ""
			}
		}
		w.log.Warn("clickhouse history", "check", c.ID, "error", err)
		note = "ClickHouse did not answer (" + err.Error() + "); showing the results in memory."
	}
	_, recent, _ := w.store.get(c.ID, true)
	day = memorySeries(c.Sites, c.Kind, recent, now.Add(-24*time.Hour), now)
	week = memorySeries(c.Sites, c.Kind, recent, now.Add(-7*24*time.Hour), now)
	return day, week, fmt.Sprintf("memory (the last %d results per site)", w.cfg.Recent), note
}

// bySite orders ss as sites, with an empty series for a site without
// values.
func bySite(sites []string, ss []series) []series {
	out := make([]series, 0, len(sites))
	for _, site := range sites {
		s := series{Site: site}
		for _, x := range ss {
			if x.Site == site {
				s.Points = x.Points
			}
		}
		out = append(out, s)
	}
	return out
}

// pastIncidents are check c's incidents from ClickHouse when configured
// and answering, else memory (the incidents seen since start).
func (w *Web) pastIncidents(ctx context.Context, c *checks.Check, memory []Incident) []Incident {
	if w.history == nil {
		return memory
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in, err := w.history.incidents(ctx, c.ID, maxPastIncidents)
	if err != nil {
		w.log.Warn("clickhouse incidents", "check", c.ID, "error", err)
		return memory
	}
	return in
}

type statusPage struct {
	page
	Customer string
	Checks   []publicCheck
	Overall  string
}

// publicCheck is all a public status page shows of a check.
type publicCheck struct {
	Name  string
	State string
	Since *time.Time // start of the open incident
}

// pageStatus is GET /status/{customer}: the customer's checks, up or
// down, for SCOUT_WEB_PUBLIC_CUSTOMERS only; no credentials, and no
// addresses, error text, reasons or sites.
func (w *Web) pageStatus(rw http.ResponseWriter, r *http.Request) {
	customer := r.PathValue("customer")
	if !w.public[customer] {
		http.NotFound(rw, r)
		return
	}
	f := w.deps.Checks.Current()
	o := w.overview(f, filter{Customer: customer})
	p := statusPage{page: page{Title: customer + " status", Now: w.clock.Now(), Public: true}, Customer: customer, Overall: StateUp}
	slices.SortStableFunc(o.Checks, func(a, b CheckSummary) int { return strings.Compare(a.Name, b.Name) })
	for _, s := range o.Checks {
		if s.Customer != customer { // overview filtered already: never another customer's check
			continue
		}
		pc := publicCheck{Name: s.Name, State: s.State}
		if s.Incident != nil {
			pc.Since = ptr(s.Incident.Since)
		}
		if stateRank(s.State) < stateRank(p.Overall) {
			p.Overall = s.State
		}
		p.Checks = append(p.Checks, pc)
	}
	rw.Header().Set("Cache-Control", "public, max-age=30")
	w.renderPage(rw, http.StatusOK, "status", p)
}

type loginPage struct {
	page
	Next   string
	Error  string
	Token  bool // a token can be typed in
	Header string
}

func (w *Web) pageLogin(rw http.ResponseWriter, r *http.Request) {
	w.renderLogin(rw, http.StatusOK, r.URL.Query().Get("next"), "")
}

func (w *Web) renderLogin(rw http.ResponseWriter, status int, next, msg string) {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	w.renderPage(rw, status, "login", loginPage{page: page{Title: "Sign in", Now: w.clock.Now()}, Next: next, Error: msg,
		Token: w.auth.token != "", Header: w.auth.header})
}

// postLogin takes the token from the login form and sets the session
// cookie (HttpOnly, SameSite=Strict, Secure behind TLS).
func (w *Web) postLogin(rw http.ResponseWriter, r *http.Request) {
	next := r.FormValue("next")
	value, ok := w.auth.login(r.FormValue("token"))
	if !ok {
		w.renderLogin(rw, http.StatusUnauthorized, next, "That token is not right.")
		return
	}
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https", MaxAge: 12 * 3600})
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	http.Redirect(rw, r, next, http.StatusSeeOther)
}

func (w *Web) postLogout(rw http.ResponseWriter, r *http.Request) {
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(rw, r, "/login", http.StatusSeeOther)
}

// renderPage executes template name into a buffer first, so that a
// template error is a clean 500.
func (w *Web) renderPage(rw http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := w.pages.ExecuteTemplate(&buf, name, data); err != nil {
		w.log.Error("page not rendered", "page", name, "error", err)
		http.Error(rw, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	rw.Write(buf.Bytes())
}

// The API: each handler reads the check file in force, builds the answer
// and writes it as JSON.

func (w *Web) apiOverview(rw http.ResponseWriter, r *http.Request) {
	keep := filter{Customer: r.URL.Query().Get("customer"), State: r.URL.Query().Get("state")}
	writeJSON(rw, http.StatusOK, w.overview(w.deps.Checks.Current(), keep))
}

func (w *Web) apiChecks(rw http.ResponseWriter, _ *http.Request) {
	f := w.deps.Checks.Current()
	out := CheckList{Checks: make([]CheckInfo, 0, len(f.Checks))}
	for _, c := range f.Checks {
		out.Checks = append(out.Checks, checkInfo(c))
	}
	writeJSON(rw, http.StatusOK, out)
}

func (w *Web) apiCheck(rw http.ResponseWriter, r *http.Request) {
	c := w.deps.Checks.Current().Lookup(r.PathValue("id"))
	if c == nil {
		writeJSON(rw, http.StatusNotFound, map[string]string{"error": "no check " + strconv.Quote(r.PathValue("id"))})
		return
	}
	d := w.detail(c)
	d.Incidents = w.pastIncidents(r.Context(), c, d.Incidents)
	writeJSON(rw, http.StatusOK, d)
}

func (w *Web) apiIncidents(rw http.ResponseWriter, _ *http.Request) {
	writeJSON(rw, http.StatusOK, w.incidents(w.deps.Checks.Current()))
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v) // an error: the client went away
}
