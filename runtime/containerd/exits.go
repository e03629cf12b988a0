package containerd

import (
	"context"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Labels that explain a task's exit. They are set when it happens, so the
// exit reads the same to every worker and after a worker restart.
const (
	// LabelOOMAt is when containerd reported an OOM kill of the task (RFC 3339).
	LabelOOMAt = "vigil.oom-at"
	// LabelUnhealthyAt is when Vigil stopped the task because its liveness
	// probe failed (RFC 3339).
	LabelUnhealthyAt = "vigil.unhealthy-at"
	// LabelMemoryLimit is the container's memory limit in bytes, if it has one.
	LabelMemoryLimit = "vigil.memory-limit"
)

// oomGrace bounds how long an exit by SIGKILL waits for the OOM record: the
// exit and the OOM event travel separately, and the exit may come first.
const oomGrace = time.Second

// recordOOMs follows containerd's /tasks/oom events and marks each OOM-killed
// container with LabelOOMAt, until Close. A broken stream is subscribed again.
func (r *Runtime) recordOOMs() {
	defer close(r.oomDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-r.stop
		cancel()
	}()
	for ctx.Err() == nil {
		events, errs := r.Events(ctx)
		for ev := range events {
			if ev.Kind == runtime.TaskOOM {
				r.markOOM(ctx, ev.ID)
			}
		}
		<-errs
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (r *Runtime) markOOM(ctx context.Context, id replica.ID) {
	r.setTimeLabel(ctx, id, LabelOOMAt)
}

// MarkUnhealthy records that the container is about to be stopped because its
// liveness probe failed: its exit then reads Unhealthy. A task that is no
// longer running is not marked (its exit is already what it is): the
// error says so.
func (r *Runtime) MarkUnhealthy(ctx context.Context, id replica.ID) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != runtime.StatusRunning {
		return fmt.Errorf("mark %s unhealthy: its task is %s, not running", id.Ref(), st.Status)
	}
	return r.setTimeLabel(ctx, id, LabelUnhealthyAt)
}

// StopUnhealthy marks the task that started at task Unhealthy and stops it
// with grace (probe.Target), under the container's lock, so that a task
// started again meanwhile (a fast restart) is never the one stopped:
// runtime.ErrTaskChanged then.
func (r *Runtime) StopUnhealthy(ctx context.Context, id replica.ID, task time.Time, grace time.Duration) error {
	return r.stopIf(ctx, id, grace, func(ctx context.Context, c containerd.Container) error {
		labels, err := c.Labels(ctx)
		if err != nil {
			return wrap("stop", c.ID(), err, runtime.ErrContainerNotFound)
		}
		if started, _ := time.Parse(time.RFC3339Nano, labels[LabelStartedAt]); !task.IsZero() && !started.Equal(task) {
			return fmt.Errorf("stop %s as unhealthy: %w", id.Ref(), runtime.ErrTaskChanged)
		}
		return r.MarkUnhealthy(ctx, id)
	})
}

// MarkReported records the exit at exitedAt as delivered (LabelExitReported).
func (r *Runtime) MarkReported(ctx context.Context, id replica.ID, exitedAt time.Time) error {
	return r.setLabel(ctx, id, LabelExitReported, exitedAt)
}

func (r *Runtime) setTimeLabel(ctx context.Context, id replica.ID, label string) error {
	return r.setLabel(ctx, id, label, time.Now())
}

func (r *Runtime) setLabel(ctx context.Context, id replica.ID, label string, at time.Time) error {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return wrap("label", name, err, runtime.ErrContainerNotFound)
	}
	_, err = c.SetLabels(ctx, map[string]string{label: at.UTC().Format(time.RFC3339Nano)})
	return wrap("label", name, err, runtime.ErrContainerNotFound)
}

// explain fills in an exit's start time and its cause from the container's
// labels: OOMKilled or Unhealthy when recorded since the task started.
func explain(st runtime.ContainerState, labels map[string]string) runtime.ContainerState {
	if st.Status != runtime.StatusExited {
		return st
	}
	started, _ := time.Parse(time.RFC3339Nano, labels[LabelStartedAt])
	st.StartedAt = started
	st.Fence, _ = time.ParseDuration(labels[LabelFence])
	since := func(label string) bool {
		at, err := time.Parse(time.RFC3339Nano, labels[label])
		return err == nil && !at.Before(started)
	}
	var marked runtime.ExitReason
	switch {
	case since(LabelUnhealthyAt):
		marked = runtime.ExitUnhealthy
	case since(LabelOOMAt):
		marked = runtime.ExitOOMKilled
	}
	st.Exit = st.Exit.Classify(marked)
	return st
}

// explainExit is explain for a container just seen to exit: an exit by
// SIGKILL of a container with a memory limit waits up to oomGrace for the
// OOM record to arrive. (Only a limit of its own gives a container an OOM
// event; other SIGKILLs, e.g. a stop's, are not held up.)
func explainExit(ctx context.Context, c containerd.Container, st runtime.ContainerState) runtime.ContainerState {
	labels, _ := c.Labels(ctx)
	out := explain(st, labels)
	if st.Status != runtime.StatusExited || st.Signal != "SIGKILL" || out.Cause != st.Cause || labels[LabelMemoryLimit] == "" {
		return out
	}
	deadline := time.Now().Add(oomGrace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		if labels, err := c.Labels(ctx); err == nil {
			if out = explain(st, labels); out.Cause != st.Cause {
				break
			}
		}
	}
	return out
}
