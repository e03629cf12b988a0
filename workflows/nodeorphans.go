package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
)

// OrphansRequest is the "orphans" update's argument.
type OrphansRequest struct {
	// Remove also removes the orphans.
	Remove bool `json:"remove,omitempty"`
	// RequestID is the CLI's request ID, also the update's ID.
	RequestID string `json:"request_id,omitempty"`
}

// registerOrphans serves UpdateOrphans in node's workflow: the Orphans
// activity runs on the node, as a logs request's does.
func registerOrphans(ctx workflow.Context, node string) error {
	return workflow.SetUpdateHandler(ctx, replica.UpdateOrphans,
		func(ctx workflow.Context, req OrphansRequest) (activities.OrphansResult, error) {
			summary := "orphans"
			if req.Remove {
				summary = "remove orphans"
			}
			var res activities.OrphansResult
			err := workflow.ExecuteActivity(logsOptions(ctx, node, summary), replica.OrphansName,
				activities.OrphansInput{Node: node, Remove: req.Remove}).Get(ctx, &res)
			return res, err
		})
}
