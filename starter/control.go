package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// UpdateResult is what release, restart and unsupervise print.
type UpdateResult struct {
	ID     string `json:"id"`
	Update string `json:"update"`
	Result string `json:"result"`
}

// sendUpdate runs one of the supervisor's updates and waits until the
// workflow has carried it out.
func sendUpdate(cmd *cobra.Command, a *app, ref, name string, arg any) error {
	return a.onReplica(cmd, ref, func(ctx context.Context, c client.Client, id replica.ID) error {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID:   id.WorkflowID(),
			UpdateName:   name,
			Args:         []any{arg},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err != nil {
			return describeErr(id.Ref(), err)
		}
		if err := h.Get(ctx, nil); err != nil {
			return describeErr(id.Ref(), err)
		}
		res := UpdateResult{ID: id.Ref(), Update: name, Result: "done"}
		p := a.printer()
		if p.json {
			return p.JSON(res)
		}
		_, err = fmt.Fprintf(p.out, "%s: %s done\n", res.ID, name)
		return err
	})
}

// updateCommand is release or restart: an update without options.
func updateCommand(a *app, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var arg any = workflows.ReleaseRequest{}
			if name == workflows.UpdateRestart {
				arg = workflows.RestartRequest{Reason: "vigil restart"}
			}
			return sendUpdate(cmd, a, args[0], name, arg)
		},
	}
}

func unsuperviseCommand(a *app) *cobra.Command {
	var stop bool
	cmd := &cobra.Command{
		Use:   "unsupervise ID [--stop]",
		Short: "End a replica's supervision, leaving its container as it is unless --stop",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendUpdate(cmd, a, args[0], workflows.UpdateUnsupervise, workflows.UnsuperviseRequest{Stop: stop})
		},
	}
	cmd.Flags().BoolVar(&stop, "stop", false, "also stop the container")
	return cmd
}

// LogsResult is what `vigil logs --json` prints.
type LogsResult struct {
	ID     string `json:"id"`
	Node   string `json:"node"`
	Output string `json:"output"`
}

func logsCommand(a *app, taskQueue func() string) *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:   "logs ID [--tail N]",
		Short: "Print a replica's captured stdout and stderr",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usagef("--tail: %d is negative; use 0 for everything or a number of lines", tail)
			}
			return a.onReplica(cmd, args[0], func(ctx context.Context, c client.Client, id replica.ID) error {
				// The logs live on the replica's node; ask its supervisor where that is.
				v, err := c.QueryWorkflow(ctx, id.WorkflowID(), "", workflows.QueryConfig)
				if err != nil {
					return describeErr(id.Ref(), err)
				}
				var in workflows.SupervisionInput
				if err := v.Get(&in); err != nil {
					return failure{fmt.Errorf("%s: cannot decode the configuration: %v", id.Ref(), err)}
				}
				run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
					ID:                       fmt.Sprintf("vigil-logs/%s/%d", id.Ref(), time.Now().UnixNano()),
					TaskQueue:                taskQueue(),
					WorkflowExecutionTimeout: a.timeout,
				}, workflows.FetchLogsWorkflowName, workflows.FetchLogsInput{ID: id, Node: in.Node, Tail: tail})
				if err != nil {
					return describeErr(id.Ref(), err)
				}
				var out string
				if err := run.Get(ctx, &out); err != nil {
					return describeErr(id.Ref(), err)
				}
				p := a.printer()
				if p.json {
					return p.JSON(LogsResult{ID: id.Ref(), Node: in.Node, Output: out})
				}
				_, err = fmt.Fprint(p.out, out)
				return err
			})
		},
	}
	cmd.Flags().IntVar(&tail, "tail", 100, "number of last lines to print (0 for all)")
	return cmd
}
