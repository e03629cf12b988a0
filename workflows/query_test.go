package workflows

import "testing"

func TestReplicasQuery(t *testing.T) {
	base := "WorkflowType = 'Supervise' AND (ExecutionStatus = 'Running' OR (ExecutionStatus = 'Completed' AND VigilState = 'Completed'))"
	for _, tc := range []struct{ deployment, service, state, want string }{
		{"", "", "", base},
		{"shop", "", "", base + " AND VigilDeployment = 'shop'"},
		{"shop", "api", "Running", base + " AND VigilDeployment = 'shop' AND VigilService = 'api' AND VigilState = 'Running'"},
	} {
		if got := ReplicasQuery(tc.deployment, tc.service, tc.state); got != tc.want {
			t.Errorf("ReplicasQuery(%q, %q, %q) =\n %s\nwant\n %s", tc.deployment, tc.service, tc.state, got, tc.want)
		}
	}
}
