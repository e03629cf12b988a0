package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
	"github.com/vigil-run/vigil/workflows"
)

const (
	// settle: a replica is judged only when containerd has been quiet about
	// it this long, so the workflow has caught up with its last start or exit.
	settle = 2 * time.Second
	// firstCheckAfter: the last fault's effects (a dead worker's heartbeat
	// timeout, a start retry) take this long to show before anything is judged.
	firstCheckAfter = 15 * time.Second
	// backoffLate: a backoff deadline may pass by this much (a timer firing,
	// a start) before the replica counts as stuck in it.
	backoffLate = 15 * time.Second
	// pendingGrace is added to an activity's timeout before it counts as stuck.
	pendingGrace = 15 * time.Second
)

// activityTimeouts are the workflow's heartbeat (or start-to-close) timeouts
// per activity, read from its options, for the stuck-activity check.
var activityTimeouts = func() map[string]time.Duration {
	in := workflows.SupervisionInput{ReplicaConfig: workflows.ReplicaConfig{StopGrace: stopGrace}}
	return map[string]time.Duration{
		replica.WaitForExitName:   workflows.WatchOptions(in).HeartbeatTimeout,
		replica.EnsureRunningName: workflows.StartOptions(in).HeartbeatTimeout,
		replica.StopName:          workflows.ControlOptions(in).StartToCloseTimeout,
		replica.IsolateName:       workflows.ControlOptions(in).StartToCloseTimeout,
	}
}()

// row is one replica's line in the final table.
type row struct {
	Replica       string
	Behaviour     string
	State         string
	Workflow      string // workflow status
	Restarts      int    // the workflow's count
	StartsLog     int    // start markers in the container's own output
	StartsEvents  int    // containerd /tasks/start events
	Exits         int    // containerd /tasks/exit events
	Hits          int    // injected task kills and deletions
	Backoffs      int    // crash-loop backoffs checked against exit times
	MinBackoff    time.Duration
	Task          string // containerd's task status (and exit code)
	HistoryLength int64
	Runs          int // runs of the workflow, the current one included
	// MostExitsPerRun is the most exits one run handled.
	MostExitsPerRun int
	ExitBound       int // the replica's bound of exits per run
	Violations      []string
}

// checker checks the invariants from outside Vigil: containerd's view and
// the workflows' own answers.
type checker struct {
	st       *stack.Stack
	client   client.Client
	rec      *ctrevents.Recorder
	replicas []soakReplica
	logf     func(string, ...any)
	ctd      *containerd.Client
	// killed and uncertain are the injected kills per container (see hits).
	killed    map[string]int
	uncertain map[string]bool
	// reboots are the times of the host reboots (they wipe exited tasks too).
	reboots []time.Time
}

// check judges every replica, retrying those in violation until heal has
// passed: a violation that outlasts it is real.
func (c *checker) check(ctx context.Context, heal time.Duration) ([]row, []string) {
	deadline := time.Now().Add(heal)
	sleepCtx(ctx, min(firstCheckAfter, heal))
	ctd, err := containerd.New(c.st.Containerd.Address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, []string{"containerd: " + err.Error()}
	}
	defer ctd.Close()
	c.ctd = ctd

	rows := make([]row, len(c.replicas))
	done := make([]bool, len(c.replicas))
	for round := 1; ; round++ {
		pending := 0
		for i, r := range c.replicas {
			if done[i] {
				continue
			}
			rows[i] = c.judge(ctx, r)
			if len(rows[i].Violations) == 0 {
				done[i] = true
			} else {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			c.logf("checks done after %d rounds", round)
			break
		}
		sleepCtx(ctx, 3*time.Second)
	}
	var violations []string
	for _, r := range rows {
		for _, v := range r.Violations {
			violations = append(violations, r.Replica+": "+v)
		}
	}
	return rows, violations
}

// judge checks one replica once containerd has been quiet about it for settle.
func (c *checker) judge(ctx context.Context, r soakReplica) row {
	for attempt := 0; ; attempt++ {
		before := c.rec.Of(r.Container)
		if n := len(before); n > 0 && time.Since(before[n-1].At) < settle && attempt < 10 {
			time.Sleep(settle - time.Since(before[n-1].At))
			continue
		}
		out := c.judgeOnce(ctx, r, before)
		if len(c.rec.Of(r.Container)) == len(before) || attempt >= 10 {
			return out
		}
	}
}

func (c *checker) judgeOnce(ctx context.Context, r soakReplica, events []ctrevents.Event) row {
	out := row{Replica: r.ID.Ref(), Behaviour: r.Behaviour.Service}
	fail := func(format string, args ...any) {
		out.Violations = append(out.Violations, fmt.Sprintf(format, args...))
	}
	wid := r.ID.WorkflowID()
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	// The workflow's own view.
	desc, err := c.client.DescribeWorkflowExecution(qctx, wid, "")
	if err != nil {
		fail("describe workflow: %v", err)
		return out
	}
	info := desc.GetWorkflowExecutionInfo()
	status := info.GetStatus()
	out.Workflow = strings.TrimPrefix(status.String(), "WORKFLOW_EXECUTION_STATUS_")
	out.HistoryLength = info.GetHistoryLength()
	wantStatus := enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	if r.Behaviour.Final == string(workflows.StateCompleted) {
		wantStatus = enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	}
	if status != wantStatus {
		fail("workflow is %s, want %s", out.Workflow, strings.TrimPrefix(wantStatus.String(), "WORKFLOW_EXECUTION_STATUS_"))
	}
	for _, pa := range desc.GetPendingActivities() {
		typ := pa.GetActivityType().GetName()
		limit := activityTimeouts[typ] + pendingGrace
		switch pa.GetState() {
		case enumspb.PENDING_ACTIVITY_STATE_STARTED:
			last := pa.GetLastStartedTime().AsTime()
			if hb := pa.GetLastHeartbeatTime().AsTime(); hb.After(last) {
				last = hb
			}
			if age := time.Since(last); age > limit {
				fail("pending activity %s (attempt %d) silent for %s, longer than its timeout %s", typ, pa.GetAttempt(), age.Round(time.Second), activityTimeouts[typ])
			}
		case enumspb.PENDING_ACTIVITY_STATE_SCHEDULED:
			since := pa.GetScheduledTime().AsTime()
			if next := pa.GetNextAttemptScheduleTime(); next != nil && next.AsTime().After(since) {
				since = next.AsTime()
			}
			if age := time.Since(since); age > limit {
				fail("pending activity %s (attempt %d) not picked up for %s", typ, pa.GetAttempt(), age.Round(time.Second))
			}
		}
	}
	// Every run of the supervisor, the finished ones too: each continued as
	// new once it had handled its bound of exits.
	runs, err := histories.Runs(qctx, c.client, wid)
	if err != nil {
		fail("history: %v", err)
	}
	for _, run := range runs {
		for _, f := range taskFailures(run) {
			fail("workflow task failed: %s", f)
		}
	}
	out.Runs, out.ExitBound = len(runs), r.continueAsNewAfter()
	var tooMany []string
	out.MostExitsPerRun, tooMany = continueAsNewBound(runs, out.ExitBound)
	for _, v := range tooMany {
		fail("%s", v)
	}

	resp, err := c.client.QueryWorkflow(qctx, wid, "", replica.QueryState)
	if err != nil {
		fail("state query: %v", err)
		return out
	}
	var v workflows.StateView
	if err := resp.Get(&v); err != nil {
		fail("state query: %v", err)
		return out
	}
	out.State, out.Restarts = string(v.State), v.TotalRestarts

	// containerd's view.
	task := c.task(ctx, r)
	out.Task = task.String()
	out.StartsLog = c.startsInLog(r)
	for _, e := range events {
		if e.Kind == ctrevents.Start {
			out.StartsEvents++
		} else {
			out.Exits++
		}
	}
	gaps := c.rec.Gaps()

	// Every replica whose policy says it should run is running.
	switch {
	case r.Behaviour.ShouldRun:
		switch v.State {
		case workflows.StateRunning:
			if !task.running {
				fail("state Running but containerd's task is %s", task)
			}
		case workflows.StateCrashLoopBackOff:
			if at, ok := v.NextRestart(); !ok {
				fail("CrashLoopBackOff without a restart time")
			} else if time.Since(at) > backoffLate {
				fail("still in CrashLoopBackOff %s after its restart time", time.Since(at).Round(time.Second))
			}
			if task.running {
				fail("CrashLoopBackOff but containerd's task is running")
			}
		default:
			fail("state %s; its policy keeps it running", v.State)
		}
	default:
		if string(v.State) != r.Behaviour.Final {
			fail("state %s, want %s", v.State, r.Behaviour.Final)
			break
		}
		// Completed, Isolated and Shutdown replicas stay as they were.
		if task.running {
			fail("%s but containerd's task is running", v.State)
		}
		if v.LastExitCode == nil {
			fail("%s without a last exit code", v.State)
		} else if task.exists && task.stopped && int(task.code) != *v.LastExitCode {
			fail("%s with last exit %d, but containerd's task exited %d", v.State, *v.LastExitCode, task.code)
		}
		if v.State == workflows.StateCompleted && v.LastExitCode != nil && *v.LastExitCode != 0 {
			fail("Completed after exit code %d", *v.LastExitCode)
		}
		if v.State == workflows.StateIsolated {
			// A reboot takes an exited task too, as on a real host.
			lostInReboot := task.exists && !task.hasTask && c.rebootedSinceStart(events)
			if !lostInReboot && (!task.exists || !task.stopped) {
				fail("isolated container has no exited task (%s)", task)
			}
			if !task.isolatedLabel {
				fail("isolated container lacks the %s=true label", vcontainerd.LabelIsolated)
			}
			if out.StartsLog == 0 {
				fail("isolated container's log is gone")
			}
		}
		if n := len(events); n > 0 && events[n-1].Kind == ctrevents.Start && !c.rec.InGap(events[n-1].At, time.Now()) {
			fail("%s, yet containerd started it again at %s", v.State, events[n-1].At.UTC().Format("15:04:05.000"))
		}
	}

	// No replica was started twice for one crash: every start after the
	// first answers one exit, and the workflow counted each as a restart.
	if v.TotalRestarts != out.StartsLog-1 {
		fail("workflow counts %d restarts; the container was started %d times (its log), so %d restarts", v.TotalRestarts, out.StartsLog, out.StartsLog-1)
	}
	// A healthy replica never exits by itself: each of its restarts answers
	// one of the driver's kills.
	// (The last kill is still unanswered during a crash-loop backoff.)
	out.Hits = c.killed[r.Container]
	answered := out.Hits
	if v.State == workflows.StateCrashLoopBackOff {
		answered--
	}
	if r.Behaviour.Service == "healthy" && !c.uncertain[r.Container] && v.TotalRestarts != answered {
		fail("healthy replica restarted %d times; the driver killed it %d times", v.TotalRestarts, out.Hits)
	}
	if out.StartsEvents != out.StartsLog && len(gaps) == 0 {
		fail("containerd published %d starts; the container's log has %d", out.StartsEvents, out.StartsLog)
	}
	for i := 1; i < len(events); i++ {
		if events[i].Kind == ctrevents.Start && events[i-1].Kind == ctrevents.Start && !c.rec.InGap(events[i-1].At, events[i].At) {
			fail("started at %s and again at %s without an exit between: two tasks for one crash",
				events[i-1].At.UTC().Format("15:04:05.000"), events[i].At.UTC().Format("15:04:05.000"))
		}
	}

	// Each crash-loop backoff lasted at least its configured time, from
	// containerd's exit time to its next start.
	for _, ev := range v.Events {
		if ev.Type != workflows.EventCrashLoopBackOff {
			continue
		}
		exit, start, ok := exitAndNextStart(events, ev.Time)
		if !ok || start.At.Before(ev.Time) {
			// The restart has not happened yet, or its events fell into a
			// gap, or the exit answered has no event (a task lost in a
			// reboot): the start found answered an earlier exit.
			continue
		}
		out.Backoffs++
		took := start.At.Sub(exit.At)
		if out.MinBackoff == 0 || took < out.MinBackoff {
			out.MinBackoff = took
		}
		if took < r.Behaviour.Backoff {
			fail("crash-loop backoff from exit at %s to start at %s lasted %s, less than %s",
				exit.At.UTC().Format("15:04:05.000"), start.At.UTC().Format("15:04:05.000"), took.Round(time.Millisecond), r.Behaviour.Backoff)
		}
	}
	return out
}

// rebootedSinceStart says whether a host reboot came after the container's
// last recorded start.
func (c *checker) rebootedSinceStart(events []ctrevents.Event) bool {
	var last time.Time
	for _, e := range events {
		if e.Kind == ctrevents.Start {
			last = e.At
		}
	}
	for _, at := range c.reboots {
		if at.After(last) {
			return true
		}
	}
	return false
}

// exitAndNextStart finds the exit a backoff decided at decided answered (the
// last exit before it) and the start that followed it.
func exitAndNextStart(events []ctrevents.Event, decided time.Time) (exit, start ctrevents.Event, ok bool) {
	ei := -1
	for i, e := range events {
		if e.Kind == ctrevents.Exit && !e.At.After(decided) {
			ei = i
		}
	}
	if ei < 0 || decided.Sub(events[ei].At) > time.Minute {
		return exit, start, false
	}
	for _, e := range events[ei+1:] {
		if e.Kind == ctrevents.Start {
			return events[ei], e, true
		}
	}
	return exit, start, false
}

// taskView is containerd's view of a replica's container.
type taskView struct {
	exists, hasTask, running, stopped bool
	code                              uint32
	isolatedLabel                     bool
	err                               error
}

func (t taskView) String() string {
	switch {
	case t.err != nil:
		return "error: " + t.err.Error()
	case !t.exists:
		return "no container"
	case !t.hasTask:
		return "no task"
	case t.running:
		return "running"
	case t.stopped:
		return fmt.Sprintf("exited %d", t.code)
	}
	return "other"
}

func (c *checker) task(ctx context.Context, r soakReplica) taskView {
	ctx = namespaces.WithNamespace(ctx, c.st.Containerd.Namespace)
	var v taskView
	ctr, err := c.ctd.LoadContainer(ctx, r.Container)
	if err != nil {
		return v
	}
	v.exists = true
	if labels, err := ctr.Labels(ctx); err == nil {
		v.isolatedLabel = labels[vcontainerd.LabelIsolated] == "true"
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return v
	}
	v.hasTask = true
	st, err := task.Status(ctx)
	if err != nil {
		v.err = err
		return v
	}
	v.running = st.Status == containerd.Running
	v.stopped = st.Status == containerd.Stopped
	v.code = st.ExitStatus
	return v
}

// startsInLog counts the start markers in the container's captured output.
func (c *checker) startsInLog(r soakReplica) int {
	logDir := filepath.Join(c.st.Dir, "logs", c.st.Containerd.Namespace)
	recs, cur, err := ctrlog.Log{Dir: ctrlog.Dir(logDir, r.Container), Legacy: ctrlog.Legacy(logDir, r.Container)}.Read(ctrlog.Query{})
	cur.Close()
	if err != nil {
		return 0
	}
	n := 0
	for _, rec := range recs {
		if strings.HasPrefix(rec.Line, startMarker+" ") {
			n++
		}
	}
	return n
}
