package main

import (
	"context"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
)

// taskEvent is one start or exit of a container's init task, as containerd
// published it.
type taskEvent struct {
	Container string
	Start     bool      // false: exit
	At        time.Time // the envelope's time for a start, the task's exit time for an exit
	Code      uint32    // exits only
}

// gap is a time when the subscription was down (containerd restarting):
// events in it may be missing.
type gap struct{ From, To time.Time }

// recorder keeps containerd's /tasks/start and /tasks/exit events of one
// namespace for the whole soak, resubscribing after containerd restarts.
type recorder struct {
	mu     sync.Mutex
	events []taskEvent
	gaps   []gap
}

// run subscribes until ctx ends. ready is closed once the first subscription is up.
func (r *recorder) run(ctx context.Context, address, namespace string, ready chan<- struct{}) {
	filter := `namespace==` + namespace + `,topic~="^/tasks/(start|exit)$"`
	var down time.Time
	for ctx.Err() == nil {
		client, err := containerd.New(address, containerd.WithTimeout(2*time.Second))
		if err != nil {
			r.markDown(&down)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		subCtx, cancel := context.WithCancel(ctx)
		evs, errs := client.Subscribe(subCtx, filter)
		if !down.IsZero() {
			r.markUp(&down)
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
	recv:
		for {
			select {
			case env := <-evs:
				r.add(env.Topic, env.Timestamp, env.Event)
			case <-errs:
				break recv
			case <-ctx.Done():
				break recv
			}
		}
		cancel()
		client.Close()
		if ctx.Err() == nil {
			r.markDown(&down)
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
}

func (r *recorder) markDown(down *time.Time) {
	if down.IsZero() {
		*down = time.Now()
	}
}

func (r *recorder) markUp(down *time.Time) {
	r.mu.Lock()
	// The stream may open a moment after Subscribe returns: widen the gap.
	r.gaps = append(r.gaps, gap{From: *down, To: time.Now().Add(time.Second)})
	r.mu.Unlock()
	*down = time.Time{}
}

func (r *recorder) add(topic string, at time.Time, payload typeurl.Any) {
	v, err := typeurl.UnmarshalAny(payload)
	if err != nil {
		return
	}
	var ev taskEvent
	switch e := v.(type) {
	case *apievents.TaskStart:
		ev = taskEvent{Container: e.ContainerID, Start: true, At: at}
	case *apievents.TaskExit:
		if e.ID != e.ContainerID { // an exec'd process, not the container's own
			return
		}
		ev = taskEvent{Container: e.ContainerID, At: e.ExitedAt.AsTime(), Code: e.ExitStatus}
	default:
		return
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// of returns the events of one container in the order received.
func (r *recorder) of(container string) []taskEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []taskEvent
	for _, e := range r.events {
		if e.Container == container {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) gapsCopy() []gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gap(nil), r.gaps...)
}

// inGap reports whether any subscription gap overlaps [from, to].
func inGap(gaps []gap, from, to time.Time) bool {
	for _, g := range gaps {
		if !g.To.Before(from) && !g.From.After(to) {
			return true
		}
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
