package activities_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// renewals is a fake server's answers to a watch's own heartbeats.
type renewals struct {
	mu     sync.Mutex
	sent   int
	fail   bool  // answer with an error (the node is cut off)
	answer error // then answer this for good (e.g. cancelled)
}

func (r *renewals) renew(ctx context.Context, _ []byte, _ ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	switch {
	case r.answer != nil:
		return r.answer
	case r.fail:
		return errors.New("unavailable")
	}
	return nil
}

func (r *renewals) set(fail bool, answer error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail, r.answer = fail, answer
}

func (r *renewals) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// A watch with Lease renews the node's lease itself, at once and every
// HeartbeatInterval, and writes the time it sent each renewal the server
// took to the lease file (not those it did not); the SDK's own heartbeat is
// not sent. When the server says the watch was cancelled, it ends.
func TestWatchNodeRenewsTheLease(t *testing.T) {
	dir := t.TempDir()
	ren := &renewals{}
	h := newHarness(t, runtimetest.New(), activities.Options{Reporter: &reports{}, Renew: ren.renew, LeaseDir: dir})
	before := lease.Now()
	done := make(chan error, 1)
	go func() {
		_, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{
			Node: "n1", For: time.Minute, HeartbeatInterval: 50 * time.Millisecond, Lease: true})
		done <- err
	}()
	waitFor(t, "the first renewal", func() bool { _, err := lease.Read(dir); return err == nil })
	l, _ := lease.Read(dir)
	if l.Node != "n1" || l.Sent < before || l.Sent > lease.Now() {
		t.Fatalf("lease %+v; want node n1 sent after %s", l, before)
	}
	waitFor(t, "renewals", func() bool { return ren.count() >= 4 })

	ren.set(true, nil)
	n := ren.count()
	waitFor(t, "failed renewals", func() bool { return ren.count() >= n+3 })
	cut, _ := lease.Read(dir)
	time.Sleep(200 * time.Millisecond)
	if l, _ := lease.Read(dir); l.Sent != cut.Sent {
		t.Fatalf("the lease moved on (%s -> %s) though no renewal succeeded", cut.Sent, l.Sent)
	}
	ren.set(false, nil)
	waitFor(t, "the lease renewed again", func() bool { l, _ := lease.Read(dir); return l.Sent > cut.Sent })
	if h.Heartbeats() != 0 {
		t.Fatalf("%d SDK heartbeats; want the renewals only", h.Heartbeats())
	}

	ren.set(false, temporal.NewCanceledError())
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the cancelled watch returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end when its renewal said it was cancelled")
	}
}

// A container's exit is its fence's (Cause Fenced) when it has a fence,
// exited with the fence's status, and the node's lease was older than the
// fence's limit then: here after the 20 s a worker was dead for, learned
// from the lease file its predecessor left. The same exit of a container
// without a fence, or under a fresh lease, is a SIGKILL.
func TestWatchNodeTellsAFence(t *testing.T) {
	dir := t.TempDir()
	if err := lease.Write(dir, lease.Lease{Node: "n1", Sent: lease.Now() - 20*time.Second, At: time.Now().Add(-20 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	f := runtimetest.New()
	fenced := busybox
	fenced.Fence = 10 * time.Second
	movable := replica.ID{Deployment: "shop", Service: "web", Replica: 1}
	pinned := replica.ID{Deployment: "shop", Service: "db", Replica: 1}
	for id, spec := range map[replica.ID]runtime.ContainerSpec{movable: fenced, pinned: busybox} {
		if err := f.Create(context.Background(), id, spec); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		f.Exit(id, lease.FencedExit)
	}
	rep := &reports{}
	ren := &renewals{}
	h := newHarness(t, f, activities.Options{Reporter: rep, Renew: ren.renew, LeaseDir: dir})
	done := make(chan error, 1)
	go func() {
		_, err := h.env.ExecuteActivity(replica.WatchNodeName, activities.WatchNodeInput{
			Node: "n1", For: 3 * time.Second, ScanInterval: 50 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond, Lease: true})
		done <- err
	}()
	waitFor(t, "both exits", func() bool {
		a, _ := rep.of(movable)
		b, _ := rep.of(pinned)
		return len(a) == 1 && len(b) == 1
	})
	if r, _ := rep.of(movable); r[0].Cause != runtime.ExitFenced {
		t.Fatalf("the fenced container's exit: %+v; want Fenced", r[0])
	}
	if r, _ := rep.of(pinned); r[0].Cause != runtime.ExitSignaled {
		t.Fatalf("the pinned container's exit: %+v; want Signaled", r[0])
	}
	// Under a fresh lease, the same exit is a SIGKILL's.
	waitFor(t, "renewals", func() bool { return ren.count() >= 3 })
	if _, err := f.Start(context.Background(), movable); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	f.Exit(movable, lease.FencedExit)
	waitFor(t, "the second exit", func() bool { r, _ := rep.of(movable); return len(r) == 2 })
	if r, _ := rep.of(movable); r[1].Cause != runtime.ExitSignaled {
		t.Fatalf("an exit 137 under a fresh lease: %+v; want Signaled", r[1])
	}
	<-done
}
