package checks

import "sync"

// Source gives the check file in force. A *File is a Source that never
// changes; a *Live is one that a reload replaces (platform's check file
// watcher, docs/configuration.md "Reloading the check file").
//
// Services call Current for every event they handle, so that a reload
// applies from the next event on; Changed is for those that plan ahead
// (the scheduler).
type Source interface {
	// Current returns the file in force; never nil.
	Current() *File
	// Changed returns a channel closed at the next change after the call;
	// nil (never ready) when the source cannot change.
	Changed() <-chan struct{}
}

// Current returns f: a loaded file is its own, unchanging Source.
func (f *File) Current() *File { return f }

// Changed returns nil: a loaded file never changes.
func (f *File) Changed() <-chan struct{} { return nil }

// Live is a Source whose file Set replaces. It is safe for concurrent use.
type Live struct {
	mu      sync.Mutex
	f       *File
	changed chan struct{}
}

// NewLive returns a Live holding f (not nil).
func NewLive(f *File) *Live {
	return &Live{f: f, changed: make(chan struct{})}
}

// Current returns the file in force.
func (l *Live) Current() *File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// Changed returns a channel closed by the next Set.
func (l *Live) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Set puts f in force and wakes everyone waiting on Changed.
func (l *Live) Set(f *File) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f = f
	close(l.changed)
	l.changed = make(chan struct{})
}
