package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// Cordon and drain, on the node's workflow (since v0.3.0). A cordoned node
// takes no moved replica (PlanMove skips it); a drained one is cordoned and
// its movable replicas move off it one at a time (DrainNode: the replica's
// move update stops its container, starts it on another node and answers
// once it ran its service's min_ready), durably: the drain is the node
// workflow's state, carried across continue-as-new, and its activity is
// retried on any worker. Pinned replicas stay. The node's replicas are told
// (node_state Cordoned, Draining, and Ready again on uncordon).

// NodeCordoned and NodeDraining are node states an operator sets.
const (
	NodeCordoned NodeState = "Cordoned"
	NodeDraining NodeState = "Draining"
)

// MoveRequest is the replica's "move" update: off node From (drained),
// watching the container on its new node for MinReady.
type MoveRequest struct {
	From     string        `json:"from"`
	Reason   string        `json:"reason"`
	MinReady time.Duration `json:"min_ready,omitempty"`
}

// DrainInput drains Node.
type DrainInput struct {
	Node string `json:"node"`
}

// DrainResult is what a drain did: the replicas moved, and those left on
// the node (pinned ones, or a move that did not work: Failed, each with why).
type DrainResult struct {
	Moved  []string `json:"moved"`
	Pinned []string `json:"pinned,omitempty"`
	Failed []string `json:"failed,omitempty"`
}

// adminState is what an operator made of the node ("": nothing).
func (st *NodeCarry) adminState() NodeState {
	switch {
	case st.Draining:
		return NodeDraining
	case st.Cordoned:
		return NodeCordoned
	}
	return ""
}

// registerAdmin serves cordon, uncordon and drain, and runs the drain.
func registerAdmin(ctx workflow.Context, node string, st *NodeCarry) error {
	changed := workflow.NewBufferedChannel(ctx, 1)
	for _, u := range []struct {
		name               string
		cordoned, draining bool
	}{
		{replica.UpdateCordon, true, false},
		{replica.UpdateUncordon, false, false},
		{replica.UpdateDrain, true, true},
	} {
		name := u.name
		if err := workflow.SetUpdateHandler(ctx, name, func(ctx workflow.Context) (NodeView, error) {
			st.Cordoned, st.Draining = u.cordoned, u.draining
			if changed.Len() == 0 {
				changed.SendAsync(true)
			}
			workflow.GetLogger(ctx).Info("node "+name, "node", node)
			return NodeView{Node: node, NodeCarry: *st}, nil
		}); err != nil {
			return err
		}
	}
	workflow.Go(ctx, func(ctx workflow.Context) { runAdmin(ctx, node, st, changed) })
	return nil
}

// runAdmin tells the node's replicas each change of the node's admin
// state, and drains the node while it is draining.
func runAdmin(ctx workflow.Context, node string, st *NodeCarry, changed workflow.Channel) {
	told := st.adminState()
	var drain workflow.Future
	var stopDrain workflow.CancelFunc
	for {
		if now := st.adminState(); now != told {
			state := now
			if state == "" {
				state = NodeReady
			}
			err := workflow.ExecuteActivity(leaseOptions(ctx, "tell the replicas of "+node+" it is "+string(state)), replica.NotifyNodeReplicasName,
				NotifyNodeReplicasInput{Node: node, Notice: NodeLeaseNotice{Node: node, State: state}}).Get(ctx, nil)
			if err != nil {
				workflow.GetLogger(ctx).Warn("node replicas not told of the node's state", "node", node, "error", err)
			}
			told = now
		}
		switch {
		case st.Draining && drain == nil:
			var dctx workflow.Context
			dctx, stopDrain = workflow.WithCancel(ctx)
			drain = workflow.ExecuteActivity(leaseOptions(dctx, "drain node "+node), replica.DrainNodeName, DrainInput{Node: node})
		case !st.Draining && drain != nil:
			stopDrain()
			drain = nil
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(changed, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		if drain != nil {
			sel.AddFuture(drain, func(f workflow.Future) {
				var res DrainResult
				err := f.Get(ctx, &res)
				drain = nil
				switch {
				case err == nil:
					workflow.GetLogger(ctx).Info("node drained", "node", node, "moved", len(res.Moved), "pinned", len(res.Pinned), "failed", res.Failed)
					st.Draining = false // cordoned still
				case temporal.IsCanceledError(err):
				default:
					workflow.GetLogger(ctx).Warn("drain failed; trying again", "node", node, "error", err)
					_ = workflow.Sleep(ctx, leaseHeartbeat)
				}
			})
		}
		sel.Select(ctx)
		if ctx.Err() != nil {
			return
		}
	}
}
