package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// crashLoopDeployment has a replica that crashes a second after each start,
// with a short backoff, and a healthy one.
//
// Its last words go to stdout: containerd 1.6's shim hands the log file to
// stdout's copier unwrapped, so stdout's EOF at the exit closes the file and
// a stderr line written just before the exit can be lost ("error copying
// stderr" in containerd's log; TestCrashLoopEndToEnd counted 2 of 3 downs).
func crashLoopDeployment(name string, maxRestarts int, backoff string) string {
	return `version: v1
deployment: ` + name + `
services:
  crasher:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["echo up; sleep 1; echo down; exit 3"] }
    scale: { mode: fixed, replicas: 1 }
    errors:
      on_panic: { action: restart, max_restarts: ` + itoa(maxRestarts) + `, restart_window: 120s, backoff: ` + backoff + `, poll_interval: 1s }
  steady:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
`
}

func inBackoff(v workflows.StateView) bool {
	return v.State == workflows.StateCrashLoopBackOff && v.NextRestartAt != nil
}

// A crashing container is restarted, counted, and enters CrashLoopBackOff
// after max_restarts in the window; after the backoff it is started once.
func TestCrashLoopEndToEnd(t *testing.T) {
	s := newStack(t)
	s.supervise(s.deployment("loop", crashLoopDeployment("loop", 2, "3s")))

	v := s.waitFor("loop/crasher-rep-1", "CrashLoopBackOff", 2*time.Minute, inBackoff)
	if v.TotalRestarts != 2 || len(v.RestartTimes) != 3 || v.LastExitCode == nil || *v.LastExitCode != 3 {
		t.Fatalf("at backoff: restarts %d, window %d, last exit %v; want 2, 3, 3", v.TotalRestarts, len(v.RestartTimes), v.LastExitCode)
	}
	want := []workflows.EventType{workflows.EventContainerRestarted, workflows.EventContainerRestarted, workflows.EventCrashLoopBackOff}
	if got := eventTypes(v); !equalTypes(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	deadline, ok := v.NextRestart()
	if !ok {
		t.Fatalf("CrashLoopBackOff without a restart time: %+v", v)
	}

	after := s.waitFor("loop/crasher-rep-1", "the start after the backoff", time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts >= 3
	})
	restarted := after.Events[3]
	if restarted.Type != workflows.EventContainerRestarted || restarted.Time.Before(deadline) {
		t.Fatalf("event after backoff: %+v; want ContainerRestarted at or after %v", restarted, deadline)
	}

	steady, _ := s.status("loop/steady-rep-1")
	if steady.State != workflows.StateRunning || steady.TotalRestarts != 0 {
		t.Fatalf("steady replica: %s with %d restarts", steady.State, steady.TotalRestarts)
	}
	// containerd's own view: both containers exist, labelled as Vigil's.
	if ids := s.containerIDs(); len(ids) != 2 {
		t.Fatalf("containerd has containers %v, want 2", ids)
	}
	// The real output of the crashing container, across restarts.
	logs := s.vigil("logs", "loop/crasher-rep-1", "--tail", "100")
	if logs.Code != 0 || strings.Count(logs.Stdout, "down") < 3 {
		t.Fatalf("vigil logs: exit %d, %q", logs.Code, logs.Stdout)
	}

	// The real history replays deterministically with today's workflow code.
	replayHistory(t, s, idOf(t, "loop/crasher-rep-1").WorkflowID())
}

// The worker is killed with SIGKILL during a backoff and a new one started:
// the restart happens at the original deadline (not reset, not lost, not
// doubled) and the counts are unchanged.
func TestWorkerKilledDuringBackoff(t *testing.T) {
	s := newStack(t)
	s.supervise(s.deployment("kill", crashLoopDeployment("kill", 1, "12s")))

	before := s.waitFor("kill/crasher-rep-1", "CrashLoopBackOff", 2*time.Minute, inBackoff)
	deadline, ok := before.NextRestart()
	if !ok {
		t.Fatalf("CrashLoopBackOff without a restart time: %+v", before)
	}
	t.Logf("backoff until %s; killing the worker", deadline.Format(time.RFC3339Nano))
	s.killWorker()
	time.Sleep(2 * time.Second)
	s.startWorker()

	t.Log("new worker started")
	// The new worker rebuilds the state from history: the same backoff, with
	// the same deadline (unless the deadline has passed meanwhile).
	mid := s.waitFor("kill/crasher-rep-1", "the state after the worker restart", time.Minute, func(workflows.StateView) bool { return true })
	if mid.State == workflows.StateCrashLoopBackOff {
		if mid.TotalRestarts != before.TotalRestarts || mid.NextRestartAt == nil || *mid.NextRestartAt != *before.NextRestartAt {
			t.Fatalf("after the worker restart: %d restarts, next %v; want %d, %s",
				mid.TotalRestarts, mid.NextRestartAt, before.TotalRestarts, *before.NextRestartAt)
		}
	} else if time.Now().Before(deadline) {
		t.Fatalf("after the worker restart, before the deadline: %s; want CrashLoopBackOff", mid.State)
	}

	t.Logf("state read from the new worker: %s", mid.State)
	after := s.waitFor("kill/crasher-rep-1", "the start after the backoff", time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts > before.TotalRestarts
	})
	t.Logf("restarted: %+v", after.Events[len(after.Events)-1])
	if after.TotalRestarts != before.TotalRestarts+1 {
		t.Fatalf("restarts went from %d to %d; want exactly one delayed start", before.TotalRestarts, after.TotalRestarts)
	}
	var delayed *workflows.Event
	for i := range after.Events {
		if after.Events[i].Type == workflows.EventContainerRestarted && after.Events[i].RestartCount == after.TotalRestarts {
			delayed = &after.Events[i]
		}
	}
	if delayed == nil {
		t.Fatalf("no ContainerRestarted event for restart %d: %+v", after.TotalRestarts, after.Events)
	}
	// Not before the deadline, and not a fresh 12 s backoff counted from the
	// new worker's start (which would land after deadline + 12 s - 2 s).
	if delayed.Time.Before(deadline) || !delayed.Time.Before(deadline.Add(10*time.Second)) {
		t.Fatalf("delayed start at %v; want at the original deadline %v", delayed.Time, deadline)
	}
	if n := countEvents(after, workflows.EventContainerRestarted); n != after.TotalRestarts {
		t.Fatalf("%d ContainerRestarted events for %d restarts", n, after.TotalRestarts)
	}
}

// The dev server is stopped and started again on the same database file:
// supervision continues, with the same worker process.
func TestDevServerRestart(t *testing.T) {
	s := newStack(t)
	s.supervise(s.deployment("srv", crashLoopDeployment("srv", 1000, "3s")))

	before := s.waitFor("srv/crasher-rep-1", "two restarts", 2*time.Minute, func(v workflows.StateView) bool { return v.TotalRestarts >= 2 })
	s.stopServer()
	time.Sleep(3 * time.Second)
	s.startServer()

	after := s.waitFor("srv/crasher-rep-1", "restarts after the server restart", 2*time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts >= before.TotalRestarts+2
	})
	if after.State != workflows.StateRunning && after.State != workflows.StateRestarting {
		t.Fatalf("crasher after server restart: %s", after.State)
	}
	if after.SupervisedSince != before.SupervisedSince {
		t.Fatalf("supervised_since changed from %s to %s: supervision was not continued", before.SupervisedSince, after.SupervisedSince)
	}
	steady, ok := s.status("srv/steady-rep-1")
	if !ok || steady.State != workflows.StateRunning || steady.TotalRestarts != 0 {
		t.Fatalf("steady replica after server restart: %+v", steady)
	}
}

// `vigil supervise` twice, a bad deployment file and an unknown ID: clear
// errors, and nothing that is supervised changes.
func TestSuperviseTwiceAndBadInput(t *testing.T) {
	s := newStack(t)
	file := s.deployment("twice", crashLoopDeployment("twice", 1000, "3s"))
	s.supervise(file)
	before := s.waitFor("twice/steady-rep-1", "Running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })

	again := s.vigil("supervise", "-f", file)
	if again.Code != 0 || strings.Count(again.Stdout, "unchanged") != 2 {
		t.Fatalf("second supervise: exit %d, %q %q", again.Code, again.Stdout, again.Stderr)
	}
	bad := s.deployment("bad", strings.Replace(crashLoopDeployment("twice", 1, "3s"), "action: restart", "action: reboot", 1))
	r := s.vigil("supervise", "-f", bad)
	if r.Code != 2 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || !strings.Contains(r.Stderr, "action") {
		t.Fatalf("bad file: exit %d, stderr %q; want exit 2 and one line naming the field", r.Code, r.Stderr)
	}
	r = s.vigil("status", "twice/nope-rep-1")
	if r.Code != 1 || !strings.Contains(r.Stderr, "nope-rep-1") {
		t.Fatalf("unknown ID: exit %d, stderr %q", r.Code, r.Stderr)
	}

	after, _ := s.status("twice/steady-rep-1")
	if after.SupervisedSince != before.SupervisedSince || after.TotalRestarts != 0 || after.State != workflows.StateRunning {
		t.Fatalf("steady replica changed: before %+v, after %+v", before, after)
	}
	if ids := s.containerIDs(); len(ids) != 2 {
		t.Fatalf("containerd has containers %v, want exactly the 2 supervised", ids)
	}
}

// replayHistory fetches a workflow's real history and replays it with the
// current workflow code; a nondeterministic change fails here. With
// VIGIL_RECORD_HISTORY=path it also writes the history as JSON for the
// workflows package's replay test.
func replayHistory(t *testing.T, s *tstack, workflowID string) {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Unsupervise first so the recorded history is complete.
	r := s.vigil("unsupervise", strings.TrimPrefix(workflowID, "vigil/"))
	if r.Code != 0 {
		t.Fatalf("unsupervise: %s%s", r.Stdout, r.Stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.GetWorkflow(ctx, workflowID, "").Get(ctx, nil); err != nil {
		t.Fatalf("workflow result: %v", err)
	}
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: humanjson.DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	replayer.RegisterWorkflowWithOptions(workflows.Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	hist, err := histories.Read(ctx, c, workflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := replayer.ReplayWorkflowHistory(nil, hist); err != nil {
		t.Fatalf("replay of the real history failed: %v", err)
	}
	if path := os.Getenv("VIGIL_RECORD_HISTORY"); path != "" {
		out, err := exec.Command(configtest.TemporalCLI(t), "workflow", "show", "--address", s.HostPort, "-w", workflowID, "--output", "json").Output()
		if err != nil {
			t.Fatalf("temporal workflow show: %v", err)
		}
		if !json.Valid(out) {
			t.Fatal("temporal workflow show printed invalid JSON")
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// An image that is missing: the start fails permanently, supervision stays,
// visible as Restarting with the error, and the replica runs once the image
// arrives. Nothing else is disturbed.
func TestImageMissingThenImported(t *testing.T) {
	s := newStack(t)
	s.supervise(s.deployment("img", strings.Replace(crashLoopDeployment("img", 5, "3s"),
		`image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }`,
		`image: { name: docker.io/library/ghost:1, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }`, 1)))

	// It never ran, so it is Pending (honest state) with the start error shown.
	s.waitFor("img/steady-rep-1", "supervised", time.Minute, func(workflows.StateView) bool { return true })
	st := s.statusJSON("img/steady-rep-1")
	for deadline := time.Now().Add(time.Minute); st.StartError == nil; st = s.statusJSON("img/steady-rep-1") {
		if time.Now().After(deadline) {
			t.Fatalf("no start error for the missing image within 1m: %+v", st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if st.State != workflows.StatePending {
		t.Fatalf("replica whose image is missing: %s; want Pending (it never ran)", st.State)
	}
	r := s.vigil("status", "img/steady-rep-1")
	if r.Code != 0 || !strings.Contains(r.Stdout, "START ERROR") || !strings.Contains(r.Stdout, "ghost:1") {
		t.Fatalf("status of the replica whose image is missing: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	s.waitFor("img/crasher-rep-1", "the other service started", time.Minute, func(v workflows.StateView) bool {
		return v.State != workflows.StatePending
	})

	out, err := exec.Command("ctr", "--address", s.Containerd.Address, "--namespace", s.Containerd.Namespace,
		"images", "tag", "docker.io/library/busybox:local", "docker.io/library/ghost:1").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images tag: %v\n%s", err, out)
	}
	v := s.waitFor("img/steady-rep-1", "Running once the image is there", 3*time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning
	})
	if v.TotalRestarts != 0 || v.LastExitCode != nil {
		t.Fatalf("after the image arrived: %d restarts, last exit %v; the first start is not a restart", v.TotalRestarts, v.LastExitCode)
	}
	if r := s.vigil("status", "img/steady-rep-1"); strings.Contains(r.Stdout, "START ERROR") {
		t.Fatalf("start error still shown after a successful start:\n%s", r.Stdout)
	}
}
