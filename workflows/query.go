package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
)

// ReplicasQuery is the visibility query for supervised replicas: supervisors
// that are running, plus those that ended because their container
// completed (runs closed by continue-as-new or by unsupervise are not
// supervised replicas), narrowed to a deployment, a service and a state when
// they are not empty. They are quoted into the query: pass only valid names
// (replica.ValidName) and states. State Unsupervised asks for the runs
// unsupervise closed instead (each replica's latest run is the one to show:
// a replica supervised again has a running one too).
func ReplicasQuery(deployment, service, state string) string {
	q := fmt.Sprintf("WorkflowType = '%s' AND (ExecutionStatus = 'Running' OR (ExecutionStatus = 'Completed' AND %s = '%s'))",
		replica.SupervisorWorkflowName, replica.SearchAttrState, StateCompleted)
	if state == string(StateUnsupervised) {
		q = fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", replica.SupervisorWorkflowName)
	}
	if deployment != "" {
		q += fmt.Sprintf(" AND %s = '%s'", replica.SearchAttrDeployment, deployment)
	}
	if service != "" {
		q += fmt.Sprintf(" AND %s = '%s'", replica.SearchAttrService, service)
	}
	if state != "" {
		q += fmt.Sprintf(" AND %s = '%s'", replica.SearchAttrState, state)
	}
	return q
}

// NodeReplicasQuery narrows ReplicasQuery to the replicas on node in state.
// Only runs since v0.3.0 publish their node (SearchAttrNode); a v0.2.0 run
// publishes it once it continues as new (daily).
func NodeReplicasQuery(node string, state State) string {
	return ReplicasQuery("", "", string(state)) + fmt.Sprintf(" AND %s = '%s'", replica.SearchAttrNode, node)
}

// NodeSupervisedQuery is the visibility query for the replicas supervised
// on node now, in any state.
func NodeSupervisedQuery(node string) string {
	return fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND %s = '%s'",
		replica.SupervisorWorkflowName, replica.SearchAttrNode, node)
}

// NodeUnsupervisedQuery is the visibility query for the runs on node that
// ended by unsupervise (the runs that may keep a pending stop).
func NodeUnsupervisedQuery(node string) string {
	return fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed' AND %s = '%s' AND %s = '%s'",
		replica.SupervisorWorkflowName, replica.SearchAttrState, StateUnsupervised, replica.SearchAttrNode, node)
}

// FetchLogs runs the Logs activity on the replica's node and returns its output.
func FetchLogs(ctx workflow.Context, in FetchLogsInput) (string, error) {
	var res activities.LogsResult
	err := workflow.ExecuteActivity(logsOptions(ctx, in.Node, ""), replica.LogsName, activities.LogsInput{ID: in.ID, Tail: in.Tail}).Get(ctx, &res)
	return res.Output, err
}
