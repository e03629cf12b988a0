package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/version"
	"github.com/vigil-run/vigil/workflows"
)

var (
	upgradeBackoff     = 40 * time.Second
	upgradeSwitchEarly = 22 * time.Second
)

// upgradeFrom holds, for each earlier release the upgrade test starts from,
// what its runs and CLI look like. A release registers here when the next
// one opens; one that is retired (README, Retiring a version branch) is
// taken out with its file (v0.1.0: upgrade_v010_test.go).
var upgradeFrom = map[string]releaseTraits{
	"v0.2.0": {versionCommand: true, neverStarted: workflows.StatePending, changeIDs: 6, deployments: true},
}

type releaseTraits struct {
	// versionCommand: the CLI has `vigil version`.
	versionCommand bool
	// neverStarted is the state of a replica whose first start keeps failing.
	neverStarted workflows.State
	// changeIDs is the number of version markers a replica run records.
	changeIDs int
	// deployments: `vigil apply` and the Deployment workflow exist.
	deployments bool
}

// oldRelease is an earlier release, with its binaries.
type oldRelease struct {
	version.Entry
	releaseTraits
	vigil, worker string
}

// earlierReleases builds the binaries of every release in upgradeFrom, side
// by side with this tree's. A release's binaries are built once per
// machine, from a git worktree of its commit in RELEASES, into
// <cache>/old/<commit>/ (see oldReleaseBinaries).
func earlierReleases(t *testing.T) []oldRelease {
	t.Helper()
	entries, err := version.ReadReleases("../RELEASES")
	if err != nil {
		t.Fatal(err)
	}
	var olds []oldRelease
	for _, e := range entries {
		if traits, ok := upgradeFrom[e.Release]; ok {
			olds = append(olds, oldRelease{Entry: e, releaseTraits: traits})
		}
	}
	// The release before this one is always covered; a retired one is not.
	prev, err := version.Previous(entries, version.Release)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := upgradeFrom[prev.Release]; !ok {
		t.Fatalf("%s, the release before %s, has no entry in upgradeFrom; add it", prev.Release, version.Release)
	}
	if len(olds) != len(upgradeFrom) {
		t.Fatalf("upgradeFrom names a release RELEASES does not list: %v", upgradeFrom)
	}
	errs := make([]error, len(olds))
	var wg sync.WaitGroup
	for i := range olds {
		wg.Go(func() { olds[i].vigil, olds[i].worker, errs[i] = oldReleaseBinaries(olds[i].Commit) })
	}
	currentBinaries(t)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("build the earlier releases: %v", err)
	}
	return olds
}

// oldReleaseBinaries returns the vigil and vigil-worker of commit, building
// them into <cache>/old/<full commit>/ when they are not there yet. A commit
// never changes, so they are kept across runs (about 140 MB per release).
// Concurrent runs are safe: each builds into a directory of its own and
// renames it into place; the loser of a race uses the winner's.
func oldReleaseBinaries(commit string) (vigil, worker string, err error) {
	out, err := exec.Command("git", "-C", "..", "rev-parse", "--verify", commit+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s is not a commit of this repository (a shallow clone? git fetch --unshallow): %w", commit, err)
	}
	full := strings.TrimSpace(string(out))
	root := os.Getenv("VIGIL_BIN")
	if root == "" {
		root = filepath.Join(os.Getenv("HOME"), ".cache", "vigil", "bin")
	}
	dir := filepath.Join(root, "old", full)
	vigil, worker = filepath.Join(dir, "vigil"), filepath.Join(dir, "vigil-worker")
	if isFile(vigil) && isFile(worker) {
		return vigil, worker, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), full+".building-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp) // gone after a successful rename
	if _, _, err := stack.BuildCommit("..", full, tmp); err != nil {
		return "", "", err
	}
	if err := os.Rename(tmp, dir); err != nil && !(isFile(vigil) && isFile(worker)) {
		return "", "", err
	}
	return vigil, worker, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// upgradeDeployment has a replica for every live state: Running (web),
// CrashLoopBackOff (loop, a long backoff), Isolated (iso), Shutdown (down),
// a start that keeps failing (ghost: no such image), and one whose exit the old worker has heard and is
// acting on when it is replaced (mid).
const upgradeDeployment = `version: v1
deployment: up
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    errors: { on_panic: { action: restart, poll_interval: 1s } }
  mid:
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

// Replicas supervised by every earlier release's worker keep being
// supervised when the worker is replaced by this tree's, killed (SIGKILL) or
// stopped gracefully (SIGTERM): every live state carries on, with no
// workflow task failed and no nondeterminism. The variants run all at once,
// each on its own stack: they mostly wait on timers, so t.Parallel's limit
// (GOMAXPROCS at a time) would only make the run longer.
func TestUpgradeFromEveryRelease(t *testing.T) {
	requirePrerequisites(t)
	var wg sync.WaitGroup
	olds := earlierReleases(t)
	for _, old := range olds {
		for _, kill := range []bool{true, false} {
			wg.Go(func() {
				t.Run(old.Release+"/"+map[bool]string{true: "sigkill", false: "graceful"}[kill], func(t *testing.T) {
					upgrade(t, old, kill, false)
				})
			})
		}
	}
	// Encryption turned on with the upgrade: the new worker and CLI get a
	// codec key and carry on the old release's plain histories.
	newest := olds[len(olds)-1]
	wg.Go(func() {
		t.Run(newest.Release+"/sigkill+codec-key", func(t *testing.T) { upgrade(t, newest, true, true) })
	})
	wg.Wait()
}

func upgrade(t *testing.T, old oldRelease, kill, codecKey bool) {
	newVigil, newWorker := currentBinaries(t)
	s := newStackOf(t, old.vigil, old.worker)
	starts := recordTaskEvents(t, s.Stack)
	// The CLI says which release it is, if it can.
	if v := s.vigil("version"); (v.Code == 0) != old.versionCommand || (v.Code == 0 && !strings.Contains(v.Stdout, old.Release+" ")) {
		t.Fatalf("`vigil version` of %s: exit %d, %q; is %s really %s?", old.Release, v.Code, v.Stdout, old.vigil, old.Release)
	}

	s.supervise(s.deployment("up", upgradeDeployment))
	want := map[string]func(workflows.StateView) bool{
		"up/web-rep-1":   func(v workflows.StateView) bool { return v.State == workflows.StateRunning },
		"up/mid-rep-1":   func(v workflows.StateView) bool { return v.State == workflows.StateRunning },
		"up/loop-rep-1":  inBackoff,
		"up/iso-rep-1":   func(v workflows.StateView) bool { return v.State == workflows.StateIsolated },
		"up/down-rep-1":  func(v workflows.StateView) bool { return v.State == workflows.StateShutdown },
		"up/ghost-rep-1": func(v workflows.StateView) bool { return v.State == old.neverStarted },
	}
	// A replica of a deployment rolled out by `vigil apply` (its Deployment
	// workflow started by the old worker).
	const applied = "app/web-rep-1"
	if old.deployments {
		s.apply(s.deployment("app", webFile("app", 1, "v1", "1s", false)))
		want[applied] = func(v workflows.StateView) bool { return v.State == workflows.StateRunning }
	}
	before := map[string]workflows.StateView{}
	for ref, cond := range want {
		before[ref] = s.waitFor(ref, "its live state under "+old.Release, 2*time.Minute, cond)
	}
	if old.deployments {
		s.waitRollout("app", "complete under "+old.Release, time.Minute, completeAt(1))
	}
	// The running replicas are watched: by the old worker's WaitForExit
	// (v0.1.0), or by its node watch, the run idle with nothing in flight.
	for _, ref := range []string{"up/web-rep-1", "up/mid-rep-1"} {
		s.waitHistory(idOf(t, ref).WorkflowID(), "watching", histories.Watching)
	}
	deadline, ok := before["up/loop-rep-1"].NextRestart()
	if !ok {
		t.Fatalf("CrashLoopBackOff without a restart time: %+v", before["up/loop-rep-1"])
	}
	// Switch well inside the backoff: a backoff begun afresh by the new worker
	// would end about 18 s after the original deadline.
	time.Sleep(time.Until(deadline.Add(-upgradeSwitchEarly)))

	// The mid replica's container exits, and the worker is replaced as soon
	// as the old worker has heard it (the node watch's exit signal, or
	// v0.1.0's WaitForExit returning): the old worker is acting on it.
	midWID := idOf(t, "up/mid-rep-1").WorkflowID()
	heardBefore := exitsHeard(s.history(midWID))
	if err := s.Containerd.Signal(context.Background(), idOf(t, "up/mid-rep-1").ContainerName(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitHistoryFast(midWID, "the exit heard", func(h *historypb.History) bool { return exitsHeard(h) > heardBefore })
	switched := time.Now()
	if kill {
		s.KillWorker()
	} else {
		s.StopWorker(30 * time.Second)
	}
	s.WorkerBin, s.VigilBin = newWorker, newVigil
	if codecKey {
		keys := filepath.Join(t.TempDir(), "keys")
		writeKeyFile(t, keys, "k1")
		s.CodecKeyFile = keys
	}
	s.startWorker()
	t.Logf("%s worker replaced by %s (%s) at %s, %s before the backoff deadline; mid's exit was %s",
		old.Release, version.Release, map[bool]string{true: "SIGKILL", false: "SIGTERM"}[kill],
		switched.Format(time.RFC3339Nano), deadline.Sub(switched).Round(time.Millisecond), exitStage(s.history(midWID), heardBefore, switched))

	// Every replica is where it was, with its counts and events.
	for ref := range want {
		v := s.waitFor(ref, "its state under "+version.Release, time.Minute, func(workflows.StateView) bool { return true })
		if ref != "up/loop-rep-1" && ref != "up/mid-rep-1" && v.State != before[ref].State {
			t.Fatalf("%s after the upgrade: %s; want the state it had (%s)", ref, v.State, before[ref].State)
		}
		requireIntact(t, ref, before[ref], v)
	}
	loopMid, _ := s.status("up/loop-rep-1")
	if time.Now().Before(deadline) && (loopMid.State != workflows.StateCrashLoopBackOff || *loopMid.NextRestartAt != *before["up/loop-rep-1"].NextRestartAt) {
		t.Fatalf("loop after the upgrade: %s, next restart %v; want CrashLoopBackOff until %s", loopMid.State, loopMid.NextRestartAt, *before["up/loop-rep-1"].NextRestartAt)
	}

	// The exit heard in the middle of the switch is acted on: one restart.
	mid := s.waitFor("up/mid-rep-1", "the exit acted on", time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts >= before["up/mid-rep-1"].TotalRestarts+1 && v.State == workflows.StateRunning
	})
	requireIntact(t, "up/mid-rep-1", before["up/mid-rep-1"], mid)

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
	if _, ok := waitEvent(starts, isoName, ctrevents.Start, released, time.Minute); !ok {
		t.Fatal("the released replica's container was not started")
	}

	// The deployment the old worker rolled out takes a new apply: scaled to
	// two by the new CLI and worker, its first replica left alone.
	if old.deployments {
		s.apply(s.deployment("app2", webFile("app", 2, "v1", "1s", false)))
		s.waitRollout("app", "scaled to 2 under "+version.Release, time.Minute, completeAt(2))
		s.waitFor("app/web-rep-2", "the new replica running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
		v, _ := s.status(applied)
		if v.State != workflows.StateRunning || v.TotalRestarts != before[applied].TotalRestarts {
			t.Fatalf("%s after the scale-up: %s with %d restarts; want Running with %d", applied, v.State, v.TotalRestarts, before[applied].TotalRestarts)
		}
		requireIntact(t, applied, before[applied], v)
	}

	// The backoff ends at its original deadline, by containerd's clock: one start.
	loopName := idOf(t, "up/loop-rep-1").ContainerName()
	start, ok := waitEvent(starts, loopName, ctrevents.Start, switched, time.Minute+upgradeBackoff)
	if !ok {
		t.Fatal("the crash-looping replica was not started after its backoff")
	}
	started := start.At
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
	if r := s.vigil("status", "up/ghost-rep-1"); r.Code != 0 || !strings.Contains(r.Stdout, string(before["up/ghost-rep-1"].State)) || !strings.Contains(r.Stdout, "ghost:1") {
		t.Fatalf("status of the replica whose start keeps failing: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// rollover moves runs the old release started onto this release's code
	// (a new run, which records this release's one marker), leaving the
	// container alone: how their old branches are retired. The old runs keep
	// the markers they had (changeIDs).
	for _, ref := range []string{"up/down-rep-1", "up/web-rep-1"} {
		wid := idOf(t, ref).WorkflowID()
		ids := histories.ChangeIDs(s.history(wid), s.dataConverter())
		if len(ids) != old.changeIDs || slices.Contains(ids, workflows.ReleaseMarker) {
			t.Fatalf("%s: the run %s started has version markers %q; want %d change IDs and no release marker", ref, old.Release, ids, old.changeIDs)
		}
		beforeRoll, _ := s.status(ref)
		rolled := time.Now()
		if r := s.vigil("rollover", ref); r.Code != 0 {
			t.Fatalf("rollover %s: exit %d: %s%s", ref, r.Code, r.Stdout, r.Stderr)
		}
		s.waitHistory(wid, "a new run with this release's marker", func(h *historypb.History) bool { return len(histories.ChangeIDs(h, s.dataConverter())) > 0 })
		if ids := histories.ChangeIDs(s.history(wid), s.dataConverter()); !slices.Equal(ids, []string{workflows.ReleaseMarker}) {
			t.Fatalf("%s: the run rolled over to %s has version markers %q; want exactly one, %q", ref, version.Release, ids, workflows.ReleaseMarker)
		}
		after, _ := s.status(ref)
		if after.State != beforeRoll.State || after.TotalRestarts != beforeRoll.TotalRestarts {
			t.Fatalf("%s after rollover: %s with %d restarts; want %s with %d", ref, after.State, after.TotalRestarts, beforeRoll.State, beforeRoll.TotalRestarts)
		}
		requireIntact(t, ref, beforeRoll, after)
		if e, ok := waitEvent(starts, idOf(t, ref).ContainerName(), ctrevents.Start, rolled, time.Second); ok {
			t.Fatalf("%s: rollover started the container (at %s)", ref, e.At)
		}
	}

	// The exit heard at the switch was acted on once, not again by the new
	// worker's watch.
	if v, _ := s.status("up/mid-rep-1"); v.TotalRestarts != before["up/mid-rep-1"].TotalRestarts+1 {
		t.Errorf("mid: %d restarts after one exit; want %d", v.TotalRestarts, before["up/mid-rep-1"].TotalRestarts+1)
	}

	// No workflow task failed, in any workflow (the node's and the
	// deployment's too); the new release did the work after the switch.
	wids := []string{replica.NodeWorkflowID(s.Node)}
	if old.deployments {
		wids = append(wids, replica.DeploymentWorkflowID("app"))
	}
	for ref := range want {
		wids = append(wids, idOf(t, ref).WorkflowID())
	}
	for _, wid := range wids {
		h := s.history(wid)
		for _, ev := range h.Events {
			if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil && a.GetCause() != enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND {
				t.Errorf("%s: workflow task failed (event %d, %s): %s", wid, ev.GetEventId(), a.GetCause(), a.GetFailure().GetMessage())
			}
		}
	}
	// (Not mid: a graceful stop may let the old worker finish its restart.)
	for _, ref := range []string{"up/web-rep-1", "up/loop-rep-1", "up/iso-rep-1"} {
		if !completedBy(s.history(idOf(t, ref).WorkflowID()), "vigil-worker@"+version.Release+"/") {
			t.Errorf("%s: no workflow task completed by a %s worker after the upgrade", ref, version.Release)
		}
		if n := payloadKeys(t, s.history(idOf(t, ref).WorkflowID())); codecKey && n["k1"] == 0 {
			t.Errorf("%s: no payload encrypted after the upgrade with a key: %v", ref, n)
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

// exitsHeard counts the exits the run has heard: by the node watch's signal
// (since v0.2.0), or by its WaitForExit returning (v0.1.0).
func exitsHeard(h *historypb.History) int {
	n := histories.CountActivities(h, replica.WaitForExitName, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
	for _, ev := range h.Events {
		if ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName() == replica.SignalExit {
			n++
		}
	}
	return n
}

// exitStage says how far the old worker had acted on the heard exit when it
// was replaced at switched: whether the restart's EnsureRunning had been
// scheduled or completed by then.
func exitStage(h *historypb.History, heardBefore int, switched time.Time) string {
	heard := false
	stage := "not heard"
	for i, ev := range h.Events {
		if ev.GetEventTime().AsTime().After(switched) {
			break
		}
		if !heard && exitsHeard(&historypb.History{Events: h.Events[:i+1]}) > heardBefore {
			heard, stage = true, "heard, the restart not yet scheduled"
			continue
		}
		if !heard {
			continue
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == replica.EnsureRunningName {
				stage = "heard, the restart scheduled"
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if stage == "heard, the restart scheduled" {
				stage = "heard and the restart done"
			}
		}
	}
	return stage
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
	h, err := histories.Read(ctx, c, workflowID, "")
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

// waitHistoryFast is waitHistory on one client, polling as fast as the
// server answers: to act within moments of an event.
func (s *tstack) waitHistoryFast(workflowID, what string, cond func(*historypb.History) bool) {
	s.t.Helper()
	c, ctx := s.clientFor()
	for ctx.Err() == nil {
		h, err := histories.Read(ctx, c, workflowID, "")
		if err == nil && cond(h) {
			return
		}
		time.Sleep(10 * time.Millisecond)
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

func completedBy(h *historypb.History, identityPrefix string) bool {
	return slices.ContainsFunc(h.Events, func(ev *historypb.HistoryEvent) bool {
		return strings.HasPrefix(ev.GetWorkflowTaskCompletedEventAttributes().GetIdentity(), identityPrefix)
	})
}
