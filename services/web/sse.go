package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// update is one server-sent event "update": the overview rows of the
// checks that changed since the last one, the open-incidents section, and
// the counts per customer ("" for every customer).
type update struct {
	Checks    []string          `json:"checks"`
	Rows      []rowUpdate       `json:"rows"`
	Incidents string            `json:"incidents"`
	Counts    map[string]Counts `json:"counts"`
}

type rowUpdate struct {
	ID    string `json:"id"`
	State string `json:"state"`
	HTML  string `json:"html"`
}

// subscriberBuffer is how many updates a slow page may lag behind before
// it is told to reload.
const subscriberBuffer = 8

// hub pushes changes to the pages connected to /events: every Flush it
// takes the changed checks from the store, renders their rows once and
// hands the same bytes to every page.
type hub struct {
	w    *Web
	mu   sync.Mutex
	subs map[chan []byte]struct{}
	done bool
}

func newHub(w *Web) *hub { return &hub{w: w, subs: map[chan []byte]struct{}{}} }

// subscribe returns a channel of encoded updates, closed when the page
// fell behind or the service stops, and a function that unsubscribes.
func (h *hub) subscribe() (<-chan []byte, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan []byte, subscriberBuffer)
	if h.done {
		close(ch)
		return ch, func() {}
	}
	h.subs[ch] = struct{}{}
	h.w.m.clients.Inc()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
			h.w.m.clients.Dec()
		}
	}
}

// run flushes changes every Flush until ctx ends, then closes every
// subscriber's channel.
func (h *hub) run(ctx context.Context) error {
	t := h.w.clock.NewTicker(h.w.cfg.Flush)
	defer t.Stop()
	defer h.closeAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
		}
		ids := h.w.store.take()
		if len(ids) == 0 || h.count() == 0 {
			continue
		}
		msg, err := h.w.render(ids)
		if err != nil {
			h.w.log.Error("live update not rendered", "error", err)
			continue
		}
		h.broadcast(msg)
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *hub) broadcast(msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- msg:
		default: // fell behind: it reloads
			delete(h.subs, ch)
			close(ch)
			h.w.m.clients.Dec()
		}
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
		h.w.m.clients.Dec()
	}
}

// render encodes the update for the changed checks ids.
func (w *Web) render(ids []string) ([]byte, error) {
	f := w.deps.Checks.Current()
	all := w.overview(f, filter{})
	u := update{Checks: ids, Counts: map[string]Counts{}}
	changed := map[string]bool{}
	for _, id := range ids {
		changed[id] = true
	}
	var buf bytes.Buffer
	var open []CheckSummary
	for _, s := range all.Checks {
		for _, key := range []string{"", s.Customer} {
			c := u.Counts[key]
			switch s.State {
			case StateUp:
				c.Up++
			case StateWarning:
				c.Warning++
			case StateDown:
				c.Down++
			default:
				c.Unknown++
			}
			u.Counts[key] = c
		}
		if s.Incident != nil {
			open = append(open, s)
		}
		if changed[s.ID] {
			buf.Reset()
			if err := w.pages.ExecuteTemplate(&buf, "row", s); err != nil {
				return nil, err
			}
			u.Rows = append(u.Rows, rowUpdate{ID: s.ID, State: s.State, HTML: buf.String()})
		}
	}
	buf.Reset()
	if err := w.pages.ExecuteTemplate(&buf, "incidents", open); err != nil {
		return nil, err
	}
	u.Incidents = buf.String()
	return json.Marshal(u)
}

// events is GET /events: server-sent events "update" (JSON, see update)
// as checks change, "reload" when the page fell behind or the service
// stops, and a comment every 15 s to keep proxies from closing the
// stream.
func (w *Web) events(rw http.ResponseWriter, r *http.Request) {
	fl, ok := rw.(http.Flusher)
	if !ok {
		http.Error(rw, "streaming is not supported here", http.StatusInternalServerError)
		return
	}
	ch, unsubscribe := w.hub.subscribe()
	defer unsubscribe()
	h := rw.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	fmt.Fprint(rw, "retry: 3000\n\n")
	fl.Flush()
	ping := w.clock.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-ch:
			if !ok {
				fmt.Fprint(rw, "event: reload\ndata: {}\n\n")
				fl.Flush()
				return
			}
			fmt.Fprintf(rw, "event: update\ndata: %s\n\n", msg)
			fl.Flush()
		case <-ping.Chan():
			fmt.Fprint(rw, ": ping\n\n")
			fl.Flush()
		}
	}
}
