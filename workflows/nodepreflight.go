package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
)

// registerPreflight serves UpdatePreflight in node's workflow (`vigil apply
// --dry-run`): the Preflight activity a rollout runs, on the node, for
// replicas the CLI names.
func registerPreflight(ctx workflow.Context, node string) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdatePreflight,
		func(ctx workflow.Context, in activities.PreflightInput) (activities.PreflightResult, error) {
			var res activities.PreflightResult
			err := workflow.ExecuteActivity(nodeRequestOptions(ctx, node, "preflight (dry run)"), replica.PreflightName, in).Get(ctx, &res)
			if isNoWorker(err) {
				return res, fmt.Errorf("preflight: no worker on node %s took the request within %s", node, human(logsWorkerWait))
			}
			return res, err
		},
		workflow.UpdateHandlerOptions{Validator: func(in activities.PreflightInput) error {
			for i, r := range in.Replicas {
				if r.ID.Deployment == "" || r.ID.Service == "" || r.ID.Replica < 1 {
					return fmt.Errorf("preflight: replicas[%d] %q is incomplete; name it as deployment/service-rep-N", i, r.ID.Ref())
				}
			}
			return nil
		}})
}

// nodeRequestOptions: a request the CLI waits for; a preflight may pull an
// image, so it runs longer than a logs request, heartbeating.
func nodeRequestOptions(ctx workflow.Context, node, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              replica.NodeTaskQueue(node),
		ScheduleToStartTimeout: logsWorkerWait,
		StartToCloseTimeout:    5 * time.Minute,
		HeartbeatTimeout:       30 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 2},
		Summary:                summary,
	})
}
