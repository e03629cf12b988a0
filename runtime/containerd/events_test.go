package containerd_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
)

func TestParseContainerName(t *testing.T) {
	id := replica.ID{Deployment: "shop", Service: "api-rep-x", Replica: 12}
	got, ok := vcontainerd.ParseContainerName(id.ContainerName())
	if !ok || got != id {
		t.Fatalf("round trip of %+v = %+v, %v", id, got, ok)
	}
	for _, bad := range []string{"", "shop", "shop.api", "shop.api-rep-0", "shop.api-rep-x", ".api-rep-1", "shop.-rep-1", "shop.api-rep-01"} {
		if got, ok := vcontainerd.ParseContainerName(bad); ok {
			t.Errorf("ParseContainerName(%q) = %+v, want not Vigil's", bad, got)
		}
	}
}

// nextEvent is the next event of the stream, failing the test on an error or timeout.
func nextEvent(t *testing.T, events <-chan runtime.TaskEvent, errs <-chan error) runtime.TaskEvent {
	t.Helper()
	select {
	case ev := <-events:
		if ev.Kind == runtime.TaskStarted {
			return nextEvent(t, events, errs)
		}
		return ev
	case err := <-errs:
		t.Fatalf("event stream: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30 s")
	}
	return runtime.TaskEvent{}
}

// TestEventsAndList: containerd's own exit code and time reach Events, the
// same exit is what List reports afterwards, and a container without a task
// is Failed. A daemon restart ends the stream with ErrUnavailable; a new
// subscription after it works.
func TestEventsAndList(t *testing.T) {
	d, rt, ctx, crash := setup(t, "evcrash")
	healthy, never := newID("evhealthy"), newID("evnever")

	evCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := rt.Events(evCtx)
	time.Sleep(200 * time.Millisecond) // the subscription is live once containerd has it

	began := time.Now()
	run(t, rt, healthy, "sleep 1000")
	run(t, rt, crash, "exit 3")
	ev := nextEvent(t, events, errs)
	if ev.Kind != runtime.TaskExited || ev.ID != crash || ev.ExitCode != 3 {
		t.Fatalf("event = %+v, want the exit 3 of %s", ev, crash.Ref())
	}
	if ev.ExitedAt.Before(began) || ev.ExitedAt.After(time.Now()) {
		t.Fatalf("exited at %v, not between %v and now", ev.ExitedAt, began)
	}
	if err := rt.Create(ctx, never, containerdtest.TestImage("sleep 1")); err != nil {
		t.Fatal(err)
	}

	list, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[replica.ID]runtime.ContainerInfo{}
	for _, c := range list {
		byID[c.ID] = c
	}
	if got := byID[crash].State; got.Status != runtime.StatusExited || got.ExitCode != 3 || !got.ExitedAt.Equal(ev.ExitedAt) {
		t.Errorf("List: %s = %+v, want the exit of the event (%v)", crash.Ref(), got, ev.ExitedAt)
	}
	if got := byID[healthy]; got.State.Status != runtime.StatusRunning || got.StartedAt.IsZero() {
		t.Errorf("List: %s = %+v, want Running with a start time", healthy.Ref(), got)
	}
	if got := byID[never].State; got.Status != runtime.StatusFailed {
		t.Errorf("List: %s = %+v, want Failed (no task)", never.Ref(), got)
	}
	// A delivered exit, recorded on the container, reads back exactly.
	if err := rt.MarkReported(ctx, crash, ev.ExitedAt); err != nil {
		t.Fatal(err)
	}
	if list, err = rt.List(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == crash && (!c.ReportedAt.Equal(c.State.ExitedAt) || !c.ReportedAt.Equal(ev.ExitedAt)) {
			t.Errorf("List: %s reported at %v, want its exit time %v", crash.Ref(), c.ReportedAt, c.State.ExitedAt)
		}
	}
	if err := rt.MarkReported(ctx, newID("evgone"), ev.ExitedAt); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Errorf("MarkReported of a missing container = %v, want ErrContainerNotFound", err)
	}

	killTask(t, d, healthy, syscall.SIGKILL)
	if ev := nextEvent(t, events, errs); ev.ID != healthy || ev.ExitCode != 137 {
		t.Fatalf("event = %+v, want the SIGKILL (137) of %s", ev, healthy.Ref())
	}

	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, runtime.ErrUnavailable) {
			t.Fatalf("stream error after a daemon restart = %v, want ErrUnavailable", err)
		}
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event %+v, want the stream to end", ev)
		}
		if err := <-errs; !errors.Is(err, runtime.ErrUnavailable) {
			t.Fatalf("stream error after a daemon restart = %v, want ErrUnavailable", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end when containerd restarted")
	}
	events, errs = rt.Events(evCtx)
	time.Sleep(200 * time.Millisecond)
	if _, err := rt.Start(ctx, crash); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events, errs); ev.ID != crash || ev.ExitCode != 3 {
		t.Fatalf("event after resubscribing = %+v, want the exit 3 of %s", ev, crash.Ref())
	}
}

// A task that exits at once is explained as itself: the state read as soon
// as its exit event arrives names the task the start returned (the node
// watch names the task an exit is about by it), not the task before.
func TestCrashAtStartNamesItsTask(t *testing.T) {
	_, rt, ctx, id := setup(t, "crashstart")
	evCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := rt.Events(evCtx)
	time.Sleep(200 * time.Millisecond) // the subscription is live once containerd has it
	if err := rt.Create(ctx, id, containerdtest.TestImage("exit 3")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		info, err := rt.Start(ctx, id)
		if err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		ev := nextEvent(t, events, errs)
		st, err := rt.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != runtime.TaskExited || !st.StartedAt.Equal(info.StartedAt) {
			t.Fatalf("start %d: event %+v, state's task started at %v; want the exit of the task started at %v", i+1, ev, st.StartedAt, info.StartedAt)
		}
	}
}
