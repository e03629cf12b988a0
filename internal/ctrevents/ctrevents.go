// Package ctrevents records the task starts and exits a containerd
// publishes for one namespace, with containerd's own timestamps: what the
// e2e tests, the bench and the chaos soak check Vigil against, seen from
// outside it.
package ctrevents

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
)

// Kind is what happened to a container's task.
type Kind string

const (
	Start Kind = "start" // /tasks/start
	Exit  Kind = "exit"  // /tasks/exit of the container's own process (not an exec'd one)
)

// Event is one start or exit of a container's task.
type Event struct {
	Container string
	Kind      Kind
	// At is containerd's time: when it published a start, when the task
	// exited for an exit.
	At   time.Time
	Code uint32 // an exit's status
}

// Gap is a time when the subscription was down (containerd restarting):
// events in it may be missing.
type Gap struct{ From, To time.Time }

// Recorder keeps the events of one namespace until Close, subscribing again
// whenever containerd drops the subscription (a restart). It is safe for
// concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []Event
	of     map[string][]Event // per container
	gaps   []Gap
	// changed is closed, and replaced, at each event.
	changed chan struct{}

	stop context.CancelFunc
	done chan struct{}
}

// settle is how long a subscription takes to be live after Subscribe
// returns: containerd opens the stream behind it, and says nothing when it has.
const settle = 200 * time.Millisecond

// Record starts recording the task events of namespace on the containerd at
// address. It returns once the first subscription is live, or fails if
// none could be made within a minute or before ctx ends.
func Record(ctx context.Context, address, namespace string) (*Recorder, error) {
	ctx, stop := context.WithCancel(ctx)
	r := &Recorder{of: map[string][]Event{}, changed: make(chan struct{}), stop: stop, done: make(chan struct{})}
	ready := make(chan struct{})
	go r.run(ctx, address, `namespace==`+namespace+`,topic~="^/tasks/(start|exit)$"`, ready)
	select {
	case <-ready:
		time.Sleep(settle)
		return r, nil
	case <-time.After(time.Minute):
	case <-ctx.Done():
	}
	r.Close()
	return nil, fmt.Errorf("containerd events of %s at %s: no subscription", namespace, address)
}

// Close stops recording and waits until the subscription is gone.
func (r *Recorder) Close() {
	r.stop()
	<-r.done
}

func (r *Recorder) run(ctx context.Context, address, filter string, ready chan struct{}) {
	defer close(r.done)
	var down time.Time
	for ctx.Err() == nil {
		client, err := containerd.New(address, containerd.WithTimeout(2*time.Second))
		if err != nil {
			if down.IsZero() {
				down = time.Now()
			}
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		subCtx, cancel := context.WithCancel(ctx)
		evs, errs := client.Subscribe(subCtx, filter)
		if !down.IsZero() {
			r.mu.Lock()
			// The stream opens a moment after Subscribe returns: widen the gap.
			r.gaps = append(r.gaps, Gap{From: down, To: time.Now().Add(time.Second)})
			r.mu.Unlock()
			down = time.Time{}
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
	recv:
		for {
			select {
			case env := <-evs:
				r.add(env.Timestamp, env.Event)
			case <-errs:
				break recv
			case <-ctx.Done():
				break recv
			}
		}
		cancel()
		client.Close()
		if ctx.Err() == nil {
			down = time.Now()
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

func (r *Recorder) add(published time.Time, payload typeurl.Any) {
	v, err := typeurl.UnmarshalAny(payload)
	if err != nil {
		return
	}
	var ev Event
	switch e := v.(type) {
	case *apievents.TaskStart:
		ev = Event{Container: e.ContainerID, Kind: Start, At: published}
	case *apievents.TaskExit:
		if e.ID != e.ContainerID { // an exec'd process, not the container's own
			return
		}
		ev = Event{Container: e.ContainerID, Kind: Exit, At: e.ExitedAt.AsTime(), Code: e.ExitStatus}
	default:
		return
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.of[ev.Container] = append(r.of[ev.Container], ev)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// All returns every event so far, in the order containerd published them.
func (r *Recorder) All() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Of returns the events of one container, in order.
func (r *Recorder) Of(container string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.of[container])
}

// Times returns the times of one container's events of a kind, in order.
func (r *Recorder) Times(container string, kind Kind) []time.Time {
	var out []time.Time
	for _, e := range r.Of(container) {
		if e.Kind == kind {
			out = append(out, e.At)
		}
	}
	return out
}

// FirstAfter returns the first event of a kind of container at or after t.
func (r *Recorder) FirstAfter(container string, kind Kind, t time.Time) (Event, bool) {
	for _, e := range r.Of(container) {
		if e.Kind == kind && !e.At.Before(t) {
			return e, true
		}
	}
	return Event{}, false
}

// WaitFor waits for container's first event of a kind at or after t.
func (r *Recorder) WaitFor(ctx context.Context, container string, kind Kind, t time.Time) (Event, error) {
	var e Event
	err := r.Wait(ctx, func() bool {
		var ok bool
		e, ok = r.FirstAfter(container, kind, t)
		return ok
	})
	if err != nil {
		return e, fmt.Errorf("no %s of %s since %s: %w", kind, container, t.Format(time.RFC3339Nano), err)
	}
	return e, nil
}

// Restarts returns, for each exit of container that a start followed, the
// time from the exit to that start (containerd's times), in order.
func (r *Recorder) Restarts(container string) []time.Duration {
	var out []time.Duration
	var exited time.Time
	for _, e := range r.Of(container) {
		switch {
		case e.Kind == Exit:
			exited = e.At
		case !exited.IsZero():
			out = append(out, e.At.Sub(exited))
			exited = time.Time{}
		}
	}
	return out
}

// Gaps returns the times the subscription was down.
func (r *Recorder) Gaps() []Gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.gaps)
}

// InGap reports whether any subscription gap overlaps [from, to].
func (r *Recorder) InGap(from, to time.Time) bool {
	for _, g := range r.Gaps() {
		if !g.To.Before(from) && !g.From.After(to) {
			return true
		}
	}
	return false
}

// Wait waits until cond holds, trying it again at each event (and every
// second, for conditions on the clock), or fails when ctx ends.
func (r *Recorder) Wait(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
