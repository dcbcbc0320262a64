package platform

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/nats-io/nats.go/jetstream"
)

// Router hands each message to the handler of its event type. A service
// registers one handler per type with On; the router knows the subject
// names of the type (events.NamesOf), so the consumer's filter subjects
// (FilterSubjects) and its handlers come from the same registrations and
// cannot disagree.
//
// A message whose subject does not parse, whose name has no handler, or
// whose data does not decode into a valid event is a permanent error
// (fault.MarkedPermanent): the consumer terminates it.
type Router struct {
	routes map[string]func(ctx context.Context, data []byte) error
	names  []string // in registration order
	err    error
}

// NewRouter returns a router with no handlers.
func NewRouter() *Router {
	return &Router{routes: map[string]func(context.Context, []byte) error{}}
}

// On registers h for every subject name of event type T. A second handler
// for a name is a programming error that Err reports (and Consumer.Run
// refuses to start with).
func On[T any, P interface {
	*T
	events.Event
}](r *Router, h func(ctx context.Context, ev *T) error) {
	for _, name := range events.NamesOf[T, P]() {
		if _, dup := r.routes[name]; dup {
			r.err = errors.Join(r.err, fmt.Errorf("router: two handlers for %s", name))
			continue
		}
		r.routes[name] = func(ctx context.Context, data []byte) error {
			ev, err := events.Decode[T, P](data)
			if err != nil {
				return err // wraps events.ErrEvent: permanent
			}
			return h(ctx, &ev)
		}
		r.names = append(r.names, name)
	}
}

// Err reports registration errors (two handlers for one name).
func (r *Router) Err() error { return r.err }

// Names returns the subject names that have a handler, in registration
// order.
func (r *Router) Names() []string { return slices.Clone(r.names) }

// FilterSubjects returns the consumer filter for the registered names:
// "<name>.>" each, or "<name>.<site>.>" when site is not empty (a site's
// own consumer, such as the sender's). A site filter needs names routed by
// site; FilterSubjects returns an error for any other.
func (r *Router) FilterSubjects(site string) ([]string, error) {
	if len(r.names) == 0 {
		return nil, errors.New("router: no handler registered")
	}
	out := make([]string, 0, len(r.names))
	for _, n := range r.names {
		if site == "" {
			out = append(out, n+".>")
			continue
		}
		if rt, _ := events.RoutingOf(n); rt != events.RoutedBySiteAndCheck && rt != events.RoutedBySite {
			return nil, fmt.Errorf("router: %s is not routed by site; it cannot be filtered for site %s", n, site)
		}
		out = append(out, n+"."+site+".>")
	}
	return out, nil
}

// PartitionFilterSubjects returns the filter of partition p of a
// partitioned consumer (events.ConsumerDef.Partitions):
// events.PartitionFilter of every registered name. Only names routed by
// site and check are partitioned; any other is an error.
func (r *Router) PartitionFilterSubjects(p int) ([]string, error) {
	if len(r.names) == 0 {
		return nil, errors.New("router: no handler registered")
	}
	out := make([]string, 0, len(r.names))
	for _, n := range r.names {
		if rt, _ := events.RoutingOf(n); rt != events.RoutedBySiteAndCheck {
			return nil, fmt.Errorf("router: %s is not routed by site and check; it is not partitioned", n)
		}
		out = append(out, events.PartitionFilter(n, p))
	}
	return out, nil
}

// Handle decodes msg by its subject name and runs its handler with a
// context that carries the delivery count (Delivered). Its error is what
// platform.Consume acknowledges by.
func (r *Router) Handle(ctx context.Context, msg jetstream.Msg) error {
	if md, err := msg.Metadata(); err == nil {
		ctx = context.WithValue(ctx, deliveredKey{}, md.NumDelivered)
	}
	return r.Dispatch(ctx, msg.Subject(), msg.Data())
}

type deliveredKey struct{}

// Delivered returns how many times JetStream has delivered the message
// whose handler got ctx, counting from 1 (1 outside a handler, or when
// the metadata could not be read).
func Delivered(ctx context.Context) uint64 {
	if n, ok := ctx.Value(deliveredKey{}).(uint64); ok && n > 0 {
		return n
	}
	return 1
}

// Dispatch is Handle for a subject and data that did not come from a
// jetstream.Msg (tests, replays).
func (r *Router) Dispatch(ctx context.Context, subject string, data []byte) error {
	s, err := events.ParseSubject(subject)
	if err != nil {
		return err // wraps events.ErrSubject: permanent
	}
	h, ok := r.routes[s.Name]
	if !ok {
		return fault.Permanent(fmt.Errorf("no handler for %s", s.Name))
	}
	return h(ctx, data)
}
