package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/spec"
	"github.com/vigil-run/vigil/workflows"
)

const secret = "sk-cli-secret-0123456789abcdef"

// result is one CLI invocation's outcome.
type result struct {
	code           int
	stdout, stderr string
	dialed         bool
	opts           client.Options
}

// vigil runs the CLI with env and a client; a nil client makes dialing fail.
func vigil(t *testing.T, c client.Client, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	var r result
	dial := func(_ context.Context, opts client.Options) (client.Client, error) {
		r.dialed, r.opts = true, opts
		if c == nil {
			return nil, errors.New("failed reaching server: connection refused")
		}
		return c, nil
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	r.code = run(context.Background(), args, &out, &errOut, lookup, dial)
	r.stdout, r.stderr = out.String(), errOut.String()
	if strings.Count(r.stderr, "\n") > 1 {
		t.Errorf("%v: stderr has more than one line: %q", args, r.stderr)
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(s, secret) {
			t.Errorf("%v: output contains the API key: %q", args, s)
		}
	}
	return r
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "deploy.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const twoReplicas = `version: v1
deployment: shop
services:
  api:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    env: { TOKEN: "$E:API_TOKEN" }
    scale: { replicas: 2 }
`

// value is a query result as the SDK would decode it.
type value struct{ v any }

func (v value) HasValue() bool { return v.v != nil }
func (v value) Get(ptr any) error {
	b, err := json.Marshal(v.v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, ptr)
}

var _ converter.EncodedValue = value{}

func TestUsageErrorsExit2WithoutDialing(t *testing.T) {
	bad := writeFile(t, "version: v1\ndeployment: shop\nservices:\n  api:\n    image: { name: busybox }\n    errors: { on_panic: { actoin: restart } }\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"supervise", "-f", bad}, "deploy.yaml:6: services.api.errors.on_panic.actoin: unknown field; valid fields are action,"},
		{[]string{"supervise", "-f", filepath.Join(t.TempDir(), "missing.yaml")}, "missing.yaml: file: cannot read"},
		{[]string{"supervise"}, "-f FILE is required"},
		{[]string{"supervise", "-f", bad, "extra"}, "unknown command"},
		{[]string{"status"}, "want exactly one ID, got 0"},
		{[]string{"status", "a", "b"}, "want exactly one ID, got 2"},
		{[]string{"status", "shop/api"}, `ID "shop/api": want <deployment>/<service>-rep-<replica>`},
		{[]string{"status", "shop/api-rep-0"}, "replica must be a number from 1"},
		{[]string{"events", "../../etc/passwd"}, "want <deployment>/<service>-rep-<replica>"},
		{[]string{"restart", "shop/api-rep-x"}, "want <deployment>/<service>-rep-<replica>"},
		{[]string{"logs", "shop/api-rep-1", "--tail", "-1"}, "--tail: -1 is negative"},
		{[]string{"list", "--state", "Sleeping"}, `--state: "Sleeping" is not one of Running,`},
		{[]string{"list", "--deployment", "a' OR '1'='1"}, "--deployment"},
		{[]string{"list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"list", "--address", "nohost"}, "--address"},
		{[]string{"list", "--timeout", "0s"}, "--timeout"},
		{[]string{"list", "--tls-cert-file", "c.pem"}, "--tls-cert-file and --tls-key-file"},
		{[]string{"list", "--tls-ca-file", filepath.Join(t.TempDir(), "none.pem")}, "--tls-ca-file: cannot read"},
	} {
		r := vigil(t, nil, nil, tc.args...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", tc.args, r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stderr, "vigil: ") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr %q, want it to contain %q", tc.args, r.stderr, tc.want)
		}
		if r.dialed {
			t.Errorf("%v: contacted the server for a usage error", tc.args)
		}
		if r.stdout != "" {
			t.Errorf("%v: wrote to stdout: %q", tc.args, r.stdout)
		}
	}
}

func TestUnreachableServerExits1(t *testing.T) {
	env := map[string]string{"TEMPORAL_API_KEY": secret, "TEMPORAL_ADDRESS": "temporal.example:7233"}
	r := vigil(t, nil, env, "status", "shop/api-rep-1")
	if r.code != exitFail || !strings.Contains(r.stderr, "cannot reach Temporal at temporal.example:7233") {
		t.Errorf("exit %d: %q", r.code, r.stderr)
	}
	if r.opts.Credentials == nil || r.opts.ConnectionOptions.TLS == nil || r.opts.HostPort != "temporal.example:7233" {
		t.Errorf("API key from the environment not applied: %+v", r.opts)
	}
}

func startOptionsFor(t *testing.T, wid string) any {
	return mock.MatchedBy(func(o client.StartWorkflowOptions) bool {
		state, _ := o.TypedSearchAttributes.GetKeyword(workflows.SearchAttrState)
		dep, _ := o.TypedSearchAttributes.GetKeyword(workflows.SearchAttrDeployment)
		svc, _ := o.TypedSearchAttributes.GetKeyword(workflows.SearchAttrService)
		return o.ID == wid && o.TaskQueue == "q1" &&
			o.WorkflowIDConflictPolicy == enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING &&
			o.WorkflowIDReusePolicy == enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE &&
			state == "Running" && dep == "shop" && svc == "api"
	})
}

func describeRunning(runID, firstRunID string) *workflowservice.DescribeWorkflowExecutionResponse {
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Execution:  &commonpb.WorkflowExecution{RunId: runID},
		Status:     enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		FirstRunId: firstRunID,
	}}
}

func newRun(t *testing.T, runID string) *mocks.WorkflowRun {
	run := mocks.NewWorkflowRun(t)
	run.On("GetRunID").Return(runID)
	return run
}

func TestSuperviseStartsThenIsIdempotent(t *testing.T) {
	file := writeFile(t, twoReplicas)
	c := mocks.NewClient(t)
	// rep-1 is new; rep-2 is already supervised (after a continue-as-new:
	// a different run ID of the same chain).
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(nil, serviceerror.NewNotFound("not found")).Once()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-2", "").Return(describeRunning("run-2a", "run-2"), nil).Once()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-2", "run-2b").Return(describeRunning("run-2b", "run-2"), nil).Once()
	var inputs []workflows.SupervisionInput
	capture := func(args mock.Arguments) { inputs = append(inputs, args.Get(3).(workflows.SupervisionInput)) }
	c.On("ExecuteWorkflow", mock.Anything, startOptionsFor(t, "vigil/shop/api-rep-1"), workflows.SupervisorWorkflowName, mock.Anything).
		Run(capture).Return(newRun(t, "run-1"), nil).Once()
	c.On("ExecuteWorkflow", mock.Anything, startOptionsFor(t, "vigil/shop/api-rep-2"), workflows.SupervisorWorkflowName, mock.Anything).
		Run(capture).Return(newRun(t, "run-2b"), nil).Once()
	// rep-2 runs with exactly the file's configuration (after the workflow's defaults).
	parsed, err := spec.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	running := parsed.Inputs("node-a")[1]
	running.StopGrace = 10 * time.Second
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-2", "", workflows.QueryConfig).Return(value{running}, nil).Once()
	c.On("Close").Return()

	r := vigil(t, c, map[string]string{"VIGIL_TASK_QUEUE": "q1", "API_TOKEN": secret},
		"supervise", "-f", file, "--node", "node-a", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got []SuperviseResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %q", r.stdout)
	}
	want := []SuperviseResult{
		{ID: "shop/api-rep-1", WorkflowID: "vigil/shop/api-rep-1", RunID: "run-1", Result: "started"},
		{ID: "shop/api-rep-2", WorkflowID: "vigil/shop/api-rep-2", RunID: "run-2b", Result: "already supervised"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if len(inputs) != 2 || inputs[1].Node != "node-a" || inputs[1].ID != (runtime.ContainerID{Deployment: "shop", Service: "api", Replica: 2}) ||
		inputs[0].Spec.Env["TOKEN"] != "$E:API_TOKEN" {
		t.Errorf("inputs: %+v", inputs)
	}
}

func TestSuperviseTable(t *testing.T) {
	file := writeFile(t, strings.Replace(twoReplicas, "replicas: 2", "replicas: 1", 1))
	c := mocks.NewClient(t)
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("r1", "r1"), nil)
	c.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.SupervisorWorkflowName, mock.Anything).Return(newRun(t, "r1"), nil)
	// The running supervisor uses another image than the file now names.
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", workflows.QueryConfig).Return(value{workflows.SupervisionInput{
		Spec: runtime.ContainerSpec{Image: "docker.io/library/busybox:old"}}}, nil)
	c.On("Close").Return()
	r := vigil(t, c, nil, "supervise", "-f", file)
	if r.code != exitOK || !strings.Contains(r.stdout, "ID") ||
		!regexpMatch(`shop/api-rep-1\s+vigil/shop/api-rep-1\s+already supervised \(runs with another configuration`, r.stdout) {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func sampleView() workflows.StateView {
	code := 3
	next := "2026-01-02T03:04:35.5Z"
	return workflows.StateView{
		ID: "shop/api-rep-1", Deployment: "shop", Service: "api", Replica: 1, Node: "node-a",
		State: workflows.StateCrashLoopBackOff, PanicAction: "restart", TotalRestarts: 6,
		RestartTimes: []string{"2026-01-02T03:04:05.123Z"}, LastExitCode: &code,
		SupervisedSince: "2026-01-02T03:00:00Z", NextRestartAt: &next,
		Events: []workflows.Event{
			{Type: workflows.EventCrashLoopBackOff, Time: time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC), ExitCode: &code, RestartCount: 6},
			{Type: workflows.EventContainerRestarted, Time: time.Date(2026, 1, 2, 3, 4, 1, 0, time.UTC), ExitCode: &code, RestartCount: 5},
		},
	}
}

func TestStatusJSONIsTheStateQuery(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", workflows.QueryState).Return(value{sampleView()}, nil)
	c.On("Close").Return()
	r := vigil(t, c, nil, "status", "--json", "shop/api-rep-1")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want, _ := json.Marshal(sampleView())
	var got, wantObj map[string]any
	_ = json.Unmarshal([]byte(r.stdout), &got)
	_ = json.Unmarshal(want, &wantObj)
	if !reflect.DeepEqual(got, wantObj) {
		t.Errorf("got %s\nwant %s", r.stdout, want)
	}
	for _, key := range []string{"id", "deployment", "service", "replica", "node", "state", "panic_action", "total_restarts", "restart_times", "last_exit_code", "supervised_since", "next_restart_at", "events"} {
		if _, ok := got[key]; !ok {
			t.Errorf("missing key %q", key)
		}
	}
	if len(got) != 13 {
		t.Errorf("got %d keys, want exactly 13", len(got))
	}
}

func TestStatusAndEventsTables(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", workflows.QueryState).Return(value{sampleView()}, nil)
	c.On("Close").Return()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("run-1", "run-1"), nil).Once()
	r := vigil(t, c, nil, "status", "vigil/shop/api-rep-1")
	if r.code != exitOK || !regexpMatch(`STATE\s+CrashLoopBackOff`, r.stdout) || !regexpMatch(`NODE\s+node-a`, r.stdout) || !regexpMatch(`LAST EXIT\s+3`, r.stdout) ||
		strings.Contains(r.stdout, "START ERROR") {
		t.Errorf("status: %q %q", r.stdout, r.stderr)
	}

	// A start that keeps failing: its error, from the memo, on one line.
	failing := describeRunning("run-1", "run-1")
	msg, err := converter.GetDefaultDataConverter().ToPayload("image not found: docker.io/library/nope:1\n(non-retryable)")
	if err != nil {
		t.Fatal(err)
	}
	failing.WorkflowExecutionInfo.Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{workflows.MemoStartError: msg}}
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(failing, nil).Once()
	r = vigil(t, c, nil, "status", "shop/api-rep-1")
	if r.code != exitOK || !regexpMatch(`START ERROR\s+image not found: docker.io/library/nope:1 \(non-retryable\)`, r.stdout) ||
		strings.Contains(r.stdout, "SUPERVISION") {
		t.Errorf("status with a failing start: %q %q", r.stdout, r.stderr)
	}

	// Unsupervised: the last state, and a line saying supervision has ended.
	ended := describeRunning("run-1", "run-1")
	ended.WorkflowExecutionInfo.Status = enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(ended, nil).Once()
	r = vigil(t, c, nil, "status", "shop/api-rep-1")
	if r.code != exitOK || !regexpMatch(`SUPERVISION\s+ended \(unsupervised\)`, r.stdout) {
		t.Errorf("status after unsupervise: %q %q", r.stdout, r.stderr)
	}
	r = vigil(t, c, nil, "events", "shop/api-rep-1")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 3 || !strings.Contains(lines[1], "ContainerRestarted") || !strings.Contains(lines[2], "CrashLoopBackOff") {
		t.Errorf("events must be oldest first: %q", r.stdout)
	}
	r = vigil(t, c, nil, "events", "--json", "shop/api-rep-1")
	var evs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &evs); err != nil || len(evs) != 2 || evs[0]["type"] != "ContainerRestarted" || evs[1]["time"] != "2026-01-02T03:04:05.5Z" {
		t.Errorf("events JSON: %q", r.stdout)
	}
}

func TestUnknownIDExits1(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-9", "", workflows.QueryState).Return(nil, serviceerror.NewNotFound("workflow not found"))
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, serviceerror.NewNotFound("workflow not found"))
	c.On("Close").Return()
	for _, args := range [][]string{{"status", "shop/api-rep-9"}, {"events", "shop/api-rep-9"}, {"restart", "shop/api-rep-9"}, {"unsupervise", "--stop", "shop/api-rep-9"}} {
		r := vigil(t, c, nil, args...)
		if r.code != exitFail || r.stderr != "vigil: unknown ID shop/api-rep-9: no replica with this ID is supervised; see vigil list\n" {
			t.Errorf("%v: exit %d %q", args, r.code, r.stderr)
		}
	}
}

func TestUpdates(t *testing.T) {
	c := mocks.NewClient(t)
	ok := mocks.NewWorkflowUpdateHandle(t)
	ok.On("Get", mock.Anything, nil).Return(nil)
	refused := mocks.NewWorkflowUpdateHandle(t)
	refused.On("Get", mock.Anything, nil).Return(temporal.NewApplicationError("release: replica is Running; release applies only to Isolated or Shutdown replicas", ""))
	update := func(name string, arg any) any {
		return mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
			return o.WorkflowID == "vigil/shop/api-rep-1" && o.UpdateName == name && o.WaitForStage == client.WorkflowUpdateStageCompleted &&
				len(o.Args) == 1 && reflect.DeepEqual(o.Args[0], arg)
		})
	}
	c.On("UpdateWorkflow", mock.Anything, update("unsupervise", workflows.UnsuperviseRequest{Stop: true})).Return(ok, nil)
	c.On("UpdateWorkflow", mock.Anything, update("restart", workflows.RestartRequest{Reason: "vigil restart"})).Return(ok, nil)
	c.On("UpdateWorkflow", mock.Anything, update("release", workflows.ReleaseRequest{})).Return(refused, nil)
	c.On("Close").Return()

	r := vigil(t, c, nil, "unsupervise", "shop/api-rep-1", "--stop")
	if r.code != exitOK || r.stdout != "shop/api-rep-1: unsupervise done\n" {
		t.Errorf("unsupervise: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = vigil(t, c, nil, "restart", "--json", "shop/api-rep-1")
	var res UpdateResult
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &res) != nil || res != (UpdateResult{ID: "shop/api-rep-1", Update: "restart", Result: "done"}) {
		t.Errorf("restart: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = vigil(t, c, nil, "release", "shop/api-rep-1")
	if r.code != exitFail || r.stderr != "vigil: shop/api-rep-1: release: replica is Running; release applies only to Isolated or Shutdown replicas\n" {
		t.Errorf("refused release: %d %q", r.code, r.stderr)
	}
}

func TestLogsAsksTheReplicasNode(t *testing.T) {
	c := mocks.NewClient(t)
	in := workflows.SupervisionInput{ID: runtime.ContainerID{Deployment: "shop", Service: "api", Replica: 1}, Node: "node-b"}
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", workflows.QueryConfig).Return(value{in}, nil)
	run := mocks.NewWorkflowRun(t)
	run.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*string) = "line one\nline two\n"
	}).Return(nil)
	c.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool {
		return strings.HasPrefix(o.ID, "vigil-logs/shop/api-rep-1/") && o.TaskQueue == "vigil"
	}), workflows.FetchLogsWorkflowName, workflows.FetchLogsInput{ID: in.ID, Node: "node-b", Tail: 5}).Return(run, nil)
	c.On("Close").Return()
	r := vigil(t, c, nil, "logs", "shop/api-rep-1", "--tail", "5")
	if r.code != exitOK || r.stdout != "line one\nline two\n" {
		t.Errorf("logs: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = vigil(t, c, nil, "logs", "--json", "shop/api-rep-1", "--tail", "5")
	var res LogsResult
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Node != "node-b" || res.Output != "line one\nline two\n" {
		t.Errorf("logs JSON: %d %q", r.code, r.stdout)
	}
}

func execution(wid string, state workflows.State, closed bool, start time.Time) *workflowpb.WorkflowExecutionInfo {
	p, _ := converter.GetDefaultDataConverter().ToPayload(string(state))
	e := &workflowpb.WorkflowExecutionInfo{
		Execution:        &commonpb.WorkflowExecution{WorkflowId: wid},
		StartTime:        timestamppb.New(start),
		SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"VigilState": p}},
	}
	if closed {
		e.CloseTime = timestamppb.New(start.Add(time.Minute))
	}
	return e
}

func TestListAndCounts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := mocks.NewClient(t)
	page1 := &workflowservice.ListWorkflowExecutionsResponse{
		Executions: []*workflowpb.WorkflowExecutionInfo{
			execution("vigil/shop/web-rep-2", workflows.StateRunning, false, t0),
			// An old completed run of a replica supervised again: the running one wins.
			execution("vigil/shop/web-rep-1", workflows.StateCompleted, true, t0.Add(time.Hour)),
		},
		NextPageToken: []byte("p2"),
	}
	page2 := &workflowservice.ListWorkflowExecutionsResponse{
		Executions: []*workflowpb.WorkflowExecutionInfo{
			execution("vigil/shop/web-rep-1", workflows.StateCrashLoopBackOff, false, t0),
			execution("vigil/shop/api-rep-1", workflows.StateIsolated, false, t0),
			execution("someone-elses-workflow", workflows.StateRunning, false, t0),
		},
	}
	wantQuery := "WorkflowType = 'Supervise' AND (ExecutionStatus = 'Running' OR (ExecutionStatus = 'Completed' AND VigilState = 'Completed')) AND VigilDeployment = 'shop'"
	c.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return r.Query == wantQuery && r.Namespace == "ns1" && r.NextPageToken == nil
	})).Return(page1, nil)
	c.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return string(r.NextPageToken) == "p2"
	})).Return(page2, nil)
	code := 1
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/web-rep-1", "", workflows.QueryState).Return(value{workflows.StateView{
		ID: "shop/web-rep-1", Node: "node-b", State: workflows.StateCrashLoopBackOff, TotalRestarts: 7, LastExitCode: &code}}, nil)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/web-rep-2", "", workflows.QueryState).Return(value{workflows.StateView{
		ID: "shop/web-rep-2", State: workflows.StateRunning}}, nil)
	// No worker answers for api-rep-1: its published state is shown.
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", workflows.QueryState).Return(nil, context.DeadlineExceeded)
	c.On("Close").Return()

	env := map[string]string{"TEMPORAL_NAMESPACE": "ns1"}
	r := vigil(t, c, env, "list", "--deployment", "shop")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !regexpMatch(`^shop/api-rep-1\s+-\s+Isolated\s+0\s+-`, lines[1]) ||
		!regexpMatch(`^shop/web-rep-1\s+node-b\s+CrashLoopBackOff\s+7\s+1`, lines[2]) || !strings.HasPrefix(lines[3], "shop/web-rep-2") {
		t.Errorf("list:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "1 of 3 replicas did not answer") {
		t.Errorf("stderr: %q", r.stderr)
	}

	r = vigil(t, c, env, "list", "--deployment", "shop", "--counts", "--json")
	var counts map[string]int
	if err := json.Unmarshal([]byte(r.stdout), &counts); err != nil || counts["CrashLoopBackOff"] != 1 || counts["Running"] != 1 ||
		counts["Isolated"] != 1 || counts["Completed"] != 0 || counts["total"] != 3 {
		t.Errorf("counts: %q %v", r.stdout, err)
	}
}

func TestListQueryFilters(t *testing.T) {
	q := listFilter{service: "api", state: "Isolated"}.query()
	if !strings.HasSuffix(q, " AND VigilService = 'api' AND VigilState = 'Isolated'") {
		t.Errorf("query: %s", q)
	}
}

func regexpMatch(pattern, s string) bool {
	return mustCompile(pattern).MatchString(s)
}

func mustCompile(pattern string) *regexp.Regexp { return regexp.MustCompile("(?m)" + pattern) }

func TestSuperviseSkipsConfigCheckWithoutWorker(t *testing.T) {
	file := writeFile(t, twoReplicas)
	c := mocks.NewClient(t)
	for _, wid := range []string{"vigil/shop/api-rep-1", "vigil/shop/api-rep-2"} {
		c.On("DescribeWorkflowExecution", mock.Anything, wid, "").Return(describeRunning("r-"+wid, "r-"+wid), nil).Once()
		c.On("ExecuteWorkflow", mock.Anything, startOptionsFor(t, wid), workflows.SupervisorWorkflowName, mock.Anything).Return(newRun(t, "r-"+wid), nil).Once()
	}
	// Only the first replica is asked: no worker answers, so the second is not.
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", workflows.QueryConfig).Return(nil, context.DeadlineExceeded).Once()
	c.On("Close").Return()
	r := vigil(t, c, map[string]string{"VIGIL_TASK_QUEUE": "q1"}, "supervise", "-f", file)
	if r.code != exitOK || strings.Count(r.stdout, "already supervised") != 2 || strings.Contains(r.stdout, "another configuration") {
		t.Errorf("exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}
