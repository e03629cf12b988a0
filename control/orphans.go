package control

import (
	"context"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// NodeOrphans asks node's workflow for the containers on the node that no
// replica owns, and to remove them with remove (`vigil node orphans`).
func NodeOrphans(ctx context.Context, c client.Client, node string, remove bool) (activities.OrphansResult, error) {
	req := workflows.OrphansRequest{Remove: remove, RequestID: uuid.NewString()}
	var res activities.OrphansResult
	err := NodeUpdate(ctx, c, node, replica.UpdateOrphans, req.RequestID, req, &res)
	return res, err
}

// NodeUpdate sends node's workflow the update name (its ID: requestID) and
// waits for its result: a request served by an activity on the node, with
// no workflow made per call.
func NodeUpdate(ctx context.Context, c client.Client, node, name, requestID string, arg, out any) error {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		UpdateID:     requestID,
		WorkflowID:   replica.NodeWorkflowID(node),
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, out)
}

// NodePreflight asks node's workflow to run the preflight of a rollout for
// the replicas in in (`vigil apply --dry-run`).
func NodePreflight(ctx context.Context, c client.Client, node string, in activities.PreflightInput) (activities.PreflightResult, error) {
	var res activities.PreflightResult
	err := NodeUpdate(ctx, c, node, replica.UpdatePreflight, uuid.NewString(), in, &res)
	return res, err
}
