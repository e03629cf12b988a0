package control

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// NodeSummary is one node as `vigil node list` shows it.
type NodeSummary struct {
	Node string `json:"node"`
	// State is Lost once the node's lease is older than LostAfter, else
	// Draining or Cordoned as an operator made it, else Ready.
	State workflows.NodeState `json:"state"`
	// Identity is the node identity of the worker holding the node (the
	// uuid in its --state-dir); empty before any v0.3.0 worker claimed it.
	Identity string `json:"identity"`
	// Replicas is how many replicas are supervised on the node now.
	Replicas int `json:"replicas"`
	// LastSeen is the node lease's last renewal (the server's clock); nil
	// when no watch has run.
	LastSeen *time.Time `json:"last_seen"`
	// LostAfter is the shortest lost_after of the services that may run
	// on the node (replica.DefaultLostAfter without any).
	LostAfter time.Duration `json:"-"`
}

// ListNodes summarises every node that has a node workflow, by name.
func ListNodes(ctx context.Context, c client.Client) ([]NodeSummary, error) {
	ids, err := listWorkflows(ctx, c, fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", replica.NodeWorkflowName))
	if err != nil {
		return nil, err
	}
	lostAfter, err := placedLostAfter(ctx, c)
	if err != nil {
		return nil, err
	}
	out := make([]NodeSummary, 0, len(ids))
	for _, id := range ids {
		node := strings.TrimPrefix(id, replica.NodeWorkflowID(""))
		s, err := SummariseNode(ctx, c, node, lostAfter[node])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// SummariseNode reads node's lease, holder and replicas. The node is Lost
// once its lease is lostAfter old (0: replica.DefaultLostAfter).
func SummariseNode(ctx context.Context, c client.Client, node string, lostAfter time.Duration) (NodeSummary, error) {
	s := NodeSummary{Node: node, LostAfter: cmp.Or(lostAfter, replica.DefaultLostAfter)}
	l, err := NodeLease(ctx, c, node)
	if err != nil {
		return s, err
	}
	if !l.LastRenewal.IsZero() {
		s.LastSeen = &l.LastRenewal
	}
	view, err := NodeView(ctx, c, node)
	if err == nil && view.LastClaim != nil {
		s.Identity = view.LastClaim.NodeID
	}
	ids, err := listWorkflows(ctx, c, workflows.NodeSupervisedQuery(node))
	if err != nil {
		return s, err
	}
	s.Replicas = len(ids)
	switch {
	case l.LastRenewal.IsZero() || time.Since(l.LastRenewal) >= s.LostAfter:
		s.State = workflows.NodeLost
	case view.Draining:
		s.State = workflows.NodeDraining
	case view.Cordoned:
		s.State = workflows.NodeCordoned
	default:
		s.State = workflows.NodeReady
	}
	return s, nil
}

// placedLostAfter is, per node, the shortest lost_after of the services
// of every deployment that may run there (the deployment files being
// rolled out: one query per deployment).
func placedLostAfter(ctx context.Context, c client.Client) (map[string]time.Duration, error) {
	ids, err := listWorkflows(ctx, c, fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", replica.DeploymentWorkflowName))
	if err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for _, id := range ids {
		var spec *workflows.DeploymentSpec
		if err := query(ctx, c, id, replica.QueryDesired, &spec); err != nil || spec == nil {
			continue // being retried, or nothing applied yet: its replicas count at the default
		}
		for _, svc := range spec.Services {
			for _, node := range svc.Config.Nodes() {
				if d := svc.Config.NodeLostAfter(); out[node] == 0 || d < out[node] {
					out[node] = d
				}
			}
		}
	}
	return out, nil
}
