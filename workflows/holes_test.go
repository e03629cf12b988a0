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
