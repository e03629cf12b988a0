package main

import (
	"context"
	"fmt"
	"strings"
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
		if err := runUpdate(ctx, c, id, name, arg); err != nil {
			return err
		}
		res := UpdateResult{ID: id.Ref(), Update: name, Result: "done"}
		p := a.printer()
		if p.json {
			return p.JSON(res)
		}
		_, err := fmt.Fprintf(p.out, "%s: %s done\n", res.ID, name)
		return err
	})
}

// runUpdate runs one of the supervisor's updates to completion.
func runUpdate(ctx context.Context, c client.Client, id replica.ID, name string, arg any) error {
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
	return nil
}

// updateCommand is release or restart: an update without options.
func updateCommand(a *app, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dep, svc, ok := serviceRef(args[0]); ok && name == workflows.UpdateRelease {
				return releaseService(cmd, a, dep, svc)
			}
			var arg any = workflows.ReleaseRequest{}
			if name == workflows.UpdateRestart {
				arg = workflows.RestartRequest{Reason: "vigil restart"}
			}
			return sendUpdate(cmd, a, args[0], name, arg)
		},
	}
}

// serviceRef recognizes "<deployment>/<service>" (not a replica's ID).
func serviceRef(arg string) (deployment, service string, ok bool) {
	if _, err := replica.ParseRef(arg); err == nil {
		return "", "", false
	}
	deployment, service, found := strings.Cut(arg, "/")
	if !found || !replica.ValidName(deployment) || !replica.ValidName(service) {
		return "", "", false
	}
	return deployment, service, true
}

// releaseService releases every Shutdown or Isolated replica of a service,
// as after a service-wide shutdown. It prints one line per replica released.
func releaseService(cmd *cobra.Command, a *app, deployment, service string) error {
	ctx, cancel := a.withTimeout(cmd)
	defer cancel()
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	replicas, err := listReplicas(ctx, c, a.conn.Namespace, listFilter{deployment: deployment, service: service})
	if err != nil {
		return err
	}
	ref := deployment + "/" + service
	var released []UpdateResult
	for _, r := range replicas {
		if !r.running {
			continue
		}
		v, err := queryState(ctx, c, r.id)
		if err != nil {
			return err
		}
		if v.State != workflows.StateShutdown && v.State != workflows.StateIsolated {
			continue
		}
		if err := runUpdate(ctx, c, r.id, workflows.UpdateRelease, workflows.ReleaseRequest{}); err != nil {
			return err
		}
		released = append(released, UpdateResult{ID: r.id.Ref(), Update: workflows.UpdateRelease, Result: "done"})
	}
	if len(released) == 0 {
		return failure{fmt.Errorf("%s: no replica of this service is Shutdown or Isolated; see vigil list --deployment %s --service %s", ref, deployment, service)}
	}
	p := a.printer()
	if p.json {
		return p.JSON(released)
	}
	for _, r := range released {
		if _, err := fmt.Fprintf(p.out, "%s: %s done\n", r.ID, r.Update); err != nil {
			return err
		}
	}
	return nil
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
