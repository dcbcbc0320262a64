package submit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Pool submits messages to one server (a relay) over sessions it keeps
// open between messages: each message is one MAIL transaction on a
// session already greeted, upgraded to TLS and logged in (RFC 5321
// section 3.3), so that a busy sender does not pay the connection, the
// greeting, the TLS handshake and the login for every probe. A session
// serves at most MaxMessages messages and is dropped after IdleTimeout
// unused (servers close idle sessions: Postfix after smtpd_timeout, 300
// s; we end ours after IdleTimeout). A session logged in with an expiring
// token is not reused past half the token's life (Authenticator). A
// session that served its share is replaced at once, in the background, so
// that the next message does not wait for a new session to open (unless
// MaxMessages is 1). Safe for concurrent use: each Send has a session of
// its own.
type Pool struct {
	cfg Config
	// MaxMessages bounds the messages of one session; 1 opens a new
	// session for every message (Send's behaviour). Zero means 100.
	MaxMessages int
	// IdleTimeout ends (QUIT) a session unused this long. Zero means 5 s:
	// a busy sender keeps its session, a quiet one holds none of the
	// server's processes (a Postfix smtpd per session) while it waits.
	IdleTimeout time.Duration
	// MaxIdle bounds the sessions kept open while unused. Zero means 16.
	MaxIdle int

	mu     sync.Mutex
	idle   []*session
	closed bool
	// refills counts the replacements being opened; refilled is closed
	// (and set to nil) when the last of them ends.
	refills  int
	refilled chan struct{}
}

// refillTimeout bounds the opening of a replacement session.
const refillTimeout = 30 * time.Second

// NewPool returns a Pool that submits with cfg.
func NewPool(cfg Config) *Pool { return &Pool{cfg: cfg} }

// Send submits msg as Send does, on a session of the pool: a reused one
// when one is idle (Result.Reused; its timings then have no connect,
// greeting, TLS or auth phase, and its transcript is this transaction's
// alone), else a new one. A reused session that fails before the server
// took the MAIL command (the server closed it meanwhile, or answered 421)
// is dropped and the message sent again on a new session, once.
func (p *Pool) Send(ctx context.Context, from string, to []string, msg []byte) (Result, error) {
	start := time.Now()
	if s := p.take(ctx); s != nil {
		res := Result{Reused: true, Server: s.server}
		res.Timings.TLSVersion, res.Timings.PeerAddress = s.tls, s.peer
		s.tr.Reset()
		err := s.transaction(ctx, from, to, msg, &res)
		if err == nil {
			res.Timings.TotalMS = ms(time.Since(start))
			p.put(s)
			return res, nil
		}
		s.close()
		var se *Error
		if !errors.As(err, &se) || se.Phase != PhaseMail || (se.Reply != nil && se.Reply.Code != 421) || ctx.Err() != nil {
			res.Timings.TotalMS = ms(time.Since(start))
			return res, err
		}
		start = time.Now() // the stale session is not the new one's time
	}
	var res Result
	s, err := open(ctx, p.cfg, &res, start)
	if err == nil {
		if err = s.transaction(ctx, from, to, msg, &res); err == nil {
			p.put(s)
		} else {
			s.close()
		}
	}
	res.Timings.TotalMS = ms(time.Since(start))
	return res, err
}

// take returns an idle session fit for another message, or nil; it drops
// the ones that sat idle too long or whose login's token is past half its
// life (session.reuseUntil). With none idle while a replacement is
// being opened (refill), it waits for that until ctx ends.
func (p *Pool) take(ctx context.Context) *session {
	for {
		p.mu.Lock()
		for len(p.idle) > 0 {
			s := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			s.idle.Stop()
			if s.reusable(time.Now(), p.idleTimeout()) {
				p.mu.Unlock()
				return s
			}
			go s.quitAndClose()
		}
		wait := p.refilled
		p.mu.Unlock()
		if wait == nil {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil
		}
	}
}

// refillLocked opens a session in the background and keeps it idle, in
// place of one that served its share; p.mu is held.
func (p *Pool) refillLocked() {
	if p.refills == 0 {
		p.refilled = make(chan struct{})
	}
	p.refills++
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), refillTimeout)
		var res Result
		s, err := open(ctx, p.cfg, &res, time.Now())
		cancel()
		if err == nil {
			p.put(s)
		}
		p.mu.Lock()
		if p.refills--; p.refills == 0 {
			close(p.refilled)
			p.refilled = nil
		}
		p.mu.Unlock()
	}()
}

func (p *Pool) idleTimeout() time.Duration {
	if p.IdleTimeout <= 0 {
		return 5 * time.Second
	}
	return p.IdleTimeout
}

// expire ends s when it is still idle in the pool (its timer fired before
// a Send took it).
func (p *Pool) expire(s *session) {
	p.mu.Lock()
	i := slices.Index(p.idle, s)
	if i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	p.mu.Unlock()
	if i >= 0 {
		s.quitAndClose()
	}
}

// put keeps s for another message, or ends it when it served its share,
// the pool is full or closed.
func (p *Pool) put(s *session) {
	maxMessages, maxIdle := p.MaxMessages, p.MaxIdle
	if maxMessages <= 0 {
		maxMessages = 100
	}
	if maxIdle <= 0 {
		maxIdle = 16
	}
	p.mu.Lock()
	if p.closed || s.messages >= maxMessages || len(p.idle) >= maxIdle {
		if !p.closed && s.messages >= maxMessages && maxMessages > 1 {
			p.refillLocked()
		}
		p.mu.Unlock()
		go s.quitAndClose()
		return
	}
	s.idleAt = time.Now()
	if s.idle == nil {
		s.idle = time.AfterFunc(p.idleTimeout(), func() { p.expire(s) })
	} else {
		s.idle.Reset(p.idleTimeout())
	}
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// Close ends every idle session (QUIT) and makes the pool keep no more.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, s := range idle {
		s.idle.Stop()
		s.quitAndClose()
	}
}

func (s *session) quitAndClose() {
	s.deadline(context.Background())
	_ = s.raw.SetDeadline(time.Now().Add(5 * time.Second))
	s.quit()
	s.close()
}
