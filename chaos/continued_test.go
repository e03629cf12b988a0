package main

import (
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// synthRun builds one supervisor run's history: its start (carrying last and
// pending), an exit signal per exit time, and, when next is not nil, its
// continuation carrying next.
type synthRun struct {
	t   *testing.T
	evs []*historypb.HistoryEvent
}

func payload(t *testing.T, v any) *commonpb.Payloads {
	t.Helper()
	p, err := humanjson.DataConverter().ToPayloads(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *synthRun) add(typ enumspb.EventType, set func(*historypb.HistoryEvent)) *synthRun {
	ev := &historypb.HistoryEvent{EventId: int64(len(r.evs) + 1), EventType: typ}
	set(ev)
	r.evs = append(r.evs, ev)
	return r
}

func started(t *testing.T, carry *workflows.Carry) *synthRun {
	r := &synthRun{t: t}
	return r.add(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{
			Input: payload(t, workflows.SupervisionInput{Carry: carry}), OriginalExecutionRunId: "run"}}
	})
}

func (r *synthRun) signal(name string, at time.Time) *synthRun {
	return r.add(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			SignalName: name, Input: payload(r.t, activities.ExitReport{Exit: runtime.Exit{ExitCode: 3, ExitedAt: at}})}}
	})
}

// start adds a completed EnsureRunning with its result.
func (r *synthRun) start(res activities.EnsureRunningResult) *synthRun {
	r.add(enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{
			ActivityType: &commonpb.ActivityType{Name: replica.EnsureRunningName}}}
	})
	scheduled := int64(len(r.evs))
	return r.add(enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{
			ScheduledEventId: scheduled, Result: payload(r.t, res)}}
	})
}

// report adds an exit signal.
func (r *synthRun) report(e runtime.Exit) *synthRun {
	return r.add(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			SignalName: replica.SignalExit, Input: payload(r.t, activities.ExitReport{Exit: e})}}
	})
}

// corruptExit adds an exit signal whose payload decodes into no report.
func (r *synthRun) corruptExit() *synthRun {
	return r.add(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			SignalName: replica.SignalExit, Input: payload(r.t, corrupt)}}
	})
}

// exitOf adds an exit signal of the task with pid.
func (r *synthRun) exitOf(pid uint32, at time.Time) *synthRun {
	return r.report(runtime.Exit{ExitCode: 3, ExitedAt: at, PID: pid})
}

func (r *synthRun) exits(at ...time.Time) *synthRun {
	for _, a := range at {
		r.signal(replica.SignalExit, a)
	}
	return r
}

func (r *synthRun) continued(next workflows.Carry) *historypb.History {
	r.add(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, func(ev *historypb.HistoryEvent) {
		ev.Attributes = &historypb.HistoryEvent_WorkflowExecutionContinuedAsNewEventAttributes{WorkflowExecutionContinuedAsNewEventAttributes: &historypb.WorkflowExecutionContinuedAsNewEventAttributes{
			Input: payload(r.t, workflows.SupervisionInput{Carry: &next})}}
	})
	return r.open()
}

func (r *synthRun) open() *historypb.History { return &historypb.History{Events: r.evs} }

func TestContinueAsNewBound(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const bound = 3
	cases := []struct {
		name string
		runs []*historypb.History
		most int
		fail string // "" if the bound held
	}{
		{"a run over the bound", []*historypb.History{
			started(t, nil).exits(at(1), at(2), at(3), at(4)).open(),
		}, 4, "run 1 of 1 (run) handled 4 exits; it should have continued as new after 3"},
		{"runs at the bound, each continued", []*historypb.History{
			started(t, nil).exits(at(1), at(2), at(3)).continued(workflows.Carry{LastExitAt: at(3)}),
			started(t, &workflows.Carry{LastExitAt: at(3)}).exits(at(4), at(5)).open(),
		}, 3, ""},
		{"repeated and stale reports count once or not at all", []*historypb.History{
			started(t, nil).exits(at(1), at(2), at(3)).continued(workflows.Carry{LastExitAt: at(3)}),
			// A new node watch reports the last run's exit again, and one twice.
			started(t, &workflows.Carry{LastExitAt: at(3)}).exits(at(3), at(4), at(4), at(5), at(6)).open(),
		}, 3, ""},
		{"an exit passed on counts in the run that acts on it", []*historypb.History{
			started(t, nil).exits(at(1), at(2), at(3), at(4)).continued(workflows.Carry{LastExitAt: at(3),
				PendingExits: []activities.ExitReport{{Exit: runtime.Exit{ExitedAt: at(4)}}}}),
			started(t, &workflows.Carry{LastExitAt: at(3), PendingExits: []activities.ExitReport{{Exit: runtime.Exit{ExitedAt: at(4)}}}}).
				exits(at(5), at(6)).open(),
		}, 3, ""},
		{"a corrupt exit signal is skipped, as the supervisor skips it", []*historypb.History{
			started(t, nil).exits(at(1)).corruptExit().exits(at(2)).open(),
		}, 2, ""},
		{"other signals are not exits", []*historypb.History{
			started(t, nil).exits(at(1), at(2)).signal("something-else", at(3)).signal("another", at(4)).open(),
		}, 2, ""},
		{"an exit of another task than the one started does not count", []*historypb.History{
			started(t, nil).start(activities.EnsureRunningResult{PID: 10}).exitOf(10, at(1)).
				start(activities.EnsureRunningResult{PID: 11, NotBefore: at(2)}).
				exitOf(12, at(3)). // a half-made task the start killed
				exitOf(11, at(4)).start(activities.EnsureRunningResult{PID: 13, NotBefore: at(5)}).
				exitOf(0, at(4)). // before the start: an older task's
				exitOf(13, at(6)).open(),
		}, 3, ""},
		{"a report older than the exit acted on does not count", []*historypb.History{
			// As a soak saw it: a killed task's exit, then a report of a
			// failure (no PID) timed before it but after the task started.
			started(t, nil).start(activities.EnsureRunningResult{PID: 10, NotBefore: at(1)}).
				exitOf(10, at(4)).exitOf(0, at(2)).exitOf(0, at(2)).open(),
		}, 1, ""},
		{"a report that names the task started counts, whatever the clocks", []*historypb.History{
			// An adopted task: its start label is older than the start's NotBefore.
			started(t, nil).start(activities.EnsureRunningResult{StartedAt: at(1), NotBefore: at(5)}).
				report(runtime.Exit{StartedAt: at(1), ExitedAt: at(4)}).
				start(activities.EnsureRunningResult{StartedAt: at(6), NotBefore: at(6)}).
				report(runtime.Exit{StartedAt: at(6), ExitedAt: at(8)}).open(),
		}, 2, ""},
		{"another report of a task whose exit was acted on does not count", []*historypb.History{
			started(t, nil).start(activities.EnsureRunningResult{PID: 10, StartedAt: at(1), NotBefore: at(1)}).
				exitOf(10, at(2)).
				exitOf(10, at(4)). // the start after it deleted the task: reported again, SIGKILLed
				start(activities.EnsureRunningResult{ExitedSince: true, ExitedAt: at(5)}).open(),
		}, 2, ""},
		{"a report that names another task does not count, whatever the clocks", []*historypb.History{
			started(t, nil).start(activities.EnsureRunningResult{StartedAt: at(6), NotBefore: at(6)}).
				report(runtime.Exit{StartedAt: at(1), ExitedAt: at(7)}).open(),
		}, 0, ""},
		{"a start that finds its task exited is an exit", []*historypb.History{
			started(t, nil).exits(at(1), at(2), at(3)).
				start(activities.EnsureRunningResult{ExitedSince: true, ExitedAt: at(4)}).open(),
		}, 4, "run 1 of 1 (run) handled 4 exits"},
		{"the second run over the bound", []*historypb.History{
			started(t, nil).exits(at(1)).continued(workflows.Carry{LastExitAt: at(1)}),
			started(t, &workflows.Carry{LastExitAt: at(1)}).exits(at(2), at(3), at(4), at(5), at(6)).open(),
		}, 5, "run 2 of 2 (run) handled 5 exits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			most, violations := continueAsNewBound(tc.runs, bound)
			if most != tc.most {
				t.Errorf("most exits per run %d, want %d", most, tc.most)
			}
			switch {
			case tc.fail == "" && len(violations) > 0:
				t.Errorf("violations %q, want none", violations)
			case tc.fail != "" && (len(violations) != 1 || !strings.HasPrefix(violations[0], tc.fail)):
				t.Errorf("violations %q, want one starting %q", violations, tc.fail)
			}
		})
	}
}
