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
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// corrupt is a signal payload that does not decode into any of the
// workflows' signal types (each is a JSON object).
const corrupt = "not a report"

// A corrupt exit report is skipped: the replica still hears its operator.
func TestCorruptExitSignalIsSkipped(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	whenWatching(env, n, 1, time.Second, func() { env.SignalWorkflow(replica.SignalExit, corrupt) })
	end := unsuperviseAt(env, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.True(t, end.done, "unsupervise was heard after the corrupt exit")
	require.NoError(t, end.err)
	require.Len(t, n.starts, 1)
}

// A corrupt claim is skipped: the watch goes on (not cancelled), and when it
// ends the node workflow starts the next one.
func TestCorruptClaimIsSkipped(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	env.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	end := make(chan struct{})
	var mu sync.Mutex
	watches := 0
	env.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.WatchNodeInput) error {
			mu.Lock()
			watches++
			k := watches
			mu.Unlock()
			if k == 1 {
				<-end // runs until the test ends it, after the corrupt claim
				return nil
			}
			return errors.New("test over") // retried: mock time goes on
		})
	var cancelled atomic.Int32
	env.SetOnActivityCanceledListener(func(*activity.Info) { cancelled.Add(1) })
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(replica.SignalClaim, corrupt) }, time.Second)
	env.RegisterDelayedCallback(func() { close(end) }, 2*time.Second)
	var cancelledBefore int32
	env.RegisterDelayedCallback(func() {
		cancelledBefore = cancelled.Load()
		env.CancelWorkflow()
	}, time.Minute)
	env.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, watches, 2, "the node workflow went on after the corrupt claim")
	require.Zero(t, cancelledBefore, "a corrupt claim cancels no watch")
}

// A corrupt service-shutdown signal is skipped: the deployment still
// answers the next apply.
func TestCorruptServiceShutdownIsSkipped(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	first, second := &updateResult{}, &updateResult{}
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), first)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(replica.SignalServiceShutdown, corrupt) }, 2*time.Minute)
	applyAt(env, 3*time.Minute, shopSpec(3, "v1", policy.Policy{}), second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Equal(t, []string{"shop/api-rep-3 create []"}, actions(planOf(t, second).Plan)[2:])
	require.NotContains(t, c.log, "shutdown shop/api-rep-1")
}

// Reports that change nothing (a new watch repeating exits already handled)
// count towards continue-as-new like exits: a worker restart loop cannot
// grow one run's history until the daily continue-as-new.
func TestRepeatedReportsContinueAsNew(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	old := env.Now().Add(-time.Hour)
	whenWatching(env, n, 1, time.Second, func() {
		for i := range 3 {
			env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 1, ExitedAt: old.Add(time.Duration(i) * time.Second)}})
		}
	})
	unsuperviseAt(env, time.Minute)
	in := input(policy.Default())
	in.ContinueAsNewAfter = 3
	env.ExecuteWorkflow(Supervise, in)
	next := continuedInput(t, env)
	require.Empty(t, next.Carry.PendingExits)
	require.Len(t, n.starts, 1)
}

// An exit report that names another replica (a misdirected signal) is
// ignored, even when it looks like the current task's.
func TestExitOfAnotherReplicaIsIgnored(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	other := replicaID
	other.Replica = 2
	whenWatching(env, n, 1, time.Second, func() {
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: other, Exit: runtime.Exit{ExitCode: 1, ExitedAt: env.Now().Add(time.Hour)}})
	})
	unsuperviseAt(env, time.Minute)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, n.starts, 1, "nothing restarted")
	require.Nil(t, queryState(t, env).LastExitCode)
}

// A parked replica (Isolated) hears exit reports too: repeats of the exit
// it already handled count towards continue-as-new, and the new run waits
// on in the same state.
func TestRepeatedReportsToAParkedReplicaContinueAsNew(t *testing.T) {
	n := &node{exits: crashes(1, 3)}
	env := newEnv(t, n)
	in := input(policy.Policy{Action: policy.ActionIsolate})
	in.ContinueAsNewAfter = 4
	env.RegisterDelayedCallback(func() {
		require.Equal(t, StateIsolated, stateNow(env).State)
		n.mu.Lock()
		at := n.reported[0]
		n.mu.Unlock()
		for range 3 {
			env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 3, ExitedAt: at}})
		}
	}, time.Minute)
	unsuperviseAt(env, 2*time.Minute)
	env.ExecuteWorkflow(Supervise, in)
	next := continuedInput(t, env)
	require.Equal(t, StateIsolated, next.Carry.State)
	require.Len(t, n.starts, 1)
}
