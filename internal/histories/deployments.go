package histories

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// Scenarios of deployments as desired state (v0.2.0): the deployment
// workflow "vigil/<dep>" and the replica requests it sends.

// deploymentFile is a one-service deployment with replicas and a rollout
// that waits one second per replaced replica.
func deploymentFile(dep, service string, replicas int, script, onPanic string) string {
	f := Deployment(dep, service, Image, script, onPanic)
	f = strings.Replace(f, "replicas: 1 }", fmt.Sprintf("replicas: %d }", replicas), 1)
	return f + "    update: { max_unavailable: 1, min_ready: 1s }\n"
}

// RolloutStatus reads `vigil rollout status DEP --json`.
func (e *Env) RolloutStatus(dep string) (workflows.RolloutStatus, error) {
	var st workflows.RolloutStatus
	out, err := e.Vigil("rollout", "status", dep, "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// WaitRollout polls the rollout until cond holds.
func (e *Env) WaitRollout(ctx context.Context, dep, what string, cond func(workflows.RolloutStatus) bool) (workflows.RolloutStatus, error) {
	for {
		st, err := e.RolloutStatus(dep)
		if err == nil && cond(st) {
			return st, nil
		}
		if serr := sleep(ctx, 300*time.Millisecond); serr != nil {
			return st, fmt.Errorf("%s: %s: %w (last %+v, %v)", dep, what, serr, st, err)
		}
	}
}

func complete(generation int) func(workflows.RolloutStatus) bool {
	return func(st workflows.RolloutStatus) bool {
		return st.Generation == generation && st.State == workflows.RolloutComplete
	}
}

// rolling-update: two replicas; a policy change applied in place; a new
// command rolled out one replica at a time; then scaled down to one. The
// deployment workflow (open), a replaced replica (open) and the removed
// replica (closed) are recorded.
func rollingUpdate(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	steps := []string{
		deploymentFile(dep, "web", 2, healthyScript, restartAlways),
		deploymentFile(dep, "web", 2, healthyScript, strings.Replace(restartAlways, "max_restarts: 1000", "max_restarts: 999", 1)),
		deploymentFile(dep, "web", 2, "echo v2; "+healthyScript, strings.Replace(restartAlways, "max_restarts: 1000", "max_restarts: 999", 1)),
		deploymentFile(dep, "web", 1, "echo v2; "+healthyScript, strings.Replace(restartAlways, "max_restarts: 1000", "max_restarts: 999", 1)),
	}
	for i, f := range steps {
		if err := e.Supervise(dep, f); err != nil {
			return nil, err
		}
		if _, err := e.WaitRollout(ctx, dep, fmt.Sprintf("generation %d complete", i+1), complete(i+1)); err != nil {
			return nil, err
		}
	}
	_, wid1 := ids(dep, "web")
	wid2 := "vigil/" + dep + "/web-rep-2"
	if err := e.WaitClosed(ctx, wid2); err != nil {
		return nil, err
	}
	return []Capture{
		{File: "deployment-rolling-update", WorkflowID: replica.DeploymentWorkflowID(dep)},
		{File: "rolling-update-replaced", WorkflowID: wid1},
		{File: "rolling-update-removed", WorkflowID: wid2},
	}, nil
}

// service-shutdown: replica 1 of three crashes under the shutdown policy;
// the deployment shuts the other two down (open).
func serviceShutdown(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	// Only replica 1 crashes (its hostname is its container name).
	script := `case $(hostname) in *-rep-1) sleep 2; exit 6;; esac; exec sleep 3600`
	if err := e.Supervise(dep, deploymentFile(dep, "api", 3, script, "{ action: shutdown, poll_interval: 1s }")); err != nil {
		return nil, err
	}
	for r := 1; r <= 3; r++ {
		ref := fmt.Sprintf("%s/api-rep-%d", dep, r)
		if _, err := e.WaitState(ctx, ref, "Shutdown", func(v workflows.StateView) bool { return v.State == workflows.StateShutdown }); err != nil {
			return nil, err
		}
	}
	return []Capture{
		{File: "deployment-service-shutdown", WorkflowID: replica.DeploymentWorkflowID(dep)},
		{File: "service-shutdown-cause", WorkflowID: "vigil/" + dep + "/api-rep-1"},
		{File: "service-shutdown-sibling", WorkflowID: "vigil/" + dep + "/api-rep-2"},
	}, nil
}

// rollback-mid-replacement (since v0.3.0): two replicas; a new command is
// applied, and while replica 1's replacement waits out min_ready the
// previous file is applied again: a new generation, and replica 1 is
// replaced back. The deployment workflow and replica 1 (open) are recorded.
func rollbackMidReplacement(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	file := func(script string) string {
		return strings.Replace(deploymentFile(dep, "web", 2, script, restartAlways), "min_ready: 1s", "min_ready: 4s", 1)
	}
	v1, v2 := file(healthyScript), file("echo v2; "+healthyScript)
	if err := e.Supervise(dep, v1); err != nil {
		return nil, err
	}
	if _, err := e.WaitRollout(ctx, dep, "generation 1 complete", complete(1)); err != nil {
		return nil, err
	}
	if err := e.Supervise(dep, v2); err != nil {
		return nil, err
	}
	ref, wid := ids(dep, "web")
	if _, err := e.WaitState(ctx, ref, "replaced with generation 2", func(v workflows.StateView) bool { return v.Generation == 2 }); err != nil {
		return nil, err
	}
	if err := e.Supervise(dep, v1); err != nil {
		return nil, err
	}
	if _, err := e.WaitRollout(ctx, dep, "generation 3 complete", complete(3)); err != nil {
		return nil, err
	}
	return []Capture{
		{File: "deployment-rollback-mid-replacement", WorkflowID: replica.DeploymentWorkflowID(dep)},
		{File: "rollback-mid-replacement-replaced", WorkflowID: wid},
	}, nil
}

// deployment-delete (since v0.3.0): two replicas rolled out, then `vigil
// delete`: every replica unsupervised with its container removed, then the
// deployment workflow ends. The deployment workflow and a replica (both
// closed) are recorded.
func deploymentDelete(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	if err := e.Supervise(dep, deploymentFile(dep, "web", 2, healthyScript, restartAlways)); err != nil {
		return nil, err
	}
	if _, err := e.WaitRollout(ctx, dep, "generation 1 complete", complete(1)); err != nil {
		return nil, err
	}
	if _, err := e.Vigil("delete", dep); err != nil {
		return nil, err
	}
	_, wid := ids(dep, "web")
	for _, id := range []string{replica.DeploymentWorkflowID(dep), wid} {
		if err := e.WaitClosed(ctx, id); err != nil {
			return nil, err
		}
	}
	return []Capture{
		{File: "deployment-delete", WorkflowID: replica.DeploymentWorkflowID(dep)},
		{File: "deployment-delete-replica", WorkflowID: wid},
	}, nil
}

// preflight-pause (since v0.3.0): two replicas; a file with an image the
// node does not have (pull_policy never) fails the preflight, so nothing is
// replaced and the rollout pauses; the first file applied again completes.
// The deployment workflow (open) is recorded.
func preflightPause(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	v1 := deploymentFile(dep, "web", 2, healthyScript, restartAlways)
	missing := strings.Replace(v1, Image, "docker.io/library/vigil-no-such-image:1", 1)
	for i, step := range []struct {
		file string
		cond func(workflows.RolloutStatus) bool
	}{
		{v1, complete(1)},
		{missing, func(st workflows.RolloutStatus) bool {
			return st.Generation == 2 && st.State == workflows.RolloutPaused
		}},
		{v1, complete(3)},
	} {
		if err := e.Supervise(dep, step.file); err != nil {
			return nil, err
		}
		if _, err := e.WaitRollout(ctx, dep, fmt.Sprintf("step %d of the rollout", i+1), step.cond); err != nil {
			return nil, err
		}
	}
	return []Capture{{File: "deployment-preflight-pause", WorkflowID: replica.DeploymentWorkflowID(dep)}}, nil
}

// budget-down-first (since v0.3.0): two replicas, replica 2 crash-looping;
// the next file fixes it: replica 2, already down, is replaced first and
// takes no budget, then replica 1. The deployment workflow (open) is
// recorded.
func budgetDownFirst(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	crashing := `case $(hostname) in *-rep-2) sleep 1; exit 3;; esac; exec sleep 3600`
	pol := "{ action: restart, max_restarts: 1, restart_window: 120s, backoff: 1h, poll_interval: 1s }"
	if err := e.Supervise(dep, deploymentFile(dep, "web", 2, crashing, pol)); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, dep+"/web-rep-2", "CrashLoopBackOff", inBackoff); err != nil {
		return nil, err
	}
	if err := e.Supervise(dep, deploymentFile(dep, "web", 2, "echo v2; "+healthyScript, pol)); err != nil {
		return nil, err
	}
	if _, err := e.WaitRollout(ctx, dep, "generation 2 complete", complete(2)); err != nil {
		return nil, err
	}
	return []Capture{{File: "deployment-budget-down-first", WorkflowID: replica.DeploymentWorkflowID(dep)}}, nil
}
