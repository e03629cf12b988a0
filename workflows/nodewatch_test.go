package workflows

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Each exit is acted on once: the same exit reported again (a new node
// watch reports what it finds), an exit of an older task (before the
// current task's start) and an exit reported during a crash-loop backoff
// change nothing.
func TestExitReportsAreActedOnOnce(t *testing.T) {
	n := &node{exits: crashes(1, 3)}
	env := newEnv(t, n)
	start := env.Now()
	var first activities.ExitReport
	env.RegisterDelayedCallback(func() {
		// The harness reported the first task's exit at start: report it again,
		// and an exit from before supervision began.
		v := queryState(t, env)
		require.Equal(t, 1, v.TotalRestarts)
		first = activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 3, ExitedAt: n.exitTimes()[0]}}
		env.SignalWorkflow(replica.SignalExit, first)
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 9, ExitedAt: start.Add(-time.Hour)}})
	}, time.Second)
	unsuperviseAt(env, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.Len(t, n.starts, 2, "the first start and one restart")
	v := queryState(t, env)
	require.Equal(t, 1, v.TotalRestarts)
	require.Equal(t, 3, *v.LastExitCode)
}

// exitTimes are the exit times the harness reported.
func (n *node) exitTimes() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.reported...)
}

// An exit reported during a crash-loop backoff is ignored: the container is
// down by design, and the backoff ends with exactly one start.
func TestExitDuringBackoffIsIgnored(t *testing.T) {
	n := &node{exits: crashes(6, 1)}
	env := newEnv(t, n)
	start := env.Now()
	env.RegisterDelayedCallback(func() {
		require.Equal(t, StateCrashLoopBackOff, queryState(t, env).State)
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 1, ExitedAt: start.Add(10 * time.Second)}})
	}, 10*time.Second)
	unsuperviseWhenWatching(env, n, 1, 31*time.Second)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.Len(t, n.starts, 7, "six starts, then one after the backoff")
	requireTime(t, start.Add(30*time.Second), n.starts[6], "the backoff's one start")
	v := queryState(t, env)
	require.Equal(t, 6, v.TotalRestarts)
}

// An exit reported while the run continues as new is carried to the next
// run, which acts on it at once. (The test environment does not redo a
// workflow task that completes with continue-as-new while a signal arrives,
// as the server does, so the report comes with the restart's result.)
func TestExitReportedDuringContinueAsNewIsCarried(t *testing.T) {
	n := &node{exits: crashes(1, 3)}
	env := newEnv(t, n)
	later := env.Now().Add(time.Hour)
	n.reportOnStart = map[int]activities.ExitReport{2: {ID: replicaID, Exit: runtime.Exit{ExitCode: 4, ExitedAt: later}}}
	in := input(policy.Default())
	in.ContinueAsNewAfter = 1
	env.ExecuteWorkflow(Supervise, in)

	next := continuedInput(t, env)
	require.Len(t, next.Carry.PendingExits, 1, "the restarted task's exit, reported before the run ended")
	require.Equal(t, 4, next.Carry.PendingExits[0].ExitCode)
	require.False(t, next.Carry.WatchAfter.IsZero())

	next.ContinueAsNewAfter = 0
	n2 := &node{}
	env2 := newEnv(t, n2)
	env2.SetStartTime(later.Add(time.Second))
	unsuperviseWhenWatching(env2, n2, 2, 0)
	env2.ExecuteWorkflow(Supervise, next)
	require.NoError(t, env2.GetWorkflowError())
	require.Len(t, n2.starts, 1, "the carried exit is restarted in the new run")
	v := queryState(t, env2)
	require.Equal(t, 2, v.TotalRestarts)
	require.Equal(t, 4, *v.LastExitCode)
}

// A start whose task already exited again (an earlier attempt started it)
// is an exit to act on even if the node watch never reports it.
func TestExitFoundByStartIsActedOn(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	starts := 0
	env.OnActivity(replica.EnsureRunningName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.EnsureRunningInput) (activities.EnsureRunningResult, error) {
			starts++
			now := env.Now().UTC()
			if starts == 1 {
				return activities.EnsureRunningResult{ExitedSince: true, NotBefore: now, ExitCode: 7, ExitedAt: now.Add(-time.Millisecond)}, nil
			}
			return activities.EnsureRunningResult{NotBefore: now}, nil
		})
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{}) }, time.Minute)
	in := input(policy.Default())
	env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 2, starts)
	v := queryState(t, env)
	require.Equal(t, 7, *v.LastExitCode)
	require.Equal(t, 1, v.TotalRestarts)
}

// The node workflow keeps one watch running; a claim drops it and starts
// the next at once (the claiming worker picks it up), and the workflow
// continues as new after nodeWatchesPerRun watches.
func TestNodeWatchClaim(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	release := make(chan struct{})
	defer close(release)
	var mu sync.Mutex
	var inputs []activities.WatchNodeInput
	env.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.WatchNodeInput) error {
			mu.Lock()
			inputs = append(inputs, in)
			k := len(inputs)
			mu.Unlock()
			if k <= 2 {
				<-release // a watch that runs until the test ends (the test env never cancels a mock)
				return errors.New("test over")
			}
			return nil // a watch that ran its time
		})
	watches := func() int { mu.Lock(); defer mu.Unlock(); return len(inputs) }
	var accepted, refused updateResult
	var cancelled atomic.Int32
	env.SetOnActivityCanceledListener(func(*activity.Info) { cancelled.Add(1) })
	var poll func()
	poll = func() {
		switch watches() {
		case 1:
			env.SignalWorkflow(replica.SignalClaim, Claim{ID: "c1", Worker: "w1"})
		case 2:
			v, err := env.QueryWorkflow(replica.QueryNode)
			require.NoError(t, err)
			var view NodeView
			require.NoError(t, v.Get(&view))
			require.Equal(t, 1, view.Claims)
			require.Equal(t, "w1", view.LastClaim.Worker)
			// Since v0.3.0 a claim is an update, refused while another
			// identity's worker shows itself alive.
			sendUpdate(env, replica.UpdateClaim, Claim{ID: "c2", Worker: "w2", NodeID: "n2", Instance: "i2", Host: "beta"}, &accepted)
			sendUpdate(env, replica.UpdateClaim, Claim{ID: "c3", Worker: "w3", NodeID: "n3", Instance: "i3", Host: "gamma",
				HolderWorker: "w2", HolderSeen: env.Now()}, &refused)
			return
		}
		env.RegisterDelayedCallback(poll, time.Millisecond)
	}
	env.RegisterDelayedCallback(poll, time.Millisecond)
	env.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})

	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want continue-as-new, got %v", env.GetWorkflowError())
	require.Equal(t, nodeWatchesPerRun, watches())
	require.Equal(t, "", inputs[0].Claim)
	require.Equal(t, "c1", inputs[1].Claim)
	require.Equal(t, "c2", inputs[2].Claim)
	require.Equal(t, int32(2), cancelled.Load(), "each claim cancelled the watch before it")
	require.Equal(t, NodeLiveHeartbeat, inputs[0].HeartbeatInterval)
	require.NoError(t, accepted.rejected)
	require.NoError(t, accepted.err)
	require.Equal(t, "i2", inputs[2].Instance, "the watch runs on the claimant's worker")
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(refused.rejected, &appErr), "want the third claim refused, got %v", refused.rejected)
	require.Equal(t, replica.ErrTypeNodeClaimed, appErr.Type())
	require.Contains(t, appErr.Message(), "beta")
	var next NodeInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 2, next.Carry.Claims)
	require.Equal(t, 1, next.Carry.Runs)
}

// An exit of another task (another PID), e.g. a half-made task the start
// killed whose exit containerd times after the start began, is ignored; the
// current task's exit is acted on.
func TestExitOfAnotherTaskIsIgnored(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	starts := 0
	var notBefore time.Time
	env.OnActivity(replica.EnsureRunningName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.EnsureRunningInput) (activities.EnsureRunningResult, error) {
			starts++
			notBefore = env.Now().UTC()
			return activities.EnsureRunningResult{NotBefore: notBefore, StartedAt: notBefore, PID: uint32(100 + starts)}, nil
		})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 137, ExitedAt: notBefore.Add(time.Millisecond), PID: 7}})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		require.Equal(t, 1, starts, "the other task's exit started nothing")
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 3, ExitedAt: notBefore.Add(2 * time.Second), PID: 101}})
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{}) }, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 2, starts)
	v := queryState(t, env)
	require.Equal(t, 1, v.TotalRestarts)
	require.Equal(t, 3, *v.LastExitCode)
}

// A report that names its task by the task's start is of the current task
// whatever the clocks say (v0.3.0): the loss of an adopted task (a start
// that found it running: WatchAfter is the activity's clock, later than the
// task's start, which dates the report) and an exit dated before the start
// by a node clock that stepped back are both acted on, once each; a
// report from a node the replica is not on is not.
func TestExitNamedByItsTaskIsCurrent(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	adopted := env.Now().UTC().Add(-time.Hour) // the container's started-at label
	var tasks []time.Time
	env.OnActivity(replica.EnsureRunningName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.EnsureRunningInput) (activities.EnsureRunningResult, error) {
			now := env.Now().UTC()
			if len(tasks) == 0 {
				tasks = append(tasks, adopted)
				return activities.EnsureRunningResult{AlreadyRunning: true, StartedAt: adopted, NotBefore: now}, nil
			}
			tasks = append(tasks, now)
			return activities.EnsureRunningResult{StartedAt: now, NotBefore: now}, nil
		})
	lost := activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: runtime.FailedExitCode, ExitedAt: adopted, StartedAt: adopted, Cause: runtime.ExitLost}}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(replica.SignalExit, lost) }, time.Second)
	env.RegisterDelayedCallback(func() {
		require.Len(t, tasks, 2, "the adopted task's loss restarted it")
		env.SignalWorkflow(replica.SignalExit, lost) // reported again: handled already
		// The clock stepped back a minute: the exit is dated before the task's start.
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 3, ExitedAt: tasks[1].Add(-time.Minute), StartedAt: tasks[1]}})
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() {
		// A loss reported by another node's watch (the replica left it).
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Node: "node-b",
			Exit: runtime.Exit{ExitCode: runtime.FailedExitCode, ExitedAt: env.Now().Add(time.Hour), Cause: runtime.ExitLost}})
	}, 3*time.Second)
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{}) }, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, tasks, 3, "the adoption, a restart after the loss, one after the exit; none for node-b's report")
	v := queryState(t, env)
	require.Equal(t, 2, v.TotalRestarts)
	require.Equal(t, 3, *v.LastExitCode)
	require.Equal(t, string(runtime.ExitLost), *v.Events[0].Reason)
}

// A second report of a task whose exit was already acted on (containerd
// reports it again, SIGKILLed, when a start deletes the exited task) is
// ignored, even while no new task is known: here a start failed and the
// retry found the task it started already exited. Acting on it answered
// that crash twice, a restart counted for a start that started nothing (a
// chaos soak: 34 restarts for 34 starts).
func TestSecondReportOfAHandledExitIsIgnored(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	t0 := env.Now().UTC()
	firstExit, secondExit := t0.Add(time.Second), t0.Add(7*time.Second)
	starts, afters := 0, []time.Time{}
	env.OnActivity(replica.EnsureRunningName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.EnsureRunningInput) (activities.EnsureRunningResult, error) {
			starts++
			afters = append(afters, in.After)
			now := env.Now().UTC()
			switch {
			case starts == 2:
				return activities.EnsureRunningResult{}, errors.New("containerd is down")
			case in.After.Before(secondExit) && starts > 2:
				// The task this start made ran and exited before it answered.
				return activities.EnsureRunningResult{ExitedSince: true, NotBefore: now, ExitCode: 4, ExitedAt: secondExit}, nil
			}
			return activities.EnsureRunningResult{NotBefore: now, StartedAt: now, PID: uint32(100 + starts)}, nil
		})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 3, ExitedAt: firstExit, StartedAt: t0, PID: 101}})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		// The start retry deletes the exited task: containerd reports it again.
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 137, ExitedAt: t0.Add(1500 * time.Millisecond), PID: 101}})
	}, 1500*time.Millisecond)
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{}) }, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	v := queryState(t, env)
	require.Equal(t, 4, *v.LastExitCode, "the exit acted on last is the second task's, not a repeat of the first's")
	require.Equal(t, 2, v.TotalRestarts, "two tasks were started after the first: starts %d, afters %v", starts, afters)
}

// A task that exits at once can be reported, naming itself, before its
// start's result reaches the workflow: the report waits for the start and
// is then the current task's exit, acted on (it was judged against the task
// before and dropped: the replica stayed Running with nothing running).
func TestExitOfATaskReportedBeforeItsStartEnds(t *testing.T) {
	n := &node{exits: crashes(1, 3), crashOnStart: map[int]int{2: 42}}
	env := newEnv(t, n)
	unsuperviseAt(env, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, n.starts, 3, "the second task's exit 42 is restarted")
	v := queryState(t, env)
	require.Equal(t, 2, v.TotalRestarts)
	require.Equal(t, 42, *v.LastExitCode)
}
