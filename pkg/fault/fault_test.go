package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/emailscout/emailscout/pkg/fault"
)

// replyErr stands for a library error with its own Temporary method
// (pkg/submit.Error: 4yz temporary, 5yz permanent).
type replyErr struct{ code int }

func (e replyErr) Error() string   { return fmt.Sprintf("reply %d", e.code) }
func (e replyErr) Temporary() bool { return e.code/100 == 4 }

func TestOf(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want fault.Class
	}{
		{"nil", nil, fault.ClassUnmarked},
		{"plain", base, fault.ClassUnmarked},
		{"marked temporary", fault.Temporary(base), fault.ClassTemporary},
		{"marked permanent", fault.Permanent(base), fault.ClassPermanent},
		{"wrapped mark", fmt.Errorf("handle: %w", fault.Permanent(base)), fault.ClassPermanent},
		{"4xx reply", replyErr{451}, fault.ClassTemporary},
		{"5xx reply", fmt.Errorf("send: %w", replyErr{550}), fault.ClassPermanent},
		{"outer mark wins over the library's", fault.Temporary(replyErr{550}), fault.ClassTemporary},
		{"outer mark wins over an inner mark", fault.Permanent(fault.Temporary(base)), fault.ClassPermanent},
		{"context deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), fault.ClassTemporary},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, fault.ClassTemporary},
		{"connection refused", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), fault.ClassTemporary},
		{"DNS: no such host", &net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}, fault.ClassPermanent},
		{"DNS: server failure", &net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}, fault.ClassTemporary},
		{"joined: first marked error", errors.Join(base, replyErr{550}), fault.ClassPermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fault.Of(tc.err); got != tc.want {
				t.Errorf("Of(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestPredicatesStateTheirDefault(t *testing.T) {
	unmarked := errors.New("unmarked")
	if fault.MarkedPermanent(unmarked) || fault.MarkedTemporary(unmarked) {
		t.Error("an unmarked error is neither marked permanent nor marked temporary")
	}
	if !fault.MarkedPermanent(fault.Permanent(unmarked)) || fault.MarkedTemporary(fault.Permanent(unmarked)) {
		t.Error("Permanent: MarkedPermanent only")
	}
	if !fault.MarkedTemporary(fault.Temporary(unmarked)) || fault.MarkedPermanent(fault.Temporary(unmarked)) {
		t.Error("Temporary: MarkedTemporary only")
	}
}

func TestMarksKeepTheError(t *testing.T) {
	base := errors.New("boom")
	for _, err := range []error{fault.Temporary(base), fault.Permanent(base)} {
		if err.Error() != "boom" || !errors.Is(err, base) {
			t.Errorf("%#v: text %q, Is(base) %v; want the error unchanged", err, err.Error(), errors.Is(err, base))
		}
	}
	if fault.Temporary(nil) != nil || fault.Permanent(nil) != nil {
		t.Error("marking nil must give nil")
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[fault.Class]string{fault.ClassUnmarked: "unmarked", fault.ClassTemporary: "temporary", fault.ClassPermanent: "permanent"} {
		if c.String() != want {
			t.Errorf("%d.String() = %q, want %q", c, c.String(), want)
		}
	}
}
