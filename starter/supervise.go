package main

import (
	"context"
	"errors"
	"os"
	"reflect"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/spec"
	"github.com/vigil-run/vigil/workflows"
)

// Results of supervise for one replica.
const (
	resultStarted           = "started"
	resultAlreadySupervised = "already supervised"
)

// SuperviseResult is one line of `vigil supervise`.
type SuperviseResult struct {
	ID         string `json:"id"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	Result     string `json:"result"`
	// Differs is set when an already supervised replica runs with another
	// configuration than the file's; supervise leaves it as it is.
	Differs bool `json:"differs,omitempty"`
}

func superviseCommand(a *app, taskQueue func() string, lookup func(string) (string, bool)) *cobra.Command {
	var file, node string
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "supervise -f FILE",
		Short: "Start supervising every replica of a deployment file (idempotent)",
		Long: "Starts one supervisor workflow per replica of every service in the file. Replicas\n" +
			"already supervised are left exactly as they are, even if the file changed; to apply\n" +
			"a change, unsupervise the replica and supervise again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("supervise: -f FILE is required; e.g. vigil supervise -f examples/demo.yaml")
			}
			if node == "" {
				return usagef("--node: empty; give the name of the node whose vigil-worker runs the containers")
			}
			// Parse before connecting: a bad file never reaches the server.
			d, err := spec.ParseFile(file)
			if err != nil {
				return usageError{err}
			}
			ctx, cancel := a.withTimeout(cmd)
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			results, err := supervise(ctx, c, taskQueue(), supervisionInputs(d.Inputs(node)))
			if perr := printSupervise(a.printer(), results); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment file (YAML)")
	cmd.Flags().StringVar(&node, "node", host, "node whose vigil-worker runs the containers (env VIGIL_NODE)")
	if v, ok := lookup("VIGIL_NODE"); ok && v != "" {
		node = v
	}
	return cmd
}

// supervisionInputs are the workflow's inputs for the file's replicas.
func supervisionInputs(replicas []spec.Input) []workflows.SupervisionInput {
	out := make([]workflows.SupervisionInput, len(replicas))
	for i, r := range replicas {
		out[i] = workflows.SupervisionInput{ID: r.ID, Spec: r.Spec, Policy: r.Policy, Node: r.Node,
			IsolateWebhook: r.IsolateWebhook, StopGrace: r.StopGrace}
	}
	return out
}

// supervise starts a supervisor workflow for each input unless one is
// already running. It stops at the first failure and returns what it did so
// far, so the operator sees which replicas are covered.
func supervise(ctx context.Context, c client.Client, taskQueue string, inputs []workflows.SupervisionInput) ([]SuperviseResult, error) {
	var out []SuperviseResult
	// The configuration check needs a worker to answer; after one
	// unanswered query, skip it for the rest rather than wait each time.
	check := true
	for _, in := range inputs {
		r, err := superviseOne(ctx, c, taskQueue, in, &check)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func superviseOne(ctx context.Context, c client.Client, taskQueue string, in workflows.SupervisionInput, checkConfig *bool) (SuperviseResult, error) {
	ref, wid := in.ID.Ref(), in.ID.WorkflowID()
	before, err := runningExecution(ctx, c, wid, "")
	if err != nil {
		return SuperviseResult{}, describeErr(ref, err)
	}
	opts := client.StartWorkflowOptions{
		ID:        wid,
		TaskQueue: taskQueue,
		// A running supervisor is never touched; a closed one (completed or
		// unsupervised) may be started afresh.
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.SearchAttrState.ValueSet(string(workflows.StateRunning)),
			workflows.SearchAttrService.ValueSet(in.ID.Service),
			workflows.SearchAttrDeployment.ValueSet(in.ID.Deployment),
		),
	}
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.SupervisorWorkflowName, in)
	if err != nil {
		return SuperviseResult{}, describeErr(ref, err)
	}
	res := SuperviseResult{ID: ref, WorkflowID: wid, RunID: run.GetRunID(), Result: resultStarted}
	if before != nil && sameSupervision(ctx, c, wid, before, run.GetRunID()) {
		res.Result = resultAlreadySupervised
		if *checkConfig {
			var answered bool
			res.Differs, answered = configDiffers(ctx, c, wid, in)
			*checkConfig = answered
		}
	}
	return res, nil
}

// configDiffQueryTimeout bounds the config query; without a worker to
// answer, supervise must not hang on a courtesy check.
const configDiffQueryTimeout = 3 * time.Second

// configDiffers reports whether the running supervisor was started with
// another configuration than in, and whether the workflow answered at all.
// Not knowing counts as "no difference".
func configDiffers(ctx context.Context, c client.Client, wid string, in workflows.SupervisionInput) (differs, answered bool) {
	qctx, cancel := context.WithTimeout(ctx, configDiffQueryTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, wid, "", workflows.QueryConfig)
	if err != nil {
		return false, false
	}
	var running workflows.SupervisionInput
	if err := v.Get(&running); err != nil {
		return false, true
	}
	// The workflow fills in defaults; compare what the file decides.
	differs = !reflect.DeepEqual(running.Spec, in.Spec) ||
		!reflect.DeepEqual(running.Policy, in.Policy.WithDefaults()) ||
		running.Node != in.Node ||
		running.IsolateWebhook != in.IsolateWebhook ||
		(in.StopGrace != 0 && running.StopGrace != in.StopGrace)
	return differs, true
}

// runningExecution describes the workflow's run and returns it if it is
// running, nil if it is closed or has never existed.
func runningExecution(ctx context.Context, c client.Client, wid, runID string) (*executionInfo, error) {
	resp, err := c.DescribeWorkflowExecution(ctx, wid, runID)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info := resp.GetWorkflowExecutionInfo()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, nil
	}
	return &executionInfo{runID: info.GetExecution().GetRunId(), firstRunID: info.GetFirstRunId()}, nil
}

type executionInfo struct{ runID, firstRunID string }

// sameSupervision reports whether runID continues the supervision that was
// running before: the same run, or a later run of the same chain (the
// supervisor continues-as-new, which changes the run ID).
func sameSupervision(ctx context.Context, c client.Client, wid string, before *executionInfo, runID string) bool {
	if runID == before.runID {
		return true
	}
	resp, err := c.DescribeWorkflowExecution(ctx, wid, runID)
	if err != nil {
		return false
	}
	first := resp.GetWorkflowExecutionInfo().GetFirstRunId()
	return first != "" && first == before.firstRunID
}

func printSupervise(p printer, results []SuperviseResult) error {
	if p.json {
		if results == nil {
			results = []SuperviseResult{}
		}
		return p.JSON(results)
	}
	rows := make([][]string, 0, len(results))
	for _, r := range results {
		result := r.Result
		if r.Differs {
			result += " (runs with another configuration than the file; unsupervise and supervise again to apply it)"
		}
		rows = append(rows, []string{r.ID, r.WorkflowID, result})
	}
	if len(rows) == 0 {
		return nil
	}
	return p.Table([]string{"ID", "WORKFLOW ID", "RESULT"}, rows)
}
