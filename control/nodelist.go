package control

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// NodeSummary is one node as `vigil node list` shows it.
type NodeSummary struct {
	Node string `json:"node"`
	// State is Ready, or Lost once the node's lease is older than LostAfter.
	State workflows.NodeState `json:"state"`
	// Identity is the node identity of the worker holding the node (the
	// uuid in its --state-dir); empty before any v0.3.0 worker claimed it.
	Identity string `json:"identity"`
	// Replicas is how many replicas are supervised on the node now.
	Replicas int `json:"replicas"`
	// LastSeen is the node lease's last renewal (the server's clock); nil
	// when no watch has run.
	LastSeen *time.Time `json:"last_seen"`
	// LostAfter is the shortest lost_after of the node's replicas
	// (replica.DefaultLostAfter without any).
	LostAfter time.Duration `json:"-"`
}

// replicaQueries bounds the config queries of one node's replicas in flight.
const replicaQueries = 8

// ListNodes summarises every node that has a node workflow, by name.
func ListNodes(ctx context.Context, c client.Client) ([]NodeSummary, error) {
	ids, err := listWorkflows(ctx, c, fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", replica.NodeWorkflowName))
	if err != nil {
		return nil, err
	}
	out := make([]NodeSummary, 0, len(ids))
	for _, id := range ids {
		s, err := SummariseNode(ctx, c, strings.TrimPrefix(id, replica.NodeWorkflowID("")))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// SummariseNode reads node's lease, holder and replicas.
func SummariseNode(ctx context.Context, c client.Client, node string) (NodeSummary, error) {
	s := NodeSummary{Node: node, LostAfter: replica.DefaultLostAfter}
	l, err := NodeLease(ctx, c, node)
	if err != nil {
		return s, err
	}
	if !l.LastRenewal.IsZero() {
		s.LastSeen = &l.LastRenewal
	}
	if view, err := NodeView(ctx, c, node); err == nil && view.LastClaim != nil {
		s.Identity = view.LastClaim.NodeID
	}
	ids, err := listWorkflows(ctx, c, workflows.NodeSupervisedQuery(node))
	if err != nil {
		return s, err
	}
	s.Replicas = len(ids)
	if lost := shortestLostAfter(ctx, c, ids); lost > 0 {
		s.LostAfter = lost
	}
	s.State = workflows.NodeReady
	if l.LastRenewal.IsZero() || time.Since(l.LastRenewal) >= s.LostAfter {
		s.State = workflows.NodeLost
	}
	return s, nil
}

// shortestLostAfter is the least lost_after of the replicas whose
// workflows are ids (0 if none answered). One that does not answer its
// query (it ended, or is being retried) does not count.
func shortestLostAfter(ctx context.Context, c client.Client, ids []string) time.Duration {
	var (
		mu       sync.Mutex
		shortest time.Duration
		wg       sync.WaitGroup
		sem      = make(chan struct{}, replicaQueries)
	)
	for _, wid := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var in workflows.SupervisionInput
			if err := query(ctx, c, wid, replica.QueryConfig, &in); err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if d := in.NodeLostAfter(); shortest == 0 || d < shortest {
				shortest = d
			}
		}()
	}
	wg.Wait()
	return shortest
}
