package activities_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// These run the activities over the real containerd runtime.

func TestActivitiesOnContainerd(t *testing.T) {
	d := containerdtest.Start(t)
	h := newHarness(t, d.Runtime(t), activities.Options{
		HeartbeatInterval: 100 * time.Millisecond,
		LookupEnv: func(name string) (string, bool) {
			return "s3cret", name == "API_TOKEN"
		},
	})

	t.Run("real exit code with heartbeats while waiting", func(t *testing.T) {
		id := replica.ID{Deployment: "act", Service: "exit", Replica: 1}
		spec := containerdtest.TestImage(`trap '[ "$TOKEN" = s3cret ] && exit 4; exit 9' USR1; while :; do sleep 0.1; done`)
		spec.Env = map[string]string{"TOKEN": "$E:API_TOKEN"}
		res := h.ensure(activities.EnsureRunningInput{ID: id, Spec: spec, After: time.Now()})
		if res.AlreadyRunning || res.StartedAt.IsZero() {
			t.Fatalf("EnsureRunning = %+v", res)
		}
		before := h.Heartbeats()
		go func() { // the container exits once WaitForExit has heartbeaten
			for h.Heartbeats() == before {
				time.Sleep(20 * time.Millisecond)
			}
			if err := d.Signal(t.Context(), id.ContainerName(), syscall.SIGUSR1); err != nil {
				t.Error(err)
			}
		}()
		exit := h.waitForExit(id, 5*time.Second)
		if exit.ExitCode != 4 {
			t.Fatalf("WaitForExit = %+v, want 4 (the $E: env reached the container)", exit)
		}
		if !exit.ExitedAt.After(res.StartedAt) {
			t.Fatalf("exited at %v, before the start at %v", exit.ExitedAt, res.StartedAt)
		}
		again := h.ensure(activities.EnsureRunningInput{ID: id, Spec: spec, After: time.Now().Add(-time.Minute)})
		if !again.ExitedSince {
			t.Fatalf("retry after the exit = %+v, want ExitedSince", again)
		}
	})

	t.Run("a running task of another spec is replaced, not adopted", func(t *testing.T) {
		id := replica.ID{Deployment: "act", Service: "respec", Replica: 1}
		loop := "trap 'exit 0' TERM; while :; do sleep 0.1; done"
		first := h.ensure(activities.EnsureRunningInput{ID: id, Spec: containerdtest.TestImage("echo v1; " + loop)})
		same := h.ensure(activities.EnsureRunningInput{ID: id, Spec: containerdtest.TestImage("echo v1; " + loop)})
		if !same.AlreadyRunning || same.PID != first.PID {
			t.Fatalf("the same spec again = %+v, want pid %d adopted", same, first.PID)
		}
		second := h.ensure(activities.EnsureRunningInput{ID: id, Spec: containerdtest.TestImage("echo v2; " + loop), Grace: 5 * time.Second})
		if second.AlreadyRunning || second.PID == first.PID {
			t.Fatalf("another spec = %+v, want a new task (was pid %d)", second, first.PID)
		}
	})

	t.Run("stop after grace", func(t *testing.T) {
		id := replica.ID{Deployment: "act", Service: "stop", Replica: 1}
		h.ensure(activities.EnsureRunningInput{ID: id, Spec: containerdtest.TestImage("trap '' TERM; while :; do sleep 0.1; done")})
		var res runtime.Exit
		if err := h.run(replica.StopName, activities.StopInput{ID: id, Grace: 500 * time.Millisecond, Remove: true}, &res); err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 137 || res.ExitedAt.IsZero() {
			t.Fatalf("Stop = %+v, want 137", res)
		}
	})

	t.Run("missing image is permanent", func(t *testing.T) {
		id := replica.ID{Deployment: "act", Service: "noimage", Replica: 1}
		spec := containerdtest.TestImage("true")
		spec.Image = "docker.io/library/never-imported:1"
		err := h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: id, Spec: spec}, nil)
		applicationError(t, err, replica.ErrTypeImageNotFound, true)
	})

	t.Run("wait survives a containerd restart", func(t *testing.T) {
		id := replica.ID{Deployment: "act", Service: "restart", Replica: 1}
		h.ensure(activities.EnsureRunningInput{ID: id, Spec: containerdtest.TestImage("sleep 4; exit 6")})
		go func() {
			time.Sleep(500 * time.Millisecond)
			if err := d.Kill(); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Second)
			if err := d.Start(t.Context()); err != nil {
				t.Error(err)
			}
		}()
		if exit := h.waitForExit(id, 300*time.Millisecond); exit.ExitCode != 6 {
			t.Fatalf("WaitForExit across a containerd restart = %+v, want the real exit 6", exit)
		}
	})
}
