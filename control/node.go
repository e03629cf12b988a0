package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// Client-side helpers of the node watch, used by vigil-worker. They are not
// workflow code.

// ClaimNode makes the node's watch run on the calling worker at once: it
// starts vigil-node/<node> if it is not running and signals the claim. The
// node workflow's cached state on a dead worker is dropped first, so the
// claim does not wait for that worker's sticky queue to time out.
func ClaimNode(ctx context.Context, c client.Client, namespace, taskQueue, node, worker string) (workflows.Claim, error) {
	claim := workflows.Claim{ID: uuid.NewString(), Worker: worker, At: time.Now().UTC()}
	id := replica.NodeWorkflowID(node)
	resetSticky(ctx, c, namespace, id)
	_, err := c.SignalWithStartWorkflow(ctx, id, replica.SignalClaim, claim, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: taskQueue,
	}, replica.NodeWorkflowName, workflows.NodeInput{Node: node})
	if err != nil {
		return claim, fmt.Errorf("claim node %s (workflow %s): %w", node, id, err)
	}
	return claim, nil
}

// resetSticky drops a workflow's cached state on whichever worker last ran
// it (that worker may be dead): its next workflow task goes to the shared
// queue at once. Best effort; a missing workflow is fine.
func resetSticky(ctx context.Context, c client.Client, namespace, workflowID string) {
	_, _ = c.WorkflowService().ResetStickyTaskQueue(ctx, &workflowservice.ResetStickyTaskQueueRequest{
		Namespace: namespace,
		Execution: &commonpb.WorkflowExecution{WorkflowId: workflowID},
	})
}

// ExitReporter reports the node watch's exits to replica workflows by
// signal, by workflow ID only, so a report reaches the current run after a
// continue-as-new. A replica whose supervision ended is not an error.
func ExitReporter(c client.Client, namespace string) activities.Reporter {
	return &exitReporter{c: c, namespace: namespace}
}

type exitReporter struct {
	c         client.Client
	namespace string
}

func (r *exitReporter) ReportExit(ctx context.Context, rep activities.ExitReport, takeover bool) error {
	id := rep.ID.WorkflowID()
	if takeover {
		resetSticky(ctx, r.c, r.namespace, id)
	}
	err := r.c.SignalWorkflow(ctx, id, "", replica.SignalExit, rep)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// Roster answers the node watch's question which replicas should run on a
// node from visibility: the replicas publish their node and state
// (workflows.SearchAttrNode, SearchAttrState).
func Roster(c client.Client) activities.Roster { return roster{c: c} }

type roster struct{ c client.Client }

func (r roster) Running(ctx context.Context, node string) ([]replica.ID, error) {
	if node == "" || strings.ContainsAny(node, `'\`) {
		return nil, fmt.Errorf("node name %q cannot be looked up", node)
	}
	query := workflows.NodeReplicasQuery(node, workflows.StateRunning)
	var out []replica.ID
	var token []byte
	for {
		resp, err := r.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list the replicas on node %s: %w", node, err)
		}
		for _, e := range resp.GetExecutions() {
			if id, err := replica.ParseRef(e.GetExecution().GetWorkflowId()); err == nil {
				out = append(out, id)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}
