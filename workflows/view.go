package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/metrics"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// setState moves to st and publishes it as a search attribute.
func (s *supervisor) setState(ctx workflow.Context, st State) {
	if s.st.State == st {
		return
	}
	s.st.State = st
	s.publishState(ctx)
}

func (s *supervisor) publishState(ctx workflow.Context) {
	attrs := []temporal.SearchAttributeUpdate{
		SearchAttrState.ValueSet(string(s.st.State)),
		SearchAttrService.ValueSet(s.in.ID.Service),
		SearchAttrDeployment.ValueSet(s.in.ID.Deployment),
	}
	if s.rel >= V030 {
		// The node's reconciliation finds what should run there by it.
		attrs = append(attrs, SearchAttrNode.ValueSet(s.in.Node))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, attrs...); err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not upserted", "error", err)
	}
}

// emit records an event in state and, through the memo, in history. It never blocks.
func (s *supervisor) emit(ctx workflow.Context, typ EventType, exitCode *int) {
	ev := Event{Type: typ}
	if exitCode != nil {
		code := *exitCode
		ev.ExitCode = &code
		if s.st.LastExitReason != "" {
			reason := string(s.st.LastExitReason)
			ev.Reason = &reason
		}
	}
	s.emitEvent(ctx, ev)
}

// emitEvent stamps ev with the time and the restart count and records it.
func (s *supervisor) emitEvent(ctx workflow.Context, ev Event) {
	ev.Time, ev.RestartCount = workflow.Now(ctx), s.st.TotalRestarts
	s.st.Events = append(s.st.Events, ev)
	if n := len(s.st.Events); n > maxEvents {
		s.st.Events = append([]Event(nil), s.st.Events[n-maxEvents:]...)
	}
	workflow.GetLogger(ctx).Info("supervision event", "event", string(ev.Type), "restart_count", ev.RestartCount)
	if err := workflow.UpsertMemo(ctx, map[string]any{replica.MemoLastEvent: ev}); err != nil {
		workflow.GetLogger(ctx).Warn("event not recorded in memo", "error", err)
	}
}

// metric is the workflow's metrics handler tagged with this replica's
// service (and reason, when given). The SDK skips it during replay, so every
// decision is counted once.
func (s *supervisor) metric(ctx workflow.Context, reason string) client.MetricsHandler {
	tags := map[string]string{metrics.LabelDeployment: s.in.ID.Deployment, metrics.LabelService: s.in.ID.Service}
	if reason != "" {
		tags[metrics.LabelReason] = reason
	}
	return workflow.GetMetricsHandler(ctx).WithTags(tags)
}

func (s *supervisor) details(ctx workflow.Context, what string) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s — %s, %d restarts", s.in.ID.Ref(), what, s.st.TotalRestarts))
}

// view renders the state for the "state" query.
func (s *supervisor) view() StateView {
	v := StateView{
		ID:              s.in.ID.Ref(),
		Deployment:      s.in.ID.Deployment,
		Service:         s.in.ID.Service,
		Replica:         s.in.ID.Replica,
		Node:            s.in.Node,
		State:           s.st.State,
		PanicAction:     string(s.in.Policy.Action),
		TotalRestarts:   s.st.TotalRestarts,
		RestartTimes:    make([]string, 0, len(s.st.History.RestartTimes)),
		LastExitCode:    s.st.LastExitCode,
		SupervisedSince: formatTime(s.st.SupervisedSince),
		Events:          append([]Event{}, s.st.Events...),
		Generation:      s.st.Generation,
		LastExitReason:  nonEmpty(string(s.st.LastExitReason)),
		LastExitSignal:  nonEmpty(s.st.LastExitSignal),
		HealthDetail:    nonEmpty(s.st.HealthDetail),
		LastRule:        s.st.LastRule,
	}
	if s.st.State == StateShutdown {
		v.ShutdownBy = nonEmpty(s.st.ShutdownBy)
	}
	if h := s.in.Spec.Health; h != nil && (h.Liveness != nil || h.Startup != nil) {
		health := string(s.st.Health)
		if health == "" {
			health = string(runtime.HealthStarting)
		}
		v.Health = &health
	}
	for _, t := range s.st.History.RestartTimes {
		v.RestartTimes = append(v.RestartTimes, formatTime(t))
	}
	if s.st.State == StateCrashLoopBackOff && !s.st.NextRestartAt.IsZero() {
		at := formatTime(s.st.NextRestartAt)
		v.NextRestartAt = &at
	}
	if s.st.NodeState != "" {
		v.NodeState, v.NodeSince = nonEmpty(string(s.st.NodeState)), nonEmpty(formatTime(s.st.NodeSince))
	}
	if s.st.State == StateRunning && !s.st.TaskStartedAt.IsZero() {
		v.RunningSince = nonEmpty(formatTime(s.st.TaskStartedAt))
	}
	if n := s.st.Network; n != nil {
		v.IP, v.Ports = n.IP, append([]runtime.PortMapping(nil), n.Ports...)
	}
	sec := s.in.Spec.Security.Effective()
	v.Security = &sec
	return v
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// NextRestart is the end of the crash-loop backoff in progress, as the view
// carries it (formatTime); ok is false when there is none.
func (v StateView) NextRestart() (at time.Time, ok bool) {
	if v.NextRestartAt == nil {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, *v.NextRestartAt)
	return at, err == nil
}

// nonEmpty is s, or nil (JSON null) when s is empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// human writes a duration the way a deployment file does: 60s, 5m, 1h30m.
func human(d time.Duration) string { return humanjson.Format(d) }
