package control

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

var id = replica.ID{Deployment: "shop", Service: "api", Replica: 2}

func described(status enumspb.WorkflowExecutionStatus) *workflowservice.DescribeWorkflowExecutionResponse {
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: status}}
}

func reconfigure(t *testing.T, c *mocks.Client) (workflows.ReconfigureReplicaResult, error) {
	t.Helper()
	return New(c).ReconfigureReplica(context.Background(), workflows.ReconfigureReplicaInput{
		ID: id, UpdateID: "vigil/shop/gen-2/replace", Request: workflows.ReconfigureRequest{Generation: 2, Replace: true},
	})
}

func TestReconfigureOfAGoneReplicaIsMissing(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, serviceerror.NewNotFound("workflow execution already completed"))
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-2", "").Return(described(enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED), nil)
	res, err := reconfigure(t, c)
	require.NoError(t, err)
	require.True(t, res.Missing)
}

// A run that has just continued as new is not a gone replica: the activity
// fails (and is retried) instead of reporting it missing.
func TestReconfigureMeetingAContinuedRunIsRetried(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, serviceerror.NewNotFound("workflow execution already completed"))
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-2", "").Return(described(enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING), nil)
	_, err := reconfigure(t, c)
	require.ErrorContains(t, err, "trying again")
}

// A refusal is the rollout's reason to pause; a busy replica is retried.
func TestReconfigureRefusedOrBusy(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, temporal.NewApplicationError("reconfigure: replica is Completed", "")).Once()
	res, err := reconfigure(t, c)
	require.NoError(t, err)
	require.False(t, res.Ready)
	require.Equal(t, "shop/api-rep-2: reconfigure: replica is Completed", res.Reason)

	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, temporal.NewApplicationError("reconfigure: another request (restart) is in progress", replica.ErrTypeBusy)).Once()
	_, err = reconfigure(t, c)
	require.Error(t, err)
}

// The update carries the deployment's update ID, so a retried attempt joins it.
func TestReconfigureSendsTheUpdateID(t *testing.T) {
	c := mocks.NewClient(t)
	h := mocks.NewWorkflowUpdateHandle(t)
	h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*workflows.ReconfigureResult) = workflows.ReconfigureResult{Ready: true}
	}).Return(nil)
	c.On("UpdateWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
		return o.UpdateID == "vigil/shop/gen-2/replace" && o.WorkflowID == "vigil/shop/api-rep-2" && o.UpdateName == replica.UpdateReconfigure
	})).Return(h, nil)
	res, err := reconfigure(t, c)
	require.NoError(t, err)
	require.True(t, res.Ready)
}
