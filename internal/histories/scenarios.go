package histories

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
	"github.com/vigil-run/vigil/workflows"
)

// Scenarios is the one list of recorded situations. A release that adds
// behaviour adds its scenarios here, with Since set to that release, and
// records its set with tools/record-histories.
var Scenarios = []Scenario{
	{Name: "healthy", Since: "v0.1.0", Run: healthy},
	{Name: "crash-restart", Since: "v0.1.0", Run: crashRestart},
	{Name: "crashloop-backoff", Since: "v0.1.0", Run: crashLoopBackoff},
	{Name: "backoff-ended", Since: "v0.1.0", Run: backoffEnded},
	{Name: "isolate-release", Since: "v0.1.0", Run: isolateRelease},
	{Name: "shutdown", Since: "v0.1.0", Run: shutdown},
	{Name: "completed", Since: "v0.1.0", Run: completed},
	{Name: "failed-start", Since: "v0.1.0", Run: failedStart},
	{Name: "operator-restart", Since: "v0.1.0", Run: operatorRestart},
	{Name: "unsupervise-stop", Since: "v0.1.0", Run: unsuperviseStop},
	{Name: "continued-as-new", Since: "v0.1.0", Run: continuedAsNew},
	{Name: "periodic-continue-as-new", Since: "v0.2.0", Run: periodicContinueAsNew},
	{Name: "periodic-continue-as-new-backoff", Since: "v0.2.0", Run: periodicContinueAsNewBackoff},
	{Name: "exponential-backoff", Since: "v0.2.0", Run: exponentialBackoff},
	{Name: "rule-shutdown", Since: "v0.2.0", Run: ruleShutdown},
	{Name: "rolling-update", Since: "v0.2.0", Run: rollingUpdate},
	{Name: "service-shutdown", Since: "v0.2.0", Run: serviceShutdown},
	{Name: "rollover", Since: "v0.2.0", Run: rollover},
	{Name: "failed-start-restart", Since: "v0.2.0", Run: failedStartRestart},
	{Name: "unsupervise-no-worker", Since: "v0.2.0", Run: unsuperviseNoWorker},
	{Name: "bridge-port-volume", Since: "v0.2.0", Run: bridgePortVolume},
	{Name: "node-watch-exit-reported", Since: "v0.2.0", Run: nodeWatchExitReported},
	{Name: "node-workflow", Since: "v0.2.0", Run: nodeWorkflow},
	{Name: "lost-task", Since: "v0.3.0", Run: lostTask},
	{Name: "no-worker-start", Since: "v0.3.0", Run: noWorkerStart},
	{Name: "unsupervise-mid-replacement", Since: "v0.3.0", Run: unsuperviseMidReplacement},
	{Name: "node-takeover", Since: "v0.3.0", Run: nodeTakeover},
	{Name: "confined-port-in-use", Since: "v0.3.0", Run: confinedPortInUse},
	{Name: "rollback-mid-replacement", Since: "v0.3.0", Run: rollbackMidReplacement},
	{Name: "restart-during-backoff", Since: "v0.3.0", Run: restartDuringBackoff},
	{Name: "deployment-delete", Since: "v0.3.0", Run: deploymentDelete},
	{Name: "preflight-pause", Since: "v0.3.0", Run: preflightPause},
	{Name: "budget-down-first", Since: "v0.3.0", Run: budgetDownFirst},
	{Name: "fenced-restart", Since: "v0.3.0", Run: fencedRestart},
}

// Image is the busybox image every private containerd of the tests holds.
const Image = "docker.io/library/busybox:local"

// Deployment is a one-service, one-replica deployment file.
func Deployment(dep, service, image, script, onPanic string) string {
	return fmt.Sprintf(`version: v1
deployment: %s
services:
  %s:
    rtype: service
    image: { name: %s, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: [%q] }
    scale: { mode: fixed, replicas: 1 }
    stop_grace: 2s
    errors:
      on_panic: %s
`, dep, service, image, script, onPanic)
}

const (
	healthyScript = "exec sleep 3600"
	crashScript   = "sleep 1; exit 3"
	restartAlways = "{ action: restart, max_restarts: 1000, restart_window: 120s, backoff: 3s, poll_interval: 1s }"
)

// ref and workflow ID of replica 1 of the deployment's service.
func ids(dep, service string) (ref, wid string) {
	id := replica.ID{Deployment: dep, Service: service, Replica: 1}
	return id.Ref(), id.WorkflowID()
}

// Watching: the history shows a watch scheduled after the last start
// (v0.1.0), or, with the node watch (since v0.2.0), a run that started its
// container and now waits with nothing in flight for the watch's report.
func Watching(h *historypb.History) bool {
	if CountActivities(h, replica.WaitForExitName, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) >
		CountActivities(h, replica.WaitForExitName, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)+
			CountActivities(h, replica.WaitForExitName, enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED) {
		return true
	}
	if !hasNodeWatch(h) || CountActivities(h, replica.EnsureRunningName, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 0 {
		return false
	}
	pendingTasks, pendingActivities := 0, 0
	for _, ev := range h.Events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
			pendingTasks++
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED, enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			pendingTasks--
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			pendingActivities++
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED, enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			pendingActivities--
		}
	}
	return pendingTasks == 0 && pendingActivities == 0
}

// hasNodeWatch: the run took the node-watch branch: its v0.2.0 change
// marker, or a release marker (every release that has one watches by node).
func hasNodeWatch(h *historypb.History) bool {
	ids := ChangeIDs(h, humanjson.DataConverter())
	return slices.Contains(ids, "node-watch") || slices.Contains(ids, workflows.ReleaseMarker)
}

// ChangeIDs lists the change IDs of the run's version markers
// (workflow.GetVersion), in the order it recorded them.
func ChangeIDs(h *historypb.History, dc converter.DataConverter) []string {
	var ids []string
	for _, ev := range h.Events {
		a := ev.GetMarkerRecordedEventAttributes()
		if a.GetMarkerName() != versionMarkerName {
			continue
		}
		var id string
		if p := a.GetDetails()["change-id"]; len(p.GetPayloads()) == 1 && dc.FromPayloads(p, &id) == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// versionMarkerName is the marker the Temporal Go SDK records for GetVersion.
const versionMarkerName = "Version"

// superviseWatched supervises a healthy replica and waits until it is watched.
func superviseWatched(ctx context.Context, e *Env, dep string) (ref, wid string, err error) {
	ref, wid = ids(dep, "web")
	if err := e.Supervise(dep, Deployment(dep, "web", Image, healthyScript, restartAlways)); err != nil {
		return "", "", err
	}
	return ref, wid, e.WaitHistory(ctx, wid, "watching", Watching)
}

// unsupervise ends supervision and waits for the workflow to close.
func unsupervise(ctx context.Context, e *Env, ref, wid string, stop bool) error {
	args := []string{"unsupervise", ref}
	if stop {
		args = append(args, "--stop")
	}
	if err := e.Update(ctx, args...); err != nil {
		return err
	}
	return e.WaitClosed(ctx, wid)
}

func one(wid, file string) []Capture { return []Capture{{File: file, WorkflowID: wid}} }

// healthy: a running replica being watched (open).
func healthy(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	_, wid, err := superviseWatched(ctx, e, dep)
	return one(wid, "healthy"), err
}

// crash-restart: a container that crashes every second is restarted twice, then unsupervised.
func crashRestart(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, crashScript, restartAlways)); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "two restarts", func(v workflows.StateView) bool { return v.TotalRestarts >= 2 }); err != nil {
		return nil, err
	}
	return one(wid, "crash-restart"), unsupervise(ctx, e, ref, wid, false)
}

func inBackoff(v workflows.StateView) bool {
	return v.State == workflows.StateCrashLoopBackOff && v.NextRestartAt != nil
}

// crashloop-backoff: a crash loop waiting out a long backoff (open).
func crashLoopBackoff(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	pol := "{ action: restart, max_restarts: 1, restart_window: 120s, backoff: 1h, poll_interval: 1s }"
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, crashScript, pol)); err != nil {
		return nil, err
	}
	_, err := e.WaitState(ctx, ref, "CrashLoopBackOff", inBackoff)
	return one(wid, "crashloop-backoff"), err
}

// backoff-ended: a short backoff runs out, the container is started once,
// then supervision ends with --stop.
func backoffEnded(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	pol := "{ action: restart, max_restarts: 1, restart_window: 120s, backoff: 2s, poll_interval: 1s }"
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, crashScript, pol)); err != nil {
		return nil, err
	}
	// One restart at once, the backoff, then the delayed start (restart 2).
	if _, err := e.WaitState(ctx, ref, "the start after the backoff", func(v workflows.StateView) bool {
		return v.TotalRestarts >= 2
	}); err != nil {
		return nil, err
	}
	return one(wid, "backoff-ended"), unsupervise(ctx, e, ref, wid, true)
}

// rulesPolicy restarts exit 3 with an exponential backoff and shuts down on exit 42.
const rulesPolicy = "{ action: restart, max_restarts: 1, restart_window: 120s, poll_interval: 1s, " +
	"backoff: { initial: 1s, max: 2s, multiplier: 2, jitter: 0.1 }, rules: [ { exit_codes: [42], action: shutdown } ] }"

// exponential-backoff: two crash-loop episodes of an exponential backoff
// (1 s, then 2 s), then supervision ends.
func exponentialBackoff(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, crashScript, rulesPolicy)); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "two backoff episodes", func(v workflows.StateView) bool { return v.TotalRestarts >= 3 }); err != nil {
		return nil, err
	}
	return one(wid, "exponential-backoff"), unsupervise(ctx, e, ref, wid, false)
}

// rule-shutdown: exit 42 matches a rule whose action is shutdown (open).
func ruleShutdown(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, "sleep 1; exit 42", rulesPolicy)); err != nil {
		return nil, err
	}
	_, err := e.WaitState(ctx, ref, "Shutdown", func(v workflows.StateView) bool { return v.State == workflows.StateShutdown })
	return one(wid, "rule-shutdown"), err
}

// isolate-release: isolated after a crash, released, isolated again, unsupervised.
func isolateRelease(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	pol := "{ action: isolate, poll_interval: 1s }"
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, crashScript, pol)); err != nil {
		return nil, err
	}
	isolated := func(n int) func(workflows.StateView) bool {
		return func(v workflows.StateView) bool {
			c := 0
			for _, ev := range v.Events {
				if ev.Type == workflows.EventContainerIsolated {
					c++
				}
			}
			return v.State == workflows.StateIsolated && c >= n
		}
	}
	if _, err := e.WaitState(ctx, ref, "Isolated", isolated(1)); err != nil {
		return nil, err
	}
	if err := e.Update(ctx, "release", ref); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "Isolated again", isolated(2)); err != nil {
		return nil, err
	}
	return one(wid, "isolate-release"), unsupervise(ctx, e, ref, wid, false)
}

// shutdown: a crash under the shutdown policy, waiting for the operator (open).
func shutdown(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, "sleep 1; exit 5", "{ action: shutdown, poll_interval: 1s }")); err != nil {
		return nil, err
	}
	_, err := e.WaitState(ctx, ref, "Shutdown", func(v workflows.StateView) bool { return v.State == workflows.StateShutdown })
	return one(wid, "shutdown"), err
}

// completed: exit 0 ends supervision.
func completed(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	_, wid := ids(dep, "job")
	if err := e.Supervise(dep, Deployment(dep, "job", Image, "sleep 1; exit 0", restartAlways)); err != nil {
		return nil, err
	}
	return one(wid, "completed"), e.WaitClosed(ctx, wid)
}

// failed-start: the image is missing; the start has failed and been retried
// on a durable timer at least twice (open, still Restarting).
func failedStart(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	_, wid := ids(dep, "ghost")
	if err := e.Supervise(dep, Deployment(dep, "ghost", "docker.io/library/ghost:1", healthyScript, restartAlways)); err != nil {
		return nil, err
	}
	err := e.WaitHistory(ctx, wid, "two failed starts", func(h *historypb.History) bool {
		return CountActivities(h, replica.EnsureRunningName, enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED) >= 2 &&
			CountEvents(h, enumspb.EVENT_TYPE_TIMER_STARTED) >= 2
	})
	return one(wid, "failed-start"), err
}

// failed-start-restart: a start that keeps failing (Pending), `vigil
// restart` retrying it at once (it fails again), then unsupervise --stop
// during the retry wait.
func failedStartRestart(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "ghost")
	if err := e.Supervise(dep, Deployment(dep, "ghost", "docker.io/library/ghost:1", healthyScript, restartAlways)); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "a failed start and its retry timer", func(h *historypb.History) bool {
		return CountEvents(h, enumspb.EVENT_TYPE_TIMER_STARTED) >= 1
	}); err != nil {
		return nil, err
	}
	// It fails again: the CLI exits 1, saying so.
	if _, err := e.Stack.Vigil("restart", ref); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "the retry the restart made", func(h *historypb.History) bool {
		return CountEvents(h, enumspb.EVENT_TYPE_TIMER_STARTED) >= 2
	}); err != nil {
		return nil, err
	}
	return one(wid, "failed-start-restart"), unsupervise(ctx, e, ref, wid, true)
}

// unsupervise-no-worker: a replica on a node no worker serves stays
// Pending; unsupervise --stop ends it after the stop found no worker.
func unsuperviseNoWorker(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "web")
	if err := e.Supervise(dep, onNowhere(dep)); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "a start scheduled on the node's queue", func(h *historypb.History) bool {
		return CountActivities(h, replica.EnsureRunningName, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) >= 1
	}); err != nil {
		return nil, err
	}
	return one(wid, "unsupervise-no-worker"), unsupervise(ctx, e, ref, wid, true)
}

// onNowhere is the healthy web deployment on a node no worker serves.
func onNowhere(dep string) string {
	return strings.Replace(Deployment(dep, "web", Image, healthyScript, restartAlways), "    rtype: service\n", "    rtype: service\n    node: nowhere\n", 1)
}

// no-worker-start: a replica on a node no worker serves: its start's
// schedule-to-start runs out (node_state NoWorker) and is retried; then
// unsupervise --stop, whose stop no worker takes either.
func noWorkerStart(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "web")
	if err := e.Supervise(dep, onNowhere(dep)); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "no worker", func(v workflows.StateView) bool {
		return v.NodeState != nil && *v.NodeState == string(workflows.NodeNoWorker)
	}); err != nil {
		return nil, err
	}
	return one(wid, "no-worker-start"), unsupervise(ctx, e, ref, wid, true)
}

// unsupervise-mid-replacement: a running replica replaced by a config whose
// command cannot start (the preflight does not check commands): its old
// container is stopped, the new one's start fails and is retried, and
// unsupervise --stop ends it there.
func unsuperviseMidReplacement(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	unstartable := strings.Replace(Deployment(dep, "web", Image, healthyScript, restartAlways), `["/bin/sh", "-c"]`, `["/nonexistent/vigil-start"]`, 1)
	if err := e.Supervise(dep, unstartable); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "the new container's start scheduled", func(h *historypb.History) bool {
		return CountActivities(h, replica.EnsureRunningName, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) >= 2
	}); err != nil {
		return nil, err
	}
	return []Capture{
		{File: "unsupervise-mid-replacement", WorkflowID: wid},
		{File: "deployment-unsupervise-mid-replacement", WorkflowID: replica.DeploymentWorkflowID(dep)},
	}, unsupervise(ctx, e, ref, wid, true)
}

// operator-restart: `vigil restart` of a running replica, then unsupervise.
func operatorRestart(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	if err := e.Update(ctx, "restart", ref); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "watching after the restart", func(h *historypb.History) bool {
		return CountActivities(h, replica.EnsureRunningName, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) >= 2 && Watching(h)
	}); err != nil {
		return nil, err
	}
	return one(wid, "operator-restart"), unsupervise(ctx, e, ref, wid, false)
}

// restart-during-backoff (since v0.3.0): an operator's restart ends a long
// crash-loop backoff early; it starts the container without counting a
// restart. Then supervision ends with --stop.
func restartDuringBackoff(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "crasher")
	pol := "{ action: restart, max_restarts: 1, restart_window: 120s, backoff: 1h, poll_interval: 1s }"
	if err := e.Supervise(dep, Deployment(dep, "crasher", Image, crashScript, pol)); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "CrashLoopBackOff", inBackoff); err != nil {
		return nil, err
	}
	if err := e.Update(ctx, "restart", ref); err != nil {
		return nil, err
	}
	return one(wid, "restart-during-backoff"), unsupervise(ctx, e, ref, wid, true)
}

// unsupervise-stop: a running replica unsupervised with --stop.
func unsuperviseStop(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	return one(wid, "unsupervise-stop"), unsupervise(ctx, e, ref, wid, true)
}

// continued-as-new: a crashing replica whose runs continue as new after two
// exits. Both the first run (ended by continue-as-new) and the run it started
// (carrying the state; then unsupervised) are recorded.
func continuedAsNew(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, first, err := e.StartVariant(ctx, dep, "crasher", Deployment(dep, "crasher", Image, crashScript, restartAlways),
		func(in map[string]any) { in["continue_as_new_after"] = 2 })
	if err != nil {
		return nil, err
	}
	if _, err := e.NextRun(ctx, wid, first); err != nil {
		return nil, err
	}
	return e.unsuperviseChain(ctx, ref, wid, first, "continued-as-new")
}

// periodic-continue-as-new: a healthy replica whose run continues as new on
// its timer (every 6 s here, a day by default; since v0.3.0 after 3 to 6 s,
// at the replica's phase) without a restart; the next run is unsupervised.
func periodicContinueAsNew(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, first, err := e.StartVariant(ctx, dep, "web", Deployment(dep, "web", Image, healthyScript, restartAlways),
		func(in map[string]any) { in["continue_as_new_every"] = int64(6 * time.Second) })
	if err != nil {
		return nil, err
	}
	if _, err := e.NextRun(ctx, wid, first); err != nil {
		return nil, err
	}
	return e.unsuperviseChain(ctx, ref, wid, first, "periodic-continue-as-new")
}

// periodic-continue-as-new-backoff: the run's timer fires during a
// crash-loop backoff (reached about 3 s in; the timer fires after 10 to 20 s
// since v0.3.0); the next run waits out the same deadline (open).
func periodicContinueAsNewBackoff(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	pol := "{ action: restart, max_restarts: 1, restart_window: 120s, backoff: 1h, poll_interval: 1s }"
	ref, wid, first, err := e.StartVariant(ctx, dep, "crasher", Deployment(dep, "crasher", Image, crashScript, pol),
		func(in map[string]any) { in["continue_as_new_every"] = int64(20 * time.Second) })
	if err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "CrashLoopBackOff", inBackoff); err != nil {
		return nil, err
	}
	second, err := e.NextRun(ctx, wid, first)
	if err != nil {
		return nil, err
	}
	return []Capture{
		{File: "periodic-continue-as-new-backoff-run1", WorkflowID: wid, RunID: first},
		{File: "periodic-continue-as-new-backoff", WorkflowID: wid, RunID: second},
	}, nil
}

// rollover: `vigil rollover` moves a watched replica to a new run; the new
// run is unsupervised.
func rollover(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	d, err := e.Client.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		return nil, err
	}
	first := d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	if err := e.Update(ctx, "rollover", ref); err != nil {
		return nil, err
	}
	if _, err := e.NextRun(ctx, wid, first); err != nil {
		return nil, err
	}
	return e.unsuperviseChain(ctx, ref, wid, first, "rollover")
}

// unsuperviseChain unsupervises a continued replica and captures its first
// run as <file>-run1 and its last run as <file>.
func (e *Env) unsuperviseChain(ctx context.Context, ref, wid, first, file string) ([]Capture, error) {
	// The update goes to the current run (Update retries if it lands on a
	// run that is just continuing as new).
	if err := e.Update(ctx, "unsupervise", ref); err != nil {
		return nil, err
	}
	if err := e.WaitClosed(ctx, wid); err != nil {
		return nil, err
	}
	d, err := e.Client.DescribeWorkflowExecution(ctx, wid, "")
	if err != nil {
		return nil, err
	}
	return []Capture{
		{File: file + "-run1", WorkflowID: wid, RunID: first},
		{File: file, WorkflowID: wid, RunID: d.GetWorkflowExecutionInfo().GetExecution().GetRunId()},
	}, nil
}

// StartVariant starts replica 2 of a service with a setting the deployment
// file does not have: it supervises the file (replica 1) with the release's
// CLI, reads back the configuration the CLI made (the config query), stops
// replica 1, changes the configuration with mutate and starts replica 2 the
// way the CLI starts a replica. It returns replica 2's ref, workflow ID and
// first run ID.
func (e *Env) StartVariant(ctx context.Context, dep, service, yaml string, mutate func(map[string]any)) (ref, wid, runID string, err error) {
	ref1, wid1 := ids(dep, service)
	if err := e.Supervise(dep, yaml); err != nil {
		return "", "", "", err
	}
	// Since v0.2.0 a deployment workflow starts the replicas, a moment
	// after the CLI returns.
	var in map[string]any
	for {
		v, err := e.Client.QueryWorkflow(ctx, wid1, "", replica.QueryConfig)
		if err == nil {
			if err := v.Get(&in); err != nil {
				return "", "", "", err
			}
			break
		}
		if serr := sleep(ctx, 500*time.Millisecond); serr != nil {
			return "", "", "", fmt.Errorf("config query of %s: %w", wid1, err)
		}
	}
	if err := unsupervise(ctx, e, ref1, wid1, true); err != nil {
		return "", "", "", err
	}
	id, ok := in["id"].(map[string]any)
	if !ok {
		return "", "", "", fmt.Errorf("config query of %s has no id: %v", wid1, in)
	}
	// Another deployment name, which no deployment workflow manages (one
	// would remove a replica its file does not have).
	variant := dep + "-v"
	id["deployment"], id["replica"] = variant, 2
	mutate(in)
	id2 := replica.ID{Deployment: variant, Service: service, Replica: 2}
	ref, wid = id2.Ref(), id2.WorkflowID()
	run, err := e.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        wid,
		TaskQueue: replica.DefaultTaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrState.ValueSet(string(workflows.StateRunning)),
			workflows.SearchAttrService.ValueSet(service),
			workflows.SearchAttrDeployment.ValueSet(variant),
		),
	}, replica.SupervisorWorkflowName, in)
	if err != nil {
		return "", "", "", err
	}
	return ref, wid, run.GetRunID(), nil
}

// NextRun waits until the workflow's current run is no longer runID and returns it.
func (e *Env) NextRun(ctx context.Context, wid, runID string) (string, error) {
	for {
		d, err := e.Client.DescribeWorkflowExecution(ctx, wid, "")
		if err != nil {
			return "", err
		}
		if r := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); r != runID {
			return r, nil
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return "", fmt.Errorf("%s did not continue as new: %w", wid, err)
		}
	}
}

// bridge-port-volume: a crasher on the bridge network with a port published
// on 127.0.0.1, a named volume and an init is restarted twice (status shows
// its address and port), then unsupervised with --stop --volumes.
func bridgePortVolume(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ref, wid := ids(dep, "crasher")
	yaml := Deployment(dep, "crasher", Image, "echo up >> /data/starts; sleep 1; exit 3", restartAlways) + fmt.Sprintf(`    network: bridge
    ports: [{ container: 8080, host: %d, host_ip: 127.0.0.1 }]
    volumes: [{ name: data, target: /data }]
    init: true
`, port)
	if err := e.Supervise(dep, yaml); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "two restarts and an address", func(v workflows.StateView) bool {
		return v.TotalRestarts >= 2 && v.IP != "" && len(v.Ports) == 1
	}); err != nil {
		return nil, err
	}
	if err := e.Update(ctx, "unsupervise", ref, "--stop", "--volumes"); err != nil {
		return nil, err
	}
	return one(wid, "bridge-port-volume"), e.WaitClosed(ctx, wid)
}

// confined-port-in-use: a confined replica (a security block) publishing a
// host port a process of the host listens on: its start fails with
// PortInUse and waits on a retry timer; once the process lets the port go,
// the next attempt starts it.
func confinedPortInUse(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	ref, wid := ids(dep, "web")
	yaml := Deployment(dep, "web", Image, healthyScript, restartAlways) + fmt.Sprintf(`    network: bridge
    ports: [{ container: 8080, host: %d, host_ip: 127.0.0.1 }]
    security: { read_only: true, tmpfs: [/tmp], cap_drop: [ALL], cap_add: [NET_BIND_SERVICE] }
`, l.Addr().(*net.TCPAddr).Port)
	if err := e.Supervise(dep, yaml); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "a start refused (PortInUse) and its retry timer", func(h *historypb.History) bool {
		return CountEvents(h, enumspb.EVENT_TYPE_TIMER_STARTED) >= 1
	}); err != nil {
		return nil, err
	}
	l.Close()
	if _, err := e.WaitState(ctx, ref, "started once the port is free", func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && len(v.Ports) == 1
	}); err != nil {
		return nil, err
	}
	return one(wid, "confined-port-in-use"), unsupervise(ctx, e, ref, wid, true)
}

// nodeWatchExitReported: a healthy replica waits with nothing in flight; its
// container is killed behind Vigil's back, and the node watch's report
// (signal "exit") restarts it.
func nodeWatchExitReported(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	if err := e.Stack.Containerd.Signal(ctx, dep+".web-rep-1", syscall.SIGKILL); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "restarted after the reported exit", func(v workflows.StateView) bool {
		return v.TotalRestarts >= 1 && v.State == workflows.StateRunning
	}); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "watching again", Watching); err != nil {
		return nil, err
	}
	if err := unsupervise(ctx, e, ref, wid, false); err != nil {
		return nil, err
	}
	return one(wid, "node-watch-exit-reported"), nil
}

// node-workflow: the node's own long-running workflow (vigil-node/<node>),
// which follows containerd's events for every replica of the node, as it
// stands once a replica is watched and has crashed once (open).
func nodeWorkflow(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	if err := e.Stack.Containerd.Signal(ctx, replica.ID{Deployment: dep, Service: "web", Replica: 1}.ContainerName(), syscall.SIGKILL); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "restarted", func(v workflows.StateView) bool { return v.TotalRestarts >= 1 }); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "watching again", Watching); err != nil {
		return nil, err
	}
	return one(replica.NodeWorkflowID(e.Stack.Node), "node-workflow"), nil
}

// startedContainer reads id's container from the stack's containerd; it
// must have started.
func startedContainer(ctx context.Context, e *Env, id replica.ID) (runtime.ContainerInfo, error) {
	rt, err := vcontainerd.New(ctx, e.Stack.Containerd.RuntimeConfig())
	if err != nil {
		return runtime.ContainerInfo{}, err
	}
	defer rt.Close()
	list, err := rt.List(ctx)
	if err != nil {
		return runtime.ContainerInfo{}, err
	}
	i := slices.IndexFunc(list, func(c runtime.ContainerInfo) bool { return c.ID == id })
	if i < 0 || list[i].StartedAt.IsZero() {
		return runtime.ContainerInfo{}, fmt.Errorf("no started container %s", id.ContainerName())
	}
	return list[i], nil
}

// lost-task: the node reports the running task Lost, naming it by its start,
// as a watch does for a task gone with containerd's state (since v0.3.0 the
// replica matches the task, not the clocks): the replica acts on it once,
// restarting (open, watching again).
func lostTask(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid, err := superviseWatched(ctx, e, dep)
	if err != nil {
		return nil, err
	}
	id := replica.ID{Deployment: dep, Service: "web", Replica: 1}
	c, err := startedContainer(ctx, e, id)
	if err != nil {
		return nil, fmt.Errorf("lost-task: %w", err)
	}
	started := c.StartedAt.UTC()
	lost := activities.ExitReport{ID: id, Node: e.Stack.Node, Exit: runtime.Exit{ExitCode: runtime.FailedExitCode,
		ExitedAt: started, StartedAt: started, Reason: "container has no task", Cause: runtime.ExitLost}}
	if err := e.Client.SignalWorkflow(ctx, wid, "", replica.SignalExit, lost); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "restarted after the loss", func(v workflows.StateView) bool {
		return v.TotalRestarts >= 1 && v.State == workflows.StateRunning
	}); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "watching again", Watching); err != nil {
		return nil, err
	}
	return one(wid, "lost-task"), nil
}

// fenced-restart: a movable replica (placement) whose container its
// node's fence ended while the lease lapsed, reported once the lease came
// back: restarted in place, event Fenced, not counted (open). The report is
// the node watch's, sent here as the watch would.
func fencedRestart(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	ref, wid := ids(dep, "web")
	yaml := Deployment(dep, "web", Image, healthyScript, restartAlways) + "    placement: { nodes: [" + e.Stack.Node + "] }\n"
	if err := e.Supervise(dep, yaml); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "watching", Watching); err != nil {
		return nil, err
	}
	id := replica.ID{Deployment: dep, Service: "web", Replica: 1}
	c, err := startedContainer(ctx, e, id)
	if err != nil {
		return nil, fmt.Errorf("fenced-restart: %w", err)
	}
	fenced := activities.ExitReport{ID: id, Node: e.Stack.Node, Exit: runtime.Exit{ExitCode: lease.FencedExit,
		ExitedAt: time.Now().UTC(), StartedAt: c.StartedAt.UTC(), PID: c.PID, Cause: runtime.ExitFenced}}
	if err := e.Client.SignalWorkflow(ctx, wid, "", replica.SignalExit, fenced); err != nil {
		return nil, err
	}
	if _, err := e.WaitState(ctx, ref, "restarted in place after the fence", func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && len(v.Events) > 0 && v.Events[len(v.Events)-1].Type == workflows.EventFenced
	}); err != nil {
		return nil, err
	}
	if err := e.WaitHistory(ctx, wid, "watching again", Watching); err != nil {
		return nil, err
	}
	return one(wid, "fenced-restart"), nil
}

// node-takeover: the node's workflow after `vigil node takeover` (update
// "takeover"): its worker's claim (update "claim") accepted before, the node
// released for the next claim (open).
func nodeTakeover(ctx context.Context, e *Env, dep string) ([]Capture, error) {
	if err := e.Update(ctx, "node", "takeover", e.Stack.Node); err != nil {
		return nil, err
	}
	return one(replica.NodeWorkflowID(e.Stack.Node), dep), nil
}
