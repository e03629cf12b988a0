package activities_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// A start that fails once and then works was a passing failure (found by
// the chaos soak, seed 3: containerd still removing the bundle of a task
// deleted behind Vigil's back). It must not be reported as a container
// that cannot run: the workflow would count a restart that never happened.
func TestStartFailingOnceIsNotAFailedStart(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	rt.FailNext(runtimetest.OpStart, errors.New("failed to start shim: mkdir /run/containerd/x/web-rep-1: file exists"))

	res := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: time.Now()})
	if res.ExitedSince || res.StartError != "" || res.StartedAt.IsZero() {
		t.Fatalf("EnsureRunning = %+v, want started on the second try", res)
	}
	if n := rt.Calls(runtimetest.OpStart); n != 2 {
		t.Fatalf("%d Start calls, want 2", n)
	}
}
