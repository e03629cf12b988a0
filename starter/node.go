package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// TakeoverResult is what `vigil node takeover --json` prints.
type TakeoverResult struct {
	Node string `json:"node"`
	// Host and NodeID are the node's claimant before (empty if none).
	Host   string `json:"host,omitempty"`
	NodeID string `json:"node_id,omitempty"`
}

// nodeCommand groups the commands about a node.
func nodeCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Commands about a node (the host a worker serves with --node)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "takeover NODE",
		Short: "Let the next worker that claims NODE in at once, whatever host it runs on",
		Long: "A node's name is held by the host whose worker claimed it (its node identity, kept in the\n" +
			"worker's --state-dir) while that worker is alive, and by no one a minute after it went silent.\n" +
			"takeover moves the name now, e.g. to a rebuilt host: the next worker to claim NODE gets it,\n" +
			"and a worker still running on the old host stops serving it.",
		Args: exactArgs("NODE"),
		RunE: a.onNode(func(ctx context.Context, c client.Client, node string) error {
			if err := sinceV030(ctx, c, node, "takes any worker's claim; nothing to take over"); err != nil {
				return err
			}
			view, err := control.TakeoverNode(ctx, c, node)
			if err != nil {
				return failure{describeErr("node "+node, err)}
			}
			res := TakeoverResult{Node: node}
			if view.LastClaim != nil {
				res.Host, res.NodeID = view.LastClaim.Host, view.LastClaim.NodeID
			}
			p := a.printer()
			if p.json {
				return p.JSON(res)
			}
			_, err = fmt.Fprintf(p.out, "node %s: released (held by host %q, node identity %s); the next worker that claims it gets it\n", node, res.Host, res.NodeID)
			return err
		}),
	})
	cmd.AddCommand(orphansCommand(a))
	cmd.AddCommand(adminCommands(a)...)
	cmd.AddCommand(nodeListCommand(a))
	return cmd
}

// onNode is the RunE of a command about one node (its argument): do gets a
// client within the command's timeout.
func (a *app) onNode(do func(ctx context.Context, c client.Client, node string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, cancel := a.withTimeout(cmd)
		defer cancel()
		c, err := a.client(ctx)
		if err != nil {
			return err
		}
		return do(ctx, c, args[0])
	}
}

// sinceV030 fails, saying what such a node does (what), unless node's
// workflow runs v0.3.0 or later.
func sinceV030(ctx context.Context, c client.Client, node, what string) error {
	view, err := control.NodeView(ctx, c, node)
	if err != nil {
		return nodeFailure(node, err)
	}
	if view.Release < workflows.V030 {
		return failure{fmt.Errorf("node %s: its workflow runs a release before v0.3.0, which %s", node, what)}
	}
	return nil
}

// nodeFailure is a failed request to node's workflow, naming it.
func nodeFailure(node string, err error) error {
	return failure{describeErr("node "+node+" (workflow "+replica.NodeWorkflowID(node)+")", err)}
}
