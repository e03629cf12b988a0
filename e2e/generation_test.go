package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// runs checks that each of a deployment's web replicas runs version: its
// supervisor's config and its container's last output line say so.
func (s *tstack) runs(c client.Client, dep string, replicas int, version string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for r := 1; r <= replicas; r++ {
		id := replica.ID{Deployment: dep, Service: "web", Replica: r}
		v, err := c.QueryWorkflow(ctx, id.WorkflowID(), "", replica.QueryConfig)
		if err != nil {
			s.t.Fatalf("config of %s: %v", id.Ref(), err)
		}
		var in workflows.SupervisionInput
		if err := v.Get(&in); err != nil {
			s.t.Fatal(err)
		}
		if args := strings.Join(in.Spec.Args, " "); !strings.Contains(args, "echo "+version+";") {
			s.t.Fatalf("%s is supervised with %q; want %s", id.Ref(), args, version)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			logs := s.vigil("logs", id.Ref(), "--tail", "1")
			if strings.TrimSpace(logs.Stdout) == version {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s's container last printed %q; want %s", id.Ref(), logs.Stdout, version)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// What is applied is what runs (issue 23), on one stack: a rollback applied
// while the replacement to the new spec is in flight leaves every replica
// on the rolled-back spec; after the deployment workflow is terminated, the
// next apply replaces what changed; and a rollout of five replicas that
// exit now and then completes without a pause, three times.
func TestWhatIsAppliedIsWhatRuns(t *testing.T) {
	t.Parallel() // its own stack; most of it is waiting
	s := newStack(t)
	began := time.Now()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A rollback mid-replacement.
	const dep = "gen"
	v1 := s.deployment("gen-v1", webFile(dep, 2, "v1", "4s", false))
	s.apply(v1, "--wait", "--timeout", "2m")
	s.apply(s.deployment("gen-v2", webFile(dep, 2, "v2", "4s", false)))
	s.waitFor(dep+"/web-rep-1", "replacement to generation 2 under way", time.Minute, func(v workflows.StateView) bool {
		return v.Generation == 2
	})
	plan := planLines(s.apply(v1))
	if plan[0] != "gen/web-rep-1 update args" {
		t.Fatalf("rollback mid-replacement: plan %q; want rep-1 updated back", plan)
	}
	s.waitRollout(dep, "generation 3 complete", 2*time.Minute, completeAt(3))
	s.runs(c, dep, 2, "v1")
	t.Logf("rollback mid-replacement: done after %s", time.Since(began).Round(time.Second))

	// The deployment workflow terminated: a new one counts on, and replaces.
	const term = "term"
	s.apply(s.deployment("term-v1", webFile(term, 2, "v1", "1s", false)), "--wait", "--timeout", "2m")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.TerminateWorkflow(ctx, replica.DeploymentWorkflowID(term), "", "e2e: the deployment workflow is lost"); err != nil {
		t.Fatal(err)
	}
	sameLines(t, "apply after terminate", planLines(s.apply(s.deployment("term-v2", webFile(term, 2, "v2", "1s", false)))),
		[]string{"term/web-rep-1 update args", "term/web-rep-2 update args"})
	s.waitRollout(term, "generation 2 complete", 2*time.Minute, completeAt(2))
	s.runs(c, term, 2, "v2")
	t.Logf("apply after terminate: done after %s", time.Since(began).Round(time.Second))

	// Five replicas that exit every few seconds (after min_ready): each
	// rollout updates all five and never pauses.
	const flaky = "flaky"
	file := func(version string) string {
		return s.deployment("flaky-"+version, strings.NewReplacer(
			"exec sleep 3600", "sleep 3; exit 1",
			"backoff: 2s", "backoff: 1s",
		).Replace(webFile(flaky, 5, version, "1s", false)))
	}
	s.apply(file("v1"))
	for try, version := range []string{"v2", "v3", "v4"} {
		s.apply(file(version))
		gen := try + 2
		s.waitRollout(flaky, version+" updated 5/5", 3*time.Minute, func(st workflows.RolloutStatus) bool {
			if st.State == workflows.RolloutPaused {
				t.Fatalf("try %d: the rollout paused: %s", try+1, st.Reason)
			}
			return st.Generation == gen && st.Updated == 5
		})
		t.Logf("flaky rollout %d: done after %s", try+1, time.Since(began).Round(time.Second))
	}
}
