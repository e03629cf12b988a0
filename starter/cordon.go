package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// NodeAdminResult is what `vigil node cordon|uncordon|drain --json` prints.
type NodeAdminResult struct {
	Node     string `json:"node"`
	Cordoned bool   `json:"cordoned"`
	Draining bool   `json:"draining"`
}

// drainPoll is how often drain --wait reads the node's state.
const drainPoll = time.Second

// adminCommands are `vigil node cordon|uncordon|drain NODE`: updates on
// the node's workflow (since v0.3.0).
func adminCommands(a *app) []*cobra.Command {
	var wait bool
	mk := func(update, short, long string) *cobra.Command {
		return &cobra.Command{
			Use:   update + " NODE",
			Short: short,
			Long:  long,
			Args:  exactArgs("NODE"),
			RunE: a.onNode(func(ctx context.Context, c client.Client, node string) error {
				if err := sinceV030(ctx, c, node, "cannot "+update+"; upgrade its worker first"); err != nil {
					return err
				}
				view, err := nodeAdmin(ctx, c, node, update)
				if err != nil {
					return nodeFailure(node, err)
				}
				for wait && update == replica.UpdateDrain && view.Draining {
					select {
					case <-ctx.Done():
						return failure{fmt.Errorf("node %s: still draining after --timeout %s; follow it with vigil node list", node, a.timeout)}
					case <-time.After(drainPoll):
					}
					if view, err = control.NodeView(ctx, c, node); err != nil {
						return nodeFailure(node, err)
					}
				}
				res := NodeAdminResult{Node: node, Cordoned: view.Cordoned, Draining: view.Draining}
				p := a.printer()
				if p.json {
					return p.JSON(res)
				}
				state := "ready: replicas may move to it"
				switch {
				case res.Draining:
					state = "draining: its movable replicas move off it one at a time (vigil node drain " + node + " --wait)"
				case res.Cordoned && update == replica.UpdateDrain:
					state = "drained and cordoned: its movable replicas moved off it; uncordon it to take replicas again"
				case res.Cordoned:
					state = "cordoned: no replica moves to it"
				}
				_, err = fmt.Fprintf(p.out, "node %s: %s\n", node, state)
				return err
			}),
		}
	}
	drain := mk(replica.UpdateDrain, "Cordon NODE and move its movable replicas off it, one at a time",
		"drain cordons NODE, then moves each replica with placement.nodes off it to another eligible\n"+
			"node, one at a time: the container is stopped (its grace), started on the other node and must\n"+
			"run its service's update.min_ready before the next moves. Pinned replicas (node:) stay. It is\n"+
			"durable: it goes on across worker and server restarts. --wait returns when it is done.")
	drain.Flags().BoolVar(&wait, "wait", false, "return once every movable replica has moved off NODE (within --timeout)")
	return []*cobra.Command{
		mk(replica.UpdateCordon, "Let no replica move to NODE", "cordon keeps replicas of a lost or drained node from moving to NODE; what runs there stays."),
		mk(replica.UpdateUncordon, "Let replicas move to NODE again (and stop a drain)", "uncordon undoes cordon and ends a drain in progress; replicas that moved off stay where they are."),
		drain,
	}
}

// nodeAdmin sends cordon, uncordon or drain to node's workflow.
func nodeAdmin(ctx context.Context, c client.Client, node, update string) (workflows.NodeView, error) {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   replica.NodeWorkflowID(node),
		UpdateName:   update,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var view workflows.NodeView
	if err == nil {
		err = h.Get(ctx, &view)
	}
	return view, err
}
