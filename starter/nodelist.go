package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-run/vigil/control"
)

// nodeListCommand is `vigil node list`.
func nodeListCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the nodes: state, holder's identity, replicas and when each was last seen",
		Long: "Every node with a node workflow (a worker served it once). A node is Lost once its lease\n" +
			"(its worker's renewal every 5 s) is older than the shortest reschedule.lost_after of the\n" +
			"services that may run there (30s when none sets one), else Draining or Cordoned (vigil node\n" +
			"drain, cordon), else Ready. last_seen is the last renewal.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.withTimeout(cmd)
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			nodes, err := control.ListNodes(ctx, c)
			if err != nil {
				return failure{describeErr("node list", err)}
			}
			p := a.printer()
			if p.json {
				return p.JSON(nodes)
			}
			rows := make([][]string, 0, len(nodes))
			for _, n := range nodes {
				seen := "never"
				if n.LastSeen != nil {
					seen = fmt.Sprintf("%s (%s ago)", n.LastSeen.Local().Format(timeLayout), time.Since(*n.LastSeen).Round(time.Second))
				}
				rows = append(rows, []string{n.Node, string(n.State), orDash(n.Identity), strconv.Itoa(n.Replicas), seen})
			}
			return p.Table([]string{"NODE", "STATE", "IDENTITY", "REPLICAS", "LAST SEEN"}, rows)
		},
	}
}
