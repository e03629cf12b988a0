package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/spec"
	"github.com/vigil-run/vigil/workflows"
)

// applyCommand is `vigil apply -f FILE` and, doing exactly the same,
// `vigil supervise -f FILE`.
func applyCommand(a *app, use string, taskQueue func() string, lookup func(string) (string, bool)) *cobra.Command {
	var file, node string
	var dryRun, wait bool
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   use + " -f FILE [--node N] [--dry-run] [--wait]",
		Short: "Make the deployment run as the file says (desired state)",
		Long: "Applies a deployment file as desired state: new services and replicas are supervised,\n" +
			"removed ones are stopped, removed from containerd and unsupervised (highest-numbered\n" +
			"first), a changed on_panic policy is applied in place, and a changed container spec is\n" +
			"rolled out one replica at a time (update: max_unavailable, min_ready). Prints one line\n" +
			"per replica: create, update (with the changed fields), remove or unchanged. The rollout\n" +
			"runs in the deployment's workflow; follow it with vigil rollout status DEPLOYMENT, or\n" +
			"give --wait to return only once it is complete and every replica runs (within --timeout).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.ApplyEnv(cmd.Flags(), map[string]string{"node": "VIGIL_NODE"}, lookup); err != nil {
				return usageError{err}
			}
			if file == "" {
				return usagef("%s: -f FILE is required; e.g. vigil %s -f examples/demo.yaml", use, use)
			}
			if node == "" {
				return usagef("--node: empty; give the name of the node whose vigil-worker runs the containers")
			}
			// Parse before connecting: a bad file never reaches the server.
			d, err := a.parseDeployment(file)
			if err != nil {
				return err
			}
			desired := desiredState(d, node)
			ctx, cancel := a.withTimeout(cmd)
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var res workflows.ApplyResult
			if dryRun {
				res, err = planOnly(ctx, c, desired)
			} else {
				res, err = apply(ctx, c, taskQueue(), desired, uuid.NewString())
			}
			if err != nil {
				return err
			}
			if err := printPlan(a.printer(), d.Name, res, dryRun); err != nil {
				return err
			}
			if n := preflightFailures(res.Plan); n > 0 {
				return failure{fmt.Errorf("dry run: %d replicas would not be replaced (above): applying this file would pause its rollout there", n)}
			}
			if !dryRun {
				warnNodesWithoutWorker(ctx, a, c, desired)
				if wait {
					return waitApplied(ctx, a, c, desired.Name, res.Generation)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment file (YAML); - reads it from stdin")
	cmd.Flags().StringVar(&node, "node", host, "node whose vigil-worker runs the containers (env VIGIL_NODE)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and what the preflight on the nodes finds (exit 1 if anything), and change nothing")
	cmd.Flags().BoolVar(&wait, "wait", false, "return once the rollout is complete and every replica runs (fails if the rollout pauses or --timeout passes first)")
	return cmd
}

// parseDeployment reads the deployment file named by -f; "-" is stdin.
func (a *app) parseDeployment(file string) (*spec.Deployment, error) {
	var d *spec.Deployment
	var err error
	if file == "-" {
		d, err = spec.ParseReader("stdin", a.stdin)
	} else {
		d, err = spec.ParseFile(file)
	}
	if err != nil {
		return nil, usageError{err}
	}
	return d, nil
}

// warnNodesWithoutWorker warns, once per node, when no worker polls the
// queue of a node the deployment's replicas run on: they stay Pending.
func warnNodesWithoutWorker(ctx context.Context, a *app, c client.Client, desired workflows.DeploymentSpec) {
	workers := newNodeWorkers(c)
	warned := map[string]bool{}
	for _, s := range desired.Services {
		for _, node := range s.Config.Nodes() {
			if has, known := workers.has(ctx, node); known && !has && !warned[node] {
				warned[node] = true
				a.warn("%s", noWorkerText(node))
			}
		}
	}
}

// applyRetryPause is the pause before a transient failure is retried.
const applyRetryPause = time.Second

// apply sends the file to the deployment's workflow, starting it if needed
// (update-with-start). requestID is the update's ID: a retry after a lost
// answer joins the same apply instead of making a second one.
func apply(ctx context.Context, c client.Client, taskQueue string, desired workflows.DeploymentSpec, requestID string) (workflows.ApplyResult, error) {
	ref := "deployment " + desired.Name
	for {
		res, err := applyOnce(ctx, c, taskQueue, desired, requestID)
		if err == nil {
			return res, nil
		}
		var unavailable *serviceerror.Unavailable
		if !errors.As(err, &unavailable) || ctx.Err() != nil {
			return res, describeErr(ref, err)
		}
		select {
		case <-ctx.Done():
			return res, describeErr(ref, err)
		case <-time.After(applyRetryPause):
		}
	}
}

func applyOnce(ctx context.Context, c client.Client, taskQueue string, desired workflows.DeploymentSpec, requestID string) (workflows.ApplyResult, error) {
	var res workflows.ApplyResult
	// A deployment deleted before: its new workflow counts on from there.
	after, _ := deletedGeneration(ctx, c, desired.Name)
	start := c.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       replica.DeploymentWorkflowID(desired.Name),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, replica.DeploymentWorkflowName, workflows.DeploymentInput{Name: desired.Name, AfterGeneration: after})
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateID:     requestID,
			UpdateName:   replica.UpdateApply,
			Args:         []any{workflows.ApplyRequest{Spec: desired}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return res, err
	}
	err = h.Get(ctx, &res)
	return res, err
}

// planOnly is the dry run: the same plan, from what runs now, with no
// request sent that changes anything.
func planOnly(ctx context.Context, c client.Client, desired workflows.DeploymentSpec) (workflows.ApplyResult, error) {
	ref := "deployment " + desired.Name
	var known []string
	var gen int
	records, err := deploymentReplicas(ctx, c, desired.Name)
	switch {
	case errors.Is(err, errNoDeployment):
		gen, _ = deletedGeneration(ctx, c, desired.Name)
	case err != nil:
		return workflows.ApplyResult{}, err
	default:
		for _, r := range records {
			known = append(known, r.ID.Ref())
		}
		if st, err := rolloutStatus(ctx, c, desired.Name); err == nil {
			gen = st.Generation
		}
	}
	seen, err := control.Observe(ctx, c, workflows.ObserveInput{Deployment: desired.Name, Known: known})
	if err != nil {
		return workflows.ApplyResult{}, describeErr(ref, err)
	}
	current := make(map[string]workflows.ReplicaRecord, len(seen))
	for _, r := range seen {
		current[r.ID.Ref()] = r
	}
	steps := workflows.Plan(current, desired)
	items := workflows.Items(steps)
	if workflows.Changes(items) {
		gen++
	}
	preflight(ctx, c, steps, items)
	return workflows.ApplyResult{Generation: gen, Plan: items}, nil
}

// preflight runs, on each node, the preflight a rollout runs before it
// stops anything, for the replacements, and adds what it finds to their
// items. A node that cannot answer is a problem of its
// replicas (field node).
func preflight(ctx context.Context, c client.Client, steps []workflows.Step, items []workflows.PlanItem) {
	var nodes []string
	byNode := map[string][]int{}
	for i, s := range steps {
		if !s.Replaces() {
			continue
		}
		if _, ok := byNode[s.Config.Node]; !ok {
			nodes = append(nodes, s.Config.Node)
		}
		byNode[s.Config.Node] = append(byNode[s.Config.Node], i)
	}
	for _, node := range nodes {
		in := activities.PreflightInput{}
		at := map[string]int{}
		for _, i := range byNode[node] {
			in.Replicas = append(in.Replicas, activities.PreflightReplica{ID: steps[i].ID, Spec: steps[i].Config.Spec})
			at[steps[i].ID.Ref()] = i
		}
		res, err := control.NodePreflight(ctx, c, node, in)
		if err != nil {
			p := runtime.Problem{Field: "node", Reason: nodeProblem(node, err)}
			for _, i := range byNode[node] {
				items[i].Problems = append(items[i].Problems, p)
			}
			continue
		}
		for _, p := range res.Problems {
			i := at[p.ID.Ref()]
			items[i].Problems = append(items[i].Problems, p.Problem)
		}
	}
}

// nodeProblem says why node could not run a preflight.
func nodeProblem(node string, err error) string {
	var notFound *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	switch {
	case errors.As(err, &notFound):
		return noWorkerText(node)
	case errors.As(err, &appErr):
		return errtext.OneLine(appErr.Message())
	}
	return errtext.OneLine(err.Error())
}

// preflightFailures counts the plan's replicas with problems.
func preflightFailures(plan []workflows.PlanItem) int {
	n := 0
	for _, it := range plan {
		if len(it.Problems) > 0 {
			n++
		}
	}
	return n
}

// errNoDeployment: nothing was ever applied under this name.
var errNoDeployment = errors.New("no deployment workflow")

// errQueryRefused: the deployment's run did not answer the query; a run of
// a release older than the query knows no handler for it.
var errQueryRefused = errors.New("query refused")

// deploymentReplicas reads the deployment's records, compactly (configs
// once by digest: 10,000 full records exceed what a query may answer). A
// run older than v0.3.0 refuses that query: its full records then.
func deploymentReplicas(ctx context.Context, c client.Client, name string) ([]workflows.ReplicaRecord, error) {
	var compact workflows.CompactReplicas
	err := queryDeployment(ctx, c, name, replica.QueryReplicasCompact, &compact)
	if err == nil {
		return compact.Records(name), nil
	}
	if !errors.Is(err, errQueryRefused) {
		return nil, err
	}
	var out []workflows.ReplicaRecord
	err = queryDeployment(ctx, c, name, replica.QueryReplicas, &out)
	return out, err
}

// queryDeployment queries the deployment's workflow; errNoDeployment if
// there is none, or it has ended (deleted).
func queryDeployment(ctx context.Context, c client.Client, name, query string, out any) error {
	if _, closed := deletedGeneration(ctx, c, name); closed {
		// Its queries would answer for a deployment that is gone.
		return errNoDeployment
	}
	v, err := c.QueryWorkflow(ctx, replica.DeploymentWorkflowID(name), "", query)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return errNoDeployment
	}
	var refused *serviceerror.QueryFailed
	if errors.As(err, &refused) {
		return failure{fmt.Errorf("deployment %s: %w: %s", name, errQueryRefused, errtext.OneLine(refused.Message))}
	}
	if err != nil {
		return describeErr("deployment "+name, err)
	}
	if err := v.Get(out); err != nil {
		return failure{fmt.Errorf("deployment %s: cannot decode the %s query: %v", name, query, err)}
	}
	return nil
}

func printPlan(p printer, name string, res workflows.ApplyResult, dryRun bool) error {
	if p.json {
		if res.Plan == nil {
			res.Plan = []workflows.PlanItem{}
		}
		return p.JSON(res.Plan)
	}
	rows := make([][]string, 0, len(res.Plan))
	for _, it := range res.Plan {
		fields := strings.Join(it.Fields, ",")
		if fields == "" {
			fields = "-"
		}
		rows = append(rows, []string{it.ID, string(it.Action), fields})
	}
	if err := p.Table([]string{"ID", "ACTION", "FIELDS"}, rows); err != nil {
		return err
	}
	for _, it := range res.Plan {
		for _, pr := range it.Problems {
			if _, err := fmt.Fprintf(p.out, "%s would not be replaced: %s\n", it.ID, pr.Error()); err != nil {
				return err
			}
		}
	}
	switch {
	case dryRun:
		_, err := fmt.Fprintf(p.out, "dry run: nothing changed (applying would make generation %d)\n", res.Generation)
		return err
	case workflows.Changes(res.Plan):
		_, err := fmt.Fprintf(p.out, "deployment %s: generation %d rolling out; follow it with vigil rollout status %s\n", name, res.Generation, name)
		return err
	}
	_, err := fmt.Fprintf(p.out, "deployment %s: generation %d, nothing to change\n", name, res.Generation)
	return err
}

// desiredState is the parsed file as the deployment workflow's desired
// state: each service on its node, else on defaultNode; a service with
// placement on the nodes the plan chooses.
func desiredState(d *spec.Deployment, defaultNode string) workflows.DeploymentSpec {
	out := workflows.DeploymentSpec{Name: d.Name}
	for _, s := range d.Services {
		node := defaultNode
		switch {
		case len(s.Placement) > 0:
			node = ""
		case s.Node != "":
			node = s.Node
		}
		out.Services = append(out.Services, workflows.ServiceSpec{
			Name:     s.Name,
			Replicas: s.Replicas,
			Config: workflows.ReplicaConfig{Spec: spec.CloneSpec(s.Spec), Policy: s.Policy,
				IsolateWebhook: s.IsolateWebhook, StopGrace: s.StopGrace, Node: node,
				Placement: slices.Clone(s.Placement), LostAfter: s.LostAfter},
			Update: workflows.UpdateSettings{MaxUnavailable: s.Update.MaxUnavailable, MinReady: s.Update.MinReady}.WithDefaults(),
		})
	}
	return out
}
