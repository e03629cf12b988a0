package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// parseRef parses a command's ID argument; a malformed ID is a usage error.
func parseRef(arg string) (replica.ID, error) {
	id, err := replica.ParseRef(arg)
	if err != nil {
		return id, usageError{err}
	}
	return id, nil
}

// queryState asks the replica's supervisor for its state.
func queryState(ctx context.Context, c client.Client, id replica.ID) (workflows.StateView, error) {
	var view workflows.StateView
	v, err := c.QueryWorkflow(ctx, id.WorkflowID(), "", replica.QueryState)
	if err != nil {
		return view, describeErr(id.Ref(), err)
	}
	if err := v.Get(&view); err != nil {
		return view, failure{fmt.Errorf("%s: cannot decode the state: %v", id.Ref(), err)}
	}
	return view, nil
}

func statusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "Show a replica's supervision state",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onReplica(cmd, args[0], func(ctx context.Context, c client.Client, id replica.ID) error {
				view, err := queryState(ctx, c, id)
				if err != nil {
					return err
				}
				sup := describeStatus(ctx, c, id)
				if view.Node != "" && !sup.ended {
					has, known := newNodeWorkers(c).has(ctx, view.Node)
					sup.noWorker = known && !has
				}
				p := a.printer()
				if p.json {
					return p.JSON(statusJSON{StateView: view, SupervisionEnded: sup.ended, StartError: optional(sup.startErr), Pull: sup.pull})
				}
				return printStatus(p, view, sup)
			})
		},
	}
}

// statusJSON is what `vigil status --json` prints: the state query's
// answer, every key of it, and what the CLI learns around it.
type statusJSON struct {
	workflows.StateView
	SupervisionEnded bool    `json:"supervision_ended"`
	StartError       *string `json:"start_error"`
	// Pull is the pull a start of the replica makes now, if one does.
	Pull *pullJSON `json:"pull,omitempty"`
}

type pullJSON struct {
	Image         string `json:"image"`
	BytesReceived int64  `json:"bytes_received"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// supervision is what the state query does not say: whether supervision
// still runs, why a start keeps failing (from the workflow's memo), and
// whether the replica's node has a worker at all.
type supervision struct {
	ended    bool
	startErr string
	noWorker bool
	pull     *pullJSON
}

// describeStatus reads it best effort: the state query has already answered.
func describeStatus(ctx context.Context, c client.Client, id replica.ID) supervision {
	resp, err := c.DescribeWorkflowExecution(ctx, id.WorkflowID(), "")
	if err != nil {
		return supervision{}
	}
	info := resp.GetWorkflowExecutionInfo()
	sup := supervision{ended: info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}
	var msg string
	if field := info.GetMemo().GetFields()[replica.MemoStartError]; field != nil &&
		decodeMemo(c, field, &msg) == nil {
		sup.startErr = shortStartError(msg)
	}
	sup.pull = pullInProgress(dataConverter(c), resp)
	return sup
}

// pullInProgress is the pull of a pending start, from its last heartbeat
// (activities.StartProgress); nil when none pulls.
func pullInProgress(dc converter.DataConverter, resp *workflowservice.DescribeWorkflowExecutionResponse) *pullJSON {
	for _, a := range resp.GetPendingActivities() {
		if a.GetActivityType().GetName() != replica.EnsureRunningName || a.GetHeartbeatDetails() == nil {
			continue
		}
		var progress activities.StartProgress
		// A worker of an earlier release heartbeats a plain text: no pull shown.
		if dc.FromPayloads(a.GetHeartbeatDetails(), &progress) != nil ||
			progress.PullImage == "" {
			continue
		}
		return &pullJSON{Image: progress.PullImage, BytesReceived: progress.PullBytes}
	}
	return nil
}

// maxStartError keeps START ERROR to about one terminal line.
const maxStartError = 200

var (
	activityErrPrefix = regexp.MustCompile(`^activity error \([^)]*\): `)
	errTypeSuffix     = regexp.MustCompile(` \(type: [A-Za-z]+, retryable: (true|false)\)(: .*)?$`)
)

// shortStartError reduces a failed start's error, as the workflow recorded
// it, to its cause: without the SDK's activity wrapper, and without the
// cause's own repetition after the error type.
func shortStartError(msg string) string {
	msg = errtext.OneLine(msg)
	msg = activityErrPrefix.ReplaceAllString(msg, "")
	msg = errTypeSuffix.ReplaceAllString(msg, "")
	if r := []rune(msg); len(r) > maxStartError {
		msg = string(r[:maxStartError-1]) + "…"
	}
	return msg
}

// printStatus prints the state as a table, with what describeStatus found.
func printStatus(p printer, v workflows.StateView, sup supervision) error {
	next := "-"
	if v.NextRestartAt != nil {
		next = shortTime(*v.NextRestartAt)
	}
	last := "-"
	if n := len(v.Events); n > 0 {
		e := v.Events[n-1]
		last = fmt.Sprintf("%s at %s", e.Type, shortTime(e.Time.Format(time.RFC3339Nano)))
	}
	now := ""
	if sup.noWorker {
		now = "no vigil-worker polls its queue"
	}
	node := nodeText(v, now, "; start one with --node "+v.Node)
	rows := [][2]string{
		{"ID", v.ID},
		{"NODE", node},
		{"STATE", string(v.State)},
		{"PANIC ACTION", v.PanicAction},
		{"RESTARTS", strconv.Itoa(v.TotalRestarts)},
		{"CRASHES IN WINDOW", strconv.Itoa(len(v.RestartTimes))},
		{"LAST EXIT", lastExitText(v)},
		{"SUPERVISED SINCE", shortTime(v.SupervisedSince)},
		{"NEXT RESTART", next},
		{"LAST EVENT", last},
	}
	if v.LastRule != nil {
		rows = append(rows, [2]string{"LAST RULE", fmt.Sprintf("rules[%d] %s", v.LastRule.Index, v.LastRule.Text)})
	}
	if v.ShutdownBy != nil {
		rows = append(rows, [2]string{"SHUTDOWN BY", *v.ShutdownBy})
	}
	if v.Health != nil {
		rows = append(rows, [2]string{"HEALTH", *v.Health})
	}
	if v.HealthDetail != nil {
		rows = append(rows, [2]string{"HEALTH DETAIL", *v.HealthDetail})
	}
	if v.IP != "" {
		rows = append(rows, [2]string{"IP", v.IP})
	}
	if len(v.Ports) > 0 {
		rows = append(rows, [2]string{"PORTS", portsText(v.Ports)})
	}
	if sup.pull != nil {
		rows = append(rows, [2]string{"PULLING", fmt.Sprintf("%s: %s received", sup.pull.Image, units.HumanSize(float64(sup.pull.BytesReceived)))})
	}
	if sup.startErr != "" {
		rows = append(rows, [2]string{"START ERROR", sup.startErr})
	}
	if sup.ended && v.State != workflows.StateCompleted {
		rows = append(rows, [2]string{"SUPERVISION", "ended (unsupervised); vigil supervise starts it again"})
	}
	return p.Fields(rows)
}

// nodeText is the NODE column: the node, and what the replica last saw of
// its worker (a node activity no worker took: "no worker since ...") or,
// failing that, what the CLI sees now (now: e.g. "no worker"; "" if it has
// one); hint follows either.
func nodeText(v workflows.StateView, now, hint string) string {
	node := orDash(v.Node)
	switch {
	case v.NodeState != nil && *v.NodeState == string(workflows.NodeNoWorker) && v.NodeSince != nil:
		return node + " (no worker since " + shortTime(*v.NodeSince) + hint + ")"
	case v.NodeState != nil && *v.NodeState == string(workflows.NodeLost) && v.NodeSince != nil:
		return node + " (lost since " + shortTime(*v.NodeSince) + ")"
	case now != "":
		return node + " (" + now + hint + ")"
	}
	return node
}

// portsText is the published ports as Docker prints them:
// "127.0.0.1:18080->8080/tcp, 0.0.0.0:18053->53/udp".
func portsText(ports []runtime.PortMapping) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		parts = append(parts, fmt.Sprintf("%s:%d->%d/%s", ip, p.Host, p.Container, p.Protocol))
	}
	return strings.Join(parts, ", ")
}

func eventsCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "events ID",
		Short: "Show a replica's supervision events, oldest first",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onReplica(cmd, args[0], func(ctx context.Context, c client.Client, id replica.ID) error {
				view, err := queryState(ctx, c, id)
				if err != nil {
					return err
				}
				events := append([]workflows.Event{}, view.Events...)
				sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
				p := a.printer()
				if p.json {
					return p.JSON(events)
				}
				rows := make([][]string, 0, len(events))
				for _, e := range events {
					reason := "-"
					if e.Reason != nil {
						reason = *e.Reason
					}
					rows = append(rows, []string{e.Time.Local().Format(timeLayoutMillis), string(e.Type), exitText(e.ExitCode), reason, strconv.Itoa(e.RestartCount)})
				}
				return p.Table([]string{"TIME", "EVENT", "EXIT", "REASON", "RESTARTS"}, rows)
			})
		},
	}
}

// listFilter narrows `vigil list`.
type listFilter struct {
	deployment, service, state string
}

// validate keeps filter values to names and states, which also keeps them
// from changing the meaning of the visibility query they are quoted into.
// It returns the filter with the state spelled as Vigil publishes it.
func (f listFilter) validate() (listFilter, error) {
	if f.deployment != "" && !replica.ValidName(f.deployment) {
		return f, usagef("--deployment: %q is not a valid deployment name", f.deployment)
	}
	if f.service != "" && !replica.ValidName(f.service) {
		return f, usagef("--service: %q is not a valid service name", f.service)
	}
	if f.state != "" {
		st, ok := workflows.ParseState(f.state)
		if !ok {
			return f, usagef("--state: %q is not one of %s", f.state, workflows.StateNames())
		}
		f.state = string(st)
	}
	return f, nil
}

// query is the visibility query of the replicas the filter lets through.
func (f listFilter) query() string {
	return workflows.ReplicasQuery(f.deployment, f.service, f.state)
}

// listedReplica is one supervisor found by the visibility query.
type listedReplica struct {
	id      replica.ID
	runID   string
	state   workflows.State
	running bool
	started time.Time
}

// listReplicas pages through the visibility query and keeps one entry per
// replica: the running supervisor if there is one, else the latest.
func listReplicas(ctx context.Context, c client.Client, namespace string, f listFilter) ([]listedReplica, error) {
	byID := map[string]listedReplica{}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, Query: f.query(), NextPageToken: token,
		})
		if err != nil {
			return nil, describeErr("list", err)
		}
		for _, e := range resp.GetExecutions() {
			id, err := replica.ParseRef(e.GetExecution().GetWorkflowId())
			if err != nil {
				continue // not one of ours
			}
			r := listedReplica{
				id:      id,
				runID:   e.GetExecution().GetRunId(),
				running: e.GetCloseTime() == nil,
				started: e.GetStartTime().AsTime(),
				state:   workflows.State(control.Keyword(e.GetSearchAttributes().GetIndexedFields()[replica.SearchAttrState])),
			}
			key := id.WorkflowID()
			if prev, ok := byID[key]; !ok || (r.running && !prev.running) || (r.running == prev.running && r.started.After(prev.started)) {
				byID[key] = r
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	out := make([]listedReplica, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	if f.state == string(workflows.StateUnsupervised) {
		out = latestRuns(ctx, c, out)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].id, out[j].id
		if a.Deployment != b.Deployment {
			return a.Deployment < b.Deployment
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Replica < b.Replica
	})
	return out, nil
}

// latestRuns keeps the replicas whose listed run is their latest: an
// unsupervised run of a replica supervised again since is history, not the
// replica's state. (A replica the server cannot describe is kept.)
func latestRuns(ctx context.Context, c client.Client, replicas []listedReplica) []listedReplica {
	keep := make([]bool, len(replicas))
	parallel(len(replicas), func(i int) {
		resp, err := c.DescribeWorkflowExecution(ctx, replicas[i].id.WorkflowID(), "")
		keep[i] = err != nil || resp.GetWorkflowExecutionInfo().GetExecution().GetRunId() == replicas[i].runID
	})
	out := replicas[:0]
	for i, r := range replicas {
		if keep[i] {
			out = append(out, r)
		}
	}
	return out
}

// listQueryConcurrency bounds the state queries `vigil list` sends at once.
const listQueryConcurrency = 8

// listViews queries each replica's state. A replica whose query fails
// (e.g. no worker to answer) is shown with its last published state only;
// the count of those is returned so the caller can say so.
func listViews(ctx context.Context, c client.Client, replicas []listedReplica) ([]workflows.StateView, int) {
	views := make([]workflows.StateView, len(replicas))
	failed := make([]bool, len(replicas))
	parallel(len(replicas), func(i int) {
		r := replicas[i]
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := queryState(qctx, c, r.id)
		if err != nil {
			failed[i] = true
			v = workflows.StateView{
				ID: r.id.Ref(), Deployment: r.id.Deployment, Service: r.id.Service, Replica: r.id.Replica,
				State: r.state, RestartTimes: []string{}, Events: []workflows.Event{},
			}
		}
		views[i] = v
	})
	n := 0
	for _, f := range failed {
		if f {
			n++
		}
	}
	return views, n
}

// parallel runs fn(0..n-1), listQueryConcurrency at a time, and waits.
func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, listQueryConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

func listCommand(a *app) *cobra.Command {
	var f listFilter
	var counts bool
	cmd := &cobra.Command{
		Use:   "list [--deployment D] [--service S] [--state STATE] [--counts]",
		Short: "List supervised replicas with state, restarts and last exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := f.validate()
			if err != nil {
				return err
			}
			ctx, cancel := a.withTimeout(cmd)
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			if counts && f.state != string(workflows.StateUnsupervised) {
				n, total, err := countReplicas(ctx, c, a.conn.Namespace, f)
				if err != nil {
					return err
				}
				return printCounts(a.printer(), n, total)
			}
			replicas, err := listReplicas(ctx, c, a.conn.Namespace, f)
			if err != nil {
				return err
			}
			if counts {
				n := make(map[workflows.State]int, len(workflows.AllStates))
				for _, r := range replicas {
					n[r.state]++
				}
				return printCounts(a.printer(), n, len(replicas))
			}
			views, unanswered := listViews(ctx, c, replicas)
			if unanswered > 0 {
				fmt.Fprintf(a.stderr, "vigil: %d of %d replicas did not answer the state query (is a vigil-worker running?); showing their last published state\n", unanswered, len(views))
			}
			workers := newNodeWorkers(c)
			noWorker := map[string]bool{}
			for _, v := range views {
				if has, known := workers.has(ctx, v.Node); known && !has && !noWorker[v.Node] {
					noWorker[v.Node] = true
					a.warn("%s", noWorkerText(v.Node))
				}
			}
			return printList(a.printer(), views, noWorker)
		},
	}
	cmd.Flags().StringVar(&f.deployment, "deployment", "", "only this deployment")
	cmd.Flags().StringVar(&f.service, "service", "", "only this service")
	cmd.Flags().StringVar(&f.state, "state", "", "only this state ("+workflows.StateNames()+"; any case)")
	cmd.Flags().BoolVar(&counts, "counts", false, "print the number of replicas per state")
	return cmd
}

func printList(p printer, views []workflows.StateView, noWorker map[string]bool) error {
	if p.json {
		return p.JSON(views)
	}
	rows := make([][]string, 0, len(views))
	for _, v := range views {
		now := ""
		if noWorker[v.Node] {
			now = "no worker"
		}
		node := nodeText(v, now, "")
		rows = append(rows, []string{v.ID, node, string(v.State), strconv.Itoa(v.TotalRestarts), exitReasonText(v)})
	}
	return p.Table([]string{"ID", "NODE", "STATE", "RESTARTS", "LAST EXIT"}, rows)
}

// countReplicas counts the replicas per published state with one count
// query per state, so that it answers as fast for a large fleet as for a
// small one: the server counts, nothing is listed. A replica has one open
// run, so the open states count each replica once; Completed counts its
// completed runs. (Visibility's GROUP BY supports only ExecutionStatus: the
// dev server rejects GROUP BY VigilState.)
func countReplicas(ctx context.Context, c client.Client, namespace string, f listFilter) (map[workflows.State]int, int, error) {
	states := make([]workflows.State, 0, len(workflows.AllStates))
	for _, s := range workflows.AllStates {
		if s != workflows.StateUnsupervised && (f.state == "" || f.state == string(s)) {
			states = append(states, s)
		}
	}
	counts := make([]int64, len(states))
	errs := make([]error, len(states))
	parallel(len(states), func(i int) {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: namespace, Query: workflows.ReplicasQuery(f.deployment, f.service, string(states[i])),
		})
		counts[i], errs[i] = resp.GetCount(), err
	})
	out := make(map[workflows.State]int, len(states))
	total := 0
	for i, s := range states {
		if errs[i] != nil {
			return nil, 0, describeErr("count", errs[i])
		}
		out[s] = int(counts[i])
		total += int(counts[i])
	}
	return out, total, nil
}

// printCounts prints the replicas per published state.
func printCounts(p printer, counts map[workflows.State]int, total int) error {
	if p.json {
		obj := make(map[string]int, len(counts)+1)
		for _, s := range workflows.AllStates {
			obj[string(s)] = counts[s]
		}
		obj["total"] = total
		return p.JSON(obj)
	}
	rows := make([][]string, 0, len(workflows.AllStates)+1)
	for _, s := range workflows.AllStates {
		rows = append(rows, []string{string(s), strconv.Itoa(counts[s])})
	}
	rows = append(rows, []string{"TOTAL", strconv.Itoa(total)})
	return p.Table([]string{"STATE", "COUNT"}, rows)
}
