package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// noWorkerErr is what a node activity ends with when no worker on its node
// took it within its schedule-to-start timeout.
func noWorkerErr() error {
	return temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
}

// A start that no worker takes is a typed outcome the replica shows
// (node_state NoWorker, since when) while it tries again; the next start a
// worker takes makes the node Ready.
func TestNoWorkerIsShownAndTheStartRetried(t *testing.T) {
	n := &node{startErrs: []error{noWorkerErr(), noWorkerErr(), noWorkerErr()}}
	env := newEnv(t, n)
	var during StateView
	env.RegisterDelayedCallback(func() { during = queryState(t, env) }, time.Second)
	unsuperviseWhenWatching(env, n, 1, 2*time.Second)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, StatePending, during.State)
	require.NotNil(t, during.NodeState)
	require.Equal(t, string(NodeNoWorker), *during.NodeState)
	require.NotNil(t, during.NodeSince)
	v := queryState(t, env)
	require.Equal(t, string(NodeReady), *v.NodeState)
	require.Len(t, n.starts, 1)
}

// replacing starts a replica and, once it runs, replaces its container
// (generation 2) with the given min_ready; block makes stops wait for a
// worker that never comes.
func replacing(t *testing.T, minReady time.Duration, block bool) (n *node, env *testsuite.TestWorkflowEnvironment, reconf *updateResult) {
	n = &node{}
	env = newEnv(t, n)
	reconf = &updateResult{}
	next := input(policy.Policy{})
	next.Spec.Args = []string{"v2"}
	whenWatching(env, n, 1, 0, func() {
		n.mu.Lock()
		n.blockStops = block
		n.mu.Unlock()
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 2, Config: next.ReplicaConfig, Replace: true, MinReady: minReady}, reconf)
	})
	return n, env, reconf
}

// requireUnsupervisedMidReplacement: unsupervise returned, and the
// replacement's answer says supervision ended.
func requireUnsupervisedMidReplacement(t *testing.T, env *testsuite.TestWorkflowEnvironment, end, reconf *updateResult) {
	t.Helper()
	require.NoError(t, env.GetWorkflowError())
	require.True(t, end.done)
	require.NoError(t, end.rejected)
	require.NoError(t, end.err)
	require.ErrorContains(t, reconf.err, "supervision ended (unsupervised)")
	require.Equal(t, StateUnsupervised, queryState(t, env).State)
}

// unsupervise is heard while the old container's stop of a replacement
// waits for a worker.
func TestUnsuperviseDuringTheReplacementStop(t *testing.T) {
	n, env, reconf := replacing(t, time.Second, true)
	// Mock time moves at wall-clock pace while the stop "runs".
	end := unsuperviseWhenWatching(env, n, 1, 100*time.Millisecond)
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	requireUnsupervisedMidReplacement(t, env, end, reconf)
	require.Len(t, n.specs, 1, "no new container")
}

// unsupervise is heard during min_ready.
func TestUnsuperviseDuringMinReady(t *testing.T) {
	n, env, reconf := replacing(t, time.Hour, false)
	// The second watch is the new container's, for min_ready.
	end := unsuperviseWhenWatching(env, n, 2, 0)
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	requireUnsupervisedMidReplacement(t, env, end, reconf)
	require.Len(t, n.specs, 2)
}

// A deletion no worker on the node takes pauses the rollout, saying so,
// instead of waiting without end.
func TestDeploymentPausesWhenNoWorkerDeletes(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), &updateResult{})
	env.RegisterDelayedCallback(func() {
		c.mu.Lock()
		c.noWorker = true
		c.mu.Unlock()
	}, 90*time.Second)
	applyAt(env, 2*time.Minute, shopSpec(1, "v1", policy.Policy{}), &updateResult{})
	var st RolloutStatus
	env.RegisterDelayedCallback(func() { st = rollout(t, env) }, 10*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 11*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Equal(t, RolloutPaused, st.State)
	require.Contains(t, st.Reason, "no worker on node node-a took the deletion of shop/api-rep-2's container")
}

// A stop unsupervise --stop could not do (no worker on the node) is kept
// in the closed run's memo, for the node to do once a worker runs there.
func TestUnsuperviseStopNoWorkerTookIsKept(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	var pending []any
	env.OnUpsertMemo(mock.Anything).Run(func(args mock.Arguments) {
		if v, ok := args.Get(0).(map[string]any)[replica.MemoStopPending]; ok {
			pending = append(pending, v)
		}
	}).Return(nil)
	end := &updateResult{}
	whenWatching(env, n, 1, time.Second, func() {
		n.mu.Lock()
		n.stopErr = noWorkerErr()
		n.mu.Unlock()
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{Stop: true, Volumes: true}, end)
	})
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, end.err)
	require.Contains(t, end.value.(UpdateResult).Note, "container NOT stopped: no vigil-worker on node node-a")
	require.Equal(t, []any{activities.StopInput{ID: replicaID, Grace: runtime.DefaultStopGrace, Remove: true, RemoveVolumes: true}}, pending)
}

// unsupervise is heard while a service shutdown's stop waits for a worker.
func TestUnsuperviseDuringTheShutdownStop(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	shutdown := &updateResult{}
	whenWatching(env, n, 1, 0, func() {
		n.mu.Lock()
		n.blockStops = true
		n.mu.Unlock()
		sendUpdate(env, replica.UpdateShutdown, ShutdownRequest{Cause: "test"}, shutdown)
	})
	// Mock time moves at wall-clock pace while the stop "runs".
	end := unsuperviseWhenWatching(env, n, 1, 100*time.Millisecond)
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	require.NoError(t, env.GetWorkflowError())
	require.True(t, end.done)
	require.NoError(t, end.err)
	require.ErrorContains(t, shutdown.err, "supervision ended (unsupervised)")
}
