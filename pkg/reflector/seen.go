package reflector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileSeen is a SeenStore in a directory: one empty file per answered probe,
// created with O_EXCL so that concurrent deliveries (several pipe processes)
// answer once. Files older than Keep are removed at most once per
// pruneEvery, whichever process claims first after it (the mtime of the
// directory's .pruned file says when): a pipe reflector is a new process
// for every probe, and reading a week of records each time cost it more
// than its whole reflection (docs/capacity.md, "Real mail servers").
type FileSeen struct {
	Dir  string
	Keep time.Duration // zero means 7 days
	now  func() time.Time
}

// pruneEvery is how often a FileSeen directory is pruned; prunedMarker is
// the file whose mtime records it (test ids cannot begin with a dot).
const (
	pruneEvery   = time.Hour
	prunedMarker = ".pruned"
)

// NewFileSeen creates dir (mode 0700) if needed.
func NewFileSeen(dir string, now func() time.Time) (*FileSeen, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &FileSeen{Dir: dir, now: now}, nil
}

// Claim implements SeenStore.
func (s *FileSeen) Claim(testID string) (bool, error) {
	if !safeName(testID) {
		return false, fmt.Errorf("test id %q is not a safe file name", testID)
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, testID), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_ = f.Close()
	if s.pruneDue() {
		s.prune()
	}
	return true, nil
}

// pruneDue reports whether the directory was last pruned pruneEvery ago
// or more (or never), and if so marks it pruned now.
func (s *FileSeen) pruneDue() bool {
	marker := filepath.Join(s.Dir, prunedMarker)
	now := s.now()
	if info, err := os.Stat(marker); err == nil && now.Sub(info.ModTime()) < pruneEvery {
		return false
	}
	if f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		_ = f.Close()
	}
	_ = os.Chtimes(marker, now, now)
	return true
}

// Answered reports whether testID was claimed and not released, without
// claiming it (for `scout-reflector check`). A test id that is not a safe
// file name was never answered.
func (s *FileSeen) Answered(testID string) (bool, error) {
	if !safeName(testID) {
		return false, nil
	}
	_, err := os.Stat(filepath.Join(s.Dir, testID))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Release implements SeenStore.
func (s *FileSeen) Release(testID string) error {
	if !safeName(testID) {
		return nil
	}
	err := os.Remove(filepath.Join(s.Dir, testID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *FileSeen) prune() {
	keep := s.Keep
	if keep <= 0 {
		keep = 7 * 24 * time.Hour
	}
	cutoff := s.now().Add(-keep)
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() == prunedMarker {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
}

func safeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// MemorySeen is a SeenStore in memory, for long-running reflectors (IMAP
// mode, the demo server). Entries older than Keep are forgotten.
type MemorySeen struct {
	Keep   time.Duration // zero means 7 days
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]time.Time
	pruned time.Time
}

// NewMemorySeen returns an empty MemorySeen.
func NewMemorySeen(now func() time.Time) *MemorySeen {
	return &MemorySeen{now: now, m: map[string]time.Time{}}
}

// Claim implements SeenStore.
func (s *MemorySeen) Claim(testID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	keep := s.Keep
	if keep <= 0 {
		keep = 7 * 24 * time.Hour
	}
	if now.Sub(s.pruned) > time.Minute {
		s.pruned = now
		for id, at := range s.m {
			if now.Sub(at) > keep {
				delete(s.m, id)
			}
		}
	}
	if _, ok := s.m[testID]; ok {
		return false, nil
	}
	s.m[testID] = now
	return true, nil
}

// Release implements SeenStore.
func (s *MemorySeen) Release(testID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, testID)
	return nil
}
