package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// A reconfigure without a node or with a huge min_ready, and a logs request
// without a replica, are refused by their validators.
func TestMalformedRequestsAreRefused(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	in := input(policy.Default())
	noNode, longWait := &updateResult{}, &updateResult{}
	whenWatching(env, n, 1, time.Second, func() {
		c := in.ReplicaConfig
		c.Node = ""
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 2, Config: c, Replace: true}, noNode)
		sendUpdate(env, replica.UpdateReconfigure, ReconfigureRequest{Generation: 2, Config: in.ReplicaConfig, Replace: true, MinReady: 1000 * time.Hour}, longWait)
	})
	unsuperviseAt(env, time.Minute)
	env.ExecuteWorkflow(Supervise, in)
	require.ErrorContains(t, noNode.rejected, "config.node is empty")
	require.ErrorContains(t, longWait.rejected, "min_ready 1000h0m0s is out of range")
	require.Len(t, n.starts, 1)

	var suite testsuite.WorkflowTestSuite
	nenv := suite.NewTestWorkflowEnvironment()
	nenv.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	nenv.RegisterActivity(activities.New(nil, activities.Options{}))
	nenv.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(errors.New("no node here"))
	nodeAsV020(nenv) // the logs update is a v0.2.0 node's
	logs := &updateResult{}
	nenv.RegisterDelayedCallback(func() { sendUpdate(nenv, replica.UpdateLogs, LogsRequest{}, logs) }, time.Second)
	nenv.RegisterDelayedCallback(nenv.CancelWorkflow, time.Minute)
	nenv.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})
	require.ErrorContains(t, logs.rejected, "logs: replica")
}

// The crashes kept in state stay bounded (the policy counts MaxRestarts+1
// at most), however long a replica crash-loops within its window.
func TestRestartTimesStayBounded(t *testing.T) {
	n := &node{exits: crashes(40, 1)}
	env := newEnv(t, n)
	p := policy.Policy{MaxRestarts: 2, RestartWindow: 24 * time.Hour, Backoff: time.Second}
	var v StateView
	env.RegisterDelayedCallback(func() { v = queryState(t, env) }, 10*time.Minute)
	unsuperviseAt(env, 10*time.Minute+time.Second)
	env.ExecuteWorkflow(Supervise, input(p))
	require.NoError(t, env.GetWorkflowError())
	require.Greater(t, v.TotalRestarts, 20)
	require.LessOrEqual(t, len(v.RestartTimes), 3)
}

// An operator's restart that comes just after a crash does not swallow the
// crash's decision: a shutdown rule still shuts the replica down, whether
// the stop finds the task exited or the crash's report came first.
func TestRestartJustAfterACrashKeepsItsDecision(t *testing.T) {
	shutdownOn7 := policy.Policy{Rules: []policy.Rule{{ExitCodes: []int{7}, Action: policy.ActionShutdown}}}
	for name, reportFirst := range map[string]bool{"stop finds it exited": false, "report first": true} {
		t.Run(name, func(t *testing.T) {
			seven := 7
			n := &node{crashedBeforeStop: &seven}
			if reportFirst {
				n.crashedBeforeStop = nil // the stop finds nothing: only the report tells
			}
			env := newEnv(t, n)
			restart := &updateResult{}
			whenWatching(env, n, 1, time.Second, func() {
				if reportFirst {
					env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 7, ExitedAt: env.Now().Add(-time.Millisecond)}})
				}
				sendUpdate(env, replica.UpdateRestart, RestartRequest{}, restart)
			})
			unsuperviseAt(env, time.Minute)
			env.ExecuteWorkflow(Supervise, input(shutdownOn7))
			require.NoError(t, env.GetWorkflowError())
			require.True(t, restart.done)
			require.NoError(t, restart.err)
			require.Len(t, n.starts, 1, "not started again")
			v := queryState(t, env)
			require.Equal(t, 7, *v.LastExitCode)
			require.Contains(t, eventTypes(v), EventServiceShutdown)
		})
	}
}

// nodeAsV020 makes a node run replay as one a v0.2.0 worker recorded.
func nodeAsV020(env *testsuite.TestWorkflowEnvironment) {
	env.OnGetVersion(ReleaseMarker, workflow.DefaultVersion, workflow.Version(CurrentRelease)).Return(workflow.DefaultVersion)
}

// nodeLogsUpdate sends a logs update to a node run whose watch fails,
// as a v0.2.0 run when v020, with the Logs activity failing with logsErr.
func nodeLogsUpdate(v020 bool, logsErr error) *updateResult {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	env.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(errors.New("no node here"))
	env.OnActivity(replica.LogsName, mock.Anything, mock.Anything).Return(activities.LogsResult{}, logsErr)
	if v020 {
		nodeAsV020(env)
	}
	logs := &updateResult{}
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateLogs, LogsRequest{ID: replicaID}, logs) }, time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})
	return logs
}

// A v0.3.0 node run has no logs update: no log byte enters its history.
func TestNodeServesNoLogsUpdateSinceV030(t *testing.T) {
	require.ErrorContains(t, nodeLogsUpdate(false, nil).rejected, "unknown update")
}

// A logs request no worker on the node takes says so.
func TestLogsWithoutAWorkerSaySo(t *testing.T) {
	require.ErrorContains(t, nodeLogsUpdate(true, noWorkerErr()).err, "logs: no worker on node n1 took the request within 10s")
}
