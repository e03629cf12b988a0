package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// ctr runs containerd's own CLI against the stack's daemon.
func (s *tstack) ctr(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("ctr", append([]string{"--address", s.Containerd.Address, "--namespace", s.Containerd.Namespace}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("ctr %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// runningTasks is the containers whose task runs, in containerd's own view.
func (s *tstack) runningTasks() map[string]bool {
	s.t.Helper()
	running := map[string]bool{}
	for _, line := range strings.Split(s.ctr("tasks", "list"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "RUNNING" {
			running[f[0]] = true
		}
	}
	return running
}

// removeByHand deletes a container and its task behind Vigil's back.
func (s *tstack) removeByHand(name string) {
	s.t.Helper()
	s.ctr("tasks", "delete", "--force", name)
	s.ctr("containers", "delete", name)
}

// waitRunsAgain waits until each replica has been restarted once more
// than before (after an exit with reason) and its task runs in containerd.
func (s *tstack) waitRunsAgain(refs []string, before map[string]int, reason runtime.ExitReason, limit time.Duration) {
	s.t.Helper()
	began := time.Now()
	deadline := began.Add(limit)
	for _, ref := range refs {
		name := idOf(s.t, ref).ContainerName()
		for {
			v, _ := s.status(ref)
			if v.State == workflows.StateRunning && v.TotalRestarts == before[ref]+1 && s.runningTasks()[name] {
				if v.LastExitReason == nil || *v.LastExitReason != string(reason) {
					s.t.Fatalf("%s restarted after %v, want %s", ref, v.LastExitReason, reason)
				}
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s does not run again within %s: %s, %d restarts (%d before), running tasks %v",
					ref, limit, v.State, v.TotalRestarts, before[ref], s.runningTasks())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	s.t.Logf("every replica runs again %s after the worker started", time.Since(began).Round(100*time.Millisecond))
}

// Containers removed by hand while the worker is down are found by the new
// worker's reconciliation (Lost) and run again within 15 s of its start,
// each restarted exactly once.
func TestContainersRemovedWhileWorkerDownRunAgain(t *testing.T) {
	t.Parallel() // its own stack; most of it is waiting
	s := newStack(t)
	s.supervise(s.deployment("gone", webFile("gone", 2, "v1", "1s", false)))
	refs := []string{"gone/web-rep-1", "gone/web-rep-2"}
	before := map[string]int{}
	for _, ref := range refs {
		s.waitFor(ref, "Running", 2*time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	}
	s.killWorker()
	for _, ref := range refs {
		s.removeByHand(idOf(t, ref).ContainerName())
	}
	s.startWorker()
	s.waitRunsAgain(refs, before, runtime.ExitLost, 15*time.Second)
	time.Sleep(3 * time.Second) // a later scan or reconciliation restarts nothing more
	for _, ref := range refs {
		if v, _ := s.status(ref); v.TotalRestarts != 1 || v.State != workflows.StateRunning {
			t.Fatalf("%s: %s with %d restarts, want Running after exactly one", ref, v.State, v.TotalRestarts)
		}
	}
}

// A container that no replica owns (left by unsupervise without --stop) is
// listed by `vigil node orphans`, and removed by --remove; an owned one is
// neither. A stop unsupervise --stop could not do (no worker) is done by the
// next worker within 15 s of its start, and only that container is removed.
func TestNodeOrphans(t *testing.T) {
	t.Parallel() // its own stack; most of it is waiting
	s := newStack(t)
	s.supervise(s.deployment("orph", webFile("orph", 3, "v1", "1s", false)))
	for _, ref := range []string{"orph/web-rep-1", "orph/web-rep-2", "orph/web-rep-3"} {
		s.waitFor(ref, "Running", 2*time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	}
	if r := s.vigil("unsupervise", "orph/web-rep-2"); r.Code != 0 {
		t.Fatalf("vigil unsupervise: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	owned, left := idOf(t, "orph/web-rep-1").ContainerName(), idOf(t, "orph/web-rep-2").ContainerName()
	stopped := idOf(t, "orph/web-rep-3").ContainerName()
	// The node loses its worker; workflows still run (--no-activities).
	s.killWorker()
	if err := s.StartSecondWorker("--no-activities"); err != nil {
		t.Fatal(err)
	}
	// Not unsuperviseStop's 10 s bound: the replica's workflow task first
	// waits out the killed worker's sticky queue (5 s).
	if r := s.vigil("unsupervise", "--stop", "orph/web-rep-3"); r.Code != 0 || !strings.Contains(r.Stdout, "container NOT stopped") {
		t.Fatalf("unsupervise --stop without a worker: exit %d, %q%s; want it to say the container was not stopped", r.Code, r.Stdout, r.Stderr)
	}
	s.KillSecondWorker()
	s.startWorker()
	began := time.Now()
	for strings.Contains(strings.Join(s.containerIDs(), " "), stopped) {
		if time.Since(began) > 15*time.Second {
			t.Fatalf("%s still there 15 s after the worker started: %v", stopped, s.containerIDs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("the pending stop of %s was done %s after the worker started", stopped, time.Since(began).Round(100*time.Millisecond))
	if log, _ := os.ReadFile(s.WorkerLog(s.Workers())); !strings.Contains(string(log), "Pending stop done") {
		t.Errorf("the worker's log does not say it did the pending stop of %s", stopped)
	}
	orphans := func(args ...string) map[string]bool {
		t.Helper()
		r := s.vigil(append([]string{"node", "orphans", s.Node, "--json"}, args...)...)
		if r.Code != 0 {
			t.Fatalf("vigil node orphans %v: exit %d\n%s%s", args, r.Code, r.Stdout, r.Stderr)
		}
		var res struct {
			Orphans []struct {
				Container string `json:"container"`
				Removed   bool   `json:"removed"`
			} `json:"orphans"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
			t.Fatalf("vigil node orphans --json: %v\n%s", err, r.Stdout)
		}
		out := map[string]bool{}
		for _, o := range res.Orphans {
			out[o.Container] = o.Removed
		}
		return out
	}
	if got := orphans(); len(got) != 1 || got[left] {
		t.Fatalf("orphans %v, want only %s, not removed", got, left)
	}
	if got := orphans("--remove"); len(got) != 1 || !got[left] {
		t.Fatalf("orphans --remove %v, want %s removed", got, left)
	}
	ids := strings.Join(s.containerIDs(), " ")
	if strings.Contains(ids, left) || !strings.Contains(ids, owned) {
		t.Fatalf("containerd has %s after --remove; want %s and not %s", ids, owned, left)
	}
	if got := orphans(); len(got) != 0 {
		t.Fatalf("orphans after --remove: %v", got)
	}
}

// taskPID is the PID of a container's task in containerd's own view ("" if none).
func (s *tstack) taskPID(name string) string {
	s.t.Helper()
	for _, line := range strings.Split(s.ctr("tasks", "list"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

// After a simulated reboot (the worker, containerd, every shim and every
// container process SIGKILLed, containerd's state directory wiped, then
// containerd and a worker started again) every replica runs again within
// 30 s, restarted once for a Lost task: an adopted one (its start found the
// task running, after an unsupervise and supervise) included.
func TestRebootedNodeRunsEveryReplicaAgain(t *testing.T) {
	t.Parallel() // its own stack; most of it is waiting
	s := newStack(t)
	file := s.deployment("boot", webFile("boot", 2, "v1", "1s", false))
	s.supervise(file)
	refs := []string{"boot/web-rep-1", "boot/web-rep-2"}
	running := func(v workflows.StateView) bool { return v.State == workflows.StateRunning }
	for _, ref := range refs {
		s.waitFor(ref, "Running", 2*time.Minute, running)
	}
	// Adopt rep-2's task: supervised afresh, its start finds the task running.
	adopted := idOf(t, refs[1]).ContainerName()
	pid := s.taskPID(adopted)
	if r := s.vigil("unsupervise", refs[1]); r.Code != 0 {
		t.Fatalf("vigil unsupervise: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	s.supervise(file)
	v := s.waitFor(refs[1], "Running again", time.Minute, func(v workflows.StateView) bool { return running(v) && v.TotalRestarts == 0 })
	if got := s.taskPID(adopted); got != pid || pid == "" {
		t.Fatalf("the task of %s is %q, was %q: not adopted", adopted, got, pid)
	}
	t.Logf("adopted %s (task %s), supervised since %s", adopted, pid, v.SupervisedSince)

	s.killWorker()
	if err := s.Containerd.Crash(); err != nil {
		t.Fatalf("crash containerd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Containerd.Start(ctx); err != nil {
		t.Fatalf("start containerd again: %v", err)
	}
	if tasks := s.runningTasks(); len(tasks) != 0 {
		t.Fatalf("tasks running after the reboot: %v", tasks)
	}
	s.startWorker()
	s.waitRunsAgain(refs, map[string]int{}, runtime.ExitLost, 30*time.Second)
}
