package containerd

import (
	"testing"
	"time"

	"github.com/vigil-run/vigil/runtime"
)

func TestExplain(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	killed := runtime.Exited(137, t0.Add(time.Minute))
	tests := []struct {
		name   string
		st     runtime.ContainerState
		labels map[string]string
		want   runtime.ExitReason
	}{
		{"plain exit", runtime.Exited(3, t0), map[string]string{LabelStartedAt: ts(0)}, runtime.ExitExited},
		{"signal", killed, map[string]string{LabelStartedAt: ts(0)}, runtime.ExitSignaled},
		{"oom of this task", killed, map[string]string{LabelStartedAt: ts(0), LabelOOMAt: ts(time.Second)}, runtime.ExitOOMKilled},
		{"oom of an earlier task", killed, map[string]string{LabelStartedAt: ts(0), LabelOOMAt: ts(-time.Second)}, runtime.ExitSignaled},
		{"unhealthy of this task", runtime.Exited(143, t0), map[string]string{LabelStartedAt: ts(0), LabelUnhealthyAt: ts(time.Second)}, runtime.ExitUnhealthy},
		{"unhealthy wins over oom", killed, map[string]string{LabelStartedAt: ts(0), LabelOOMAt: ts(2 * time.Second), LabelUnhealthyAt: ts(time.Second)}, runtime.ExitUnhealthy},
		{"unhealthy of an earlier task", runtime.Exited(0, t0), map[string]string{LabelStartedAt: ts(0), LabelUnhealthyAt: ts(-time.Second)}, runtime.ExitExited},
		{"bad label", killed, map[string]string{LabelStartedAt: ts(0), LabelOOMAt: "soon"}, runtime.ExitSignaled},
		{"running is left alone", runtime.Running(), map[string]string{LabelOOMAt: ts(0)}, ""},
	}
	for _, tc := range tests {
		got := explain(tc.st, tc.labels)
		if got.Cause != tc.want {
			t.Errorf("%s: cause %q, want %q", tc.name, got.Cause, tc.want)
		}
		if tc.st.Status == runtime.StatusExited && !got.StartedAt.Equal(t0) {
			t.Errorf("%s: started at %v, want %v", tc.name, got.StartedAt, t0)
		}
	}
}
