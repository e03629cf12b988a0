package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/spec"
	"github.com/vigil-run/vigil/workflows"
)

// webFile is a deployment of `replicas` replicas of service web that print
// their version and sleep, rolled out with min_ready, plus an extra service
// when extra is set.
func webFile(dep string, replicas int, version, minReady string, extra bool) string {
	f := fmt.Sprintf(`version: v1
deployment: %s
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["echo %s; exec sleep 3600"] }
    scale: { replicas: %d }
    stop_grace: 1s
    update: { max_unavailable: 1, min_ready: %s }
    errors:
      on_panic: { action: restart, max_restarts: 1000, restart_window: 60s, backoff: 2s, poll_interval: 1s }
`, dep, version, replicas, minReady)
	if extra {
		f += `  extra:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    stop_grace: 1s
`
	}
	return f
}

// maxDown is the most containers (with the prefix) down at once: from an
// exit to the next start of the same container, all running at first.
func maxDown(rec *ctrevents.Recorder, prefix string) int {
	down, most := map[string]bool{}, 0
	for _, e := range rec.All() {
		if !strings.HasPrefix(e.Container, prefix) {
			continue
		}
		if e.Kind == ctrevents.Start {
			delete(down, e.Container)
		} else {
			down[e.Container] = true
		}
		most = max(most, len(down))
	}
	return most
}

// taskCounts returns each container's starts and exits.
func taskCounts(rec *ctrevents.Recorder) map[string][2]int {
	out := map[string][2]int{}
	for _, e := range rec.All() {
		c := out[e.Container]
		if e.Kind == ctrevents.Start {
			c[0]++
		} else {
			c[1]++
		}
		out[e.Container] = c
	}
	return out
}

// waitContainers waits until containerd has n containers with running tasks.
func (s *tstack) waitContainers(n int) []string {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command("ctr", "--address", s.Containerd.Address, "--namespace", s.Containerd.Namespace, "tasks", "list").Output()
		if err != nil {
			s.t.Fatal(err)
		}
		if strings.Count(string(out), "RUNNING") == n {
			return s.containerIDs()
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("want %d running tasks, containerd has:\n%s", n, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *tstack) apply(file string, extra ...string) []workflows.PlanItem {
	s.t.Helper()
	r := s.vigil(append([]string{"apply", "-f", file, "--json"}, extra...)...)
	if r.Code != 0 {
		s.t.Fatalf("vigil apply -f %s %v: exit %d: %s%s", file, extra, r.Code, r.Stdout, r.Stderr)
	}
	var plan []workflows.PlanItem
	if err := json.Unmarshal([]byte(r.Stdout), &plan); err != nil {
		s.t.Fatalf("vigil apply --json: %v\n%s", err, r.Stdout)
	}
	return plan
}

func (s *tstack) rollout(dep string) (workflows.RolloutStatus, bool) {
	r := s.vigil("rollout", "status", dep, "--json", "--timeout", "10s")
	var st workflows.RolloutStatus
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil {
		return st, false
	}
	return st, true
}

// waitRollout polls `vigil rollout status` until cond holds; the limit only
// bounds a broken run.
func (s *tstack) waitRollout(dep, what string, limit time.Duration, cond func(workflows.RolloutStatus) bool) workflows.RolloutStatus {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	var last workflows.RolloutStatus
	for time.Now().Before(deadline) {
		if st, ok := s.rollout(dep); ok {
			last = st
			if cond(st) {
				return st
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("rollout of %s: %s not reached within %s; last %+v", dep, what, limit, last)
	return last
}

func completeAt(generation int) func(workflows.RolloutStatus) bool {
	return func(st workflows.RolloutStatus) bool {
		return st.Generation == generation && st.State == workflows.RolloutComplete
	}
}

func planLines(plan []workflows.PlanItem) []string {
	out := make([]string, len(plan))
	for i, it := range plan {
		out[i] = fmt.Sprintf("%s %s %s", it.ID, it.Action, strings.Join(it.Fields, ","))
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// Scale 2 -> 3 with a new command, then 3 -> 1 with a service removed; the
// dry run changes nothing; the new command's output shows in vigil logs;
// containerd's events never show two web replicas down at once.
func TestApplyScalesRollsOutAndRemoves(t *testing.T) {
	s := newStack(t)
	const dep = "roll"
	v1 := s.deployment("v1", webFile(dep, 2, "v1", "1s", true))
	sameLines(t, "first apply", planLines(s.apply(v1)), []string{
		"roll/web-rep-1 create ", "roll/web-rep-2 create ", "roll/extra-rep-1 create "})
	s.waitRollout(dep, "generation 1 complete", 2*time.Minute, completeAt(1))
	before := s.waitContainers(3)

	// The dry run: the plan, and nothing changed.
	v2 := s.deployment("v2", webFile(dep, 3, "v2", "1s", true))
	sameLines(t, "dry run", planLines(s.apply(v2, "--dry-run")), []string{
		"roll/web-rep-1 update args", "roll/web-rep-2 update args", "roll/web-rep-3 create ", "roll/extra-rep-1 unchanged "})
	if st, _ := s.rollout(dep); st.Generation != 1 || st.State != workflows.RolloutComplete {
		t.Fatalf("after the dry run: %+v; want generation 1, complete", st)
	}
	if after := s.containerIDs(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("the dry run changed containerd: %v -> %v", before, after)
	}
	if r := s.vigil("apply", "-f", v2, "--dry-run"); r.Code != 0 || !strings.Contains(r.Stdout, "dry run: nothing changed") {
		t.Fatalf("dry run table: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}

	events := recordTaskEvents(t, s.Stack)
	start := time.Now()
	sameLines(t, "apply v2", planLines(s.apply(v2)), []string{
		"roll/web-rep-1 update args", "roll/web-rep-2 update args", "roll/web-rep-3 create ", "roll/extra-rep-1 unchanged "})
	s.waitRollout(dep, "generation 2 complete", 2*time.Minute, completeAt(2))
	t.Logf("rolled out 2 replacements and 1 new replica in %s", time.Since(start).Round(time.Millisecond))
	for _, ref := range []string{"roll/web-rep-1", "roll/web-rep-2", "roll/web-rep-3"} {
		v, _ := s.status(ref)
		if v.Generation != 2 || v.State != workflows.StateRunning || v.TotalRestarts != 0 {
			t.Fatalf("%s after the rollout: generation %d, %s, %d restarts", ref, v.Generation, v.State, v.TotalRestarts)
		}
	}
	if logs := s.vigil("logs", "roll/web-rep-1"); logs.Code != 0 || !strings.Contains(logs.Stdout, "v2") {
		t.Fatalf("vigil logs roll/web-rep-1: exit %d %q", logs.Code, logs.Stdout)
	}
	if n := maxDown(events, "roll.web-"); n > 1 {
		t.Fatalf("containerd's events show %d web replicas down at once; max_unavailable is 1", n)
	}
	counts := taskCounts(events)
	for _, c := range []string{"roll.web-rep-1", "roll.web-rep-2"} {
		if counts[c] != [2]int{1, 1} {
			t.Fatalf("%s: %d starts and %d exits in containerd's events; want exactly one replacement", c, counts[c][0], counts[c][1])
		}
	}
	if counts["roll.extra-rep-1"] != [2]int{} {
		t.Fatalf("the unchanged service was touched: %v", counts["roll.extra-rep-1"])
	}

	// Scale down to one and remove the extra service.
	v3 := s.deployment("v3", webFile(dep, 1, "v2", "1s", false))
	sameLines(t, "apply v3", planLines(s.apply(v3)), []string{
		"roll/web-rep-1 unchanged ", "roll/extra-rep-1 remove ", "roll/web-rep-3 remove ", "roll/web-rep-2 remove "})
	s.waitRollout(dep, "generation 3 complete", 2*time.Minute, completeAt(3))
	if ids := s.containerIDs(); strings.Join(ids, ",") != "roll.web-rep-1" {
		t.Fatalf("containerd has %v after scaling down; want only roll.web-rep-1", ids)
	}
	r := s.vigil("list", "--deployment", dep, "--json")
	var listed []workflows.StateView
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &listed) != nil || len(listed) != 1 || listed[0].ID != "roll/web-rep-1" {
		t.Fatalf("vigil list after scaling down: %q", r.Stdout)
	}
	// Applying what runs changes nothing.
	sameLines(t, "apply v3 again", planLines(s.apply(v3)), []string{"roll/web-rep-1 unchanged "})
	if st, _ := s.rollout(dep); st.Generation != 3 {
		t.Fatalf("an unchanged apply moved the generation: %+v", st)
	}
	replayDeployment(t, s, dep)
}

// A replacement that exits within min_ready pauses the rollout; the other
// replicas keep the old spec; applying the previous file rolls back.
func TestRolloutPausesThenRollsBack(t *testing.T) {
	s := newStack(t)
	const dep = "pause"
	good := s.deployment("good", webFile(dep, 3, "v1", "2s", false))
	// --wait returns once the rollout is complete and every replica runs.
	s.apply(good, "--wait", "--timeout", "2m")
	for _, ref := range []string{"pause/web-rep-1", "pause/web-rep-2", "pause/web-rep-3"} {
		if v, _ := s.status(ref); v.State != workflows.StateRunning {
			t.Fatalf("%s right after apply --wait: %s; want Running", ref, v.State)
		}
	}
	s.waitRollout(dep, "generation 1 complete", 2*time.Minute, completeAt(1))
	s.waitContainers(3)
	events := recordTaskEvents(t, s.Stack)

	bad := s.deployment("bad", strings.Replace(webFile(dep, 3, "v1", "2s", false), "echo v1; exec sleep 3600", "echo v2; sleep 0.5; exit 3", 1))
	// --wait fails as the rollout pauses, with its reason.
	if r := s.vigil("apply", "-f", bad, "--wait", "--timeout", "2m"); r.Code != 1 ||
		!strings.Contains(r.Stderr, "deployment pause: rollout paused: generation 2: pause/web-rep-1") {
		t.Fatalf("apply --wait of a rollout that pauses: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	st := s.waitRollout(dep, "paused", 2*time.Minute, func(st workflows.RolloutStatus) bool { return st.State == workflows.RolloutPaused })
	if st.Generation != 2 || st.Updated != 1 || st.Total != 3 || !strings.Contains(st.Reason, "pause/web-rep-1") || !strings.Contains(st.Reason, "min_ready") {
		t.Fatalf("paused rollout: %+v", st)
	}
	r := s.vigil("rollout", "status", dep)
	if r.Code != 0 || !strings.Contains(r.Stdout, "paused") || !strings.Contains(r.Stdout, "REASON") {
		t.Fatalf("rollout status table: %q %q", r.Stdout, r.Stderr)
	}
	for _, ref := range []string{"pause/web-rep-2", "pause/web-rep-3"} {
		if v, _ := s.status(ref); v.Generation != 1 || v.State != workflows.StateRunning {
			t.Fatalf("%s while paused: generation %d, %s; want the old spec, running", ref, v.Generation, v.State)
		}
	}

	// Roll back: apply the previous file.
	sameLines(t, "rollback plan", planLines(s.apply(good)), []string{
		"pause/web-rep-1 update args", "pause/web-rep-2 unchanged ", "pause/web-rep-3 unchanged "})
	s.waitRollout(dep, "generation 3 complete", 2*time.Minute, completeAt(3))
	v := s.waitFor("pause/web-rep-1", "Running the old spec", time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && v.Generation == 3
	})
	t.Logf("rolled back: %s generation %d", v.State, v.Generation)
	counts := taskCounts(events)
	for _, c := range []string{"pause.web-rep-2", "pause.web-rep-3"} {
		if counts[c] != [2]int{} {
			t.Fatalf("%s was touched: %v starts/exits", c, counts[c])
		}
	}
}

// SIGKILL the worker, then restart the dev server, in the middle of a
// rollout: it resumes where it stood; containerd's events show every
// replica replaced exactly once and never two down at once.
func TestRolloutSurvivesWorkerKillAndServerRestart(t *testing.T) {
	s := newStack(t)
	const dep = "dur"
	s.apply(s.deployment("v1", webFile(dep, 4, "v1", "3s", false)))
	s.waitRollout(dep, "generation 1 complete", 2*time.Minute, completeAt(1))
	s.waitContainers(4)
	events := recordTaskEvents(t, s.Stack)

	s.apply(s.deployment("v2", webFile(dep, 4, "v2", "3s", false)))
	s.waitRollout(dep, "one replica updated", 2*time.Minute, func(st workflows.RolloutStatus) bool { return st.Generation == 2 && st.Updated >= 1 })
	t.Log("killing the worker")
	s.killWorker()
	time.Sleep(2 * time.Second)
	s.startWorker()
	s.waitRollout(dep, "two replicas updated", 3*time.Minute, func(st workflows.RolloutStatus) bool { return st.Generation == 2 && st.Updated >= 2 })
	t.Log("restarting the dev server")
	s.stopServer()
	time.Sleep(2 * time.Second)
	s.startServer()
	s.waitRollout(dep, "generation 2 complete", 4*time.Minute, completeAt(2))

	counts := taskCounts(events)
	for r := 1; r <= 4; r++ {
		c := fmt.Sprintf("dur.web-rep-%d", r)
		if counts[c] != [2]int{1, 1} {
			t.Fatalf("%s: %d starts, %d exits in containerd's events; want exactly one replacement", c, counts[c][0], counts[c][1])
		}
		v, _ := s.status(fmt.Sprintf("dur/web-rep-%d", r))
		if v.Generation != 2 || v.State != workflows.StateRunning {
			t.Fatalf("%s: generation %d, %s", c, v.Generation, v.State)
		}
	}
	if n := maxDown(events, "dur.web-"); n > 1 {
		t.Fatalf("containerd's events show %d replicas down at once; max_unavailable is 1", n)
	}
	replayDeployment(t, s, dep)
}

// on_panic shutdown shuts the whole service down; vigil release
// DEPLOYMENT/SERVICE releases every replica.
func TestServiceWideShutdownAndRelease(t *testing.T) {
	s := newStack(t)
	const dep = "sd"
	// Replica 1 crashes once (its hostname is its container name; the
	// marker survives in its root file system); the others never do.
	script := `case $(hostname) in *-rep-1) if [ ! -f /crashed ]; then touch /crashed; sleep 2; exit 6; fi;; esac; exec sleep 3600`
	s.apply(s.deployment("sd", fmt.Sprintf(`version: v1
deployment: sd
services:
  api:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: [%q] }
    scale: { replicas: 3 }
    stop_grace: 1s
    errors:
      on_panic: { action: shutdown, poll_interval: 1s }
`, script)))
	var views []workflows.StateView
	for r := 1; r <= 3; r++ {
		views = append(views, s.waitFor(fmt.Sprintf("sd/api-rep-%d", r), "Shutdown", 2*time.Minute, func(v workflows.StateView) bool {
			return v.State == workflows.StateShutdown
		}))
	}
	for i, v := range views {
		if countEvents(v, workflows.EventServiceShutdown) != 1 {
			t.Fatalf("%s: events %v; want one ServiceShutdown", v.ID, eventTypes(v))
		}
		if i == 0 && (v.LastExitCode == nil || *v.LastExitCode != 6) {
			t.Fatalf("%s: last exit %v; want its crash, 6", v.ID, v.LastExitCode)
		}
		if i > 0 && (v.LastExitCode == nil || *v.LastExitCode == 6) {
			t.Fatalf("%s: last exit %v; want the stop's", v.ID, v.LastExitCode)
		}
	}
	out, err := exec.Command("ctr", "--address", s.Containerd.Address, "--namespace", s.Containerd.Namespace, "tasks", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "RUNNING") {
		t.Fatalf("a task of the shut-down service still runs:\n%s", out)
	}

	r := s.vigil("release", "sd/api")
	if r.Code != 0 || strings.Count(r.Stdout, "release done") != 3 {
		t.Fatalf("vigil release sd/api: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	for i := 1; i <= 3; i++ {
		s.waitFor(fmt.Sprintf("sd/api-rep-%d", i), "Running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	}
	if r := s.vigil("release", "sd/api"); r.Code != 1 || !strings.Contains(r.Stderr, "no replica of this service is Shutdown or Isolated") {
		t.Fatalf("second release: exit %d %q", r.Code, r.Stderr)
	}
	replayDeployment(t, s, dep)
}

// replayDeployment replays the deployment workflow's real history with
// today's code.
func replayDeployment(t *testing.T, s *tstack, dep string) {
	t.Helper()
	hist := s.history(replica.DeploymentWorkflowID(dep))
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: humanjson.DataConverter()})
	if err != nil {
		t.Fatal(err)
	}
	replayer.RegisterWorkflowWithOptions(workflows.Deployment, workflow.RegisterOptions{Name: replica.DeploymentWorkflowName})
	if err := replayer.ReplayWorkflowHistory(nil, hist); err != nil {
		t.Fatalf("replay of the deployment workflow's history: %v", err)
	}
}

// Replicas supervised before deployments existed (v0.1.0's supervise
// started replica workflows only) are adopted by the first apply: the same
// file leaves them unchanged, a new one rolls out to them.
func TestApplyAdoptsReplicasSupervisedWithoutADeployment(t *testing.T) {
	s := newStack(t)
	const dep = "old"
	c, ctx := s.clientFor()
	file := s.deployment("old", webFile(dep, 2, "v1", "1s", false))
	d, err := spec.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	svc := d.Services[0]
	for r := 1; r <= 2; r++ {
		// As v0.1.0 did: one workflow per replica, no generation.
		in := workflows.SupervisionInput{ID: replica.ID{Deployment: dep, Service: "web", Replica: r}, ReplicaConfig: workflows.ReplicaConfig{
			Spec: svc.Spec, Policy: svc.Policy, Node: s.Node, StopGrace: svc.StopGrace}}
		if _, err := control.StartReplica(ctx, c, replica.DefaultTaskQueue, in); err != nil {
			t.Fatal(err)
		}
	}
	s.waitContainers(2)
	sameLines(t, "first apply", planLines(s.apply(file)), []string{"old/web-rep-1 unchanged ", "old/web-rep-2 unchanged "})
	// Complete once both have run min_ready (they have just started).
	if st := s.waitRollout(dep, "adopted, complete", time.Minute, completeAt(0)); st.Updated != 2 {
		t.Fatalf("after adopting: %+v", st)
	}
	sameLines(t, "new command", planLines(s.apply(s.deployment("old2", webFile(dep, 2, "v2", "1s", false)))),
		[]string{"old/web-rep-1 update args", "old/web-rep-2 update args"})
	s.waitRollout(dep, "generation 1 complete", 2*time.Minute, completeAt(1))
	if logs := s.vigil("logs", "old/web-rep-2"); !strings.Contains(logs.Stdout, "v2") {
		t.Fatalf("logs after the rollout: %q", logs.Stdout)
	}
}
