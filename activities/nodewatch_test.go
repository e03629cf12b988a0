package activities_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// reports records what a node watch reported; failNext fails that many reports.
type reports struct {
	mu       sync.Mutex
	got      []activities.ExitReport
	takeover []bool
	failNext int
}

func (r *reports) ReportExit(_ context.Context, rep activities.ExitReport, takeover bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failNext > 0 {
		r.failNext--
		return errors.New("server unavailable")
	}
	r.got = append(r.got, rep)
	r.takeover = append(r.takeover, takeover)
	return nil
}

// of returns the reports for id so far.
func (r *reports) of(id replica.ID) (out []activities.ExitReport, takeover []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rep := range r.got {
		if rep.ID == id {
			out = append(out, rep)
			takeover = append(takeover, r.takeover[i])
		}
	}
	return out, takeover
}

// waitFor polls until cond holds or fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startFake(t *testing.T, f *runtimetest.Fake, id replica.ID) {
	t.Helper()
	ctx := context.Background()
	if err := f.Create(ctx, id, busybox); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// TestWatchNode: an exit from before the watch is found and reported as a
// takeover; each later exit is reported once (not again by the scans), with
// the OOM kill that preceded it; an exit after the runtime's event stream
// broke is still reported; a report that failed is made by the next scan; a
// container whose task vanished is reported failed at its last start.
func TestWatchNode(t *testing.T) {
	f := runtimetest.New()
	before := replica.ID{Deployment: "shop", Service: "old", Replica: 1}
	healthy := replica.ID{Deployment: "shop", Service: "web", Replica: 1}
	oom := replica.ID{Deployment: "shop", Service: "oom", Replica: 1}
	later := replica.ID{Deployment: "shop", Service: "later", Replica: 1}
	for _, id := range []replica.ID{before, healthy, oom, later} {
		startFake(t, f, id)
	}
	f.Exit(before, 2)
	rep := &reports{}
	h := newHarness(t, f, activities.Options{Reporter: rep})

	done := make(chan error, 1)
	go func() {
		_, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{
			Node: "n1", For: 4 * time.Second, ScanInterval: 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond})
		done <- err
	}()

	waitFor(t, "the exit from before the watch", func() bool { r, _ := rep.of(before); return len(r) == 1 })
	if r, tk := rep.of(before); r[0].ExitCode != 2 || !tk[0] {
		t.Fatalf("report %+v (takeover %v), want exit 2 found at takeover", r[0], tk[0])
	}
	waitFor(t, "the event stream", func() bool { return f.Subscribers() == 1 })

	f.Exit(healthy, 3)
	waitFor(t, "the exit of "+healthy.Ref(), func() bool { r, _ := rep.of(healthy); return len(r) == 1 })
	st, _ := f.Container(healthy)
	if r, tk := rep.of(healthy); r[0].ExitCode != 3 || !r[0].ExitedAt.Equal(st.State.ExitedAt) || tk[0] {
		t.Fatalf("report %+v (takeover %v), want exit 3 at %v from the event", r[0], tk[0], st.State.ExitedAt)
	}

	f.OOM(oom)
	f.Exit(oom, 137)
	waitFor(t, "the OOM kill", func() bool { r, _ := rep.of(oom); return len(r) == 1 })
	if r, _ := rep.of(oom); !r[0].OOMKilled || r[0].ExitCode != 137 {
		t.Fatalf("report %+v, want 137 OOMKilled", r[0])
	}

	f.BreakEvents(runtime.ErrUnavailable)
	rep.mu.Lock()
	rep.failNext = 1
	rep.mu.Unlock()
	f.Exit(later, 4)
	waitFor(t, "the exit after the stream broke", func() bool { r, _ := rep.of(later); return len(r) == 1 })

	// The task vanishes (e.g. the host rebooted): Lost, naming the task by
	// its start.
	startFake(t, f, healthy)
	snap, _ := f.Container(healthy)
	f.LoseTask(healthy)
	waitFor(t, "the vanished task", func() bool { r, _ := rep.of(healthy); return len(r) == 2 })
	if r, _ := rep.of(healthy); r[1].ExitCode != runtime.FailedExitCode || !r[1].ExitedAt.Equal(snap.StartedAt.UTC()) ||
		!r[1].StartedAt.Equal(snap.StartedAt) || r[1].Cause != runtime.ExitLost {
		t.Fatalf("report %+v, want -1 Lost at the last start %v, naming that task", r[1], snap.StartedAt)
	}

	time.Sleep(300 * time.Millisecond) // a few more scans: nothing is reported twice
	for _, id := range []replica.ID{before, oom, later} {
		if r, _ := rep.of(id); len(r) != 1 {
			t.Errorf("%s reported %d times, want once: %+v", id.Ref(), len(r), r)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("WatchNode = %v, want nil after its time", err)
	}
	if h.Heartbeats() == 0 {
		t.Error("the node watch never heartbeated")
	}
}

// roster is a fixed Roster.
type roster struct {
	mu      sync.Mutex
	running []replica.ID
	calls   int
	owned   map[replica.ID]bool
	// failNext fails that many Running calls.
	failNext int
	// pending is what PendingStops answers.
	pending []activities.StopInput
	// moved are the replicas supervised on another node now.
	moved map[replica.ID]string
}

func (r *roster) PendingStops(_ context.Context, node string) ([]activities.StopInput, error) {
	if node != "n1" {
		return nil, errors.New("wrong node " + node)
	}
	return r.pending, nil
}

func (r *roster) MovedTo(_ context.Context, id replica.ID, node string) (string, error) {
	if node != "n1" {
		return "", errors.New("wrong node " + node)
	}
	return r.moved[id], nil
}

func (r *roster) Owns(_ context.Context, id replica.ID, node string) (bool, error) {
	if node != "n1" {
		return false, errors.New("wrong node " + node)
	}
	return r.owned[id], nil
}

func (r *roster) Running(_ context.Context, node string) ([]replica.ID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if node != "n1" {
		return nil, errors.New("wrong node " + node)
	}
	if r.failNext > 0 {
		r.failNext--
		return nil, errors.New("visibility unavailable")
	}
	return append([]replica.ID(nil), r.running...), nil
}

func (r *roster) set(ids ...replica.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = ids
}

// TestWatchNodeReconciles: a replica that should run on the node and has no
// container there (removed while no watch ran, or lost with containerd's
// state) is reported Lost when the watch starts (a takeover) and, later, at
// the next reconciliation that gets an answer; one that has its container
// is not. The roster is asked once per reconciliation, failed or not.
func TestWatchNodeReconciles(t *testing.T) {
	f := runtimetest.New()
	healthy := replica.ID{Deployment: "shop", Service: "web", Replica: 1}
	gone := replica.ID{Deployment: "shop", Service: "web", Replica: 2}
	later := replica.ID{Deployment: "shop", Service: "db", Replica: 1}
	startFake(t, f, healthy)
	rep, ros := &reports{}, &roster{}
	ros.set(healthy, gone)
	h := newHarness(t, f, activities.Options{Reporter: rep, Roster: ros})
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{
			Node: "n1", For: 5 * time.Second, ScanInterval: 50 * time.Millisecond, ReconcileInterval: time.Second})
		done <- err
	}()
	waitFor(t, "the lost replica", func() bool { r, _ := rep.of(gone); return len(r) == 1 })
	r, tk := rep.of(gone)
	if r[0].ExitCode != runtime.FailedExitCode || r[0].Cause != runtime.ExitLost || !tk[0] || r[0].ExitedAt.Before(began) {
		t.Fatalf("report %+v (takeover %v), want -1 Lost found at takeover, dated after %v", r[0], tk[0], began)
	}
	ros.mu.Lock()
	ros.running = append(ros.running, later)
	ros.failNext = 2 // the next two answers fail: the one after finds later
	ros.mu.Unlock()
	waitFor(t, "the next reconciliation", func() bool { r, _ := rep.of(later); return len(r) == 1 })
	if r, tk := rep.of(later); r[0].Cause != runtime.ExitLost || tk[0] {
		t.Fatalf("report %+v (takeover %v), want Lost, not a takeover", r[0], tk[0])
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r, _ := rep.of(healthy); len(r) != 0 {
		t.Errorf("the running replica was reported: %+v", r)
	}
	if r, _ := rep.of(gone); len(r) < 2 || len(r) > 4 {
		t.Errorf("the lost replica was reported %d times in 5 s, want once per answered reconciliation", len(r))
	}
	ros.mu.Lock()
	defer ros.mu.Unlock()
	if ros.calls > 6 {
		t.Errorf("the roster was asked %d times in 5 s, want once a second, failed or not", ros.calls)
	}
}

// A stop unsupervise --stop could not do (no worker) is done when a watch
// starts on the node: the container is stopped and removed, its volumes
// deleted as asked; an orphan without a pending stop is left alone, and a
// pending stop whose container is gone costs nothing.
func TestWatchNodeDoesPendingStops(t *testing.T) {
	f := runtimetest.New()
	pending, orphan, gone := shopWeb(1), shopWeb(2), shopWeb(3)
	for _, id := range []replica.ID{pending, orphan} {
		startFake(t, f, id)
	}
	ros := &roster{pending: []activities.StopInput{
		{ID: pending, Grace: time.Second, Remove: true, RemoveVolumes: true},
		{ID: gone, Grace: time.Second, Remove: true},
	}}
	h := newHarness(t, f, activities.Options{Reporter: &reports{}, Roster: ros})
	// Twice: the next watch finds the container gone and does nothing.
	for range 2 {
		if _, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{Node: "n1", For: 500 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.Calls(runtimetest.OpStop); n != 1 {
		t.Errorf("%d stops, want one", n)
	}
	if _, ok := f.Container(pending); ok {
		t.Error("the container with a pending stop is still there")
	}
	if n := f.Calls(runtimetest.OpRemoveVolumes); n != 1 {
		t.Errorf("volumes removed %d times, want once (asked for one container)", n)
	}
	if c, ok := f.Container(orphan); !ok || c.State.Status != runtime.StatusRunning {
		t.Errorf("the orphan without a pending stop: %+v (there: %v), want it running", c, ok)
	}
}

// A returning node's watch removes, before anything else, the containers
// of replicas that moved to another node meanwhile; it leaves its own
// replicas' and orphans' alone, and reports no exit of what it removed.
func TestWatchNodeRemovesMovedReplicas(t *testing.T) {
	f := runtimetest.New()
	moved, here, orphan := shopWeb(1), shopWeb(2), shopWeb(3)
	for _, id := range []replica.ID{moved, here, orphan} {
		startFake(t, f, id)
	}
	ros := &roster{running: []replica.ID{here}, moved: map[replica.ID]string{moved: "n2"}}
	rep := &reports{}
	h := newHarness(t, f, activities.Options{Reporter: rep, Roster: ros})
	if _, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{Node: "n1", For: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Container(moved); ok {
		t.Error("the container of the replica that moved away is still there")
	}
	for _, id := range []replica.ID{here, orphan} {
		if c, ok := f.Container(id); !ok || c.State.Status != runtime.StatusRunning {
			t.Errorf("%s: %+v (there: %v), want it running", id.Ref(), c, ok)
		}
	}
	if r, _ := rep.of(moved); len(r) != 0 {
		t.Errorf("reported the removed container's exit: %+v", r)
	}
}

// shopWeb is replica n of shop/web.
func shopWeb(n int) replica.ID { return replica.ID{Deployment: "shop", Service: "web", Replica: n} }

// A watch started for another worker instance's claim (an older claim's
// watch, retried on this worker) ends at once, typed, and reports nothing.
func TestWatchOfAnotherInstanceEndsAtOnce(t *testing.T) {
	f := runtimetest.New()
	id := replica.ID{Deployment: "shop", Service: "web", Replica: 1}
	startFake(t, f, id)
	f.Exit(id, 2)
	rep := &reports{}
	h := newHarness(t, f, activities.Options{Reporter: rep, Instance: "new"})
	_, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{Node: "n1", Instance: "old", For: time.Minute})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != replica.ErrTypeNotNodeOwner || !appErr.NonRetryable() {
		t.Fatalf("watch of another instance: %v; want a non-retryable %s", err, replica.ErrTypeNotNodeOwner)
	}
	if r, _ := rep.of(id); len(r) != 0 {
		t.Fatalf("reported %+v", r)
	}
}

// An exit a watch delivered is recorded on the container: the next watch
// (after a worker restart) does not report it again, but a new exit of that
// container is reported, even one dated earlier. A Lost report is not
// recorded; nor is an exit whose record failed, which is reported again.
func TestNewWatchDoesNotReportDeliveredExitsAgain(t *testing.T) {
	f := runtimetest.New()
	parked, lost := shopWeb(1), shopWeb(2)
	startFake(t, f, parked)
	startFake(t, f, lost)
	f.Exit(parked, 2)
	rep, ros := &reports{}, &roster{}
	ros.set(lost)
	f.Delete(lost)
	h := newHarness(t, f, activities.Options{Reporter: rep, Roster: ros})
	watch := func() {
		t.Helper()
		if _, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{
			Node: "n1", For: 500 * time.Millisecond, ScanInterval: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	watch()
	if r, _ := rep.of(parked); len(r) != 1 || r[0].ExitCode != 2 {
		t.Fatalf("watch 1 reported %+v, want the exit once", r)
	}
	watch() // as after a worker restart
	if r, _ := rep.of(parked); len(r) != 1 {
		t.Fatalf("watch 2 reported the delivered exit again: %+v", r)
	}
	if r, _ := rep.of(lost); len(r) != 2 {
		t.Errorf("the missing container was reported %d times by two watches, want once each", len(r))
	}
	// Restarted while no watch ran, and exited again: reported.
	startFake(t, f, parked)
	f.Exit(parked, 3)
	watch()
	if r, _ := rep.of(parked); len(r) != 2 || r[1].ExitCode != 3 {
		t.Fatalf("watch 3 reported %+v, want the new exit too", r)
	}
	// The node's clock steps back: the next exit is dated before the one
	// recorded, and is new all the same. Its record fails: the next watch
	// reports it again (a repeat the replica ignores), the one after not.
	f.SetClock(func() time.Time { return time.Now().Add(-time.Hour) })
	startFake(t, f, parked)
	f.Exit(parked, 4)
	f.FailNext(runtimetest.OpMarkReported, runtime.ErrUnavailable)
	watch()
	watch()
	watch()
	r, _ := rep.of(parked)
	if len(r) != 4 || r[2].ExitCode != 4 || r[3].ExitCode != 4 {
		t.Fatalf("reports %+v, want the exit dated earlier reported, and once more after its record failed", r)
	}
}
