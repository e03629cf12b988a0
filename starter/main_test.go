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

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
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
	r.code = run(context.Background(), args, strings.NewReader(""), &out, &errOut, lookup, dial)
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
		{[]string{"list", "--state", "Sleeping"}, `--state: "Sleeping" is not one of Pending, Running,`},
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

func describeRunning(runID, firstRunID string) *workflowservice.DescribeWorkflowExecutionResponse {
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Execution:  &commonpb.WorkflowExecution{RunId: runID},
		Status:     enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		FirstRunId: firstRunID,
	}}
}

// nodeHasWorker answers the CLI's question whether a worker polls a node's queue.
func nodeHasWorker(c *mocks.Client, has bool) {
	resp := &workflowservice.DescribeTaskQueueResponse{}
	if has {
		resp.Pollers = []*taskqueuepb.PollerInfo{{Identity: "worker@node"}}
	}
	c.On("DescribeTaskQueue", mock.Anything, mock.Anything, enumspb.TASK_QUEUE_TYPE_ACTIVITY).Return(resp, nil).Maybe()
	// The node's watch workflow: none here (a node watch counts as alive then).
	c.On("DescribeWorkflowExecution", mock.Anything, mock.MatchedBy(func(id string) bool { return strings.HasPrefix(id, "vigil-node/") }), "").
		Return(nil, serviceerror.NewNotFound("no node workflow")).Maybe()
}

func newRun(t *testing.T, runID string) *mocks.WorkflowRun {
	run := mocks.NewWorkflowRun(t)
	run.On("GetRunID").Return(runID)
	return run
}

// applyCall captures what the CLI sent with update-with-start.
type applyCall struct {
	start   client.StartWorkflowOptions
	startIn workflows.DeploymentInput
	update  client.UpdateWorkflowOptions
}

// mockApply makes the client answer update-with-start: first with errs in
// order, then with res.
func mockApply(t *testing.T, c *mocks.Client, res workflows.ApplyResult, errs ...error) *[]applyCall {
	var calls []applyCall
	var last applyCall
	// No deployment of the name was deleted before.
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop", "").Return(nil, serviceerror.NewNotFound("none")).Maybe()
	c.On("NewWithStartWorkflowOperation", mock.Anything, replica.DeploymentWorkflowName, mock.Anything).
		Run(func(args mock.Arguments) {
			last.start = args.Get(0).(client.StartWorkflowOptions)
			last.startIn = args.Get(2).(workflows.DeploymentInput)
		}).Return(nil)
	handle := mocks.NewWorkflowUpdateHandle(t)
	handle.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*workflows.ApplyResult) = res
	}).Return(nil).Maybe()
	n := 0
	c.On("UpdateWithStartWorkflow", mock.Anything, mock.Anything).Return(
		func(_ context.Context, o client.UpdateWithStartWorkflowOptions) (client.WorkflowUpdateHandle, error) {
			last.update = o.UpdateOptions
			calls = append(calls, last)
			if n < len(errs) {
				n++
				return nil, errs[n-1]
			}
			return handle, nil
		})
	return &calls
}

func TestApplySendsTheFileWithARequestID(t *testing.T) {
	file := writeFile(t, twoReplicas)
	c := mocks.NewClient(t)
	plan := workflows.ApplyResult{Generation: 1, Plan: []workflows.PlanItem{
		{ID: "shop/api-rep-1", Action: workflows.ActionCreate, Fields: []string{}},
		{ID: "shop/api-rep-2", Action: workflows.ActionUpdate, Fields: []string{"args"}},
	}}
	// The first attempt finds the server unavailable; the retry must carry
	// the same request ID, so the apply happens once.
	calls := mockApply(t, c, plan, serviceerror.NewUnavailable("restarting"))
	c.On("Close").Return()
	nodeHasWorker(c, true)
	r := vigil(t, c, map[string]string{"VIGIL_TASK_QUEUE": "q1", "API_TOKEN": secret}, "apply", "-f", file, "--node", "node-a", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got []workflows.PlanItem
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !reflect.DeepEqual(got, plan.Plan) {
		t.Fatalf("stdout %q (%v); want the plan %+v", r.stdout, err, plan.Plan)
	}
	if !strings.Contains(r.stdout, `"id"`) || !strings.Contains(r.stdout, `"action"`) || !strings.Contains(r.stdout, `"fields"`) {
		t.Errorf("JSON keys: %s", r.stdout)
	}
	if len(*calls) != 2 {
		t.Fatalf("%d update-with-start calls, want 2", len(*calls))
	}
	first, second := (*calls)[0], (*calls)[1]
	if _, err := uuid.Parse(first.update.UpdateID); err != nil || first.update.UpdateID != second.update.UpdateID {
		t.Errorf("request IDs %q and %q: want one UUID for both attempts", first.update.UpdateID, second.update.UpdateID)
	}
	if first.start.ID != "vigil/shop" || first.start.TaskQueue != "q1" || first.startIn.Name != "shop" ||
		first.start.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING {
		t.Errorf("start: %+v %+v", first.start, first.startIn)
	}
	req := first.update.Args[0].(workflows.ApplyRequest)
	if first.update.UpdateName != replica.UpdateApply || len(req.Spec.Services) != 1 || req.Spec.Services[0].Replicas != 2 ||
		req.Spec.Services[0].Config.Node != "node-a" || req.Spec.Services[0].Config.Spec.Env["TOKEN"] != "$E:API_TOKEN" ||
		req.Spec.Services[0].Update != (workflows.UpdateSettings{MaxUnavailable: 1, MinReady: 5 * time.Second}) {
		t.Errorf("apply request: %+v", req)
	}
}

func TestSuperviseIsApply(t *testing.T) {
	file := writeFile(t, strings.Replace(twoReplicas, "replicas: 2", "replicas: 1", 1))
	c := mocks.NewClient(t)
	mockApply(t, c, workflows.ApplyResult{Generation: 3, Plan: []workflows.PlanItem{{ID: "shop/api-rep-1", Action: workflows.ActionUnchanged, Fields: []string{}}}})
	c.On("Close").Return()
	nodeHasWorker(c, true)
	r := vigil(t, c, nil, "supervise", "-f", file)
	if r.code != exitOK || !regexpMatch(`^shop/api-rep-1\s+unchanged\s+-$`, r.stdout) || !strings.Contains(r.stdout, "generation 3, nothing to change") {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func sampleView() workflows.StateView {
	code := 3
	next := "2026-01-02T03:04:35.5Z"
	exited := "Exited"
	return workflows.StateView{
		LastExitReason: &exited,
		ID:             "shop/api-rep-1", Deployment: "shop", Service: "api", Replica: 1, Node: "node-a",
		State: workflows.StateCrashLoopBackOff, PanicAction: "restart", TotalRestarts: 6,
		RestartTimes: []string{"2026-01-02T03:04:05.123Z"}, LastExitCode: &code,
		SupervisedSince: "2026-01-02T03:00:00Z", NextRestartAt: &next,
		IP: "10.213.0.5", Ports: []runtime.PortMapping{{Container: 8080, Host: 18080, Protocol: "tcp", HostIP: "127.0.0.1"}, {Container: 53, Host: 18053, Protocol: "udp"}},
		Security: new((*runtime.Security)(nil).Effective()),
		Events: []workflows.Event{
			{Type: workflows.EventCrashLoopBackOff, Time: time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC), ExitCode: &code, RestartCount: 6, Reason: &exited},
			{Type: workflows.EventContainerRestarted, Time: time.Date(2026, 1, 2, 3, 4, 1, 0, time.UTC), ExitCode: &code, RestartCount: 5},
		},
	}
}

func TestStatusJSONIsTheStateQuery(t *testing.T) {
	c := mocks.NewClient(t)
	nodeHasWorker(c, true)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(value{sampleView()}, nil)
	c.On("Close").Return()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("run-1", "run-1"), nil)
	r := vigil(t, c, nil, "status", "--json", "shop/api-rep-1")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want, _ := json.Marshal(sampleView())
	var got, wantObj map[string]any
	_ = json.Unmarshal([]byte(r.stdout), &got)
	_ = json.Unmarshal(want, &wantObj)
	// Added by the CLI, beside every key of the state query's answer.
	wantObj["supervision_ended"], wantObj["start_error"] = false, nil
	if !reflect.DeepEqual(got, wantObj) {
		t.Errorf("got %s\nwant %s", r.stdout, want)
	}
	for _, key := range []string{"id", "deployment", "service", "replica", "node", "state", "panic_action", "total_restarts", "restart_times", "last_exit_code", "supervised_since", "next_restart_at", "events", "generation",
		"last_exit_reason", "last_exit_signal", "supervision_ended", "start_error", "ip", "ports", "node_state", "node_since", "running_since", "health_detail", "security", "last_rule", "shutdown_by"} {
		if _, ok := got[key]; !ok {
			t.Errorf("missing key %q", key)
		}
	}
	if len(got) != 27 {
		t.Errorf("got %d keys, want exactly 27 (health only with a probe)", len(got))
	}
	if sec, _ := got["security"].(map[string]any); sec["seccomp"] != "default" || sec["no_new_privileges"] != true || len(sec["capabilities"].([]any)) != len(runtime.DefaultCapabilities) {
		t.Errorf("security %v; want the defaults", got["security"])
	}
	if got["last_exit_reason"] != "Exited" || got["last_exit_signal"] != nil {
		t.Errorf("last exit reason %v, signal %v; want Exited and null", got["last_exit_reason"], got["last_exit_signal"])
	}
	events, _ := got["events"].([]any)
	for i, e := range events {
		if _, ok := e.(map[string]any)["reason"]; !ok {
			t.Errorf("event %d has no reason key", i)
		}
	}
}

// The table says why: the rule that decided, whose exit shut the service
// down, what the failed probe answered.
func TestStatusTableSaysWhy(t *testing.T) {
	v := sampleView()
	v.State = workflows.StateShutdown
	v.LastRule = &workflows.RuleRef{Index: 1, Text: "{ exit_codes: [42], action: shutdown }"}
	by, health, detail := "shop/api-rep-2", "unhealthy", "GET /healthz answered 503 Service Unavailable"
	v.ShutdownBy, v.Health, v.HealthDetail = &by, &health, &detail
	c := mocks.NewClient(t)
	nodeHasWorker(c, true)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(value{v}, nil)
	c.On("Close").Return()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("run-1", "run-1"), nil)
	r := vigil(t, c, nil, "status", "shop/api-rep-1")
	if r.code != exitOK || !regexpMatch(`LAST RULE\s+rules\[1\] \{ exit_codes: \[42\], action: shutdown \}$`, r.stdout) ||
		!regexpMatch(`SHUTDOWN BY\s+shop/api-rep-2$`, r.stdout) || !regexpMatch(`HEALTH DETAIL\s+GET /healthz answered 503 Service Unavailable$`, r.stdout) {
		t.Errorf("status: %q %q", r.stdout, r.stderr)
	}
}

func TestStatusAndEventsTables(t *testing.T) {
	c := mocks.NewClient(t)
	nodeHasWorker(c, true)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(value{sampleView()}, nil)
	c.On("Close").Return()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("run-1", "run-1"), nil).Once()
	r := vigil(t, c, nil, "status", "vigil/shop/api-rep-1")
	if r.code != exitOK || !regexpMatch(`STATE\s+CrashLoopBackOff`, r.stdout) || !regexpMatch(`NODE\s+node-a`, r.stdout) || !regexpMatch(`LAST EXIT\s+3 \(Exited\)`, r.stdout) ||
		!regexpMatch(`IP\s+10\.213\.0\.5`, r.stdout) || !strings.Contains(r.stdout, "127.0.0.1:18080->8080/tcp, 0.0.0.0:18053->53/udp") ||
		strings.Contains(r.stdout, "START ERROR") {
		t.Errorf("status: %q %q", r.stdout, r.stderr)
	}

	// A start that keeps failing: its error, from the memo, on one line.
	failing := describeRunning("run-1", "run-1")
	msg, err := converter.GetDefaultDataConverter().ToPayload("image not found: docker.io/library/nope:1\n(non-retryable)")
	if err != nil {
		t.Fatal(err)
	}
	failing.WorkflowExecutionInfo.Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{replica.MemoStartError: msg}}
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
	if !regexpMatch(`REASON`, lines[0]) || !regexpMatch(`CrashLoopBackOff\s+3\s+Exited\s+6`, lines[2]) || !regexpMatch(`ContainerRestarted\s+3\s+-\s+5`, lines[1]) {
		t.Errorf("events table: the reason of each event, - when none: %q", r.stdout)
	}
	r = vigil(t, c, nil, "events", "--json", "shop/api-rep-1")
	var evs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &evs); err != nil || len(evs) != 2 || evs[0]["type"] != "ContainerRestarted" || evs[1]["time"] != "2026-01-02T03:04:05.5Z" {
		t.Errorf("events JSON: %q", r.stdout)
	}
}

// A replica whose last node activity no worker took says so, and since when.
func TestStatusShowsNoWorkerSince(t *testing.T) {
	c := mocks.NewClient(t)
	nodeHasWorker(c, true)
	v := sampleView()
	state, since := string(workflows.NodeNoWorker), "2026-01-02T03:04:05Z"
	v.NodeState, v.NodeSince = &state, &since
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(value{v}, nil)
	c.On("Close").Return()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("run-1", "run-1"), nil)
	r := vigil(t, c, nil, "status", "shop/api-rep-1")
	if r.code != exitOK || !regexpMatch(`NODE\s+node-a \(no worker since 2026-01-02 \d\d:\d\d:\d\d [+-]\d\d:\d\d; start one with --node node-a\)`, r.stdout) {
		t.Errorf("status with no worker: %q %q", r.stdout, r.stderr)
	}
}

func TestUnknownIDExits1(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-9", "", replica.QueryState).Return(nil, serviceerror.NewNotFound("workflow not found"))
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, serviceerror.NewNotFound("workflow not found"))
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-9", "").Return(nil, serviceerror.NewNotFound("workflow not found"))
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
	ok.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*workflows.UpdateResult) = workflows.UpdateResult{Note: "container stopped and removed; its log is kept"}
	}).Return(nil).Once()
	okVolumes := mocks.NewWorkflowUpdateHandle(t)
	okVolumes.On("Get", mock.Anything, mock.Anything).Return(nil)
	// A v0.1.0 workflow answers without a result.
	old := mocks.NewWorkflowUpdateHandle(t)
	old.On("Get", mock.Anything, mock.Anything).Return(temporal.ErrNoData)
	refused := mocks.NewWorkflowUpdateHandle(t)
	refused.On("Get", mock.Anything, mock.Anything).Return(temporal.NewApplicationError("release: replica is Running; release applies only to Isolated or Shutdown replicas", ""))
	var ids []string
	update := func(name string, arg func(id string) any) any {
		return mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
			// Every request has a fresh UUID, which is also its update ID.
			if _, err := uuid.Parse(o.UpdateID); err != nil {
				return false
			}
			ids = append(ids, o.UpdateID)
			return o.WorkflowID == "vigil/shop/api-rep-1" && o.UpdateName == name && o.WaitForStage == client.WorkflowUpdateStageCompleted &&
				len(o.Args) == 1 && reflect.DeepEqual(o.Args[0], arg(o.UpdateID))
		})
	}
	c.On("UpdateWorkflow", mock.Anything, update("unsupervise", func(id string) any { return workflows.UnsuperviseRequest{Stop: true, RequestID: id} })).Return(ok, nil)
	c.On("UpdateWorkflow", mock.Anything, update("restart", func(id string) any { return workflows.RestartRequest{Reason: "vigil restart", RequestID: id} })).Return(old, nil)
	c.On("UpdateWorkflow", mock.Anything, update("release", func(id string) any { return workflows.ReleaseRequest{RequestID: id} })).Return(refused, nil)
	c.On("UpdateWorkflow", mock.Anything, update("unsupervise", func(id string) any {
		return workflows.UnsuperviseRequest{Stop: true, Volumes: true, RequestID: id}
	})).Return(okVolumes, nil)
	c.On("Close").Return()

	r := vigil(t, c, nil, "unsupervise", "shop/api-rep-1", "--stop")
	if r.code != exitOK || r.stdout != "shop/api-rep-1: unsupervise done (container stopped and removed; its log is kept)\n" {
		t.Errorf("unsupervise: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := vigil(t, c, nil, "unsupervise", "shop/api-rep-1", "--stop", "--volumes"); r.code != exitOK {
		t.Errorf("unsupervise --stop --volumes: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := vigil(t, c, nil, "unsupervise", "shop/api-rep-1", "--volumes"); r.code != exitUsage || !strings.Contains(r.stderr, "--volumes") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("unsupervise --volumes without --stop: %d %q", r.code, r.stderr)
	}
	r = vigil(t, c, nil, "restart", "--json", "shop/api-rep-1")
	var res UpdateResult
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &res) != nil || res != (UpdateResult{ID: "shop/api-rep-1", Update: "restart", Result: "done", RequestID: res.RequestID}) ||
		res.RequestID == "" || res.RequestID == ids[0] {
		t.Errorf("restart: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = vigil(t, c, nil, "release", "shop/api-rep-1")
	if r.code != exitFail || r.stderr != "vigil: shop/api-rep-1: release: replica is Running; release applies only to Isolated or Shutdown replicas\n" {
		t.Errorf("refused release: %d %q", r.code, r.stderr)
	}
}

func TestLogsAsksTheReplicasNode(t *testing.T) {
	c := mocks.NewClient(t)
	in := workflows.SupervisionInput{ID: replica.ID{Deployment: "shop", Service: "api", Replica: 1}, ReplicaConfig: workflows.ReplicaConfig{Node: "node-b"}}
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryConfig).Return(value{in}, nil)
	// A node of v0.2.0: its workflow answers an update.
	c.On("QueryWorkflow", mock.Anything, replica.NodeWorkflowID("node-b"), "", replica.QueryNode).Return(value{workflows.NodeView{Node: "node-b", Release: workflows.V020}}, nil)
	h := mocks.NewWorkflowUpdateHandle(t)
	h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*string) = "line one\nline two\n"
	}).Return(nil)
	c.On("UpdateWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
		req, ok := o.Args[0].(workflows.LogsRequest)
		return o.WorkflowID == replica.NodeWorkflowID("node-b") && o.UpdateName == replica.UpdateLogs &&
			ok && req.ID == in.ID && req.Tail == 5 && req.RequestID == o.UpdateID && o.UpdateID != ""
	})).Return(h, nil).Twice()
	c.On("Close").Return()
	r := vigil(t, c, nil, "logs", "shop/api-rep-1", "--tail", "5")
	if r.code != exitOK || r.stdout != "line one\nline two\n" {
		t.Errorf("logs: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = vigil(t, c, nil, "logs", "--json", "shop/api-rep-1", "--tail", "5")
	if r.code != exitOK || r.stdout != `{"stream":"output","run":0,"line":"line one"}`+"\n"+`{"stream":"output","run":0,"line":"line two"}`+"\n" {
		t.Errorf("logs JSON: %d %q", r.code, r.stdout)
	}
	if r = vigil(t, c, nil, "logs", "shop/api-rep-1", "--previous"); r.code != exitFail || !strings.Contains(r.stderr, "predates v0.3.0") {
		t.Errorf("--previous from a v0.2.0 node: %d %q", r.code, r.stderr)
	}

	// A node without its workflow (a worker of v0.1.0): a FetchLogs workflow, as then.
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(nil, serviceerror.NewNotFound("workflow not found")).Once()
	run := mocks.NewWorkflowRun(t)
	run.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*string) = "old\n"
	}).Return(nil)
	c.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool {
		return strings.HasPrefix(o.ID, "vigil-logs/shop/api-rep-1/") && o.TaskQueue == "vigil"
	}), replica.FetchLogsWorkflowName, workflows.FetchLogsInput{ID: in.ID, Node: "node-b", Tail: 5}).Return(run, nil)
	r = vigil(t, c, nil, "logs", "shop/api-rep-1", "--tail", "5")
	if r.code != exitOK || r.stdout != "old\n" {
		t.Errorf("logs from an old node: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// Since v0.3.0 the CLI reads from the endpoint the node's claim
// advertises, with the node's token, and no update or workflow is made.
func TestLogsFromTheNodesEndpoint(t *testing.T) {
	dir := t.TempDir()
	// Two runs, written as the logger writes them.
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lines := []string{
		"2026-01-02T03:04:05Z vigil 1 F run 1 at 2026-01-02T03:04:05Z",
		"2026-01-02T03:04:06Z stdout 1 F first",
		"2026-01-02T03:04:07Z stderr 1 F oops",
		"2026-01-02T03:05:00Z vigil 2 F run 2 at 2026-01-02T03:05:00Z; run 1 ended: exit code 1",
		"2026-01-02T03:05:01Z stdout 2 F second",
	}
	srv, tokenFile, _ := logsNode(t, dir, lines)
	defer srv.Close()
	token, _ := ctrlog.ReadToken(tokenFile)
	c := mocks.NewClient(t)
	nodeAdvertises(c, srv)
	c.On("Close").Return()
	env := map[string]string{"VIGIL_LOGS_TOKEN_FILE": tokenFile}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "[vigil] run 1 at 2026-01-02T03:04:05Z\nfirst\noops\n[vigil] run 2 at 2026-01-02T03:05:00Z; run 1 ended: exit code 1\nsecond\n"},
		{[]string{"--tail", "1", "--timestamps"}, "2026-01-02T03:05:01Z second\n"},
		{[]string{"--previous"}, "[vigil] run 1 at 2026-01-02T03:04:05Z\nfirst\noops\n"},
		{[]string{"--since", t0.Add(56 * time.Second).Format(time.RFC3339)}, "second\n"},
		{[]string{"--json", "--tail", "1"}, `{"time":"2026-01-02T03:05:01Z","stream":"stdout","run":2,"line":"second"}` + "\n"},
	} {
		r := vigil(t, c, env, append([]string{"logs", "shop/api-rep-1"}, tc.args...)...)
		if r.code != exitOK || r.stdout != tc.want {
			t.Errorf("logs %v: %d %q %q; want %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
	// Without the token, or another one, nothing is read.
	if r := vigil(t, c, map[string]string{"VIGIL_LOGS_TOKEN_FILE": filepath.Join(dir, "none")}, "logs", "shop/api-rep-1"); r.code != exitFail || !strings.Contains(r.stderr, "--logs-token-file") {
		t.Errorf("without the token file: %d %q", r.code, r.stderr)
	}
	wrong := writeFile(t, strings.Repeat("x", 64))
	if r := vigil(t, c, nil, "logs", "shop/api-rep-1", "--logs-token-file", wrong); r.code != exitFail || !strings.Contains(r.stderr, "401") {
		t.Errorf("with a wrong token: %d %q", r.code, r.stderr)
	}
	// A server with another certificate than the one advertised is refused.
	other, err := ctrlog.Serve("127.0.0.1:0", token, func(string) (ctrlog.Log, error) { return ctrlog.Log{Dir: dir}, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if r := vigil(t, c, env, "logs", "shop/api-rep-1", "--logs-address", other.Addr()); r.code != exitFail || !strings.Contains(r.stderr, "not the node's worker") {
		t.Errorf("an impostor endpoint: %d %q", r.code, r.stderr)
	}
	if r := vigil(t, c, env, "logs", "shop/api-rep-1", "--since", "yesterday"); r.code != exitUsage || !strings.Contains(r.stderr, "--since") {
		t.Errorf("bad --since: %d %q", r.code, r.stderr)
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
	nodeHasWorker(c, true)
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
	code, oom := 137, "OOMKilled"
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/web-rep-1", "", replica.QueryState).Return(value{workflows.StateView{
		ID: "shop/web-rep-1", Node: "node-b", State: workflows.StateCrashLoopBackOff, TotalRestarts: 7, LastExitCode: &code, LastExitReason: &oom}}, nil)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/web-rep-2", "", replica.QueryState).Return(value{workflows.StateView{
		ID: "shop/web-rep-2", State: workflows.StateRunning}}, nil)
	// No worker answers for api-rep-1: its published state is shown.
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(nil, context.DeadlineExceeded)
	c.On("Close").Return()

	env := map[string]string{"TEMPORAL_NAMESPACE": "ns1"}
	r := vigil(t, c, env, "list", "--deployment", "shop")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !regexpMatch(`^shop/api-rep-1\s+-\s+Isolated\s+0\s+-`, lines[1]) ||
		!regexpMatch(`^shop/web-rep-1\s+node-b\s+CrashLoopBackOff\s+7\s+137 OOMKilled$`, lines[2]) || !strings.HasPrefix(lines[3], "shop/web-rep-2") {
		t.Errorf("list:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "1 of 3 replicas did not answer") {
		t.Errorf("stderr: %q", r.stderr)
	}

	// --counts asks the server for a count per state, and lists nothing.
	counted := map[string]int64{"Running": 1, "CrashLoopBackOff": 1, "Isolated": 1}
	c.On("CountWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.CountWorkflowExecutionsRequest) bool {
		return r.Namespace == "ns1" && strings.HasPrefix(r.Query, wantQuery+" AND VigilState = '")
	})).Return(func(_ context.Context, r *workflowservice.CountWorkflowExecutionsRequest) (*workflowservice.CountWorkflowExecutionsResponse, error) {
		state := strings.TrimSuffix(strings.TrimPrefix(r.Query, wantQuery+" AND VigilState = '"), "'")
		return &workflowservice.CountWorkflowExecutionsResponse{Count: counted[state]}, nil
	})
	r = vigil(t, c, env, "list", "--deployment", "shop", "--counts", "--json")
	var counts map[string]int
	if err := json.Unmarshal([]byte(r.stdout), &counts); err != nil || counts["CrashLoopBackOff"] != 1 || counts["Running"] != 1 ||
		counts["Isolated"] != 1 || counts["Completed"] != 0 || counts["total"] != 3 {
		t.Errorf("counts: %q %v", r.stdout, err)
	}
}

// --state Unsupervised lists the replicas whose latest run unsupervise
// closed: not one supervised again since.
func TestListUnsupervised(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := mocks.NewClient(t)
	nodeHasWorker(c, true)
	gone := execution("vigil/shop/api-rep-1", workflows.StateUnsupervised, true, t0)
	gone.Execution.RunId = "run-a"
	back := execution("vigil/shop/api-rep-2", workflows.StateUnsupervised, true, t0)
	back.Execution.RunId = "run-b"
	c.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return r.Query == "WorkflowType = 'Supervise' AND ExecutionStatus = 'Completed' AND VigilState = 'Unsupervised'"
	})).Return(&workflowservice.ListWorkflowExecutionsResponse{Executions: []*workflowpb.WorkflowExecutionInfo{gone, back}}, nil)
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-1", "").Return(describeRunning("run-a", "run-a"), nil)
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop/api-rep-2", "").Return(describeRunning("run-c", "run-c"), nil)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(value{workflows.StateView{
		ID: "shop/api-rep-1", State: workflows.StateUnsupervised}}, nil)
	c.On("Close").Return()
	r := vigil(t, c, nil, "list", "--state", "unsupervised")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 2 || !regexpMatch(`^shop/api-rep-1\s+-\s+Unsupervised`, lines[1]) {
		t.Errorf("list --state unsupervised: %d %q %q", r.code, r.stdout, r.stderr)
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
func TestApplyWarnsWithoutANodeWorker(t *testing.T) {
	file := writeFile(t, twoReplicas)
	c := mocks.NewClient(t)
	mockApply(t, c, workflows.ApplyResult{Generation: 1, Plan: []workflows.PlanItem{
		{ID: "shop/api-rep-1", Action: workflows.ActionCreate, Fields: []string{}},
		{ID: "shop/api-rep-2", Action: workflows.ActionCreate, Fields: []string{}},
	}})
	c.On("Close").Return()
	nodeHasWorker(c, false)
	r := vigil(t, c, map[string]string{"VIGIL_TASK_QUEUE": "q1", "VIGIL_NODE": "n1"}, "apply", "-f", file)
	if r.code != exitOK {
		t.Errorf("exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Said once, on stderr; the command still succeeds.
	if r.stderr != "vigil: warning: "+noWorkerText("n1")+"\n" {
		t.Errorf("stderr %q, want the no-worker warning", r.stderr)
	}
}
