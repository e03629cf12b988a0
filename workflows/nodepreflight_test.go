package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The node's preflight update (apply --dry-run) runs the Preflight activity
// on the node and answers what it found; with no worker there it says so.
func TestNodePreflightUpdate(t *testing.T) {
	problem := activities.PreflightProblem{ID: replicaID, Problem: runtime.Problem{Field: "image", Reason: "not there"}}
	for _, tc := range []struct {
		name   string
		result activities.PreflightResult
		err    error
	}{
		{"answered", activities.PreflightResult{Problems: []activities.PreflightProblem{problem}}, nil},
		{"no worker", activities.PreflightResult{}, noWorkerErr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestWorkflowEnvironment()
			env.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
			env.RegisterActivity(activities.New(nil, activities.Options{}))
			env.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(errors.New("no node here"))
			var asked activities.PreflightInput
			env.OnActivity(replica.PreflightName, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in activities.PreflightInput) (activities.PreflightResult, error) {
					asked = in
					return tc.result, tc.err
				})
			in := activities.PreflightInput{Replicas: []activities.PreflightReplica{{ID: replicaID, Spec: runtime.ContainerSpec{Image: "x"}}}}
			res, bad := &updateResult{}, &updateResult{}
			env.RegisterDelayedCallback(func() {
				sendUpdate(env, replica.UpdatePreflight, in, res)
				sendUpdate(env, replica.UpdatePreflight, activities.PreflightInput{Replicas: []activities.PreflightReplica{{}}}, bad)
			}, time.Second)
			env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
			env.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})
			require.ErrorContains(t, bad.rejected, "preflight: replicas[0]")
			if tc.err != nil {
				require.ErrorContains(t, res.err, "preflight: no worker on node n1 took the request within 10s")
				return
			}
			require.NoError(t, res.err)
			require.Equal(t, in, asked)
			require.Equal(t, tc.result, res.value)
		})
	}
}
