package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
)

// continuedInput returns the input a run continued as new with.
func continuedInput(t *testing.T, env *testsuite.TestWorkflowEnvironment) SupervisionInput {
	t.Helper()
	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want continue-as-new, got %v", env.GetWorkflowError())
	var next SupervisionInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Carry)
	return next
}

// replicaEnv is newEnv with the run started as replicaID's workflow, whose
// ID places its continue-as-new (dueAt).
func replicaEnv(t *testing.T, n *node) *testsuite.TestWorkflowEnvironment {
	env := newEnv(t, n)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: replicaID.WorkflowID()})
	return env
}

// dueAt is when a run of rel, replicaID's, begun at start continues as new on
// its timer: every later before v0.3.0, at the replica's phase since.
func dueAt(rel Release, start time.Time, every time.Duration) time.Time {
	if rel < V030 {
		return start.Add(every)
	}
	return start.Add(continueAsNewDelay(replicaID.WorkflowID(), start, every))
}

// A healthy replica continues as new within a day of workflow time, without
// a restart: the next run watches the same container, and the counts,
// window, events and supervised_since are carried. A v0.2.0 run keeps its
// timer of exactly a day.
func TestHealthyReplicaContinuesAsNewDaily(t *testing.T) {
	t.Run("current", func(t *testing.T) { testHealthyReplicaContinuesAsNewDaily(t, CurrentRelease) })
	t.Run("v0.2.0", func(t *testing.T) { testHealthyReplicaContinuesAsNewDaily(t, V020) })
}

func testHealthyReplicaContinuesAsNewDaily(t *testing.T, rel Release) {
	// The container would exit after 48 h; the run ends within 24 h.
	n := &node{exits: crashes(1, 1), exitsAt: []time.Duration{48 * time.Hour}}
	env := replicaEnv(t, n)
	if rel == V020 {
		asRelease(env, V020)
	}
	start := env.Now()
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	next := continuedInput(t, env)

	due := dueAt(rel, start, DefaultContinueAsNewEvery)
	requireTime(t, due, env.Now(), "continued at")
	require.Equal(t, StateRunning, next.Carry.State)
	require.Equal(t, 0, next.Carry.TotalRestarts)
	require.Equal(t, 1, next.Carry.Runs)
	require.Empty(t, next.Carry.Events)
	requireTime(t, start, next.Carry.SupervisedSince, "supervised_since")
	require.Len(t, n.starts, 1, "no restart")
	if n.legacy {
		require.Equal(t, 0, n.watches, "the one watch never returned: it was dropped at the boundary")
	} else {
		require.Empty(t, n.reported, "no exit was reported before the boundary")
	}

	// The next run only watches: no start, no restart.
	n2 := &node{}
	env2 := newEnv(t, n2)
	env2.SetStartTime(due)
	res := unsuperviseWhenWatching(env2, n2, 1, 0)
	env2.ExecuteWorkflow(Supervise, next)
	require.NoError(t, env2.GetWorkflowError())
	require.NoError(t, res.err)
	require.Empty(t, n2.starts)
	require.Equal(t, 1, n2.watches)
	v := queryState(t, env2)
	require.Equal(t, StateRunning, res.before.State)
	require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	require.Equal(t, 0, v.TotalRestarts)
	require.Equal(t, formatTime(start), v.SupervisedSince)
}

// The periodic continue-as-new in the middle of a backoff carries the
// deadline: the next run starts the container once, at the original deadline.
// (85 minutes: the first run ends within the backoff, 42.5 to 85 minutes in,
// and the second, which lasts the whole 85, after the deadline.)
func TestPeriodicContinueAsNewMidBackoffKeepsDeadline(t *testing.T) {
	n := &node{exits: crashes(6, 1)}
	env := replicaEnv(t, n)
	start := env.Now()
	p := policy.Default()
	p.Backoff = 2 * time.Hour
	in := input(p)
	in.ContinueAsNewEvery = 85 * time.Minute
	env.ExecuteWorkflow(Supervise, in)
	next := continuedInput(t, env)

	due := dueAt(CurrentRelease, start, in.ContinueAsNewEvery)
	requireTime(t, due, env.Now(), "continued at")
	require.Equal(t, StateCrashLoopBackOff, next.Carry.State)
	requireTime(t, start.Add(2*time.Hour), next.Carry.NextRestartAt, "carried deadline")
	require.Equal(t, 5, next.Carry.TotalRestarts)
	require.Len(t, n.starts, 6, "5 restarts, then the backoff")
	require.Equal(t, 85*time.Minute, next.ContinueAsNewEvery, "the setting is carried")

	n2 := &node{}
	env2 := replicaEnv(t, n2)
	env2.SetStartTime(due)
	var during StateView
	env2.RegisterDelayedCallback(func() { during = queryState(t, env2) }, 30*time.Minute)
	unsuperviseWhenWatching(env2, n2, 1, start.Add(2*time.Hour+time.Second).Sub(due))
	env2.ExecuteWorkflow(Supervise, next)
	require.NoError(t, env2.GetWorkflowError())

	require.Equal(t, StateCrashLoopBackOff, during.State)
	require.Equal(t, formatTime(start.Add(2*time.Hour)), *during.NextRestartAt)
	require.Len(t, n2.starts, 1, "one delayed start")
	requireTime(t, start.Add(2*time.Hour), n2.starts[0], "delayed start at the original deadline")
	require.Equal(t, 1, n2.watches, "not watched during the backoff")
	v := queryState(t, env2)
	require.Equal(t, 6, v.TotalRestarts)
	require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
}

// The container exits exactly when the run is due to continue as new. The
// exit is handled exactly once: by this run if it is already in, otherwise by
// the next run, whose watch finds the exited container at once.
func TestExitAtTheContinueAsNewBoundaryIsHandledOnce(t *testing.T) {
	n := &node{exits: crashes(1, 7)}
	env := replicaEnv(t, n)
	start := env.Now()
	due := dueAt(CurrentRelease, start, DefaultContinueAsNewEvery)
	n.exitsAt = []time.Duration{due.Sub(start)}
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	next := continuedInput(t, env)
	requireTime(t, due, env.Now(), "continued at")

	n2 := &node{}
	switch next.Carry.TotalRestarts {
	case 1: // handled by the first run, which restarted the container
		require.Len(t, n.starts, 2)
	case 0: // handed over: the container's exited task is still there
		require.Len(t, n.starts, 1)
		n2.exits = crashes(1, 7)
	default:
		t.Fatalf("carried %d restarts", next.Carry.TotalRestarts)
	}
	t.Logf("the exit was handled by run %d", 2-next.Carry.TotalRestarts)

	env2 := newEnv(t, n2)
	env2.SetStartTime(env.Now())
	unsuperviseWhenWatching(env2, n2, 1, 0)
	env2.ExecuteWorkflow(Supervise, next)
	require.NoError(t, env2.GetWorkflowError())
	v := queryState(t, env2)
	require.Equal(t, 1, v.TotalRestarts, "exactly one restart for one exit")
	require.Equal(t, 7, *v.LastExitCode)
	require.Equal(t, []EventType{EventContainerRestarted, EventUnsupervised}, eventTypes(v))
	require.Equal(t, 2, len(n.starts)+len(n2.starts), "the first start and one restart")
}

// Isolated and Shutdown replicas wait for an operator for as long as it
// takes; their runs continue as new daily too, still waiting.
func TestParkedReplicaContinuesAsNewDaily(t *testing.T) {
	n := &node{exits: crashes(1, 4)}
	env := replicaEnv(t, n)
	start := env.Now()
	env.ExecuteWorkflow(Supervise, input(policy.Policy{Action: policy.ActionShutdown}))
	next := continuedInput(t, env)
	requireTime(t, dueAt(CurrentRelease, start, DefaultContinueAsNewEvery), env.Now(), "continued at")
	require.Equal(t, StateShutdown, next.Carry.State)
	require.Equal(t, []EventType{EventServiceShutdown}, eventTypesOf(next.Carry.Events))
}

func eventTypesOf(evs []Event) []EventType {
	out := make([]EventType, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// A tiny continue-as-new interval is raised to the minimum so runs cannot
// spin.
func TestContinueAsNewEveryDefaults(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	var cfg SupervisionInput
	in := input(policy.Default())
	in.ContinueAsNewEvery = time.Nanosecond
	whenWatching(env, n, 1, 0, func() {
		v, err := env.QueryWorkflow(replica.QueryConfig)
		require.NoError(t, err)
		require.NoError(t, v.Get(&cfg))
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, in)
	require.Equal(t, MinContinueAsNewEvery, cfg.ContinueAsNewEvery)
}

// rollover moves a replica to a new run at once, carrying everything and
// leaving the container alone: a watched one is not restarted, a backoff
// keeps its deadline.
func TestRolloverContinuesAsNewNow(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	res := &updateResult{}
	whenWatching(env, n, 1, 0, func() { sendUpdate(env, replica.UpdateRollover, RolloverRequest{}, res) })
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	next := continuedInput(t, env)
	require.True(t, res.done)
	require.NoError(t, res.rejected)
	require.NoError(t, res.err)
	require.Equal(t, StateRunning, next.Carry.State)
	require.Len(t, n.starts, 1, "no restart")

	// Mid-backoff: the deadline is carried.
	n2 := &node{exits: crashes(6, 1)}
	env2 := newEnv(t, n2)
	start := env2.Now()
	res2 := &updateResult{}
	env2.RegisterDelayedCallback(func() { sendUpdate(env2, replica.UpdateRollover, RolloverRequest{}, res2) }, 10*time.Second)
	env2.ExecuteWorkflow(Supervise, input(policy.Default()))
	next2 := continuedInput(t, env2)
	require.NoError(t, res2.err)
	require.Equal(t, StateCrashLoopBackOff, next2.Carry.State)
	requireTime(t, start.Add(30*time.Second), next2.Carry.NextRestartAt, "carried deadline")
	requireTime(t, start.Add(10*time.Second), env2.Now(), "continued at once")
}

// A start that keeps failing does not keep one run growing: the run
// continues as new when it is due, with the start still to do, and the next
// run does it — a first start as a first start, a restart after a crash as
// a counted restart.
func TestFailingStartContinuesAsNewWhenDue(t *testing.T) {
	boom := errors.New("containerd unavailable")
	for _, tc := range []struct {
		name     string
		exits    int
		okStarts int // starts that work before the failures
		state    State
		restarts int
	}{
		{"first start", 0, 0, StatePending, 0},
		{"restart after a crash", 1, 1, StateRestarting, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := make([]error, tc.okStarts+1000)
			for i := tc.okStarts; i < len(errs); i++ {
				errs[i] = boom
			}
			n := &node{startErrs: errs, exits: crashes(tc.exits, 3)}
			env := newEnv(t, n)
			start := env.Now()
			in := input(policy.Default())
			in.ContinueAsNewEvery = time.Hour
			env.ExecuteWorkflow(Supervise, in)
			next := continuedInput(t, env)
			require.Equal(t, tc.state, next.Carry.State)
			require.Equal(t, 0, next.Carry.TotalRestarts)
			require.Less(t, env.Now().Sub(start), time.Hour+6*time.Minute, "continued at the first retry after the hour")
			require.Len(t, n.starts, tc.okStarts)

			n2 := &node{}
			env2 := newEnv(t, n2)
			env2.SetStartTime(env.Now())
			unsuperviseWhenWatching(env2, n2, 1, 0)
			env2.ExecuteWorkflow(Supervise, next)
			require.NoError(t, env2.GetWorkflowError())
			require.Len(t, n2.starts, 1, "the next run did the start")
			v := queryState(t, env2)
			require.Equal(t, tc.restarts, v.TotalRestarts)
		})
	}
}

// Each replica's runs end at its own phase, so a fleet started within one
// minute does not continue as new within one minute a day later.
func TestContinueAsNewDelay(t *testing.T) {
	every := DefaultContinueAsNewEvery
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	id := replicaID.WorkflowID()
	for _, tc := range []struct {
		name  string
		id    string
		now   time.Time
		every time.Duration
	}{
		{"default", id, t0, every},
		{"a nanosecond later", id, t0.Add(time.Nanosecond), every},
		{"half a period later", id, t0.Add(every / 2), every},
		{"another replica", "vigil/shop/api-rep-2", t0, every},
		{"the minimum", id, t0, MinContinueAsNewEvery},
		{"an odd period", id, t0, 3*time.Hour + time.Nanosecond},
		{"before 1970", id, time.Date(1960, 1, 1, 0, 0, 0, 7, time.UTC), every},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := continueAsNewDelay(tc.id, tc.now, tc.every)
			require.Greater(t, d, tc.every/2)
			require.LessOrEqual(t, d, tc.every, "ContinueAsNewEvery is the longest a run lasts")
			require.Equal(t, d, continueAsNewDelay(tc.id, tc.now, tc.every), "deterministic")
			// The next run begins at the end and lasts the whole period: the phase is kept.
			end := tc.now.Add(d)
			require.Equal(t, 2*(tc.every/2), continueAsNewDelay(tc.id, end, tc.every))
			require.Equal(t, 2*(tc.every/2)-time.Millisecond, continueAsNewDelay(tc.id, end.Add(time.Millisecond), tc.every))
		})
	}
	require.NotEqual(t, continueAsNewDelay(id, t0, every), continueAsNewDelay("vigil/shop/api-rep-2", t0, every))
	require.Equal(t, time.Duration(1), continueAsNewDelay(id, t0, 1), "no phase in a nanosecond")

	// 10,000 replicas started within the same minute continue as new spread
	// over the half period their runs may end in (12 h of the day, the same
	// 12 h every day): no 1/24 of it holds more than twice its share.
	const replicas, slots = 10000, 24
	half := every / 2
	var count [slots]int
	for i := range replicas {
		now := t0.Add(time.Duration(i) * time.Minute / replicas)
		rid := replica.ID{Deployment: "shop", Service: "api", Replica: i + 1}.WorkflowID()
		end := now.Add(continueAsNewDelay(rid, now, every))
		count[min(end.Sub(t0.Add(half))*slots/half, slots-1)]++
	}
	t.Logf("ends per 1/24 of the half period: %v", count)
	for i, c := range count {
		require.LessOrEqual(t, c, 2*replicas/slots, "slot %d of %d", i, slots)
		require.Positive(t, c, "slot %d of %d", i, slots)
	}
}
