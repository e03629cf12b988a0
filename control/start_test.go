package control

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// A retried StartReplicas batch starts only the supervisors the last
// attempt did not, and leaves the running ones alone: the server, as
// emulated here, starts a second run of a running workflow ID only when
// asked to (any conflict policy but USE_EXISTING).
func TestStartReplicasRetriedLeavesRunningSupervisorsAlone(t *testing.T) {
	c := mocks.NewClient(t)
	var mu sync.Mutex
	runs := map[string]int{}       // workflow ID -> runs started
	fail := "vigil/shop/api-rep-7" // the first attempt fails to start this one
	c.On("ExecuteWorkflow", mock.Anything, mock.Anything, replica.SupervisorWorkflowName, mock.Anything).Return(
		func(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
			mu.Lock()
			defer mu.Unlock()
			if o.ID == fail {
				fail = ""
				return nil, serviceerror.NewUnavailable("frontend restarting")
			}
			if runs[o.ID] == 0 || o.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING {
				runs[o.ID]++
			}
			return nil, nil
		})
	var in workflows.StartReplicasInput
	for i := 1; i <= 40; i++ {
		in.Replicas = append(in.Replicas, workflows.SupervisionInput{ID: replica.ID{Deployment: "shop", Service: "api", Replica: i}, Generation: 1})
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(New(c).StartReplicas, activity.RegisterOptions{Name: replica.StartReplicasName})
	_, err := env.ExecuteActivity(replica.StartReplicasName, in)
	require.ErrorContains(t, err, "start shop/api-rep-7")
	_, err = env.ExecuteActivity(replica.StartReplicasName, in) // the retry
	require.NoError(t, err)
	require.Len(t, runs, 40)
	for i := 1; i <= 40; i++ {
		require.Equal(t, 1, runs[fmt.Sprintf("vigil/shop/api-rep-%d", i)], "one supervisor each")
	}
}
