package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
)

// taskEvents records the task starts and exits a containerd publishes, with
// containerd's own timestamps: the exit time the shim reports and the time
// containerd published the start. Every latency in the bench comes from
// these, for Vigil, for the floor and for Docker alike.
type taskEvents struct {
	mu     sync.Mutex
	starts map[string][]time.Time // container ID -> start times
	exits  map[string][]time.Time // container ID -> exit times
	notify chan struct{}
	errs   <-chan error
	close  func()
}

// subscribe starts recording the task events of namespace ("" for all) on
// the containerd at address.
func subscribe(ctx context.Context, address, namespace string) (*taskEvents, error) {
	client, err := containerd.New(address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("containerd events at %s: %w", address, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	filter := `topic=="/tasks/start"`
	exitFilter := `topic=="/tasks/exit"`
	if namespace != "" {
		filter += `,namespace==` + namespace
		exitFilter += `,namespace==` + namespace
	}
	ch, errs := client.Subscribe(ctx, filter, exitFilter)
	te := &taskEvents{
		starts: map[string][]time.Time{},
		exits:  map[string][]time.Time{},
		notify: make(chan struct{}, 1),
		errs:   errs,
		close:  func() { cancel(); client.Close() },
	}
	go func() {
		for env := range ch {
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			te.mu.Lock()
			switch e := ev.(type) {
			case *apievents.TaskStart:
				te.starts[e.ContainerID] = append(te.starts[e.ContainerID], env.Timestamp)
			case *apievents.TaskExit:
				if e.ID == e.ContainerID { // the task, not an exec'd process
					te.exits[e.ContainerID] = append(te.exits[e.ContainerID], e.ExitedAt.AsTime())
				}
			}
			te.mu.Unlock()
			select {
			case te.notify <- struct{}{}:
			default:
			}
		}
	}()
	// The subscription is live once containerd has accepted it; a start
	// published before that would be missed.
	time.Sleep(200 * time.Millisecond)
	return te, nil
}

func (te *taskEvents) Close() { te.close() }

// startsAfter is the first start of container at or after t.
func (te *taskEvents) startsAfter(container string, t time.Time) (time.Time, bool) {
	te.mu.Lock()
	defer te.mu.Unlock()
	for _, s := range te.starts[container] {
		if !s.Before(t) {
			return s, true
		}
	}
	return time.Time{}, false
}

func (te *taskEvents) exitsOf(container string) []time.Time {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]time.Time(nil), te.exits[container]...)
}

// restartLatencies pairs each exit of container with the next start:
// latency = start - exit. It returns at most n pairs.
func (te *taskEvents) restartLatencies(container string, n int) []time.Duration {
	te.mu.Lock()
	defer te.mu.Unlock()
	var out []time.Duration
	starts := te.starts[container]
	for _, exit := range te.exits[container] {
		i := sort.Search(len(starts), func(i int) bool { return starts[i].After(exit) })
		if i == len(starts) || len(out) == n {
			break
		}
		out = append(out, starts[i].Sub(exit))
	}
	return out
}

// waitRestarts waits until container has n exit->start pairs.
func (te *taskEvents) waitRestarts(ctx context.Context, container string, n int) ([]time.Duration, error) {
	for {
		if l := te.restartLatencies(container, n); len(l) >= n {
			return l, nil
		}
		select {
		case <-te.notify:
		case <-time.After(time.Second):
		case err := <-te.errs:
			return nil, fmt.Errorf("containerd event stream: %w", err)
		case <-ctx.Done():
			got := te.restartLatencies(container, n)
			return got, fmt.Errorf("%s: %d of %d restarts seen: %w", container, len(got), n, ctx.Err())
		}
	}
}

// waitAllStarted waits until every container has started at or after t and
// returns each one's first such start.
func (te *taskEvents) waitAllStarted(ctx context.Context, containers []string, t time.Time) (map[string]time.Time, error) {
	for {
		got := map[string]time.Time{}
		for _, c := range containers {
			if s, ok := te.startsAfter(c, t); ok {
				got[c] = s
			}
		}
		if len(got) == len(containers) {
			return got, nil
		}
		select {
		case <-te.notify:
		case <-time.After(time.Second):
		case err := <-te.errs:
			return got, fmt.Errorf("containerd event stream: %w", err)
		case <-ctx.Done():
			return got, fmt.Errorf("%d of %d containers started again: %w", len(got), len(containers), ctx.Err())
		}
	}
}
