package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

func reconfigureResult(t *testing.T, res *updateResult) ReconfigureResult {
	t.Helper()
	require.True(t, res.done, "reconfigure answered")
	require.NoError(t, res.rejected)
	require.NoError(t, res.err)
	r, ok := res.value.(ReconfigureResult)
	require.True(t, ok, "result %T", res.value)
	return r
}

// A changed policy applies in place: no stop, no start, the crash window kept.
func TestReconfigurePolicyInPlace(t *testing.T) {
	n := &node{exits: crashes(1, 3)}
	env := newEnv(t, n)
	res := &updateResult{}
	var after StateView
	whenWatching(env, n, 1, 0, func() {
		next := input(policy.Policy{MaxRestarts: 9})
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 2, Config: next.ReplicaConfig}, res)
	})
	whenWatching(env, n, 2, 0, func() {
		after = queryState(t, env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	require.NoError(t, env.GetWorkflowError())

	require.True(t, reconfigureResult(t, res).Ready)
	require.Len(t, n.starts, 2, "the first start and one restart; none for the policy")
	require.Empty(t, n.stops)
	require.Len(t, after.RestartTimes, 1, "crash window kept")
	require.Equal(t, 0, after.Generation, "the container was not made again")
	v, err := env.QueryWorkflow(replica.QueryConfig)
	require.NoError(t, err)
	var cfg SupervisionInput
	require.NoError(t, v.Get(&cfg))
	require.Equal(t, 9, cfg.Policy.MaxRestarts)
}

// A changed spec replaces the container: stop with grace and remove, start
// the new spec, wait min_ready, check it still runs, answer Ready.
func TestReconfigureReplacesContainer(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	res := &updateResult{}
	var replacedAt time.Time
	next := input(policy.Policy{})
	next.Spec.Args = []string{"echo v2"}
	next.StopGrace = 3 * time.Second
	whenWatching(env, n, 1, 0, func() {
		replacedAt = env.Now()
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 2, Config: next.ReplicaConfig, Replace: true, MinReady: time.Second}, res)
	})
	var after StateView
	// Watches: the first container's, the new one's during min_ready, then the main loop's.
	whenWatching(env, n, 3, 0, func() {
		after = queryState(t, env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	require.NoError(t, env.GetWorkflowError())

	require.True(t, reconfigureResult(t, res).Ready)
	require.Len(t, n.stops, 1)
	require.True(t, n.stops[0].Remove, "the old container is removed, so the new spec is used")
	require.Equal(t, runtime.DefaultStopGrace, n.stops[0].Grace, "the old container's grace")
	require.Len(t, n.specs, 2, "first start, new start")
	require.Equal(t, []string{"echo v2"}, n.specs[1].Args)
	require.Equal(t, 3, n.watches, "the new container is watched during min_ready")
	require.GreaterOrEqual(t, n.blockingStartedAt(), replacedAt.Add(time.Second), "watched again after min_ready")
	require.Equal(t, 2, after.Generation)
	require.Equal(t, StateRunning, after.State)
	require.Equal(t, 0, after.TotalRestarts, "a replacement is not a restart")
	require.Equal(t, []EventType{EventContainerReplaced}, eventTypes(after))
}

// A new container that exits within min_ready is reported not ready at once.
func TestReplacementExitingWithinMinReadyIsNotReady(t *testing.T) {
	n := &node{watchAt: map[int]runtime.Exit{1: crash(3)}}
	env := newEnv(t, n)
	res := &updateResult{}
	next := input(policy.Policy{})
	next.Spec.Args = []string{"exit 1"}
	whenWatching(env, n, 1, 0, func() {
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 2, Config: next.ReplicaConfig, Replace: true, MinReady: time.Second}, res)
	})
	unsuperviseWhenWatching(env, n, 2, 0)
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	require.NoError(t, env.GetWorkflowError())

	r := reconfigureResult(t, res)
	require.False(t, r.Ready)
	require.Contains(t, r.Reason, "exited within min_ready")
	require.Equal(t, 2, n.attempts, "no check after min_ready: the watch saw the exit")
}

// A repeated request for a generation already made answers at once.
func TestReplaceIsIdempotentPerGeneration(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	in := input(policy.Policy{})
	in.Generation = 4
	res := &updateResult{}
	whenWatching(env, n, 1, 0, func() {
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 4, Config: in.ReplicaConfig, Replace: true}, res)
	})
	unsuperviseWhenWatching(env, n, 2, 0)
	env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, env.GetWorkflowError())
	require.True(t, reconfigureResult(t, res).Ready)
	require.Empty(t, n.stops)
	require.Len(t, n.starts, 1)
}

// The deployment shuts a sibling down: stopped, Shutdown, its own
// ServiceShutdown event; the deployment is not signalled again.
func TestShutdownUpdate(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	res := &updateResult{}
	var after StateView
	whenWatching(env, n, 1, 0, func() {
		sendUpdate(env, replica.UpdateShutdown, ShutdownRequest{Cause: "shop/api-rep-2 exited with code 2", By: "shop/api-rep-2"}, res)
		// The cancelled watch's mock blocks until the test ends, so mock
		// time moves at wall-clock speed: wait briefly.
		env.RegisterDelayedCallback(func() {
			after = queryState(t, env)
			sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
		}, 100*time.Millisecond)
	})
	env.ExecuteWorkflow(Supervise, input(policy.Policy{}))
	require.NoError(t, env.GetWorkflowError())
	require.True(t, res.done)
	require.NoError(t, res.err)
	require.Len(t, n.stops, 1)
	require.Equal(t, StateShutdown, after.State)
	require.Equal(t, []EventType{EventServiceShutdown}, eventTypes(after))
	require.Equal(t, 143, *after.LastExitCode, "the stopped container's exit")
	require.Equal(t, "shop/api-rep-2", *after.ShutdownBy, "the replica whose exit shut the service down")
	require.Empty(t, n.signals)
	require.Len(t, n.starts, 1)
}

var _ = replica.ID{}
