package workflows

import (
	"testing"
	"time"
)

func TestReplicasQuery(t *testing.T) {
	base := "WorkflowType = 'Supervise' AND (ExecutionStatus = 'Running' OR (ExecutionStatus = 'Completed' AND VigilState = 'Completed'))"
	for _, tc := range []struct{ deployment, service, state, want string }{
		{"", "", "", base},
		{"shop", "", "", base + " AND VigilDeployment = 'shop'"},
		{"shop", "api", "Running", base + " AND VigilDeployment = 'shop' AND VigilService = 'api' AND VigilState = 'Running'"},
		// An unsupervised replica's run is closed: it was never matched.
		{"shop", "", "Unsupervised", "WorkflowType = 'Supervise' AND ExecutionStatus = 'Completed' AND VigilDeployment = 'shop' AND VigilState = 'Unsupervised'"},
	} {
		if got := ReplicasQuery(tc.deployment, tc.service, tc.state); got != tc.want {
			t.Errorf("ReplicasQuery(%q, %q, %q) =\n %s\nwant\n %s", tc.deployment, tc.service, tc.state, got, tc.want)
		}
	}
}

// NextRestart reads back the time the view was given (formatTime).
func TestNextRestart(t *testing.T) {
	if _, ok := (StateView{}).NextRestart(); ok {
		t.Error("a view without a backoff has a restart time")
	}
	at := time.Date(2026, 12, 6, 5, 1, 2, 345678901, time.FixedZone("x", 3600))
	s := formatTime(at)
	if got, ok := (StateView{NextRestartAt: &s}).NextRestart(); !ok || !got.Equal(at) {
		t.Errorf("NextRestart of %q = %s, %v; want %s", s, got, ok, at)
	}
}
