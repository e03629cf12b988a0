package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/version"
	"github.com/vigil-run/vigil/workflows"
)

// The previous release's binaries, built once per test run from a git
// worktree of its commit in RELEASES.
var (
	prevOnce              sync.Once
	prevRelease           version.Entry
	prevVigil, prevWorker string
	prevErr               error
	upgradeBackoff        = 40 * time.Second
	upgradeSwitchEarly    = 22 * time.Second
)

func previousReleaseBinaries(t *testing.T) (version.Entry, string, string) {
	t.Helper()
	prevOnce.Do(func() {
		entries, err := version.ReadReleases("../RELEASES")
		if err != nil {
			prevErr = err
			return
		}
		if prevRelease, err = version.Previous(entries, version.Release); err != nil {
			prevErr = err
			return
		}
		dir, err := os.MkdirTemp("", "vigil-prev-bin")
		if err != nil {
			prevErr = err
			return
		}
		binDirs = append(binDirs, dir)
		prevVigil, prevWorker, prevErr = stack.BuildCommit("..", prevRelease.Commit, dir)
	})
	if prevErr != nil {
		t.Fatalf("build the previous release: %v", prevErr)
	}
	return prevRelease, prevVigil, prevWorker
}

// upgradeDeployment has a replica for every live state: Running (web),
// CrashLoopBackOff (loop, a long backoff), Isolated (iso), Shutdown (down)
// and Restarting with a start that keeps failing (ghost: no such image).
const upgradeDeployment = `version: v1
deployment: up
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    errors: { on_panic: { action: restart, poll_interval: 1s } }
  loop:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 1; exit 3"] }
    errors: { on_panic: { action: restart, max_restarts: 1, restart_window: 300s, backoff: 40s, poll_interval: 1s } }
  iso:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 1; exit 4"] }
    errors: { on_panic: { action: isolate, poll_interval: 1s } }
  down:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 1; exit 5"] }
    errors: { on_panic: { action: shutdown, poll_interval: 1s } }
  ghost:
    image: { name: docker.io/library/ghost:1, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
`

// Replicas supervised by the previous release's worker keep being supervised
// when the worker is replaced by this tree's, killed (SIGKILL) or stopped
// gracefully (SIGTERM): every live state carries on, with no workflow task
// failed and no nondeterminism.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	requirePrerequisites(t)
	for _, mode := range []string{"sigkill", "graceful"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			upgrade(t, mode == "sigkill")
		})
	}
}

func upgrade(t *testing.T, kill bool) {
	prev, oldVigil, oldWorker := previousReleaseBinaries(t)
	newVigil, newWorker := currentBinaries(t)
	s := newStackOf(t, oldVigil, oldWorker)
	starts := watchTaskStarts(t, s.Stack)
	if v := s.vigil("version"); v.Code == 0 {
		t.Fatalf("the previous release's CLI knows `vigil version` (%q); is %s really %s?", v.Stdout, oldVigil, prev.Release)
	}

	s.supervise(s.deployment("up", upgradeDeployment))
	before := map[string]workflows.StateView{}
	want := map[string]func(workflows.StateView) bool{
		"up/web-rep-1":   func(v workflows.StateView) bool { return v.State == workflows.StateRunning },
		"up/loop-rep-1":  inBackoff,
		"up/iso-rep-1":   func(v workflows.StateView) bool { return v.State == workflows.StateIsolated },
		"up/down-rep-1":  func(v workflows.StateView) bool { return v.State == workflows.StateShutdown },
		"up/ghost-rep-1": func(v workflows.StateView) bool { return v.State == workflows.StateRestarting },
	}
	for ref, cond := range want {
		before[ref] = s.waitFor(ref, "its live state under "+prev.Release, 2*time.Minute, cond)
	}
	// The web replica is being watched by the old worker's activity.
	s.waitHistory(idOf(t, "up/web-rep-1").WorkflowID(), "watching", func(h *historypb.History) bool {
		return histories.CountActivities(h, activities.WaitForExitName, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) > 0
	})
	deadline := parseTime(t, *before["up/loop-rep-1"].NextRestartAt)
	// Switch well inside the backoff: a backoff begun afresh by the new worker
	// would end about 18 s after the original deadline.
	time.Sleep(time.Until(deadline.Add(-upgradeSwitchEarly)))

	switched := time.Now()
	if kill {
		s.KillWorker()
	} else {
		s.StopWorker(30 * time.Second)
	}
	s.WorkerBin, s.VigilBin = newWorker, newVigil
	s.startWorker()
	t.Logf("%s worker replaced by %s (%s) at %s, %s before the backoff deadline",
		prev.Release, version.Release, map[bool]string{true: "SIGKILL", false: "SIGTERM"}[kill],
		switched.Format(time.RFC3339Nano), deadline.Sub(switched).Round(time.Millisecond))

	// Every replica is where it was, with its counts and events.
	for ref, cond := range want {
		v := s.waitFor(ref, "its state under "+version.Release, time.Minute, func(workflows.StateView) bool { return true })
		if !cond(v) && ref != "up/loop-rep-1" {
			t.Fatalf("%s after the upgrade: %s; want the state it had (%s)", ref, v.State, before[ref].State)
		}
		requireIntact(t, ref, before[ref], v)
	}
	loopMid, _ := s.status("up/loop-rep-1")
	if time.Now().Before(deadline) && (loopMid.State != workflows.StateCrashLoopBackOff || *loopMid.NextRestartAt != *before["up/loop-rep-1"].NextRestartAt) {
		t.Fatalf("loop after the upgrade: %s, next restart %v; want CrashLoopBackOff until %s", loopMid.State, loopMid.NextRestartAt, *before["up/loop-rep-1"].NextRestartAt)
	}

	// A crash of the running replica is restarted by the new worker.
	webName := idOf(t, "up/web-rep-1").ContainerName()
	if err := s.Containerd.Signal(context.Background(), webName, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	web := s.waitFor("up/web-rep-1", "the crash restarted", time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts == 1 && v.State == workflows.StateRunning
	})
	requireIntact(t, "up/web-rep-1", before["up/web-rep-1"], web)

	// The isolated replica is released by the new CLI and worker, and runs.
	released := time.Now()
	if r := s.vigil("release", "up/iso-rep-1"); r.Code != 0 {
		t.Fatalf("release of the isolated replica: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	isoName := idOf(t, "up/iso-rep-1").ContainerName()
	if _, ok := starts.waitFirstAfter(isoName, released, time.Minute); !ok {
		t.Fatal("the released replica's container was not started")
	}

	// The backoff ends at its original deadline, by containerd's clock: one start.
	loopName := idOf(t, "up/loop-rep-1").ContainerName()
	started, ok := starts.waitFirstAfter(loopName, switched, time.Minute+upgradeBackoff)
	if !ok {
		t.Fatal("the crash-looping replica was not started after its backoff")
	}
	t.Logf("backoff deadline %s, container started %s (%s after)", deadline.Format(time.RFC3339Nano),
		started.Format(time.RFC3339Nano), started.Sub(deadline).Round(time.Millisecond))
	if started.Before(deadline) || !started.Before(deadline.Add(10*time.Second)) {
		t.Fatalf("the delayed start was at %s; want at the original deadline %s (not before, and not a fresh backoff)", started, deadline)
	}
	loop := s.waitFor("up/loop-rep-1", "the start after the backoff", time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts == before["up/loop-rep-1"].TotalRestarts+1
	})
	requireIntact(t, "up/loop-rep-1", before["up/loop-rep-1"], loop)

	// Still failing, still supervised, still saying why.
	if r := s.vigil("status", "up/ghost-rep-1"); r.Code != 0 || !strings.Contains(r.Stdout, "Restarting") || !strings.Contains(r.Stdout, "ghost:1") {
		t.Fatalf("status of the replica whose start keeps failing: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// rollover moves runs the previous release started onto this release's
	// code (a new run, which reads the current versions), leaving the
	// container alone: how their old branches are retired.
	for _, ref := range []string{"up/down-rep-1", "up/web-rep-1"} {
		wid := idOf(t, ref).WorkflowID()
		old := s.history(wid)
		if versionMarkers(old) != 0 {
			t.Fatalf("%s: the run %s started has version markers already", ref, prev.Release)
		}
		beforeRoll, _ := s.status(ref)
		rolled := time.Now()
		if r := s.vigil("rollover", ref); r.Code != 0 {
			t.Fatalf("rollover %s: exit %d: %s%s", ref, r.Code, r.Stdout, r.Stderr)
		}
		s.waitHistory(wid, "a new run with this release's versions", func(h *historypb.History) bool { return versionMarkers(h) > 0 })
		after, _ := s.status(ref)
		if after.State != beforeRoll.State || after.TotalRestarts != beforeRoll.TotalRestarts {
			t.Fatalf("%s after rollover: %s with %d restarts; want %s with %d", ref, after.State, after.TotalRestarts, beforeRoll.State, beforeRoll.TotalRestarts)
		}
		requireIntact(t, ref, beforeRoll, after)
		if at, ok := starts.waitFirstAfter(idOf(t, ref).ContainerName(), rolled, time.Second); ok {
			t.Fatalf("%s: rollover started the container (at %s)", ref, at)
		}
	}

	// No workflow task failed; the new release did the work after the switch.
	for ref := range want {
		wid := idOf(t, ref).WorkflowID()
		h := s.history(wid)
		for _, ev := range h.Events {
			if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil && a.GetCause() != enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND {
				t.Errorf("%s: workflow task failed (event %d, %s): %s", ref, ev.GetEventId(), a.GetCause(), a.GetFailure().GetMessage())
			}
		}
		if ref == "up/web-rep-1" || ref == "up/loop-rep-1" || ref == "up/iso-rep-1" {
			if !completedBy(h, "vigil-worker@"+version.Release+"/") {
				t.Errorf("%s: no workflow task completed by a %s worker after the upgrade", ref, version.Release)
			}
		}
	}
	for i := 1; i <= 2; i++ {
		data, _ := os.ReadFile(s.WorkerLog(i))
		for _, bad := range []string{"Workflow panic", "[panic]", "nondetermin", "TMPRL1100"} {
			if strings.Contains(string(data), bad) {
				t.Errorf("worker %d log (%s) contains %q", i, s.WorkerLog(i), bad)
			}
		}
	}
}

func (s *tstack) history(workflowID string) *historypb.History {
	s.t.Helper()
	c, err := s.Client()
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := histories.Collect(c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT))
	if err != nil {
		s.t.Fatal(err)
	}
	return h
}

func (s *tstack) waitHistory(workflowID, what string, cond func(*historypb.History) bool) {
	s.t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if cond(s.history(workflowID)) {
			return
		}
	}
	s.t.Fatalf("%s: %s not reached within a minute", workflowID, what)
}

// requireIntact checks that what a replica had before the upgrade is still
// there after it: supervised since, counts, and the events, in order.
func requireIntact(t *testing.T, ref string, before, after workflows.StateView) {
	t.Helper()
	if after.SupervisedSince != before.SupervisedSince || after.TotalRestarts < before.TotalRestarts ||
		len(after.Events) < len(before.Events) {
		t.Fatalf("%s: before %+v\nafter %+v", ref, before, after)
	}
	for i, ev := range before.Events {
		a := after.Events[i]
		if a.Type != ev.Type || !a.Time.Equal(ev.Time) || a.RestartCount != ev.RestartCount {
			t.Fatalf("%s: event %d changed: before %+v, after %+v", ref, i, ev, a)
		}
	}
}

// versionMarkers counts the run's version markers (workflow.GetVersion).
func versionMarkers(h *historypb.History) int {
	n := 0
	for _, ev := range h.Events {
		if ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "Version" {
			n++
		}
	}
	return n
}

func completedBy(h *historypb.History, identityPrefix string) bool {
	return slices.ContainsFunc(h.Events, func(ev *historypb.HistoryEvent) bool {
		return strings.HasPrefix(ev.GetWorkflowTaskCompletedEventAttributes().GetIdentity(), identityPrefix)
	})
}

// taskStarts records containerd's /tasks/start events, with containerd's
// own timestamps, per container.
type taskStarts struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func watchTaskStarts(t *testing.T, st *stack.Stack) *taskStarts {
	t.Helper()
	c, err := containerd.New(st.Containerd.Address)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); c.Close() })
	ch, _ := c.Subscribe(ctx, `topic=="/tasks/start",namespace==`+st.Containerd.Namespace)
	ts := &taskStarts{at: map[string][]time.Time{}}
	go func() {
		for env := range ch {
			if ev, err := typeurl.UnmarshalAny(env.Event); err == nil {
				if s, ok := ev.(*apievents.TaskStart); ok {
					ts.mu.Lock()
					ts.at[s.ContainerID] = append(ts.at[s.ContainerID], env.Timestamp)
					ts.mu.Unlock()
				}
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the subscription is live once containerd has it
	return ts
}

// waitFirstAfter waits (at most limit) for container's first start at or after t.
func (ts *taskStarts) waitFirstAfter(container string, t time.Time, limit time.Duration) (time.Time, bool) {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		ts.mu.Lock()
		for _, s := range ts.at[container] {
			if !s.Before(t) {
				ts.mu.Unlock()
				return s, true
			}
		}
		ts.mu.Unlock()
	}
	return time.Time{}, false
}
