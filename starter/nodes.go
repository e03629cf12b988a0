package main

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// nodeCheckTimeout bounds the question whether a node has a worker: it is a
// courtesy, never a reason for a command to hang or fail.
const nodeCheckTimeout = 5 * time.Second

// nodeWorkers answers, per node, whether a vigil-worker polls the node's
// activity queue (the queue every container activity of a replica on that
// node waits in) and its node watch heartbeats. Without one, nothing
// happens to the node's containers.
type nodeWorkers struct {
	c     client.Client
	known map[string]bool
}

func newNodeWorkers(c client.Client) *nodeWorkers {
	return &nodeWorkers{c: c, known: map[string]bool{}}
}

// has reports whether node has a worker, and whether that is known (the
// server answered).
func (n *nodeWorkers) has(ctx context.Context, node string) (has, known bool) {
	if node == "" {
		return false, false
	}
	if v, ok := n.known[node]; ok {
		return v, true
	}
	qctx, cancel := context.WithTimeout(ctx, nodeCheckTimeout)
	defer cancel()
	resp, err := n.c.DescribeTaskQueue(qctx, replica.NodeTaskQueue(node), enumspb.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return false, false
	}
	n.known[node] = len(resp.GetPollers()) > 0 && n.watchAlive(qctx, node)
	return n.known[node], true
}

// watchAlive reports whether the node's watch heartbeated within its
// timeout: a worker that polled recently but stopped heartbeating (its host
// is gone) leaves the node unwatched. Only the live watch counts, not an
// older claim's attempt still pending beside it. Unknown (no node workflow,
// no watch pending, an older worker) counts as alive.
func (n *nodeWorkers) watchAlive(ctx context.Context, node string) bool {
	desc, err := n.c.DescribeWorkflowExecution(ctx, replica.NodeWorkflowID(node), "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return true
	}
	if w, ok := control.CurrentWatch(desc); ok {
		return time.Since(w.Seen) < workflows.NodeHeartbeatTimeout
	}
	for _, a := range desc.GetPendingActivities() {
		if a.GetActivityType().GetName() == replica.WatchNodeName {
			return false // pending, none running
		}
	}
	return true
}

// noWorkerText says what a node without a worker means for its replicas.
func noWorkerText(node string) string {
	return fmt.Sprintf("no vigil-worker polls node %s's queue (%s); its replicas stay as they are (a new one stays Pending) until a worker with --node %s runs",
		node, replica.NodeTaskQueue(node), node)
}
