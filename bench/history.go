package main

import (
	"context"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

func historyEvents(ctx context.Context, c client.Client, wfID string) ([]*historypb.HistoryEvent, error) {
	h, err := histories.Read(ctx, c, wfID, "")
	return h.GetEvents(), err
}

// historyLengths is the total number of events in the current runs of wfIDs.
func historyLengths(ctx context.Context, c client.Client, wfIDs []string) (int, error) {
	total := 0
	for _, id := range wfIDs {
		resp, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return 0, err
		}
		total += int(resp.GetWorkflowExecutionInfo().GetHistoryLength())
	}
	return total, nil
}

// Breakdown is where a restart's time goes, in medians over the measured
// cycles, from containerd's timestamps and the history's event times.
type Breakdown struct {
	Cycles int `json:"cycles"`
	// Exit -> WaitForExit's ActivityTaskCompleted (v0.1.0) or the node watch's
	// exit signal (v0.2.0): noticing the exit and reporting it.
	ExitToReported float64 `json:"exit_to_watch_completed_ms"`
	// -> WorkflowTaskStarted: the first handoff (server -> workflow worker).
	ReportedToDecision float64 `json:"watch_completed_to_workflow_task_started_ms"`
	// WorkflowTaskStarted -> Completed: the workflow's own work (policy.Decide, commands).
	Decision float64 `json:"workflow_task_ms"`
	// WorkflowTaskCompleted -> EnsureRunning's ActivityTaskStarted: the second handoff.
	DecisionToStart float64 `json:"workflow_task_completed_to_start_activity_started_ms"`
	// EnsureRunning started -> containerd's TaskStart: the runtime's work.
	StartActivityToTask float64 `json:"start_activity_started_to_task_start_ms"`
	// Sum of the medians (close to, but not exactly, the median total).
	Sum float64 `json:"sum_of_medians_ms"`
	// After the task started (not part of the latency): EnsureRunning's tail
	// and the third handoff to the next WaitForExit.
	TaskToStartCompleted  float64 `json:"task_start_to_start_activity_completed_ms"`
	StartCompletedToWatch float64 `json:"start_completed_to_watch_started_ms"`
	// Trouble counts what went wrong meanwhile (storm and worker loss only):
	// retried activity attempts, timed-out or failed tasks, retry timers.
	Trouble map[string]int `json:"trouble,omitempty"`
}

// HistoryResult is history growth in a crash loop.
type HistoryResult struct {
	EventsPerRestart      float64 `json:"events_per_restart"`
	WorkflowTasksPerCycle float64 `json:"workflow_tasks_per_restart"`
	ActivitiesPerCycle    float64 `json:"activities_per_restart"`
	// A run continues as new after workflows.DefaultContinueAsNewAfter exits.
	ContinueAsNewEveryRestarts int `json:"continue_as_new_every_restarts"`
	EventsPerRun               int `json:"events_per_run_approx"`
}

type cycle struct {
	exit, watchDone, wtStarted, wtDone, startStarted, startDone, watchStarted time.Time
	startSched                                                                int64
}

// analyseHistory walks a crash-loop history.
func analyseHistory(events []*historypb.HistoryEvent, te *taskEvents, container string) (*Breakdown, *HistoryResult) {
	cycles, watchDoneIdx, wtIdx, schedIdx := historyCycles(events)
	b := breakdown(cycles, te, container, time.Time{})
	h := &HistoryResult{ContinueAsNewEveryRestarts: workflows.DefaultContinueAsNewAfter}
	if n := len(watchDoneIdx); n >= 2 {
		span := float64(n - 1)
		h.EventsPerRestart = round1(float64(watchDoneIdx[n-1]-watchDoneIdx[0]) / span)
		first, last := watchDoneIdx[0], watchDoneIdx[n-1]
		h.WorkflowTasksPerCycle = round1(float64(countBetween(wtIdx, first, last)) / span)
		h.ActivitiesPerCycle = round1(float64(countBetween(schedIdx, first, last)) / span)
		h.EventsPerRun = int(h.EventsPerRestart * float64(h.ContinueAsNewEveryRestarts))
	}
	return b, h
}

// historyCycles splits a history into restart cycles (a cycle runs from one
// WaitForExit completion to the next), with the indices of the watch
// completions, workflow task completions and activity schedulings.
func historyCycles(events []*historypb.HistoryEvent) (cycles []*cycle, watchDoneIdx, wtIdx, schedIdx []int) {
	actType := map[int64]string{}
	var cur *cycle
	for i, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			name := ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			actType[ev.GetEventId()] = name
			if cur != nil && name == replica.EnsureRunningName && cur.startSched == 0 {
				cur.startSched = ev.GetEventId()
			}
			schedIdx = append(schedIdx, i)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			id := ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()
			if cur != nil && id == cur.startSched {
				cur.startStarted = at
			}
			if cur != nil && actType[id] == replica.WaitForExitName && !cur.startDone.IsZero() {
				cur.watchStarted = at
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			attrs := ev.GetActivityTaskCompletedEventAttributes()
			switch actType[attrs.GetScheduledEventId()] {
			case replica.WaitForExitName:
				var res runtime.Exit
				_ = converter.GetDefaultDataConverter().FromPayloads(attrs.GetResult(), &res)
				cur = &cycle{exit: res.ExitedAt, watchDone: at}
				cycles = append(cycles, cur)
				watchDoneIdx = append(watchDoneIdx, i)
			case replica.EnsureRunningName:
				if cur != nil && attrs.GetScheduledEventId() == cur.startSched {
					cur.startDone = at
				}
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			// The node watch's report (v0.2.0): the exit reaches the workflow
			// as a signal; a report of an exit already seen starts no cycle.
			attrs := ev.GetWorkflowExecutionSignaledEventAttributes()
			if attrs.GetSignalName() != replica.SignalExit {
				break
			}
			var rep activities.ExitReport
			_ = converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &rep)
			if cur != nil && !rep.ExitedAt.After(cur.exit) {
				break
			}
			cur = &cycle{exit: rep.ExitedAt, watchDone: at}
			cycles = append(cycles, cur)
			watchDoneIdx = append(watchDoneIdx, i)
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if cur != nil && cur.wtStarted.IsZero() {
				cur.wtStarted = at
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if cur != nil && cur.wtDone.IsZero() {
				cur.wtDone = at
			}
			wtIdx = append(wtIdx, i)
		}
	}
	return cycles, watchDoneIdx, wtIdx, schedIdx
}

// breakdown aggregates the complete cycles whose exit is at or after since.
func breakdown(cycles []*cycle, te *taskEvents, container string, since time.Time) *Breakdown {
	b := &Breakdown{}
	var exitRep, repDec, dec, decStart, startTask, taskDone, doneWatch []time.Duration
	for _, c := range cycles {
		// The last watch has no started event until it completes.
		if c.startStarted.IsZero() || c.startDone.IsZero() || c.exit.IsZero() || c.exit.Before(since) {
			continue
		}
		task, ok := te.startsAfter(container, c.exit)
		if !ok || task.After(c.startDone) {
			continue
		}
		b.Cycles++
		exitRep = append(exitRep, c.watchDone.Sub(c.exit))
		repDec = append(repDec, c.wtStarted.Sub(c.watchDone))
		dec = append(dec, c.wtDone.Sub(c.wtStarted))
		decStart = append(decStart, c.startStarted.Sub(c.wtDone))
		startTask = append(startTask, task.Sub(c.startStarted))
		taskDone = append(taskDone, c.startDone.Sub(task))
		if !c.watchStarted.IsZero() {
			doneWatch = append(doneWatch, c.watchStarted.Sub(c.startDone))
		}
	}
	b.ExitToReported = median(exitRep)
	b.ReportedToDecision = median(repDec)
	b.Decision = median(dec)
	b.DecisionToStart = median(decStart)
	b.StartActivityToTask = median(startTask)
	b.Sum = round1(b.ExitToReported + b.ReportedToDecision + b.Decision + b.DecisionToStart + b.StartActivityToTask)
	b.TaskToStartCompleted = median(taskDone)
	b.StartCompletedToWatch = median(doneWatch)
	return b
}

// stormBreakdown is where the time of the cycles after since went, over
// many workflows (one cycle each): per phase, the median over workflows.
func stormBreakdown(ctx context.Context, c client.Client, te *taskEvents, wfIDs, names []string, since time.Time) (*Breakdown, error) {
	var all []*cycle
	var owners []string
	trouble := map[string]int{}
	for i, id := range wfIDs {
		events, err := historyEvents(ctx, c, id)
		if err != nil {
			return nil, err
		}
		countTrouble(events, since, trouble)
		cycles, _, _, _ := historyCycles(events)
		for _, cy := range cycles {
			all = append(all, cy)
			owners = append(owners, names[i])
		}
	}
	// breakdown pairs each cycle with its own container's start.
	var parts []*Breakdown
	for i, cy := range all {
		if b := breakdown([]*cycle{cy}, te, owners[i], since); b.Cycles > 0 {
			parts = append(parts, b)
		}
	}
	b := mergeBreakdowns(parts)
	b.Trouble = trouble
	return b, nil
}

// countTrouble counts, from since on, what shows a restart did not go
// straight through: retried attempts, timeouts, failures, retry timers.
func countTrouble(events []*historypb.HistoryEvent, since time.Time, into map[string]int) {
	for _, ev := range events {
		if ev.GetEventTime().AsTime().Before(since) {
			continue
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if a := ev.GetActivityTaskStartedEventAttributes().GetAttempt(); a > 1 {
				into["activity attempts after the first"] += int(a - 1)
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			// ScheduleToStart: it waited out the sticky queue's timeout.
			kind := ev.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType().String()
			into["workflow task timed out "+strings.ToLower(strings.TrimPrefix(kind, "TIMEOUT_TYPE_"))]++
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED, enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
			enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED, enumspb.EVENT_TYPE_TIMER_STARTED:
			into[strings.ToLower(strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_"))]++
		}
	}
}

// mergeBreakdowns is the per-phase median of several breakdowns.
func mergeBreakdowns(bs []*Breakdown) *Breakdown {
	out := &Breakdown{}
	fields := func(b *Breakdown) []*float64 {
		return []*float64{&b.ExitToReported, &b.ReportedToDecision, &b.Decision, &b.DecisionToStart,
			&b.StartActivityToTask, &b.TaskToStartCompleted, &b.StartCompletedToWatch}
	}
	for i, dst := range fields(out) {
		var vals []time.Duration
		for _, b := range bs {
			if v := *fields(b)[i]; v != 0 {
				vals = append(vals, time.Duration(v*float64(time.Millisecond)))
			}
		}
		*dst = median(vals)
	}
	for _, b := range bs {
		out.Cycles += b.Cycles
	}
	out.Sum = round1(out.ExitToReported + out.ReportedToDecision + out.Decision + out.DecisionToStart + out.StartActivityToTask)
	return out
}

func median(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return round1(float64(s[len(s)/2].Microseconds()) / 1000)
}

// countBetween counts the indices in (from, to].
func countBetween(idx []int, from, to int) int {
	n := 0
	for _, i := range idx {
		if i > from && i <= to {
			n++
		}
	}
	return n
}
