package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// UpdateResult is what release, restart and unsupervise print.
type UpdateResult struct {
	ID     string `json:"id"`
	Update string `json:"update"`
	Result string `json:"result"`
	// RequestID is the request's ID (also its Temporal update ID).
	RequestID string `json:"request_id"`
	// Note says what was done and what was not, e.g. a container that
	// unsupervise --stop could not stop.
	Note string `json:"note,omitempty"`
}

func releaseRequest(id string) any { return workflows.ReleaseRequest{RequestID: id} }

// request is an operator request about to be sent: its update and an
// argument carrying the request's ID.
type request struct {
	name string
	arg  func(requestID string) any
}

// sendUpdate runs one of the supervisor's updates and waits until the
// workflow has carried it out.
func sendUpdate(cmd *cobra.Command, a *app, ref string, req request) error {
	return a.onReplica(cmd, ref, func(ctx context.Context, c client.Client, id replica.ID) error {
		res, err := runUpdate(ctx, c, id, req)
		if err != nil {
			return err
		}
		p := a.printer()
		if p.json {
			return p.JSON(res)
		}
		_, err = fmt.Fprintln(p.out, res.line())
		return err
	})
}

// runUpdate runs one of the supervisor's updates to completion. The
// request's ID is a fresh UUID and the update's ID: the SDK's own retries of
// the call are the same request, and the workflow treats a repetition of a
// request in flight as that request.
func runUpdate(ctx context.Context, c client.Client, id replica.ID, req request) (UpdateResult, error) {
	requestID := uuid.NewString()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		UpdateID:     requestID,
		WorkflowID:   id.WorkflowID(),
		UpdateName:   req.name,
		Args:         []any{req.arg(requestID)},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return UpdateResult{}, updateErr(ctx, c, id, req.name, requestID, err)
	}
	var out workflows.UpdateResult
	// No result is a success too (workflows/versions.go says which runs).
	if err := h.Get(ctx, &out); err != nil && !errors.Is(err, temporal.ErrNoData) {
		return UpdateResult{}, updateErr(ctx, c, id, req.name, requestID, err)
	}
	return UpdateResult{ID: id.Ref(), Update: req.name, Result: "done", RequestID: requestID, Note: out.Note}, nil
}

// line is the result as `vigil` prints it without --json.
func (r UpdateResult) line() string {
	line := fmt.Sprintf("%s: %s done", r.ID, r.Update)
	if r.Note != "" {
		line += " (" + r.Note + ")"
	}
	return line
}

// updateErr explains a failed request. A replica whose supervision has ended
// is not an unknown ID (status still shows it); a request that timed out
// still goes on in the workflow.
func updateErr(ctx context.Context, c client.Client, id replica.ID, name, requestID string, err error) error {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		if resp, derr := c.DescribeWorkflowExecution(ctx, id.WorkflowID(), ""); derr == nil &&
			resp.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return failure{fmt.Errorf("%s: not supervised any more (supervision ended %s); vigil supervise -f FILE supervises it again (a container left running is adopted), then %s works",
				id.Ref(), closeTime(resp.GetWorkflowExecutionInfo()), name)}
		}
	}
	var deadline *serviceerror.DeadlineExceeded
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &deadline) {
		return failure{fmt.Errorf("%s: %s request %s is not finished after --timeout; it goes on: run the same command again to wait for it, and see vigil status %s",
			id.Ref(), name, requestID, id.Ref())}
	}
	return describeErr(id.Ref(), err)
}

func closeTime(info *workflowpb.WorkflowExecutionInfo) string {
	if t := info.GetCloseTime(); t != nil {
		return t.AsTime().Local().Format(timeLayout)
	}
	return "earlier"
}

// updateCommand is release, restart or rollover: an update without options.
func updateCommand(a *app, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dep, svc, ok := serviceRef(args[0]); ok && name == replica.UpdateRelease {
				return releaseService(cmd, a, dep, svc)
			}
			req := request{name: name, arg: releaseRequest}
			switch name {
			case replica.UpdateRestart:
				req.arg = func(id string) any { return workflows.RestartRequest{Reason: "vigil restart", RequestID: id} }
			case replica.UpdateRollover:
				req.arg = func(id string) any { return workflows.RolloverRequest{RequestID: id} }
			}
			return sendUpdate(cmd, a, args[0], req)
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
		res, err := runUpdate(ctx, c, r.id, request{name: replica.UpdateRelease, arg: releaseRequest})
		if err != nil {
			return err
		}
		released = append(released, res)
	}
	if len(released) == 0 {
		return failure{fmt.Errorf("%s: no replica of this service is Shutdown or Isolated; see vigil list --deployment %s --service %s", ref, deployment, service)}
	}
	p := a.printer()
	if p.json {
		return p.JSON(released)
	}
	for _, r := range released {
		if _, err := fmt.Fprintln(p.out, r.line()); err != nil {
			return err
		}
	}
	return nil
}

func unsuperviseCommand(a *app) *cobra.Command {
	var stop, volumes bool
	cmd := &cobra.Command{
		Use:   "unsupervise ID [--stop [--volumes]]",
		Short: "End a replica's supervision, leaving its container as it is unless --stop",
		Long: "Ends a replica's supervision. The container is left as it is unless --stop, which stops\n" +
			"and removes it (releasing its address and ports; its log is kept). Its named volumes are\n" +
			"kept (a later supervise finds its data) unless --stop --volumes deletes them too.",
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if volumes && !stop {
				return usagef("--volumes: deleting a replica's volumes needs --stop too; write unsupervise ID --stop --volumes")
			}
			return sendUpdate(cmd, a, args[0], request{name: replica.UpdateUnsupervise, arg: func(id string) any {
				return workflows.UnsuperviseRequest{Stop: stop, Volumes: volumes, RequestID: id}
			}})
		},
	}
	cmd.Flags().BoolVar(&stop, "stop", false, "also stop and remove the container (its log is kept)")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "with --stop: also delete the replica's named volumes")
	return cmd
}

// logsFlags are vigil logs's flags.
type logsFlags struct {
	tail                         int
	since                        string
	timestamps, previous, follow bool
	tokenFile, address           string
}

// logsEnv maps vigil logs's flags to their environment fallbacks.
var logsEnv = map[string]string{"logs-token-file": "VIGIL_LOGS_TOKEN_FILE", "logs-address": "VIGIL_LOGS_ADDRESS"}

// DefaultLogsTokenFile is where a worker with the default --state-dir keeps its logs token.
const DefaultLogsTokenFile = "/var/lib/vigil/logs-token"

func logsCommand(a *app, taskQueue func() string, lookup func(string) (string, bool)) *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs ID [--tail N] [--since DURATION|TIME] [--timestamps] [--previous] [--follow]",
		Short: "Print a replica's captured stdout and stderr",
		Long: "Prints a replica's output, read from its node's worker over HTTPS (never through Temporal):\n" +
			"each run starts with a marker line. The node's token file is needed (--logs-token-file).\n" +
			"--json prints one object per line: time, stream (stdout, stderr, or vigil for a marker), run, line.",
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := config.ApplyEnv(cmd.Flags(), logsEnv, lookup); err != nil {
				return usageError{err}
			}
			q, err := f.query(time.Now())
			if err != nil {
				return err
			}
			return a.onReplica(cmd, args[0], func(ctx context.Context, c client.Client, id replica.ID) error {
				// The logs live on the replica's node; ask its supervisor where that is.
				v, err := c.QueryWorkflow(ctx, id.WorkflowID(), "", replica.QueryConfig)
				if err != nil {
					return describeErr(id.Ref(), err)
				}
				var in workflows.SupervisionInput
				if err := v.Get(&in); err != nil {
					return failure{fmt.Errorf("%s: cannot decode the configuration: %v", id.Ref(), err)}
				}
				p := a.printer()
				print := func(r ctrlog.Record) error { return printRecord(p, r, f.timestamps) }
				view, err := control.NodeView(ctx, c, in.Node)
				var notFound *serviceerror.NotFound
				switch {
				case err == nil && view.LastClaim != nil && view.LastClaim.Logs != nil:
					// A follow finds the node's endpoint again after its worker restarts.
					endpoint := func(ctx context.Context) (*workflows.LogsEndpoint, error) {
						view, err := control.NodeView(ctx, c, in.Node)
						if err != nil || view.LastClaim == nil || view.LastClaim.Logs == nil {
							return nil, fmt.Errorf("node %s advertises no logs endpoint now (%v)", in.Node, err)
						}
						return view.LastClaim.Logs, nil
					}
					return f.fromEndpoint(cmd.Context(), ctx, id, in.Node, *view.LastClaim.Logs, endpoint, q, print, a.warn)
				case err == nil && view.Release >= workflows.V030:
					return failure{fmt.Errorf("%s: node %s advertises no logs endpoint: its worker predates v0.3.0 or runs --no-activities; upgrade it, then try again", id.Ref(), in.Node)}
				case err != nil && !errors.As(err, &notFound):
					return describeErr(id.Ref(), err)
				}
				// A node whose worker predates v0.3.0: through its workflow.
				if f.since != "" || f.previous || f.follow {
					return failure{fmt.Errorf("%s: node %s's worker predates v0.3.0: it serves only --tail; upgrade it for --since, --previous and --follow", id.Ref(), in.Node)}
				}
				out, err := nodeLogs(ctx, c, in.Node, workflows.LogsRequest{ID: id, Tail: f.tail, RequestID: uuid.NewString()})
				if errors.As(err, &notFound) {
					// No node workflow: a worker of an older release serves the node.
					out, err = fetchLogs(ctx, c, taskQueue(), a.timeout, workflows.FetchLogsInput{ID: id, Node: in.Node, Tail: f.tail})
				}
				if err != nil {
					return describeErr(id.Ref(), err)
				}
				for _, line := range strings.SplitAfter(out, "\n") {
					if line != "" {
						if err := print(ctrlog.Record{Stream: ctrlog.StreamOutput, Line: strings.TrimSuffix(line, "\n"), Partial: !strings.HasSuffix(line, "\n")}); err != nil {
							return err
						}
					}
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.tail, "tail", 100, "number of last lines to print (0 for all)")
	fl.StringVar(&f.since, "since", "", "only lines written since this long ago (e.g. 10m) or this time (RFC 3339)")
	fl.BoolVar(&f.timestamps, "timestamps", false, "print each line's time first")
	fl.BoolVar(&f.previous, "previous", false, "print the run before the current one")
	fl.BoolVarP(&f.follow, "follow", "f", false, "go on printing new lines, across restarts, until interrupted")
	fl.StringVar(&f.tokenFile, "logs-token-file", DefaultLogsTokenFile, "the node's logs token (the worker's <state-dir>/logs-token or its --logs-token-file) (env VIGIL_LOGS_TOKEN_FILE)")
	fl.StringVar(&f.address, "logs-address", "", "reach the node's logs at this host:port instead of the address it advertises, e.g. an SSH tunnel's (env VIGIL_LOGS_ADDRESS)")
	return cmd
}

// query checks the flags and says what to read.
func (f logsFlags) query(now time.Time) (ctrlog.Query, error) {
	q := ctrlog.Query{Tail: f.tail, Previous: f.previous}
	if f.tail < 0 {
		return q, usagef("--tail: %d is negative; use 0 for everything or a number of lines", f.tail)
	}
	if f.previous && f.follow {
		return q, usagef("--previous --follow: the run before the current one has ended; drop one of them")
	}
	if f.since != "" {
		if d, err := time.ParseDuration(f.since); err == nil && d >= 0 {
			q.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, f.since); err == nil {
			q.Since = t
		} else {
			return q, usagef("--since %q: want a duration such as 10m or a time such as 2026-01-02T15:04:05Z", f.since)
		}
	}
	return q, nil
}

// fromEndpoint reads the replica's log from its node's endpoint; a read is
// bounded by ctx. A follow goes on under base (interrupted only by a
// signal), across restarts of the node's worker: it finds the endpoint
// again and goes on after the last line it printed.
func (f logsFlags) fromEndpoint(base, ctx context.Context, id replica.ID, node string, ep workflows.LogsEndpoint,
	endpoint func(context.Context) (*workflows.LogsEndpoint, error), q ctrlog.Query, print func(ctrlog.Record) error, warn func(string, ...any)) error {
	token, err := ctrlog.ReadToken(f.tokenFile)
	if err != nil {
		return failure{fmt.Errorf("%s: the logs token: %v; give node %s's token file with --logs-token-file (env VIGIL_LOGS_TOKEN_FILE)", id.Ref(), err, node)}
	}
	cl := ctrlog.Client{Address: ep.Address, CertSHA256: ep.CertSHA256, Token: token}
	if f.address != "" {
		cl.Address = f.address
	}
	fail := func(err error) error {
		if errors.Is(err, ctrlog.ErrNotFound) {
			return failure{fmt.Errorf("%s: node %s keeps no output of it (never started there?)", id.Ref(), node)}
		}
		return failure{fmt.Errorf("%s: node %s: %v; is its worker running?", id.Ref(), node, err)}
	}
	if !f.follow {
		if err := cl.Fetch(ctx, id.Ref(), q, false, print); err != nil {
			return fail(err)
		}
		return nil
	}
	var last time.Time
	shown := func(r ctrlog.Record) error {
		if !r.Time.IsZero() {
			last = r.Time
		}
		return print(r)
	}
	for first := true; ; first = false {
		err := cl.Fetch(base, id.Ref(), q, true, shown)
		if base.Err() != nil {
			return nil // interrupted
		}
		// Once the stream ran, a broken one or an endpoint not back yet is
		// the worker restarting; a refusal is final.
		if !errors.Is(err, ctrlog.ErrEnded) && (first || errors.Is(err, ctrlog.ErrNotFound) || errors.Is(err, ctrlog.ErrRefused)) {
			return fail(err)
		}
		warn("%s: node %s's logs endpoint went away (%v); following again once its worker is back", id.Ref(), node, err)
		for {
			select {
			case <-base.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
			qctx, cancel := context.WithTimeout(base, 10*time.Second)
			ep, err := endpoint(qctx)
			cancel()
			if err == nil {
				cl.CertSHA256 = ep.CertSHA256
				if f.address == "" {
					cl.Address = ep.Address
				}
				break
			}
		}
		if !last.IsZero() {
			q = ctrlog.Query{Since: last.Add(time.Nanosecond)} // after the last line shown
		}
	}
}

// printRecord prints one line of a replica's log: with --json one object
// per line (time, stream, run, line), else as written.
func printRecord(p printer, r ctrlog.Record, timestamps bool) error {
	if p.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = p.out.Write(append(b, '\n'))
		return err
	}
	_, err := p.out.Write(ctrlog.AppendText(nil, r, timestamps))
	return err
}

// nodeLogs asks the node's workflow for the replica's output (an update that
// runs the Logs activity on the node): no workflow is made per call.
func nodeLogs(ctx context.Context, c client.Client, node string, req workflows.LogsRequest) (string, error) {
	var out string
	err := control.NodeUpdate(ctx, c, node, replica.UpdateLogs, req.RequestID, req, &out)
	return out, err
}

// fetchLogs reads logs through a FetchLogs workflow per call, for a node
// with no node workflow to answer the logs update.
func fetchLogs(ctx context.Context, c client.Client, taskQueue string, timeout time.Duration, in workflows.FetchLogsInput) (string, error) {
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       fmt.Sprintf("vigil-logs/%s/%d", in.ID.Ref(), time.Now().UnixNano()),
		TaskQueue:                taskQueue,
		WorkflowExecutionTimeout: timeout,
	}, replica.FetchLogsWorkflowName, in)
	if err != nil {
		return "", err
	}
	var out string
	err = run.Get(ctx, &out)
	return out, err
}
