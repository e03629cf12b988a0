package main

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// exitsHandled counts the exits one run of a replica's supervisor acted on,
// judged in the order it was told of them (the node watch's exit signals,
// the exits the previous run passed on, a start that found its task exited)
// as the supervisor's current() judges a report (soaks run this release's
// supervisor): not of another task (PID); if the report names its task by
// its start, that of the task last started, else after that start's
// NotBefore; and not the last exit acted on, nor older, nor another report
// of the current task once an exit after its start was acted on. Less the
// exits it passed on to the next run. A report a new node watch repeats
// does not count. (Two reports queued together are acted on earliest first; counted
// in order, the earlier one arriving second is missed: the count errs low.)
func exitsHandled(run *historypb.History) (int, error) {
	dc := humanjson.DataConverter()
	var last, watchAfter, taskStarted time.Time
	var pid uint32
	seen := map[time.Time]bool{}
	passedOn := map[time.Time]bool{}
	tell := func(e activities.ExitReport) {
		if e.PID != 0 && pid != 0 && e.PID != pid {
			return // another task's, e.g. a half-made one a start killed
		}
		if last.After(watchAfter) && (e.PID != 0 && e.PID == pid || !e.StartedAt.IsZero() && e.StartedAt.Equal(taskStarted)) {
			return // a task exits once: another report of an exit acted on
		}
		current := e.ExitedAt.After(watchAfter)
		if !e.StartedAt.IsZero() && !taskStarted.IsZero() {
			current = e.StartedAt.Equal(taskStarted)
		}
		if current && e.ExitedAt.After(last) {
			seen[e.ExitedAt.UTC()] = true
			last = e.ExitedAt
		}
	}
	activity := map[int64]string{} // scheduled event ID -> activity type
	for _, ev := range run.GetEvents() {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			var in workflows.SupervisionInput
			if err := dc.FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
				return 0, fmt.Errorf("event %d: input: %w", ev.GetEventId(), err)
			}
			if c := in.Carry; c != nil {
				last, watchAfter, taskStarted, pid = c.LastExitAt, c.WatchAfter, c.TaskStartedAt, c.TaskPID
				for _, e := range c.PendingExits {
					tell(e)
				}
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			activity[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			a := ev.GetActivityTaskCompletedEventAttributes()
			if activity[a.GetScheduledEventId()] != replica.EnsureRunningName {
				continue
			}
			var res activities.EnsureRunningResult
			if err := dc.FromPayloads(a.GetResult(), &res); err != nil {
				return 0, fmt.Errorf("event %d: start result: %w", ev.GetEventId(), err)
			}
			if res.ExitedSince {
				tell(activities.ExitReport{Exit: res.Exit()})
				continue
			}
			taskStarted, pid = res.StartedAt, res.PID
			if !res.NotBefore.IsZero() {
				watchAfter = res.NotBefore
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			a := ev.GetWorkflowExecutionSignaledEventAttributes()
			if a.GetSignalName() != replica.SignalExit {
				continue
			}
			var e activities.ExitReport
			if err := dc.FromPayloads(a.GetInput(), &e); err != nil {
				continue // corrupt (a fault sends some): the supervisor skips it too
			}
			tell(e)
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
			var next workflows.SupervisionInput
			if err := dc.FromPayloads(ev.GetWorkflowExecutionContinuedAsNewEventAttributes().GetInput(), &next); err != nil {
				return 0, fmt.Errorf("event %d: next run's input: %w", ev.GetEventId(), err)
			}
			if next.Carry != nil {
				for _, e := range next.Carry.PendingExits {
					passedOn[e.ExitedAt.UTC()] = true
				}
			}
		}
	}
	n := 0
	for at := range seen {
		if !passedOn[at] {
			n++
		}
	}
	return n, nil
}

// continueAsNewBound checks that no run of a supervisor handled more than
// bound exits (it continues as new once it has handled bound). It returns
// the most exits one run handled.
func continueAsNewBound(runs []*historypb.History, bound int) (most int, violations []string) {
	for i, run := range runs {
		n, err := exitsHandled(run)
		if err != nil {
			violations = append(violations, fmt.Sprintf("run %d of %d: %v", i+1, len(runs), err))
			continue
		}
		most = max(most, n)
		if n > bound {
			violations = append(violations, fmt.Sprintf("run %d of %d (%s) handled %d exits; it should have continued as new after %d",
				i+1, len(runs), runID(run), n, bound))
		}
	}
	return most, violations
}

// taskFailures lists a run's failed workflow tasks (a panic or
// nondeterminism in the workflow code; a task that timed out with a killed
// worker is not a failure), except those the server causes by design.
func taskFailures(run *historypb.History) []string {
	var out []string
	for _, ev := range run.GetEvents() {
		if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil && !benignTaskFailure[a.GetCause()] {
			out = append(out, fmt.Sprintf("run %s, event %d: %s: %s", runID(run), ev.GetEventId(), a.GetCause(), a.GetFailure().GetMessage()))
		}
	}
	return out
}

// benignTaskFailure: workflow task failures the server causes by design
// (a sticky queue reset after a worker died, a signal or update arriving
// while a task completes).
var benignTaskFailure = map[enumspb.WorkflowTaskFailedCause]bool{
	enumspb.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE: true,
	enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:       true,
}

// runID names a run by its first execution's run ID, as the start event has it.
func runID(run *historypb.History) string {
	if evs := run.GetEvents(); len(evs) > 0 {
		return evs[0].GetWorkflowExecutionStartedEventAttributes().GetOriginalExecutionRunId()
	}
	return "?"
}
