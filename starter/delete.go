package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// deleteView is what `vigil delete --json` prints.
type deleteView struct {
	workflows.DeleteResult
	// Gone: nothing of the deployment is left: no workflow runs and no
	// container was left behind.
	Gone bool `json:"gone"`
	// NothingToDelete: there was no deployment workflow and no supervised
	// replica under the name.
	NothingToDelete bool `json:"nothing_to_delete"`
}

func deleteCommand(a *app) *cobra.Command {
	var keep, volumes bool
	cmd := &cobra.Command{
		Use:   "delete DEPLOYMENT [--keep-containers] [--volumes]",
		Short: "Delete a deployment: end every replica's supervision, remove its containers, end its workflow",
		Long: "Ends the supervision of every replica of the deployment, stopping (with its stop_grace) and\n" +
			"removing each container unless --keep-containers, then ends the deployment's workflow, after\n" +
			"the rollout step in flight. Named volumes are kept unless --volumes. Prints what it did to each\n" +
			"replica. Exits 0 when the deployment is gone (also when there was nothing to delete), 1 when\n" +
			"something could not be removed: e.g. a container on a node with no worker, removed by the next\n" +
			"worker on that node. A later apply of the same name starts above the generation it had.",
		Args: deploymentArg("delete"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keep && volumes {
				return usagef("--volumes: the named volumes of containers --keep-containers keeps stay in use; give one of the two")
			}
			ctx, cancel := a.withTimeout(cmd)
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			name := args[0]
			req := workflows.DeleteRequest{RequestID: uuid.NewString(), KeepContainers: keep, Volumes: volumes}
			v, err := deleteDeployment(ctx, c, name, req)
			if err != nil {
				return err
			}
			// Replicas the deployment's workflow did not know (supervised
			// before it existed), or all of them when it is gone already.
			extra, err := endReplicas(ctx, c, a.conn.Namespace, name, req)
			if err != nil {
				return err
			}
			v.Replicas = append(v.Replicas, extra...)
			v.NothingToDelete = v.NothingToDelete && len(extra) == 0
			return printDelete(a.printer(), v)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-containers", false, "leave every container as it is (only supervision ends)")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also delete the replicas' named volumes")
	return cmd
}

// deploymentArg checks a command's one DEPLOYMENT argument.
func deploymentArg(command string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%s: want exactly one DEPLOYMENT, got %d arguments; e.g. vigil %s shop", command, len(args), command)
		}
		if !replica.ValidName(args[0]) {
			return usagef("%s: %q is not a valid deployment name", command, args[0])
		}
		return nil
	}
}

// deleteDeployment asks the deployment's workflow to delete it and waits
// until the workflow has ended. With no workflow running, there is nothing
// for it to do (NothingToDelete, the generation from a deleted run).
func deleteDeployment(ctx context.Context, c client.Client, name string, req workflows.DeleteRequest) (deleteView, error) {
	wid := replica.DeploymentWorkflowID(name)
	v := deleteView{DeleteResult: workflows.DeleteResult{Deployment: name, Replicas: []workflows.DeletedReplica{}}}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		UpdateID: req.RequestID, WorkflowID: wid, UpdateName: replica.UpdateDelete,
		Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &v.DeleteResult)
	}
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		v.NothingToDelete = true
		v.Generation, _ = deletedGeneration(ctx, c, name)
		return v, nil
	case errors.Is(err, context.DeadlineExceeded):
		return v, failure{fmt.Errorf("deployment %s: delete not finished within --timeout (the deployment ends the rollout step in flight first, then every replica); it goes on: run vigil delete %s again to wait for it", name, name)}
	case err != nil:
		return v, describeErr("deployment "+name, err)
	}
	// The update answers as the run ends; wait for the end, so that
	// nothing of it runs when delete returns.
	if err := c.GetWorkflow(ctx, wid, "").Get(ctx, nil); err != nil && !errors.As(err, &notFound) {
		return v, describeErr("deployment "+name, err)
	}
	return v, nil
}

// deletedGeneration is the generation a deleted deployment reached (its
// closed workflow's memo); ok is false when its workflow runs or there is
// none.
func deletedGeneration(ctx context.Context, c client.Client, name string) (int, bool) {
	resp, err := c.DescribeWorkflowExecution(ctx, replica.DeploymentWorkflowID(name), "")
	if err != nil || resp.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return 0, false
	}
	var gen int
	if field := resp.GetWorkflowExecutionInfo().GetMemo().GetFields()[replica.MemoGeneration]; field != nil {
		_ = decodeMemo(c, field, &gen)
	}
	return gen, true
}

// endReplicas unsupervises, as the delete asks, every replica of the
// deployment still supervised. (One already ended by the deployment that
// visibility still lists running is skipped.)
func endReplicas(ctx context.Context, c client.Client, namespace, name string, req workflows.DeleteRequest) ([]workflows.DeletedReplica, error) {
	listed, err := listReplicas(ctx, c, namespace, listFilter{deployment: name})
	if err != nil {
		return nil, err
	}
	var running []listedReplica
	for _, r := range listed {
		if r.running {
			running = append(running, r)
		}
	}
	results := make([]*workflows.DeletedReplica, len(running))
	errs := make([]error, len(running))
	parallel(len(running), func(i int) {
		id := running[i].id
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			UpdateID: req.RequestID + "/" + id.Ref(), WorkflowID: id.WorkflowID(), UpdateName: replica.UpdateUnsupervise,
			Args:         []any{workflows.UnsuperviseRequest{Stop: !req.KeepContainers, Volumes: req.Volumes, RequestID: req.RequestID}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		var res workflows.UpdateResult
		if err == nil {
			err = h.Get(ctx, &res)
		}
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
		case err != nil:
			errs[i] = describeErr(id.Ref(), err)
		default:
			results[i] = &workflows.DeletedReplica{ID: id.Ref(), Note: "unsupervised; " + res.Note, Left: res.NotStopped}
		}
	})
	var out []workflows.DeletedReplica
	for i, r := range results {
		if errs[i] != nil {
			return out, errs[i]
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// printDelete prints what the delete did; it fails (exit 1) naming what it
// could not remove.
func printDelete(p printer, v deleteView) error {
	var left []string
	for _, r := range v.Replicas {
		if r.Left {
			where := r.ID
			if r.Node != "" {
				where += " on node " + r.Node
			}
			left = append(left, where+": "+r.Note)
		}
	}
	v.Gone = len(left) == 0
	if p.json {
		if err := p.JSON(v); err != nil {
			return err
		}
	} else {
		rows := make([][]string, 0, len(v.Replicas))
		for _, r := range v.Replicas {
			rows = append(rows, []string{r.ID, orDash(r.Node), r.Note})
		}
		if len(rows) > 0 {
			if err := p.Table([]string{"ID", "NODE", "RESULT"}, rows); err != nil {
				return err
			}
		}
	}
	if len(left) > 0 {
		return failure{fmt.Errorf("deployment %s: supervision ended, but %d container(s) could not be removed: %s", v.Deployment, len(left), strings.Join(left, "; "))}
	}
	if p.json {
		return nil
	}
	line := fmt.Sprintf("deployment %s deleted; a later apply of it starts at generation %d", v.Deployment, v.Generation+1)
	if v.NothingToDelete {
		line = fmt.Sprintf("deployment %s: nothing to delete (no deployment workflow runs and no replica is supervised under this name)", v.Deployment)
	}
	_, err := fmt.Fprintln(p.out, line)
	return err
}
