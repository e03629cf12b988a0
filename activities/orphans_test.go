package activities_test

import (
	"testing"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// Orphans lists the containers no replica owns, running or not, and
// removes them (and only them) when asked.
func TestOrphans(t *testing.T) {
	f := runtimetest.New()
	owned := replica.ID{Deployment: "shop", Service: "web", Replica: 1}
	left := replica.ID{Deployment: "shop", Service: "web", Replica: 2}
	exited := replica.ID{Deployment: "old", Service: "db", Replica: 1}
	for _, id := range []replica.ID{owned, left, exited} {
		startFake(t, f, id)
	}
	f.Exit(exited, 0)
	h := newHarness(t, f, activities.Options{Roster: &roster{owned: map[replica.ID]bool{owned: true}}})
	orphans := func(remove bool) []activities.Orphan {
		t.Helper()
		var res activities.OrphansResult
		if err := h.run(replica.OrphansName, activities.OrphansInput{Node: "n1", Remove: remove}, &res); err != nil {
			t.Fatal(err)
		}
		return res.Orphans
	}
	got := orphans(false)
	want := map[replica.ID]runtime.Status{left: runtime.StatusRunning, exited: runtime.StatusExited}
	if len(got) != len(want) {
		t.Fatalf("orphans %+v, want %v", got, want)
	}
	for _, o := range got {
		if want[o.ID] != o.Status || o.Removed {
			t.Fatalf("orphan %+v, want one of %v, not removed", o, want)
		}
	}
	if _, ok := f.Container(left); !ok {
		t.Fatal("listing removed an orphan")
	}
	for _, o := range orphans(true) {
		if !o.Removed {
			t.Fatalf("orphan %+v not removed", o)
		}
		if _, ok := f.Container(o.ID); ok {
			t.Fatalf("%s is still there", o.ID.Ref())
		}
	}
	if _, ok := f.Container(owned); !ok {
		t.Fatal("the owned container was removed")
	}
	if got := orphans(false); len(got) != 0 {
		t.Fatalf("orphans after --remove: %+v", got)
	}
}
