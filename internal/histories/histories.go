// Package histories records the workflow histories that make test replays
// (workflows/testdata/histories/<release>/<scenario>.json): each scenario
// drives a real stack (private containerd, Temporal dev server, the worker and
// CLI of one release) into one situation and names the workflow runs to keep.
// tools/record-histories runs it, by hand, once per release.
package histories

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/workflows"
)

// Env is what a scenario drives: a stack running one release's worker and CLI.
type Env struct {
	Stack   *stack.Stack
	Client  client.Client
	Release string
	Logf    func(format string, args ...any)
}

// Capture names one workflow run whose history is written as <File>.json. An
// open run is written as it stands once its history has settled (no workflow
// task pending): a live state, as a new worker would find it.
type Capture struct {
	File       string
	WorkflowID string
	RunID      string // "" for the current run
}

// Scenario drives the stack into one situation and returns the runs to record.
type Scenario struct {
	Name string
	// Since is the first release whose worker and CLI can play the scenario
	// (a scenario for a new feature is recorded from its release on).
	Since string
	// Run uses dep as its deployment name, so scenarios run side by side.
	Run func(ctx context.Context, e *Env, dep string) ([]Capture, error)
}

// Record fetches the run's history once it has settled and writes it under dir.
func Record(ctx context.Context, e *Env, c Capture, dir string) (events int, err error) {
	h, err := e.SettledHistory(ctx, c.WorkflowID, c.RunID)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", c.File, err)
	}
	data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		return 0, err
	}
	return len(h.Events), os.WriteFile(filepath.Join(dir, c.File+".json"), append(data, '\n'), 0o644)
}

// History returns a run's history as it stands.
func (e *Env) History(ctx context.Context, workflowID, runID string) (*historypb.History, error) {
	return Read(ctx, e.Client, workflowID, runID)
}

// Read returns one run's whole history as it stands ("" for the current run).
func Read(ctx context.Context, c client.Client, workflowID, runID string) (*historypb.History, error) {
	iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		h.Events = append(h.Events, ev)
	}
	return h, nil
}

// Runs returns the histories of every run of a workflow, oldest first: the
// current run, then each run it continued, found through the run ID its
// start event names.
func Runs(ctx context.Context, c client.Client, workflowID string) ([]*historypb.History, error) {
	var runs []*historypb.History
	for runID := ""; ; {
		h, err := Read(ctx, c, workflowID, runID)
		if err != nil {
			return nil, err
		}
		if len(h.GetEvents()) == 0 {
			return nil, fmt.Errorf("history of %s (run %q) is empty", workflowID, runID)
		}
		runs = append(runs, h)
		runID = h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		if runID == "" {
			slices.Reverse(runs)
			return runs, nil
		}
	}
}

// SettledHistory waits until no workflow task is pending and the history has
// not grown for a second, then returns it.
func (e *Env) SettledHistory(ctx context.Context, workflowID, runID string) (*historypb.History, error) {
	last := -1
	for {
		h, err := e.History(ctx, workflowID, runID)
		if err != nil {
			return nil, err
		}
		n := len(h.Events)
		if n > 0 && n == last && !pendingTask(h) {
			return h, nil
		}
		last = n
		if err := sleep(ctx, time.Second); err != nil {
			return nil, fmt.Errorf("history of %s did not settle: %w", workflowID, err)
		}
	}
}

func pendingTask(h *historypb.History) bool {
	switch h.Events[len(h.Events)-1].GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
		return true
	}
	return false
}

// WaitHistory polls a run's history until cond holds.
func (e *Env) WaitHistory(ctx context.Context, workflowID, what string, cond func(*historypb.History) bool) error {
	for {
		h, err := e.History(ctx, workflowID, "")
		if err == nil && cond(h) {
			return nil
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return fmt.Errorf("%s: %s: %w", workflowID, what, err)
		}
	}
}

// WaitState polls `vigil status --json` until cond holds.
func (e *Env) WaitState(ctx context.Context, ref, what string, cond func(workflows.StateView) bool) (workflows.StateView, error) {
	limit := time.Until(deadline(ctx))
	return e.Stack.WaitFor(ref, what, limit, cond)
}

// WaitClosed waits for a workflow to close (following continued runs). It
// may not exist yet: since v0.3.0, `vigil supervise` returns once the
// deployment's workflow has the file, which then starts the replicas.
func (e *Env) WaitClosed(ctx context.Context, workflowID string) error {
	for {
		err := e.Client.GetWorkflow(ctx, workflowID, "").Get(ctx, nil)
		var notFound *serviceerror.NotFound
		if !errors.As(err, &notFound) {
			return err
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("%s was never started: %w", workflowID, err)
		}
	}
}

// Vigil runs the release's CLI and fails on a non-zero exit.
func (e *Env) Vigil(args ...string) (string, error) {
	r, err := e.Stack.Vigil(args...)
	if err != nil {
		return "", err
	}
	if r.Code != 0 {
		return "", fmt.Errorf("vigil %s: exit %d: %s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout, nil
}

// Update runs an update command of the release's CLI (release, restart,
// unsupervise), trying again a few times: an update that meets a workflow
// task the server rejects (a new event arrived meanwhile) fails with
// "unexpected workflow task failure" and is meant to be retried.
func (e *Env) Update(ctx context.Context, args ...string) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if _, err = e.Vigil(args...); err == nil {
			return nil
		}
		if serr := sleep(ctx, time.Second); serr != nil {
			break
		}
	}
	return err
}

// Supervise writes a deployment file and supervises it with the release's CLI.
func (e *Env) Supervise(dep, yaml string) error {
	p, err := e.Stack.Deployment(dep, yaml)
	if err != nil {
		return err
	}
	return e.Stack.Supervise(p)
}

// CountActivities counts events of type typ for activity name (scheduled
// events carry the name; other events are matched through their scheduled event).
func CountActivities(h *historypb.History, name string, typ enumspb.EventType) int {
	scheduled := map[int64]string{}
	n := 0
	for _, ev := range h.Events {
		var sid int64
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			sid = ev.GetEventId()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			sid = ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			sid = ev.GetActivityTaskFailedEventAttributes().GetScheduledEventId()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			sid = ev.GetActivityTaskCanceledEventAttributes().GetScheduledEventId()
		default:
			continue
		}
		if ev.GetEventType() == typ && scheduled[sid] == name {
			n++
		}
	}
	return n
}

// CountEvents counts the history's events of type typ.
func CountEvents(h *historypb.History, typ enumspb.EventType) int {
	n := 0
	for _, ev := range h.Events {
		if ev.GetEventType() == typ {
			n++
		}
	}
	return n
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(5 * time.Minute)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
