package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-run/vigil/internal/ctrevents"
)

// taskEvents is containerd's record of task starts and exits, with
// containerd's own timestamps: the exit time the shim reports and the time
// containerd published the start. Every latency in the bench comes from
// these, for Vigil, for the floor and for Docker alike.
type taskEvents struct{ *ctrevents.Recorder }

// subscribe starts recording the task events of namespace on the
// containerd at address.
func subscribe(ctx context.Context, address, namespace string) (*taskEvents, error) {
	rec, err := ctrevents.Record(ctx, address, namespace)
	if err != nil {
		return nil, err
	}
	return &taskEvents{rec}, nil
}

// startsAfter is the first start of container at or after t.
func (te *taskEvents) startsAfter(container string, t time.Time) (time.Time, bool) {
	e, ok := te.FirstAfter(container, ctrevents.Start, t)
	return e.At, ok
}

func (te *taskEvents) exitsOf(container string) []time.Time {
	return te.Times(container, ctrevents.Exit)
}

// restartLatencies is the time from each exit of container to the next
// start, for at most n exits.
func (te *taskEvents) restartLatencies(container string, n int) []time.Duration {
	l := te.Restarts(container)
	return l[:min(n, len(l))]
}

// waitRestarts waits until container has n exit->start pairs.
func (te *taskEvents) waitRestarts(ctx context.Context, container string, n int) ([]time.Duration, error) {
	var got []time.Duration
	err := te.Wait(ctx, func() bool {
		got = te.restartLatencies(container, n)
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("%s: %d of %d restarts seen: %w", container, len(got), n, err)
	}
	return got, nil
}

// waitAllStarted waits until every container has started at or after t and
// returns each one's first such start.
func (te *taskEvents) waitAllStarted(ctx context.Context, containers []string, t time.Time) (map[string]time.Time, error) {
	var got map[string]time.Time
	err := te.Wait(ctx, func() bool {
		got = map[string]time.Time{}
		for _, c := range containers {
			if s, ok := te.startsAfter(c, t); ok {
				got[c] = s
			}
		}
		return len(got) == len(containers)
	})
	if err != nil {
		return got, fmt.Errorf("%d of %d containers started again: %w", len(got), len(containers), err)
	}
	return got, nil
}
