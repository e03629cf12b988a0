package ctrevents_test

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/replica"
)

// The recorder keeps a container's starts and exits in order, with the exit
// status, and subscribes again after containerd restarts (a gap).
func TestRecordsAcrossARestart(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Runtime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec, err := ctrevents.Record(ctx, d.Address, d.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()

	id := replica.ID{Deployment: "ev", Service: "once", Replica: 1}
	name := id.ContainerName()
	if err := rt.Create(ctx, id, containerdtest.TestImage("exit 7")); err != nil {
		t.Fatal(err)
	}
	exits := func(n int) func() bool {
		return func() bool { return len(rec.Times(name, ctrevents.Exit)) >= n }
	}
	began := time.Now()
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(ctx, exits(1)); err != nil {
		t.Fatalf("no exit recorded: %v (events %v)", err, rec.All())
	}
	evs := rec.Of(name)
	if len(evs) != 2 || evs[0].Kind != ctrevents.Start || evs[1].Kind != ctrevents.Exit || evs[1].Code != 7 {
		t.Fatalf("events %+v, want a start and an exit with status 7", evs)
	}
	if evs[0].At.Before(began.Add(-time.Second)) || evs[1].At.Before(evs[0].At) {
		t.Errorf("times: start %s, exit %s, the start began at %s", evs[0].At, evs[1].At, began)
	}
	if len(rec.Gaps()) != 0 {
		t.Errorf("gaps %v before any restart", rec.Gaps())
	}

	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The recorder finds the restarted containerd on its own.
	if err := rec.Wait(ctx, func() bool { return len(rec.Gaps()) == 1 }); err != nil {
		t.Fatalf("no gap recorded for the restart: %v", err)
	}
	time.Sleep(time.Second) // the new subscription is live
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(ctx, exits(2)); err != nil {
		t.Fatalf("no exit recorded after the restart: %v (events %v)", err, rec.All())
	}
	if s, ok := rec.FirstAfter(name, ctrevents.Start, evs[1].At); !ok || rec.InGap(s.At, s.At) {
		t.Errorf("second start %+v (found %v) falls in a gap %v", s, ok, rec.Gaps())
	}
	if r := rec.Restarts(name); len(r) != 1 || r[0] <= 0 {
		t.Errorf("restarts %v, want one: the first exit to the second start", r)
	}
}
