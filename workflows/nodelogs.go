package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
)

// LogsRequest is the "logs" update's argument.
type LogsRequest struct {
	ID   replica.ID `json:"id"`
	Tail int        `json:"tail"`
	// RequestID is the CLI's request ID, also the update's ID.
	RequestID string `json:"request_id,omitempty"`
}

// registerLogs serves UpdateLogs in node's workflow, in runs before V030.
func registerLogs(ctx workflow.Context, node string) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdateLogs,
		func(ctx workflow.Context, req LogsRequest) (string, error) {
			var res activities.LogsResult
			err := workflow.ExecuteActivity(logsOptions(ctx, node, "logs of "+req.ID.Ref()), replica.LogsName,
				activities.LogsInput{ID: req.ID, Tail: req.Tail}).Get(ctx, &res)
			if isNoWorker(err) {
				return "", fmt.Errorf("logs: no worker on node %s took the request within %s", node, human(logsWorkerWait))
			}
			return res.Output, err
		},
		workflow.UpdateHandlerOptions{Validator: func(req LogsRequest) error {
			if req.ID.Deployment == "" || req.ID.Service == "" || req.ID.Replica < 1 {
				return fmt.Errorf("logs: replica %q is incomplete; name it as deployment/service-rep-N", req.ID.Ref())
			}
			if req.Tail < 0 {
				return fmt.Errorf("logs: tail %d is negative; use 0 for everything or a number of lines", req.Tail)
			}
			return nil
		}})
}

// logsWorkerWait bounds the wait for a worker on the node: shorter than
// NodeScheduleToStart, so that the CLI (30 s by default) hears why.
const logsWorkerWait = 10 * time.Second

// logsOptions: reading a log (or listing orphans) is quick; a few tries,
// then the caller hears why.
func logsOptions(ctx workflow.Context, node, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              replica.NodeTaskQueue(node),
		ScheduleToStartTimeout: logsWorkerWait,
		StartToCloseTimeout:    30 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 3},
		Summary:                summary,
	})
}
