package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/control"
)

// OrphanView is one orphan, as `vigil node orphans --json` prints it.
type OrphanView struct {
	ID        string `json:"id"`
	Container string `json:"container"`
	Status    string `json:"status"`
	Removed   bool   `json:"removed"`
}

// OrphansResult is what `vigil node orphans --json` prints.
type OrphansResult struct {
	Node    string       `json:"node"`
	Orphans []OrphanView `json:"orphans"`
}

// orphansCommand is `vigil node orphans NODE [--remove]`.
func orphansCommand(a *app) *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "orphans NODE [--remove]",
		Short: "List (or remove) the containers on NODE that no replica owns",
		Long: "A container in Vigil's containerd namespace is an orphan when no supervised replica owns it: e.g.\n" +
			"left by `vigil unsupervise` without --stop, or by a replica moved to another node. The node's\n" +
			"worker lists them; --remove also removes each (task, container and snapshot; its log is kept).",
		Args: exactArgs("NODE"),
		RunE: a.onNode(func(ctx context.Context, c client.Client, node string) error {
			got, err := control.NodeOrphans(ctx, c, node, remove)
			if err != nil {
				return nodeFailure(node, err)
			}
			res := OrphansResult{Node: node, Orphans: []OrphanView{}}
			rows := make([][]string, 0, len(got.Orphans))
			for _, o := range got.Orphans {
				v := OrphanView{ID: o.ID.Ref(), Container: o.ID.ContainerName(), Status: string(o.Status), Removed: o.Removed}
				res.Orphans = append(res.Orphans, v)
				removed := "no"
				if v.Removed {
					removed = "yes"
				}
				rows = append(rows, []string{v.Container, v.Status, removed})
			}
			p := a.printer()
			if p.json {
				return p.JSON(res)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintf(p.out, "node %s: no orphans\n", node)
				return err
			}
			return p.Table([]string{"CONTAINER", "STATUS", "REMOVED"}, rows)
		}),
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "also remove each orphan (its log is kept)")
	return cmd
}
